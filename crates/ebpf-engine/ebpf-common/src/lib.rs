//! The contract between Ironpost's XDP program and user space.
//!
//! Everything both sides must agree on lives here and only here: map names,
//! key and value layouts, event records, action codes and traffic classes.
//! Every type is `#[repr(C)]` with its size and field offsets checked at
//! compile time, so a change on one side that the other side does not know
//! about fails the build instead of corrupting data.
#![no_std]
#![deny(missing_docs)]

use core::mem::{align_of, offset_of, size_of};

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "ironpost_xdp";

/// Map names, as the loader finds them in the object file.
pub mod maps {
    /// `HashMap<u32, RuleValue>`: exact IPv4 source (/32) → rule; the fast
    /// path for single-address blocks.
    pub const BLOCKLIST: &str = "BLOCKLIST";
    /// `LpmTrie<[u8; 4], RuleValue>`: IPv4 source prefixes shorter than /32.
    pub const SRC_V4: &str = "SRC_V4";
    /// `LpmTrie<[u8; 16], RuleValue>`: IPv6 source prefixes (/0 to /128).
    pub const SRC_V6: &str = "SRC_V6";
    /// `LpmTrie<[u8; 4], RuleValue>`: IPv4 destination prefixes (/0 to /32).
    pub const DST_V4: &str = "DST_V4";
    /// `LpmTrie<[u8; 16], RuleValue>`: IPv6 destination prefixes.
    pub const DST_V6: &str = "DST_V6";
    /// `LpmTrie<[u8; 4], RuleValue>`: IPv4 allow list (sources).
    pub const ALLOW_V4: &str = "ALLOW_V4";
    /// `LpmTrie<[u8; 16], RuleValue>`: IPv6 allow list (sources).
    pub const ALLOW_V6: &str = "ALLOW_V6";
    /// `Array<u32>` of [`PORT_INDEX_LEN`](super::PORT_INDEX_LEN) entries:
    /// protocol and destination port (see [`port_index`](super::port_index))
    /// → slot in PORT_RULE_TABLE, 0 for none.
    pub const PORT_RULES: &str = "PORT_RULES";
    /// `Array<RuleValue>` of [`PORT_RULE_SLOTS`](super::PORT_RULE_SLOTS)
    /// entries: the port and protocol rules; slot 0 is never used.
    pub const PORT_RULE_TABLE: &str = "PORT_RULE_TABLE";
    /// `Array<u32>` with one entry: the `POLICY_*` bits of the maps that
    /// hold entries, so the program skips lookups in empty ones.
    pub const POLICY_FLAGS: &str = "POLICY_FLAGS";
    /// `PerCpuArray<TrafficCounters>` with one entry: per-class counters.
    pub const STATS: &str = "STATS";
    /// `RingBuf` of [`PacketEventRecord`](super::PacketEventRecord).
    pub const EVENTS: &str = "EVENTS";
    /// `PerCpuArray<EventCounters>` with one entry: event budget and losses.
    pub const EVENT_COUNTERS: &str = "EVENT_COUNTERS";
    /// `LruHashMap<[u8; 16], SourceState>`: detection state per source
    /// address (IPv4 as `::ffff:a.b.c.d`).
    pub const SOURCES: &str = "SOURCES";
    /// `LruHashMap<TargetKey, TargetState>`: SYN flood state per
    /// destination address and TCP port.
    pub const TARGETS: &str = "TARGETS";
    /// `RingBuf` of [`SignalRecord`](super::SignalRecord).
    pub const SIGNALS: &str = "SIGNALS";
    /// `Array<DetectConfig>` with one entry: windows and thresholds.
    pub const DETECT_CONFIG: &str = "DETECT_CONFIG";
    /// `PerCpuArray<DetectCounters>` with one entry: signals and losses.
    pub const DETECT_COUNTERS: &str = "DETECT_COUNTERS";
}

/// Name of the read-only global holding the per-CPU event budget
/// (events per second per CPU); set by the loader.
pub const EVENT_BUDGET_GLOBAL: &str = "EVENT_BUDGET_PER_SEC";

/// Default capacity of each block map (BLOCKLIST and the four block tries).
pub const DEFAULT_BLOCKLIST_MAX_ENTRIES: u32 = 10_000;
/// Default capacity of each allow trie.
pub const DEFAULT_ALLOW_MAX_ENTRIES: u32 = 10_000;
/// Slots in PORT_RULE_TABLE: 255 rules, slot 0 unused.
pub const PORT_RULE_SLOTS: u32 = 256;
/// Entries in PORT_RULES: every TCP port, every UDP port, and one for ICMP.
pub const PORT_INDEX_LEN: u32 = 2 * 65_536 + 1;

/// Index in PORT_RULES of a traffic class and destination port; `None` for
/// classes without port rules.
#[inline(always)]
pub const fn port_index(class: usize, port: u16) -> Option<u32> {
    match class {
        CLASS_TCP => Some(port as u32),
        CLASS_UDP => Some(65_536 + port as u32),
        CLASS_ICMP => Some(2 * 65_536),
        _ => None,
    }
}

/// POLICY_FLAGS bit: ALLOW_V4 has entries.
pub const POLICY_ALLOW_V4: u32 = 1 << 0;
/// POLICY_FLAGS bit: ALLOW_V6 has entries.
pub const POLICY_ALLOW_V6: u32 = 1 << 1;
/// POLICY_FLAGS bit: BLOCKLIST has entries.
pub const POLICY_EXACT_V4: u32 = 1 << 2;
/// POLICY_FLAGS bit: SRC_V4 has entries.
pub const POLICY_SRC_V4: u32 = 1 << 3;
/// POLICY_FLAGS bit: SRC_V6 has entries.
pub const POLICY_SRC_V6: u32 = 1 << 4;
/// POLICY_FLAGS bit: DST_V4 has entries.
pub const POLICY_DST_V4: u32 = 1 << 5;
/// POLICY_FLAGS bit: DST_V6 has entries.
pub const POLICY_DST_V6: u32 = 1 << 6;
/// POLICY_FLAGS bit: PORT_RULES has entries.
pub const POLICY_PORTS: u32 = 1 << 7;
/// Default size of the EVENTS ring buffer in bytes (a power of two, a
/// multiple of the page size).
pub const DEFAULT_RING_BUFFER_SIZE: u32 = 256 * 1024;
/// Default event budget: events per second per CPU.
pub const DEFAULT_EVENT_BUDGET_PER_SEC: u32 = 2_000;

/// Default capacity of SOURCES (tracked source addresses).
pub const DEFAULT_TRACKED_SOURCES: u32 = 65_536;
/// Capacity of TARGETS (tracked destination address and port pairs).
pub const TRACKED_TARGETS: u32 = 4_096;
/// Default size of the SIGNALS ring buffer in bytes.
pub const DEFAULT_SIGNAL_RING_SIZE: u32 = 256 * 1024;
/// Bins of the per-source destination port set.
pub const PORT_BINS: u32 = 512;
/// Bins of the per-source destination host set and the per-target
/// source set.
pub const HOST_BINS: u32 = 256;

/// Let the packet through without reporting it.
pub const ACTION_PASS: u8 = 0;
/// Drop the packet and report it.
pub const ACTION_DROP: u8 = 1;
/// Let the packet through and report it.
pub const ACTION_MONITOR: u8 = 2;
/// No decision: evaluation goes on to the next stage. Only ever found in
/// [`RuleValue::else_action`].
pub const ACTION_NONE: u8 = 255;

/// Traffic class index in [`TrafficCounters::classes`]: TCP.
pub const CLASS_TCP: usize = 0;
/// Traffic class index: UDP.
pub const CLASS_UDP: usize = 1;
/// Traffic class index: ICMP and ICMPv6.
pub const CLASS_ICMP: usize = 2;
/// Traffic class index: everything else, including what could not be parsed.
pub const CLASS_OTHER: usize = 3;
/// Traffic class index: every packet (the sum of the four classes above).
pub const CLASS_TOTAL: usize = 4;
/// Number of traffic classes.
pub const CLASS_COUNT: usize = 5;

/// IP protocol numbers the program recognises.
pub mod ipproto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
}

/// TCP flag bits as they appear in byte 13 of the TCP header.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
    /// URG.
    pub const URG: u8 = 0x20;
}

/// Value of an entry in BLOCKLIST, the prefix tries, the allow tries and
/// PORT_RULE_TABLE: what to do, an optional condition, and the entry's hit
/// counters, which the program adds to atomically.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleValue {
    /// [`ACTION_PASS`], [`ACTION_DROP`] or [`ACTION_MONITOR`].
    pub action: u8,
    /// 0: no condition. Otherwise the entry's action applies only to this
    /// protocol ([`ipproto::TCP`], [`ipproto::UDP`] or [`ipproto::ICMP`],
    /// which also stands for ICMPv6) and, for TCP and UDP, destination
    /// ports `port_first..=port_last`.
    pub cond_proto: u8,
    /// Applied when the condition does not hold: the action of the nearest
    /// enclosing entry without a condition, or [`ACTION_NONE`].
    pub else_action: u8,
    /// Reserved, zero.
    pub reserved: u8,
    /// First destination port of the condition.
    pub port_first: u16,
    /// Last destination port of the condition.
    pub port_last: u16,
    /// Packets that matched the entry.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
}

impl RuleValue {
    /// An entry with `action` and no condition.
    pub const fn new(action: u8) -> Self {
        Self {
            action,
            cond_proto: 0,
            else_action: ACTION_NONE,
            reserved: 0,
            port_first: 0,
            port_last: 0,
            packets: 0,
            bytes: 0,
        }
    }
}

/// Counters of one traffic class on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProtoStats {
    /// Packets seen.
    pub packets: u64,
    /// Bytes seen (frame length as the program saw it).
    pub bytes: u64,
    /// Packets dropped.
    pub drops: u64,
}

/// The single STATS entry: counters per traffic class, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounters {
    /// Indexed by the `CLASS_*` constants.
    pub classes: [ProtoStats; CLASS_COUNT],
}

/// The single EVENT_COUNTERS entry: the event budget and what it cost, on
/// one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounters {
    /// Start of the current one-second budget window (`bpf_ktime_get_ns`).
    pub window_start_ns: u64,
    /// Events attempted in the current window.
    pub window_events: u64,
    /// Events written to the ring buffer.
    pub delivered: u64,
    /// Events not written because the ring buffer was full.
    pub lost_ring_full: u64,
    /// Events not written because the per-CPU budget was spent.
    pub lost_budget: u64,
}

/// What a signal reports; see [`SignalRecord::kind`].
pub mod signal {
    /// One source sent `syn_threshold` bare SYNs within the SYN window,
    /// with a SYN-only ratio at or above the configured one.
    pub const SYN_SOURCE: u8 = 1;
    /// One destination address and port received `target_syn_threshold`
    /// bare SYNs within the SYN window, SYN-only ratio as above.
    pub const SYN_TARGET: u8 = 2;
    /// One source probed `port_threshold` distinct destination ports
    /// (bins) within the scan window.
    pub const PORT_SCAN: u8 = 3;
    /// One source probed `host_threshold` distinct destination hosts
    /// (bins) within the scan window.
    pub const HOST_SWEEP: u8 = 4;
    /// One source sent `udp_threshold` UDP packets within the UDP window.
    pub const UDP_FLOOD: u8 = 5;
    /// One source sent `icmp_threshold` ICMP packets within the ICMP window.
    pub const ICMP_FLOOD: u8 = 6;
}

/// SourceState::signalled / TargetState::signalled bit for a signal kind.
#[inline(always)]
pub const fn signal_bit(kind: u8) -> u32 {
    1 << (kind as u32)
}

/// The single DETECT_CONFIG entry: what the datapath tracks and when it
/// signals. A threshold of 0 turns that signal off.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectConfig {
    /// 0: no tracking at all.
    pub enabled: u32,
    /// SYN-only ratio in thousandths: SYNs / (SYNs + ACK-bearing packets).
    pub syn_ratio_permille: u32,
    /// Length of the SYN window (per source and per target).
    pub syn_window_ns: u64,
    /// Length of the scan window (ports and hosts).
    pub scan_window_ns: u64,
    /// Length of the UDP flood window.
    pub udp_window_ns: u64,
    /// Length of the ICMP flood window.
    pub icmp_window_ns: u64,
    /// Bare SYNs from one source per SYN window.
    pub syn_threshold: u32,
    /// Bare SYNs to one destination and port per SYN window.
    pub target_syn_threshold: u32,
    /// Distinct destination port bins per source per scan window.
    pub port_threshold: u32,
    /// Distinct destination host bins per source per scan window.
    pub host_threshold: u32,
    /// UDP packets per source per UDP window.
    pub udp_threshold: u32,
    /// ICMP packets per source per ICMP window.
    pub icmp_threshold: u32,
}

/// Detection state of one source address, in SOURCES.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceState {
    /// Start of the SYN window.
    pub syn_start_ns: u64,
    /// Start of the scan window.
    pub scan_start_ns: u64,
    /// Start of the UDP window.
    pub udp_start_ns: u64,
    /// Start of the ICMP window.
    pub icmp_start_ns: u64,
    /// Bare SYNs (SYN without ACK) in the SYN window.
    pub syn: u32,
    /// TCP packets with ACK in the SYN window.
    pub ack: u32,
    /// UDP packets in the UDP window.
    pub udp: u32,
    /// ICMP packets in the ICMP window.
    pub icmp: u32,
    /// Distinct port bins set in the scan window.
    pub ports: u32,
    /// Distinct host bins set in the scan window.
    pub hosts: u32,
    /// `signal_bit`s of the signals sent in the current windows.
    pub signalled: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Destination port set ([`PORT_BINS`] bits).
    pub port_bits: [u64; 8],
    /// Destination host set ([`HOST_BINS`] bits).
    pub host_bits: [u64; 4],
    /// The last eight distinct probed ports (a sample), ring-indexed by
    /// `ports`.
    pub sample_ports: [u16; 8],
}

/// Key of TARGETS: a destination address and TCP port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TargetKey {
    /// Destination address (IPv4 as `::ffff:a.b.c.d`).
    pub addr: [u8; 16],
    /// Destination port.
    pub port: u16,
    /// Reserved, zero.
    pub reserved: u16,
}

/// SYN flood state of one destination address and port, in TARGETS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetState {
    /// Start of the SYN window.
    pub syn_start_ns: u64,
    /// Bare SYNs in the window.
    pub syn: u32,
    /// TCP packets with ACK in the window.
    pub ack: u32,
    /// Distinct source bins of the SYNs in the window.
    pub sources: u32,
    /// `signal_bit`s sent in the current window.
    pub signalled: u32,
    /// Source set ([`HOST_BINS`] bits).
    pub source_bits: [u64; 4],
    /// The last four distinct SYN sources (a sample).
    pub sample_sources: [[u8; 16]; 4],
}

/// A source or target that crossed a threshold, as written to SIGNALS.
/// Every counter is a copy of the state at the moment of crossing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalRecord {
    /// `bpf_ktime_get_ns()` at the crossing.
    pub timestamp_ns: u64,
    /// Start of the window the threshold was crossed in.
    pub window_start_ns: u64,
    /// Source address (IPv4 as `::ffff:a.b.c.d`); the crossing packet's
    /// source for target signals.
    pub src_addr: [u8; 16],
    /// Destination address of the crossing packet.
    pub dst_addr: [u8; 16],
    /// A [`signal`] kind.
    pub kind: u8,
    /// IP protocol of the crossing packet.
    pub protocol: u8,
    /// Destination port of the crossing packet (0 for ICMP).
    pub dst_port: u16,
    /// Interface index.
    pub ifindex: u32,
    /// Bare SYNs in the SYN window (source or target).
    pub syn: u32,
    /// ACK-bearing TCP packets in the SYN window.
    pub ack: u32,
    /// UDP packets in the UDP window.
    pub udp: u32,
    /// ICMP packets in the ICMP window.
    pub icmp: u32,
    /// Distinct port bins in the scan window.
    pub ports: u32,
    /// Distinct host bins in the scan window.
    pub hosts: u32,
    /// Distinct source bins (target signals).
    pub sources: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Sampled destination ports (0: empty slot).
    pub sample_ports: [u16; 8],
    /// Sampled sources (target signals; all-zero: empty slot).
    pub sample_sources: [[u8; 16]; 4],
}

impl SignalRecord {
    /// Size of a record in the ring buffer.
    pub const SIZE: usize = size_of::<Self>();

    /// Reads a record from the bytes of a ring buffer entry; `None` when the
    /// entry is too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        // SAFETY: the slice holds at least SIZE bytes of a `#[repr(C)]`
        // plain-data type valid for every bit pattern; read_unaligned makes
        // no alignment assumption.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }
}

/// The single DETECT_COUNTERS entry, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectCounters {
    /// Sources that entered SOURCES (each may have evicted the least
    /// recently seen one once the map was full).
    pub sources_new: u64,
    /// Targets that entered TARGETS.
    pub targets_new: u64,
    /// Signals written to SIGNALS.
    pub signals: u64,
    /// Signals lost because SIGNALS was full.
    pub signals_lost: u64,
}

/// Address family of an event record: IPv4.
pub const FAMILY_IPV4: u8 = 4;
/// Address family of an event record: IPv6.
pub const FAMILY_IPV6: u8 = 6;

/// A packet the program dropped or monitored, as written to EVENTS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketEventRecord {
    /// `bpf_ktime_get_ns()` when the packet was seen (CLOCK_MONOTONIC).
    pub timestamp_ns: u64,
    /// Source address; IPv4 uses the first four bytes, the rest are zero.
    pub src_addr: [u8; 16],
    /// Destination address; IPv4 uses the first four bytes.
    pub dst_addr: [u8; 16],
    /// Frame length in bytes.
    pub pkt_len: u32,
    /// Interface index the packet arrived on.
    pub ifindex: u32,
    /// Source port (host byte order), 0 where the packet has none.
    pub src_port: u16,
    /// Destination port (host byte order), 0 where the packet has none.
    pub dst_port: u16,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// IP protocol number (IPv6: the next header).
    pub protocol: u8,
    /// TCP flags (see [`tcp_flags`]), 0 for other protocols.
    pub tcp_flags: u8,
    /// [`ACTION_DROP`] or [`ACTION_MONITOR`].
    pub action: u8,
    /// VLAN id of the outer tag, 0 when untagged.
    pub vlan_id: u16,
    /// Reserved, zero.
    pub reserved: [u8; 6],
}

impl PacketEventRecord {
    /// Size of a record in the ring buffer.
    pub const SIZE: usize = size_of::<Self>();

    /// Reads a record from the bytes of a ring buffer entry; `None` when the
    /// entry is too short to hold one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < Self::SIZE {
            return None;
        }
        // SAFETY: the slice holds at least SIZE bytes, the type is
        // `#[repr(C)]` plain data for which every bit pattern is valid, and
        // `read_unaligned` makes no alignment assumption.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }
}

// Layout checks: the kernel and user space compile these types separately.
const _: () = {
    assert!(size_of::<RuleValue>() == 24);
    assert!(offset_of!(RuleValue, port_first) == 4);
    assert!(offset_of!(RuleValue, packets) == 8);
    assert!(offset_of!(RuleValue, bytes) == 16);
    assert!(size_of::<ProtoStats>() == 24);
    assert!(size_of::<TrafficCounters>() == 24 * CLASS_COUNT);
    assert!(size_of::<EventCounters>() == 40);
    assert!(size_of::<PacketEventRecord>() == 64);
    assert!(align_of::<PacketEventRecord>() == 8);
    assert!(offset_of!(PacketEventRecord, src_addr) == 8);
    assert!(offset_of!(PacketEventRecord, dst_addr) == 24);
    assert!(offset_of!(PacketEventRecord, pkt_len) == 40);
    assert!(offset_of!(PacketEventRecord, ifindex) == 44);
    assert!(offset_of!(PacketEventRecord, src_port) == 48);
    assert!(offset_of!(PacketEventRecord, dst_port) == 50);
    assert!(offset_of!(PacketEventRecord, family) == 52);
    assert!(offset_of!(PacketEventRecord, protocol) == 53);
    assert!(offset_of!(PacketEventRecord, tcp_flags) == 54);
    assert!(offset_of!(PacketEventRecord, action) == 55);
    assert!(offset_of!(PacketEventRecord, vlan_id) == 56);
    assert!(offset_of!(EventCounters, lost_budget) == 32);
    assert!(CLASS_TOTAL == CLASS_COUNT - 1);
    assert!(size_of::<DetectConfig>() == 64);
    assert!(offset_of!(DetectConfig, syn_window_ns) == 8);
    assert!(size_of::<SourceState>() == 176);
    assert!(offset_of!(SourceState, port_bits) == 64);
    assert!(size_of::<TargetKey>() == 20);
    assert!(size_of::<TargetState>() == 120);
    assert!(size_of::<SignalRecord>() == 168);
    assert!(offset_of!(SignalRecord, kind) == 48);
    assert!(offset_of!(SignalRecord, syn) == 56);
    assert!(offset_of!(SignalRecord, sample_ports) == 88);
    assert!(offset_of!(SignalRecord, sample_sources) == 104);
    assert!(size_of::<DetectCounters>() == 32);
    assert!(PORT_BINS == 64 * 8 && HOST_BINS == 64 * 4);
};

#[cfg(feature = "user")]
mod pod {
    use super::{
        DetectConfig, DetectCounters, EventCounters, PacketEventRecord, ProtoStats, RuleValue,
        SignalRecord, SourceState, TargetKey, TargetState, TrafficCounters,
    };

    // SAFETY: each type is `#[repr(C)]`, made only of integers and integer
    // arrays with no implicit padding (sizes checked above), so every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for RuleValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ProtoStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TrafficCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for EventCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PacketEventRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DetectConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for DetectCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SignalRecord {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SourceState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TargetKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TargetState {}
}
