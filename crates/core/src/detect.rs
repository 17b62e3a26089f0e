//! Detection signals (what the datapath reports when a source or target
//! crosses a threshold) and the trait the detectors implement.

use std::net::IpAddr;

use serde::Serialize;

use crate::{DetectorKind, Protocol, Severity, alert::Evidence};

/// Which threshold a signal reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// Bare SYNs from one source.
    SynSource,
    /// Bare SYNs onto one destination address and port.
    SynTarget,
    /// Distinct destination ports probed by one source.
    PortScan,
    /// Distinct destination hosts probed by one source.
    HostSweep,
    /// UDP packets from one source.
    UdpFlood,
    /// ICMP packets from one source.
    IcmpFlood,
    /// Distinct ports (or protocols) the host refused one remote address:
    /// RSTs and ICMP unreachables it sent (`ports`, `sample_ports`; `ack`
    /// holds the connections it accepted).
    RefusedScan,
    /// ACK-bearing segments of one remote address that the host refused
    /// (`ack`): RSTs without ACK it sent, seen on egress.
    AckFlood,
    /// RSTs from one source (`rst`).
    RstFlood,
    /// RSTs from untracked sources onto one address (`rst`, `sources`,
    /// `sample_sources`).
    RstTarget,
    /// ACK-bearing segments of untracked remotes that one of the host's
    /// addresses refused (`ack`, `sources`, `sample_sources`), seen on
    /// egress.
    AckTarget,
    /// UDP from untracked sources onto one address (`udp`, `sources`,
    /// `sample_sources`).
    UdpTarget,
    /// ICMP from untracked sources onto one address (`icmp`, `sources`,
    /// `sample_sources`).
    IcmpTarget,
    /// Distinct ports the host refused a remote address too quiet for
    /// per-source tracking, over the slow-scan window (`ports`,
    /// `sample_ports`).
    SlowScan,
    /// Distinct ports one of the host's addresses refused, to many remote
    /// addresses together (`ports`, `sources`, `sample_sources`).
    DistributedScan,
    /// Distinct IP protocols other than TCP, UDP and ICMP from one source
    /// (`ports` holds the count).
    ProtocolScan,
    /// First fragments too short for their TCP or UDP header from one
    /// source, all dropped (`ports` holds the count): a scan hidden in
    /// fragments.
    TinyFragments,
}

impl SignalKind {
    /// The detector that handles this signal.
    pub fn detector(self) -> DetectorKind {
        match self {
            Self::SynSource | Self::SynTarget => DetectorKind::SynFlood,
            Self::PortScan
            | Self::HostSweep
            | Self::RefusedScan
            | Self::SlowScan
            | Self::ProtocolScan
            | Self::TinyFragments => DetectorKind::PortScan,
            Self::UdpFlood | Self::UdpTarget => DetectorKind::UdpFlood,
            Self::IcmpFlood | Self::IcmpTarget => DetectorKind::IcmpFlood,
            Self::AckFlood | Self::AckTarget => DetectorKind::AckFlood,
            Self::DistributedScan => DetectorKind::DistributedScan,
            Self::RstFlood | Self::RstTarget => DetectorKind::RstFlood,
        }
    }
}

/// A threshold crossing, decoded. Counters are the state at the crossing;
/// times are wall-clock milliseconds since the Unix epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Signal {
    /// What crossed.
    pub kind: SignalKind,
    /// When.
    pub time_ms: u64,
    /// Start of the window it crossed in.
    pub window_start_ms: u64,
    /// The source (for target signals, the crossing packet's source).
    pub src: IpAddr,
    /// Destination of the crossing packet.
    pub dst: IpAddr,
    /// Protocol of the crossing packet.
    pub protocol: Protocol,
    /// Destination port of the crossing packet (0 for ICMP).
    pub dst_port: u16,
    /// Interface.
    pub interface: String,
    /// Bare SYNs in the SYN window.
    pub syn: u32,
    /// ACK-bearing TCP packets in the SYN window.
    pub ack: u32,
    /// UDP packets in the UDP window.
    pub udp: u32,
    /// ICMP packets in the ICMP window.
    pub icmp: u32,
    /// RSTs in the RST window.
    pub rst: u32,
    /// Distinct destination port bins in the scan window.
    pub ports: u32,
    /// Distinct destination host bins in the scan window.
    pub hosts: u32,
    /// Distinct source bins (target signals).
    pub sources: u32,
    /// Sampled destination ports.
    pub sample_ports: Vec<u16>,
    /// Sampled sources (target signals).
    pub sample_sources: Vec<IpAddr>,
    /// UDP or ICMP bytes in the window (UDP and ICMP flood signals).
    pub bytes: u64,
}

/// What a detector concluded from a signal, before deduplication and
/// response.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// The detector.
    pub detector: DetectorKind,
    /// How serious.
    pub severity: Severity,
    /// The single offending source, if there is one.
    pub source: Option<IpAddr>,
    /// What was attacked.
    pub target: String,
    /// One line for humans.
    pub summary: String,
    /// The numbers.
    pub evidence: Evidence,
    /// Findings with the same key within `window_ms` are one alert.
    pub dedup_key: String,
    /// The detector's window.
    pub window_ms: u64,
}

/// A detector: turns the signals it handles into findings. Detectors are
/// owned by one task and change their state through `&mut self`; nothing
/// is skipped because a lock was busy.
pub trait Detector {
    /// Which detector this is.
    fn kind(&self) -> DetectorKind;
    /// Looks at one signal; `None` when it does not hold up (below this
    /// detector's thresholds, or not a signal it handles).
    fn observe(&mut self, signal: &Signal) -> Option<Finding>;
}
