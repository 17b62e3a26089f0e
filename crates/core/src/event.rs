//! Packet events: what the datapath reports about a packet it dropped or
//! monitored.

use std::net::IpAddr;

use serde::Serialize;

/// Transport protocol of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// ICMPv6.
    Icmpv6,
    /// Any other IP protocol, by number.
    Other(u8),
}

impl Protocol {
    /// The protocol for an IP protocol number (IPv6: next header).
    pub fn from_number(n: u8) -> Self {
        match n {
            6 => Self::Tcp,
            17 => Self::Udp,
            1 => Self::Icmp,
            58 => Self::Icmpv6,
            n => Self::Other(n),
        }
    }
}

/// What the datapath did with a reported packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PacketAction {
    /// Dropped.
    Drop,
    /// Passed and reported.
    Monitor,
}

/// A packet the datapath dropped or monitored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PacketEvent {
    /// Wall-clock time the packet was seen, RFC 3339 (UTC, nanoseconds).
    pub time: String,
    /// Interface the packet arrived on.
    pub interface: String,
    /// What the datapath did.
    pub action: PacketAction,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Source port; absent for protocols without ports and non-first fragments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// Destination port; absent like `src_port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_port: Option<u16>,
    /// TCP flags by name (e.g. `["SYN"]`); empty for other protocols.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tcp_flags: Vec<&'static str>,
    /// Frame length in bytes.
    pub len: u32,
    /// Outer VLAN id, if tagged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
}
