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
    /// `HashMap<u32, BlocklistValue>`: exact IPv4 source → action.
    pub const BLOCKLIST: &str = "BLOCKLIST";
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

/// Default number of BLOCKLIST entries.
pub const DEFAULT_BLOCKLIST_MAX_ENTRIES: u32 = 10_000;
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

/// Value of a BLOCKLIST entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlocklistValue {
    /// One of [`ACTION_PASS`], [`ACTION_DROP`], [`ACTION_MONITOR`].
    pub action: u8,
    /// Reserved, zero.
    pub reserved: [u8; 7],
}

impl BlocklistValue {
    /// An entry with the given action.
    pub const fn new(action: u8) -> Self {
        Self {
            action,
            reserved: [0; 7],
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
    assert!(size_of::<BlocklistValue>() == 8);
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
    use super::{BlocklistValue, EventCounters, PacketEventRecord, ProtoStats, TrafficCounters};

    // SAFETY: each type is `#[repr(C)]`, made only of integers and integer
    // arrays with no implicit padding (sizes checked above), so every bit
    // pattern is a valid value.
    unsafe impl aya::Pod for BlocklistValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ProtoStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TrafficCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for EventCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PacketEventRecord {}
}
