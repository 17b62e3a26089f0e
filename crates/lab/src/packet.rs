//! Crafted frames: Ethernet (with VLAN tags), IPv4, IPv6, TCP, UDP, ICMP.
//! Checksums are left zero: the datapath does not verify them.

use std::net::{Ipv4Addr, Ipv6Addr};

/// EtherType IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType IPv6.
pub const ETH_P_IPV6: u16 = 0x86dd;
/// EtherType ARP.
pub const ETH_P_ARP: u16 = 0x0806;
/// TPID of an 802.1Q (customer) VLAN tag.
pub const ETH_P_8021Q: u16 = 0x8100;
/// TPID of an 802.1ad (service) VLAN tag.
pub const ETH_P_8021AD: u16 = 0x88a8;

/// TCP SYN flag.
pub const SYN: u8 = 0x02;
/// TCP ACK flag.
pub const ACK: u8 = 0x10;
/// TCP FIN flag.
pub const FIN: u8 = 0x01;
/// TCP RST flag.
pub const RST: u8 = 0x04;

/// An Ethernet frame carrying `payload` of type `ethertype`, behind the
/// given VLAN tags `(tpid, vlan id)`, outermost first.
pub fn ethernet(ethertype: u16, vlans: &[(u16, u16)], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * vlans.len() + payload.len());
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02]); // destination
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]); // source
    for (tpid, vid) in vlans {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// IPv4 header fields a test may vary.
#[derive(Clone, Copy, Debug)]
pub struct Ipv4Opts {
    /// Header length in 32-bit words (5 = no options).
    pub ihl: u8,
    /// Version nibble (4).
    pub version: u8,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// More-fragments flag.
    pub more_fragments: bool,
}

impl Default for Ipv4Opts {
    fn default() -> Self {
        Self {
            ihl: 5,
            version: 4,
            frag_offset: 0,
            more_fragments: false,
        }
    }
}

/// An IPv4 packet with default options.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, payload: &[u8]) -> Vec<u8> {
    ipv4_with(src, dst, protocol, payload, Ipv4Opts::default())
}

/// An IPv4 packet; options beyond 20 bytes of header are zero-filled.
pub fn ipv4_with(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    payload: &[u8],
    o: Ipv4Opts,
) -> Vec<u8> {
    let hdr_len = (usize::from(o.ihl) * 4).max(20);
    let total = (hdr_len + payload.len()) as u16;
    let mut frag = o.frag_offset & 0x1fff;
    if o.more_fragments {
        frag |= 0x2000;
    }
    let mut p = Vec::with_capacity(hdr_len + payload.len());
    p.push((o.version << 4) | (o.ihl & 0x0f));
    p.push(0);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34]);
    p.extend_from_slice(&frag.to_be_bytes());
    p.push(64);
    p.push(protocol);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.resize(hdr_len, 0);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 packet (fixed header only).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(next_header);
    p.push(64);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// A 20-byte TCP header.
pub fn tcp(src_port: u16, dst_port: u16, flags: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(20);
    t.extend_from_slice(&src_port.to_be_bytes());
    t.extend_from_slice(&dst_port.to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.push(5 << 4);
    t.push(flags);
    t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    t
}

/// A UDP datagram.
pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&src_port.to_be_bytes());
    u.extend_from_slice(&dst_port.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// An 8-byte ICMP (or ICMPv6) echo header of type `icmp_type`, no data.
pub fn icmp_echo(icmp_type: u8) -> Vec<u8> {
    vec![icmp_type, 0, 0, 0, 0, 1, 0, 1]
}

/// A 28-byte ARP request.
pub fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01, 10, 0, 0, 1]);
    a.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_tcp_frame_layout() {
        let f = ethernet(
            ETH_P_IP,
            &[],
            &ipv4(
                Ipv4Addr::new(192, 0, 2, 1),
                Ipv4Addr::new(192, 0, 2, 2),
                6,
                &tcp(1000, 80, SYN),
            ),
        );
        assert_eq!(f.len(), 14 + 20 + 20);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14], 0x45);
        assert_eq!(&f[26..30], &[192, 0, 2, 1]);
        assert_eq!(f[14 + 20 + 13], SYN);
    }

    #[test]
    fn vlan_tags_precede_ethertype() {
        let f = ethernet(
            ETH_P_IP,
            &[(ETH_P_8021AD, 100), (ETH_P_8021Q, 200)],
            &[0x45],
        );
        assert_eq!(&f[12..14], &[0x88, 0xa8]);
        assert_eq!(&f[14..16], &[0x00, 100]);
        assert_eq!(&f[16..18], &[0x81, 0x00]);
        assert_eq!(&f[18..20], &[0x00, 200]);
        assert_eq!(&f[20..22], &[0x08, 0x00]);
    }

    #[test]
    fn fragment_and_ihl_fields() {
        let o = Ipv4Opts {
            ihl: 6,
            frag_offset: 100,
            more_fragments: true,
            ..Default::default()
        };
        let p = ipv4_with(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST, 17, &[1, 2], o);
        assert_eq!(p.len(), 24 + 2);
        assert_eq!(p[0], 0x46);
        assert_eq!(u16::from_be_bytes([p[6], p[7]]), 0x2000 | 100);
    }
}
