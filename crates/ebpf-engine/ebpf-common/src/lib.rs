//! The contract between Ironpost's XDP program and user space.
//!
//! Everything both sides must agree on lives here and only here: map names,
//! key and value layouts, event records, action codes and traffic classes.
//! Every type is `#[repr(C)]` with its size and field offsets checked at
//! compile time, so a change on one side that the other side does not know
//! about fails the build instead of corrupting data.
#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

use core::mem::{align_of, offset_of, size_of};

pub mod hash;

/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "ironpost_xdp";
/// Name of the TC egress program that watches what the host refuses.
pub const EGRESS_PROGRAM_NAME: &str = "ironpost_egress";

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
    /// `Array<u64>` of [`SRC16_V4_WORDS`](super::SRC16_V4_WORDS): the IPv4
    /// source summary, four bits per /16 (the top 16 bits of the address),
    /// bits `4 * (n % 16)` and up of word `n / 16`: [`SUMMARY_ALLOW`]
    /// (super::SUMMARY_ALLOW) when an allow entry covers part of the /16
    /// `n`, [`SUMMARY_EXACT`](super::SUMMARY_EXACT) when BLOCKLIST has an
    /// address in it, [`SUMMARY_PREFIX`](super::SUMMARY_PREFIX) when a
    /// SRC_V4 prefix covers part of it. The program looks up only the maps
    /// whose bit is set for the source's /16.
    pub const SRC16_V4: &str = "SRC16_V4";
    /// `PerCpuArray<TrafficCounters>` of [`STATS_SLOTS`](super::STATS_SLOTS)
    /// entries: per-class counters of the interfaces whose ifindex has that
    /// remainder (see [`stats_slot`](super::stats_slot)).
    pub const STATS: &str = "STATS";
    /// `RingBuf` of [`PacketEventRecord`](super::PacketEventRecord).
    pub const EVENTS: &str = "EVENTS";
    /// `PerCpuArray<EventCounters>` with one entry: event budget and losses.
    pub const EVENT_COUNTERS: &str = "EVENT_COUNTERS";
    /// `Array<Bucket<SourceKey, SourceState>>`, a [tracking
    /// table](super::Slot): detection state per source address.
    pub const SOURCES: &str = "SOURCES";
    /// `Array<Bucket<TargetKey, TargetState>>`, a [tracking
    /// table](super::Slot): SYN flood state per destination address and
    /// TCP port.
    pub const TARGETS: &str = "TARGETS";
    /// `RingBuf` of [`SignalRecord`](super::SignalRecord).
    pub const SIGNALS: &str = "SIGNALS";
    /// `Array<DetectConfig>` with one entry: windows and thresholds.
    pub const DETECT_CONFIG: &str = "DETECT_CONFIG";
    /// `PerCpuArray<DetectCounters>` with one entry: signals and losses.
    pub const DETECT_COUNTERS: &str = "DETECT_COUNTERS";
    /// `Array<Bucket<FragKey, FragState>>`, a [tracking
    /// table](super::Slot): the L4 fields of first fragments, applied to
    /// the fragments that follow them.
    pub const FRAGS: &str = "FRAGS";
    /// `Array<Bucket<SourceKey, SlowState>>`, a [tracking
    /// table](super::Slot): the long-horizon refusal counts of remote
    /// addresses too quiet to be admitted into SOURCES (slow scans).
    pub const SLOW: &str = "SLOW";
    /// `PerCpuArray<ParseCounters>` with one entry: fragments and
    /// malformed frames, by what was done with them.
    pub const PARSE_COUNTERS: &str = "PARSE_COUNTERS";
    /// `PerCpuArray<Admission>` with one entry: the per-CPU sketch that
    /// decides which sources and targets earn per-key state.
    pub const ADMISSION: &str = "ADMISSION";
}

/// Name of the read-only global holding the seed of every tracking hash
/// (the admission sketch's cells, the tracking tables' buckets); the loader
/// sets a random one so that nobody can aim collisions.
pub const ADMIT_SEED_GLOBAL: &str = "ADMIT_SEED";
/// Name of the read-only global holding `buckets - 1` of SOURCES, TARGETS,
/// FRAGS and SLOW, in [`TABLE_SOURCES`], [`TABLE_TARGETS`], [`TABLE_FRAGS`],
/// [`TABLE_SLOW`] order; the loader sets it with the tables' sizes.
pub const TABLE_MASKS_GLOBAL: &str = "TABLE_MASKS";
/// Index of SOURCES in the `TABLE_MASKS` global.
pub const TABLE_SOURCES: usize = 0;
/// Index of TARGETS in the `TABLE_MASKS` global.
pub const TABLE_TARGETS: usize = 1;
/// Index of FRAGS in the `TABLE_MASKS` global.
pub const TABLE_FRAGS: usize = 2;
/// Index of SLOW in the `TABLE_MASKS` global.
pub const TABLE_SLOW: usize = 3;
/// Entries of the `TABLE_MASKS` global.
pub const TABLES: usize = 4;
/// Slots per bucket of a tracking table.
pub const TABLE_WAYS: usize = 2;

/// Buckets of a tracking table that holds at least `entries` keys: the
/// next power of two, in buckets of [`TABLE_WAYS`] slots.
pub const fn table_buckets(entries: u32) -> u32 {
    let slots = if entries <= TABLE_WAYS as u32 {
        TABLE_WAYS as u32
    } else {
        entries.next_power_of_two()
    };
    slots / TABLE_WAYS as u32
}

/// One slot of a tracking table (SOURCES, TARGETS, FRAGS): an `Array` of
/// [`Bucket`]s, 2-way set-associative. A key lives in the bucket its seeded
/// hash selects; a new key takes an empty slot there, else the one seen
/// least recently (of two seen in the same tick of the coarse clock, the
/// one with fewer hits in it). Unlike an LRU hash map, finding a key costs one inlined
/// array lookup and two key comparisons, and a new key costs a few stores
/// (no allocation, no lock), whatever the churn.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot<K, V> {
    /// Recency: `bpf_ktime_get_coarse_ns()` when the key was last seen,
    /// plus its hits since that tick (FRAGS: when it was stored); 0: the
    /// slot is empty.
    pub seen_ns: u64,
    /// The key, as native-endian words.
    pub key: K,
    /// The key's state.
    pub value: V,
}

/// A bucket of a tracking table: the slots one key may occupy.
pub type Bucket<K, V> = [Slot<K, V>; TABLE_WAYS];

/// Key of SOURCES: a source address as four native-endian words (IPv4 as
/// `::ffff:a.b.c.d`).
pub type SourceKey = [u32; 4];

/// Default capacity of FRAGS (datagrams whose first fragment is remembered).
pub const DEFAULT_TRACKED_FRAGMENTS: u32 = 8_192;
/// IPv6 extension headers walked at most before the L4 header; a longer
/// chain is malformed.
pub const MAX_IPV6_EXT_HEADERS: usize = 8;
/// Columns per row of the admission sketch (a power of two).
pub const ADMIT_COLUMNS: usize = 2_048;
/// Rows of the admission sketch.
pub const ADMIT_ROWS: usize = 2;
/// Cells per block of the admission sketch: a key's hash picks one block
/// (64 bytes, a cache line) and one cell of each row within it, so adding
/// a packet touches one line, not one per row.
pub const ADMIT_BLOCK_CELLS: usize = 16;
/// The admission sketch's epoch is `now >> ADMIT_EPOCH_SHIFT` ns: about
/// 4.3 s; counts restart in every epoch.
pub const ADMIT_EPOCH_SHIFT: u32 = 32;
/// Bins of [`Admission::admitted_bits`] (one cache line).
pub const ADMITTED_BITS: usize = 512;
/// Default packets a source (or target) must send within one epoch, on one
/// CPU, beyond twice the mean load of a sketch cell, before it gets per-key
/// state. Under a spoofed flood the mean load rises, so one-packet sources
/// never pass while a source that stands out of the flood still does.
pub const DEFAULT_ADMIT_PACKETS: u32 = 4;
/// Default new SOURCES and TARGETS entries per second per CPU at most.
pub const DEFAULT_ADMIT_PER_SEC: u32 = 20_000;

/// The L4 header length a fragment must not reach back into, and a first
/// fragment must hold whole: TCP 20, UDP 8, ICMP and ICMPv6 8 (RFC 1858,
/// RFC 3128); 0 for protocols the program does not look into.
#[inline(always)]
pub const fn l4_min_len(protocol: u8) -> usize {
    match protocol {
        ipproto::TCP => 20,
        ipproto::UDP | ipproto::ICMP | ipproto::ICMPV6 => 8,
        _ => 0,
    }
}

/// Indexes of [`ParseCounters::counts`]: what the program did with a frame
/// that is fragmented or malformed.
pub mod parse {
    /// A first fragment, remembered in FRAGS.
    pub const FRAG_FIRST: usize = 0;
    /// A later fragment that found its first fragment's L4 fields.
    pub const FRAG_FOLLOWED: usize = 1;
    /// A later fragment with no remembered first fragment: address rules
    /// only, then passed (the host cannot reassemble it without the first
    /// fragment, which is judged whole).
    pub const FRAG_ORPHAN: usize = 2;
    /// A first fragment too short for its L4 header (tiny fragment), or a
    /// later fragment of one: dropped.
    pub const FRAG_TINY: usize = 3;
    /// A later fragment whose offset reaches back into the L4 header
    /// (RFC 3128): dropped.
    pub const FRAG_BAD_OFFSET: usize = 4;
    /// An unfragmented TCP, UDP or ICMP packet whose L4 header is cut
    /// short or invalid (TCP data offset below 5): dropped.
    pub const L4_MALFORMED: usize = 5;
    /// An IPv6 extension header chain longer than
    /// [`MAX_IPV6_EXT_HEADERS`](super::MAX_IPV6_EXT_HEADERS) or cut short:
    /// dropped.
    pub const EXT_CHAIN_BAD: usize = 6;
    /// An IPv4 or IPv6 header that cannot be read (cut short, bad version
    /// or IHL): nothing is known, passed as OTHER.
    pub const L3_UNREADABLE: usize = 7;
    /// Number of counters.
    pub const COUNT: usize = 8;
    /// The counters' names, by index, for output.
    pub const NAMES: [&str; COUNT] = [
        "frag_first",
        "frag_followed",
        "frag_orphan",
        "frag_tiny",
        "frag_bad_offset",
        "l4_malformed",
        "ext_chain_bad",
        "l3_unreadable",
    ];
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
/// `RuleValue::cond_flags` bit: the condition holds only for bare SYNs
/// (SYN without ACK), the packets a SYN flood is made of.
pub const COND_SYN_ONLY: u8 = 1;
/// `RuleValue::cond_flags` bit: the condition holds only for TCP RSTs, the
/// packets of a RST flood.
pub const COND_RST_ONLY: u8 = 2;
/// POLICY_FLAGS bit: PORT_RULES has entries.
pub const POLICY_PORTS: u32 = 1 << 7;
/// Words of SRC16_V4: four bits per /16 of the IPv4 space.
pub const SRC16_V4_WORDS: u32 = (1 << 16) * 4 / 64;
/// SRC16_V4 bit: ALLOW_V4 has an entry covering part of the /16.
pub const SUMMARY_ALLOW: u64 = 1;
/// SRC16_V4 bit: BLOCKLIST has an address in the /16.
pub const SUMMARY_EXACT: u64 = 2;
/// SRC16_V4 bit: SRC_V4 has a prefix covering part of the /16.
pub const SUMMARY_PREFIX: u64 = 4;
/// Default size of the EVENTS ring buffer in bytes (a power of two, a
/// multiple of the page size).
pub const DEFAULT_RING_BUFFER_SIZE: u32 = 256 * 1024;
/// Default event budget: events per second per CPU.
pub const DEFAULT_EVENT_BUDGET_PER_SEC: u32 = 2_000;

/// Default capacity of SOURCES (tracked source addresses).
pub const DEFAULT_TRACKED_SOURCES: u32 = 65_536;
/// Capacity of TARGETS (tracked destination address and port pairs).
pub const TRACKED_TARGETS: u32 = 4_096;
/// Capacity of SLOW (remote addresses in the slow-scan tier).
pub const TRACKED_SLOW: u32 = 32_768;
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
    /// IPv6 Hop-by-Hop Options.
    pub const HOPOPTS: u8 = 0;
    /// IPv6 Routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Authentication Header.
    pub const AH: u8 = 51;
    /// IPv6 Destination Options.
    pub const DSTOPTS: u8 = 60;
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
    /// [`COND_SYN_ONLY`]: the condition also needs a bare SYN (TCP);
    /// [`COND_RST_ONLY`]: a RST.
    pub cond_flags: u8,
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
            cond_flags: 0,
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

/// Index of `DetectConfig::target_threshold` for bare SYNs onto one
/// address and port; 0 to 2 are the traffic classes (`CLASS_TCP`: RSTs,
/// UDP, ICMP) of packets from untracked sources.
pub const LIMIT_SYN: usize = 4;

/// Entries of STATS (a power of two).
pub const STATS_SLOTS: u32 = 64;

/// The STATS slot that counts the frames of interface `ifindex`: its
/// remainder, so the program needs no lookup of its own to find it (a
/// lookup added a branch that took the verifier past its limit). Two
/// attached interfaces with the same remainder share a slot; user space
/// reports them together.
#[inline(always)]
pub const fn stats_slot(ifindex: u32) -> u32 {
    ifindex & (STATS_SLOTS - 1)
}

/// A STATS entry: counters per traffic class of one interface, on one CPU.
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
    /// The host refused `refused_threshold` distinct ports (bins) of one
    /// remote address within the scan window: TCP RSTs, ICMP and ICMPv6
    /// port and protocol unreachables, seen on egress.
    pub const REFUSED_SCAN: u8 = 7;
    /// The host refused `ack_threshold` ACK-bearing TCP packets of one
    /// remote address within the ACK window: RSTs without ACK, which a host
    /// sends only to a segment that acknowledges something no connection
    /// of its own sent (an ACK flood, an ACK scan), seen on egress.
    pub const ACK_FLOOD: u8 = 8;
    /// One source sent `rst_threshold` TCP RSTs within the RST window.
    pub const RST_FLOOD: u8 = 9;
    /// One destination address received `target_threshold[CLASS_UDP]` UDP packets
    /// from sources without tracking state (spoofed or new ones) within
    /// the UDP window.
    pub const UDP_TARGET: u8 = 10;
    /// The same for ICMP and ICMPv6 (`target_threshold[CLASS_ICMP]`).
    pub const ICMP_TARGET: u8 = 11;
    /// The host refused `slow_threshold` distinct ports (bins) of one
    /// remote address, too quiet for SOURCES, within the slow window.
    pub const SLOW_SCAN: u8 = 12;
    /// One of the host's addresses refused `distributed_ports` distinct
    /// ports (bins) to at least `distributed_sources` remote addresses
    /// (bins) within the scan window: many sources, a few ports each.
    pub const DISTRIBUTED_SCAN: u8 = 13;
    /// One source sent `protocol_threshold` distinct IP protocols other
    /// than TCP, UDP and ICMP within the scan window (`nmap -sO`).
    pub const PROTOCOL_SCAN: u8 = 14;
    /// One source sent `port_threshold` first fragments too short for
    /// their TCP or UDP header (dropped as tiny) within the scan window: a
    /// scan hidden in fragments (`nmap -f`).
    pub const TINY_FRAGMENTS: u8 = 15;
    /// One destination address received `target_threshold[CLASS_TCP]` TCP RSTs
    /// from sources without tracking state (spoofed or new ones) within
    /// the RST window.
    pub const RST_TARGET: u8 = 16;
    /// One of the host's addresses refused `ack_target_threshold`
    /// ACK-bearing segments (RSTs without ACK it sent, seen on egress) of
    /// remote addresses without tracking state within the ACK window.
    pub const ACK_TARGET: u8 = 17;
}

/// SourceState::signalled / TargetState::signalled bit for a signal kind.
#[inline(always)]
pub const fn signal_bit(kind: u8) -> u32 {
    1 << (kind as u32)
}

/// The single DETECT_CONFIG entry: what the datapath tracks and when it
/// signals. A threshold of 0 turns that signal off. The fields the egress
/// watcher reads for every reply come first, so they share a cache line or
/// two wherever the kernel places the value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectConfig {
    /// 0: no tracking at all.
    pub enabled: u32,
    /// Not 0 when tracking is on and the egress watcher has a signal to
    /// count (refused, ACK, slow or distributed scans): its one test.
    pub replies: u32,
    /// Packets a source or target sends within one admission epoch on one
    /// CPU before it gets SOURCES or TARGETS state (1: at once).
    pub admit_packets: u32,
    /// The slow tier rests on a CPU while that CPU refuses remotes without
    /// SOURCES state at this many a second or more, in the current or the
    /// previous window of about 17 ms (a flood is on: its replies would
    /// cost a SLOW lookup each).
    pub slow_gate: u32,
    /// Distinct ports (bins) the host refused one remote address without
    /// SOURCES state per slow window (0: off).
    pub slow_threshold: u32,
    /// Distinct ports (bins) the host refused, from all remotes together,
    /// per scan window, for a distributed scan (0: off).
    pub distributed_ports: u32,
    /// Distinct ports (bins) the host refused one remote address per scan
    /// window (0: off).
    pub refused_threshold: u32,
    /// ACK-bearing packets the host refused one remote address per ACK
    /// window (0: off).
    pub ack_threshold: u32,
    /// SYN-only ratio in thousandths: SYNs / (SYNs + ACK-bearing packets).
    pub syn_ratio_permille: u32,
    /// New SOURCES and TARGETS entries per second per CPU at most (0: no
    /// limit).
    pub admit_per_sec: u32,
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
    /// Length of the ACK flood window.
    pub ack_window_ns: u64,
    /// Length of the RST flood window.
    pub rst_window_ns: u64,
    /// RSTs from one source per RST window (0: off).
    pub rst_threshold: u32,
    /// ACK-bearing segments of untracked remotes that one of the host's
    /// addresses refused per ACK window (0: off).
    pub ack_target_threshold: u32,
    /// New SLOW entries per second per CPU at most.
    pub slow_per_sec: u32,
    /// Distinct remote addresses (bins) those refusals went to, at least.
    pub distributed_sources: u32,
    /// Length of the slow-scan window.
    pub slow_window_ns: u64,
    /// Distinct IP protocols other than TCP, UDP and ICMP one source may
    /// send per scan window (0: off).
    pub protocol_threshold: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Packets from untracked sources to one address per window, by
    /// traffic class (`CLASS_TCP`: RSTs; UDP; ICMP), and at [`LIMIT_SYN`]
    /// bare SYNs to one address and port: the first count that signals, the
    /// lowest of the detector's and the host groups' thresholds; each
    /// crossing doubles the target's next one. 0: off.
    pub target_threshold: [u32; 8],
    /// UDP bytes (frames as received) per source per UDP window (0: off).
    pub udp_bytes_threshold: u64,
    /// ICMP bytes per source per ICMP window (0: off).
    pub icmp_bytes_threshold: u64,
    /// Bytes from untracked sources to one address per window, by class
    /// as `target_threshold` (UDP and ICMP only; the lowest, doubling as
    /// it does), 0: off.
    pub target_bytes_threshold: [u64; 4],
    /// The window of those counts, by class as `target_threshold`.
    pub target_window_ns: [u64; 4],
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
    /// Start of the refusal window (the scan window's length).
    pub refused_start_ns: u64,
    /// Distinct port bins the host refused in the refusal window.
    pub refused: u32,
    /// Connections the host accepted (SYN-ACKs sent) in that window.
    pub accepted: u32,
    /// Refused port set ([`PORT_BINS`] bits).
    pub refused_bits: [u64; 8],
    /// The last eight distinct refused ports, ring-indexed by `refused`.
    pub refused_ports: [u16; 8],
    /// Start of the ACK flood window.
    pub ack_start_ns: u64,
    /// Start of the RST flood window.
    pub rst_start_ns: u64,
    /// ACK-bearing packets the host refused (RSTs without ACK it sent) in
    /// the ACK window.
    pub ack_refused: u32,
    /// RSTs in the RST window.
    pub rst: u32,
    /// Distinct IP protocols other than TCP, UDP and ICMP in the scan
    /// window.
    pub protocols: u32,
    /// Tiny first fragments (dropped) in the scan window.
    pub tiny: u32,
    /// Protocol set (256 bits, one per protocol number).
    pub protocol_bits: [u64; 4],
    /// UDP bytes (frames as received) in the UDP window.
    pub udp_bytes: u64,
    /// ICMP bytes in the ICMP window.
    pub icmp_bytes: u64,
}

/// Long-horizon refusal state of one remote address, in SLOW.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlowState {
    /// Start of the slow window.
    pub start_ns: u64,
    /// Distinct port bins the host refused in the window.
    pub refused: u32,
    /// `signal_bit`s sent in the current window.
    pub signalled: u32,
    /// Refused port set ([`PORT_BINS`] bits).
    pub bits: [u64; 8],
    /// The last eight distinct refused ports, ring-indexed by `refused`.
    pub ports: [u16; 8],
}

/// Key of TARGETS: a destination address as four native-endian words (IPv4
/// as `::ffff:a.b.c.d`), then the destination TCP port, or
/// [`TARGET_PROTOCOL`] `|` the IP protocol for a whole address's UDP or
/// ICMP from untracked sources.
pub type TargetKey = [u32; 5];

/// Marks a protocol target in the last word of a [`TargetKey`] (above any
/// port).
pub const TARGET_PROTOCOL: u32 = 1 << 16;
/// Marks the refusals of one of the host's own addresses (the distributed
/// scan count) in the last word of a [`TargetKey`].
pub const TARGET_REFUSALS: u32 = 1 << 17;
/// The fifth word of a TARGETS key that counts the ACK-bearing segments one
/// of the host's addresses refused (RSTs without ACK it sent) to remotes
/// without tracking state.
pub const TARGET_ACK_REFUSALS: u32 = 1 << 18;

/// Flood state of one destination address and port (bare SYNs), or of one
/// address and protocol (packets from untracked sources), in TARGETS.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetState {
    /// Start of the window (SYN, UDP or ICMP, as the key says).
    pub syn_start_ns: u64,
    /// Bare SYNs in the window; for a protocol target, its packets from
    /// untracked sources.
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
    /// Refusals target: distinct refused port bins in the window.
    pub ports: u32,
    /// The count that signals next in this window: the lowest threshold
    /// at the window's start, doubled at each crossing.
    pub limit: u32,
    /// Refusals target: refused port set ([`PORT_BINS`] bits).
    pub port_bits: [u64; 8],
    /// Protocol target: bytes in the window.
    pub bytes: u64,
    /// The byte count that signals next, as `limit`.
    pub limit_bytes: u64,
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
    /// RSTs in the RST window.
    pub rst: u32,
    /// Sampled destination ports (0: empty slot).
    pub sample_ports: [u16; 8],
    /// Sampled sources (target signals; all-zero: empty slot).
    pub sample_sources: [[u8; 16]; 4],
    /// UDP or ICMP bytes in the window (UDP and ICMP flood signals).
    pub bytes: u64,
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
    /// Sources that entered SOURCES (each may have taken the slot of the
    /// less recently seen source of its bucket).
    pub sources_new: u64,
    /// Targets that entered TARGETS.
    pub targets_new: u64,
    /// Signals written to SIGNALS.
    pub signals: u64,
    /// Signals lost because SIGNALS was full.
    pub signals_lost: u64,
    /// Tracked packets whose source had not yet earned SOURCES state.
    pub sources_deferred: u64,
    /// New sources or targets refused because the per-CPU admission rate
    /// was spent.
    pub admit_over_budget: u64,
}

/// Key of FRAGS: one datagram, as native-endian words: the source address
/// (words 0-3; IPv4 in word 0, as read from the packet), the destination
/// address (words 4-7, likewise), the IP identification (word 8; IPv4: 16
/// bits, IPv6: the Fragment header's 32), then the IPv4 protocol or the
/// Fragment header's next header, with the family ([`FAMILY_IPV4`] or
/// [`FAMILY_IPV6`]) shifted left by 8 (word 9).
pub type FragKey = [u32; 10];

/// Value of FRAGS: what the first fragment said about the datagram.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragState {
    /// Source port of the first fragment.
    pub src_port: u16,
    /// Destination port of the first fragment.
    pub dst_port: u16,
    /// TCP flags of the first fragment.
    pub tcp_flags: u8,
    /// ICMP type of the first fragment.
    pub icmp_type: u8,
    /// L4 protocol (for IPv6, behind the rest of the header chain).
    pub protocol: u8,
    /// 1: the first fragment was malformed (tiny): drop the rest too.
    pub drop: u8,
}

/// The single PARSE_COUNTERS entry, on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseCounters {
    /// Indexed by the [`parse`] constants.
    pub counts: [u64; parse::COUNT],
}

/// The single ADMISSION entry, on one CPU: a count-min sketch of packets
/// per source (and per target) in the current epoch, and the admission
/// rate budget.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Admission {
    /// Start of the current one-second admission budget window.
    pub window_start_ns: u64,
    /// Admissions in that window.
    pub window_admitted: u64,
    /// Start of the current one-second SLOW claim window.
    pub slow_start_ns: u64,
    /// SLOW claims in that window.
    pub slow_claimed: u64,
    /// Start of the current window (about 17 ms) of refusals of remotes
    /// without SOURCES state, which decides whether the slow tier runs.
    pub quiet_start_ns: u64,
    /// Such refusals in that window.
    pub quiet_count: u32,
    /// Such refusals in the window before.
    pub quiet_prev: u32,
    /// The coarse clock at this CPU's last tracked packet: the egress
    /// watcher's clock for the replies that follow it.
    pub seen_ns: u64,
    /// Packets counted in the sketch this epoch: the epoch's low 8 bits in
    /// the top byte, the count below. The mean load of a cell is this
    /// count over [`ADMIT_COLUMNS`].
    pub epoch_packets: u64,
    /// The XDP program's scratch word (its `merge_states`); user space
    /// never reads it.
    pub merge: u64,
    /// Keys the sketch admitted in this epoch ([`ADMITTED_BITS`] bits, one
    /// per bin of the hash): a reply whose remote's bin is clear was sent
    /// to nobody the sketch let in, and the egress watcher knows it without
    /// reading the remote's sketch block (a cold line per reply in a
    /// spoofed flood). Cleared with each new epoch.
    pub admitted_bits: [u64; ADMITTED_BITS / 64],
    /// Cells: the epoch's low 8 bits in the top byte, the count below. In
    /// blocks of [`ADMIT_BLOCK_CELLS`], each holding its share of every
    /// row side by side.
    pub cells: [u32; ADMIT_ROWS * ADMIT_COLUMNS],
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
    assert!(STATS_SLOTS.is_power_of_two());
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
    assert!(size_of::<DetectConfig>() == 256);
    assert!(offset_of!(DetectConfig, replies) == 4);
    assert!(offset_of!(DetectConfig, ack_threshold) == 28);
    assert!(offset_of!(DetectConfig, syn_window_ns) == 40);
    assert!(size_of::<SourceState>() == 352);
    assert!(offset_of!(SourceState, port_bits) == 64);
    assert!(size_of::<TargetState>() == 208);
    assert!(size_of::<SignalRecord>() == 176);
    assert!(offset_of!(SignalRecord, kind) == 48);
    assert!(offset_of!(SignalRecord, syn) == 56);
    assert!(offset_of!(SignalRecord, sample_ports) == 88);
    assert!(offset_of!(SignalRecord, sample_sources) == 104);
    assert!(size_of::<DetectCounters>() == 48);
    assert!(TABLE_WAYS == 2 && size_of::<Bucket<SourceKey, SourceState>>() == 2 * 376);
    assert!(table_buckets(1) == 1 && table_buckets(65_536) == 32_768);
    assert!(table_buckets(1000) == 512);
    assert!(size_of::<FragState>() == 8);
    assert!(size_of::<ParseCounters>() == 8 * parse::COUNT);
    assert!(size_of::<Admission>() == 72 + ADMITTED_BITS / 8 + 4 * ADMIT_ROWS * ADMIT_COLUMNS);
    assert!(size_of::<SlowState>() == 96);
    assert!(ADMIT_COLUMNS.is_power_of_two());
    assert!(ADMIT_BLOCK_CELLS == 16 && ADMIT_ROWS == 2);
    assert!(PORT_BINS == 64 * 8 && HOST_BINS == 64 * 4);
};

#[cfg(feature = "user")]
mod pod {
    use super::{
        Admission, DetectConfig, DetectCounters, EventCounters, FragState, PacketEventRecord,
        ParseCounters, ProtoStats, RuleValue, SignalRecord, SlowState, SourceState, TargetState,
        TrafficCounters,
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
    unsafe impl aya::Pod for TargetState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SlowState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FragState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ParseCounters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Admission {}
}
