//! The daemon as a CrowdSec remediation component: it follows the Local
//! API's decision stream (`GET /v1/decisions/stream`, all decisions at
//! start-up, then what changed) and keeps the list `crowdsec` equal to the
//! `ban` decisions on IPs and ranges, each with its duration.
//!
//! The list is changed through the daemon's change queue like any client's
//! request, so it is saved, survives restarts and waits for a large
//! change. While the Local API is unreachable the list stays as it is
//! (entries still expire with their durations); once it answers again the
//! whole stream is read anew and the list synced to it.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::{Request, StatusCode, body::Bytes};
use hyper_util::rt::TokioIo;
use ironpost_api::{ApiError, BlockAdd, BlockSync, Changed};
use ironpost_core::{Prefix, config::CrowdsecConfig};
use ironpost_ebpf_engine::engine::now_ms;
use ironpost_policy::ListName;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::api::Job;

/// The list CrowdSec's decisions go into.
pub(crate) const LIST: &str = "crowdsec";
/// A decision stream larger than this is refused (about 1.5M decisions).
const MAX_STREAM_BYTES: usize = 256 << 20;
/// How long one request to the Local API may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest wait between attempts while the Local API is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Blocks last their decision's remaining time rounded up to this: fewer
/// distinct expiries to apply; the stream removes them on time anyway.
const TTL_STEP_SECS: u64 = 60;

/// What the follower reports (status, metrics).
#[derive(Default)]
pub(crate) struct FeedState {
    /// The last read of the stream succeeded.
    pub connected: AtomicBool,
    /// Ban decisions applied now (distinct IPs and ranges).
    pub decisions: AtomicU64,
    /// Reads of the stream that failed.
    pub failures: AtomicU64,
    /// When the last read succeeded (ms since the epoch; 0: never).
    pub last_success_ms: AtomicU64,
}

/// One decision as the stream carries it.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Decision {
    id: i64,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    scope: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    scenario: String,
}

/// One answer of the stream.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Stream {
    #[serde(default)]
    new: Option<Vec<Decision>>,
    #[serde(default)]
    deleted: Option<Vec<Decision>>,
}

/// What the list must do after one answer.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Update {
    /// Start-up: the list holds exactly these (synced before the adds).
    pub full: Option<Vec<Prefix>>,
    /// Entries to add or refresh, by (TTL in seconds, reason).
    pub adds: BTreeMap<(u64, String), Vec<Prefix>>,
    /// Entries to remove.
    pub removes: Vec<Prefix>,
    /// Decisions not applied: another type than ban, another scope than
    /// Ip or Range, a value that does not parse, or a whole address family.
    pub ignored: usize,
}

/// The ban decisions in force, by IP or range: one address can have
/// several decisions, and leaves the list only when the last one goes.
#[derive(Default)]
pub(crate) struct Decisions {
    by_prefix: HashMap<Prefix, HashMap<i64, (u64, String)>>,
}

impl Decisions {
    /// Distinct IPs and ranges banned.
    pub(crate) fn len(&self) -> usize {
        self.by_prefix.len()
    }

    /// A start-up answer: every decision in force.
    pub(crate) fn startup(&mut self, s: Stream, now_ms: u64) -> Update {
        self.by_prefix.clear();
        let mut u = Update::default();
        let mut touched = Vec::new();
        for d in s.new.unwrap_or_default() {
            match self.insert(&d, now_ms) {
                Some(p) => touched.push(p),
                None => u.ignored += 1,
            }
        }
        let mut all: Vec<Prefix> = self.by_prefix.keys().copied().collect();
        all.sort_unstable();
        touched.sort_unstable();
        touched.dedup();
        self.group(&mut u, touched, now_ms);
        u.full = Some(all);
        u
    }

    /// A later answer: what was deleted (or expired) and what is new.
    pub(crate) fn delta(&mut self, s: Stream, now_ms: u64) -> Update {
        let mut u = Update::default();
        for d in s.deleted.unwrap_or_default() {
            let Some(p) = ban_prefix(&d) else { continue };
            if let Some(ids) = self.by_prefix.get_mut(&p) {
                ids.remove(&d.id);
                if ids.is_empty() {
                    self.by_prefix.remove(&p);
                    u.removes.push(p);
                }
            }
        }
        let mut touched = Vec::new();
        for d in s.new.unwrap_or_default() {
            match self.insert(&d, now_ms) {
                Some(p) => touched.push(p),
                None => u.ignored += 1,
            }
        }
        touched.sort_unstable();
        touched.dedup();
        u.removes.retain(|p| !touched.contains(p));
        self.group(&mut u, touched, now_ms);
        u
    }

    fn insert(&mut self, d: &Decision, now_ms: u64) -> Option<Prefix> {
        let p = ban_prefix(d)?;
        let left = go_duration(&d.duration).filter(|t| !t.is_zero())?;
        let expires = now_ms.saturating_add(left.as_millis() as u64);
        let reason = if d.scenario.is_empty() {
            "crowdsec".to_owned()
        } else {
            format!("crowdsec: {}", d.scenario)
        };
        self.by_prefix
            .entry(p)
            .or_default()
            .insert(d.id, (expires, reason));
        Some(p)
    }

    /// Adds `prefixes` to `u`, each with its latest decision's expiry.
    fn group(&self, u: &mut Update, prefixes: Vec<Prefix>, now_ms: u64) {
        for p in prefixes {
            let Some(ids) = self.by_prefix.get(&p) else {
                continue;
            };
            let Some((expires, reason)) = ids.values().max_by_key(|(e, _)| *e) else {
                continue;
            };
            let secs = expires.saturating_sub(now_ms).div_ceil(1000);
            let ttl = secs.div_ceil(TTL_STEP_SECS).max(1) * TTL_STEP_SECS;
            u.adds.entry((ttl, reason.clone())).or_default().push(p);
        }
    }
}

/// The IP or range a ban decision applies to; none for other decisions,
/// and for a whole address family (0.0.0.0/0, ::/0), never applied from a
/// feed.
fn ban_prefix(d: &Decision) -> Option<Prefix> {
    if !d.kind.eq_ignore_ascii_case("ban") {
        return None;
    }
    if !d.scope.eq_ignore_ascii_case("ip") && !d.scope.eq_ignore_ascii_case("range") {
        return None;
    }
    let p: Prefix = d.value.trim().parse().ok()?;
    (!p.is_empty()).then_some(p)
}

/// A Go duration as LAPI writes it ("3h59m58.9s", "-21ms"); negative ones
/// are zero.
pub(crate) fn go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Some(neg) = s.strip_prefix('-') {
        return go_duration(neg).map(|_| Duration::ZERO);
    }
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * scale;
    }
    (total.is_finite() && total < 1e12).then(|| Duration::from_secs_f64(total))
}

/// Starts following the stream; the task runs until the daemon stops.
pub(crate) fn spawn(
    cfg: CrowdsecConfig,
    changes: mpsc::Sender<Job>,
    state: Arc<FeedState>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(follow(cfg, changes, state))
}

async fn follow(cfg: CrowdsecConfig, changes: mpsc::Sender<Job>, state: Arc<FeedState>) {
    let list = ListName::parse(LIST).expect("the crowdsec list's name is valid");
    let mut decisions = Decisions::default();
    let mut startup = true;
    let mut failures = 0u32;
    let url = format!("http://{}:{}", cfg.lapi_host, cfg.lapi_port);
    tracing::info!(
        "crowdsec: following the decisions of the Local API at {url} every {} s into list {LIST}",
        cfg.poll_interval.as_secs()
    );
    loop {
        let outcome = match read_stream(&cfg, startup).await {
            Ok(stream) => {
                // The Local API answered: connected, whatever applying
                // the answer takes.
                state.connected.store(true, Ordering::Relaxed);
                state.last_success_ms.store(now_ms(), Ordering::Relaxed);
                let now = now_ms();
                let update = if startup {
                    decisions.startup(stream, now)
                } else {
                    decisions.delta(stream, now)
                };
                apply(&changes, &list, update).await.map(|()| startup)
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(was_startup) => {
                if failures > 0 {
                    tracing::info!("crowdsec: the Local API at {url} answers again");
                }
                if was_startup {
                    tracing::info!(
                        "crowdsec: {} IPs and ranges banned by the Local API's decisions",
                        decisions.len()
                    );
                }
                failures = 0;
                startup = false;
                state.connected.store(true, Ordering::Relaxed);
                state.last_success_ms.store(now_ms(), Ordering::Relaxed);
                state
                    .decisions
                    .store(decisions.len() as u64, Ordering::Relaxed);
                tokio::time::sleep(cfg.poll_interval).await;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                state.failures.fetch_add(1, Ordering::Relaxed);
                state.connected.store(false, Ordering::Relaxed);
                // After a failure the stream is read from the start: what
                // changed meanwhile may have been half applied.
                startup = true;
                let wait = cfg
                    .poll_interval
                    .saturating_mul(1 << failures.min(8))
                    .min(MAX_BACKOFF);
                let msg = format!(
                    "crowdsec: {e}; the list {LIST} keeps its {} entries, retrying in {} s",
                    decisions.len(),
                    wait.as_secs()
                );
                if failures == 1 {
                    tracing::warn!("{msg}");
                } else {
                    tracing::debug!("{msg}");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Why a read of the stream or its application failed.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    #[error("cannot reach the Local API at {url}")]
    Connect {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the Local API did not answer within {} s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    #[error("talking to the Local API")]
    Http(#[from] hyper::Error),
    #[error("the Local API refused the bouncer key (HTTP 403): check crowdsec.api_key")]
    Forbidden,
    #[error("the Local API answered HTTP {0}: {1}")]
    Status(StatusCode, String),
    #[error("the Local API's answer is not a decision stream: {0}")]
    Body(String),
    #[error("the daemon refused the change: {0}")]
    Refused(#[from] ApiError),
    #[error("the daemon is stopping")]
    Stopping,
}

async fn read_stream(cfg: &CrowdsecConfig, startup: bool) -> Result<Stream, FeedError> {
    tokio::time::timeout(REQUEST_TIMEOUT, read_stream_now(cfg, startup))
        .await
        .map_err(|_| FeedError::Timeout)?
}

async fn read_stream_now(cfg: &CrowdsecConfig, startup: bool) -> Result<Stream, FeedError> {
    let url = format!("http://{}:{}", cfg.lapi_host, cfg.lapi_port);
    let tcp = tokio::net::TcpStream::connect((cfg.lapi_host.as_str(), cfg.lapi_port))
        .await
        .map_err(|source| FeedError::Connect {
            url: url.clone(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    let conn = tokio::spawn(conn);
    let host = if cfg.lapi_host.contains(':') {
        format!("[{}]:{}", cfg.lapi_host, cfg.lapi_port)
    } else {
        format!("{}:{}", cfg.lapi_host, cfg.lapi_port)
    };
    let req = Request::get(format!("/v1/decisions/stream?startup={startup}"))
        .header(hyper::header::HOST, host)
        .header("X-Api-Key", &cfg.api_key)
        .header(
            hyper::header::USER_AGENT,
            concat!("ironpost/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| FeedError::Body(e.to_string()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_STREAM_BYTES)
        .collect()
        .await
        .map_err(|e| FeedError::Body(e.to_string()))?
        .to_bytes();
    conn.abort();
    match status {
        StatusCode::OK => serde_json::from_slice(&body).map_err(|e| FeedError::Body(e.to_string())),
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Err(FeedError::Forbidden),
        s => Err(FeedError::Status(
            s,
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        )),
    }
}

/// Applies one answer to the list through the change queue.
async fn apply(changes: &mpsc::Sender<Job>, list: &ListName, u: Update) -> Result<(), FeedError> {
    if u.ignored > 0 {
        tracing::debug!(
            "crowdsec: {} decisions not applied (not a ban of an IP or a range)",
            u.ignored
        );
    }
    if let Some(full) = u.full {
        let sync = BlockSync {
            list: list.clone(),
            prefixes: full,
            ttl_secs: None,
            reason: "crowdsec".into(),
            force: false,
        };
        ask(changes, move |d, reply| d.block_sync(sync, reply)).await?;
    }
    if !u.removes.is_empty() {
        let list = list.clone();
        let removes = u.removes;
        ask(changes, move |d, reply| {
            let _ = reply.send(d.leave_list(&list, removes));
        })
        .await?;
    }
    for ((ttl, reason), prefixes) in u.adds {
        let add = BlockAdd {
            prefixes,
            ttl_secs: Some(ttl),
            reason,
            import: true,
            force: false,
            list: Some(list.clone()),
        };
        ask(changes, move |d, reply| {
            d.block_add(add, Box::new(|_, _| true), reply);
        })
        .await?;
    }
    Ok(())
}

/// Runs a change on the daemon's main task and waits for its answer.
async fn ask(
    changes: &mpsc::Sender<Job>,
    f: impl FnOnce(&mut crate::daemon::Daemon, oneshot::Sender<Result<Changed, ApiError>>)
    + Send
    + 'static,
) -> Result<Changed, FeedError> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |d| f(d, tx));
    changes.send(job).await.map_err(|_| FeedError::Stopping)?;
    Ok(rx.await.map_err(|_| FeedError::Stopping)??)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: i64, kind: &str, scope: &str, value: &str, duration: &str) -> Decision {
        Decision {
            id,
            duration: duration.into(),
            scope: scope.into(),
            kind: kind.into(),
            value: value.into(),
            scenario: "test".into(),
        }
    }

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn go_durations_as_lapi_writes_them() {
        assert_eq!(
            go_duration("3h59m58.5s"),
            Some(Duration::from_secs_f64(4.0 * 3600.0 - 1.5))
        );
        assert_eq!(go_duration("-21.269597ms"), Some(Duration::ZERO));
        assert_eq!(go_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(go_duration("0"), Some(Duration::ZERO));
        assert_eq!(go_duration(""), None);
        assert_eq!(go_duration("5d"), None);
        assert_eq!(go_duration("h"), None);
    }

    #[test]
    fn startup_bans_ips_and_ranges_only_with_their_durations() {
        let mut ds = Decisions::default();
        let s = Stream {
            new: Some(vec![
                d(1, "ban", "Ip", "192.0.2.7", "59m58.9s"),
                d(2, "ban", "Range", "198.51.100.0/24", "29m1s"),
                d(3, "captcha", "Ip", "192.0.2.8", "1h"),
                d(4, "ban", "Country", "FR", "1h"),
                d(5, "ban", "Range", "0.0.0.0/0", "1h"),
                d(6, "ban", "Ip", "not an ip", "1h"),
                d(7, "ban", "Ip", "192.0.2.9", "-1s"),
            ]),
            deleted: None,
        };
        let u = ds.startup(s, 0);
        assert_eq!(u.full, Some(vec![p("192.0.2.7"), p("198.51.100.0/24")]));
        assert_eq!(u.ignored, 5);
        let adds: Vec<_> = u.adds.iter().map(|((t, _), v)| (*t, v.clone())).collect();
        assert_eq!(
            adds,
            vec![
                (1800, vec![p("198.51.100.0/24")]),
                (3600, vec![p("192.0.2.7")])
            ]
        );
    }

    #[test]
    fn an_address_leaves_only_with_its_last_decision() {
        let mut ds = Decisions::default();
        ds.startup(
            Stream {
                new: Some(vec![
                    d(1, "ban", "Ip", "192.0.2.7", "1h"),
                    d(2, "ban", "Ip", "192.0.2.7", "2h"),
                ]),
                deleted: None,
            },
            0,
        );
        let u = ds.delta(
            Stream {
                new: None,
                deleted: Some(vec![d(1, "ban", "Ip", "192.0.2.7", "-1s")]),
            },
            0,
        );
        assert!(u.removes.is_empty());
        let u = ds.delta(
            Stream {
                new: None,
                deleted: Some(vec![
                    d(2, "ban", "Ip", "192.0.2.7", "-1s"),
                    d(9, "ban", "Ip", "203.0.113.1", "-1s"),
                ]),
            },
            0,
        );
        assert_eq!(u.removes, vec![p("192.0.2.7")]);
        assert_eq!(ds.len(), 0);
    }

    #[test]
    fn a_decision_deleted_and_renewed_in_one_answer_stays() {
        let mut ds = Decisions::default();
        ds.startup(
            Stream {
                new: Some(vec![d(1, "ban", "Ip", "192.0.2.7", "1h")]),
                deleted: None,
            },
            0,
        );
        let u = ds.delta(
            Stream {
                new: Some(vec![d(2, "ban", "Ip", "192.0.2.7", "4h")]),
                deleted: Some(vec![d(1, "ban", "Ip", "192.0.2.7", "-1s")]),
            },
            0,
        );
        assert!(u.removes.is_empty());
        assert_eq!(u.adds.keys().next().map(|k| k.0), Some(4 * 3600));
    }
}
