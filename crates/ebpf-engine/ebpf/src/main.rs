//! `ironpost_xdp`: Ironpost's per-packet datapath.
//!
//! Parses Ethernet (up to two VLAN tags), IPv4 and IPv6 (with its extension
//! header chain, at most 8 headers), fragments (a later fragment takes its
//! first fragment's L4 fields from FRAGS), then TCP, UDP and ICMP; applies
//! the policy (allow list, source rules, destination rules, malformed
//! frames, port rules, in that order; see `policy`); counts every packet
//! per traffic class, every rule hit and every fragmented or malformed
//! frame; and reports dropped and monitored packets through the EVENTS ring
//! buffer within a per-CPU budget, counting every report it could not
//! deliver. Packets the policy lets through are also tracked for detection
//! (see `track`): per-source and per-target state in tracking tables (see
//! [`Slot`](ironpost_ebpf_common::Slot)) for keys the admission sketch let
//! in, and a signal in SIGNALS when a threshold is crossed. It fails open only where nothing is known: a frame whose IP
//! addresses could not be read passes as OTHER. It never returns
//! `XDP_ABORTED` and never logs per packet. The README's "How a frame is
//! parsed" is the specification the differential test holds it to.
#![no_std]
#![no_main]
// `atomic_xadd`: the bpf target has no compare-and-swap, so `AtomicU64`
// offers no `fetch_add`; the intrinsic lowers to the BPF atomic add.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod egress;

use core::{
    cell::UnsafeCell,
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::size_of,
};

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, xdp_action},
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns},
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::XdpContext,
};
use ironpost_ebpf_common::hash::{
    FRAG_SALT, GOLDEN, TARGET_SALT, V4_STATE_SEED, V4_STATE_TARGET, hash_v4, hash_words,
    is_v4_mapped, v4_state,
};
use ironpost_ebpf_common::{
    ACTION_DROP, ACTION_MONITOR, ACTION_NONE, ACTION_PASS, ADMIT_BLOCK_CELLS, ADMIT_COLUMNS,
    ADMIT_EPOCH_SHIFT, ADMIT_ROWS, ADMITTED_BITS, Admission, Bucket, CLASS_ICMP, CLASS_OTHER,
    CLASS_TCP, CLASS_TOTAL, CLASS_UDP, COND_RST_ONLY, COND_SYN_ONLY, DEFAULT_ALLOW_MAX_ENTRIES,
    DEFAULT_BLOCKLIST_MAX_ENTRIES, DEFAULT_EVENT_BUDGET_PER_SEC, DEFAULT_RING_BUFFER_SIZE,
    DEFAULT_SIGNAL_RING_SIZE, DEFAULT_TRACKED_FRAGMENTS, DEFAULT_TRACKED_SOURCES, DetectConfig,
    DetectCounters, EventCounters, FAMILY_IPV4, FAMILY_IPV6, FragKey, FragState, LIMIT_SYN,
    MAX_IPV6_EXT_HEADERS, POLICY_ALLOW_V4, POLICY_ALLOW_V6, POLICY_DST_V4, POLICY_DST_V6,
    POLICY_EXACT_V4, POLICY_PORTS, POLICY_SRC_V4, POLICY_SRC_V6, PORT_INDEX_LEN, PORT_RULE_SLOTS,
    PacketEventRecord, ParseCounters, RuleValue, SRC16_V4_WORDS, STATS_SLOTS, SUMMARY_ALLOW,
    SUMMARY_EXACT, SUMMARY_PREFIX, SignalRecord, SlowState, SourceKey, SourceState, TABLE_FRAGS,
    TABLE_SOURCES, TABLE_TARGETS, TABLES, TARGET_PROTOCOL, TRACKED_SLOW, TRACKED_TARGETS,
    TargetKey, TargetState, TrafficCounters, ipproto, l4_min_len, parse, port_index, signal,
    signal_bit, stats_slot, table_buckets, tcp_flags,
};

/// [`RuleValue`] as the program sees it: the same layout, with the hit
/// counters in cells because every CPU adds to them (atomically).
#[repr(C)]
struct Rule {
    action: u8,
    cond_proto: u8,
    else_action: u8,
    cond_flags: u8,
    port_first: u16,
    port_last: u16,
    packets: UnsafeCell<u64>,
    bytes: UnsafeCell<u64>,
}

// SAFETY: the program writes the cells only with atomic adds, and user space
// only through the bpf() syscall; the other fields are never written here.
unsafe impl Sync for Rule {}

const _: () = assert!(
    size_of::<Rule>() == size_of::<RuleValue>()
        && core::mem::offset_of!(Rule, packets) == core::mem::offset_of!(RuleValue, packets)
        && core::mem::offset_of!(Rule, port_first) == core::mem::offset_of!(RuleValue, port_first)
);

/// Exact IPv4 source (network byte order, as read from the packet) → rule.
#[map]
static BLOCKLIST: HashMap<u32, Rule> =
    HashMap::with_max_entries(DEFAULT_BLOCKLIST_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/// IPv4 source prefixes.
#[map]
static SRC_V4: LpmTrie<[u8; 4], Rule> = LpmTrie::with_max_entries(DEFAULT_BLOCKLIST_MAX_ENTRIES, 0);

/// IPv6 source prefixes.
#[map]
static SRC_V6: LpmTrie<[u8; 16], Rule> =
    LpmTrie::with_max_entries(DEFAULT_BLOCKLIST_MAX_ENTRIES, 0);

/// IPv4 destination prefixes.
#[map]
static DST_V4: LpmTrie<[u8; 4], Rule> = LpmTrie::with_max_entries(DEFAULT_BLOCKLIST_MAX_ENTRIES, 0);

/// IPv6 destination prefixes.
#[map]
static DST_V6: LpmTrie<[u8; 16], Rule> =
    LpmTrie::with_max_entries(DEFAULT_BLOCKLIST_MAX_ENTRIES, 0);

/// IPv4 allow list.
#[map]
static ALLOW_V4: LpmTrie<[u8; 4], Rule> = LpmTrie::with_max_entries(DEFAULT_ALLOW_MAX_ENTRIES, 0);

/// IPv6 allow list.
#[map]
static ALLOW_V6: LpmTrie<[u8; 16], Rule> = LpmTrie::with_max_entries(DEFAULT_ALLOW_MAX_ENTRIES, 0);

/// Protocol and destination port → slot in PORT_RULE_TABLE (0: none).
#[map]
static PORT_RULES: Array<u32> = Array::with_max_entries(PORT_INDEX_LEN, 0);

/// Port and protocol rules.
#[map]
static PORT_RULE_TABLE: Array<Rule> = Array::with_max_entries(PORT_RULE_SLOTS, 0);

/// Which policy maps hold entries.
#[map]
static POLICY_FLAGS: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU counters per traffic class.
#[map]
static STATS: PerCpuArray<TrafficCounters> = PerCpuArray::with_max_entries(STATS_SLOTS, 0);

/// Reports of dropped and monitored packets.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BUFFER_SIZE, 0);

/// The IPv4 source summary: one bit per /16, set when a source rule or
/// allow entry covers part of it (see `policy_v4`).
#[map]
static SRC16_V4: Array<u64> = Array::with_max_entries(SRC16_V4_WORDS, 0);

/// Per-CPU event budget state and loss counters.
#[map]
static EVENT_COUNTERS: PerCpuArray<EventCounters> = PerCpuArray::with_max_entries(1, 0);

/// Detection state per source address, for sources the admission sketch
/// let in: a tracking table (see [`Slot`](ironpost_ebpf_common::Slot)).
#[map]
static SOURCES: Array<Bucket<SourceKey, SourceState>> =
    Array::with_max_entries(table_buckets(DEFAULT_TRACKED_SOURCES), 0);

/// SYN flood state per destination address and TCP port, for targets the
/// admission sketch let in: a tracking table.
#[map]
static TARGETS: Array<Bucket<TargetKey, TargetState>> =
    Array::with_max_entries(table_buckets(TRACKED_TARGETS), 0);

/// Long-horizon refusal counts of remotes too quiet for SOURCES (slow
/// scans), written by the egress watcher: a tracking table.
#[map]
static SLOW: Array<Bucket<SourceKey, SlowState>> =
    Array::with_max_entries(table_buckets(TRACKED_SLOW), 0);

/// The admission sketch and budget, per CPU.
#[map]
static ADMISSION: PerCpuArray<Admission> = PerCpuArray::with_max_entries(1, 0);

/// First fragments' L4 fields, for the fragments that follow: a tracking
/// table.
#[map]
static FRAGS: Array<Bucket<FragKey, FragState>> =
    Array::with_max_entries(table_buckets(DEFAULT_TRACKED_FRAGMENTS), 0);

/// Fragmented and malformed frames, per CPU.
#[map]
static PARSE_COUNTERS: PerCpuArray<ParseCounters> = PerCpuArray::with_max_entries(1, 0);

/// Threshold crossings for the detectors in user space.
#[map]
static SIGNALS: RingBuf = RingBuf::with_byte_size(DEFAULT_SIGNAL_RING_SIZE, 0);

/// Detection windows and thresholds, written by user space.
#[map]
static DETECT_CONFIG: Array<DetectConfig> = Array::with_max_entries(1, 0);

/// Per-CPU detection counters.
#[map]
static DETECT_COUNTERS: PerCpuArray<DetectCounters> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU, the coarse clock as it was at a jiffy: `[jiffies, ns]` (see
/// `clock`). The program's own scratch: user space never reads it.
#[map]
static CLOCK: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Events per second per CPU; the loader overrides it.
#[unsafe(no_mangle)]
static EVENT_BUDGET_PER_SEC: u32 = DEFAULT_EVENT_BUDGET_PER_SEC;

/// Seed of the tracking hashes (sketch cells, table buckets); the loader
/// sets a random one.
#[unsafe(no_mangle)]
static ADMIT_SEED: u32 = 0;

/// `[v4_state(seed), v4_state(seed ^ TARGET_SALT)]` for `ADMIT_SEED`: the
/// hash state after the IPv4-mapped prefix; the loader sets it with the
/// seed.
#[unsafe(no_mangle)]
static V4_STATES: [u32; 2] = [v4_state(0), v4_state(TARGET_SALT)];

/// `buckets - 1` of SOURCES, TARGETS, FRAGS and SLOW; the loader sets them
/// with the tables' sizes.
#[unsafe(no_mangle)]
static TABLE_MASKS: [u32; TABLES] = [
    table_buckets(DEFAULT_TRACKED_SOURCES) - 1,
    table_buckets(TRACKED_TARGETS) - 1,
    table_buckets(DEFAULT_TRACKED_FRAGMENTS) - 1,
    table_buckets(TRACKED_SLOW) - 1,
];

const ETH_HDR_LEN: usize = 14;
const VLAN_HDR_LEN: usize = 4;
const IPV4_MIN_HDR_LEN: usize = 20;
const IPV6_HDR_LEN: usize = 40;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// VLAN tags parsed at most (802.1ad outer + 802.1Q inner).
const MAX_VLAN_TAGS: usize = 2;
const NS_PER_SEC: u64 = 1_000_000_000;
/// Internal to the program: the allow list passed the packet (so it is
/// neither reported nor tracked).
const ALLOWED: u8 = 254;
/// ICMP echo request (ICMPv4) and ICMPv6 echo request.
const ICMP_ECHO: u8 = 8;
const ICMPV6_ECHO: u8 = 128;

/// The bytes of an IPv4 header the program reads (no options).
#[repr(C)]
struct Ipv4Hdr {
    ver_ihl: u8,
    tos: u8,
    tot_len: [u8; 2],
    id: [u8; 2],
    frag_off: [u8; 2],
    ttl: u8,
    protocol: u8,
    check: [u8; 2],
    src: [u8; 4],
    dst: [u8; 4],
}

/// The fixed IPv6 header.
#[repr(C)]
struct Ipv6Hdr {
    ver_tc_flow: [u8; 4],
    payload_len: [u8; 2],
    next_header: u8,
    hop_limit: u8,
    src: [u8; 16],
    dst: [u8; 16],
}

/// A TCP header without options.
#[repr(C)]
struct TcpHdr {
    src_port: [u8; 2],
    dst_port: [u8; 2],
    seq: [u8; 4],
    ack: [u8; 4],
    data_off: u8,
    flags: u8,
    window: [u8; 2],
    check: [u8; 2],
    urg_ptr: [u8; 2],
}

/// A UDP header.
#[repr(C)]
struct UdpHdr {
    src_port: [u8; 2],
    dst_port: [u8; 2],
    len: [u8; 2],
    check: [u8; 2],
}

/// Not fragmented (or an atomic fragment: offset 0, no more fragments).
const FRAG_NONE: u8 = 0;
/// A first fragment: offset 0, more fragments follow.
const FRAG_FIRST: u8 = 1;
/// A later fragment: offset above 0, no L4 header of its own.
const FRAG_LATER: u8 = 2;
/// `Packet::bad` when nothing is wrong with the frame.
const NOT_BAD: usize = usize::MAX;
/// `Packet::note` when the frame is not fragmented nor malformed.
const NO_NOTE: usize = usize::MAX;

/// What parsing found out about a packet.
struct Packet {
    class: usize,
    family: u8,
    protocol: u8,
    tcp_flags: u8,
    /// ICMP or ICMPv6 type, when the L4 header was read.
    icmp_type: u8,
    vlan_id: u16,
    src_port: u16,
    dst_port: u16,
    /// Ports and flags are valid: read from the packet's own L4 header, or
    /// remembered from its first fragment.
    has_l4: bool,
    /// The IP header was read: the addresses are known, so the address
    /// rules apply whatever else is wrong with the frame.
    known: bool,
    /// A `parse::*` reason to drop the frame once the address rules have
    /// had their say, or [`NOT_BAD`].
    bad: usize,
    /// [`FRAG_NONE`], [`FRAG_FIRST`] or [`FRAG_LATER`].
    frag: u8,
    /// The fragment's IPv4 protocol or IPv6 Fragment next header (FRAGS key).
    frag_proto: u8,
    /// IP identification of a fragment (FRAGS key).
    frag_id: u32,
    /// IPv4 addresses, as read from the packet.
    src4: [u8; 4],
    dst4: [u8; 4],
    /// Offset of the IP header; IPv6 addresses are read from there only
    /// when they are needed, not for every packet.
    l3_off: usize,
}

impl Packet {
    #[inline(always)]
    const fn new() -> Self {
        Self {
            class: CLASS_OTHER,
            family: 0,
            protocol: 0,
            tcp_flags: 0,
            icmp_type: 0,
            vlan_id: 0,
            src_port: 0,
            dst_port: 0,
            has_l4: false,
            known: false,
            bad: NOT_BAD,
            frag: FRAG_NONE,
            frag_proto: 0,
            frag_id: 0,
            src4: [0; 4],
            dst4: [0; 4],
            l3_off: 0,
        }
    }

    /// The PARSE_COUNTERS index this frame counts in, or [`NO_NOTE`].
    #[inline(always)]
    fn note(&self, followed: bool) -> usize {
        if self.bad != NOT_BAD {
            self.bad
        } else if self.frag == FRAG_FIRST {
            parse::FRAG_FIRST
        } else if self.frag == FRAG_LATER {
            if followed {
                parse::FRAG_FOLLOWED
            } else {
                parse::FRAG_ORPHAN
            }
        } else {
            NO_NOTE
        }
    }
}

/// XDP entry point.
#[xdp]
pub fn ironpost_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let mut pkt = Packet::new();
    parse(&ctx, &mut pkt);
    let mut action = ACTION_PASS;
    let mut allowed = false;
    // The clock is read at most once per packet, and only for packets that
    // need it: first fragments, tracked and reported packets.
    let mut now = 0;
    if pkt.known {
        let followed =
            pkt.frag == FRAG_LATER && pkt.bad == NOT_BAD && follow_fragment(&ctx, &mut pkt);
        let decided = policy(&ctx, &pkt, len);
        allowed = decided == ALLOWED;
        action = if allowed { ACTION_PASS } else { decided };
        if pkt.frag == FRAG_FIRST {
            now = clock();
            remember_fragment(&ctx, &pkt, now);
        }
        note(pkt.note(followed));
    } else {
        // Nothing is known about the frame: it passes (fail open).
        note(pkt.bad);
    }
    count(&ctx, pkt.class, len, action == ACTION_DROP);
    // Dropped packets are not tracked (a blocked source stays quiet for the
    // detectors), nor allow-listed ones; a fragmented datagram is tracked
    // once, at its first fragment.
    // Protocols other than TCP, UDP and ICMP have no L4 header to read, but
    // a source that sends many of them is scanning protocols.
    // A tiny first fragment is dropped, yet tracked: nobody sends one but to
    // hide a header from filters, and a scan made of them is a scan.
    let tiny = pkt.bad == parse::FRAG_TINY;
    let tracked = (action != ACTION_DROP || tiny)
        && (pkt.has_l4 || pkt.class == CLASS_OTHER || tiny)
        && !allowed
        && pkt.frag != FRAG_LATER;
    if !tracked && action == ACTION_PASS {
        return xdp_action::XDP_PASS;
    }
    if now == 0 {
        now = clock();
    }
    if tracked {
        track(&ctx, &mut pkt, len, now);
    }
    if action != ACTION_PASS {
        report(&ctx, &pkt, action, len, now);
    }
    if action == ACTION_DROP {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

/// Passes the parse results `track` branches on (the IP header's offset,
/// the family, the protocol, whether the L4 header was read) through
/// `word`, a map value the verifier cannot see into: it then knows them as
/// bounded unknowns instead of the constants each parse path (VLAN tags,
/// extension headers, fragments, malformed frames) left, and checks
/// `track` once for all of those paths rather than once per combination.
/// Without it the program took 980,560 of the verifier's 1,000,000
/// instructions. The values are unchanged; the cost is one store and one
/// load of a line `track` uses anyway.
#[inline(always)]
fn merge_states(pkt: &mut Packet, word: &mut u64) {
    let packed = u64::from(pkt.protocol)
        | u64::from(pkt.family) << 8
        | u64::from(pkt.has_l4) << 16
        | (pkt.l3_off as u64 & 0xff) << 24;
    // SAFETY: a valid, aligned, exclusive reference. Volatile, so that the
    // compiler does not forward the stored value past the load.
    let packed = unsafe {
        core::ptr::write_volatile(word, packed);
        core::ptr::read_volatile(word)
    };
    pkt.protocol = packed as u8;
    pkt.family = (packed >> 8) as u8;
    pkt.has_l4 = (packed >> 16) & 1 != 0;
    pkt.l3_off = ((packed >> 24) & 0xff) as usize;
}

/// The coarse clock (CLOCK_MONOTONIC at the last tick): windows are
/// seconds long. Both it and jiffies move only at a tick, so each CPU keeps
/// the value it read at the current jiffy and calls the helper (whose
/// seqlock and timespec arithmetic were 12% of the program during a
/// spoofed flood) once per tick; `bpf_jiffies64` the verifier inlines into
/// one load.
#[inline(always)]
fn clock() -> u64 {
    // SAFETY: helpers without arguments or preconditions.
    let jiffies = unsafe { bpf_jiffies64() };
    let Some(cache) = CLOCK.get_ptr_mut(0) else {
        // SAFETY: as above.
        return unsafe { bpf_ktime_get_coarse_ns() };
    };
    // SAFETY: this CPU's own entry, non-null; nothing else runs on this CPU
    // while the program does.
    let cache = unsafe { &mut *cache };
    if cache[0] != jiffies || cache[1] == 0 {
        cache[0] = jiffies;
        // SAFETY: as above.
        cache[1] = unsafe { bpf_ktime_get_coarse_ns() };
    }
    cache[1]
}

/// A pointer to a `T` at `offset` bytes into the packet, if the packet is
/// long enough to hold it.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// The traffic class of an L4 protocol (`icmp`: the family's ICMP number).
#[inline(always)]
fn class_of(protocol: u8, icmp: u8) -> usize {
    if protocol == ipproto::TCP {
        CLASS_TCP
    } else if protocol == ipproto::UDP {
        CLASS_UDP
    } else if protocol == icmp {
        CLASS_ICMP
    } else {
        CLASS_OTHER
    }
}

/// Parses L2 to L4 into `pkt`. Never fails: what could not be read is
/// recorded (`known`, `bad`, `has_l4`) for the policy to act on.
#[inline(always)]
fn parse(ctx: &XdpContext, pkt: &mut Packet) {
    let Some(eth_type) = ptr_at::<[u8; 2]>(ctx, 12) else {
        return;
    };
    // SAFETY: ptr_at checked that the two bytes lie inside the packet.
    let mut proto = be16(unsafe { *eth_type });
    let mut off = ETH_HDR_LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let Some(tag) = ptr_at::<[u8; 4]>(ctx, off) else {
            return;
        };
        // SAFETY: ptr_at checked that the four bytes lie inside the packet.
        let tag = unsafe { *tag };
        if pkt.vlan_id == 0 {
            pkt.vlan_id = be16([tag[0], tag[1]]) & 0x0fff;
        }
        proto = be16([tag[2], tag[3]]);
        off += VLAN_HDR_LEN;
    }
    match proto {
        ETH_P_IPV4 => parse_ipv4(ctx, pkt, off),
        ETH_P_IPV6 => parse_ipv6(ctx, pkt, off),
        _ => {}
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, pkt: &mut Packet, off: usize) {
    let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, off) else {
        pkt.bad = parse::L3_UNREADABLE;
        return;
    };
    // SAFETY: ptr_at checked that the whole fixed header lies in the packet;
    // the struct has alignment 1.
    let ip = unsafe { &*ip };
    let ihl = ((ip.ver_ihl & 0x0f) as usize) * 4;
    // The options, if any, must be in the packet too.
    if ip.ver_ihl >> 4 != 4 || ihl < IPV4_MIN_HDR_LEN || ptr_at::<u8>(ctx, off + ihl - 1).is_none()
    {
        pkt.bad = parse::L3_UNREADABLE;
        return;
    }
    pkt.known = true;
    pkt.family = FAMILY_IPV4;
    pkt.protocol = ip.protocol;
    pkt.class = class_of(ip.protocol, ipproto::ICMP);
    pkt.src4 = ip.src;
    pkt.dst4 = ip.dst;
    pkt.l3_off = off;
    let frag = be16(ip.frag_off);
    let offset = (frag & 0x1fff) as usize;
    if offset != 0 || frag & 0x2000 != 0 {
        pkt.frag_id = u32::from(be16(ip.id));
        pkt.frag_proto = ip.protocol;
        if offset != 0 {
            later_fragment(pkt, offset);
            return;
        }
        pkt.frag = FRAG_FIRST;
    }
    parse_l4(ctx, pkt, off + ihl, ipproto::ICMP);
}

/// Marks a later fragment, and as malformed when its offset (in 8-byte
/// units) reaches back into the L4 header (RFC 3128).
#[inline(always)]
fn later_fragment(pkt: &mut Packet, offset: usize) {
    pkt.frag = FRAG_LATER;
    if offset * 8 < l4_min_len(pkt.protocol) {
        pkt.bad = parse::FRAG_BAD_OFFSET;
    }
}

#[inline(always)]
fn is_ext_header(nh: u8) -> bool {
    nh == ipproto::HOPOPTS
        || nh == ipproto::ROUTING
        || nh == ipproto::FRAGMENT
        || nh == ipproto::DSTOPTS
        || nh == ipproto::AH
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, pkt: &mut Packet, off: usize) {
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, off) else {
        pkt.bad = parse::L3_UNREADABLE;
        return;
    };
    // SAFETY: ptr_at checked that the fixed header lies in the packet; the
    // struct has alignment 1.
    let ip = unsafe { &*ip };
    if ip.ver_tc_flow[0] >> 4 != 6 {
        pkt.bad = parse::L3_UNREADABLE;
        return;
    }
    pkt.known = true;
    pkt.family = FAMILY_IPV6;
    pkt.l3_off = off;
    let mut nh = ip.next_header;
    let mut l4 = off + IPV6_HDR_LEN;
    // The extension header chain, walked to the L4 header within a fixed
    // bound; a chain too long or cut short is malformed.
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !is_ext_header(nh) {
            break;
        }
        if nh == ipproto::FRAGMENT {
            let Some(h) = ptr_at::<[u8; 8]>(ctx, l4) else {
                break;
            };
            // SAFETY: ptr_at checked the bounds; alignment 1.
            let h = unsafe { *h };
            nh = h[0];
            l4 += 8;
            let field = be16([h[2], h[3]]);
            let offset = (field >> 3) as usize;
            if offset == 0 && field & 1 == 0 {
                // An atomic fragment (RFC 6946): a whole datagram.
                continue;
            }
            pkt.frag_id = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            pkt.frag_proto = nh;
            if offset != 0 {
                pkt.protocol = nh;
                pkt.class = class_of(nh, ipproto::ICMPV6);
                later_fragment(pkt, offset);
                return;
            }
            pkt.frag = FRAG_FIRST;
        } else {
            let Some(h) = ptr_at::<[u8; 2]>(ctx, l4) else {
                break;
            };
            // SAFETY: ptr_at checked the bounds; alignment 1.
            let h = unsafe { *h };
            let this = nh;
            nh = h[0];
            l4 += if this == ipproto::AH {
                // AH counts its length in 4-byte units, minus 2.
                (h[1] as usize + 2) * 4
            } else {
                (h[1] as usize + 1) * 8
            };
        }
    }
    pkt.protocol = nh;
    if is_ext_header(nh) {
        pkt.bad = parse::EXT_CHAIN_BAD;
        return;
    }
    pkt.class = class_of(nh, ipproto::ICMPV6);
    parse_l4(ctx, pkt, l4, ipproto::ICMPV6);
}

/// Reads ports, flags or the ICMP type of a TCP, UDP or ICMP packet at
/// `off`; a header cut short or invalid makes the packet malformed (a tiny
/// fragment when it is a first fragment).
#[inline(always)]
fn parse_l4(ctx: &XdpContext, pkt: &mut Packet, off: usize, icmp: u8) {
    let ok = if pkt.protocol == ipproto::TCP {
        match ptr_at::<TcpHdr>(ctx, off) {
            // SAFETY: ptr_at checked the bounds; alignment 1.
            Some(tcp) => unsafe {
                let tcp = &*tcp;
                pkt.src_port = be16(tcp.src_port);
                pkt.dst_port = be16(tcp.dst_port);
                pkt.tcp_flags = tcp.flags;
                (tcp.data_off >> 4) >= 5
            },
            None => false,
        }
    } else if pkt.protocol == ipproto::UDP {
        match ptr_at::<UdpHdr>(ctx, off) {
            // SAFETY: ptr_at checked the bounds; alignment 1.
            Some(udp) => unsafe {
                let udp = &*udp;
                pkt.src_port = be16(udp.src_port);
                pkt.dst_port = be16(udp.dst_port);
                true
            },
            None => false,
        }
    } else if pkt.protocol == icmp {
        // Type, code, checksum and the 4-byte rest of header that every
        // ICMP and ICMPv6 message has.
        match ptr_at::<[u8; 8]>(ctx, off) {
            Some(hdr) => {
                // SAFETY: ptr_at checked the bounds; alignment 1.
                pkt.icmp_type = unsafe { (*hdr)[0] };
                true
            }
            None => false,
        }
    } else {
        // Other protocols: nothing to read, nothing malformed.
        return;
    };
    if ok {
        pkt.has_l4 = true;
    } else {
        pkt.src_port = 0;
        pkt.dst_port = 0;
        pkt.tcp_flags = 0;
        pkt.bad = if pkt.frag == FRAG_FIRST {
            parse::FRAG_TINY
        } else {
            parse::L4_MALFORMED
        };
    }
}

/// The FRAGS key of a fragment.
#[inline(always)]
fn frag_key(ctx: &XdpContext, pkt: &Packet) -> Option<FragKey> {
    let last = u32::from(pkt.frag_proto) | (u32::from(pkt.family) << 8);
    if pkt.family == FAMILY_IPV4 {
        let (s, d) = (u32::from_ne_bytes(pkt.src4), u32::from_ne_bytes(pkt.dst4));
        return Some([s, 0, 0, 0, d, 0, 0, 0, pkt.frag_id, last]);
    }
    let ip = ptr_at::<Ipv6Hdr>(ctx, pkt.l3_off)?;
    // SAFETY: ptr_at checked the bounds; alignment 1.
    let ip = unsafe { &*ip };
    let (s, d) = (words(&ip.src), words(&ip.dst));
    Some([
        s[0],
        s[1],
        s[2],
        s[3],
        d[0],
        d[1],
        d[2],
        d[3],
        pkt.frag_id,
        last,
    ])
}

/// An address as four native-endian words.
#[inline(always)]
fn words(a: &[u8; 16]) -> [u32; 4] {
    let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// The address whose native-endian words are `w`. Addresses are built
/// from words because a 16-byte array copied or zeroed byte-wise compiles
/// to a call to a `memmove`/`memset` subprogram that loops once per byte.
#[inline(always)]
fn addr(w: [u32; 4]) -> [u8; 16] {
    // SAFETY: same size, and every bit pattern is valid for both types.
    unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(w) }
}

/// An IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`), the form SOURCES,
/// TARGETS and signals key IPv4 by.
#[inline(always)]
fn mapped_v4(a: [u8; 4]) -> [u32; 4] {
    [
        0,
        0,
        u32::from_ne_bytes([0, 0, 0xff, 0xff]),
        u32::from_ne_bytes(a),
    ]
}

/// Zeroes a bit set word by word. Volatile stores keep LLVM from turning
/// the loop back into a `memset` call (a byte-per-iteration subprogram).
#[inline(always)]
fn clear<const N: usize>(bits: &mut [u64; N]) {
    for w in bits.iter_mut() {
        // SAFETY: `w` is a valid, aligned, exclusive reference.
        unsafe { core::ptr::write_volatile(w, 0) };
    }
}

/// Remembers a first fragment's L4 fields (or that it was malformed) for
/// the fragments that follow it; a newer first fragment with the same key
/// replaces it, a new key takes the slot of the older datagram in its
/// bucket when both are taken.
#[inline(always)]
fn remember_fragment(ctx: &XdpContext, pkt: &Packet, now: u64) {
    let Some(key) = frag_key(ctx, pkt) else {
        return;
    };
    let Some(bucket) = FRAGS.get_ptr_mut(hash_words(&key, seed() ^ FRAG_SALT) & mask(TABLE_FRAGS))
    else {
        return;
    };
    // SAFETY: a live array value; other CPUs may write the same bucket at
    // once, which can only mix up two first fragments' fields for one key
    // (see `Slot`).
    let bucket = unsafe { &mut *bucket };
    let (i, found) = probe(bucket, &key);
    let Some(slot) = bucket.get_mut(i) else {
        return;
    };
    if !found {
        slot.key = key;
    }
    slot.value = FragState {
        src_port: pkt.src_port,
        dst_port: pkt.dst_port,
        tcp_flags: pkt.tcp_flags,
        icmp_type: pkt.icmp_type,
        protocol: pkt.protocol,
        drop: u8::from(pkt.bad != NOT_BAD),
    };
    slot.seen_ns = now;
}

/// Gives a later fragment its first fragment's L4 fields; true when the
/// first fragment was remembered.
#[inline(always)]
fn follow_fragment(ctx: &XdpContext, pkt: &mut Packet) -> bool {
    let Some(key) = frag_key(ctx, pkt) else {
        return false;
    };
    let Some(bucket) = FRAGS.get_ptr(hash_words(&key, seed() ^ FRAG_SALT) & mask(TABLE_FRAGS))
    else {
        return false;
    };
    // SAFETY: a live array value, read only (see `remember_fragment`).
    let bucket = unsafe { &*bucket };
    let (i, found) = probe(bucket, &key);
    let Some(slot) = bucket.get(i).filter(|_| found) else {
        return false;
    };
    let first = slot.value;
    if first.drop != 0 {
        pkt.bad = parse::FRAG_TINY;
        return true;
    }
    let icmp = if pkt.family == FAMILY_IPV4 {
        ipproto::ICMP
    } else {
        ipproto::ICMPV6
    };
    pkt.protocol = first.protocol;
    pkt.class = class_of(first.protocol, icmp);
    pkt.src_port = first.src_port;
    pkt.dst_port = first.dst_port;
    pkt.tcp_flags = first.tcp_flags;
    pkt.icmp_type = first.icmp_type;
    pkt.has_l4 = pkt.class != CLASS_OTHER;
    true
}

/// Counts a fragmented or malformed frame in PARSE_COUNTERS.
#[inline(always)]
fn note(index: usize) {
    if index == NO_NOTE {
        return;
    }
    let Some(c) = PARSE_COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's own entry, non-null (as in `count`).
    let c = unsafe { &mut *c };
    if let Some(slot) = c.counts.get_mut(index) {
        *slot += 1;
    }
}

/// The action for a packet whose addresses are known. Stages, first
/// decision wins:
/// 1. allow list (source): pass;
/// 2. source rules: the exact IPv4 entry, else the longest source prefix;
/// 3. destination rules: the longest destination prefix;
/// 4. malformed frames (tiny or overlapping fragments, cut-short L4
///    headers, bad extension header chains) that stages 1-3 did not pass
///    (a monitor rule does not vouch for them): drop;
/// 5. port rules: protocol and destination port (own or remembered);
/// 6. pass.
///
/// In stages 2 and 3 only the most specific entry is looked at. An entry
/// with a condition applies its action when the condition holds and its
/// `else_action` (the nearest enclosing entry without a condition, as user
/// space computed it) otherwise; `ACTION_NONE` goes on to the next stage.
#[inline(always)]
fn policy(ctx: &XdpContext, pkt: &Packet, len: u64) -> u8 {
    let flags = match POLICY_FLAGS.get(0) {
        Some(f) => *f,
        None => 0,
    };
    let action = if flags == 0 {
        ACTION_NONE
    } else if pkt.family == FAMILY_IPV4 {
        policy_v4(pkt, flags, len)
    } else {
        policy_v6(ctx, pkt, flags, len)
    };
    // A malformed frame that the address rules did not pass (allow list or
    // a pass rule) is dropped: it could hide from the port rules, and the
    // host would discard it. A monitor rule does not vouch for it.
    if pkt.bad != NOT_BAD && (action == ACTION_NONE || action == ACTION_MONITOR) {
        return ACTION_DROP;
    }
    if action != ACTION_NONE {
        return action;
    }
    if flags & POLICY_PORTS != 0
        && pkt.has_l4
        && let Some(action) = port_rule(pkt, len)
    {
        return action;
    }
    ACTION_PASS
}

#[inline(always)]
fn policy_v4(pkt: &Packet, flags: u32, len: u64) -> u8 {
    // Each source-keyed map only for a source in a /16 that one of its
    // entries covers: elsewhere it cannot match.
    const SOURCE_MAPS: u32 = POLICY_ALLOW_V4 | POLICY_EXACT_V4 | POLICY_SRC_V4;
    let flags = if flags & SOURCE_MAPS != 0 {
        let listed = source_listed(pkt.src4);
        let mut keep = 0;
        if listed & SUMMARY_ALLOW != 0 {
            keep |= POLICY_ALLOW_V4;
        }
        if listed & SUMMARY_EXACT != 0 {
            keep |= POLICY_EXACT_V4;
        }
        if listed & SUMMARY_PREFIX != 0 {
            keep |= POLICY_SRC_V4;
        }
        flags & (!SOURCE_MAPS | keep)
    } else {
        flags
    };
    if flags & POLICY_ALLOW_V4 != 0
        && let Some(rule) = ALLOW_V4.get(Key::new(32, pkt.src4))
    {
        hit(rule, len);
        return ALLOWED;
    }
    let mut exact = false;
    if flags & POLICY_EXACT_V4 != 0 {
        // SAFETY: the entry is only read and added to atomically; the map
        // is not changed by the program while the reference lives.
        if let Some(rule) = unsafe { BLOCKLIST.get(u32::from_ne_bytes(pkt.src4)) } {
            exact = true;
            let action = decide(rule, pkt, len);
            if action != ACTION_NONE {
                return action;
            }
        }
    }
    if !exact
        && flags & POLICY_SRC_V4 != 0
        && let Some(rule) = SRC_V4.get(Key::new(32, pkt.src4))
    {
        let action = decide(rule, pkt, len);
        if action != ACTION_NONE {
            return action;
        }
    }
    if flags & POLICY_DST_V4 != 0
        && let Some(rule) = DST_V4.get(Key::new(32, pkt.dst4))
    {
        return decide(rule, pkt, len);
    }
    ACTION_NONE
}

/// The SRC16_V4 bits of the source's /16 (all of them when the word
/// cannot be read).
#[inline(always)]
fn source_listed(src: [u8; 4]) -> u64 {
    let slash16 = (u32::from(src[0]) << 8) | u32::from(src[1]);
    match SRC16_V4.get(slash16 >> 4) {
        Some(word) => *word >> ((slash16 & 15) * 4),
        None => SUMMARY_ALLOW | SUMMARY_EXACT | SUMMARY_PREFIX,
    }
}

#[inline(always)]
fn policy_v6(ctx: &XdpContext, pkt: &Packet, flags: u32, len: u64) -> u8 {
    if flags & (POLICY_ALLOW_V6 | POLICY_SRC_V6 | POLICY_DST_V6) == 0 {
        return ACTION_NONE;
    }
    let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, pkt.l3_off) else {
        return ACTION_NONE;
    };
    // SAFETY: ptr_at checked the bounds; alignment 1.
    let ip = unsafe { &*ip };
    if flags & POLICY_ALLOW_V6 != 0
        && let Some(rule) = ALLOW_V6.get(Key::new(128, addr(words(&ip.src))))
    {
        hit(rule, len);
        return ALLOWED;
    }
    if flags & POLICY_SRC_V6 != 0
        && let Some(rule) = SRC_V6.get(Key::new(128, addr(words(&ip.src))))
    {
        let action = decide(rule, pkt, len);
        if action != ACTION_NONE {
            return action;
        }
    }
    if flags & POLICY_DST_V6 != 0
        && let Some(rule) = DST_V6.get(Key::new(128, addr(words(&ip.dst))))
    {
        return decide(rule, pkt, len);
    }
    ACTION_NONE
}

#[inline(always)]
fn port_rule(pkt: &Packet, len: u64) -> Option<u8> {
    let index = port_index(pkt.class, pkt.dst_port)?;
    let slot = *PORT_RULES.get(index)?;
    if slot == 0 {
        return None;
    }
    let rule = PORT_RULE_TABLE.get(slot)?;
    hit(rule, len);
    Some(rule.action)
}

/// The entry's action for this packet (its condition decides between
/// `action` and `else_action`), counting the hit unless it is no decision.
#[inline(always)]
fn decide(rule: &Rule, pkt: &Packet, len: u64) -> u8 {
    let action = if rule.cond_proto == 0 || condition_holds(rule, pkt) {
        rule.action
    } else {
        rule.else_action
    };
    if action != ACTION_NONE {
        hit(rule, len);
    }
    action
}

#[inline(always)]
fn condition_holds(rule: &Rule, pkt: &Packet) -> bool {
    let class = match rule.cond_proto {
        ipproto::TCP => CLASS_TCP,
        ipproto::UDP => CLASS_UDP,
        ipproto::ICMP => return pkt.class == CLASS_ICMP,
        _ => return false,
    };
    pkt.class == class
        && pkt.has_l4
        && rule.port_first <= pkt.dst_port
        && pkt.dst_port <= rule.port_last
        && (rule.cond_flags & COND_SYN_ONLY == 0
            || pkt.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN)
        && (rule.cond_flags & COND_RST_ONLY == 0 || pkt.tcp_flags & tcp_flags::RST != 0)
}

#[inline(always)]
fn hit(rule: &Rule, len: u64) {
    // SAFETY: the pointers come from cells in a live map value; the kernel
    // keeps the value alive for the program's run (RCU), and the atomic add
    // is the only way the program writes them.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(rule.packets.get(), 1);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(rule.bytes.get(), len);
    }
}

/// Updates the detection state of the packet's source (and, for TCP, of
/// its destination address and port), and signals user space when a
/// threshold is crossed: at most once per kind per window per source or
/// target. Counters are updated without atomics; two CPUs updating the
/// same source at once may lose an increment, which only delays a signal.
#[inline(always)]
fn track(ctx: &XdpContext, pkt: &mut Packet, len: u64, now: u64) {
    let Some(cfg) = DETECT_CONFIG.get(0) else {
        return;
    };
    if cfg.enabled == 0 {
        return;
    }
    let Some(counters) = DETECT_COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's own entry, non-null (as in `count`).
    let counters = unsafe { &mut *counters };
    let Some(adm) = ADMISSION.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's own entry, non-null (as in `count`).
    let adm = unsafe { &mut *adm };
    merge_states(pkt, &mut adm.merge);
    let (srcw, dstw) = if pkt.family == FAMILY_IPV4 {
        (mapped_v4(pkt.src4), mapped_v4(pkt.dst4))
    } else {
        let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, pkt.l3_off) else {
            return;
        };
        // SAFETY: ptr_at checked the bounds; alignment 1.
        let ip = unsafe { &*ip };
        (words(&ip.src), words(&ip.dst))
    };
    let (src, dst) = (addr(srcw), addr(dstw));
    let tcp = pkt.class == CLASS_TCP;
    let syn = tcp && pkt.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
    let ack = tcp && pkt.tcp_flags & tcp_flags::ACK != 0;
    // A probe opens a connection or asks a service: bare SYNs, and UDP from
    // an unprivileged port (answers from DNS, NTP and the like come from
    // their well-known port and are not probes).
    let port_probe = syn || (pkt.class == CLASS_UDP && pkt.src_port >= 1024);
    let host_probe = port_probe
        || (pkt.class == CLASS_ICMP
            && (pkt.icmp_type == ICMP_ECHO || pkt.icmp_type == ICMPV6_ECHO));
    let ifindex = ctx.ingress_ifindex() as u32;

    let source_hash = hash_addr(&srcw);
    let admitted = admit(adm, source_hash, now, cfg.admit_packets);
    if !admitted {
        counters.sources_deferred += 1;
    }
    if admitted
        && let Some((s, new)) = table_state(
            &SOURCES,
            mask(TABLE_SOURCES),
            &srcw,
            source_hash,
            now,
            || admission_budget(adm, cfg.admit_per_sec, now, counters),
        )
    {
        counters.sources_new += u64::from(new);
        // SAFETY: a live array value; the program is its only writer
        // besides other CPUs running this same code (see the function
        // comment and `Slot`).
        let s = unsafe { &mut *s };
        let mut fire = 0u8;
        if tcp && (syn || ack) {
            if roll(&mut s.syn_start_ns, cfg.syn_window_ns, now) {
                s.syn = 0;
                s.ack = 0;
                s.signalled &= !signal_bit(signal::SYN_SOURCE);
            }
            if syn {
                s.syn = s.syn.saturating_add(1);
                if crossed(s.syn, cfg.syn_threshold, s.signalled, signal::SYN_SOURCE)
                    && syn_only(s.syn, s.ack, cfg.syn_ratio_permille)
                {
                    fire = signal::SYN_SOURCE;
                }
            } else {
                s.ack = s.ack.saturating_add(1);
            }
        }
        if pkt.bad == parse::FRAG_TINY {
            roll_scan(s, cfg, now);
            s.tiny = s.tiny.saturating_add(1);
            if fire == 0
                && crossed(
                    s.tiny,
                    cfg.port_threshold,
                    s.signalled,
                    signal::TINY_FRAGMENTS,
                )
            {
                fire = signal::TINY_FRAGMENTS;
            }
        }
        if pkt.class == CLASS_OTHER && cfg.protocol_threshold != 0 {
            roll_scan(s, cfg, now);
            if set_bin(&mut s.protocol_bits, usize::from(pkt.protocol)) {
                s.protocols += 1;
                if fire == 0
                    && crossed(
                        s.protocols,
                        cfg.protocol_threshold,
                        s.signalled,
                        signal::PROTOCOL_SCAN,
                    )
                {
                    fire = signal::PROTOCOL_SCAN;
                }
            }
        }
        if port_probe || host_probe {
            roll_scan(s, cfg, now);
            if port_probe {
                let bin = (u32::from(pkt.dst_port).wrapping_mul(GOLDEN) >> 23) as usize;
                if set_bin(&mut s.port_bits, bin) {
                    s.sample_ports[(s.ports & 7) as usize] = pkt.dst_port;
                    s.ports += 1;
                    // A client whose connections the host accepted (its
                    // SYN-ACKs, counted on egress) is not scanning: at
                    // least half of the ports it tried answered.
                    if fire == 0
                        && crossed(s.ports, cfg.port_threshold, s.signalled, signal::PORT_SCAN)
                        && 2 * s.accepted < s.ports
                    {
                        fire = signal::PORT_SCAN;
                    }
                }
            }
            let bin = (fold(&dstw).wrapping_mul(GOLDEN) >> 24) as usize;
            if set_bin(&mut s.host_bits, bin) {
                s.hosts += 1;
                if fire == 0
                    && crossed(s.hosts, cfg.host_threshold, s.signalled, signal::HOST_SWEEP)
                {
                    fire = signal::HOST_SWEEP;
                }
            }
        }
        if tcp && pkt.tcp_flags & tcp_flags::RST != 0 {
            let crossing = count_flood(
                &mut s.rst_start_ns,
                &mut s.rst,
                &mut s.signalled,
                cfg.rst_window_ns,
                cfg.rst_threshold,
                signal::RST_FLOOD,
                now,
            );
            if fire == 0 && crossing {
                fire = signal::RST_FLOOD;
            }
        }
        // UDP and ICMP are written out twice on purpose: folded into one
        // helper (`count_flood` with bytes), the branches came out in an
        // order that took the verifier past its million instructions.
        if pkt.class == CLASS_UDP {
            if roll(&mut s.udp_start_ns, cfg.udp_window_ns, now) {
                s.udp = 0;
                s.udp_bytes = 0;
                s.signalled &= !signal_bit(signal::UDP_FLOOD);
            }
            s.udp = s.udp.saturating_add(1);
            s.udp_bytes = s.udp_bytes.wrapping_add(len);
            if fire == 0
                && s.signalled & signal_bit(signal::UDP_FLOOD) == 0
                && reaches_either(
                    s.udp,
                    cfg.udp_threshold,
                    s.udp_bytes,
                    cfg.udp_bytes_threshold,
                )
            {
                fire = signal::UDP_FLOOD;
            }
        }
        if pkt.class == CLASS_ICMP {
            if roll(&mut s.icmp_start_ns, cfg.icmp_window_ns, now) {
                s.icmp = 0;
                s.icmp_bytes = 0;
                s.signalled &= !signal_bit(signal::ICMP_FLOOD);
            }
            s.icmp = s.icmp.saturating_add(1);
            s.icmp_bytes = s.icmp_bytes.wrapping_add(len);
            if fire == 0
                && s.signalled & signal_bit(signal::ICMP_FLOOD) == 0
                && reaches_either(
                    s.icmp,
                    cfg.icmp_threshold,
                    s.icmp_bytes,
                    cfg.icmp_bytes_threshold,
                )
            {
                fire = signal::ICMP_FLOOD;
            }
        }
        if fire != 0 {
            s.signalled |= signal_bit(fire);
            signal_source(fire, s, &src, &dst, pkt, ifindex, now, counters);
        }
    }

    // With the per-target SYN check off, TARGETS is not touched at all.
    if tcp && (syn || ack) && cfg.target_syn_threshold != 0 {
        let key: TargetKey = [dstw[0], dstw[1], dstw[2], dstw[3], u32::from(pkt.dst_port)];
        if let Some(t) = target_state(adm, &key, cfg, now, counters) {
            if roll(&mut t.syn_start_ns, cfg.syn_window_ns, now) {
                reset_target(t);
                set_limits(t, cfg, LIMIT_SYN);
            }
            if syn {
                t.syn = t.syn.saturating_add(1);
                add_target_source(t, &srcw, &src);
                if t.limit != 0
                    && t.syn >= t.limit
                    && syn_only(t.syn, t.ack, cfg.syn_ratio_permille)
                {
                    rearm(t);
                    signal_target(
                        signal::SYN_TARGET,
                        t,
                        &src,
                        &dst,
                        pkt,
                        ifindex,
                        now,
                        counters,
                    );
                }
            } else {
                t.ack = t.ack.saturating_add(1);
            }
        }
    }

    // UDP, ICMP and TCP RSTs from sources without state (spoofed ones
    // among them) count against their destination address: a flood from a
    // million addresses shows there, whatever its ports.
    let rst = tcp && pkt.tcp_flags & tcp_flags::RST != 0;
    if !admitted && (pkt.class == CLASS_UDP || pkt.class == CLASS_ICMP || rst) {
        // Indexed by class (TCP: its RSTs), without a branch per class: a
        // branch more here took the verifier past its limit.
        let c = pkt.class & 3;
        let (threshold, bytes_threshold, window, kind) = (
            cfg.target_threshold[c],
            cfg.target_bytes_threshold[c],
            cfg.target_window_ns[c],
            TARGET_SIGNALS[c],
        );
        if threshold == 0 && bytes_threshold == 0 {
            return;
        }
        let key: TargetKey = [
            dstw[0],
            dstw[1],
            dstw[2],
            dstw[3],
            TARGET_PROTOCOL | u32::from(pkt.protocol),
        ];
        if let Some(t) = target_state(adm, &key, cfg, now, counters) {
            if roll(&mut t.syn_start_ns, window, now) {
                reset_target(t);
                set_limits(t, cfg, c);
            }
            t.syn = t.syn.saturating_add(1);
            t.bytes = t.bytes.wrapping_add(len);
            add_target_source(t, &srcw, &src);
            if reaches_either(t.syn, t.limit, t.bytes, t.limit_bytes) {
                rearm(t);
                signal_target(kind, t, &src, &dst, pkt, ifindex, now, counters);
            }
        }
    }
}

/// The signal of a flood onto one address from untracked sources, by
/// traffic class (`CLASS_TCP`: RSTs).
const TARGET_SIGNALS: [u8; 4] = [
    signal::RST_TARGET,
    signal::UDP_TARGET,
    signal::ICMP_TARGET,
    0,
];
const _: () = assert!(CLASS_TCP == 0 && CLASS_UDP == 1 && CLASS_ICMP == 2);

/// The TARGETS state of `key`: targets are few and hot (TARGETS stays in
/// cache), so the table is looked at first and the sketch only for a
/// target not in it.
#[inline(always)]
fn target_state(
    adm: &mut Admission,
    key: &TargetKey,
    cfg: &DetectConfig,
    now: u64,
    counters: &mut DetectCounters,
) -> Option<&'static mut TargetState> {
    let target_hash = hash_target(key);
    let (t, new) = table_state(&TARGETS, mask(TABLE_TARGETS), key, target_hash, now, || {
        admit(adm, target_hash, now, cfg.admit_packets)
            && admission_budget(adm, cfg.admit_per_sec, now, counters)
    })?;
    counters.targets_new += u64::from(new);
    // SAFETY: a live array value, written without atomics like the source
    // state (see `track`).
    Some(unsafe { &mut *t })
}

/// Starts a target's thresholds for a new window (a new entry's first
/// packet starts one): the lowest of its detector's and every host group's
/// (`limit`: [`LIMIT_SYN`] or a traffic class). Each crossing signals and
/// doubles them, so user space, which knows the host groups, sees the
/// count again within a factor of two of any higher threshold.
#[inline(always)]
fn set_limits(t: &mut TargetState, cfg: &DetectConfig, limit: usize) {
    t.limit = cfg.target_threshold[limit & 7];
    t.limit_bytes = cfg.target_bytes_threshold[limit & 3];
}

/// The next thresholds of a target that crossed: twice the count.
#[inline(always)]
fn rearm(t: &mut TargetState) {
    t.limit = t.limit.saturating_mul(2);
    t.limit_bytes = t.limit_bytes.saturating_mul(2);
}

/// Starts a target's window afresh.
#[inline(always)]
fn reset_target(t: &mut TargetState) {
    t.syn = 0;
    t.ack = 0;
    t.bytes = 0;
    t.sources = 0;
    clear(&mut t.source_bits);
    t.signalled = 0;
}

/// Counts a source of a target's packets (distinct bins, and a sample).
#[inline(always)]
fn add_target_source(t: &mut TargetState, srcw: &[u32; 4], src: &[u8; 16]) {
    let bin = (fold(srcw).wrapping_mul(GOLDEN) >> 24) as usize;
    if set_bin(&mut t.source_bits, bin) {
        t.sample_sources[(t.sources & 3) as usize] = *src;
        t.sources += 1;
    }
}

/// Restarts a source's scan window (ports, hosts, protocols) when it has
/// run its length.
#[inline(always)]
fn roll_scan(s: &mut SourceState, cfg: &DetectConfig, now: u64) {
    if roll(&mut s.scan_start_ns, cfg.scan_window_ns, now) {
        s.ports = 0;
        s.hosts = 0;
        s.protocols = 0;
        s.tiny = 0;
        clear(&mut s.port_bits);
        clear(&mut s.host_bits);
        clear(&mut s.protocol_bits);
        s.signalled &= !(signal_bit(signal::PORT_SCAN)
            | signal_bit(signal::HOST_SWEEP)
            | signal_bit(signal::PROTOCOL_SCAN)
            | signal_bit(signal::TINY_FRAGMENTS));
    }
}

/// Sets bin `bin` of a bit set of `N` words (`N` a power of two); true
/// when it was not set before.
#[inline(always)]
fn set_bin<const N: usize>(bits: &mut [u64; N], bin: usize) -> bool {
    let word = &mut bits[(bin >> 6) & (N - 1)];
    let bit = 1u64 << (bin & 63);
    let new = *word & bit == 0;
    *word |= bit;
    new
}

/// Counts a packet in a per-source packet-rate window (UDP, ICMP); true
/// when the count has reached a threshold not yet signalled in the window.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn count_flood(
    start: &mut u64,
    count: &mut u32,
    signalled: &mut u32,
    window: u64,
    threshold: u32,
    kind: u8,
    now: u64,
) -> bool {
    if roll(start, window, now) {
        *count = 0;
        *signalled &= !signal_bit(kind);
    }
    *count = count.saturating_add(1);
    crossed(*count, threshold, *signalled, kind)
}

/// Restarts a window that has run its length; true when it did.
#[inline(always)]
fn roll(start: &mut u64, window: u64, now: u64) -> bool {
    if now.wrapping_sub(*start) >= window {
        *start = now;
        true
    } else {
        false
    }
}

/// Whether `count` has reached a threshold (0: off) not yet signalled.
#[inline(always)]
fn crossed(count: u32, threshold: u32, signalled: u32, kind: u8) -> bool {
    threshold != 0 && count >= threshold && signalled & signal_bit(kind) == 0
}

/// Whether packets or bytes reached their threshold (0: off), without
/// branches (each would double the paths the verifier walks).
#[inline(always)]
fn reaches_either(packets: u32, threshold: u32, bytes: u64, bytes_threshold: u64) -> bool {
    (threshold != 0) & (packets >= threshold) | (bytes_threshold != 0) & (bytes >= bytes_threshold)
}

/// Whether SYNs make up at least `permille` of SYNs and ACK-bearing packets.
#[inline(always)]
fn syn_only(syn: u32, ack: u32, permille: u32) -> bool {
    u64::from(syn) * 1000 >= u64::from(permille) * (u64::from(syn) + u64::from(ack))
}

/// The four 32-bit words of an address, xored: the input of the bin hashes.
#[inline(always)]
fn fold(w: &[u32; 4]) -> u32 {
    w[0] ^ w[1] ^ w[2] ^ w[3]
}

/// The seed of the tracking hashes.
#[inline(always)]
fn seed() -> u32 {
    // SAFETY: reading a plain global; volatile so the loader's value is used.
    unsafe { core::ptr::read_volatile(&ADMIT_SEED) }
}

/// Element `i` of a global array the loader sets; 0 out of range.
#[inline(always)]
fn loaded<const N: usize>(global: &'static [u32; N], i: usize) -> u32 {
    // SAFETY: reading a plain global; volatile so the loader's value is
    // used, not the one the object was compiled with.
    global
        .get(i)
        .map_or(0, |v| unsafe { core::ptr::read_volatile(v) })
}

/// The hash state after the IPv4-mapped prefix (`V4_STATE_*`; out of
/// range, 0: a fixed state, whose only loss is its secrecy, and no caller
/// passes one).
#[inline(always)]
fn v4_seed_state(which: usize) -> u32 {
    loaded(&V4_STATES, which)
}

/// The hash of an address: SOURCES and SLOW buckets, sketch cells. An
/// IPv4-mapped one starts from the loader's state after the prefix (the
/// same value, a quarter of the work).
#[inline(always)]
pub(crate) fn hash_addr(a: &[u32; 4]) -> u32 {
    if is_v4_mapped(a) {
        hash_v4(v4_seed_state(V4_STATE_SEED), &[a[3]])
    } else {
        hash_words(a, seed())
    }
}

/// The hash of a TARGETS key, as [`hash_addr`] does it.
#[inline(always)]
pub(crate) fn hash_target(k: &TargetKey) -> u32 {
    if is_v4_mapped(&[k[0], k[1], k[2], k[3]]) {
        hash_v4(v4_seed_state(V4_STATE_TARGET), &[k[3], k[4]])
    } else {
        hash_words(k, seed() ^ TARGET_SALT)
    }
}

/// `buckets - 1` of a tracking table (`TABLE_*`; out of range, 0: one
/// bucket, never out of bounds).
#[inline(always)]
fn mask(table: usize) -> u32 {
    loaded(&TABLE_MASKS, table)
}

/// Whether two keys are equal, word by word (no `memcmp` subprogram).
#[inline(always)]
fn same<const N: usize>(a: &[u32; N], b: &[u32; N]) -> bool {
    let mut diff = 0;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

/// Where `key` is in `bucket`: `(slot, true)`; else `(slot, false)` with
/// the slot a new key takes: an empty one, else the one seen least
/// recently (of two seen in the same clock tick, the less busy).
#[inline(always)]
fn probe<const N: usize, V>(bucket: &Bucket<[u32; N], V>, key: &[u32; N]) -> (usize, bool) {
    let mut victim = 0;
    let mut oldest = u64::MAX;
    for (i, slot) in bucket.iter().enumerate() {
        if slot.seen_ns != 0 && same(&slot.key, key) {
            return (i, true);
        }
        if slot.seen_ns < oldest {
            oldest = slot.seen_ns;
            victim = i;
        }
    }
    (victim, false)
}

/// Zeroes a value word by word. Volatile stores keep LLVM from turning the
/// loop into a `memset` call (a byte-per-iteration subprogram).
#[inline(always)]
fn zero<T>(value: &mut T) {
    const { assert!(size_of::<T>().is_multiple_of(8) && align_of::<T>().is_multiple_of(8)) };
    let words = (value as *mut T).cast::<u64>();
    for i in 0..size_of::<T>() / 8 {
        // SAFETY: `value` is an exclusive reference to a `T` whose size is
        // a multiple of 8 and alignment at least 8 (checked above), so every
        // word written is inside it and aligned; every type zeroed here is
        // plain integers, valid when zero.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
}

/// The state of `key` (hashed to `hash`) in a tracking table of `mask + 1`
/// buckets, and whether it is new: a key not in the table takes a slot,
/// zeroed, when `may_claim` allows. Its windows then start at 0, so the
/// first packet opens each of them.
#[inline(always)]
fn table_state<const N: usize, V>(
    table: &Array<Bucket<[u32; N], V>>,
    mask: u32,
    key: &[u32; N],
    hash: u32,
    now: u64,
    may_claim: impl FnOnce() -> bool,
) -> Option<(*mut V, bool)> {
    let bucket = table.get_ptr_mut(hash & mask)?;
    // SAFETY: a live array value; other CPUs running this code may write
    // it at the same time (see `Slot` and `track`).
    let bucket = unsafe { &mut *bucket };
    let (i, found) = probe(bucket, key);
    let slot = bucket.get_mut(i)?;
    if !found {
        if !may_claim() {
            return None;
        }
        slot.key = *key;
        zero(&mut slot.value);
        slot.seen_ns = now;
    } else {
        // The coarse clock ticks every few milliseconds: counting hits on
        // top of it keeps, of two keys seen in the same tick, the busier.
        slot.seen_ns = slot.seen_ns.max(now) + 1;
    }
    Some((&raw mut slot.value, !found))
}

/// Adds a packet to the admission sketch under `hash` and says whether its
/// key has now sent `threshold` packets in this epoch on this CPU beyond
/// twice the mean load of a cell (the smaller of its two cells: a count-min
/// sketch, whose error is bounded by the mean load). The hash's low bits
/// pick a block (a cache line), higher bits one cell of each row in it.
/// Cells carry their epoch, so a new epoch restarts them without a sweep.
#[inline(always)]
fn admit(adm: &mut Admission, hash: u32, now: u64, threshold: u32) -> bool {
    if threshold <= 1 {
        return true;
    }
    adm.seen_ns = now;
    let epoch = ((now >> ADMIT_EPOCH_SHIFT) as u32) & 0xff;
    let tag = u64::from(epoch) << 56;
    if adm.epoch_packets & !EPOCH_COUNT_MASK != tag {
        adm.epoch_packets = tag;
        clear(&mut adm.admitted_bits);
    }
    adm.epoch_packets += 1;
    let mean = (adm.epoch_packets & EPOCH_COUNT_MASK) >> ADMIT_COLUMNS.trailing_zeros();
    let (a, b) = sketch_cells(hash);
    let a = bump(&mut adm.cells[a], epoch);
    let b = bump(&mut adm.cells[b], epoch);
    let admitted = u64::from(a.min(b)) >= u64::from(threshold) + 2 * mean;
    if admitted {
        set_bin(&mut adm.admitted_bits, admitted_bin(hash));
    }
    admitted
}

/// The bin of `hash` in [`Admission::admitted_bits`]: bits the sketch's
/// block choice does not use.
#[inline(always)]
fn admitted_bin(hash: u32) -> usize {
    (hash >> 8) as usize & (ADMITTED_BITS - 1)
}

/// The two cells of `hash` in the admission sketch: the hash's low bits
/// pick a block (a cache line), higher bits one cell of each row in it.
#[inline(always)]
fn sketch_cells(hash: u32) -> (usize, usize) {
    const BLOCKS: usize = ADMIT_ROWS * ADMIT_COLUMNS / ADMIT_BLOCK_CELLS;
    const ROW: usize = ADMIT_BLOCK_CELLS / ADMIT_ROWS;
    let block = (hash as usize & (BLOCKS - 1)) * ADMIT_BLOCK_CELLS;
    (
        block + ((hash >> 16) as usize & (ROW - 1)),
        block + ROW + ((hash >> 24) as usize & (ROW - 1)),
    )
}

/// Whether the sketch, as this CPU's last packet left it, already admits
/// `hash` (see [`admit`]), without counting a packet and without the clock:
/// for the egress watcher, whose replies follow the remote's own packets.
/// Only a hash whose bin a packet on this CPU was admitted under in this
/// epoch is looked up in the sketch.
#[inline(always)]
pub(crate) fn admitted(adm: &Admission, hash: u32, threshold: u32) -> bool {
    if threshold <= 1 {
        return true;
    }
    // Nobody with this bin was admitted in this epoch: no sketch read.
    let bin = admitted_bin(hash);
    if adm.admitted_bits[(bin >> 6) & (ADMITTED_BITS / 64 - 1)] & (1 << (bin & 63)) == 0 {
        return false;
    }
    let epoch = (adm.epoch_packets >> 56) as u32;
    let mean = (adm.epoch_packets & EPOCH_COUNT_MASK) >> ADMIT_COLUMNS.trailing_zeros();
    let (a, b) = sketch_cells(hash);
    let count = |cell: u32| {
        if cell >> 24 == epoch {
            cell & 0x00ff_ffff
        } else {
            0
        }
    };
    let (a, b) = (count(adm.cells[a]), count(adm.cells[b]));
    u64::from(a.min(b)) >= u64::from(threshold) + 2 * mean
}

/// Counts one refusal of a remote without SOURCES state and says whether
/// this CPU refuses fewer than `per_sec` such remotes a second, in this
/// window of [`QUIET_WINDOW_NS`] and the one before: no flood is on, so
/// the slow tier may spend a SLOW lookup on the refusal. A flood closes
/// the gate within a window and keeps it closed.
#[inline(always)]
pub(crate) fn quiet(adm: &mut Admission, per_sec: u32, now: u64) -> bool {
    let since = now.wrapping_sub(adm.quiet_start_ns);
    if since >= QUIET_WINDOW_NS {
        adm.quiet_prev = if since < 2 * QUIET_WINDOW_NS {
            adm.quiet_count
        } else {
            0
        };
        adm.quiet_count = 0;
        adm.quiet_start_ns = now;
    }
    adm.quiet_count = adm.quiet_count.saturating_add(1);
    // A window is 2^24 ns, about a 64th of a second.
    let limit = per_sec >> 6;
    adm.quiet_prev < limit && adm.quiet_count < limit
}

/// Length of a [`quiet`] window: 2^24 ns, about 17 ms.
const QUIET_WINDOW_NS: u64 = 1 << 24;

/// Whether this CPU may claim one more SLOW slot in this second (and
/// counts it when it may).
#[inline(always)]
pub(crate) fn slow_budget(adm: &mut Admission, per_sec: u32, now: u64) -> bool {
    if now.wrapping_sub(adm.slow_start_ns) >= NS_PER_SEC {
        adm.slow_start_ns = now;
        adm.slow_claimed = 0;
    }
    if adm.slow_claimed >= u64::from(per_sec) {
        return false;
    }
    adm.slow_claimed += 1;
    true
}

/// The count bits of `Admission::epoch_packets`.
const EPOCH_COUNT_MASK: u64 = (1 << 56) - 1;

/// Counts one in a sketch cell; returns the cell's count in `epoch`.
#[inline(always)]
fn bump(cell: &mut u32, epoch: u32) -> u32 {
    if *cell >> 24 != epoch {
        *cell = (epoch << 24) | 1;
        return 1;
    }
    if *cell & 0x00ff_ffff != 0x00ff_ffff {
        *cell += 1;
    }
    *cell & 0x00ff_ffff
}

/// Whether this CPU may create one more SOURCES or TARGETS entry in the
/// current second (and counts it, or counts the refusal).
#[inline(always)]
fn admission_budget(
    adm: &mut Admission,
    per_sec: u32,
    now: u64,
    counters: &mut DetectCounters,
) -> bool {
    if per_sec == 0 {
        return true;
    }
    if now.wrapping_sub(adm.window_start_ns) >= NS_PER_SEC {
        adm.window_start_ns = now;
        adm.window_admitted = 0;
    }
    if adm.window_admitted >= u64::from(per_sec) {
        counters.admit_over_budget += 1;
        return false;
    }
    adm.window_admitted += 1;
    true
}

/// Writes a signal record: the fields every kind shares (`what`: the
/// crossing packet's protocol and destination port), then the kind's own
/// counters through `fill`; or counts the signal as lost when SIGNALS is
/// full.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_signal(
    kind: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    what: (u8, u16),
    ifindex: u32,
    now: u64,
    counters: &mut DetectCounters,
    fill: impl FnOnce(&mut SignalRecord),
) {
    let Some(mut entry) = SIGNALS.reserve::<SignalRecord>(0) else {
        counters.signals_lost += 1;
        return;
    };
    entry.write(SignalRecord {
        timestamp_ns: now,
        window_start_ns: 0,
        src_addr: *src,
        dst_addr: *dst,
        kind,
        protocol: what.0,
        dst_port: what.1,
        ifindex,
        syn: 0,
        ack: 0,
        udp: 0,
        icmp: 0,
        ports: 0,
        hosts: 0,
        sources: 0,
        rst: 0,
        sample_ports: [0; 8],
        sample_sources: [[0; 16]; 4],
        bytes: 0,
    });
    // SAFETY: `write` initialised the whole record.
    fill(unsafe { entry.assume_init_mut() });
    counters.signals += 1;
    entry.submit(0);
}

/// A source's signal, with its counters at the crossing.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn signal_source(
    kind: u8,
    s: &SourceState,
    src: &[u8; 16],
    dst: &[u8; 16],
    pkt: &Packet,
    ifindex: u32,
    now: u64,
    counters: &mut DetectCounters,
) {
    let what = (pkt.protocol, pkt.dst_port);
    emit_signal(kind, src, dst, what, ifindex, now, counters, |rec| {
        rec.window_start_ns = match kind {
            signal::SYN_SOURCE => s.syn_start_ns,
            signal::UDP_FLOOD => s.udp_start_ns,
            signal::ICMP_FLOOD => s.icmp_start_ns,
            signal::RST_FLOOD => s.rst_start_ns,
            _ => s.scan_start_ns,
        };
        rec.rst = s.rst;
        rec.syn = s.syn;
        rec.ack = s.ack;
        rec.udp = s.udp;
        rec.icmp = s.icmp;
        // A protocol scan's count is its distinct protocols.
        rec.ports = match kind {
            signal::PROTOCOL_SCAN => s.protocols,
            signal::TINY_FRAGMENTS => s.tiny,
            _ => s.ports,
        };
        rec.hosts = s.hosts;
        rec.sample_ports = s.sample_ports;
        rec.bytes = match kind {
            signal::UDP_FLOOD => s.udp_bytes,
            signal::ICMP_FLOOD => s.icmp_bytes,
            _ => 0,
        };
    });
}

/// A target's signal (`kind`: SYN, UDP or ICMP target), with its counters
/// at the crossing.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn signal_target(
    kind: u8,
    t: &TargetState,
    src: &[u8; 16],
    dst: &[u8; 16],
    pkt: &Packet,
    ifindex: u32,
    now: u64,
    counters: &mut DetectCounters,
) {
    let what = (pkt.protocol, pkt.dst_port);
    emit_signal(kind, src, dst, what, ifindex, now, counters, |rec| {
        rec.window_start_ns = t.syn_start_ns;
        rec.bytes = t.bytes;
        match kind {
            signal::UDP_TARGET => rec.udp = t.syn,
            signal::ICMP_TARGET => rec.icmp = t.syn,
            signal::RST_TARGET => rec.rst = t.syn,
            _ => {
                rec.syn = t.syn;
                rec.ack = t.ack;
            }
        }
        rec.sources = t.sources;
        rec.sample_sources = t.sample_sources;
    });
}

/// Adds the packet to its class and to TOTAL, in the STATS slot of the
/// interface it arrived on.
#[inline(always)]
fn count(ctx: &XdpContext, class: usize, len: u64, dropped: bool) {
    let Some(stats) = STATS.get_ptr_mut(stats_slot(ctx.ingress_ifindex() as u32)) else {
        return;
    };
    // SAFETY: a non-null pointer to this CPU's entry, which nothing else
    // touches while the program runs on this CPU (XDP runs with preemption
    // disabled).
    let stats = unsafe { &mut *stats };
    let drop = dropped as u64;
    if let Some(c) = stats.classes.get_mut(class) {
        c.packets += 1;
        c.bytes += len;
        c.drops += drop;
    }
    let total = &mut stats.classes[CLASS_TOTAL];
    total.packets += 1;
    total.bytes += len;
    total.drops += drop;
}

/// Writes an event for the packet if this CPU's budget allows; counts it as
/// lost otherwise, or when the ring buffer is full.
#[inline(always)]
fn report(ctx: &XdpContext, pkt: &Packet, action: u8, len: u64, now: u64) {
    let Some(counters) = EVENT_COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: as in `count`: this CPU's own entry, non-null.
    let counters = unsafe { &mut *counters };
    if now.wrapping_sub(counters.window_start_ns) >= NS_PER_SEC {
        counters.window_start_ns = now;
        counters.window_events = 0;
    }
    // SAFETY: reading a plain global; volatile so the loader's value is used
    // rather than the compile-time default.
    let budget = unsafe { core::ptr::read_volatile(&EVENT_BUDGET_PER_SEC) } as u64;
    if counters.window_events >= budget {
        counters.lost_budget += 1;
        return;
    }
    counters.window_events += 1;
    let Some(mut entry) = EVENTS.reserve::<PacketEventRecord>(0) else {
        counters.lost_ring_full += 1;
        return;
    };
    let mut rec = PacketEventRecord {
        timestamp_ns: now,
        pkt_len: len as u32,
        ifindex: ctx.ingress_ifindex() as u32,
        src_port: pkt.src_port,
        dst_port: pkt.dst_port,
        family: pkt.family,
        protocol: pkt.protocol,
        tcp_flags: pkt.tcp_flags,
        action,
        vlan_id: pkt.vlan_id,
        ..PacketEventRecord::default()
    };
    if pkt.family == FAMILY_IPV6 {
        if let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, pkt.l3_off) {
            // SAFETY: ptr_at checked the bounds; alignment 1.
            let ip = unsafe { &*ip };
            rec.src_addr = ip.src;
            rec.dst_addr = ip.dst;
        }
    } else if let Some(ip) = ptr_at::<Ipv4Hdr>(ctx, pkt.l3_off) {
        // SAFETY: ptr_at checked the bounds; alignment 1.
        let ip = unsafe { &*ip };
        rec.src_addr[..4].copy_from_slice(&ip.src);
        rec.dst_addr[..4].copy_from_slice(&ip.dst);
    }
    entry.write(rec);
    entry.submit(0);
    counters.delivered += 1;
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program: every panic path would be rejected
    // by the verifier as an infinite loop.
    loop {}
}
