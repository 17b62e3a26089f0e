//! What the daemon says about itself: `GET /v1/status` (what it runs,
//! where, how full and busy it is) and `GET /v1/stats` (counters and
//! rates, also the `stats` lines `ironpost run` prints).

use std::{collections::BTreeMap, path::PathBuf};

use serde::{Deserialize, Serialize};

/// The daemon's status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The daemon's version.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Interfaces the program is attached to.
    pub interfaces: Vec<InterfaceStatus>,
    /// Configured interfaces that are not filtered now (their device is
    /// gone, or attaching failed).
    pub absent_interfaces: Vec<AbsentInterface>,
    /// What the daemon does to the filter when it stops: `keep` or
    /// `detach`.
    pub on_exit: String,
    /// The kernel id of the XDP program in use.
    pub program_id: Option<u32>,
    /// How full the policy's tables are.
    pub maps: MapFill,
    /// Events the datapath reported, and lost.
    pub events: EventCounts,
    /// Events lost, for any reason.
    pub events_lost: u64,
    /// Output lines dropped because stdout was not read.
    pub output_lines_dropped: u64,
    /// The metrics URL, when metrics are served.
    pub metrics: Option<String>,
    /// Fragmented and malformed frames, by kind.
    pub parse: BTreeMap<String, u64>,
    /// Detection and the automatic response.
    pub detection: DetectionStatus,
    /// The configuration file, if one was given.
    pub config: Option<PathBuf>,
    /// The store.
    pub state_file: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// The CrowdSec decision stream, when `[crowdsec]` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crowdsec: Option<CrowdsecStatus>,
    /// The fleet, when `[fleet]` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetStatus>,
}

/// How the CrowdSec decision stream is followed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrowdsecStatus {
    /// The Local API it follows.
    pub lapi: String,
    /// The last read of the stream succeeded.
    pub connected: bool,
    /// IPs and ranges banned by its decisions now.
    pub decisions: u64,
    /// Reads that failed since the daemon started.
    pub failures: u64,
    /// When the last read succeeded (RFC 3339), if ever.
    pub last_success: Option<String>,
}

/// This host in its fleet (NATS JetStream).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    /// The fleet's name.
    pub name: String,
    /// This host's name in it.
    pub host: String,
    /// Connected to a NATS server now.
    pub connected: bool,
    /// Changes and alerts waiting to be published (kept while the servers
    /// are unreachable).
    pub backlog: u64,
    /// Messages published since the daemon started.
    pub published: u64,
    /// Alerts not published because the backlog was full.
    pub alerts_dropped: u64,
    /// Addresses the other hosts block now, applied in the list `fleet`.
    pub applied: u64,
    /// Messages of the fleet's block stream not read yet.
    pub behind: u64,
    /// The last error, if the fleet is not connected.
    pub error: Option<String>,
}

/// An interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterfaceStatus {
    /// Its name.
    pub interface: String,
    /// Its index.
    pub ifindex: u32,
    /// The XDP mode in use: `native` or `skb`.
    pub mode: String,
    /// The kernel id of the program.
    pub program_id: u32,
    /// Where its link is pinned, if it is.
    pub pinned: Option<PathBuf>,
    /// What the program counted on it since it was attached.
    #[serde(default)]
    pub traffic: Traffic,
}

/// A configured interface that is not filtered now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbsentInterface {
    /// Its name.
    pub interface: String,
    /// Since when it has been unfiltered (RFC 3339).
    pub since: String,
    /// The index of the device the program was last attached to.
    pub last_ifindex: u32,
    /// Why it is not attached.
    pub reason: String,
}

/// How full the policy's tables are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapFill {
    /// Block entries in use.
    pub blocks: usize,
    /// Block list capacity.
    pub blocks_capacity: usize,
    /// Allow entries in use.
    pub allow: usize,
    /// Allow list capacity.
    pub allow_capacity: usize,
    /// Port rules in use.
    pub port_rules: usize,
    /// Port rule capacity.
    pub port_rules_capacity: usize,
    /// Block entries by kernel map name.
    pub by_map: Vec<(String, usize)>,
}

/// What happened to the events the datapath tried to report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// Written to the ring buffer.
    pub delivered: u64,
    /// Not written: the ring buffer was full.
    pub lost_ring_full: u64,
    /// Not written: the per-CPU budget was spent.
    pub lost_budget: u64,
}

/// Detection and the automatic response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectionStatus {
    /// Whether detection runs.
    pub enabled: bool,
    /// What the datapath's tracking did.
    pub kernel: KernelDetection,
    /// What the detectors made of its signals.
    pub detectors: Detectors,
    /// What the response did with the alerts.
    pub response: Response,
    /// Whether blocks are only reported.
    pub dry_run: bool,
    /// Whether alerts block at all.
    pub auto_block: bool,
}

/// The datapath's detection tracking, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelDetection {
    /// Sources that entered the tracking map.
    pub sources_new: u64,
    /// Destination ports that entered the target map.
    pub targets_new: u64,
    /// Threshold signals delivered to user space.
    pub signals: u64,
    /// Signals lost because their ring buffer was full.
    pub signals_lost: u64,
    /// Tracked packets whose source had not yet earned per-source state.
    pub sources_deferred: u64,
    /// New sources or targets refused because the admission rate was spent.
    pub admit_over_budget: u64,
}

/// The detectors' counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detectors {
    /// Signals received.
    pub signals: u64,
    /// Signals no detector turned into a finding.
    pub ignored: u64,
    /// Alerts per detector.
    pub detectors: BTreeMap<String, DetectorAlerts>,
    /// Alert windows dropped early because the cap was reached.
    pub evicted: u64,
    /// Alert windows tracked now.
    pub tracked: usize,
}

/// One detector's alerts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetectorAlerts {
    /// Alerts raised.
    pub alerts: u64,
    /// Findings folded into an earlier alert of the same window.
    pub repeats: u64,
}

/// The automatic response's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Blocks made.
    pub blocked: u64,
    /// Blocks a dry run reported.
    pub dry_run: u64,
    /// Alerts that blocked nothing.
    pub skipped: u64,
    /// Of those, alerts that would have blocked but for the per-minute cap.
    pub capped: u64,
    /// Sources with offences remembered now.
    pub offenders: usize,
}

/// Counters and rates: `GET /v1/stats`, and each `stats` line of
/// `ironpost run`'s output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsLine {
    /// Always `stats`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When (RFC 3339).
    pub time: String,
    /// The first interface filtered.
    pub interface: Option<String>,
    /// Every interface filtered.
    pub interfaces: Vec<String>,
    /// The XDP mode of the first.
    pub xdp_mode: Option<String>,
    /// The kernel id of its program.
    pub program_id: Option<u32>,
    /// Events the datapath reported, and lost.
    pub events: EventCounts,
    /// Events lost, for any reason.
    pub events_lost: u64,
    /// Every interface together.
    #[serde(flatten)]
    pub traffic: Traffic,
    /// Each interface filtered, in the order of `interfaces` (two whose
    /// ifindexes share a counter slot come as one, named `a+b`).
    #[serde(default)]
    pub by_interface: Vec<InterfaceTraffic>,
    /// The datapath's detection tracking.
    pub detection: KernelDetection,
    /// Fragmented and malformed frames, by kind.
    pub parse: BTreeMap<String, u64>,
    /// The last line, printed as the daemon stops.
    #[serde(default, rename = "final", skip_serializing_if = "std::ops::Not::not")]
    pub last: bool,
}

/// Counters and rates of every traffic class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    /// TCP.
    pub tcp: ClassLine,
    /// UDP.
    pub udp: ClassLine,
    /// ICMP and ICMPv6.
    pub icmp: ClassLine,
    /// Everything else.
    pub other: ClassLine,
    /// All traffic.
    pub total: ClassLine,
}

impl Traffic {
    /// `(name, class)` in output order.
    pub fn classes(&self) -> [(&'static str, &ClassLine); 5] {
        [
            ("tcp", &self.tcp),
            ("udp", &self.udp),
            ("icmp", &self.icmp),
            ("other", &self.other),
            ("total", &self.total),
        ]
    }
}

/// One interface's traffic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfaceTraffic {
    /// The interface.
    pub interface: String,
    /// Its counters and rates.
    #[serde(flatten)]
    pub traffic: Traffic,
}

/// Counters and rates of one traffic class.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassLine {
    /// Packets seen since the program was loaded.
    pub packets: u64,
    /// Bytes seen.
    pub bytes: u64,
    /// Packets dropped.
    pub drops: u64,
    /// Packets per second over the last interval.
    pub pps: f64,
    /// Bytes per second over the last interval.
    pub bps: f64,
    /// Drops per second over the last interval.
    pub dps: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_what_clients_read() {
        let mut s = Status {
            version: "1.2.3".into(),
            on_exit: "keep".into(),
            ..Status::default()
        };
        s.maps.blocks = 7;
        s.maps.by_map.push(("BLOCKLIST".into(), 7));
        s.detection.detectors.detectors.insert(
            "syn_flood".into(),
            DetectorAlerts {
                alerts: 2,
                repeats: 1,
            },
        );
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["maps"]["blocks"], 7);
        assert_eq!(v["maps"]["by_map"][0], serde_json::json!(["BLOCKLIST", 7]));
        assert_eq!(
            v["detection"]["detectors"]["detectors"]["syn_flood"]["alerts"],
            2
        );
        assert_eq!(v["program_id"], serde_json::Value::Null);
        let back: Status = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn a_stats_line_keeps_its_flat_classes_and_adds_interfaces() {
        let mut line = StatsLine::default();
        line.traffic.udp.packets = 9;
        line.by_interface.push(InterfaceTraffic {
            interface: "eth0".into(),
            traffic: Traffic {
                udp: ClassLine {
                    packets: 9,
                    ..ClassLine::default()
                },
                ..Traffic::default()
            },
        });
        let v = serde_json::to_value(&line).unwrap();
        assert_eq!(v["udp"]["packets"], 9);
        assert_eq!(v["by_interface"][0]["interface"], "eth0");
        assert_eq!(v["by_interface"][0]["udp"]["packets"], 9);
        let back: StatsLine = serde_json::from_value(v).unwrap();
        assert_eq!(back, line);
    }
}
