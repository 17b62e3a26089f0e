//! The datapath's detection tracking through BPF_PROG_TEST_RUN: which
//! packets count, one signal per kind per window with the state at the
//! crossing, and signals lost to a full ring buffer counted, not hidden.

use std::{net::Ipv4Addr, time::Duration};

use ironpost_core::{EbpfConfig, IronpostConfig, Signal, SignalKind};
use ironpost_ebpf_engine::{EbpfEngine, EngineConfig, TrafficSnapshot};
use ironpost_lab::{
    kernel_tests_enabled,
    packet::{ACK, ETH_P_IP, RST, SYN, ethernet, icmp_echo, ipv4, tcp, udp},
};

const DST: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

/// An engine with the `[detection]` settings in `detection`. Unless they
/// name the admission settings, every source is admitted at its first
/// packet with no rate limit, so that counts are exact.
fn engine(detection: &str) -> EbpfEngine {
    let core = IronpostConfig::parse(detection, "test.toml").unwrap();
    let mut d = core.detection;
    if !detection.contains("admit_") {
        d.admit_after_packets = 1;
        d.admit_per_sec_per_cpu = 0;
    }
    let mut e = EbpfEngine::builder()
        .config(EngineConfig::from_core(&EbpfConfig::default()).with_detection(&d))
        .build();
    e.load().expect("the verifier accepts ironpost_xdp");
    e
}

fn tcp_pkt(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    ethernet(ETH_P_IP, &[], &ipv4(src, dst, 6, &tcp(sport, dport, flags)))
}

fn udp_pkt(src: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    ethernet(ETH_P_IP, &[], &ipv4(src, DST, 17, &udp(sport, dport, b"q")))
}

fn counters(e: &mut EbpfEngine) -> TrafficSnapshot {
    e.counters().unwrap()
}

/// Starts the signal reader; returns the runtime and the receiver.
fn reader(e: &mut EbpfEngine) -> (tokio::runtime::Runtime, tokio::sync::mpsc::Receiver<Signal>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    rt.block_on(async { e.spawn_signal_reader(tx) }).unwrap();
    (rt, rx)
}

fn signals(
    rt: &tokio::runtime::Runtime,
    rx: &mut tokio::sync::mpsc::Receiver<Signal>,
) -> Vec<Signal> {
    let mut out = Vec::new();
    while let Ok(Some(s)) =
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(300), rx.recv()).await })
    {
        out.push(s);
    }
    out
}

#[test]
fn port_scan_signals_once_with_a_sample_and_replies_do_not_count() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine("[detection.port_scan]\ndistinct_ports = 20\ndistinct_hosts = 0\n");
    let (rt, mut rx) = reader(&mut e);
    let scanner = Ipv4Addr::new(198, 51, 100, 7);
    // SYN-ACKs and ACKs to many ports are answers and established traffic.
    for port in 1000..1100 {
        e.test_run(&tcp_pkt(scanner, DST, 80, port, SYN | ACK), 1)
            .unwrap();
        e.test_run(&tcp_pkt(scanner, DST, 443, port, ACK), 1)
            .unwrap();
    }
    // UDP from a well-known port (DNS answers) to many ports: not probes.
    for port in 2000..2100 {
        e.test_run(&udp_pkt(scanner, 53, port), 1).unwrap();
    }
    assert_eq!(counters(&mut e).detect.signals, 0);
    // Bare SYNs to 60 distinct ports: one signal, at the 20th bin.
    for port in 1..=60 {
        e.test_run(&tcp_pkt(scanner, DST, 40000, port, SYN), 1)
            .unwrap();
    }
    let got = signals(&rt, &mut rx);
    assert_eq!(got.len(), 1, "{got:?}");
    let s = &got[0];
    assert_eq!(s.kind, SignalKind::PortScan);
    assert_eq!(s.src, std::net::IpAddr::V4(scanner));
    assert_eq!(s.dst, std::net::IpAddr::V4(DST));
    assert_eq!(s.ports, 20);
    assert!(s.syn >= 20 && s.ack == 200, "{s:?}");
    assert!(!s.sample_ports.is_empty() && s.sample_ports.iter().all(|p| (1..=60).contains(p)));
    let snap = counters(&mut e);
    assert_eq!((snap.detect.signals, snap.detect.signals_lost), (1, 0));
    assert_eq!(snap.detect.sources_new, 1);
}

#[test]
fn syn_flood_needs_the_ratio_and_target_signal_counts_sources() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine(
        "[detection.syn_flood]\nsource_threshold = 50\ntarget_threshold = 100\n\
         [detection.port_scan]\nenabled = false\n",
    );
    let (rt, mut rx) = reader(&mut e);
    // A client completing its handshakes: 1 SYN, 3 ACK-bearing packets.
    let client = Ipv4Addr::new(198, 51, 100, 20);
    for i in 0..200u16 {
        e.test_run(&tcp_pkt(client, DST, 30000 + i, 80, SYN), 1)
            .unwrap();
        for _ in 0..3 {
            e.test_run(&tcp_pkt(client, DST, 30000 + i, 80, ACK), 1)
                .unwrap();
        }
    }
    assert!(
        signals(&rt, &mut rx).is_empty(),
        "a healthy client is not a flood"
    );
    // One flooder: bare SYNs only.
    let flooder = Ipv4Addr::new(198, 51, 100, 21);
    e.test_run(&tcp_pkt(flooder, DST, 1234, 22, SYN), 60)
        .unwrap();
    let got = signals(&rt, &mut rx);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].kind, got[0].syn, got[0].ack),
        (SignalKind::SynSource, 50, 0)
    );
    // Many sources, a few SYNs each, onto port 25.
    for i in 0..150u32 {
        let src = Ipv4Addr::from(0xc633_0000 + i); // 198.51.0.0 + i
        e.test_run(&tcp_pkt(src, DST, 5555, 25, SYN), 1).unwrap();
    }
    let got = signals(&rt, &mut rx);
    assert_eq!(got.len(), 1, "{got:?}");
    let t = &got[0];
    assert_eq!(
        (t.kind, t.dst_port, t.syn),
        (SignalKind::SynTarget, 25, 100)
    );
    assert!(t.sources > 60, "distinct source bins: {}", t.sources);
    assert_eq!(t.sample_sources.len(), 4);
}

#[test]
fn floods_and_blocked_or_allowed_sources() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine(
        "[detection.udp_flood]\nthreshold = 100\n[detection.icmp_flood]\nthreshold = 50\n\
         [detection.port_scan]\nenabled = false\n",
    );
    let (rt, mut rx) = reader(&mut e);
    let src = Ipv4Addr::new(198, 51, 100, 30);
    e.test_run(&udp_pkt(src, 40000, 53), 150).unwrap();
    let ping = ethernet(ETH_P_IP, &[], &ipv4(src, DST, 1, &icmp_echo(8)));
    e.test_run(&ping, 49).unwrap();
    let got = signals(&rt, &mut rx);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].kind, got[0].udp), (SignalKind::UdpFlood, 100));
    e.test_run(&ping, 1).unwrap();
    let got = signals(&rt, &mut rx);
    assert_eq!(
        (got.len(), got[0].kind, got[0].icmp),
        (1, SignalKind::IcmpFlood, 50)
    );

    // Allow-listed and blocked sources are not tracked.
    let allowed = Ipv4Addr::new(192, 0, 2, 50);
    let blocked = Ipv4Addr::new(192, 0, 2, 51);
    let mut cfg = EngineConfig::from_core(&EbpfConfig {
        allow: vec![format!("{allowed}/32").parse().unwrap()],
        ..EbpfConfig::default()
    })
    .with_detection(&e.config().detection.clone());
    cfg.rules = IronpostConfig::parse(
        &format!("[[ebpf.rules]]\nid = \"b\"\nsrc = \"{blocked}\"\naction = \"drop\"\n"),
        "t.toml",
    )
    .unwrap()
    .ebpf
    .rules;
    e.reload_config(cfg).unwrap();
    let before = counters(&mut e).detect.sources_new;
    e.test_run(&udp_pkt(allowed, 40000, 53), 200).unwrap();
    e.test_run(&udp_pkt(blocked, 40000, 53), 200).unwrap();
    assert!(signals(&rt, &mut rx).is_empty());
    assert_eq!(counters(&mut e).detect.sources_new, before);
}

#[test]
fn a_busy_source_keeps_its_state_through_a_churn_of_new_ones() {
    if !kernel_tests_enabled() {
        return;
    }
    // SOURCES at its smallest: 8 buckets of 2 slots, so that about one
    // new source in 8 lands in the busy source's bucket and must take the
    // other slot, never the busy one's.
    let mut e = engine(
        "[detection]\nmax_tracked_sources = 16\n[detection.syn_flood]\nsource_threshold = 1000\n\
         [detection.port_scan]\nenabled = false\n",
    );
    let (rt, mut rx) = reader(&mut e);
    let busy = Ipv4Addr::new(198, 51, 100, 40);
    for i in 0..1000u32 {
        e.test_run(&tcp_pkt(busy, DST, 40000, 80, SYN), 1).unwrap();
        let churn = Ipv4Addr::from(0x0a00_0000 + i); // 10.0.0.0 + i
        e.test_run(&udp_pkt(churn, 40000, 53), 1).unwrap();
    }
    let got = signals(&rt, &mut rx);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].kind, got[0].syn), (SignalKind::SynSource, 1000));
    assert_eq!(counters(&mut e).detect.sources_new, 1 + 1000);
}

#[test]
fn lost_signals_are_counted_under_a_spoofed_flood() {
    if !kernel_tests_enabled() {
        return;
    }
    // Every source signals on its first UDP packet; nothing reads SIGNALS,
    // so a one-page ring buffer fills and the rest must be counted.
    let mut e = engine(
        "[detection]\nsignal_ring_buffer_size = 4096\nmax_tracked_sources = 65536\n\
         [detection.udp_flood]\nthreshold = 1\n[detection.port_scan]\nenabled = false\n",
    );
    const SOURCES: u32 = 100_000;
    for i in 0..SOURCES {
        let src = Ipv4Addr::from(0x0a00_0000 + i); // 10.0.0.0 + i
        e.test_run(&udp_pkt(src, 40000, 53), 1).unwrap();
    }
    let d = counters(&mut e).detect;
    assert_eq!(d.sources_new, u64::from(SOURCES));
    assert_eq!(d.signals + d.signals_lost, u64::from(SOURCES), "{d:?}");
    assert!(d.signals > 0 && d.signals < 100, "{d:?}");
}

/// Sleeps until at least `room` is left in the admission sketch's epoch
/// (CLOCK_MONOTONIC_COARSE >> ADMIT_EPOCH_SHIFT, as the datapath reads it).
fn wait_for_fresh_epoch(room: Duration) {
    let epoch_ns = 1u64 << ironpost_ebpf_engine::common::ADMIT_EPOCH_SHIFT;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    assert_eq!(rc, 0);
    let now = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
    let left = epoch_ns - now % epoch_ns;
    if left < room.as_nanos() as u64 {
        std::thread::sleep(Duration::from_nanos(left + 10_000_000));
    }
}

/// Keeps this test's thread on CPU 0: the admission sketch is per CPU.
fn pin_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET and
    // sched_setaffinity only read and write that set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0
        );
    }
}

#[test]
fn spoofed_sources_earn_no_state_and_a_real_source_does() {
    if !kernel_tests_enabled() {
        return;
    }
    pin_to_cpu0();
    // Defaults: a source needs 4 packets in an epoch before it gets state.
    let mut e = engine("[detection]\nadmit_after_packets = 4\n");
    wait_for_fresh_epoch(Duration::from_secs(2));
    const SOURCES: u32 = 100_000;
    for i in 0..SOURCES {
        let src = Ipv4Addr::from(0x0a00_0000 + i);
        e.test_run(&tcp_pkt(src, DST, 40000, 80, SYN), 1).unwrap();
    }
    let d = counters(&mut e).detect;
    // A few sources can share sketch cells with enough others to pass (1
    // to 17 of these 100,000 in 8 runs; both cells of a key share a cache
    // line, which about doubles it); the point is that state is the
    // exception, not one entry per packet.
    assert!(d.sources_new < 40, "{d:?}");
    assert!(d.sources_deferred > 99_900, "{d:?}");
    // A source that stands out of the flood earns state: it must send more
    // than twice the mean cell load (here about 100 packets: 100,000
    // sources over 2,048 cells; the target, once in TARGETS, no longer
    // passes through the sketch) plus 4.
    let real = Ipv4Addr::new(198, 51, 100, 7);
    let before = d.sources_new;
    e.test_run(&tcp_pkt(real, DST, 40000, 80, SYN), 10).unwrap();
    assert_eq!(counters(&mut e).detect.sources_new, before, "not yet");
    e.test_run(&tcp_pkt(real, DST, 40000, 80, SYN), 400)
        .unwrap();
    let d = counters(&mut e).detect;
    assert_eq!(d.sources_new, before + 1, "{d:?}");
}

#[test]
fn new_state_per_second_is_capped() {
    if !kernel_tests_enabled() {
        return;
    }
    pin_to_cpu0();
    let mut e = engine("[detection]\nadmit_after_packets = 1\nadmit_per_sec_per_cpu = 1000\n");
    let start = std::time::Instant::now();
    const SOURCES: u32 = 50_000;
    for i in 0..SOURCES {
        let src = Ipv4Addr::from(0x0a00_0000 + i);
        e.test_run(&tcp_pkt(src, DST, 40000, 80, SYN), 1).unwrap();
    }
    let secs = start.elapsed().as_secs() + 2;
    let d = counters(&mut e).detect;
    assert!(d.sources_new <= 1000 * secs, "{d:?} in {secs} s");
    assert!(d.admit_over_budget > 0, "{d:?}");
    // Every packet either created state or was refused: nothing unaccounted.
    assert_eq!(
        d.sources_new + d.admit_over_budget,
        u64::from(SOURCES),
        "{d:?}"
    );
}

#[test]
fn spoofed_udp_and_icmp_count_on_their_target() {
    if !kernel_tests_enabled() {
        return;
    }
    // Admission as in production: a source needs packets before it has
    // state, so each of these one-packet sources stays untracked.
    let mut e = engine(
        "[detection]\nadmit_after_packets = 4\nadmit_per_sec_per_cpu = 0\n\
         [detection.udp_flood]\ntarget_threshold = 200\n\
         [detection.icmp_flood]\ntarget_threshold = 100\n\
         [detection.port_scan]\nenabled = false\n",
    );
    let (rt, mut rx) = reader(&mut e);
    for i in 0..300u32 {
        let src = Ipv4Addr::from(0x6440_0000 + i * 7919); // 100.64.0.0/10
        e.test_run(&udp_pkt(src, 40000, 9), 1).unwrap();
    }
    let got = signals(&rt, &mut rx);
    assert_eq!(got.len(), 1, "{got:?}");
    let t = &got[0];
    assert_eq!((t.kind, t.udp), (SignalKind::UdpTarget, 200));
    assert_eq!(t.dst, std::net::IpAddr::V4(DST));
    assert!(t.sources > 60, "distinct source bins: {}", t.sources);
    assert_eq!(t.sample_sources.len(), 4);
    for i in 0..150u32 {
        let src = Ipv4Addr::from(0x6480_0000 + i * 7919);
        let ping = ethernet(ETH_P_IP, &[], &ipv4(src, DST, 1, &icmp_echo(8)));
        e.test_run(&ping, 1).unwrap();
    }
    let got = signals(&rt, &mut rx);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].kind, got[0].icmp), (SignalKind::IcmpTarget, 100));
    // One real source, however busy, is its own business, not its
    // target's: its packets beyond admission do not count there.
    let mut quiet = engine(
        "[detection]\nadmit_after_packets = 4\nadmit_per_sec_per_cpu = 0\n\
         [detection.udp_flood]\ntarget_threshold = 200\nthreshold = 1000000\n",
    );
    let (rt2, mut rx2) = reader(&mut quiet);
    quiet
        .test_run(&udp_pkt(Ipv4Addr::new(198, 51, 100, 40), 40000, 9), 5_000)
        .unwrap();
    assert!(signals(&rt2, &mut rx2).is_empty());
}

#[test]
fn target_floods_signal_at_the_lowest_threshold_then_at_each_doubling() {
    if !kernel_tests_enabled() {
        return;
    }
    // One host group lowers the UDP target threshold to 50 and the SYN
    // target threshold to 30: the datapath signals every target at those
    // counts and again at twice each (user space, which knows the groups,
    // decides which signal is an alert).
    let mut e = engine(
        "[detection]\nadmit_after_packets = 4\nadmit_per_sec_per_cpu = 0\n\
         [detection.udp_flood]\ntarget_threshold = 200\n\
         [detection.syn_flood]\ntarget_threshold = 200\n\
         [detection.port_scan]\nenabled = false\n\
         [[detection.host_groups]]\nname = \"dns\"\nprefixes = [\"203.0.113.0/28\"]\n\
         udp_target_threshold = 50\nsyn_target_threshold = 30\n",
    );
    let (rt, mut rx) = reader(&mut e);
    let other = Ipv4Addr::new(192, 0, 2, 9);
    for i in 0..210u32 {
        let src = Ipv4Addr::from(0x6440_0000 + i * 7919);
        e.test_run(&udp_pkt(src, 40000, 53), 1).unwrap();
        if i < 60 {
            let p = ethernet(ETH_P_IP, &[], &ipv4(src, other, 17, &udp(40000, 53, b"q")));
            e.test_run(&p, 1).unwrap();
        }
    }
    let got = signals(&rt, &mut rx);
    let at = |dst: Ipv4Addr| -> Vec<u32> {
        got.iter()
            .filter(|s| s.kind == SignalKind::UdpTarget && s.dst == std::net::IpAddr::V4(dst))
            .map(|s| s.udp)
            .collect()
    };
    assert_eq!(at(DST), [50, 100, 200], "{got:?}");
    assert_eq!(at(other), [50], "{got:?}");
    assert_eq!(got.len(), 4, "{got:?}");
    for i in 0..70u32 {
        let src = Ipv4Addr::from(0x6480_0000 + i * 7919);
        e.test_run(&tcp_pkt(src, DST, 1234, 443, SYN), 1).unwrap();
    }
    let syn: Vec<u32> = signals(&rt, &mut rx).iter().map(|s| s.syn).collect();
    assert_eq!(syn, [30, 60], "SYN target signals at 30 and 60");
}

#[test]
fn spoofed_rsts_count_on_their_target() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine(
        "[detection]\nadmit_after_packets = 4\nadmit_per_sec_per_cpu = 0\n\
         [detection.rst_flood]\ntarget_threshold = 150\n\
         [detection.port_scan]\nenabled = false\n",
    );
    let (rt, mut rx) = reader(&mut e);
    for i in 0..149u32 {
        let src = Ipv4Addr::from(0x6440_0000 + i * 7919);
        e.test_run(&tcp_pkt(src, DST, 1234, 80, RST), 1).unwrap();
        // Plain ACKs from untracked sources are not RSTs: they do not
        // count there (the host's refusals of them do, on egress).
        e.test_run(&tcp_pkt(src, DST, 1234, 80, ACK), 1).unwrap();
    }
    assert!(signals(&rt, &mut rx).is_empty());
    for i in 149..200u32 {
        let src = Ipv4Addr::from(0x6440_0000 + i * 7919);
        e.test_run(&tcp_pkt(src, DST, 1234, 80, RST | ACK), 1)
            .unwrap();
    }
    let got = signals(&rt, &mut rx);
    assert_eq!(got.len(), 1, "once per window: {got:?}");
    let t = &got[0];
    assert_eq!((t.kind, t.rst), (SignalKind::RstTarget, 150));
    assert_eq!(t.dst, std::net::IpAddr::V4(DST));
    assert!(t.sources > 60, "distinct source bins: {}", t.sources);
}

#[test]
fn rsts_from_one_source_are_a_flood() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e =
        engine("[detection.rst_flood]\nthreshold = 50\n[detection.port_scan]\nenabled = false\n");
    let (rt, mut rx) = reader(&mut e);
    let src = Ipv4Addr::new(198, 51, 100, 50);
    e.test_run(&tcp_pkt(src, DST, 1234, 80, ACK), 500).unwrap();
    e.test_run(&tcp_pkt(src, DST, 1234, 80, RST), 49).unwrap();
    assert!(signals(&rt, &mut rx).is_empty(), "ACKs are not RSTs");
    e.test_run(&tcp_pkt(src, DST, 1234, 80, RST | ACK), 10)
        .unwrap();
    let got = signals(&rt, &mut rx);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].kind, got[0].rst), (SignalKind::RstFlood, 50));
}

#[test]
fn many_ip_protocols_from_one_source_are_a_protocol_scan() {
    if !kernel_tests_enabled() {
        return;
    }
    let mut e = engine("[detection.port_scan]\ndistinct_protocols = 8\n");
    let (rt, mut rx) = reader(&mut e);
    let src = Ipv4Addr::new(198, 51, 100, 60);
    // The same protocol again and again is one protocol (a GRE tunnel).
    let gre = ethernet(ETH_P_IP, &[], &ipv4(src, DST, 47, &[0; 8]));
    e.test_run(&gre, 100).unwrap();
    // TCP, UDP and ICMP do not count.
    e.test_run(&tcp_pkt(src, DST, 1000, 80, ACK), 1).unwrap();
    e.test_run(&udp_pkt(src, 53, 4000), 1).unwrap();
    assert!(signals(&rt, &mut rx).is_empty());
    for proto in [2u8, 4, 41, 50, 51, 89, 132] {
        let frame = ethernet(ETH_P_IP, &[], &ipv4(src, DST, proto, &[0; 8]));
        e.test_run(&frame, 1).unwrap();
    }
    let got = signals(&rt, &mut rx);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].kind, got[0].ports), (SignalKind::ProtocolScan, 8));
}
