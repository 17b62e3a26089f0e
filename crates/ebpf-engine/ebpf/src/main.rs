//! `ironpost_xdp`: Ironpost's per-packet datapath.
//!
//! Parses Ethernet (up to two VLAN tags), IPv4 and IPv6, then TCP, UDP and
//! ICMP; applies the policy (allow list, source rules, destination rules,
//! port rules, in that order; see `policy`); counts every packet per
//! traffic class and every rule hit; and reports dropped and monitored
//! packets through the EVENTS ring buffer within a per-CPU budget, counting
//! every report it could not deliver. Packets the policy lets through are
//! also tracked for detection (see `track`): per-source and per-target
//! state in LRU maps, and a signal in SIGNALS when a threshold is crossed.
//! It fails open: whatever it cannot
//! parse is passed and counted as OTHER. It never returns `XDP_ABORTED` and
//! never logs per packet.
#![no_std]
#![no_main]
// `atomic_xadd`: the bpf target has no compare-and-swap, so `AtomicU64`
// offers no `fetch_add`; the intrinsic lowers to the BPF atomic add.
#![feature(core_intrinsics)]
#![allow(internal_features)]

use core::{
    cell::UnsafeCell,
    intrinsics::{AtomicOrdering, atomic_xadd},
    mem::size_of,
};

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, xdp_action},
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::XdpContext,
};
use ironpost_ebpf_common::{
    ACTION_DROP, ACTION_NONE, ACTION_PASS, CLASS_ICMP, CLASS_OTHER, CLASS_TCP, CLASS_TOTAL,
    CLASS_UDP, DEFAULT_ALLOW_MAX_ENTRIES, DEFAULT_BLOCKLIST_MAX_ENTRIES,
    DEFAULT_EVENT_BUDGET_PER_SEC, DEFAULT_RING_BUFFER_SIZE, DEFAULT_SIGNAL_RING_SIZE,
    DEFAULT_TRACKED_SOURCES, DetectConfig, DetectCounters, EventCounters, FAMILY_IPV4, FAMILY_IPV6,
    POLICY_ALLOW_V4, POLICY_ALLOW_V6, POLICY_DST_V4, POLICY_DST_V6, POLICY_EXACT_V4, POLICY_PORTS,
    POLICY_SRC_V4, POLICY_SRC_V6, PORT_INDEX_LEN, PORT_RULE_SLOTS, PacketEventRecord, RuleValue,
    SignalRecord, SourceState, TRACKED_TARGETS, TargetKey, TargetState, TrafficCounters, ipproto,
    port_index, signal, signal_bit, tcp_flags,
};

/// [`RuleValue`] as the program sees it: the same layout, with the hit
/// counters in cells because every CPU adds to them (atomically).
#[repr(C)]
struct Rule {
    action: u8,
    cond_proto: u8,
    else_action: u8,
    reserved: u8,
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
static STATS: PerCpuArray<TrafficCounters> = PerCpuArray::with_max_entries(1, 0);

/// Reports of dropped and monitored packets.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BUFFER_SIZE, 0);

/// Per-CPU event budget state and loss counters.
#[map]
static EVENT_COUNTERS: PerCpuArray<EventCounters> = PerCpuArray::with_max_entries(1, 0);

/// Detection state per source address.
#[map]
static SOURCES: LruHashMap<[u8; 16], SourceState> =
    LruHashMap::with_max_entries(DEFAULT_TRACKED_SOURCES, 0);

/// SYN flood state per destination address and TCP port.
#[map]
static TARGETS: LruHashMap<TargetKey, TargetState> =
    LruHashMap::with_max_entries(TRACKED_TARGETS, 0);

/// Threshold crossings for the detectors in user space.
#[map]
static SIGNALS: RingBuf = RingBuf::with_byte_size(DEFAULT_SIGNAL_RING_SIZE, 0);

/// Detection windows and thresholds, written by user space.
#[map]
static DETECT_CONFIG: Array<DetectConfig> = Array::with_max_entries(1, 0);

/// Per-CPU detection counters.
#[map]
static DETECT_COUNTERS: PerCpuArray<DetectCounters> = PerCpuArray::with_max_entries(1, 0);

/// The value a new SOURCES entry starts from: zero windows start, so the
/// first packet opens each of them.
static EMPTY_SOURCE: SourceState = SourceState {
    syn_start_ns: 0,
    scan_start_ns: 0,
    udp_start_ns: 0,
    icmp_start_ns: 0,
    syn: 0,
    ack: 0,
    udp: 0,
    icmp: 0,
    ports: 0,
    hosts: 0,
    signalled: 0,
    reserved: 0,
    port_bits: [0; 8],
    host_bits: [0; 4],
    sample_ports: [0; 8],
};

/// The value a new TARGETS entry starts from.
static EMPTY_TARGET: TargetState = TargetState {
    syn_start_ns: 0,
    syn: 0,
    ack: 0,
    sources: 0,
    signalled: 0,
    source_bits: [0; 4],
    sample_sources: [[0; 16]; 4],
};

/// Events per second per CPU; the loader overrides it.
#[unsafe(no_mangle)]
static EVENT_BUDGET_PER_SEC: u32 = DEFAULT_EVENT_BUDGET_PER_SEC;

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
/// Multiplier for the bin hashes (Fibonacci hashing).
const GOLDEN: u32 = 0x9e37_79b1;

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
    /// The L4 header was read: ports and flags are valid.
    has_l4: bool,
    /// IPv4 addresses, as read from the packet.
    src4: [u8; 4],
    dst4: [u8; 4],
    /// Offset of the IP header; addresses for events are read from there
    /// only when a packet is reported, not for every packet.
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
            src4: [0; 4],
            dst4: [0; 4],
            l3_off: 0,
        }
    }
}

/// XDP entry point.
#[xdp]
pub fn ironpost_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    let mut pkt = Packet::new();
    let action = match parse(&ctx, &mut pkt) {
        Some(()) => policy(&ctx, &pkt, len),
        None => {
            // Fail open: malformed or truncated traffic passes as OTHER.
            pkt.class = CLASS_OTHER;
            ACTION_PASS
        }
    };
    let allowed = action == ALLOWED;
    let action = if allowed { ACTION_PASS } else { action };
    count(pkt.class, len, action == ACTION_DROP);
    // Dropped packets are not tracked (a blocked source stays quiet for the
    // detectors), nor allow-listed ones.
    if action != ACTION_DROP && pkt.has_l4 && !allowed {
        track(&ctx, &pkt);
    }
    if action != ACTION_PASS {
        report(&ctx, &pkt, action, len);
    }
    if action == ACTION_DROP {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
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

/// Parses L2 to L4 into `pkt`; `None` when the packet is truncated or
/// malformed. Well-formed traffic the program does not look into (ARP, IPv6
/// extension headers, other IP protocols) is `Some` with its class set.
#[inline(always)]
fn parse(ctx: &XdpContext, pkt: &mut Packet) -> Option<()> {
    let eth_type: *const [u8; 2] = ptr_at(ctx, 12)?;
    // SAFETY: ptr_at checked that the two bytes lie inside the packet.
    let mut proto = be16(unsafe { *eth_type });
    let mut off = ETH_HDR_LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let tag: *const [u8; 4] = ptr_at(ctx, off)?;
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
        _ => Some(()),
    }
}

#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, pkt: &mut Packet, off: usize) -> Option<()> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, off)?;
    // SAFETY: ptr_at checked that the whole fixed header lies in the packet;
    // the struct has alignment 1.
    let ip = unsafe { &*ip };
    if ip.ver_ihl >> 4 != 4 {
        return None;
    }
    let ihl = ((ip.ver_ihl & 0x0f) as usize) * 4;
    if ihl < IPV4_MIN_HDR_LEN {
        return None;
    }
    // The options, if any, must be in the packet too.
    ptr_at::<u8>(ctx, off + ihl - 1)?;
    pkt.family = FAMILY_IPV4;
    pkt.protocol = ip.protocol;
    pkt.src4 = ip.src;
    pkt.dst4 = ip.dst;
    pkt.l3_off = off;
    // Only the first fragment carries the L4 header.
    let first_fragment = be16(ip.frag_off) & 0x1fff == 0;
    parse_l4(
        ctx,
        pkt,
        off + ihl,
        ip.protocol,
        ipproto::ICMP,
        first_fragment,
    )
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, pkt: &mut Packet, off: usize) -> Option<()> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, off)?;
    // SAFETY: ptr_at checked that the fixed header lies in the packet; the
    // struct has alignment 1.
    let ip = unsafe { &*ip };
    if ip.ver_tc_flow[0] >> 4 != 6 {
        return None;
    }
    pkt.family = FAMILY_IPV6;
    pkt.protocol = ip.next_header;
    pkt.l3_off = off;
    parse_l4(
        ctx,
        pkt,
        off + IPV6_HDR_LEN,
        ip.next_header,
        ipproto::ICMPV6,
        true,
    )
}

/// Classifies by L4 protocol and, when `has_header`, reads ports and flags.
#[inline(always)]
fn parse_l4(
    ctx: &XdpContext,
    pkt: &mut Packet,
    off: usize,
    protocol: u8,
    icmp: u8,
    has_header: bool,
) -> Option<()> {
    if protocol == ipproto::TCP {
        pkt.class = CLASS_TCP;
        if has_header {
            let tcp: *const TcpHdr = ptr_at(ctx, off)?;
            // SAFETY: ptr_at checked the bounds; alignment 1.
            let tcp = unsafe { &*tcp };
            if (tcp.data_off >> 4) < 5 {
                return None;
            }
            pkt.src_port = be16(tcp.src_port);
            pkt.dst_port = be16(tcp.dst_port);
            pkt.tcp_flags = tcp.flags;
            pkt.has_l4 = true;
        }
    } else if protocol == ipproto::UDP {
        pkt.class = CLASS_UDP;
        if has_header {
            let udp: *const UdpHdr = ptr_at(ctx, off)?;
            // SAFETY: ptr_at checked the bounds; alignment 1.
            let udp = unsafe { &*udp };
            pkt.src_port = be16(udp.src_port);
            pkt.dst_port = be16(udp.dst_port);
            pkt.has_l4 = true;
        }
    } else if protocol == icmp {
        pkt.class = CLASS_ICMP;
        if has_header {
            // Type, code, checksum and the 4-byte rest of header that
            // every ICMP and ICMPv6 message has.
            let hdr: *const [u8; 8] = ptr_at(ctx, off)?;
            // SAFETY: ptr_at checked the bounds; alignment 1.
            pkt.icmp_type = unsafe { (*hdr)[0] };
            pkt.has_l4 = true;
        }
    } else {
        pkt.class = CLASS_OTHER;
    }
    Some(())
}

/// The action for a parsed packet. Stages, first decision wins:
/// 1. allow list (source): pass;
/// 2. source rules: the exact IPv4 entry, else the longest source prefix;
/// 3. destination rules: the longest destination prefix;
/// 4. port rules: protocol and destination port;
/// 5. pass.
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
    if flags == 0 {
        return ACTION_PASS;
    }
    let action = if pkt.family == FAMILY_IPV4 {
        policy_v4(pkt, flags, len)
    } else if pkt.family == FAMILY_IPV6 {
        policy_v6(ctx, pkt, flags, len)
    } else {
        ACTION_NONE
    };
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
        && let Some(rule) = ALLOW_V6.get(Key::new(128, ip.src))
    {
        hit(rule, len);
        return ALLOWED;
    }
    if flags & POLICY_SRC_V6 != 0
        && let Some(rule) = SRC_V6.get(Key::new(128, ip.src))
    {
        let action = decide(rule, pkt, len);
        if action != ACTION_NONE {
            return action;
        }
    }
    if flags & POLICY_DST_V6 != 0
        && let Some(rule) = DST_V6.get(Key::new(128, ip.dst))
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
fn track(ctx: &XdpContext, pkt: &Packet) {
    let Some(cfg) = DETECT_CONFIG.get(0) else {
        return;
    };
    if cfg.enabled == 0 {
        return;
    }
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if pkt.family == FAMILY_IPV4 {
        src[10] = 0xff;
        src[11] = 0xff;
        src[12..].copy_from_slice(&pkt.src4);
        dst[10] = 0xff;
        dst[11] = 0xff;
        dst[12..].copy_from_slice(&pkt.dst4);
    } else {
        let Some(ip) = ptr_at::<Ipv6Hdr>(ctx, pkt.l3_off) else {
            return;
        };
        // SAFETY: ptr_at checked the bounds; alignment 1.
        let ip = unsafe { &*ip };
        src = ip.src;
        dst = ip.dst;
    }
    let Some(counters) = DETECT_COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's own entry, non-null (as in `count`).
    let counters = unsafe { &mut *counters };
    // SAFETY: a helper without arguments or preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
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

    if let Some(s) = source_state(&src, counters) {
        // SAFETY: a live LRU value; the program is its only writer besides
        // other CPUs running this same code (see the function comment).
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
        if port_probe || host_probe {
            if roll(&mut s.scan_start_ns, cfg.scan_window_ns, now) {
                s.ports = 0;
                s.hosts = 0;
                s.port_bits = [0; 8];
                s.host_bits = [0; 4];
                s.signalled &= !(signal_bit(signal::PORT_SCAN) | signal_bit(signal::HOST_SWEEP));
            }
            if port_probe {
                let bin = (u32::from(pkt.dst_port).wrapping_mul(GOLDEN) >> 23) as usize;
                if set_bin(&mut s.port_bits, bin) {
                    s.sample_ports[(s.ports & 7) as usize] = pkt.dst_port;
                    s.ports += 1;
                    if fire == 0
                        && crossed(s.ports, cfg.port_threshold, s.signalled, signal::PORT_SCAN)
                    {
                        fire = signal::PORT_SCAN;
                    }
                }
            }
            let bin = (fold(&dst).wrapping_mul(GOLDEN) >> 24) as usize;
            if set_bin(&mut s.host_bits, bin) {
                s.hosts += 1;
                if fire == 0
                    && crossed(s.hosts, cfg.host_threshold, s.signalled, signal::HOST_SWEEP)
                {
                    fire = signal::HOST_SWEEP;
                }
            }
        }
        if pkt.class == CLASS_UDP {
            let crossing = count_flood(
                &mut s.udp_start_ns,
                &mut s.udp,
                &mut s.signalled,
                cfg.udp_window_ns,
                cfg.udp_threshold,
                signal::UDP_FLOOD,
                now,
            );
            if fire == 0 && crossing {
                fire = signal::UDP_FLOOD;
            }
        }
        if pkt.class == CLASS_ICMP {
            let crossing = count_flood(
                &mut s.icmp_start_ns,
                &mut s.icmp,
                &mut s.signalled,
                cfg.icmp_window_ns,
                cfg.icmp_threshold,
                signal::ICMP_FLOOD,
                now,
            );
            if fire == 0 && crossing {
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
        let key = TargetKey {
            addr: dst,
            port: pkt.dst_port,
            reserved: 0,
        };
        if let Some(t) = target_state(&key, counters) {
            // SAFETY: as for the source state above.
            let t = unsafe { &mut *t };
            if roll(&mut t.syn_start_ns, cfg.syn_window_ns, now) {
                t.syn = 0;
                t.ack = 0;
                t.sources = 0;
                t.source_bits = [0; 4];
                t.signalled = 0;
            }
            if syn {
                t.syn = t.syn.saturating_add(1);
                let bin = (fold(&src).wrapping_mul(GOLDEN) >> 24) as usize;
                if set_bin(&mut t.source_bits, bin) {
                    t.sample_sources[(t.sources & 3) as usize] = src;
                    t.sources += 1;
                }
                if crossed(
                    t.syn,
                    cfg.target_syn_threshold,
                    t.signalled,
                    signal::SYN_TARGET,
                ) && syn_only(t.syn, t.ack, cfg.syn_ratio_permille)
                {
                    t.signalled |= signal_bit(signal::SYN_TARGET);
                    signal_target(t, &src, &dst, pkt, ifindex, now, counters);
                }
            } else {
                t.ack = t.ack.saturating_add(1);
            }
        }
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
fn count_flood(
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

/// Whether SYNs make up at least `permille` of SYNs and ACK-bearing packets.
#[inline(always)]
fn syn_only(syn: u32, ack: u32, permille: u32) -> bool {
    u64::from(syn) * 1000 >= u64::from(permille) * (u64::from(syn) + u64::from(ack))
}

/// The four 32-bit words of an address, xored: the input of the bin hashes.
#[inline(always)]
fn fold(a: &[u8; 16]) -> u32 {
    let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
    w(0) ^ w(4) ^ w(8) ^ w(12)
}

/// The source's state, created empty when it is new.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "passing the static by value would copy it onto the 512-byte stack"
)]
fn source_state(key: &[u8; 16], counters: &mut DetectCounters) -> Option<*mut SourceState> {
    if let Some(s) = SOURCES.get_ptr_mut(key) {
        return Some(s);
    }
    if SOURCES.insert(key, &EMPTY_SOURCE, 0).is_ok() {
        counters.sources_new += 1;
    }
    SOURCES.get_ptr_mut(key)
}

/// The target's state, created empty when it is new.
#[inline(always)]
#[expect(
    clippy::needless_borrows_for_generic_args,
    reason = "passing the static by value would copy it onto the 512-byte stack"
)]
fn target_state(key: &TargetKey, counters: &mut DetectCounters) -> Option<*mut TargetState> {
    if let Some(t) = TARGETS.get_ptr_mut(key) {
        return Some(t);
    }
    if TARGETS.insert(key, &EMPTY_TARGET, 0).is_ok() {
        counters.targets_new += 1;
    }
    TARGETS.get_ptr_mut(key)
}

/// Reserves a signal record with the fields every kind shares, or counts
/// the signal as lost when SIGNALS is full.
#[inline(always)]
fn reserve_signal(
    kind: u8,
    src: &[u8; 16],
    dst: &[u8; 16],
    pkt: &Packet,
    ifindex: u32,
    now: u64,
    counters: &mut DetectCounters,
) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<SignalRecord>> {
    let Some(mut entry) = SIGNALS.reserve::<SignalRecord>(0) else {
        counters.signals_lost += 1;
        return None;
    };
    entry.write(SignalRecord {
        timestamp_ns: now,
        window_start_ns: 0,
        src_addr: *src,
        dst_addr: *dst,
        kind,
        protocol: pkt.protocol,
        dst_port: pkt.dst_port,
        ifindex,
        syn: 0,
        ack: 0,
        udp: 0,
        icmp: 0,
        ports: 0,
        hosts: 0,
        sources: 0,
        reserved: 0,
        sample_ports: [0; 8],
        sample_sources: [[0; 16]; 4],
    });
    counters.signals += 1;
    Some(entry)
}

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
    let Some(mut entry) = reserve_signal(kind, src, dst, pkt, ifindex, now, counters) else {
        return;
    };
    // SAFETY: `reserve_signal` initialised the whole record.
    let rec = unsafe { entry.assume_init_mut() };
    rec.window_start_ns = match kind {
        signal::SYN_SOURCE => s.syn_start_ns,
        signal::UDP_FLOOD => s.udp_start_ns,
        signal::ICMP_FLOOD => s.icmp_start_ns,
        _ => s.scan_start_ns,
    };
    rec.syn = s.syn;
    rec.ack = s.ack;
    rec.udp = s.udp;
    rec.icmp = s.icmp;
    rec.ports = s.ports;
    rec.hosts = s.hosts;
    rec.sample_ports = s.sample_ports;
    entry.submit(0);
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn signal_target(
    t: &TargetState,
    src: &[u8; 16],
    dst: &[u8; 16],
    pkt: &Packet,
    ifindex: u32,
    now: u64,
    counters: &mut DetectCounters,
) {
    let Some(mut entry) = reserve_signal(signal::SYN_TARGET, src, dst, pkt, ifindex, now, counters)
    else {
        return;
    };
    // SAFETY: `reserve_signal` initialised the whole record.
    let rec = unsafe { entry.assume_init_mut() };
    rec.window_start_ns = t.syn_start_ns;
    rec.syn = t.syn;
    rec.ack = t.ack;
    rec.sources = t.sources;
    rec.sample_sources = t.sample_sources;
    entry.submit(0);
}

/// Adds the packet to its class and to TOTAL.
#[inline(always)]
fn count(class: usize, len: u64, dropped: bool) {
    let Some(stats) = STATS.get_ptr_mut(0) else {
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
fn report(ctx: &XdpContext, pkt: &Packet, action: u8, len: u64) {
    let Some(counters) = EVENT_COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: as in `count`: this CPU's own entry, non-null.
    let counters = unsafe { &mut *counters };
    // SAFETY: a helper without arguments or preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
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
