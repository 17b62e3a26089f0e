//! Decoding the datapath's event records into [`PacketEvent`]s and its
//! signal records into [`Signal`]s.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::{Duration, SystemTime},
};

use ironpost_core::{PacketAction, PacketEvent, Protocol, Signal, SignalKind};
use ironpost_ebpf_common::{
    ACTION_DROP, ACTION_MONITOR, FAMILY_IPV4, FAMILY_IPV6, PacketEventRecord, SignalRecord, signal,
    tcp_flags,
};

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The ring buffer entry is shorter than a record.
    #[error("event record too short: {0} bytes, expected {expected}", expected = PacketEventRecord::SIZE)]
    TooShort(usize),
    /// The address family is neither IPv4 nor IPv6.
    #[error("event record has unknown address family {0}")]
    Family(u8),
    /// The action is neither drop nor monitor.
    #[error("event record has unknown action {0}")]
    Action(u8),
}

/// Converts the kernel's monotonic timestamps into wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall-clock time at monotonic time zero.
    boot: SystemTime,
}

impl Clock {
    /// A clock whose wall time at monotonic zero is `boot`.
    pub fn with_boot_time(boot: SystemTime) -> Self {
        Self { boot }
    }

    /// Reads CLOCK_MONOTONIC (what `bpf_ktime_get_ns` uses) and the wall
    /// clock once to relate the two.
    pub fn now() -> Self {
        let mono = monotonic_now();
        let wall = SystemTime::now();
        Self {
            boot: wall.checked_sub(mono).unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }

    /// The wall-clock time of a kernel timestamp.
    pub fn wall_time(&self, ktime_ns: u64) -> SystemTime {
        self.boot + Duration::from_nanos(ktime_ns)
    }
}

fn monotonic_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Names of the TCP flags set in `flags`, in header order.
pub fn tcp_flag_names(flags: u8) -> Vec<&'static str> {
    const NAMES: [(u8, &str); 6] = [
        (tcp_flags::FIN, "FIN"),
        (tcp_flags::SYN, "SYN"),
        (tcp_flags::RST, "RST"),
        (tcp_flags::PSH, "PSH"),
        (tcp_flags::ACK, "ACK"),
        (tcp_flags::URG, "URG"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect()
}

/// An address as the detection maps store it (IPv4 as `::ffff:a.b.c.d`).
pub fn tracked_addr(bytes: &[u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(*bytes)).to_canonical()
}

/// Decodes a signal record; `None` for an unknown kind.
pub fn decode_signal(rec: &SignalRecord, interface: &str, clock: &Clock) -> Option<Signal> {
    let kind = match rec.kind {
        signal::SYN_SOURCE => SignalKind::SynSource,
        signal::SYN_TARGET => SignalKind::SynTarget,
        signal::PORT_SCAN => SignalKind::PortScan,
        signal::HOST_SWEEP => SignalKind::HostSweep,
        signal::UDP_FLOOD => SignalKind::UdpFlood,
        signal::ICMP_FLOOD => SignalKind::IcmpFlood,
        signal::REFUSED_SCAN => SignalKind::RefusedScan,
        signal::ACK_FLOOD => SignalKind::AckFlood,
        signal::RST_FLOOD => SignalKind::RstFlood,
        signal::UDP_TARGET => SignalKind::UdpTarget,
        signal::ICMP_TARGET => SignalKind::IcmpTarget,
        signal::SLOW_SCAN => SignalKind::SlowScan,
        signal::DISTRIBUTED_SCAN => SignalKind::DistributedScan,
        signal::PROTOCOL_SCAN => SignalKind::ProtocolScan,
        signal::TINY_FRAGMENTS => SignalKind::TinyFragments,
        signal::RST_TARGET => SignalKind::RstTarget,
        signal::ACK_TARGET => SignalKind::AckTarget,
        _ => return None,
    };
    let ms = |ns: u64| {
        clock
            .wall_time(ns)
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let mut sample_ports: Vec<u16> = rec
        .sample_ports
        .iter()
        .copied()
        .filter(|&p| p != 0)
        .collect();
    sample_ports.sort_unstable();
    sample_ports.dedup();
    let sample_sources = rec
        .sample_sources
        .iter()
        .filter(|a| a.iter().any(|&b| b != 0))
        .map(tracked_addr)
        .collect();
    Some(Signal {
        kind,
        time_ms: ms(rec.timestamp_ns),
        window_start_ms: ms(rec.window_start_ns),
        src: tracked_addr(&rec.src_addr),
        dst: tracked_addr(&rec.dst_addr),
        protocol: Protocol::from_number(rec.protocol),
        dst_port: rec.dst_port,
        interface: interface.to_owned(),
        syn: rec.syn,
        ack: rec.ack,
        udp: rec.udp,
        icmp: rec.icmp,
        rst: rec.rst,
        ports: rec.ports,
        hosts: rec.hosts,
        sources: rec.sources,
        sample_ports,
        sample_sources,
        bytes: rec.bytes,
    })
}

/// Decodes one ring buffer entry. `interface` names the interface the
/// record's ifindex refers to.
pub fn decode(bytes: &[u8], interface: &str, clock: &Clock) -> Result<PacketEvent, DecodeError> {
    let rec = PacketEventRecord::from_bytes(bytes).ok_or(DecodeError::TooShort(bytes.len()))?;
    decode_record(&rec, interface, clock)
}

/// Decodes a record.
pub fn decode_record(
    rec: &PacketEventRecord,
    interface: &str,
    clock: &Clock,
) -> Result<PacketEvent, DecodeError> {
    let (src, dst) = match rec.family {
        FAMILY_IPV4 => (ipv4(&rec.src_addr), ipv4(&rec.dst_addr)),
        FAMILY_IPV6 => (
            IpAddr::V6(Ipv6Addr::from(rec.src_addr)),
            IpAddr::V6(Ipv6Addr::from(rec.dst_addr)),
        ),
        f => return Err(DecodeError::Family(f)),
    };
    let action = match rec.action {
        ACTION_DROP => PacketAction::Drop,
        ACTION_MONITOR => PacketAction::Monitor,
        a => return Err(DecodeError::Action(a)),
    };
    let protocol = Protocol::from_number(rec.protocol);
    let has_ports = matches!(protocol, Protocol::Tcp | Protocol::Udp)
        && (rec.src_port != 0 || rec.dst_port != 0);
    let port = |p: u16| has_ports.then_some(p);
    Ok(PacketEvent {
        time: humantime::format_rfc3339_nanos(clock.wall_time(rec.timestamp_ns)).to_string(),
        interface: interface.to_owned(),
        action,
        src,
        dst,
        protocol,
        src_port: port(rec.src_port),
        dst_port: port(rec.dst_port),
        tcp_flags: if protocol == Protocol::Tcp {
            tcp_flag_names(rec.tcp_flags)
        } else {
            Vec::new()
        },
        len: rec.pkt_len,
        vlan: (rec.vlan_id != 0).then_some(rec.vlan_id),
    })
}

fn ipv4(addr: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> PacketEventRecord {
        let mut r = PacketEventRecord {
            timestamp_ns: 1_500_000_000,
            pkt_len: 74,
            ifindex: 7,
            src_port: 40000,
            dst_port: 22,
            family: FAMILY_IPV4,
            protocol: 6,
            tcp_flags: tcp_flags::SYN,
            action: ACTION_DROP,
            vlan_id: 0,
            ..Default::default()
        };
        r.src_addr[..4].copy_from_slice(&[192, 0, 2, 1]);
        r.dst_addr[..4].copy_from_slice(&[198, 51, 100, 2]);
        r
    }

    fn bytes_of(r: &PacketEventRecord) -> Vec<u8> {
        // SAFETY: PacketEventRecord is repr(C) plain data without padding.
        unsafe {
            std::slice::from_raw_parts(
                (r as *const PacketEventRecord).cast::<u8>(),
                PacketEventRecord::SIZE,
            )
        }
        .to_vec()
    }

    fn clock() -> Clock {
        Clock::with_boot_time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    #[test]
    fn decodes_ipv4_tcp_syn_drop() {
        let ev = decode(&bytes_of(&record()), "eth0", &clock()).unwrap();
        assert_eq!(ev.src, "192.0.2.1".parse::<IpAddr>().unwrap());
        assert_eq!(ev.dst, "198.51.100.2".parse::<IpAddr>().unwrap());
        assert_eq!(ev.protocol, Protocol::Tcp);
        assert_eq!(ev.action, PacketAction::Drop);
        assert_eq!((ev.src_port, ev.dst_port), (Some(40000), Some(22)));
        assert_eq!(ev.tcp_flags, ["SYN"]);
        assert_eq!(ev.len, 74);
        assert_eq!(ev.vlan, None);
        assert_eq!(ev.interface, "eth0");
        assert_eq!(ev.time, "2023-11-14T22:13:21.500000000Z");
    }

    #[test]
    fn decodes_ipv6_and_vlan_and_monitor() {
        let mut r = record();
        r.family = FAMILY_IPV6;
        r.src_addr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        r.dst_addr = "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets();
        r.protocol = 17;
        r.action = ACTION_MONITOR;
        r.vlan_id = 100;
        let ev = decode_record(&r, "eth1", &clock()).unwrap();
        assert_eq!(ev.src, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(ev.protocol, Protocol::Udp);
        assert_eq!(ev.action, PacketAction::Monitor);
        assert_eq!(ev.vlan, Some(100));
        assert!(ev.tcp_flags.is_empty(), "UDP has no TCP flags");
    }

    #[test]
    fn fragments_and_icmp_have_no_ports() {
        let mut r = record();
        r.src_port = 0;
        r.dst_port = 0;
        let ev = decode_record(&r, "x", &clock()).unwrap();
        assert_eq!((ev.src_port, ev.dst_port), (None, None));
        let mut r = record();
        r.protocol = 1;
        let ev = decode_record(&r, "x", &clock()).unwrap();
        assert_eq!(ev.protocol, Protocol::Icmp);
        assert_eq!(ev.src_port, None);
    }

    #[test]
    fn rejects_short_and_corrupt_records() {
        let b = bytes_of(&record());
        assert_eq!(
            decode(&b[..10], "x", &clock()).unwrap_err(),
            DecodeError::TooShort(10)
        );
        let mut r = record();
        r.family = 9;
        assert_eq!(
            decode_record(&r, "x", &clock()).unwrap_err(),
            DecodeError::Family(9)
        );
        let mut r = record();
        r.action = 0;
        assert_eq!(
            decode_record(&r, "x", &clock()).unwrap_err(),
            DecodeError::Action(0)
        );
    }

    #[test]
    fn flag_names() {
        assert_eq!(tcp_flag_names(0x12), ["SYN", "ACK"]);
        assert_eq!(
            tcp_flag_names(0x3f),
            ["FIN", "SYN", "RST", "PSH", "ACK", "URG"]
        );
        assert!(tcp_flag_names(0).is_empty());
    }

    #[test]
    fn json_shape() {
        let ev = decode_record(&record(), "eth0", &clock()).unwrap();
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["action"], "drop");
        assert_eq!(v["protocol"], "tcp");
        assert_eq!(v["src"], "192.0.2.1");
        assert_eq!(v["dst_port"], 22);
        assert_eq!(v["tcp_flags"][0], "SYN");
        assert!(v.get("vlan").is_none());
    }

    #[test]
    fn clock_relates_monotonic_to_wall() {
        let c = Clock::now();
        let now_mono = monotonic_now().as_nanos() as u64;
        let diff = c
            .wall_time(now_mono)
            .duration_since(SystemTime::now())
            .unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_secs(1), "{diff:?}");
    }
}
