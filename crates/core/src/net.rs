//! Addresses, prefixes, ports and protocols as rules name them.

use std::{fmt, net::IpAddr, str::FromStr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IPv4 or IPv6 prefix in canonical form (no host bits set), on
/// `ipnet`'s [`IpNet`]. A bare address is the prefix of its full length
/// (/32 or /128). Ordered by address, then length (IPv4 first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(IpNet);

impl Prefix {
    /// The prefix `addr/len`; `None` if `len` is too long for the family or
    /// host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Option<Self> {
        let net = IpNet::new(addr, len).ok()?;
        (net.network() == addr).then_some(Self(net))
    }

    /// The prefix holding exactly `addr`.
    pub fn host(addr: IpAddr) -> Self {
        Self(IpNet::from(addr))
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.0.addr()
    }

    /// The prefix length in bits.
    pub fn len(&self) -> u8 {
        self.0.prefix_len()
    }

    /// True for `/0`, the prefix that matches everything of its family.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for an IPv4 prefix.
    pub fn is_ipv4(&self) -> bool {
        matches!(self.0, IpNet::V4(_))
    }

    /// True when the prefix names one address (/32 or /128).
    pub fn is_host(&self) -> bool {
        self.0.prefix_len() == self.0.max_prefix_len()
    }

    /// The address bytes (4 or 16), network order.
    pub fn octets(&self) -> Vec<u8> {
        match self.0.addr() {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }

    /// The prefix as `ipnet` has it.
    pub fn net(&self) -> IpNet {
        self.0
    }

    /// True when every address of `other` is in `self`.
    pub fn contains(&self, other: &Prefix) -> bool {
        self.0.contains(&other.0)
    }

    /// True when `addr` is in the prefix.
    pub fn contains_addr(&self, addr: IpAddr) -> bool {
        self.0.contains(&addr)
    }

    /// The smallest and the largest prefix (in `Ord` order) whose network
    /// address lies in `self`: the bounds of an inclusive range query over
    /// an ordered set that finds every prefix inside `self` (and those of
    /// the same network address around it). The bounds are not canonical
    /// prefixes themselves.
    pub fn range_bounds(&self) -> (Prefix, Prefix) {
        let max = self.0.max_prefix_len();
        let bound = |addr, len| Self(IpNet::new(addr, len).expect("a length within the family"));
        (bound(self.0.network(), 0), bound(self.0.broadcast(), max))
    }

    /// The prefix one bit shorter, if this is not /0.
    pub fn parent(&self) -> Option<Prefix> {
        self.0.supernet().map(|n| Self(n.trunc()))
    }
}

impl From<Prefix> for IpNet {
    fn from(p: Prefix) -> Self {
        p.0
    }
}

impl From<IpNet> for Prefix {
    /// The prefix of `net`, its host bits cleared.
    fn from(net: IpNet) -> Self {
        Self(net.trunc())
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr())
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl FromStr for Prefix {
    type Err = String;

    /// Parses `ADDR` or `ADDR/LEN`, IPv4 or IPv6.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("\"{s}\" is not an IP address or prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => {
                    return Err(format!(
                        "\"{s}\": prefix length \"{l}\" must be a number from 0 to {max}"
                    ));
                }
            },
        };
        let net = IpNet::new(addr, len).map_err(|e| format!("\"{s}\": {e}"))?;
        if net.network() != addr {
            return Err(format!(
                "\"{s}\" has host bits set: the network is {}/{len}",
                net.network()
            ));
        }
        Ok(Self(net))
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A layer-4 protocol a rule can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP and ICMPv6 (no ports).
    Icmp,
}

impl L4Protocol {
    /// True when the protocol has ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Self::Tcp | Self::Udp)
    }
}

impl FromStr for L4Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::Tcp),
            "udp" => Ok(Self::Udp),
            "icmp" | "icmpv6" => Ok(Self::Icmp),
            other => Err(format!(
                "unknown protocol \"{other}\": expected tcp, udp or icmp"
            )),
        }
    }
}

impl fmt::Display for L4Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Icmp => "icmp",
        })
    }
}

/// An inclusive range of ports; a single port is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    /// First port.
    pub first: u16,
    /// Last port (≥ `first`).
    pub last: u16,
}

impl PortRange {
    /// Every port.
    pub const ALL: Self = Self {
        first: 0,
        last: u16::MAX,
    };

    /// The range of one port.
    pub fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }

    /// True when `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    /// True when the ranges share a port.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for PortRange {
    type Err = String;

    /// Parses `PORT` or `FIRST-LAST`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .map_err(|_| format!("\"{p}\" is not a port number (0 to 65535)"))
        };
        let r = match s.split_once('-') {
            Some((a, b)) => Self {
                first: port(a)?,
                last: port(b)?,
            },
            None => {
                let p = port(s)?;
                Self { first: p, last: p }
            }
        };
        if r.first > r.last {
            return Err(format!(
                "port range \"{s}\" is empty: {} > {}",
                r.first, r.last
            ));
        }
        Ok(r)
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn parses_addresses_and_prefixes() {
        assert_eq!(p("10.1.2.3").len(), 32);
        assert!(p("10.1.2.3").is_host());
        assert_eq!(p("10.0.0.0/8").len(), 8);
        assert_eq!(p("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(p("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(p("::1").len(), 128);
        assert_eq!(p(" 192.0.2.0/24 ").to_string(), "192.0.2.0/24");
        assert_eq!(p("192.0.2.7/32").to_string(), "192.0.2.7");
    }

    #[test]
    fn rejects_bad_prefixes_with_reasons() {
        let e = "10.1.2.3/24".parse::<Prefix>().unwrap_err();
        assert!(e.contains("host bits") && e.contains("10.1.2.0/24"), "{e}");
        let e = "10.0.0.0/33".parse::<Prefix>().unwrap_err();
        assert!(e.contains("0 to 32"), "{e}");
        let e = "2001:db8::/129".parse::<Prefix>().unwrap_err();
        assert!(e.contains("0 to 128"), "{e}");
        assert!("300.1.1.1".parse::<Prefix>().is_err());
        assert!("example.com".parse::<Prefix>().is_err());
        assert!("10.0.0.0/".parse::<Prefix>().is_err());
        assert!("".parse::<Prefix>().is_err());
    }

    #[test]
    fn containment() {
        assert!(p("10.0.0.0/8").contains(&p("10.1.2.3")));
        assert!(p("10.0.0.0/8").contains(&p("10.0.0.0/8")));
        assert!(!p("10.0.0.0/8").contains(&p("11.0.0.0/8")));
        assert!(!p("10.1.0.0/16").contains(&p("10.0.0.0/8")));
        assert!(p("0.0.0.0/0").contains(&p("255.255.255.255")));
        assert!(!p("0.0.0.0/0").contains(&p("::1")));
        assert!(p("::/0").contains(&p("2001:db8::1")));
        assert!(p("2001:db8::/32").contains_addr("2001:db8:ffff::1".parse().unwrap()));
        assert_eq!(p("10.1.2.3").parent(), Some(p("10.1.2.2/31")));
        assert_eq!(p("0.0.0.0/0").parent(), None);
        assert!(Prefix::new("10.1.0.0".parse().unwrap(), 16).is_some());
        assert!(Prefix::new("10.1.0.0".parse().unwrap(), 8).is_none());
        assert_eq!(p("2001:db8::/33").parent(), Some(p("2001:db8::/32")));
    }

    #[test]
    fn ordered_by_family_address_then_length_and_ranges_find_what_is_inside() {
        let set: std::collections::BTreeSet<Prefix> = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3",
            "10.0.0.0/9",
            "11.0.0.0/8",
            "9.255.255.255",
            "::/0",
            "0.0.0.0/0",
        ]
        .into_iter()
        .map(p)
        .collect();
        let order: Vec<String> = set.iter().map(ToString::to_string).collect();
        assert_eq!(
            order,
            [
                "0.0.0.0/0",
                "9.255.255.255",
                "10.0.0.0/8",
                "10.0.0.0/9",
                "10.1.0.0/16",
                "10.1.2.3",
                "11.0.0.0/8",
                "::/0"
            ]
        );
        let (first, last) = p("10.0.0.0/8").range_bounds();
        let inside: Vec<String> = set.range(first..=last).map(ToString::to_string).collect();
        assert_eq!(
            inside,
            ["10.0.0.0/8", "10.0.0.0/9", "10.1.0.0/16", "10.1.2.3"]
        );
        let net: ipnet::IpNet = "192.0.2.77/24".parse().unwrap();
        assert_eq!(Prefix::from(net), p("192.0.2.0/24"));
        assert_eq!(
            ipnet::IpNet::from(p("192.0.2.0/24")).to_string(),
            "192.0.2.0/24"
        );
    }

    #[test]
    fn ports_and_protocols() {
        assert_eq!(
            "22".parse::<PortRange>().unwrap(),
            PortRange {
                first: 22,
                last: 22
            }
        );
        let r: PortRange = "1000-2000".parse().unwrap();
        assert!(r.contains(1000) && r.contains(2000) && !r.contains(2001));
        assert!(
            "2000-1000"
                .parse::<PortRange>()
                .unwrap_err()
                .contains("empty")
        );
        assert!("70000".parse::<PortRange>().is_err());
        assert!(r.overlaps(&"2000-3000".parse().unwrap()));
        assert!(!r.overlaps(&"2001-3000".parse().unwrap()));
        assert_eq!("TCP".parse::<L4Protocol>().unwrap(), L4Protocol::Tcp);
        assert!(
            "sctp"
                .parse::<L4Protocol>()
                .unwrap_err()
                .contains("tcp, udp or icmp")
        );
    }
}
