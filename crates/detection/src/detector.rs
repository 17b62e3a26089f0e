//! The detectors (SYN flood, port scan and sweep, UDP, ICMP, ACK and RST
//! floods) and
//! [`PacketDetector`], which owns them and their state: it routes each
//! signal, turns findings into alerts, and keeps one alert per detector
//! and source per window, counting repeats instead of re-alerting.

use std::collections::HashMap;

use ironpost_core::{
    Alert, AlertAction, Detector, DetectorKind, Evidence, Finding, Severity, Signal, SignalKind,
    config::{
        DetectionConfig, FloodConfig, HostGroup, PortScanConfig, SlowScanConfig, SynFloodConfig,
        host_group_of,
    },
};
use ironpost_ebpf_common::{HOST_BINS, PORT_BINS};
use serde::Serialize;

/// Distinct items behind `bins` set bins of an `m`-bin set (linear
/// counting). A full set only says "many": it is reported as the estimate
/// for `m - 1` bins, `m ln m`, a lower bound in practice.
pub fn estimate_distinct(bins: u32, m: u32) -> u64 {
    let bins = bins.min(m.saturating_sub(1));
    let (k, m) = (f64::from(bins), f64::from(m));
    (-m * (1.0 - k / m).ln()).round().max(k) as u64
}

/// Severity from how much faster than the threshold rate the count was
/// reached: `count / elapsed` against `threshold / window`. At about the
/// threshold rate: medium; 3x: high; 10x: critical; never above `cap`.
pub fn severity(
    count: u64,
    threshold: u64,
    elapsed_secs: f64,
    window_secs: u64,
    cap: Severity,
) -> Severity {
    let rate = count as f64 / elapsed_secs.max(0.001);
    let limit = threshold.max(1) as f64 / window_secs.max(1) as f64;
    let s = match rate / limit {
        f if f >= 10.0 => Severity::Critical,
        f if f >= 3.0 => Severity::High,
        _ => Severity::Medium,
    };
    s.min(cap)
}

fn evidence(s: &Signal, window_secs: u64, count: u64, threshold: u64) -> Evidence {
    let elapsed_secs = s.time_ms.saturating_sub(s.window_start_ms) as f64 / 1000.0;
    Evidence {
        window_secs,
        elapsed_secs,
        count,
        threshold,
        rate_per_sec: (count as f64 / elapsed_secs.max(0.001) * 10.0).round() / 10.0,
        ..Evidence::default()
    }
}

fn ratio(syn: u32, ack: u32) -> f64 {
    let total = u64::from(syn) + u64::from(ack);
    if total == 0 {
        0.0
    } else {
        (f64::from(syn) / total as f64 * 1000.0).round() / 1000.0
    }
}

/// ` (host group NAME)` when `dst` (and `port`, see [`host_group_of`]) is
/// in one of `groups`, for a summary.
fn group_note(groups: &[HostGroup], dst: std::net::IpAddr, port: Option<u16>) -> String {
    host_group_of(groups, dst, port).map_or(String::new(), |g| format!(" (host group {})", g.name))
}

/// SYN floods: bare SYNs from one source, or onto one destination port,
/// above the threshold within the window, with a SYN-only ratio at or
/// above the configured one (a busy but healthy client or service
/// completes its handshakes, so ACKs keep its ratio low).
#[derive(Debug)]
pub struct SynFloodDetector {
    cfg: SynFloodConfig,
    groups: Vec<HostGroup>,
}

impl SynFloodDetector {
    /// A detector with these settings; `groups` set the target threshold
    /// of their destinations.
    pub fn new(cfg: SynFloodConfig, groups: Vec<HostGroup>) -> Self {
        Self { cfg, groups }
    }
}

impl Detector for SynFloodDetector {
    fn kind(&self) -> DetectorKind {
        DetectorKind::SynFlood
    }

    fn observe(&mut self, s: &Signal) -> Option<Finding> {
        let c = &self.cfg;
        let r = ratio(s.syn, s.ack);
        if r * 1000.0 + 0.5 < f64::from(c.syn_only_permille) {
            return None;
        }
        let (threshold, source, target, key) = match s.kind {
            SignalKind::SynSource => (
                c.source_threshold,
                Some(s.src),
                s.dst.to_string(),
                format!("syn_flood:{}", s.src),
            ),
            SignalKind::SynTarget => {
                let target = socket(s.dst, s.dst_port);
                (
                    host_group_of(&self.groups, s.dst, Some(s.dst_port))
                        .and_then(|g| g.syn_target_threshold)
                        .unwrap_or(c.target_threshold),
                    None,
                    target.clone(),
                    format!("syn_flood:target:{target}"),
                )
            }
            _ => return None,
        };
        if s.syn < threshold {
            return None;
        }
        let mut ev = evidence(s, c.window_secs, s.syn.into(), threshold.into());
        ev.syn = Some(s.syn.into());
        ev.ack = Some(s.ack.into());
        ev.syn_only_ratio = Some(r);
        let severity = severity(
            s.syn.into(),
            threshold.into(),
            ev.elapsed_secs,
            c.window_secs,
            Severity::Critical,
        );
        let summary = match source {
            Some(src) => format!(
                "SYN flood from {src}: {} SYNs in {:.2} s, {:.0}% without handshake",
                s.syn,
                ev.elapsed_secs,
                r * 100.0
            ),
            None => {
                let n = estimate_distinct(s.sources, HOST_BINS);
                ev.distinct_sources = Some(n);
                ev.sampled_sources = s.sample_sources.clone();
                format!(
                    "SYN flood onto {target}{}: {} SYNs in {:.2} s from about {n} sources, {:.0}% \
                     without handshake",
                    group_note(&self.groups, s.dst, Some(s.dst_port)),
                    s.syn,
                    ev.elapsed_secs,
                    r * 100.0
                )
            }
        };
        Some(Finding {
            detector: DetectorKind::SynFlood,
            severity,
            source,
            target,
            summary,
            evidence: ev,
            dedup_key: key,
            window_ms: c.window_secs * 1000,
        })
    }
}

fn socket(addr: std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V4(a) => format!("{a}:{port}"),
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// Port scans: one source probing many destination ports (bare SYNs, or
/// UDP from an unprivileged port) within the window, or refused on many;
/// the slow tier: a remote too quiet for per-source tracking refused on
/// many ports over a long window; and the horizontal sweep: one source
/// probing many hosts.
#[derive(Debug)]
pub struct PortScanDetector {
    cfg: PortScanConfig,
    slow: SlowScanConfig,
}

impl PortScanDetector {
    /// A detector with these settings.
    pub fn new(cfg: PortScanConfig, slow: SlowScanConfig) -> Self {
        Self { cfg, slow }
    }
}

impl Detector for PortScanDetector {
    fn kind(&self) -> DetectorKind {
        DetectorKind::PortScan
    }

    fn observe(&mut self, s: &Signal) -> Option<Finding> {
        let c = &self.cfg;
        let (count, threshold, what) = match s.kind {
            SignalKind::PortScan => (s.ports, c.distinct_ports, "ports"),
            SignalKind::HostSweep if c.distinct_hosts > 0 => (s.hosts, c.distinct_hosts, "hosts"),
            SignalKind::RefusedScan if c.refused_ports > 0 => (s.ports, c.refused_ports, "refused"),
            SignalKind::SlowScan if self.slow.enabled => {
                (s.ports, self.slow.distinct_ports, "slow")
            }
            SignalKind::ProtocolScan if c.distinct_protocols > 0 => {
                (s.ports, c.distinct_protocols, "protocols")
            }
            SignalKind::TinyFragments => (s.ports, c.distinct_ports, "tiny"),
            _ => return None,
        };
        if count < threshold {
            return None;
        }
        let window_secs = if what == "slow" {
            self.slow.window_secs
        } else {
            c.window_secs
        };
        let mut ev = evidence(s, window_secs, count.into(), threshold.into());
        ev.distinct_ports = Some(estimate_distinct(s.ports, PORT_BINS));
        ev.distinct_hosts = Some(estimate_distinct(s.hosts, HOST_BINS));
        ev.sampled_ports = s.sample_ports.clone();
        let proto = match s.protocol {
            ironpost_core::Protocol::Udp => "UDP",
            ironpost_core::Protocol::Tcp => "TCP",
            _ => "ICMP",
        };
        let (summary, target) = if what == "tiny" {
            (
                format!(
                    "port scan from {} hidden in fragments: {count} first fragments to {} too \
                     short for their {proto} header in {:.2} s, all dropped",
                    s.src, s.dst, ev.elapsed_secs
                ),
                s.dst.to_string(),
            )
        } else if what == "protocols" {
            (
                format!(
                    "IP protocol scan from {}: {count} distinct protocols besides TCP, UDP and \
                     ICMP to {} in {:.2} s",
                    s.src, s.dst, ev.elapsed_secs
                ),
                s.dst.to_string(),
            )
        } else if what == "slow" {
            (
                format!(
                    "slow {proto} port scan from {}: {} distinct ports or protocols of {} refused \
                     in {:.0} s, too few a second for per-source tracking",
                    s.src,
                    ev.distinct_ports.unwrap_or(0),
                    s.dst,
                    ev.elapsed_secs
                ),
                s.dst.to_string(),
            )
        } else if what == "refused" {
            (
                format!(
                    "{proto} port scan from {}: {} distinct ports or protocols of {} refused (RSTs, \
                     ICMP unreachables) in {:.2} s, {} connections accepted",
                    s.src,
                    ev.distinct_ports.unwrap_or(0),
                    s.dst,
                    ev.elapsed_secs,
                    s.ack
                ),
                s.dst.to_string(),
            )
        } else if what == "ports" {
            (
                format!(
                    "{proto} port scan from {}: {} distinct ports of {} in {:.2} s",
                    s.src,
                    ev.distinct_ports.unwrap_or(0),
                    s.dst,
                    ev.elapsed_secs
                ),
                s.dst.to_string(),
            )
        } else {
            (
                format!(
                    "{proto} sweep from {}: {} distinct hosts in {:.2} s (last: {})",
                    s.src,
                    ev.distinct_hosts.unwrap_or(0),
                    ev.elapsed_secs,
                    socket(s.dst, s.dst_port)
                ),
                format!("{} hosts", ev.distinct_hosts.unwrap_or(0)),
            )
        };
        Some(Finding {
            detector: DetectorKind::PortScan,
            severity: severity(
                count.into(),
                threshold.into(),
                ev.elapsed_secs,
                window_secs,
                Severity::High,
            ),
            source: Some(s.src),
            target,
            summary,
            evidence: ev,
            dedup_key: format!("port_scan:{}", s.src),
            window_ms: window_secs * 1000,
        })
    }
}

/// Distributed scans: one of the host's addresses refused many distinct
/// ports to many remote addresses together within the port-scan window.
#[derive(Debug)]
pub struct DistributedScanDetector {
    cfg: PortScanConfig,
}

impl DistributedScanDetector {
    /// A detector with these settings.
    pub fn new(cfg: PortScanConfig) -> Self {
        Self { cfg }
    }
}

impl Detector for DistributedScanDetector {
    fn kind(&self) -> DetectorKind {
        DetectorKind::DistributedScan
    }

    fn observe(&mut self, s: &Signal) -> Option<Finding> {
        let c = &self.cfg;
        if s.kind != SignalKind::DistributedScan
            || c.distributed_ports == 0
            || s.ports < c.distributed_ports
            || s.sources < c.distributed_sources
        {
            return None;
        }
        let mut ev = evidence(s, c.window_secs, s.ports.into(), c.distributed_ports.into());
        let ports = estimate_distinct(s.ports, PORT_BINS);
        let sources = estimate_distinct(s.sources, HOST_BINS);
        ev.distinct_ports = Some(ports);
        ev.distinct_sources = Some(sources);
        ev.sampled_sources = s.sample_sources.clone();
        // The host's address is the destination of what it refused.
        let host = s.dst;
        Some(Finding {
            detector: DetectorKind::DistributedScan,
            severity: severity(
                s.ports.into(),
                c.distributed_ports.into(),
                ev.elapsed_secs,
                c.window_secs,
                Severity::High,
            ),
            source: None,
            target: host.to_string(),
            summary: format!(
                "distributed port scan of {host}: {ports} distinct ports refused to about {sources} \
                 sources in {:.2} s",
                ev.elapsed_secs
            ),
            evidence: ev,
            dedup_key: format!("distributed_scan:{host}"),
            window_ms: c.window_secs * 1000,
        })
    }
}

/// Packet floods: UDP, ICMP and RSTs from one source, ACK-bearing segments
/// of one source that the host refused, above the threshold within the
/// window; and UDP or ICMP onto one address from sources without state
/// (spoofed ones), above the target threshold.
#[derive(Debug)]
pub struct FloodDetector {
    kind: DetectorKind,
    cfg: FloodConfig,
    groups: Vec<HostGroup>,
}

impl FloodDetector {
    /// A flood detector of `kind` (UDP, ICMP, ACK or RST flood); `groups`
    /// set the target thresholds of their destinations.
    pub fn new(kind: DetectorKind, cfg: FloodConfig, groups: Vec<HostGroup>) -> Self {
        Self { kind, cfg, groups }
    }

    /// The target thresholds (packets, bytes) for `dst`: its host group's
    /// where it sets them (ACK floods onto an address have none).
    fn target_limits(&self, dst: std::net::IpAddr) -> (u32, u64) {
        let c = &self.cfg;
        let g = host_group_of(&self.groups, dst, None);
        let (packets, bytes) = match self.kind {
            DetectorKind::UdpFlood => g.map_or((None, None), |g| {
                (g.udp_target_threshold, g.udp_target_bytes_threshold)
            }),
            DetectorKind::IcmpFlood => g.map_or((None, None), |g| {
                (g.icmp_target_threshold, g.icmp_target_bytes_threshold)
            }),
            DetectorKind::RstFlood => (g.and_then(|g| g.rst_target_threshold), None),
            _ => (None, None),
        };
        (
            packets.unwrap_or(c.target_threshold),
            bytes.unwrap_or(c.target_bytes_threshold),
        )
    }
}

impl Detector for FloodDetector {
    fn kind(&self) -> DetectorKind {
        self.kind
    }

    fn observe(&mut self, s: &Signal) -> Option<Finding> {
        let c = &self.cfg;
        // (packets, their threshold, the bytes threshold: 0 where bytes
        // are not counted)
        let (count, threshold, bytes_threshold, name, onto_target) = match (self.kind, s.kind) {
            (DetectorKind::UdpFlood, SignalKind::UdpFlood) => {
                (s.udp, c.threshold, c.bytes_threshold, "UDP", false)
            }
            (DetectorKind::UdpFlood, SignalKind::UdpTarget) => {
                let (p, b) = self.target_limits(s.dst);
                (s.udp, p, b, "UDP", true)
            }
            (DetectorKind::IcmpFlood, SignalKind::IcmpFlood) => {
                (s.icmp, c.threshold, c.bytes_threshold, "ICMP", false)
            }
            (DetectorKind::IcmpFlood, SignalKind::IcmpTarget) => {
                let (p, b) = self.target_limits(s.dst);
                (s.icmp, p, b, "ICMP", true)
            }
            (DetectorKind::AckFlood, SignalKind::AckFlood) => (s.ack, c.threshold, 0, "ACK", false),
            (DetectorKind::AckFlood, SignalKind::AckTarget) => {
                (s.ack, c.target_threshold, 0, "ACK", true)
            }
            (DetectorKind::RstFlood, SignalKind::RstFlood) => (s.rst, c.threshold, 0, "RST", false),
            (DetectorKind::RstFlood, SignalKind::RstTarget) => {
                (s.rst, self.target_limits(s.dst).0, 0, "RST", true)
            }
            _ => return None,
        };
        let by_packets = threshold != 0 && count >= threshold;
        let by_bytes = bytes_threshold != 0 && s.bytes >= bytes_threshold;
        if !by_packets && !by_bytes {
            return None;
        }
        // The count that crossed: packets when they did, else bytes.
        let (crossed, limit) = if by_packets {
            (u64::from(count), u64::from(threshold))
        } else {
            (s.bytes, bytes_threshold)
        };
        let mut ev = evidence(s, c.window_secs, crossed, limit);
        let volume = if matches!(self.kind, DetectorKind::UdpFlood | DetectorKind::IcmpFlood) {
            ev.bytes = Some(s.bytes);
            format!("{count} packets ({} bytes)", s.bytes)
        } else {
            format!("{count} packets")
        };
        let severity = severity(
            crossed,
            limit,
            ev.elapsed_secs,
            c.window_secs,
            Severity::Critical,
        );
        let (source, target, summary, dedup_key) = if onto_target {
            let n = estimate_distinct(s.sources, HOST_BINS);
            ev.distinct_sources = Some(n);
            ev.sampled_sources = s.sample_sources.clone();
            (
                None,
                s.dst.to_string(),
                format!(
                    "{name} flood onto {}{}: {volume} in {:.2} s from about {n} sources \
                     without tracking state (spoofed or new)",
                    s.dst,
                    group_note(&self.groups, s.dst, None),
                    ev.elapsed_secs
                ),
                format!("{}:target:{}", self.kind, s.dst),
            )
        } else {
            let summary = match self.kind {
                DetectorKind::AckFlood => {
                    ev.sampled_ports = vec![s.dst_port];
                    format!(
                        "ACK flood from {} to {}: {count} segments to port {} that no \
                         connection knew, refused with RSTs in {:.2} s",
                        s.src, s.dst, s.dst_port, ev.elapsed_secs
                    )
                }
                _ => {
                    if self.kind == DetectorKind::UdpFlood {
                        ev.sampled_ports = s.sample_ports.clone();
                    }
                    format!(
                        "{name} flood from {} to {}: {volume} in {:.2} s",
                        s.src, s.dst, ev.elapsed_secs
                    )
                }
            };
            (
                Some(s.src),
                s.dst.to_string(),
                summary,
                format!("{}:{}", self.kind, s.src),
            )
        };
        Some(Finding {
            detector: self.kind,
            severity,
            source,
            target,
            summary,
            evidence: ev,
            dedup_key,
            window_ms: c.window_secs * 1000,
        })
    }
}

/// What became of a signal.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A new alert (its action is `None { reason: "pending" }` until the
    /// responder has decided).
    Alert(Box<Alert>),
    /// The same detector already alerted on this source in this window.
    Repeat {
        /// That alert.
        alert_id: String,
        /// Repeats so far.
        repeats: u64,
    },
    /// No detector took it (off, or below its thresholds).
    Ignored,
    /// A port scan held for `decoy_hold_ms`, to see whether other sources
    /// scan the same ports of the same host at once; it comes out of
    /// [`PacketDetector::release`].
    Held,
}

/// Per-detector counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DetectorCounts {
    /// Alerts raised.
    pub alerts: u64,
    /// Findings folded into an earlier alert of the same window.
    pub repeats: u64,
}

/// Counts of the whole detection stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DetectionCounts {
    /// Signals received.
    pub signals: u64,
    /// Signals no detector turned into a finding.
    pub ignored: u64,
    /// Per detector.
    pub detectors: std::collections::BTreeMap<DetectorKind, DetectorCounts>,
    /// Alert windows dropped early because the cap was reached.
    pub evicted: u64,
    /// Alert windows tracked now.
    pub tracked: usize,
}

#[derive(Clone, Debug)]
struct Window {
    alert_id: String,
    detector: DetectorKind,
    until_ms: u64,
    repeats: u64,
}

/// What an alert needs from the signal it came from.
#[derive(Clone, Debug)]
struct Origin {
    time_ms: u64,
    window_start_ms: u64,
    interface: String,
}

impl Origin {
    fn of(s: &Signal) -> Self {
        Self {
            time_ms: s.time_ms,
            window_start_ms: s.window_start_ms,
            interface: s.interface.clone(),
        }
    }
}

/// Port scans of one host held together: one source is a port scan, two
/// or more probing the same ports at once a decoy scan.
#[derive(Debug)]
struct HeldScans {
    target: std::net::IpAddr,
    due_ms: u64,
    /// The sampled ports of every member (sorted, deduplicated).
    ports: Vec<u16>,
    members: Vec<(Finding, Origin)>,
    /// Members beyond [`MAX_DECOY_SOURCES`], counted only.
    more: u64,
}

/// Sources one decoy alert lists at most.
const MAX_DECOY_SOURCES: usize = 32;

/// Whether two port samples share at least half of the smaller one (and
/// at least one port): a decoy sends each probe from every address at
/// once, so their samples match; two independent scans of a host (nmap
/// shuffles its ports) share few.
fn same_ports(a: &[u16], b: &[u16]) -> bool {
    let common = a.iter().filter(|p| b.contains(p)).count();
    common >= 1 && 2 * common >= a.len().min(b.len())
}

/// Owns the detectors and the per-(detector, source) alert windows. Its
/// memory is bounded by `cap` windows (at the cap, the window closest to
/// its end is dropped first) and `cap` groups of held port scans of at
/// most [`MAX_DECOY_SOURCES`] each. Call [`PacketDetector::cleanup`] on a
/// timer, and [`PacketDetector::release`] more often than
/// `decoy_hold_ms`.
pub struct PacketDetector {
    detectors: Vec<Box<dyn Detector + Send>>,
    windows: HashMap<String, Window>,
    held: Vec<HeldScans>,
    decoy_hold_ms: u64,
    cap: usize,
    id_prefix: String,
    next_id: u64,
    counts: DetectionCounts,
}

impl PacketDetector {
    /// The detectors the configuration turns on, with room for
    /// `max_tracked_sources` alert windows. Alert ids are
    /// `<id_prefix>-<n>`.
    pub fn new(cfg: &DetectionConfig, id_prefix: impl Into<String>) -> Self {
        let mut d = Self {
            detectors: Vec::new(),
            windows: HashMap::new(),
            held: Vec::new(),
            decoy_hold_ms: 0,
            cap: cfg.max_tracked_sources as usize,
            id_prefix: id_prefix.into(),
            next_id: 1,
            counts: DetectionCounts::default(),
        };
        d.reconfigure(cfg);
        d
    }

    /// Replaces the detectors' settings; open alert windows are kept.
    pub fn reconfigure(&mut self, cfg: &DetectionConfig) {
        let mut v: Vec<Box<dyn Detector + Send>> = Vec::new();
        if cfg.runs(DetectorKind::SynFlood) {
            v.push(Box::new(SynFloodDetector::new(
                cfg.syn_flood.clone(),
                cfg.host_groups.clone(),
            )));
        }
        if cfg.runs(DetectorKind::DistributedScan) {
            v.push(Box::new(DistributedScanDetector::new(
                cfg.port_scan.clone(),
            )));
        }
        if cfg.runs(DetectorKind::PortScan) {
            v.push(Box::new(PortScanDetector::new(
                cfg.port_scan.clone(),
                cfg.slow_scan.clone(),
            )));
        }
        for (kind, c) in [
            (DetectorKind::UdpFlood, &cfg.udp_flood),
            (DetectorKind::IcmpFlood, &cfg.icmp_flood),
            (DetectorKind::AckFlood, &cfg.ack_flood),
            (DetectorKind::RstFlood, &cfg.rst_flood),
        ] {
            if cfg.runs(kind) {
                v.push(Box::new(FloodDetector::new(
                    kind,
                    c.clone(),
                    cfg.host_groups.clone(),
                )));
            }
        }
        self.detectors = v;
        self.cap = cfg.max_tracked_sources as usize;
        self.decoy_hold_ms = if cfg.runs(DetectorKind::DecoyScan) {
            cfg.port_scan.decoy_hold_ms
        } else {
            0
        };
    }

    /// Runs one signal through the detectors.
    pub fn observe(&mut self, s: &Signal) -> Outcome {
        self.counts.signals += 1;
        let want = s.kind.detector();
        let finding = self
            .detectors
            .iter_mut()
            .filter(|d| d.kind() == want)
            .find_map(|d| d.observe(s));
        let Some(f) = finding else {
            self.counts.ignored += 1;
            return Outcome::Ignored;
        };
        if let Some(w) = self.windows.get_mut(&f.dedup_key)
            && s.time_ms < w.until_ms
        {
            w.repeats += 1;
            self.counts.detectors.entry(w.detector).or_default().repeats += 1;
            return Outcome::Repeat {
                alert_id: w.alert_id.clone(),
                repeats: w.repeats,
            };
        }
        if f.detector == DetectorKind::PortScan
            && self.decoy_hold_ms > 0
            && s.kind != SignalKind::HostSweep
            && let Some(src) = f.source
        {
            if self
                .held
                .iter()
                .any(|g| g.members.iter().any(|(m, _)| m.source == Some(src)))
            {
                return Outcome::Held;
            }
            if let Some(g) = self
                .held
                .iter_mut()
                .find(|g| g.target == s.dst && same_ports(&g.ports, &f.evidence.sampled_ports))
            {
                g.ports.extend(&f.evidence.sampled_ports);
                g.ports.sort_unstable();
                g.ports.dedup();
                if g.members.len() < MAX_DECOY_SOURCES {
                    g.members.push((f, Origin::of(s)));
                } else {
                    g.more += 1;
                }
                return Outcome::Held;
            }
            if self.held.len() < self.cap {
                self.held.push(HeldScans {
                    target: s.dst,
                    due_ms: s.time_ms + self.decoy_hold_ms,
                    ports: f.evidence.sampled_ports.clone(),
                    members: vec![(f, Origin::of(s))],
                    more: 0,
                });
                return Outcome::Held;
            }
        }
        Outcome::Alert(self.raise(f, &Origin::of(s), &[]))
    }

    /// The held port scans whose hold ended by `now_ms`, as alerts: one
    /// source's as its port scan, several sources' as one decoy scan.
    /// `u64::MAX` releases them all (at shutdown).
    pub fn release(&mut self, now_ms: u64) -> Vec<Box<Alert>> {
        let (due, held): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|g| g.due_ms <= now_ms);
        self.held = held;
        due.into_iter()
            .map(|mut g| {
                if g.members.len() == 1 {
                    let (f, origin) = g.members.pop().expect("one member");
                    self.raise(f, &origin, &[])
                } else {
                    self.raise_decoy(g)
                }
            })
            .collect()
    }

    /// One alert for the sources of a decoy scan; each source's port-scan
    /// window points at it, so their later signals are its repeats.
    fn raise_decoy(&mut self, g: HeldScans) -> Box<Alert> {
        let (first, origin) = &g.members[0];
        let sources: Vec<std::net::IpAddr> =
            g.members.iter().filter_map(|(m, _)| m.source).collect();
        let n = sources.len() as u64 + g.more;
        let mut ev = Evidence {
            count: n,
            threshold: 2,
            distinct_sources: Some(n),
            sampled_sources: sources.clone(),
            sampled_ports: g.ports.iter().copied().take(8).collect(),
            ..first.evidence.clone()
        };
        ev.distinct_ports = None;
        ev.distinct_hosts = None;
        let listed: Vec<String> = sources.iter().map(ToString::to_string).collect();
        let f = Finding {
            detector: DetectorKind::DecoyScan,
            severity: Severity::High,
            source: None,
            target: g.target.to_string(),
            summary: format!(
                "decoy scan of {}: {n} sources probed the same ports at once ({}{}); any of \
                 them may be spoofed",
                g.target,
                listed.join(", "),
                if g.more > 0 { ", ..." } else { "" }
            ),
            evidence: ev,
            dedup_key: format!("decoy_scan:{}", g.target),
            window_ms: first.window_ms,
        };
        let also: Vec<String> = g.members.iter().map(|(m, _)| m.dedup_key.clone()).collect();
        let origin = origin.clone();
        self.raise(f, &origin, &also)
    }

    /// A new alert for `f`, with its alert window (and the same window for
    /// the dedup keys in `also`).
    fn raise(&mut self, f: Finding, origin: &Origin, also: &[String]) -> Box<Alert> {
        self.counts.detectors.entry(f.detector).or_default().alerts += 1;
        let id = format!("{}-{}", self.id_prefix, self.next_id);
        self.next_id += 1;
        // The window runs from the kernel window's start, so a flood that
        // keeps going gets one alert per window.
        let start = origin.window_start_ms.min(origin.time_ms);
        for key in std::iter::once(&f.dedup_key).chain(also) {
            if !self.windows.contains_key(key) && self.windows.len() >= self.cap {
                self.evict_one();
            }
            self.windows.insert(
                key.clone(),
                Window {
                    alert_id: id.clone(),
                    detector: f.detector,
                    until_ms: start + f.window_ms,
                    repeats: 0,
                },
            );
        }
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(origin.time_ms);
        Box::new(Alert {
            id,
            time: humantime::format_rfc3339_millis(time).to_string(),
            detector: f.detector,
            severity: f.severity,
            source: f.source,
            target: f.target,
            interface: origin.interface.clone(),
            summary: f.summary,
            evidence: f.evidence,
            action: AlertAction::None {
                reason: "pending".into(),
            },
        })
    }

    fn evict_one(&mut self) {
        if let Some(key) = self
            .windows
            .iter()
            .min_by_key(|(_, w)| w.until_ms)
            .map(|(k, _)| k.clone())
        {
            self.windows.remove(&key);
            self.counts.evicted += 1;
        }
    }

    /// Drops the windows that ended before `now_ms`; returns how many, with
    /// the alerts that had repeats and how many.
    pub fn cleanup(&mut self, now_ms: u64) -> Vec<(String, DetectorKind, u64)> {
        let mut closed = Vec::new();
        self.windows.retain(|_, w| {
            if w.until_ms <= now_ms {
                closed.push((w.alert_id.clone(), w.detector, w.repeats));
                false
            } else {
                true
            }
        });
        closed
    }

    /// Alert windows open now.
    pub fn tracked(&self) -> usize {
        self.windows.len()
    }

    /// Counts so far.
    pub fn counts(&self) -> DetectionCounts {
        let mut c = self.counts.clone();
        c.tracked = self.windows.len();
        c
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use ironpost_core::{IronpostConfig, Protocol};

    use super::*;

    fn cfg(extra: &str) -> DetectionConfig {
        IronpostConfig::parse(extra, "t.toml").unwrap().detection
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A signal of `kind` from `src`, crossing at `t` ms in a window that
    /// started at `start` ms.
    fn sig(kind: SignalKind, src: &str, start: u64, t: u64) -> Signal {
        Signal {
            kind,
            time_ms: t,
            window_start_ms: start,
            src: ip(src),
            dst: ip("10.0.0.1"),
            protocol: Protocol::Tcp,
            dst_port: 80,
            interface: "eth0".into(),
            syn: 0,
            ack: 0,
            udp: 0,
            icmp: 0,
            rst: 0,
            ports: 0,
            hosts: 0,
            sources: 0,
            sample_ports: vec![],
            sample_sources: vec![],
            bytes: 0,
        }
    }

    fn syn(src: &str, syn: u32, ack: u32, start: u64, t: u64) -> Signal {
        Signal {
            syn,
            ack,
            ..sig(SignalKind::SynSource, src, start, t)
        }
    }

    fn alert(o: Outcome) -> Alert {
        match o {
            Outcome::Alert(a) => *a,
            other => panic!("expected an alert, got {other:?}"),
        }
    }

    /// A port scan's alert: held for the decoy check, released after it.
    fn scan_alert(d: &mut PacketDetector, s: &Signal) -> Alert {
        assert_eq!(d.observe(s), Outcome::Held);
        assert!(d.release(s.time_ms + 99).is_empty(), "released early");
        let mut out = d.release(s.time_ms + 100);
        assert_eq!(out.len(), 1, "{out:?}");
        *out.pop().unwrap()
    }

    #[test]
    fn syn_flood_needs_count_and_ratio() {
        let mut d = PacketDetector::new(&cfg(""), "t");
        // Below the count.
        assert_eq!(
            d.observe(&syn("10.9.0.1", 4_999, 0, 0, 1_000)),
            Outcome::Ignored
        );
        // Enough SYNs, but most connections completed: an HTTP load loop.
        assert_eq!(
            d.observe(&syn("10.9.0.2", 5_000, 15_000, 0, 1_000)),
            Outcome::Ignored
        );
        // Exactly at the founding ratio 0.7.
        let a = alert(d.observe(&syn("10.9.0.3", 7_000, 3_000, 0, 9_000)));
        assert_eq!(a.detector, DetectorKind::SynFlood);
        assert_eq!(a.source, Some(ip("10.9.0.3")));
        assert_eq!(a.evidence.syn_only_ratio, Some(0.7));
        assert_eq!(a.evidence.window_secs, 10);
        assert_eq!(a.severity, Severity::Medium);
        // A flood crossing in 100 ms: 100x the threshold rate.
        let a = alert(d.observe(&syn("10.9.0.4", 5_000, 0, 0, 100)));
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(d.counts().ignored, 2);
    }

    #[test]
    fn syn_flood_onto_a_target_has_no_single_source() {
        let mut d = PacketDetector::new(&cfg(""), "t");
        let mut s = sig(SignalKind::SynTarget, "203.0.113.7", 0, 500);
        s.syn = 10_000;
        s.sources = 250;
        s.sample_sources = vec![ip("203.0.113.7"), ip("198.51.100.3")];
        let a = alert(d.observe(&s));
        assert_eq!(a.source, None);
        assert_eq!(a.target, "10.0.0.1:80");
        assert!(a.evidence.distinct_sources.unwrap() > 250);
        assert_eq!(a.evidence.sampled_sources.len(), 2);
        // Another crossing packet source, same target, same window: a repeat.
        let mut s2 = s.clone();
        s2.src = ip("192.0.2.55");
        s2.time_ms = 900;
        assert!(matches!(d.observe(&s2), Outcome::Repeat { repeats: 1, .. }));
    }

    #[test]
    fn port_scan_and_sweep_are_one_detector_per_source() {
        let mut d = PacketDetector::new(&cfg(""), "t");
        let mut s = sig(SignalKind::PortScan, "10.9.0.5", 0, 2_000);
        s.ports = 20;
        s.sample_ports = vec![21, 22, 80, 443];
        let a = scan_alert(&mut d, &s);
        assert_eq!(a.detector, DetectorKind::PortScan);
        assert!(a.evidence.distinct_ports.unwrap() >= 20);
        assert_eq!(a.evidence.sampled_ports, vec![21, 22, 80, 443]);
        // The same source sweeping hosts within the same 60 s window.
        let mut w = sig(SignalKind::HostSweep, "10.9.0.5", 0, 3_000);
        w.hosts = 20;
        assert!(matches!(d.observe(&w), Outcome::Repeat { .. }));
        // Another source sweeping: an alert of its own.
        let mut w2 = sig(SignalKind::HostSweep, "10.9.0.6", 0, 3_000);
        w2.hosts = 25;
        assert!(alert(d.observe(&w2)).summary.contains("sweep"));
        // Below the threshold (a stale kernel config): ignored.
        let mut low = sig(SignalKind::PortScan, "10.9.0.7", 0, 3_000);
        low.ports = 19;
        assert_eq!(d.observe(&low), Outcome::Ignored);
    }

    #[test]
    fn refusals_are_a_port_scan_and_can_be_off() {
        let mut d = PacketDetector::new(&cfg(""), "t");
        let mut r = sig(SignalKind::RefusedScan, "10.9.0.9", 0, 2_000);
        r.ports = 20;
        r.ack = 1;
        let a = scan_alert(&mut d, &r);
        assert_eq!(a.detector, DetectorKind::PortScan);
        assert!(a.summary.contains("refused") && a.summary.contains("1 connections accepted"));
        // The probes of the same source, counted on ingress too: one alert.
        let mut p = sig(SignalKind::PortScan, "10.9.0.9", 0, 2_500);
        p.ports = 20;
        assert!(matches!(d.observe(&p), Outcome::Repeat { .. }));
        let mut low = sig(SignalKind::RefusedScan, "10.9.0.10", 0, 3_000);
        low.ports = 19;
        assert_eq!(d.observe(&low), Outcome::Ignored);
        let mut off = PacketDetector::new(&cfg("[detection.port_scan]\nrefused_ports = 0\n"), "t");
        assert_eq!(off.observe(&r), Outcome::Ignored);
    }

    #[test]
    fn sources_scanning_the_same_ports_at_once_are_one_decoy_scan() {
        let mut d = PacketDetector::new(&cfg(""), "t");
        let scan = |src: &str, t: u64, ports: Vec<u16>| {
            let mut s = sig(SignalKind::PortScan, src, 0, t);
            s.ports = 20;
            s.sample_ports = ports;
            s
        };
        let same = vec![22, 80, 443, 3306, 5432, 8080, 8443, 9000];
        // nmap -D: the real source and three decoys, each probe from all.
        for (i, src) in ["10.9.0.1", "10.9.0.2", "10.9.0.3", "10.9.0.4"]
            .iter()
            .enumerate()
        {
            assert_eq!(
                d.observe(&scan(src, 1_000 + i as u64, same.clone())),
                Outcome::Held
            );
        }
        // An unrelated scanner of another host, and one of the same host
        // with other ports: port scans of their own.
        let mut other_host = scan("10.9.0.5", 1_100, same.clone());
        other_host.dst = ip("10.0.0.2");
        assert_eq!(d.observe(&other_host), Outcome::Held);
        assert_eq!(
            d.observe(&scan("10.9.0.6", 1_100, vec![1, 2, 3, 4, 5, 6, 7, 8])),
            Outcome::Held
        );
        // A held source's next signal is not another member.
        assert_eq!(
            d.observe(&scan("10.9.0.2", 1_200, same.clone())),
            Outcome::Held
        );
        let out = d.release(1_300);
        assert_eq!(out.len(), 3, "{out:?}");
        let decoy = out
            .iter()
            .find(|a| a.detector == DetectorKind::DecoyScan)
            .unwrap();
        assert_eq!(decoy.source, None);
        assert_eq!(decoy.target, "10.0.0.1");
        assert_eq!(decoy.evidence.count, 4);
        assert_eq!(decoy.evidence.sampled_sources.len(), 4);
        assert!(decoy.summary.contains("10.9.0.3"), "{}", decoy.summary);
        assert_eq!(
            out.iter()
                .filter(|a| a.detector == DetectorKind::PortScan)
                .count(),
            2
        );
        // Later signals of the decoy's sources are repeats of its alert.
        match d.observe(&scan("10.9.0.4", 5_000, same.clone())) {
            Outcome::Repeat { alert_id, .. } => assert_eq!(alert_id, decoy.id),
            o => panic!("{o:?}"),
        }
        // With the hold off, a port scan alerts at once.
        let mut now = PacketDetector::new(&cfg("[detection.port_scan]\ndecoy_hold_ms = 0\n"), "t");
        assert!(matches!(
            now.observe(&scan("10.9.0.1", 1_000, same)),
            Outcome::Alert(_)
        ));
    }

    #[test]
    fn decoy_alerts_block_nobody() {
        let cfg = IronpostConfig::parse("", "t.toml").unwrap();
        let mut r = crate::Responder::new(cfg.response, 1000);
        let a = Alert {
            id: "t-1".into(),
            time: String::new(),
            detector: DetectorKind::DecoyScan,
            severity: Severity::High,
            source: None,
            target: "10.0.0.1".into(),
            interface: "eth0".into(),
            summary: String::new(),
            evidence: Evidence::default(),
            action: AlertAction::None {
                reason: "pending".into(),
            },
        };
        match r.decide(&a, &crate::Shield::default(), 0) {
            crate::response::Decision::Skip(why) => assert!(why.contains("decoy"), "{why}"),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn many_sources_a_few_ports_each_are_a_distributed_scan() {
        let mut d = PacketDetector::new(&cfg(""), "t");
        let mut s = sig(SignalKind::DistributedScan, "10.9.0.77", 0, 3_000);
        s.ports = 30;
        s.sources = 10;
        s.sample_sources = vec![ip("10.9.0.70"), ip("10.9.0.77")];
        let a = alert(d.observe(&s));
        assert_eq!(a.detector, DetectorKind::DistributedScan);
        assert_eq!(a.source, None);
        assert_eq!(a.target, "10.0.0.1");
        assert_eq!(a.evidence.sampled_sources.len(), 2);
        assert!(a.evidence.distinct_sources.unwrap() >= 10);
        // Too few sources (a stale kernel setting): not one.
        let mut few = s.clone();
        few.dst = ip("10.0.0.2");
        few.sources = 4;
        assert_eq!(d.observe(&few), Outcome::Ignored);
        let mut off =
            PacketDetector::new(&cfg("[detection.port_scan]\ndistributed_ports = 0\n"), "t");
        assert_eq!(off.observe(&s), Outcome::Ignored);
    }

    #[test]
    fn sweep_check_can_be_off() {
        let mut d = PacketDetector::new(&cfg("[detection.port_scan]\ndistinct_hosts = 0\n"), "t");
        let mut w = sig(SignalKind::HostSweep, "10.9.0.6", 0, 3_000);
        w.hosts = 100;
        assert_eq!(d.observe(&w), Outcome::Ignored);
    }

    #[test]
    fn udp_and_icmp_floods() {
        let mut d = PacketDetector::new(
            &cfg(
                "[detection.udp_flood]\nthreshold = 100\n[detection.icmp_flood]\nthreshold = 1000\n",
            ),
            "t",
        );
        let mut u = sig(SignalKind::UdpFlood, "10.9.0.8", 1_000, 1_500);
        u.udp = 100;
        let a = alert(d.observe(&u));
        assert_eq!(a.detector, DetectorKind::UdpFlood);
        assert_eq!(a.evidence.count, 100);
        assert!((a.evidence.rate_per_sec - 200.0).abs() < 0.01);
        let mut i = sig(SignalKind::IcmpFlood, "10.9.0.8", 1_000, 1_200);
        i.icmp = 1_000;
        assert_eq!(alert(d.observe(&i)).detector, DetectorKind::IcmpFlood);
        let mut low = i.clone();
        low.src = ip("10.9.0.9");
        low.icmp = 999;
        assert_eq!(d.observe(&low), Outcome::Ignored);
    }

    #[test]
    fn udp_floods_are_also_counted_in_bytes() {
        let mut d = PacketDetector::new(
            &cfg(
                "[detection.udp_flood]\nthreshold = 1000\nbytes_threshold = 1000000\n\
                  target_bytes_threshold = 5000000\n",
            ),
            "t",
        );
        let mut u = sig(SignalKind::UdpFlood, "10.9.0.8", 1_000, 2_000);
        (u.udp, u.bytes) = (700, 999_999);
        assert_eq!(d.observe(&u), Outcome::Ignored, "below both");
        u.bytes = 1_000_000;
        let a = alert(d.observe(&u));
        assert_eq!(a.detector, DetectorKind::UdpFlood);
        assert_eq!(
            (a.evidence.count, a.evidence.threshold),
            (1_000_000, 1_000_000)
        );
        assert_eq!(a.evidence.bytes, Some(1_000_000));
        assert!(
            a.summary.contains("700 packets (1000000 bytes)"),
            "{}",
            a.summary
        );
        // Packets first: the packet count is the evidence.
        let mut p = sig(SignalKind::UdpFlood, "10.9.0.9", 1_000, 2_000);
        (p.udp, p.bytes) = (1_000, 64_000);
        let a = alert(d.observe(&p));
        assert_eq!((a.evidence.count, a.evidence.threshold), (1_000, 1_000));
        let mut t = sig(SignalKind::UdpTarget, "100.64.0.1", 0, 500);
        (t.udp, t.bytes) = (4_000, 5_000_000);
        assert_eq!(alert(d.observe(&t)).evidence.bytes, Some(5_000_000));
        // ACK floods have no bytes.
        let mut k = sig(SignalKind::AckFlood, "10.9.0.10", 0, 500);
        (k.ack, k.bytes) = (10, u64::MAX);
        assert_eq!(d.observe(&k), Outcome::Ignored);
    }

    #[test]
    fn spoofed_udp_and_icmp_floods_are_alerts_on_their_target() {
        let mut d = PacketDetector::new(&cfg(""), "t");
        let mut u = sig(SignalKind::UdpTarget, "100.64.3.4", 0, 700);
        u.udp = 100_000;
        u.sources = 250;
        u.sample_sources = vec![ip("100.64.3.4"), ip("100.70.9.1")];
        let a = alert(d.observe(&u));
        assert_eq!(a.detector, DetectorKind::UdpFlood);
        assert_eq!(a.source, None, "a spoofed flood has no source to block");
        assert_eq!(a.target, "10.0.0.1");
        assert!(a.evidence.distinct_sources.unwrap() > 250);
        // More crossings onto the same address in the window: one alert.
        let mut again = u.clone();
        again.src = ip("100.99.0.1");
        assert!(matches!(d.observe(&again), Outcome::Repeat { .. }));
        let mut i = sig(SignalKind::IcmpTarget, "100.64.3.4", 0, 700);
        i.icmp = 9_999;
        assert_eq!(d.observe(&i), Outcome::Ignored, "below the default");
        i.icmp = 10_000;
        assert_eq!(alert(d.observe(&i)).detector, DetectorKind::IcmpFlood);
        let mut off =
            PacketDetector::new(&cfg("[detection.udp_flood]\ntarget_threshold = 0\n"), "t");
        assert_eq!(off.observe(&u), Outcome::Ignored);
    }

    #[test]
    fn host_groups_set_the_target_thresholds_of_their_destinations() {
        let mut d = PacketDetector::new(
            &cfg("[detection.udp_flood]\ntarget_threshold = 200\n\
                  [[detection.host_groups]]\nname = \"dns\"\nprefixes = [\"10.0.0.0/24\"]\n\
                  udp_target_threshold = 50\n\
                  [[detection.host_groups]]\nname = \"bulk\"\nprefixes = [\"10.0.0.1\"]\n\
                  udp_target_threshold = 400\nsyn_target_threshold = 20000\n"),
            "t",
        );
        // 10.0.0.1 is in both: the longer prefix, "bulk", decides.
        let mut u = sig(SignalKind::UdpTarget, "100.64.3.4", 0, 700);
        for (count, alerts) in [(50, false), (100, false), (200, false), (400, true)] {
            u.udp = count;
            let o = d.observe(&u);
            assert_eq!(matches!(o, Outcome::Alert(_)), alerts, "{count}: {o:?}");
        }
        // 10.0.0.2 is only in "dns": 50 alerts.
        let mut v = u.clone();
        v.dst = ip("10.0.0.2");
        v.udp = 50;
        let a = alert(d.observe(&v));
        assert_eq!((a.evidence.count, a.evidence.threshold), (50, 50));
        assert!(
            a.summary.contains("onto 10.0.0.2 (host group dns)"),
            "{}",
            a.summary
        );
        // Elsewhere the detector's 200.
        let mut w = u.clone();
        w.dst = ip("192.0.2.1");
        w.udp = 100;
        assert_eq!(d.observe(&w), Outcome::Ignored);
        w.udp = 200;
        assert!(matches!(d.observe(&w), Outcome::Alert(_)));
        // SYNs onto 10.0.0.1:443: the group's 20000, not the default 10000.
        let mut s = sig(SignalKind::SynTarget, "100.64.3.4", 0, 0);
        (s.syn, s.dst_port) = (10_000, 443);
        assert_eq!(d.observe(&s), Outcome::Ignored);
        s.syn = 20_000;
        assert!(matches!(d.observe(&s), Outcome::Alert(_)));
        // A group with ports sets the SYN threshold of those ports only.
        let mut p = PacketDetector::new(
            &cfg(
                "[[detection.host_groups]]\nname = \"web\"\nprefixes = [\"10.0.0.0/24\"]\n\
                  ports = [80, \"443-444\"]\nsyn_target_threshold = 40000\n",
            ),
            "t",
        );
        s.syn = 10_000;
        assert_eq!(p.observe(&s), Outcome::Ignored, "443: the group's 40000");
        s.dst_port = 22;
        let a = alert(p.observe(&s));
        assert_eq!(a.evidence.threshold, 10_000, "22: the detector's");
    }

    #[test]
    fn spoofed_ack_and_rst_floods_are_alerts_on_their_target() {
        let mut d = PacketDetector::new(&cfg(""), "t");
        let mut k = sig(SignalKind::AckTarget, "100.64.3.4", 0, 900);
        k.ack = 49_999;
        assert_eq!(d.observe(&k), Outcome::Ignored, "below the default");
        k.ack = 50_000;
        k.sources = 250;
        let a = alert(d.observe(&k));
        assert_eq!(a.detector, DetectorKind::AckFlood);
        assert_eq!((a.source, a.target.as_str()), (None, "10.0.0.1"));
        assert!(
            a.summary.contains("ACK flood onto 10.0.0.1"),
            "{}",
            a.summary
        );
        let mut r = sig(SignalKind::RstTarget, "100.64.3.5", 0, 900);
        r.rst = 50_000;
        let a = alert(d.observe(&r));
        assert_eq!((a.detector, a.source), (DetectorKind::RstFlood, None));
        assert_eq!(a.evidence.count, 50_000);
        let mut off =
            PacketDetector::new(&cfg("[detection.rst_flood]\ntarget_threshold = 0\n"), "t");
        assert_eq!(off.observe(&r), Outcome::Ignored);
    }

    #[test]
    fn ack_and_rst_floods() {
        let mut d = PacketDetector::new(&cfg(""), "t");
        let mut a = sig(SignalKind::AckFlood, "10.9.0.20", 0, 50);
        a.ack = 5_000;
        a.dst_port = 8080;
        let alert_a = alert(d.observe(&a));
        assert_eq!(alert_a.detector, DetectorKind::AckFlood);
        assert_eq!(alert_a.evidence.sampled_ports, vec![8080]);
        assert!(alert_a.summary.contains("port 8080"), "{}", alert_a.summary);
        let mut r = sig(SignalKind::RstFlood, "10.9.0.20", 0, 50);
        r.rst = 4_999;
        assert_eq!(d.observe(&r), Outcome::Ignored);
        r.rst = 5_000;
        let alert_r = alert(d.observe(&r));
        assert_eq!(alert_r.detector, DetectorKind::RstFlood);
        assert_eq!(alert_r.severity, Severity::Critical);
        let mut off = PacketDetector::new(&cfg("[detection.rst_flood]\nenabled = false\n"), "t");
        assert_eq!(off.observe(&r), Outcome::Ignored);
    }

    #[test]
    fn one_alert_per_detector_and_source_per_window() {
        let mut d = PacketDetector::new(&cfg(""), "ip");
        let first = alert(d.observe(&syn("10.9.0.1", 5_000, 0, 0, 100)));
        assert_eq!(first.id, "ip-1");
        for n in 1..=3 {
            match d.observe(&syn("10.9.0.1", 5_000, 0, 0, 100 + n * 1000)) {
                Outcome::Repeat { alert_id, repeats } => {
                    assert_eq!((alert_id.as_str(), repeats), ("ip-1", n));
                }
                o => panic!("{o:?}"),
            }
        }
        // The next kernel window (10 s later): a new alert.
        let next = alert(d.observe(&syn("10.9.0.1", 5_000, 0, 10_000, 10_100)));
        assert_eq!(next.id, "ip-2");
        let c = d.counts();
        assert_eq!(
            c.detectors[&DetectorKind::SynFlood],
            DetectorCounts {
                alerts: 2,
                repeats: 3
            }
        );
    }

    #[test]
    fn windows_are_capped_and_cleaned() {
        let mut d = PacketDetector::new(&cfg("[detection]\nmax_tracked_sources = 16\n"), "t");
        for i in 0..40u64 {
            let src = format!("10.9.1.{i}");
            alert(d.observe(&syn(&src, 5_000, 0, i * 100, i * 100 + 50)));
            assert!(d.tracked() <= 16);
        }
        assert_eq!(d.counts().evicted, 24);
        // The oldest went first: 10.9.1.39 is still deduplicated.
        assert!(matches!(
            d.observe(&syn("10.9.1.39", 5_000, 0, 3_900, 4_000)),
            Outcome::Repeat { .. }
        ));
        // Windows end 10 s after their start.
        let closed = d.cleanup(3_900 + 10_000);
        assert_eq!(closed.len(), 16);
        assert!(closed.iter().any(|(_, _, repeats)| *repeats == 1));
        assert_eq!(d.tracked(), 0);
    }

    #[test]
    fn disabled_detectors_ignore_their_signals() {
        let mut d = PacketDetector::new(&cfg("[detection.syn_flood]\nenabled = false\n"), "t");
        assert_eq!(
            d.observe(&syn("10.9.0.1", 50_000, 0, 0, 100)),
            Outcome::Ignored
        );
        d.reconfigure(&cfg(""));
        assert!(matches!(
            d.observe(&syn("10.9.0.1", 50_000, 0, 0, 100)),
            Outcome::Alert(_)
        ));
    }

    #[test]
    fn distinct_estimates() {
        assert_eq!(estimate_distinct(0, 512), 0);
        assert_eq!(estimate_distinct(20, 512), 20);
        assert!((980..1020).contains(&estimate_distinct(439, 512)));
        assert_eq!(estimate_distinct(512, 512), 3194);
        assert_eq!(estimate_distinct(511, 512), 3194);
    }
}
