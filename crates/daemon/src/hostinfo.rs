//! What the host depends on, which automatic blocks must never hit: its
//! own addresses, its default gateways (`/proc/net/route`,
//! `/proc/net/ipv6_route`) and its resolvers (`/etc/resolv.conf`). Read
//! afresh for every alert, so a changed route or resolver counts at once.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// The addresses of this host's interfaces (never blocked automatically).
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head to `ifap`, freed below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        tracing::warn!(
            "listing this host's addresses: {}",
            io::Error::last_os_error()
        );
        return out;
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, alive
        // until freeifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null sockaddr from getifaddrs; its family says
            // which sockaddr type it is, and only those two are read.
            unsafe {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let a = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                        out.push(IpAddr::from(a.sin_addr.s_addr.to_ne_bytes()));
                    }
                    libc::AF_INET6 => {
                        let a = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                        out.push(IpAddr::from(a.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list head getifaddrs returned, freed once.
    unsafe { libc::freeifaddrs(ifap) };
    out
}

/// The default gateways in the kernel's routing tables (IPv4 and IPv6).
pub fn default_gateways() -> Vec<IpAddr> {
    let mut out = Vec::new();
    match std::fs::read_to_string("/proc/net/route") {
        Ok(text) => out.extend(gateways_v4(&text)),
        Err(e) => tracing::warn!("reading /proc/net/route: {e}"),
    }
    match std::fs::read_to_string("/proc/net/ipv6_route") {
        Ok(text) => out.extend(gateways_v6(&text)),
        // No IPv6 on this host: nothing to protect there.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("reading /proc/net/ipv6_route: {e}"),
    }
    out
}

/// The name servers of `/etc/resolv.conf` (none when it is missing).
pub fn resolvers() -> Vec<IpAddr> {
    match std::fs::read_to_string("/etc/resolv.conf") {
        Ok(text) => nameservers(&text),
        Err(e) => {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!("reading /etc/resolv.conf: {e}");
            }
            Vec::new()
        }
    }
}

/// Gateways of the default routes (destination and mask 0) in the text of
/// `/proc/net/route`, whose addresses are hex words in host byte order.
fn gateways_v4(text: &str) -> Vec<IpAddr> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dst, gw, mask) = (word(f.get(1)?)?, word(f.get(2)?)?, word(f.get(7)?)?);
            (dst == 0 && mask == 0 && gw != 0).then(|| IpAddr::V4(Ipv4Addr::from(gw.to_ne_bytes())))
        })
        .collect()
}

/// Next hops of the default routes (`::/0`) in the text of
/// `/proc/net/ipv6_route`: destination, its length, source, its length,
/// next hop, each as hex.
fn gateways_v6(text: &str) -> Vec<IpAddr> {
    let addr = |s: &str| u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from);
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (dst, len, hop) = (addr(f.first()?)?, f.get(1)?, addr(f.get(4)?)?);
            (dst.is_unspecified() && *len == "00" && !hop.is_unspecified())
                .then_some(IpAddr::V6(hop))
        })
        .collect()
}

/// The `nameserver` addresses of a resolv.conf text (an IPv6 zone, `%eth0`,
/// is dropped).
fn nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            addr.split('%').next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_routes_are_found_in_both_tables() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                  eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
                  eth1\t0000000A\t0100000A\t0003\t0\t0\t0\t000000FF\t0\t0\t0\n";
        let gw = u32::from_ne_bytes([192, 168, 2, 1]);
        let v4 = v4.replace("0102A8C0", &format!("{gw:08X}"));
        assert_eq!(gateways_v4(&v4), vec![ip("192.168.2.1")]);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
                  fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
                  20010db8000000000000000000000000 40 00000000000000000000000000000000 00 \
                  00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n";
        assert_eq!(gateways_v6(v6), vec![ip("fe80::1")]);
        assert!(gateways_v4("").is_empty() && gateways_v6("garbage line\n").is_empty());
    }

    #[test]
    fn nameservers_are_read_from_resolv_conf() {
        let text = "# comment\nsearch lab\nnameserver 192.0.2.53\nnameserver fe80::53%eth0\n\
                    nameserver not-an-address\noptions edns0\n";
        assert_eq!(nameservers(text), vec![ip("192.0.2.53"), ip("fe80::53")]);
    }

    #[test]
    fn this_host_has_loopback() {
        assert!(local_addresses().iter().any(IpAddr::is_loopback));
    }
}
