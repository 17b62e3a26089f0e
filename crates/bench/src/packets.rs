//! The frames the bench sends: one per BPF_PROG_TEST_RUN case, and the
//! flood template the generator puts on the veth (with valid checksums, so
//! that the receiving stack processes what a receiver passes).

use std::net::{Ipv4Addr, Ipv6Addr};

use ironpost_lab::packet::{
    ETH_P_IP, ETH_P_IPV6, Ipv4Opts, SYN, ethernet, ipv4, ipv4_with, ipv6, tcp, udp,
};

/// A source every subject drops by an exact-address rule.
pub const BLOCKED_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// A source Ironpost drops by its /24 prefix rule (xdp-filter, which has no
/// prefixes, by an exact rule on this address).
pub const PREFIX_BLOCKED_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 77);
/// The /24 around [`PREFIX_BLOCKED_V4`].
pub const BLOCKED_PREFIX_V4: &str = "203.0.113.0/24";
/// An IPv6 source every subject drops by an exact-address rule.
pub const BLOCKED_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xbad);
/// The TCP port every subject drops by a port rule (no case sends to it:
/// the rule is there so that the port check runs).
pub const DROPPED_PORT: u16 = 8099;

const CLEAN_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const DST_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CLEAN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 9);
const DST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);

/// One BPF_PROG_TEST_RUN case: the frames it runs, each `repeat` times; the
/// figure is the mean over them.
pub struct Case {
    /// Row name in the report.
    pub name: &'static str,
    /// The frames, run in order.
    pub frames: Vec<Vec<u8>>,
    /// Whether every subject should drop it (else pass).
    pub dropped: bool,
}

/// The TEST_RUN cases, in report order.
pub fn cases() -> Vec<Case> {
    let v4 = |src, proto, l4: &[u8]| ethernet(ETH_P_IP, &[], &ipv4(src, DST_V4, proto, l4));
    let v6 = |src, proto, l4: &[u8]| ethernet(ETH_P_IPV6, &[], &ipv6(src, DST_V6, proto, l4));
    let syn = tcp(40000, 22, SYN);
    let dns = udp(40000, 53, &[0u8; 32]);
    // The same UDP datagram in two fragments: the first holds the UDP
    // header and 16 bytes, the second the remaining 16 at offset 24.
    let fragment = |part: &[u8], frag_offset, more_fragments| {
        let o = Ipv4Opts {
            frag_offset,
            more_fragments,
            ..Ipv4Opts::default()
        };
        ethernet(ETH_P_IP, &[], &ipv4_with(CLEAN_V4, DST_V4, 17, part, o))
    };
    let first = fragment(&dns[..24], 0, true);
    let second = fragment(&dns[24..], 3, false);
    let case = |name, frames, dropped| Case {
        name,
        frames,
        dropped,
    };
    vec![
        case(crate::CASE_SYN_V4, vec![v4(CLEAN_V4, 6, &syn)], false),
        case(crate::CASE_UDP_V4, vec![v4(CLEAN_V4, 17, &dns)], false),
        case(crate::CASE_FRAG_V4, vec![first, second], false),
        case("IPv6 TCP SYN, passed", vec![v6(CLEAN_V6, 6, &syn)], false),
        case("IPv6 UDP, passed", vec![v6(CLEAN_V6, 17, &dns)], false),
        case(crate::CASE_EXACT_V4, vec![v4(BLOCKED_V4, 6, &syn)], true),
        case(
            crate::CASE_PREFIX_V4,
            vec![v4(PREFIX_BLOCKED_V4, 6, &syn)],
            true,
        ),
        case(
            "IPv6 exact-address drop",
            vec![v6(BLOCKED_V6, 6, &syn)],
            true,
        ),
    ]
}

/// An Ethernet/IPv4/TCP SYN from `src` to `dst`:`port` between the given
/// MAC addresses, with valid IPv4 and TCP checksums.
pub fn flood_template(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    port: u16,
) -> Vec<u8> {
    let mut seg = tcp(40000, port, SYN);
    let mut pseudo = Vec::with_capacity(12 + seg.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6]);
    pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&seg);
    seg[16..18].copy_from_slice(&checksum(&pseudo).to_be_bytes());
    let mut frame = ethernet(ETH_P_IP, &[], &ipv4(src, dst, 6, &seg));
    frame[0..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    let sum = checksum(&frame[14..34]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_with_its_checksum_sums_to_zero() {
        let f = flood_template(
            [2, 0, 0, 0, 0, 1],
            [2, 0, 0, 0, 0, 2],
            Ipv4Addr::new(10, 0, 0, 2),
            Ipv4Addr::new(10, 0, 0, 1),
            9,
        );
        assert_eq!(checksum(&f[14..34]), 0);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&f[26..34]);
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        pseudo.extend_from_slice(&f[34..54]);
        assert_eq!(checksum(&pseudo), 0);
    }

    #[test]
    fn the_fragments_carry_the_whole_datagram() {
        let c = cases();
        let frag = &c[2].frames;
        // 8-byte UDP header + 16 bytes, then 16 bytes at offset 3 * 8.
        assert_eq!(frag[0].len() - 34, 24);
        assert_eq!(frag[1].len() - 34, 16);
        assert_eq!(u16::from_be_bytes([frag[1][20], frag[1][21]]), 3);
        assert_eq!(u16::from_be_bytes([frag[0][20], frag[0][21]]), 0x2000);
    }
}
