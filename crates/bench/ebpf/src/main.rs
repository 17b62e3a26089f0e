//! XDP programs for `cargo xtask bench`, never part of Ironpost itself.
//!
//! - `bench_drop` / `bench_pass`: the trivial floor every receiver is
//!   compared with.
//! - `bench_tc_next`: a trivial TC program, the floor of a second hook on
//!   egress (Ironpost's egress watcher runs there).
//! - `bench_tp_reset`: a trivial program on the `tcp:tcp_send_reset`
//!   tracepoint, the floor of watching the host's RSTs where they are made
//!   instead of on egress.
//! - `flood_gen`: the traffic generator. Run through BPF_PROG_RUN with
//!   `BPF_F_TEST_XDP_LIVE_FRAMES` on the sending veth, it returns `XDP_TX`
//!   so every run puts one frame on the wire. When `GEN[RANDOM_SOURCES]` is
//!   not zero it first rewrites the IPv4 source of its Ethernet/IPv4/TCP
//!   template to `GEN[SOURCE_BASE] | (random & GEN[SOURCE_MASK])` and
//!   updates the IPv4 and TCP checksums incrementally (RFC 1624), so the
//!   receiving stack sees valid segments from spoofed sources.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_get_prandom_u32,
    macros::{classifier, map, tracepoint, xdp},
    maps::Array,
    programs::{TcContext, TracePointContext, XdpContext},
};

/// Generator settings written by the bench before a run.
#[map]
static GEN: Array<u32> = Array::with_max_entries(4, 0);

/// `GEN` index: rewrite the source when not zero.
const RANDOM_SOURCES: u32 = 0;
/// `GEN` index: fixed bits of the rewritten source (host order).
const SOURCE_BASE: u32 = 1;
/// `GEN` index: random bits of the rewritten source (host order).
const SOURCE_MASK: u32 = 2;

/// Offsets in the template: Ethernet (14), IPv4 without options (20), TCP.
const IP_CSUM: usize = 14 + 10;
const IP_SRC: usize = 14 + 12;
const TCP_CSUM: usize = 14 + 20 + 16;
const TEMPLATE_MIN: usize = 14 + 20 + 20;

/// Always drops.
#[xdp]
pub fn bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Always passes.
#[xdp]
pub fn bench_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Lets every packet go on (`TC_ACT_UNSPEC`, "next" under TCX).
#[classifier]
pub fn bench_tc_next(_ctx: TcContext) -> i32 {
    -1
}

/// Runs on every RST the host sends and does nothing.
#[tracepoint]
pub fn bench_tp_reset(_ctx: TracePointContext) -> u32 {
    0
}

/// Sends its frame back out of the device it runs on, with a random source
/// when asked.
#[xdp]
pub fn flood_gen(ctx: XdpContext) -> u32 {
    let random = GEN.get(RANDOM_SOURCES).copied().unwrap_or(0);
    if random != 0 {
        let base = GEN.get(SOURCE_BASE).copied().unwrap_or(0);
        let mask = GEN.get(SOURCE_MASK).copied().unwrap_or(0);
        // SAFETY: bpf_get_prandom_u32 has no preconditions.
        let source = base | (unsafe { bpf_get_prandom_u32() } & mask);
        rewrite_source(&ctx, source);
    }
    xdp_action::XDP_TX
}

fn rewrite_source(ctx: &XdpContext, source: u32) {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + TEMPLATE_MIN > end {
        return;
    }
    let p = start as *mut u8;
    // SAFETY: every offset below is under TEMPLATE_MIN, checked against
    // data_end above; the frame is writable in XDP.
    unsafe {
        let old = read_be32(p.add(IP_SRC));
        write_be32(p.add(IP_SRC), source);
        // The source address is in the IPv4 header checksum and in the TCP
        // pseudo-header: both change by the same difference.
        let ip = csum_replace(read_be16(p.add(IP_CSUM)), old, source);
        write_be16(p.add(IP_CSUM), ip);
        let tcp = csum_replace(read_be16(p.add(TCP_CSUM)), old, source);
        write_be16(p.add(TCP_CSUM), tcp);
    }
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), over the two 16-bit halves.
fn csum_replace(check: u16, old: u32, new: u32) -> u16 {
    let mut sum = u32::from(!check)
        + u32::from(!(old >> 16) as u16)
        + u32::from(!old as u16)
        + (new >> 16)
        + (new & 0xffff);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// # Safety
/// `p..p+2` must be inside the packet.
unsafe fn read_be16(p: *const u8) -> u16 {
    // SAFETY: the caller guarantees both bytes are readable.
    unsafe { u16::from_be_bytes([*p, *p.add(1)]) }
}

/// # Safety
/// `p..p+2` must be inside the packet.
unsafe fn write_be16(p: *mut u8, v: u16) {
    let b = v.to_be_bytes();
    // SAFETY: the caller guarantees both bytes are writable.
    unsafe {
        *p = b[0];
        *p.add(1) = b[1];
    }
}

/// # Safety
/// `p..p+4` must be inside the packet.
unsafe fn read_be32(p: *const u8) -> u32 {
    // SAFETY: the caller guarantees the four bytes are readable.
    unsafe { u32::from_be_bytes([*p, *p.add(1), *p.add(2), *p.add(3)]) }
}

/// # Safety
/// `p..p+4` must be inside the packet.
unsafe fn write_be32(p: *mut u8, v: u32) {
    let b = v.to_be_bytes();
    // SAFETY: the caller guarantees the four bytes are writable.
    unsafe {
        for (i, byte) in b.iter().enumerate() {
            *p.add(i) = *byte;
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // Unreachable in a verified program.
    loop {}
}
