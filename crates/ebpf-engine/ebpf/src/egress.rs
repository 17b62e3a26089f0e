//! `ironpost_egress`: what the host refuses, seen on egress (TC).
//!
//! A TCP RST, an ICMP port or protocol unreachable (type 3, codes 3 and 2),
//! or an ICMPv6 port unreachable (type 1 code 4) or unrecognised next
//! header (type 4 code 1) that the host sends says it refused something the
//! remote address tried: a closed port, a protocol it does not speak. FIN,
//! NULL, Xmas, Maimon, ACK, UDP and IP-protocol scans all end in refusals,
//! whatever their probes look like on ingress. Each refused port (or
//! protocol) counts once per scan window in the remote's SOURCES state; at
//! `refused_threshold` distinct ones the program signals REFUSED_SCAN. A
//! SYN-ACK counts as a connection the host accepted. A RST without ACK
//! answers a segment whose ACK matched nothing the host sent: at
//! `ack_threshold` of them per ACK window the program signals ACK_FLOOD.
//! A refusal of a remote too quiet for SOURCES (one probe every few
//! seconds never earns admission) counts in SLOW instead, over a long
//! window, while the CPU sees no flood: at `slow_threshold` distinct ports
//! the program signals SLOW_SCAN. RSTs without ACK to remotes without
//! state (a spoofed ACK flood) count against the host's address that sent
//! them: at `ack_target_threshold` per ACK window the program signals
//! ACK_TARGET. The program only reads: every packet
//! goes on untouched.

use aya_ebpf::{macros::classifier, programs::TcContext};
use ironpost_ebpf_common::{
    Admission, DetectConfig, DetectCounters, SignalRecord, TABLE_SLOW, TABLE_SOURCES,
    TABLE_TARGETS, TARGET_ACK_REFUSALS, TARGET_REFUSALS, TargetKey, TargetState, hash::GOLDEN,
    ipproto, signal, signal_bit, tcp_flags,
};

use crate::{
    ADMISSION, DETECT_CONFIG, DETECT_COUNTERS, SLOW, SOURCES, TARGETS, add_target_source, addr,
    admission_budget, admitted, clear, clock, count_flood, crossed, emit_signal, hash_addr,
    hash_target, mapped_v4, mask, quiet, reset_target, roll, set_bin, slow_budget, table_state,
};

/// `TC_ACT_UNSPEC`, which TCX reads as "next": the packet goes on as if
/// the program were not there.
const TC_NEXT: i32 = -1;
/// EtherTypes.
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
/// A refused protocol (not a port) is counted as `PROTOCOL_MARK | proto`.
const PROTOCOL_MARK: u16 = 0xff00;

/// TC egress entry point.
#[classifier]
pub fn ironpost_egress(ctx: TcContext) -> i32 {
    if let Some(cfg) = DETECT_CONFIG.get(0)
        && cfg.replies != 0
        && let Some(reply) = reply(&ctx)
    {
        record(&ctx, cfg, &reply);
    }
    TC_NEXT
}

/// A reply of the host that tells something about the remote address.
struct Reply {
    /// The remote address (the packet's destination), as SOURCES keys it.
    remote: [u32; 4],
    /// The host's address (the packet's source).
    local: [u32; 4],
    /// What was refused: the protocol of the remote's packet and its
    /// destination port (or `PROTOCOL_MARK | protocol`); `None` for a
    /// SYN-ACK, a connection the host accepted.
    refused: Option<(u8, u16)>,
    /// A RST without ACK: the refused segment carried an ACK that matched
    /// nothing the host sent (an ACK flood or scan, a stale connection).
    ack_refused: bool,
}

/// The `N` bytes at `off`, if the linear packet data holds them: one
/// bounds check per header, and every field read through the pointer it
/// checked (the verifier does not carry a check over to a pointer computed
/// again).
#[inline(always)]
fn bytes<const N: usize>(ctx: &TcContext, off: usize) -> Option<&[u8; N]> {
    let p = ctx.data() + off;
    if p + N > ctx.data_end() {
        return None;
    }
    // SAFETY: the verifier-checked range [data, data_end) holds the N
    // bytes at `p`; alignment 1; the packet outlives this program run.
    Some(unsafe { &*(p as *const [u8; N]) })
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses the packet the host sends: Ethernet (up to two VLAN tags), then
/// IPv4 (not a later fragment) or IPv6 (no extension headers: the host's
/// RSTs and ICMP errors carry none), then the TCP flags or the ICMP error
/// and the header it quotes.
#[inline(always)]
fn reply(ctx: &TcContext) -> Option<Reply> {
    let eth = bytes::<14>(ctx, 0)?;
    let mut ethertype = be16(eth, 12);
    let mut l3 = 14;
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        let tag = bytes::<4>(ctx, l3)?;
        ethertype = be16(tag, 2);
        l3 += 4;
    }
    let (remote, local, protocol, l4) = if ethertype == ETH_P_IP {
        let ip = bytes::<20>(ctx, l3)?;
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[0] >> 4 != 4 || ihl < 20 || be16(ip, 6) & 0x1fff != 0 {
            return None;
        }
        let src = mapped_v4([ip[12], ip[13], ip[14], ip[15]]);
        let dst = mapped_v4([ip[16], ip[17], ip[18], ip[19]]);
        (dst, src, ip[9], l3 + ihl)
    } else if ethertype == ETH_P_IPV6 {
        let ip = bytes::<40>(ctx, l3)?;
        if ip[0] >> 4 != 6 {
            return None;
        }
        let w = |at: usize| u32::from_ne_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
        let src = [w(8), w(12), w(16), w(20)];
        let dst = [w(24), w(28), w(32), w(36)];
        (dst, src, ip[6], l3 + 40)
    } else {
        return None;
    };
    let mut ack_refused = false;
    let refused = match protocol {
        ipproto::TCP => {
            let tcp = bytes::<14>(ctx, l4)?;
            let flags = tcp[13];
            if flags & tcp_flags::RST != 0 {
                ack_refused = flags & tcp_flags::ACK == 0;
                // The host's port that refused the remote.
                Some((ipproto::TCP, be16(tcp, 0)))
            } else if flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK {
                None
            } else {
                return None;
            }
        }
        ipproto::ICMP => {
            // Type, code, 6 more bytes, then the quoted IPv4 header (taken
            // to be 20 bytes: the remote's probe) and its ports.
            let icmp = bytes::<32>(ctx, l4)?;
            let (kind, code, inner_proto) = (icmp[0], icmp[1], icmp[8 + 9]);
            if kind != 3 || icmp[8] != 0x45 {
                return None;
            }
            match code {
                2 => Some((inner_proto, PROTOCOL_MARK | u16::from(inner_proto))),
                3 => Some((inner_proto, be16(icmp, 8 + 20 + 2))),
                _ => return None,
            }
        }
        ipproto::ICMPV6 => {
            // Type, code, 6 more bytes, the quoted IPv6 header, its ports.
            let icmp = bytes::<52>(ctx, l4)?;
            let (kind, code, inner_proto) = (icmp[0], icmp[1], icmp[8 + 6]);
            match (kind, code) {
                (1, 4) => Some((inner_proto, be16(icmp, 8 + 40 + 2))),
                (4, 1) => Some((inner_proto, PROTOCOL_MARK | u16::from(inner_proto))),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(Reply {
        remote,
        local,
        refused,
        ack_refused,
    })
}

/// Counts the reply in the remote's SOURCES state (a remote the admission
/// sketch lets in, as on ingress) and signals at the threshold.
#[inline(always)]
fn record(ctx: &TcContext, cfg: &DetectConfig, reply: &Reply) {
    let Some(adm) = ADMISSION.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's own entry, non-null.
    let adm = unsafe { &mut *adm };
    let hash = hash_addr(&reply.remote);
    // The sketch first, as on ingress, and read only: the remote's own
    // packets did the counting. A reply to a spoofed source (a RST to each
    // SYN of a random-source flood) finds its bin among the epoch's
    // admitted ones clear and costs no sketch block, no clock, no SOURCES
    // bucket.
    let tracked = admitted(adm, hash, cfg.admit_packets);
    // ACKs refused to remotes without state (a spoofed ACK flood) count
    // against the host's address, flood or no flood.
    if !tracked
        && reply.ack_refused
        && cfg.ack_target_threshold != 0
        && let Some(what) = reply.refused
    {
        record_ack_target(ctx, cfg, adm, reply, what);
    }
    // A refusal of a remote without SOURCES state counts only while the
    // CPU sees no flood of them (the gate reads the clock of the remote's
    // own packet, just before: no helper call for a reply it turns away).
    let counts = tracked
        || ((cfg.slow_threshold != 0 || cfg.distributed_ports != 0)
            && reply.refused.is_some()
            && quiet(adm, cfg.slow_gate, adm.seen_ns));
    if !counts {
        return;
    }
    let Some(counters) = DETECT_COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's own entry, non-null.
    let counters = unsafe { &mut *counters };
    let now = clock();
    if cfg.distributed_ports != 0
        && let Some(what) = reply.refused
    {
        record_distributed(ctx, cfg, adm, reply, what, now, counters);
    }
    if !tracked {
        if cfg.slow_threshold != 0
            && let Some(what) = reply.refused
        {
            record_slow(ctx, cfg, adm, reply, hash, what, now, counters);
        }
        return;
    }
    let Some((s, new)) = table_state(
        &SOURCES,
        mask(TABLE_SOURCES),
        &reply.remote,
        hash,
        now,
        || admission_budget(adm, cfg.admit_per_sec, now, counters),
    ) else {
        return;
    };
    counters.sources_new += u64::from(new);
    // SAFETY: a live array value, written without atomics like ingress
    // does (see `track`).
    let s = unsafe { &mut *s };
    if roll(&mut s.refused_start_ns, cfg.scan_window_ns, now) {
        s.refused = 0;
        s.accepted = 0;
        clear(&mut s.refused_bits);
        s.signalled &= !signal_bit(signal::REFUSED_SCAN);
    }
    let Some((protocol, port)) = reply.refused else {
        s.accepted = s.accepted.saturating_add(1);
        return;
    };
    if reply.ack_refused
        && count_flood(
            &mut s.ack_start_ns,
            &mut s.ack_refused,
            &mut s.signalled,
            cfg.ack_window_ns,
            cfg.ack_threshold,
            signal::ACK_FLOOD,
            now,
        )
        // Refusals spread over many ports are an ACK scan, which the
        // refused-port count below reports; a flood hits a few.
        && (cfg.refused_threshold == 0 || s.refused < cfg.refused_threshold)
    {
        s.signalled |= signal_bit(signal::ACK_FLOOD);
        let what = (protocol, port);
        signal_reply(ctx, signal::ACK_FLOOD, reply, what, now, counters, |rec| {
            rec.window_start_ns = s.ack_start_ns;
            rec.ack = s.ack_refused;
        });
    }
    if cfg.refused_threshold == 0 {
        return;
    }
    let bin = (u32::from(port).wrapping_mul(GOLDEN) >> 23) as usize;
    if !set_bin(&mut s.refused_bits, bin) {
        return;
    }
    s.refused_ports[(s.refused & 7) as usize] = port;
    s.refused += 1;
    if crossed(
        s.refused,
        cfg.refused_threshold,
        s.signalled,
        signal::REFUSED_SCAN,
    ) {
        s.signalled |= signal_bit(signal::REFUSED_SCAN);
        let what = (protocol, port);
        signal_reply(
            ctx,
            signal::REFUSED_SCAN,
            reply,
            what,
            now,
            counters,
            |rec| {
                rec.window_start_ns = s.refused_start_ns;
                rec.ports = s.refused;
                rec.ack = s.accepted;
                rec.sample_ports = s.refused_ports;
            },
        );
    }
}

/// The TARGETS entry `what` (`TARGET_REFUSALS`, `TARGET_ACK_REFUSALS`) of
/// the host's address that sent `reply`; a new one within the per-CPU
/// admission budget.
#[inline(always)]
fn host_target(
    cfg: &DetectConfig,
    adm: &mut Admission,
    reply: &Reply,
    what: u32,
    now: u64,
    counters: &mut DetectCounters,
) -> Option<&'static mut TargetState> {
    let l = reply.local;
    let key: TargetKey = [l[0], l[1], l[2], l[3], what];
    let hash = hash_target(&key);
    let (t, new) = table_state(&TARGETS, mask(TABLE_TARGETS), &key, hash, now, || {
        admission_budget(adm, cfg.admit_per_sec, now, counters)
    })?;
    counters.targets_new += u64::from(new);
    // SAFETY: a live array value, written without atomics like the source
    // state.
    Some(unsafe { &mut *t })
}

/// Counts one more reply of a host-address target, and its remote.
#[inline(always)]
fn count_remote(t: &mut TargetState, reply: &Reply) {
    t.syn = t.syn.saturating_add(1);
    let remote = addr(reply.remote);
    add_target_source(t, &reply.remote, &remote);
}

/// Counts an ACK-bearing segment refused to a remote without SOURCES
/// state against the host's address that refused it, and signals
/// ACK_TARGET at `ack_target_threshold` per ACK window.
#[inline(always)]
fn record_ack_target(
    ctx: &TcContext,
    cfg: &DetectConfig,
    adm: &mut Admission,
    reply: &Reply,
    (protocol, port): (u8, u16),
) {
    let Some(counters) = DETECT_COUNTERS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's own entry, non-null.
    let counters = unsafe { &mut *counters };
    let now = clock();
    let Some(t) = host_target(cfg, adm, reply, TARGET_ACK_REFUSALS, now, counters) else {
        return;
    };
    if roll(&mut t.syn_start_ns, cfg.ack_window_ns, now) {
        reset_target(t);
    }
    count_remote(t, reply);
    if crossed(
        t.syn,
        cfg.ack_target_threshold,
        t.signalled,
        signal::ACK_TARGET,
    ) {
        t.signalled |= signal_bit(signal::ACK_TARGET);
        signal_reply(
            ctx,
            signal::ACK_TARGET,
            reply,
            (protocol, port),
            now,
            counters,
            |rec| {
                rec.window_start_ns = t.syn_start_ns;
                rec.ack = t.syn;
                rec.sources = t.sources;
                rec.sample_sources = t.sample_sources;
            },
        );
    }
}

/// Counts a refusal of a remote too quiet for SOURCES in its SLOW state (a
/// new remote gets a slot within the per-CPU claim budget) and signals
/// SLOW_SCAN at the threshold.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn record_slow(
    ctx: &TcContext,
    cfg: &DetectConfig,
    adm: &mut Admission,
    reply: &Reply,
    hash: u32,
    (protocol, port): (u8, u16),
    now: u64,
    counters: &mut DetectCounters,
) {
    let Some((st, _)) = table_state(&SLOW, mask(TABLE_SLOW), &reply.remote, hash, now, || {
        slow_budget(adm, cfg.slow_per_sec, now)
    }) else {
        return;
    };
    // SAFETY: a live array value, written without atomics like SOURCES.
    let st = unsafe { &mut *st };
    if roll(&mut st.start_ns, cfg.slow_window_ns, now) {
        st.refused = 0;
        st.signalled = 0;
        clear(&mut st.bits);
    }
    let bin = (u32::from(port).wrapping_mul(GOLDEN) >> 23) as usize;
    if !set_bin(&mut st.bits, bin) {
        return;
    }
    st.ports[(st.refused & 7) as usize] = port;
    st.refused += 1;
    if crossed(
        st.refused,
        cfg.slow_threshold,
        st.signalled,
        signal::SLOW_SCAN,
    ) {
        st.signalled |= signal_bit(signal::SLOW_SCAN);
        let what = (protocol, port);
        signal_reply(ctx, signal::SLOW_SCAN, reply, what, now, counters, |rec| {
            rec.window_start_ns = st.start_ns;
            rec.ports = st.refused;
            rec.sample_ports = st.ports;
        });
    }
}

/// Counts a refusal against the host address that sent it: distinct ports
/// and distinct remotes per scan window, from every remote together, and
/// signals DISTRIBUTED_SCAN when both reach their thresholds (many
/// sources probing a few ports each, none of them a scan on its own).
#[inline(always)]
fn record_distributed(
    ctx: &TcContext,
    cfg: &DetectConfig,
    adm: &mut Admission,
    reply: &Reply,
    (protocol, port): (u8, u16),
    now: u64,
    counters: &mut DetectCounters,
) {
    let Some(t) = host_target(cfg, adm, reply, TARGET_REFUSALS, now, counters) else {
        return;
    };
    if roll(&mut t.syn_start_ns, cfg.scan_window_ns, now) {
        reset_target(t);
        t.ports = 0;
        clear(&mut t.port_bits);
    }
    count_remote(t, reply);
    let bin = (u32::from(port).wrapping_mul(GOLDEN) >> 23) as usize;
    if set_bin(&mut t.port_bits, bin) {
        t.ports += 1;
    }
    if t.sources >= cfg.distributed_sources
        && crossed(
            t.ports,
            cfg.distributed_ports,
            t.signalled,
            signal::DISTRIBUTED_SCAN,
        )
    {
        t.signalled |= signal_bit(signal::DISTRIBUTED_SCAN);
        let what = (protocol, port);
        signal_reply(
            ctx,
            signal::DISTRIBUTED_SCAN,
            reply,
            what,
            now,
            counters,
            |rec| {
                rec.window_start_ns = t.syn_start_ns;
                rec.ports = t.ports;
                rec.sources = t.sources;
                rec.sample_sources = t.sample_sources;
            },
        );
    }
}

/// Writes a signal of `kind` about the reply's remote address (the
/// host's address as the destination), with the kind's counters filled in
/// by `fill`.
#[inline(always)]
fn signal_reply(
    ctx: &TcContext,
    kind: u8,
    reply: &Reply,
    what: (u8, u16),
    now: u64,
    counters: &mut DetectCounters,
    fill: impl FnOnce(&mut SignalRecord),
) {
    // SAFETY: the skb the program was called with.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let (remote, local) = (addr(reply.remote), addr(reply.local));
    emit_signal(kind, &remote, &local, what, ifindex, now, counters, fill);
}
