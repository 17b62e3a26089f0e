//! The `[detection]` and `[response]` sections.

use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Source};
use crate::{DetectorKind, PortRange, Prefix, Severity};

/// Largest number of tracked sources (kernel tracking table and user space).
pub const MAX_TRACKED_SOURCES: u32 = 4 << 20;
/// Longest detection window or block TTL accepted, in seconds (one week).
pub const MAX_SECS: u64 = 7 * 24 * 3600;
/// Largest bytes threshold accepted (1 PiB per window).
pub const MAX_BYTES: u64 = 1 << 50;

/// How alerts are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AlertFormat {
    /// The alert schema (docs/alerts.md).
    #[default]
    Alert,
    /// The core `LogEntry` shape.
    LogEntry,
}

/// The `[detection]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectionConfig {
    /// Whether the datapath tracks sources and the detectors run.
    pub enabled: bool,
    /// Sources tracked at most, in the kernel (a tracking table, rounded up
    /// to a power of two: a new source takes the least recently seen slot
    /// of its bucket) and in user space (the oldest state is dropped).
    pub max_tracked_sources: u32,
    /// Size of the SIGNALS ring buffer in bytes (a power of two).
    pub signal_ring_buffer_size: u32,
    /// Packets a source (or destination port) must send within one
    /// admission epoch (about 4 s) on one CPU before the datapath keeps
    /// state for it; 1 admits every source at once. Keeps a spoofed-source
    /// flood from creating state for every packet.
    pub admit_after_packets: u32,
    /// New tracked sources and targets per second per CPU at most (0: no
    /// limit).
    pub admit_per_sec_per_cpu: u32,
    /// How often stale detector state is cleaned.
    pub cleanup_interval_secs: u64,
    /// Write alerts to stdout (with `"type": "alert"`).
    pub alerts_stdout: bool,
    /// Also append alerts to this file, one JSON line each.
    pub alerts_file: Option<PathBuf>,
    /// The shape alerts are written in.
    pub alert_format: AlertFormat,
    /// `[detection.syn_flood]`.
    pub syn_flood: SynFloodConfig,
    /// `[detection.port_scan]`.
    pub port_scan: PortScanConfig,
    /// `[detection.udp_flood]`.
    pub udp_flood: FloodConfig,
    /// `[detection.icmp_flood]`.
    pub icmp_flood: FloodConfig,
    /// `[detection.slow_scan]`.
    pub slow_scan: SlowScanConfig,
    /// `[detection.ack_flood]`.
    pub ack_flood: FloodConfig,
    /// `[detection.rst_flood]`.
    pub rst_flood: FloodConfig,
    /// `[[detection.host_groups]]`: per-destination thresholds of the
    /// floods counted on their target.
    pub host_groups: Vec<HostGroup>,
}

/// Most host groups.
pub const MAX_HOST_GROUPS: usize = 256;
/// Most prefixes of all host groups together.
pub const MAX_HOST_GROUP_PREFIXES: usize = 4096;

/// `[[detection.host_groups]]`: the thresholds of the floods counted on
/// their target (per destination address, or address and port for SYNs)
/// for the destinations in `prefixes`, in place of the detectors' own.
/// A threshold not given is the detector's; 0 turns the check off for the
/// group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostGroup {
    /// Its name, for alerts and errors.
    pub name: String,
    /// The destinations it covers (the longest prefix of all groups wins).
    pub prefixes: Vec<Prefix>,
    /// The destination ports it covers, if it is limited to some: then it
    /// sets only the SYN target threshold (the other target counts are per
    /// address, whatever the port), and among groups of the same prefix
    /// one with ports wins for them.
    pub ports: Vec<PortRange>,
    /// Bare SYNs onto one address and port per SYN window.
    pub syn_target_threshold: Option<u32>,
    /// UDP packets from untracked sources onto one address per window.
    pub udp_target_threshold: Option<u32>,
    /// The same in bytes.
    pub udp_target_bytes_threshold: Option<u64>,
    /// ICMP packets from untracked sources onto one address per window.
    pub icmp_target_threshold: Option<u32>,
    /// The same in bytes.
    pub icmp_target_bytes_threshold: Option<u64>,
    /// RSTs from untracked sources onto one address per window.
    pub rst_target_threshold: Option<u32>,
}

/// The host group of `groups` whose prefix holds `addr` most closely, if
/// any, for traffic to `port` (`None`: counted per address, whatever the
/// port, where only groups without `ports` apply). Of two groups with the
/// same prefix, the one that names the port wins.
pub fn host_group_of(
    groups: &[HostGroup],
    addr: std::net::IpAddr,
    port: Option<u16>,
) -> Option<&HostGroup> {
    groups
        .iter()
        .filter(|g| match port {
            None => g.ports.is_empty(),
            Some(port) => g.ports.is_empty() || g.ports.iter().any(|r| r.contains(port)),
        })
        .flat_map(|g| g.prefixes.iter().map(move |p| (p, g)))
        .filter(|(p, _)| p.contains_addr(addr))
        .max_by_key(|(p, g)| (p.len(), !g.ports.is_empty()))
        .map(|(_, g)| g)
}

/// `[detection.syn_flood]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynFloodConfig {
    /// Whether this detector runs.
    pub enabled: bool,
    /// Window length.
    pub window_secs: u64,
    /// Minimum share of bare SYNs among SYNs and ACK-bearing packets, in
    /// thousandths (the file says `syn_only_ratio = 0.7`).
    pub syn_only_permille: u32,
    /// Bare SYNs from one source per window.
    pub source_threshold: u32,
    /// Bare SYNs onto one destination address and port per window.
    pub target_threshold: u32,
}

/// `[detection.port_scan]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortScanConfig {
    /// Whether this detector runs.
    pub enabled: bool,
    /// Window length.
    pub window_secs: u64,
    /// Distinct destination ports one source may probe per window.
    pub distinct_ports: u32,
    /// Distinct destination hosts one source may probe per window (the
    /// horizontal sweep); 0 turns the sweep check off.
    pub distinct_hosts: u32,
    /// Distinct ports (or protocols) the host may refuse one remote
    /// address per window, counted from its RSTs and ICMP unreachables on
    /// egress; 0 turns the check off.
    pub refused_ports: u32,
    /// How long a port scan's alert waits for other sources scanning the
    /// same ports of the same host (a decoy scan, reported as one
    /// `decoy_scan` alert that blocks none of them); 0 alerts at once and
    /// turns decoy detection off.
    pub decoy_hold_ms: u64,
    /// Distinct ports (or protocols) one of the host's addresses may
    /// refuse per window to all remote addresses together before it is a
    /// distributed scan; 0 turns the check off.
    pub distributed_ports: u32,
    /// ... if the refusals went to at least this many remote addresses.
    pub distributed_sources: u32,
    /// Distinct IP protocols other than TCP, UDP and ICMP one source may
    /// send per window (an IP protocol scan, `nmap -sO`); 0 turns the
    /// check off.
    pub distinct_protocols: u32,
}

/// `[detection.slow_scan]`: the long-horizon tier of the port-scan
/// detector, for remote addresses too quiet to be tracked per source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlowScanConfig {
    /// Whether this tier runs (with the port-scan detector).
    pub enabled: bool,
    /// Window length.
    pub window_secs: u64,
    /// Distinct ports (or protocols) the host may refuse one such address
    /// per window.
    pub distinct_ports: u32,
}

/// `[detection.udp_flood]`, `[detection.icmp_flood]`,
/// `[detection.ack_flood]` and `[detection.rst_flood]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FloodConfig {
    /// Whether this detector runs.
    pub enabled: bool,
    /// Window length.
    pub window_secs: u64,
    /// Packets from one source per window.
    pub threshold: u32,
    /// Packets onto one destination address per window from sources the
    /// datapath keeps no state for (spoofed or new ones); for ACK floods,
    /// the ACK-bearing segments of such remotes that one of the host's
    /// addresses refused. 0 turns the check off.
    pub target_threshold: u32,
    /// UDP and ICMP: bytes (frames as received, Ethernet header included)
    /// from one source per window; 0 (the default) turns the check off.
    /// The flood alerts when either count reaches its threshold.
    pub bytes_threshold: u64,
    /// UDP and ICMP: bytes onto one destination address per window from
    /// sources without state; 0 (the default) turns the check off.
    pub target_bytes_threshold: u64,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_tracked_sources: 65_536,
            signal_ring_buffer_size: 256 * 1024,
            admit_after_packets: 4,
            admit_per_sec_per_cpu: 20_000,
            cleanup_interval_secs: 10,
            alerts_stdout: true,
            alerts_file: None,
            alert_format: AlertFormat::Alert,
            syn_flood: SynFloodConfig {
                enabled: true,
                window_secs: 10,
                syn_only_permille: 700,
                source_threshold: 5_000,
                target_threshold: 10_000,
            },
            port_scan: PortScanConfig {
                enabled: true,
                window_secs: 60,
                distinct_ports: 20,
                distinct_hosts: 20,
                refused_ports: 20,
                decoy_hold_ms: 100,
                // Ten sources probing five ports each (50 refused ports)
                // cross it; one scanner, or two or three at once, never
                // reach five sources; the internet's background of
                // scanners touches a few closed ports a minute.
                distributed_ports: 30,
                distributed_sources: 5,
                // A host speaks a handful of protocols besides TCP, UDP and
                // ICMP (GRE, ESP, AH, IGMP, SCTP, OSPF, VRRP); `nmap -sO`
                // sends 253.
                distinct_protocols: 8,
            },
            // One new port every 4 s (CrowdSec's slow-scan case) is 30
            // refused ports in 120 s; nothing that uses a host's services
            // gets 30 distinct ports refused in 10 minutes.
            slow_scan: SlowScanConfig {
                enabled: true,
                window_secs: 600,
                distinct_ports: 30,
            },
            // 100,000 UDP packets a second from one source: above a 1 Gbit/s
            // stream of full-size datagrams (about 86,000 a second: an
            // iperf3 test, a QUIC upload) and far above a busy
            // request/response client (5,000 queries a second); below what
            // one `hping3 --udp --flood` sends (about 166,000 a second on
            // the test machine). From untracked sources, 10,000 a second
            // onto one address: a spoofed flood, not the first packets of
            // a few hundred new clients.
            udp_flood: FloodConfig {
                enabled: true,
                window_secs: 10,
                threshold: 1_000_000,
                target_threshold: 100_000,
                bytes_threshold: 0,
                target_bytes_threshold: 0,
            },
            // 500 ICMP packets a second from one source: monitoring at 100
            // pings a second stays far below, `ping -f` crosses in seconds.
            // From untracked sources, 1,000 a second onto one address.
            icmp_flood: FloodConfig {
                enabled: true,
                window_secs: 10,
                threshold: 5_000,
                target_threshold: 10_000,
                bytes_threshold: 0,
                target_bytes_threshold: 0,
            },
            // 500 refused ACK-bearing segments a second: a host answers
            // them only for connections it does not know (a restart, a
            // NAT timeout: a few per connection); `hping3 -A --flood`
            // crosses in milliseconds, an `nmap -sA` of 1,000 ports never.
            // Onto one of the host's addresses from remotes without state
            // (spoofed ACKs): 5,000 refusals a second, ten times one
            // source's threshold, since a restart or a NAT timeout makes
            // every client of a busy host send a few.
            ack_flood: FloodConfig {
                enabled: true,
                window_secs: 10,
                threshold: 5_000,
                target_threshold: 50_000,
                bytes_threshold: 0,
                target_bytes_threshold: 0,
            },
            // 500 RSTs a second from one source: a client aborts one
            // connection with one RST.
            // Onto one address from sources without state (spoofed RSTs):
            // 5,000 a second; each client that aborts a connection sends
            // one.
            rst_flood: FloodConfig {
                enabled: true,
                window_secs: 10,
                threshold: 5_000,
                target_threshold: 50_000,
                bytes_threshold: 0,
                target_bytes_threshold: 0,
            },
            host_groups: Vec::new(),
        }
    }
}

impl DetectionConfig {
    /// Whether a detector runs (detection on, and the detector on).
    pub fn runs(&self, kind: DetectorKind) -> bool {
        self.enabled
            && match kind {
                DetectorKind::SynFlood => self.syn_flood.enabled,
                DetectorKind::PortScan => self.port_scan.enabled,
                DetectorKind::UdpFlood => self.udp_flood.enabled,
                DetectorKind::IcmpFlood => self.icmp_flood.enabled,
                DetectorKind::AckFlood => self.ack_flood.enabled,
                DetectorKind::RstFlood => self.rst_flood.enabled,
                DetectorKind::DecoyScan => {
                    self.port_scan.enabled && self.port_scan.decoy_hold_ms > 0
                }
                DetectorKind::DistributedScan => {
                    self.port_scan.enabled && self.port_scan.distributed_ports > 0
                }
            }
    }
}

/// The `[response]` section: automatic blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseConfig {
    /// Master switch for automatic blocks.
    pub auto_block: bool,
    /// Report what would be blocked, block nothing.
    pub dry_run: bool,
    /// TTL of a first block.
    pub block_ttl_secs: u64,
    /// Each repeat offence multiplies the TTL by this (1: no escalation).
    pub escalation_factor: u32,
    /// The TTL never grows past this.
    pub max_block_ttl_secs: u64,
    /// A source's offences are forgotten this long after its last one.
    pub forget_after_secs: u64,
    /// Automatic blocks per minute at most (0: no cap); past it an alert
    /// blocks nothing and says so.
    pub max_blocks_per_minute: u32,
    /// Share of `ebpf.blocklist_max_entries`, in percent, that automatic
    /// blocks may take; at the share the oldest automatic block makes room
    /// for a new one, so configured and manual entries always find space.
    pub auto_block_share_percent: u32,
    /// Prefixes never blocked automatically, besides the allow list, this
    /// host's addresses, its default gateways and its resolvers.
    pub never_block: Vec<Prefix>,
    /// Per detector: auto-block or not, and from which severity.
    pub detectors: BTreeMap<DetectorKind, DetectorResponse>,
}

/// `[response.<detector>]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectorResponse {
    /// Whether this detector's alerts block their source.
    pub auto_block: bool,
    /// Alerts below this severity only report.
    pub min_severity: Severity,
    /// What an automatic block drops: the attack's traffic or all of it.
    pub block: BlockScope,
}

/// What an automatic block drops (`[response.<detector>] block`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockScope {
    /// Only the kind of traffic the attack is made of: bare SYNs for a SYN
    /// flood, UDP for a UDP flood, ICMP for an ICMP flood, RSTs for a RST
    /// flood, TCP to the flooded port for an ACK flood, so that an address
    /// an attacker spoofs keeps its other traffic (`"attack"`).
    Attack,
    /// Everything from the source (`"all"`).
    All,
}

impl BlockScope {
    /// The default per detector: floods drop their attack traffic, scans
    /// all traffic (a scan's probes look like any other connection).
    pub fn default_for(kind: DetectorKind) -> Self {
        match kind {
            DetectorKind::PortScan | DetectorKind::DecoyScan | DetectorKind::DistributedScan => {
                Self::All
            }
            DetectorKind::SynFlood
            | DetectorKind::UdpFlood
            | DetectorKind::IcmpFlood
            | DetectorKind::AckFlood
            | DetectorKind::RstFlood => Self::Attack,
        }
    }
}

impl Default for ResponseConfig {
    fn default() -> Self {
        Self {
            auto_block: true,
            dry_run: false,
            block_ttl_secs: 600,
            escalation_factor: 2,
            max_block_ttl_secs: 24 * 3600,
            forget_after_secs: 24 * 3600,
            max_blocks_per_minute: 60,
            auto_block_share_percent: 50,
            never_block: Vec::new(),
            detectors: DetectorKind::ALL
                .into_iter()
                .map(|k| {
                    (
                        k,
                        DetectorResponse {
                            auto_block: true,
                            min_severity: Severity::Medium,
                            block: BlockScope::default_for(k),
                        },
                    )
                })
                .collect(),
        }
    }
}

impl ResponseConfig {
    /// The settings for one detector.
    pub fn detector(&self, kind: DetectorKind) -> DetectorResponse {
        self.detectors
            .get(&kind)
            .copied()
            .unwrap_or(DetectorResponse {
                auto_block: true,
                min_severity: Severity::Medium,
                block: BlockScope::default_for(kind),
            })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDetection {
    enabled: Option<bool>,
    max_tracked_sources: Option<Spanned<i64>>,
    signal_ring_buffer_size: Option<Spanned<i64>>,
    admit_after_packets: Option<Spanned<i64>>,
    admit_per_sec_per_cpu: Option<Spanned<i64>>,
    cleanup_interval_secs: Option<Spanned<i64>>,
    alerts_stdout: Option<bool>,
    alerts_file: Option<Spanned<String>>,
    alert_format: Option<Spanned<String>>,
    syn_flood: Option<RawSynFlood>,
    port_scan: Option<RawPortScan>,
    slow_scan: Option<RawSlowScan>,
    udp_flood: Option<RawFlood>,
    icmp_flood: Option<RawFlood>,
    ack_flood: Option<RawFlood>,
    rst_flood: Option<RawFlood>,
    #[serde(default)]
    host_groups: Vec<RawHostGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHostGroup {
    name: Spanned<String>,
    prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<toml::Value>>,
    syn_target_threshold: Option<Spanned<i64>>,
    udp_target_threshold: Option<Spanned<i64>>,
    udp_target_bytes_threshold: Option<Spanned<i64>>,
    icmp_target_threshold: Option<Spanned<i64>>,
    icmp_target_bytes_threshold: Option<Spanned<i64>>,
    rst_target_threshold: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSynFlood {
    enabled: Option<bool>,
    window_secs: Option<Spanned<i64>>,
    syn_only_ratio: Option<Spanned<f64>>,
    source_threshold: Option<Spanned<i64>>,
    target_threshold: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPortScan {
    enabled: Option<bool>,
    window_secs: Option<Spanned<i64>>,
    distinct_ports: Option<Spanned<i64>>,
    distinct_hosts: Option<Spanned<i64>>,
    refused_ports: Option<Spanned<i64>>,
    decoy_hold_ms: Option<Spanned<i64>>,
    distributed_ports: Option<Spanned<i64>>,
    distributed_sources: Option<Spanned<i64>>,
    distinct_protocols: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlowScan {
    enabled: Option<bool>,
    window_secs: Option<Spanned<i64>>,
    distinct_ports: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlood {
    enabled: Option<bool>,
    window_secs: Option<Spanned<i64>>,
    threshold: Option<Spanned<i64>>,
    target_threshold: Option<Spanned<i64>>,
    bytes_threshold: Option<Spanned<i64>>,
    target_bytes_threshold: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResponse {
    auto_block: Option<bool>,
    dry_run: Option<bool>,
    block_ttl_secs: Option<Spanned<i64>>,
    escalation_factor: Option<Spanned<i64>>,
    max_block_ttl_secs: Option<Spanned<i64>>,
    forget_after_secs: Option<Spanned<i64>>,
    max_blocks_per_minute: Option<Spanned<i64>>,
    auto_block_share_percent: Option<Spanned<i64>>,
    #[serde(default)]
    never_block: Vec<Spanned<String>>,
    syn_flood: Option<RawDetectorResponse>,
    port_scan: Option<RawDetectorResponse>,
    udp_flood: Option<RawDetectorResponse>,
    icmp_flood: Option<RawDetectorResponse>,
    ack_flood: Option<RawDetectorResponse>,
    rst_flood: Option<RawDetectorResponse>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetectorResponse {
    auto_block: Option<bool>,
    min_severity: Option<Spanned<String>>,
    block: Option<Spanned<String>>,
}

// Largest i64 a u32 setting takes; `range` does the checking.
const U32: u32 = u32::MAX;

impl Source<'_> {
    fn bytes(&self, v: &Spanned<i64>, field: &str) -> Result<u64, ConfigError> {
        let n = *v.get_ref();
        if n < 0 || n as u64 > MAX_BYTES {
            return Err(self.error(
                v.span(),
                field,
                format!("{n} is out of range: must be between 0 and {MAX_BYTES} bytes"),
            ));
        }
        Ok(n as u64)
    }

    fn secs(&self, v: &Spanned<i64>, field: &str, min: u64) -> Result<u64, ConfigError> {
        let n = *v.get_ref();
        if n < min as i64 || n > MAX_SECS as i64 {
            return Err(self.error(
                v.span(),
                field,
                format!("{n} is out of range: must be between {min} and {MAX_SECS} seconds"),
            ));
        }
        Ok(n as u64)
    }

    pub(super) fn detection(&self, raw: RawDetection) -> Result<DetectionConfig, ConfigError> {
        let mut cfg = DetectionConfig::default();
        if let Some(v) = raw.enabled {
            cfg.enabled = v;
        }
        if let Some(v) = &raw.max_tracked_sources {
            cfg.max_tracked_sources =
                self.range(v, "detection.max_tracked_sources", 16, MAX_TRACKED_SOURCES)?;
        }
        if let Some(v) = &raw.signal_ring_buffer_size {
            let field = "detection.signal_ring_buffer_size";
            let n = self.range(v, field, 4096, 1 << 30)?;
            if !n.is_power_of_two() {
                return Err(self.error(
                    v.span(),
                    field,
                    format!("{n} is not a power of two (e.g. 262144)"),
                ));
            }
            cfg.signal_ring_buffer_size = n;
        }
        if let Some(v) = &raw.admit_after_packets {
            cfg.admit_after_packets = self.range(v, "detection.admit_after_packets", 1, 1000)?;
        }
        if let Some(v) = &raw.admit_per_sec_per_cpu {
            cfg.admit_per_sec_per_cpu =
                self.range(v, "detection.admit_per_sec_per_cpu", 0, 10_000_000)?;
        }
        if let Some(v) = &raw.cleanup_interval_secs {
            cfg.cleanup_interval_secs = self.secs(v, "detection.cleanup_interval_secs", 1)?;
        }
        if let Some(v) = raw.alerts_stdout {
            cfg.alerts_stdout = v;
        }
        if let Some(v) = raw.alerts_file {
            let p = PathBuf::from(v.get_ref());
            if !p.is_absolute() {
                return Err(self.error(
                    v.span(),
                    "detection.alerts_file",
                    format!("\"{}\" must be an absolute path", v.get_ref()),
                ));
            }
            cfg.alerts_file = Some(p);
        }
        if let Some(v) = raw.alert_format {
            cfg.alert_format = match v.get_ref().as_str() {
                "alert" => AlertFormat::Alert,
                "log_entry" => AlertFormat::LogEntry,
                other => {
                    return Err(self.error(
                        v.span(),
                        "detection.alert_format",
                        format!("unknown format \"{other}\": expected alert or log_entry"),
                    ));
                }
            };
        }
        if let Some(raw) = raw.syn_flood {
            let c = &mut cfg.syn_flood;
            if let Some(v) = raw.enabled {
                c.enabled = v;
            }
            if let Some(v) = &raw.window_secs {
                c.window_secs = self.secs(v, "detection.syn_flood.window_secs", 1)?;
            }
            if let Some(v) = &raw.syn_only_ratio {
                let r = *v.get_ref();
                if !(r > 0.0 && r <= 1.0) {
                    return Err(self.error(
                        v.span(),
                        "detection.syn_flood.syn_only_ratio",
                        format!("{r} is out of range: must be above 0 and at most 1"),
                    ));
                }
                c.syn_only_permille = (r * 1000.0).round() as u32;
            }
            if let Some(v) = &raw.source_threshold {
                c.source_threshold =
                    self.range(v, "detection.syn_flood.source_threshold", 1, U32)?;
            }
            if let Some(v) = &raw.target_threshold {
                c.target_threshold =
                    self.range(v, "detection.syn_flood.target_threshold", 1, U32)?;
            }
        }
        if let Some(raw) = raw.port_scan {
            let c = &mut cfg.port_scan;
            if let Some(v) = raw.enabled {
                c.enabled = v;
            }
            if let Some(v) = &raw.window_secs {
                c.window_secs = self.secs(v, "detection.port_scan.window_secs", 1)?;
            }
            // The datapath counts distinct bins of a 512-bit (ports) and
            // 256-bit (hosts) set; thresholds must leave room below that.
            if let Some(v) = &raw.distinct_ports {
                c.distinct_ports = self.range(v, "detection.port_scan.distinct_ports", 2, 256)?;
            }
            if let Some(v) = &raw.distinct_hosts {
                c.distinct_hosts = self.range(v, "detection.port_scan.distinct_hosts", 0, 128)?;
            }
            if let Some(v) = &raw.refused_ports {
                c.refused_ports = self.range(v, "detection.port_scan.refused_ports", 0, 256)?;
            }
            if let Some(v) = &raw.distributed_ports {
                c.distributed_ports =
                    self.range(v, "detection.port_scan.distributed_ports", 0, 256)?;
            }
            if let Some(v) = &raw.distributed_sources {
                c.distributed_sources =
                    self.range(v, "detection.port_scan.distributed_sources", 2, 128)?;
            }
            if let Some(v) = &raw.distinct_protocols {
                c.distinct_protocols =
                    self.range(v, "detection.port_scan.distinct_protocols", 0, 128)?;
            }
            if let Some(v) = &raw.decoy_hold_ms {
                c.decoy_hold_ms = self
                    .range(v, "detection.port_scan.decoy_hold_ms", 0, 10_000)?
                    .into();
            }
        }
        if let Some(raw) = raw.slow_scan {
            let c = &mut cfg.slow_scan;
            if let Some(v) = raw.enabled {
                c.enabled = v;
            }
            if let Some(v) = &raw.window_secs {
                c.window_secs = self.secs(v, "detection.slow_scan.window_secs", 1)?;
            }
            if let Some(v) = &raw.distinct_ports {
                c.distinct_ports = self.range(v, "detection.slow_scan.distinct_ports", 2, 256)?;
            }
        }
        for (raw, c, name) in [
            (raw.udp_flood, &mut cfg.udp_flood, "udp_flood"),
            (raw.icmp_flood, &mut cfg.icmp_flood, "icmp_flood"),
            (raw.ack_flood, &mut cfg.ack_flood, "ack_flood"),
            (raw.rst_flood, &mut cfg.rst_flood, "rst_flood"),
        ] {
            let Some(raw) = raw else { continue };
            if let Some(v) = raw.enabled {
                c.enabled = v;
            }
            if let Some(v) = &raw.window_secs {
                c.window_secs = self.secs(v, &format!("detection.{name}.window_secs"), 1)?;
            }
            if let Some(v) = &raw.threshold {
                c.threshold = self.range(v, &format!("detection.{name}.threshold"), 1, U32)?;
            }
            if let Some(v) = &raw.target_threshold {
                let field = format!("detection.{name}.target_threshold");
                c.target_threshold = self.range(v, &field, 0, U32)?;
            }
            for (v, slot, what) in [
                (
                    &raw.bytes_threshold,
                    &mut c.bytes_threshold,
                    "bytes_threshold",
                ),
                (
                    &raw.target_bytes_threshold,
                    &mut c.target_bytes_threshold,
                    "target_bytes_threshold",
                ),
            ] {
                let Some(v) = v else { continue };
                let field = format!("detection.{name}.{what}");
                if matches!(name, "ack_flood" | "rst_flood") {
                    return Err(self.error(
                        v.span(),
                        &field,
                        "ACK and RST floods are counted in packets only: there is no \
                         bytes threshold"
                            .to_owned(),
                    ));
                }
                *slot = self.bytes(v, &field)?;
            }
        }
        cfg.host_groups = self.host_groups(&raw.host_groups, &cfg)?;
        Ok(cfg)
    }

    /// `[[detection.host_groups]]`: names unique, prefixes valid and in
    /// one group only, thresholds in range and only for checks that are on.
    fn host_groups(
        &self,
        raw: &[RawHostGroup],
        d: &DetectionConfig,
    ) -> Result<Vec<HostGroup>, ConfigError> {
        if raw.len() > MAX_HOST_GROUPS {
            return Err(self.error(
                raw[MAX_HOST_GROUPS].name.span(),
                "detection.host_groups",
                format!("at most {MAX_HOST_GROUPS} host groups"),
            ));
        }
        let mut out: Vec<HostGroup> = Vec::with_capacity(raw.len());
        let mut prefixes = 0;
        for (i, g) in raw.iter().enumerate() {
            let at = |f: &str| format!("detection.host_groups[{i}].{f}");
            let name = g.name.get_ref().trim();
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                return Err(self.error(
                    g.name.span(),
                    &at("name"),
                    "a name of 1 to 64 printable characters".to_owned(),
                ));
            }
            if out.iter().any(|o| o.name == name) {
                return Err(self.error(
                    g.name.span(),
                    &at("name"),
                    format!("a second host group is named {name}"),
                ));
            }
            let list = self.prefix_list(&g.prefixes, &at("prefixes"))?;
            if list.is_empty() {
                return Err(self.error(
                    g.name.span(),
                    &at("prefixes"),
                    "a host group needs at least one prefix".to_owned(),
                ));
            }
            let mut ports = Vec::with_capacity(g.ports.len());
            for (k, v) in g.ports.iter().enumerate() {
                let field = format!("{}[{k}]", at("ports"));
                let range = match v.get_ref() {
                    toml::Value::Integer(n) => u16::try_from(*n)
                        .map(|p| PortRange { first: p, last: p })
                        .map_err(|_| format!("{n} is not a port number (0 to 65535)")),
                    toml::Value::String(s) => s.parse::<PortRange>(),
                    other => Err(format!("{other} is not a port: write 443 or \"8000-8100\"")),
                }
                .map_err(|m| self.error(v.span(), &field, m))?;
                ports.push(range);
            }
            if !ports.is_empty() {
                let per_address = [
                    (&g.udp_target_threshold, "udp_target_threshold"),
                    (&g.udp_target_bytes_threshold, "udp_target_bytes_threshold"),
                    (&g.icmp_target_threshold, "icmp_target_threshold"),
                    (
                        &g.icmp_target_bytes_threshold,
                        "icmp_target_bytes_threshold",
                    ),
                    (&g.rst_target_threshold, "rst_target_threshold"),
                ];
                if let Some((v, f)) = per_address
                    .iter()
                    .find_map(|(v, f)| v.as_ref().map(|v| (v, *f)))
                {
                    return Err(self.error(
                        v.span(),
                        &at(f),
                        "a host group with ports sets only syn_target_threshold: UDP, ICMP \
                         and RST floods are counted per address, whatever the port"
                            .to_owned(),
                    ));
                }
            }
            for (k, p) in list.iter().enumerate() {
                if let Some(o) = out
                    .iter()
                    .find(|o| o.prefixes.contains(p) && o.ports.is_empty() == ports.is_empty())
                {
                    return Err(self.error(
                        g.prefixes[k].span(),
                        &format!("{}[{k}]", at("prefixes")),
                        format!("{p} is already in host group {}", o.name),
                    ));
                }
            }
            prefixes += list.len();
            if prefixes > MAX_HOST_GROUP_PREFIXES {
                return Err(self.error(
                    g.name.span(),
                    &at("prefixes"),
                    format!("at most {MAX_HOST_GROUP_PREFIXES} prefixes in all host groups"),
                ));
            }
            // A group sets a threshold of a check the detector runs: the
            // datapath counts a target only when its detector's check is on.
            let udp_on = d.udp_flood.enabled
                && (d.udp_flood.target_threshold != 0 || d.udp_flood.target_bytes_threshold != 0);
            let icmp_on = d.icmp_flood.enabled
                && (d.icmp_flood.target_threshold != 0 || d.icmp_flood.target_bytes_threshold != 0);
            for (v, f, check, what) in [
                (
                    &g.syn_target_threshold,
                    "syn_target_threshold",
                    d.syn_flood.enabled && d.syn_flood.target_threshold != 0,
                    "detection.syn_flood.target_threshold",
                ),
                (
                    &g.udp_target_threshold,
                    "udp_target_threshold",
                    udp_on,
                    "the UDP target check",
                ),
                (
                    &g.udp_target_bytes_threshold,
                    "udp_target_bytes_threshold",
                    udp_on,
                    "the UDP target check",
                ),
                (
                    &g.icmp_target_threshold,
                    "icmp_target_threshold",
                    icmp_on,
                    "the ICMP target check",
                ),
                (
                    &g.icmp_target_bytes_threshold,
                    "icmp_target_bytes_threshold",
                    icmp_on,
                    "the ICMP target check",
                ),
                (
                    &g.rst_target_threshold,
                    "rst_target_threshold",
                    d.rst_flood.enabled && d.rst_flood.target_threshold != 0,
                    "detection.rst_flood.target_threshold",
                ),
            ] {
                if let Some(v) = v
                    && !check
                {
                    return Err(self.error(
                        v.span(),
                        &at(f),
                        format!(
                            "{what} is off for every address: turn it on (not 0) to set it per \
                             group"
                        ),
                    ));
                }
            }
            let count = |v: &Option<Spanned<i64>>, f: &str| {
                v.as_ref()
                    .map(|v| self.range(v, &at(f), 0, u32::MAX))
                    .transpose()
            };
            let bytes = |v: &Option<Spanned<i64>>, f: &str| {
                v.as_ref().map(|v| self.bytes(v, &at(f))).transpose()
            };
            out.push(HostGroup {
                name: name.to_owned(),
                prefixes: list,
                ports,
                syn_target_threshold: count(&g.syn_target_threshold, "syn_target_threshold")?,
                udp_target_threshold: count(&g.udp_target_threshold, "udp_target_threshold")?,
                udp_target_bytes_threshold: bytes(
                    &g.udp_target_bytes_threshold,
                    "udp_target_bytes_threshold",
                )?,
                icmp_target_threshold: count(&g.icmp_target_threshold, "icmp_target_threshold")?,
                icmp_target_bytes_threshold: bytes(
                    &g.icmp_target_bytes_threshold,
                    "icmp_target_bytes_threshold",
                )?,
                rst_target_threshold: count(&g.rst_target_threshold, "rst_target_threshold")?,
            });
        }
        Ok(out)
    }

    pub(super) fn response(&self, raw: RawResponse) -> Result<ResponseConfig, ConfigError> {
        let mut cfg = ResponseConfig::default();
        if let Some(v) = raw.auto_block {
            cfg.auto_block = v;
        }
        if let Some(v) = raw.dry_run {
            cfg.dry_run = v;
        }
        if let Some(v) = &raw.block_ttl_secs {
            cfg.block_ttl_secs = self.secs(v, "response.block_ttl_secs", 1)?;
        }
        if let Some(v) = &raw.escalation_factor {
            cfg.escalation_factor = self.range(v, "response.escalation_factor", 1, 100)?;
        }
        if let Some(v) = &raw.max_block_ttl_secs {
            cfg.max_block_ttl_secs = self.secs(v, "response.max_block_ttl_secs", 1)?;
        }
        if let Some(v) = &raw.forget_after_secs {
            cfg.forget_after_secs = self.secs(v, "response.forget_after_secs", 1)?;
        }
        if let Some(v) = &raw.max_blocks_per_minute {
            cfg.max_blocks_per_minute =
                self.range(v, "response.max_blocks_per_minute", 0, 1_000_000)?;
        }
        if let Some(v) = &raw.auto_block_share_percent {
            cfg.auto_block_share_percent =
                self.range(v, "response.auto_block_share_percent", 1, 100)?;
        }
        cfg.never_block = self.prefix_list(&raw.never_block, "response.never_block")?;
        if cfg.max_block_ttl_secs < cfg.block_ttl_secs {
            let span = raw
                .max_block_ttl_secs
                .as_ref()
                .or(raw.block_ttl_secs.as_ref())
                .map_or(0..0, |v| v.span());
            return Err(self.error(
                span,
                "response.max_block_ttl_secs",
                format!(
                    "{} is below block_ttl_secs ({})",
                    cfg.max_block_ttl_secs, cfg.block_ttl_secs
                ),
            ));
        }
        for (raw, kind) in [
            (raw.syn_flood, DetectorKind::SynFlood),
            (raw.port_scan, DetectorKind::PortScan),
            (raw.udp_flood, DetectorKind::UdpFlood),
            (raw.icmp_flood, DetectorKind::IcmpFlood),
            (raw.ack_flood, DetectorKind::AckFlood),
            (raw.rst_flood, DetectorKind::RstFlood),
        ] {
            let Some(raw) = raw else { continue };
            let entry = cfg
                .detectors
                .get_mut(&kind)
                .expect("every detector has defaults");
            if let Some(v) = raw.auto_block {
                entry.auto_block = v;
            }
            if let Some(v) = raw.min_severity {
                entry.min_severity = v.get_ref().parse().map_err(|m| {
                    self.error(v.span(), &format!("response.{kind}.min_severity"), m)
                })?;
            }
            if let Some(v) = raw.block {
                entry.block = match v.get_ref().as_str() {
                    "attack" => BlockScope::Attack,
                    "all" => BlockScope::All,
                    other => {
                        return Err(self.error(
                            v.span(),
                            &format!("response.{kind}.block"),
                            format!("{other:?}: expected \"attack\" or \"all\""),
                        ));
                    }
                };
            }
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use crate::IronpostConfig;

    use super::*;

    fn parse(text: &str) -> Result<IronpostConfig, ConfigError> {
        IronpostConfig::parse(text, "t.toml")
    }

    #[test]
    fn founding_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.detection.syn_flood.window_secs, 10);
        assert_eq!(c.detection.syn_flood.syn_only_permille, 700);
        assert_eq!(c.detection.port_scan.distinct_ports, 20);
        assert_eq!(c.detection.port_scan.window_secs, 60);
        assert!(c.response.auto_block && !c.response.dry_run);
        assert_eq!(
            c.response.detector(DetectorKind::PortScan).min_severity,
            Severity::Medium
        );
    }

    #[test]
    fn host_groups_parse_and_the_longest_prefix_picks_one() {
        let c = parse(
            "[[detection.host_groups]]\nname = \"dns\"\nprefixes = [\"10.0.0.0/24\", \"2001:db8::/64\"]\n\
             udp_target_threshold = 50\nudp_target_bytes_threshold = 1000000\n\
             [[detection.host_groups]]\nname = \"web\"\nprefixes = [\"10.0.0.80\"]\n\
             syn_target_threshold = 50000\nrst_target_threshold = 0\n",
        )
        .unwrap();
        let g = &c.detection.host_groups;
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].udp_target_threshold, Some(50));
        assert_eq!(g[0].udp_target_bytes_threshold, Some(1_000_000));
        assert_eq!(g[0].syn_target_threshold, None, "the detector's");
        assert_eq!(g[1].rst_target_threshold, Some(0), "off for the group");
        let of = |a: &str| host_group_of(g, a.parse().unwrap(), None).map(|g| g.name.as_str());
        assert_eq!(of("10.0.0.80"), Some("web"));
        assert_eq!(of("10.0.0.81"), Some("dns"));
        assert_eq!(of("2001:db8::5"), Some("dns"));
        assert_eq!(of("10.0.1.1"), None);
        let c = parse(
            "[[detection.host_groups]]\nname = \"all\"\nprefixes = [\"10.0.0.0/8\"]\n\
             syn_target_threshold = 1\n\
             [[detection.host_groups]]\nname = \"web\"\nprefixes = [\"10.0.0.0/8\"]\n\
             ports = [443, \"8000-8100\"]\nsyn_target_threshold = 2\n",
        )
        .unwrap();
        let g = &c.detection.host_groups;
        let of =
            |port| host_group_of(g, "10.1.2.3".parse().unwrap(), port).map(|g| g.name.as_str());
        assert_eq!(of(Some(443)), Some("web"));
        assert_eq!(of(Some(8050)), Some("web"));
        assert_eq!(of(Some(22)), Some("all"));
        assert_eq!(of(None), Some("all"));
    }

    #[test]
    fn bad_host_groups_name_line_and_field() {
        let cases = [
            (
                "[[detection.host_groups]]\nname = \"a\"\nprefixes = [\"10.0.0.1/8\"]\n",
                3,
                "detection.host_groups[0].prefixes[0]",
                "host bits",
            ),
            (
                "[[detection.host_groups]]\nname = \"a\"\nprefixes = [\"10.0.0.0/8\"]\n\
                 [[detection.host_groups]]\nname = \"b\"\nprefixes = [\"10.0.0.0/8\"]\n",
                6,
                "detection.host_groups[1].prefixes[0]",
                "already in host group a",
            ),
            (
                "[[detection.host_groups]]\nname = \"a\"\nprefixes = [\"10.0.0.0/8\"]\n\
                 [[detection.host_groups]]\nname = \"a\"\nprefixes = [\"11.0.0.0/8\"]\n",
                5,
                "detection.host_groups[1].name",
                "a second host group is named a",
            ),
            (
                "[[detection.host_groups]]\nname = \"a\"\nprefixes = []\n",
                2,
                "detection.host_groups[0].prefixes",
                "at least one prefix",
            ),
            (
                "[detection.udp_flood]\ntarget_threshold = 0\n\
                 [[detection.host_groups]]\nname = \"a\"\nprefixes = [\"10.0.0.0/8\"]\n\
                 udp_target_threshold = 5\n",
                6,
                "detection.host_groups[0].udp_target_threshold",
                "off for every address",
            ),
            (
                "[[detection.host_groups]]\nname = \"a\"\nprefixes = [\"10.0.0.0/8\"]\n\
                 syn_target_threshold = -1\n",
                4,
                "detection.host_groups[0].syn_target_threshold",
                "-1 is out of range",
            ),
            (
                "[[detection.host_groups]]\nname = \"a\"\nprefixes = [\"10.0.0.0/8\"]\n\
                 ports = [443]\nudp_target_threshold = 5\n",
                5,
                "detection.host_groups[0].udp_target_threshold",
                "counted per address",
            ),
            (
                "[[detection.host_groups]]\nname = \"a\"\nprefixes = [\"10.0.0.0/8\"]\n\
                 ports = [70000]\n",
                4,
                "detection.host_groups[0].ports[0]",
                "not a port number",
            ),
            (
                "[[detection.host_groups]]\nname = \"a\"\nprefixes = [\"10.0.0.0/8\"]\nsyn = 5\n",
                4,
                "",
                "unknown field",
            ),
        ];
        for (text, line, field, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            if !field.is_empty() {
                assert_eq!(e.field, field, "{text}: {e}");
            }
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn every_setting_parses() {
        let c = parse(
            "[detection]\nenabled = true\nmax_tracked_sources = 1000\nsignal_ring_buffer_size = 8192\n\
             cleanup_interval_secs = 5\nalerts_stdout = false\nalerts_file = \"/tmp/a.jsonl\"\n\
             alert_format = \"log_entry\"\n\
             [detection.syn_flood]\nwindow_secs = 5\nsyn_only_ratio = 0.9\nsource_threshold = 100\ntarget_threshold = 200\n\
             [detection.port_scan]\nenabled = false\nwindow_secs = 30\ndistinct_ports = 10\ndistinct_hosts = 0\n\
             [detection.udp_flood]\nthreshold = 50\nbytes_threshold = 125000000\n\
             [detection.icmp_flood]\nwindow_secs = 2\ntarget_bytes_threshold = 1000\n\
             [detection.ack_flood]\ntarget_threshold = 0\n[detection.rst_flood]\ntarget_threshold = 777\n\
             [response]\ndry_run = true\nblock_ttl_secs = 60\nescalation_factor = 3\nmax_block_ttl_secs = 600\n\
             forget_after_secs = 3600\nmax_blocks_per_minute = 5\nauto_block_share_percent = 25\n\
             never_block = [\"192.0.2.0/24\", \"2001:db8::53\"]\n\
             [response.icmp_flood]\nauto_block = false\n[response.syn_flood]\nmin_severity = \"high\"\n\
             block = \"all\"\n",
        )
        .unwrap();
        let d = &c.detection;
        assert_eq!(d.max_tracked_sources, 1000);
        assert_eq!(d.alert_format, AlertFormat::LogEntry);
        assert_eq!(d.syn_flood.syn_only_permille, 900);
        assert_eq!(d.syn_flood.target_threshold, 200);
        assert!(!d.runs(DetectorKind::PortScan) && d.runs(DetectorKind::UdpFlood));
        assert_eq!(d.udp_flood.threshold, 50);
        assert_eq!(d.udp_flood.bytes_threshold, 125_000_000);
        assert_eq!(d.icmp_flood.target_bytes_threshold, 1000);
        assert_eq!(d.udp_flood.target_bytes_threshold, 0, "off by default");
        assert_eq!(d.icmp_flood.window_secs, 2);
        assert_eq!(d.ack_flood.target_threshold, 0, "off");
        assert_eq!(d.rst_flood.target_threshold, 777);
        let r = &c.response;
        assert!(r.dry_run);
        assert_eq!(
            (r.block_ttl_secs, r.escalation_factor, r.max_block_ttl_secs),
            (60, 3, 600)
        );
        assert_eq!(
            (r.max_blocks_per_minute, r.auto_block_share_percent),
            (5, 25)
        );
        assert_eq!(r.never_block.len(), 2);
        assert_eq!(r.never_block[1].to_string(), "2001:db8::53");
        assert!(!r.detector(DetectorKind::IcmpFlood).auto_block);
        assert_eq!(r.detector(DetectorKind::SynFlood).block, BlockScope::All);
        assert_eq!(r.detector(DetectorKind::UdpFlood).block, BlockScope::Attack);
        assert_eq!(
            r.detector(DetectorKind::SynFlood).min_severity,
            Severity::High
        );
    }

    #[test]
    fn bad_values_name_line_and_field() {
        let cases = [
            (
                "[detection.syn_flood]\nsyn_only_ratio = 1.5\n",
                2,
                "detection.syn_flood.syn_only_ratio",
                "1.5",
            ),
            (
                "[detection]\nsignal_ring_buffer_size = 5000\n",
                2,
                "detection.signal_ring_buffer_size",
                "power of two",
            ),
            (
                "\n[detection.port_scan]\ndistinct_ports = 1000\n",
                3,
                "detection.port_scan.distinct_ports",
                "1000",
            ),
            (
                "[detection.udp_flood]\nwindow_secs = 0\n",
                2,
                "detection.udp_flood.window_secs",
                "0 is out of range",
            ),
            (
                "[detection.rst_flood]\nthreshold = 10\ntarget_threshold = -5\n",
                3,
                "detection.rst_flood.target_threshold",
                "-5 is out of range",
            ),
            (
                "[response.port_scan]\nmin_severity = \"severe\"\n",
                2,
                "response.port_scan.min_severity",
                "severe",
            ),
            (
                "[response]\nblock_ttl_secs = 600\nmax_block_ttl_secs = 60\n",
                3,
                "response.max_block_ttl_secs",
                "below",
            ),
            (
                "[response.udp_flood]\nblock = \"some\"\n",
                2,
                "response.udp_flood.block",
                "expected \"attack\" or \"all\"",
            ),
            (
                "[response]\nauto_block_share_percent = 0\n",
                2,
                "response.auto_block_share_percent",
                "0 is out of range",
            ),
            (
                "[response]\nnever_block = [\"192.0.2.0/24\", \"10.0.0.1/8\"]\n",
                2,
                "response.never_block[1]",
                "host bits",
            ),
            (
                "[detection]\nalerts_file = \"alerts.jsonl\"\n",
                2,
                "detection.alerts_file",
                "absolute",
            ),
            (
                "[detection]\nalert_format = \"xml\"\n",
                2,
                "detection.alert_format",
                "xml",
            ),
            (
                "[detection.ack_flood]\nbytes_threshold = 5\n",
                2,
                "detection.ack_flood.bytes_threshold",
                "packets only",
            ),
            (
                "[detection.udp_flood]\nbytes_threshold = -1\n",
                2,
                "detection.udp_flood.bytes_threshold",
                "-1 is out of range",
            ),
            (
                "\n[detection.icmp_flood]\ntarget_bytes_threshold = 9999999999999999\n",
                3,
                "detection.icmp_flood.target_bytes_threshold",
                "out of range",
            ),
        ];
        for (text, line, field, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!((e.line, e.field.as_str()), (line, field), "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
        let e = parse("[detection.syn_flood]\nthreshold = 5\n").unwrap_err();
        assert!(e.to_string().contains("threshold"), "{e}");
    }
}
