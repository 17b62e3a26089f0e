//! Prometheus metrics, in the text exposition format (`prometheus-client`),
//! and the HTTP listener that serves them with `/healthz`.
//!
//! The daemon's main loop owns every counter; a scrape asks it for a
//! [`Readings`] through the same channel as control requests, and the
//! text is encoded from that: one consistent reading per scrape.

use std::{fmt::Write as _, net::SocketAddr, time::Instant};

use axum::{Router, http::StatusCode, response::IntoResponse, routing::get};
use ironpost_detection::{detector::DetectionCounts, response::ResponseCounts};
use ironpost_ebpf_engine::{CLASS_NAMES, ClassMetrics, ClassesMetrics, TrafficStats};
use ironpost_policy::FillLevels;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};
use tokio::sync::{mpsc, oneshot};

/// Everything a scrape reports, read by the main loop at once.
pub struct Readings {
    /// Counters straight from the kernel maps.
    pub traffic: TrafficStats,
    /// The traffic counters of each interface the program is attached to
    /// (two that share a counter slot as one, named `a+b`).
    pub by_interface: Vec<(String, ClassesMetrics)>,
    /// Block and allow list fill levels.
    pub fill: FillLevels,
    /// Block-list entries per origin (`config`, `manual`, `auto`).
    pub blocks_by_origin: Vec<(&'static str, u64)>,
    /// The detection stage's counts.
    pub detection: DetectionCounts,
    /// The response's counts.
    pub response: ResponseCounts,
    /// Stdout lines dropped because the reader was too slow.
    pub output_dropped: u64,
    /// Hits of every configured rule: id, kind (`address`, `port`),
    /// packets, bytes.
    pub rule_hits: Vec<RuleHits>,
    /// Alerts raised, by severity: low, medium, high, critical.
    pub alerts_by_severity: [u64; 4],
    /// Every configured interface and whether the program is attached to
    /// it now.
    pub interfaces: Vec<(String, bool)>,
    /// Times each interface's device went away while attached.
    pub interface_losses: Vec<(String, u64)>,
    /// The CrowdSec decision stream, when followed.
    pub crowdsec: Option<ironpost_api::CrowdsecStatus>,
    /// This host in its fleet, when `[fleet]` is set.
    pub fleet: Option<ironpost_api::FleetStatus>,
}

/// One configured rule's hit counters.
pub struct RuleHits {
    /// The rule's id in the configuration.
    pub id: String,
    /// `address` (a block-list entry) or `port` (a port rule).
    pub kind: &'static str,
    /// Packets it matched.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
}

/// A scrape's request to the main loop: the answer goes back on `reply`.
pub type Scrape = oneshot::Sender<Readings>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    interface: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameLabel {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabel {
    origin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DetectorLabel {
    detector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeverityLabel {
    severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabel {
    interface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabel {
    rule: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

/// What a label set of a family needs.
trait Labels:
    EncodeLabelSet + Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static
{
}
impl<T: EncodeLabelSet + Clone + Eq + std::hash::Hash + std::fmt::Debug + Send + Sync + 'static>
    Labels for T
{
}

/// A counter family with one value per label, set from totals.
fn counters<L: Labels>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    values: impl IntoIterator<Item = (L, u64)>,
) {
    let family = Family::<L, Counter>::default();
    for (label, v) in values {
        family.get_or_create(&label).inc_by(v);
    }
    match unit {
        Some(u) => registry.register_with_unit(name, help, u, family),
        None => registry.register(name, help, family),
    }
}

/// A gauge family with one value per label.
fn gauges<L: Labels>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    values: impl IntoIterator<Item = (L, i64)>,
) {
    let family = Family::<L, Gauge>::default();
    for (label, v) in values {
        family.get_or_create(&label).set(v);
    }
    registry.register(name, help, family);
}

fn counter(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let c = Counter::<u64>::default();
    c.inc_by(v);
    registry.register(name, help, c);
}

/// Every `(interface, class)` label set with its counters.
fn by_class(r: &Readings) -> Vec<(ClassLabel, ClassMetrics)> {
    r.by_interface
        .iter()
        .flat_map(|(interface, m)| {
            CLASS_NAMES.iter().zip(m.iter()).map(|(c, m)| {
                (
                    ClassLabel {
                        interface: interface.clone(),
                        class: (*c).into(),
                    },
                    *m,
                )
            })
        })
        .collect()
}

/// The text exposition of `r`, plus this process's own metrics.
pub fn encode_readings(r: &Readings) -> String {
    let mut reg = Registry::with_prefix("ironpost");
    let classes = by_class(r);
    counters(
        &mut reg,
        "packets",
        "Packets the XDP program saw, by interface and protocol class (total: all of the \
         interface's)",
        None,
        classes.iter().map(|(l, m)| (l.clone(), m.packets)),
    );
    counters(
        &mut reg,
        "received",
        "Bytes the XDP program saw, by interface and protocol class",
        Some(Unit::Bytes),
        classes.iter().map(|(l, m)| (l.clone(), m.bytes)),
    );
    counters(
        &mut reg,
        "drops",
        "Packets the XDP program dropped, by interface and protocol class",
        None,
        classes.iter().map(|(l, m)| (l.clone(), m.drops)),
    );
    let ev = r.traffic.events();
    counters(
        &mut reg,
        "events_lost",
        "Packet events the datapath could not deliver, by reason",
        None,
        [
            (
                ReasonLabel {
                    reason: "ring_full".into(),
                },
                ev.lost_ring_full,
            ),
            (
                ReasonLabel {
                    reason: "budget".into(),
                },
                ev.lost_budget,
            ),
        ],
    );
    counter(
        &mut reg,
        "events_delivered",
        "Packet events delivered to the daemon",
        ev.delivered,
    );
    let d = r.traffic.detect();
    counter(
        &mut reg,
        "signals",
        "Detection signals the kernel delivered",
        d.signals,
    );
    counter(
        &mut reg,
        "signals_lost",
        "Detection signals lost because their ring buffer was full",
        d.signals_lost,
    );
    counter(
        &mut reg,
        "sources_tracked",
        "Sources that entered per-source tracking",
        d.sources_new,
    );
    counters(
        &mut reg,
        "parse",
        "Fragments and malformed frames, by kind",
        None,
        r.traffic
            .parse()
            .named()
            .map(|(n, v)| (NameLabel { name: n.into() }, v)),
    );
    counters(
        &mut reg,
        "alerts",
        "Alerts raised, by detector",
        None,
        r.detection.detectors.iter().map(|(k, c)| {
            (
                DetectorLabel {
                    detector: k.to_string(),
                },
                c.alerts,
            )
        }),
    );
    counters(
        &mut reg,
        "alerts_by_severity",
        "Alerts raised, by severity",
        None,
        ["low", "medium", "high", "critical"]
            .into_iter()
            .zip(r.alerts_by_severity)
            .map(|(s, n)| (SeverityLabel { severity: s.into() }, n)),
    );
    counter(
        &mut reg,
        "auto_blocks",
        "Automatic blocks made",
        r.response.blocked,
    );
    counter(
        &mut reg,
        "auto_blocks_capped",
        "Alerts that would have blocked but for the per-minute cap",
        r.response.capped,
    );
    gauges(
        &mut reg,
        "block_entries",
        "Block-list entries, by origin",
        r.blocks_by_origin.iter().map(|(o, n)| {
            (
                OriginLabel {
                    origin: (*o).into(),
                },
                *n as i64,
            )
        }),
    );
    gauges(
        &mut reg,
        "map_entries",
        "Entries in use per policy map",
        [
            ("blocks", r.fill.blocks),
            ("allow", r.fill.allow),
            ("port_rules", r.fill.port_rules),
        ]
        .into_iter()
        .chain(r.fill.by_map.iter().copied())
        .map(|(n, v)| (NameLabel { name: n.into() }, v as i64)),
    );
    gauges(
        &mut reg,
        "map_capacity",
        "Capacity per policy list",
        [
            ("blocks", r.fill.blocks_capacity),
            ("allow", r.fill.allow_capacity),
            ("port_rules", r.fill.port_rules_capacity),
        ]
        .map(|(n, v)| (NameLabel { name: n.into() }, v as i64)),
    );
    let rule = |h: &RuleHits| RuleLabel {
        rule: h.id.clone(),
        kind: h.kind.into(),
    };
    counters(
        &mut reg,
        "rule_hits",
        "Packets each configured rule matched, by rule id",
        None,
        r.rule_hits.iter().map(|h| (rule(h), h.packets)),
    );
    counters(
        &mut reg,
        "rule_matched",
        "Bytes of the packets each configured rule matched, by rule id",
        Some(Unit::Bytes),
        r.rule_hits.iter().map(|h| (rule(h), h.bytes)),
    );
    let interface = |n: &String| InterfaceLabel {
        interface: n.clone(),
    };
    gauges(
        &mut reg,
        "interface_attached",
        "Whether the XDP program is attached to a configured interface (0: its device is \
         gone, the interface is not filtered)",
        r.interfaces
            .iter()
            .map(|(n, up)| (interface(n), i64::from(*up))),
    );
    counters(
        &mut reg,
        "interface_losses",
        "Times the device of a configured interface went away while the program was \
         attached to it",
        None,
        r.interfaces.iter().map(|(n, _)| {
            let lost = r
                .interface_losses
                .iter()
                .find(|(m, _)| m == n)
                .map_or(0, |(_, c)| *c);
            (interface(n), lost)
        }),
    );
    if let Some(c) = &r.crowdsec {
        let g = Gauge::<i64>::default();
        g.set(i64::from(c.connected));
        reg.register(
            "crowdsec_connected",
            "1 when the last read of the CrowdSec decision stream succeeded",
            g,
        );
        let g = Gauge::<i64>::default();
        g.set(c.decisions as i64);
        reg.register(
            "crowdsec_decisions",
            "IPs and ranges banned by CrowdSec decisions now (list crowdsec)",
            g,
        );
        counter(
            &mut reg,
            "crowdsec_stream_failures",
            "Reads of the CrowdSec decision stream that failed",
            c.failures,
        );
    }
    if let Some(f) = &r.fleet {
        let g = Gauge::<i64>::default();
        g.set(i64::from(f.connected));
        reg.register(
            "fleet_connected",
            "1 when this host is connected to a NATS server of its fleet",
            g,
        );
        let g = Gauge::<i64>::default();
        g.set(f.backlog as i64);
        reg.register(
            "fleet_backlog",
            "Changes and alerts waiting to be published to the fleet",
            g,
        );
        let g = Gauge::<i64>::default();
        g.set(f.behind as i64);
        reg.register(
            "fleet_behind",
            "Messages of the fleet's block stream this host has not read yet",
            g,
        );
        let g = Gauge::<i64>::default();
        g.set(f.applied as i64);
        reg.register(
            "fleet_blocks",
            "Addresses blocked by other hosts of the fleet (list fleet)",
            g,
        );
        counter(
            &mut reg,
            "fleet_published",
            "Messages this host published to its fleet",
            f.published,
        );
        counter(
            &mut reg,
            "fleet_alerts_dropped",
            "Alerts not published because the fleet backlog was full",
            f.alerts_dropped,
        );
    }
    counter(
        &mut reg,
        "output_lines_dropped",
        "Stdout lines dropped because the reader was too slow",
        r.output_dropped,
    );
    gauges(
        &mut reg,
        "build_info",
        "The running version (value 1)",
        [(
            VersionLabel {
                version: env!("CARGO_PKG_VERSION").into(),
            },
            1,
        )],
    );
    let mut text = String::new();
    if let Err(e) = encode(&mut text, &reg) {
        tracing::error!("encoding the metrics: {e}");
    }
    let mut out = prometheus_text(&text);
    process_metrics(&mut out);
    out
}

/// The Prometheus text format (version 0.0.4) of prometheus-client's
/// OpenMetrics output, which is what `promtool check metrics` and every
/// Prometheus scrape read: a counter family is named with its `_total`
/// suffix, and there are no `# UNIT` and `# EOF` lines.
fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 256);
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((p, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                let _ = writeln!(out, "{p}{name}{suffix} {tail}");
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The standard `process_*` metrics, from /proc/self.
fn process_metrics(out: &mut String) {
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    if let (Some(u), Some(s)) = (field(14), field(15))
        && ticks > 0
    {
        let secs = (u + s) as f64 / ticks as f64;
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total User and system CPU time in seconds.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total {secs}"
        );
    }
    if let Some(rss) = field(24)
        && page > 0
    {
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory in bytes.\n\
             # TYPE process_resident_memory_bytes gauge\n\
             process_resident_memory_bytes {}",
            rss * page as u64
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            out,
            "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\n\
             process_open_fds {}",
            fds.count()
        );
    }
}

/// Serves `/metrics` and `/healthz` on `listener` until the daemon stops.
pub async fn serve(listener: tokio::net::TcpListener, scrapes: mpsc::Sender<Scrape>) {
    let started = Instant::now();
    let metrics = {
        let scrapes = scrapes.clone();
        move || async move {
            let (tx, rx) = oneshot::channel();
            if scrapes.send(tx).await.is_err() {
                return (StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping\n")
                    .into_response();
            }
            match rx.await {
                Ok(r) => (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    encode_readings(&r),
                )
                    .into_response(),
                Err(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping\n").into_response()
                }
            }
        }
    };
    let healthz = move || async move {
        // Healthy when the main loop answers (a scrape round trip) and
        // every configured interface is filtered.
        let (tx, rx) = oneshot::channel();
        let readings = match scrapes.send(tx).await {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        match readings {
            None => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".to_owned()),
            Some(r) => {
                let absent: Vec<&str> = r
                    .interfaces
                    .iter()
                    .filter(|(_, up)| !up)
                    .map(|(n, _)| n.as_str())
                    .collect();
                if absent.is_empty() {
                    (
                        StatusCode::OK,
                        format!("ok, up {} s\n", started.elapsed().as_secs()),
                    )
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not filtering {}: interface absent\n", absent.join(", ")),
                    )
                }
            }
        }
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("metrics listener: {e}");
    }
}

/// Binds the metrics listener; a failure is logged and leaves metrics off
/// (the filter matters more than its metrics).
pub async fn bind(addr: SocketAddr) -> Option<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(
                "metrics: cannot listen on {addr}: {e}; /metrics and /healthz are off (set \
                 daemon.metrics_listen to another address, or \"off\")"
            );
            None
        }
    }
}
