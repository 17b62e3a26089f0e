//! `ironpost_xdp`: Ironpost's per-packet datapath.
//!
//! Parses Ethernet (up to two VLAN tags), IPv4 and IPv6, then TCP, UDP and
//! ICMP; applies the exact-source BLOCKLIST to IPv4; counts every packet per
//! traffic class; and reports dropped and monitored packets through the
//! EVENTS ring buffer within a per-CPU budget, counting every report it could
//! not deliver. It fails open: whatever it cannot parse is passed and counted
//! as OTHER. It never returns `XDP_ABORTED` and never logs per packet.
#![no_std]
#![no_main]

use core::mem::size_of;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use ironpost_ebpf_common::{
    ACTION_DROP, ACTION_MONITOR, ACTION_PASS, BlocklistValue, CLASS_ICMP, CLASS_OTHER, CLASS_TCP,
    CLASS_TOTAL, CLASS_UDP, DEFAULT_BLOCKLIST_MAX_ENTRIES, DEFAULT_EVENT_BUDGET_PER_SEC,
    DEFAULT_RING_BUFFER_SIZE, EventCounters, FAMILY_IPV4, FAMILY_IPV6, PacketEventRecord,
    TrafficCounters, ipproto,
};

/// Exact IPv4 source (network byte order, as read from the packet) → action.
#[map]
static BLOCKLIST: HashMap<u32, BlocklistValue> =
    HashMap::with_max_entries(DEFAULT_BLOCKLIST_MAX_ENTRIES, 0);

/// Per-CPU counters per traffic class.
#[map]
static STATS: PerCpuArray<TrafficCounters> = PerCpuArray::with_max_entries(1, 0);

/// Reports of dropped and monitored packets.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BUFFER_SIZE, 0);

/// Per-CPU event budget state and loss counters.
#[map]
static EVENT_COUNTERS: PerCpuArray<EventCounters> = PerCpuArray::with_max_entries(1, 0);

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
    vlan_id: u16,
    src_port: u16,
    dst_port: u16,
    /// IPv4 source, the BLOCKLIST key.
    src4: [u8; 4],
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
            vlan_id: 0,
            src_port: 0,
            dst_port: 0,
            src4: [0; 4],
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
        Some(()) => policy(&pkt),
        None => {
            // Fail open: malformed or truncated traffic passes as OTHER.
            pkt.class = CLASS_OTHER;
            ACTION_PASS
        }
    };
    count(pkt.class, len, action == ACTION_DROP);
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
        }
    } else if protocol == ipproto::UDP {
        pkt.class = CLASS_UDP;
        if has_header {
            let udp: *const UdpHdr = ptr_at(ctx, off)?;
            // SAFETY: ptr_at checked the bounds; alignment 1.
            let udp = unsafe { &*udp };
            pkt.src_port = be16(udp.src_port);
            pkt.dst_port = be16(udp.dst_port);
        }
    } else if protocol == icmp {
        pkt.class = CLASS_ICMP;
        if has_header {
            // Type, code, checksum and the 4-byte rest of header that
            // every ICMP and ICMPv6 message has.
            ptr_at::<[u8; 8]>(ctx, off)?;
        }
    } else {
        pkt.class = CLASS_OTHER;
    }
    Some(())
}

/// The action for a parsed packet.
#[inline(always)]
fn policy(pkt: &Packet) -> u8 {
    if pkt.family != FAMILY_IPV4 {
        return ACTION_PASS;
    }
    let key = u32::from_ne_bytes(pkt.src4);
    // SAFETY: the value is copied out at once; the entry is not held across
    // helper calls.
    match unsafe { BLOCKLIST.get(key) } {
        Some(v) if v.action == ACTION_DROP || v.action == ACTION_MONITOR => v.action,
        _ => ACTION_PASS,
    }
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
