//! Alerts (what a detector concluded and what was done about it), and log
//! entries, the common shape alerts and packet events are exported in.

use std::{fmt, net::IpAddr, str::FromStr};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::{PacketAction, PacketEvent};

/// How serious an alert is. Ordered: `Low < Medium < High < Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth a look.
    Low,
    /// An attack at about the configured threshold.
    Medium,
    /// An attack well above the threshold.
    High,
    /// An attack far above the threshold.
    Critical,
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "low" => Ok(Self::Low),
            "medium" => Ok(Self::Medium),
            "high" => Ok(Self::High),
            "critical" => Ok(Self::Critical),
            other => Err(format!(
                "unknown severity \"{other}\": expected low, medium, high or critical"
            )),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        })
    }
}

/// The detectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// SYN flood, from one source or onto one destination port.
    SynFlood,
    /// Port scan (many ports of a host) and horizontal sweep (many hosts).
    PortScan,
    /// UDP flood, from one source or onto one address from many.
    UdpFlood,
    /// ICMP flood, from one source or onto one address from many.
    IcmpFlood,
    /// ACK flood: ACK-bearing TCP segments of one source that the host
    /// refused (it answered RSTs without ACK).
    AckFlood,
    /// RST flood from one source.
    RstFlood,
    /// Several sources scanning the same ports of one host at once (nmap
    /// `-D`): any of them may be spoofed, so none is blocked.
    DecoyScan,
    /// Many sources probing a few ports of one host each (Snort's
    /// many-to-one portscan), counted by the host's refusals: reported on
    /// the host, with a sample of the sources; none is blocked.
    DistributedScan,
}

impl DetectorKind {
    /// Every detector.
    pub const ALL: [Self; 8] = [
        Self::SynFlood,
        Self::PortScan,
        Self::UdpFlood,
        Self::IcmpFlood,
        Self::AckFlood,
        Self::RstFlood,
        Self::DecoyScan,
        Self::DistributedScan,
    ];

    /// The name used in the configuration and in alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SynFlood => "syn_flood",
            Self::PortScan => "port_scan",
            Self::UdpFlood => "udp_flood",
            Self::IcmpFlood => "icmp_flood",
            Self::AckFlood => "ack_flood",
            Self::RstFlood => "rst_flood",
            Self::DecoyScan => "decoy_scan",
            Self::DistributedScan => "distributed_scan",
        }
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the numbers were when the detector fired.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The detector's window.
    pub window_secs: u64,
    /// Time from the start of the window to the crossing.
    pub elapsed_secs: f64,
    /// The count that crossed the threshold (SYNs, packets, distinct
    /// ports or distinct hosts).
    pub count: u64,
    /// The threshold it crossed (per window).
    pub threshold: u64,
    /// `count` per second over `elapsed_secs`.
    pub rate_per_sec: f64,
    /// Bare SYNs in the SYN window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn: Option<u64>,
    /// ACK-bearing TCP packets in the SYN window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack: Option<u64>,
    /// SYNs / (SYNs + ACK-bearing packets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syn_only_ratio: Option<f64>,
    /// Distinct destination ports (estimated from a bit set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_ports: Option<u64>,
    /// Distinct destination hosts (estimated from a bit set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_hosts: Option<u64>,
    /// Distinct sources (estimated from a bit set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_sources: Option<u64>,
    /// A sample of the destination ports probed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sampled_ports: Vec<u16>,
    /// A sample of the sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sampled_sources: Vec<IpAddr>,
    /// Bytes in the window (UDP and ICMP floods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// What the responder did about an alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AlertAction {
    /// The source was blocked until `expires`.
    Blocked {
        /// The blocked prefix (the source address).
        block: String,
        /// How long the block lasts.
        ttl_secs: u64,
        /// When it expires (RFC 3339).
        expires: String,
        /// How many times this source has been blocked (1: first time);
        /// the TTL grows with it.
        offence: u32,
        /// What is dropped: `all`, or the attack's traffic (`tcp-syn`,
        /// `udp`, `icmp`).
        #[serde(default = "all_traffic")]
        traffic: String,
    },
    /// Dry run: the source would have been blocked.
    DryRun {
        /// The prefix that would have been blocked.
        would_block: String,
        /// For how long.
        ttl_secs: u64,
        /// As in `Blocked`.
        offence: u32,
        /// As in `Blocked`.
        #[serde(default = "all_traffic")]
        traffic: String,
    },
    /// Nothing was done; the reason says why.
    None {
        /// Why (auto-block off, below the minimum severity, allow-listed,
        /// a local address, no single source, ...).
        reason: String,
    },
}

fn all_traffic() -> String {
    "all".into()
}

/// An alert: a detector's finding about one source (or one target), and
/// the action taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Unique id; auto-blocks carry it as their id.
    pub id: String,
    /// When the threshold was crossed (RFC 3339, UTC).
    pub time: String,
    /// Which detector fired.
    pub detector: DetectorKind,
    /// How serious it is.
    pub severity: Severity,
    /// The offending source; absent when there is no single one (a SYN
    /// flood onto one port from many, likely spoofed, sources).
    pub source: Option<IpAddr>,
    /// What was attacked: `addr:port`, `addr`, or a description.
    pub target: String,
    /// Interface the traffic arrived on.
    pub interface: String,
    /// One line for humans.
    pub summary: String,
    /// The numbers behind it.
    pub evidence: Evidence,
    /// What was done.
    pub action: AlertAction,
}

/// Level of a log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Informational.
    Info,
    /// Needs attention.
    Warn,
    /// Needs action.
    Error,
}

/// A structured log entry: the one shape alerts and packet events take in
/// log pipelines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// RFC 3339 time.
    pub time: String,
    /// Level.
    pub level: LogLevel,
    /// Component that wrote it (`ironpost.detector`, `ironpost.ebpf`).
    pub source: String,
    /// One line for humans.
    pub message: String,
    /// Everything else, flat where possible.
    pub fields: Map<String, Value>,
}

impl From<Severity> for LogLevel {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Low => Self::Info,
            Severity::Medium => Self::Warn,
            Severity::High | Severity::Critical => Self::Error,
        }
    }
}

impl Alert {
    /// The alert as a log entry: the summary as the message, the rest as
    /// fields (`evidence` and `action` nested).
    pub fn to_log_entry(&self) -> LogEntry {
        let mut fields = Map::new();
        fields.insert("alert_id".into(), json!(self.id));
        fields.insert("detector".into(), json!(self.detector));
        fields.insert("severity".into(), json!(self.severity));
        fields.insert("source_ip".into(), json!(self.source));
        fields.insert("target".into(), json!(self.target));
        fields.insert("interface".into(), json!(self.interface));
        fields.insert(
            "evidence".into(),
            serde_json::to_value(&self.evidence).unwrap_or(Value::Null),
        );
        fields.insert(
            "action".into(),
            serde_json::to_value(&self.action).unwrap_or(Value::Null),
        );
        LogEntry {
            time: self.time.clone(),
            level: self.severity.into(),
            source: "ironpost.detector".into(),
            message: self.summary.clone(),
            fields,
        }
    }
}

/// A packet event as a log entry: drops are warnings, monitored packets
/// informational.
pub fn packet_event_to_log_entry(ev: &PacketEvent) -> LogEntry {
    let (level, verb) = match ev.action {
        PacketAction::Drop => (LogLevel::Warn, "dropped"),
        PacketAction::Monitor => (LogLevel::Info, "monitored"),
    };
    let port = |p: Option<u16>| p.map_or(String::new(), |p| format!(":{p}"));
    let proto = serde_json::to_value(ev.protocol)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{:?}", ev.protocol).to_lowercase());
    let message = format!(
        "{verb} {proto} {}{} -> {}{} on {}",
        ev.src,
        port(ev.src_port),
        ev.dst,
        port(ev.dst_port),
        ev.interface
    );
    let mut fields = match serde_json::to_value(ev) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    fields.remove("time");
    LogEntry {
        time: ev.time.clone(),
        level,
        source: "ironpost.ebpf".into(),
        message,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    fn alert() -> Alert {
        Alert {
            id: "a1".into(),
            time: "2026-11-23T10:00:00Z".into(),
            detector: DetectorKind::PortScan,
            severity: Severity::High,
            source: Some("10.0.0.9".parse().unwrap()),
            target: "10.0.0.1".into(),
            interface: "eth0".into(),
            summary: "port scan from 10.0.0.9".into(),
            evidence: Evidence {
                window_secs: 60,
                count: 20,
                threshold: 20,
                distinct_ports: Some(20),
                sampled_ports: vec![22, 80],
                ..Evidence::default()
            },
            action: AlertAction::None {
                reason: "dry".into(),
            },
        }
    }

    #[test]
    fn severities_order_and_parse() {
        assert!(Severity::Low < Severity::Medium && Severity::High < Severity::Critical);
        assert_eq!("high".parse::<Severity>(), Ok(Severity::High));
        assert!("severe".parse::<Severity>().unwrap_err().contains("severe"));
    }

    #[test]
    fn alert_json_has_the_documented_fields() {
        let v = serde_json::to_value(alert()).unwrap();
        for key in [
            "id", "time", "detector", "severity", "source", "target", "evidence", "action",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {v}");
        }
        assert_eq!(v["detector"], "port_scan");
        assert_eq!(v["action"]["kind"], "none");
        assert_eq!(v["evidence"]["sampled_ports"], json!([22, 80]));
        assert!(v["evidence"].get("syn").is_none());
        let back: Alert = serde_json::from_value(v).unwrap();
        assert_eq!(back, alert());
    }

    #[test]
    fn alert_to_log_entry_keeps_id_and_level() {
        let e = alert().to_log_entry();
        assert_eq!(e.level, LogLevel::Error);
        assert_eq!(e.message, "port scan from 10.0.0.9");
        assert_eq!(e.fields["alert_id"], "a1");
        assert_eq!(e.fields["source_ip"], "10.0.0.9");
        assert_eq!(e.fields["evidence"]["distinct_ports"], 20);
    }

    #[test]
    fn packet_event_to_log_entry_names_the_flow() {
        let ev = PacketEvent {
            time: "2026-11-23T10:00:00.000000001Z".into(),
            interface: "eth0".into(),
            action: PacketAction::Drop,
            src: "10.0.0.9".parse().unwrap(),
            dst: "10.0.0.1".parse().unwrap(),
            protocol: Protocol::Tcp,
            src_port: Some(4000),
            dst_port: Some(22),
            tcp_flags: vec!["SYN"],
            len: 60,
            vlan: None,
        };
        let e = packet_event_to_log_entry(&ev);
        assert_eq!(e.level, LogLevel::Warn);
        assert_eq!(
            e.message,
            "dropped tcp 10.0.0.9:4000 -> 10.0.0.1:22 on eth0"
        );
        assert_eq!(e.fields["dst_port"], 22);
        assert!(!e.fields.contains_key("time"));
        assert_eq!(e.time, ev.time);
    }
}
