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
};

#[cfg(feature = "user")]
mod pod {
    use super::{EventCounters, PacketEventRecord, ProtoStats, RuleValue, TrafficCounters};

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
}
