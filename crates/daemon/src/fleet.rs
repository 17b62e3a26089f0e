//! Fleet mode: hosts share their alerts and blocks through NATS JetStream
//! (see `docs/fleet.md`).
//!
//! One task per daemon. It publishes what this host shares (its alerts,
//! its automatic blocks, the manual lists it names) and follows the
//! fleet's block stream into the list `fleet`. Local protection never
//! waits on it: the main loop hands it changes through an unbounded
//! channel that it drains at once into a backlog (one pending state per
//! address, at most [`MAX_ALERTS`] alerts), and what it learns comes back
//! through the change queue like any client's request.

pub(crate) mod shared;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt as _;
use ironpost_api::{ApiError, Changed, FleetStatus};
use ironpost_core::{
    Prefix, RuleAction,
    config::{FleetAuth, FleetConfig},
};
use ironpost_ebpf_engine::engine::now_ms;
use ironpost_policy::{BlockEntry, Origin};
use shared::{BlockMsg, Shared, Tracker, VERSION};
use tokio::sync::{mpsc, oneshot};

use crate::api::Job;

/// Alerts kept for publishing while the servers are unreachable; the
/// oldest go first (and are counted).
pub(crate) const MAX_ALERTS: usize = 10_000;
/// How long a block message is kept in the stream at most (a block that
/// never expires is published again at each start of its host).
const BLOCKS_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Messages the block stream keeps at most (one per host and address).
const BLOCKS_MAX_MSGS: i64 = 10_000_000;
/// How long alerts are kept.
const ALERTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// How many bytes of alerts are kept.
const ALERTS_MAX_BYTES: i64 = 1 << 30;
/// The longest reason taken from another host's block.
const MAX_REASON_CHARS: usize = 512;
/// How long one pull of the block stream waits for messages.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How often the server says a pull is alive while it has nothing.
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);
/// Errors in a row (missed heartbeats) after which the consumer is made
/// anew.
const MAX_PULL_ERRORS: u32 = 3;
/// Messages read, or published, together.
const BATCH: usize = 1024;
/// How long one publish may wait for JetStream's acknowledgement.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the fleet task reports (status, metrics).
#[derive(Default)]
pub(crate) struct FleetState {
    pub connected: AtomicBool,
    pub backlog: AtomicU64,
    pub published: AtomicU64,
    pub alerts_dropped: AtomicU64,
    pub applied: AtomicU64,
    pub behind: AtomicU64,
    pub error: Mutex<Option<String>>,
}

impl FleetState {
    fn set_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.error.lock() {
            *g = e;
        }
    }
}

/// What the daemon hands the fleet task.
pub(crate) enum Outgoing {
    /// The block this host shares on an address now (`None`: none).
    Block(Prefix, Option<Shared>),
    /// Every block this host shares, at start: what the stream holds for
    /// this host beyond it is withdrawn.
    Snapshot(Vec<(Prefix, Shared)>),
    /// An alert, as JSON.
    Alert(Vec<u8>),
}

/// The running fleet task and what the daemon needs of it.
pub(crate) struct Fleet {
    pub cfg: FleetConfig,
    pub state: Arc<FleetState>,
    pub tx: mpsc::UnboundedSender<Outgoing>,
    task: tokio::task::JoinHandle<()>,
}

impl Fleet {
    /// Starts the fleet task.
    pub(crate) fn spawn(cfg: FleetConfig, changes: mpsc::Sender<Job>) -> Self {
        let state = Arc::new(FleetState::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(cfg.clone(), rx, changes, state.clone()));
        Self {
            cfg,
            state,
            tx,
            task,
        }
    }

    /// Stops it (what was not published yet is lost with the process;
    /// the next start publishes this host's blocks again).
    pub(crate) fn stop(self) {
        self.task.abort();
    }

    /// For `status`.
    pub(crate) fn status(&self) -> FleetStatus {
        let s = &self.state;
        let connected = s.connected.load(Ordering::Relaxed);
        FleetStatus {
            name: self.cfg.name.clone(),
            host: self.cfg.host.clone(),
            connected,
            backlog: s.backlog.load(Ordering::Relaxed),
            published: s.published.load(Ordering::Relaxed),
            alerts_dropped: s.alerts_dropped.load(Ordering::Relaxed),
            applied: s.applied.load(Ordering::Relaxed),
            behind: s.behind.load(Ordering::Relaxed),
            error: if connected {
                None
            } else {
                s.error.lock().ok().and_then(|g| g.clone())
            },
        }
    }
}

/// Why talking to the fleet failed.
#[derive(Debug, thiserror::Error)]
enum FleetError {
    #[error("cannot connect to the NATS servers {servers}: {source}")]
    Connect {
        servers: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("the NATS server refused the credentials in [fleet] ({0})")]
    Refused(String),
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("publishing: {0}")]
    Publish(String),
    #[error("the fleet's block stream ended")]
    Ended,
    #[error("the daemon refused the fleet's change: {0}")]
    Apply(#[from] ApiError),
    #[error("the daemon is stopping")]
    Stopping,
}

fn js_error(e: impl std::fmt::Display) -> FleetError {
    FleetError::JetStream(e.to_string())
}

async fn connect(cfg: &FleetConfig) -> Result<async_nats::Client, FleetError> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(format!("ironpost {}", cfg.host))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None::<usize>);
    opts = match &cfg.auth {
        FleetAuth::None => opts,
        FleetAuth::Token(t) => opts.token(t.clone()),
        FleetAuth::UserPassword { user, password } => {
            opts.user_and_password(user.clone(), password.clone())
        }
        FleetAuth::NKey(seed) => opts.nkey(seed.clone()),
    };
    if let Some(ca) = &cfg.tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    let servers: Vec<async_nats::ServerAddr> =
        cfg.servers.iter().filter_map(|s| s.parse().ok()).collect();
    opts.connect(servers).await.map_err(|source| {
        if matches!(
            source.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation
                | async_nats::ConnectErrorKind::Authentication
        ) {
            FleetError::Refused(source.to_string())
        } else {
            FleetError::Connect {
                servers: cfg.servers.join(", "),
                source,
            }
        }
    })
}

/// Creates the fleet's streams if they are not there.
async fn ensure_streams(js: &jetstream::Context, cfg: &FleetConfig) -> Result<(), FleetError> {
    let root = shared::root(&cfg.name);
    // Both kept on disk, with as many replicas as asked; the oldest go
    // first when a limit is reached.
    let kept = stream::Config {
        discard: stream::DiscardPolicy::Old,
        storage: stream::StorageType::File,
        num_replicas: cfg.replicas,
        ..Default::default()
    };
    for config in [
        stream::Config {
            name: shared::blocks_stream(&cfg.name),
            subjects: vec![format!("{root}.blocks.>")],
            max_messages_per_subject: 1,
            max_messages: BLOCKS_MAX_MSGS,
            max_age: BLOCKS_MAX_AGE,
            ..kept.clone()
        },
        stream::Config {
            name: shared::alerts_stream(&cfg.name),
            subjects: vec![format!("{root}.alerts.>")],
            max_age: ALERTS_MAX_AGE,
            max_bytes: ALERTS_MAX_BYTES,
            ..kept.clone()
        },
    ] {
        js.get_or_create_stream(config).await.map_err(js_error)?;
    }
    Ok(())
}

/// What waits to be published.
#[derive(Default)]
struct Backlog {
    /// The state to publish per address (the latest wins).
    blocks: HashMap<Prefix, Option<Shared>>,
    alerts: VecDeque<Vec<u8>>,
    /// The start's snapshot, applied once what the stream holds for this
    /// host is known.
    snapshot: Option<Vec<(Prefix, Shared)>>,
}

impl Backlog {
    fn take(&mut self, out: Outgoing, state: &FleetState) {
        match out {
            Outgoing::Block(p, b) => {
                self.blocks.insert(p, b);
            }
            Outgoing::Snapshot(all) => self.snapshot = Some(all),
            Outgoing::Alert(a) => {
                if self.alerts.len() >= MAX_ALERTS {
                    self.alerts.pop_front();
                    state.alerts_dropped.fetch_add(1, Ordering::Relaxed);
                }
                self.alerts.push_back(a);
            }
        }
    }

    fn len(&self) -> usize {
        self.blocks.len() + self.alerts.len()
    }
}

async fn run(
    cfg: FleetConfig,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    changes: mpsc::Sender<Job>,
    state: Arc<FleetState>,
) {
    tracing::info!(
        "fleet: host {} of fleet {} on {}",
        cfg.host,
        cfg.name,
        cfg.servers.join(", ")
    );
    let mut backlog = Backlog::default();
    // What this host's subjects hold, as far as it knows.
    let mut published: HashMap<Prefix, Option<Shared>> = HashMap::new();
    let mut js: Option<jetstream::Context> = None;
    let mut client: Option<async_nats::Client> = None;
    let mut follower: Option<tokio::task::JoinHandle<()>> = None;
    let mut failures = 0u32;
    let mut publish_failing = false;
    let mut retry_at = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(o) => {
                    backlog.take(o, &state);
                    while let Ok(o) = rx.try_recv() {
                        backlog.take(o, &state);
                    }
                }
                None => return,
            },
            _ = tick.tick() => {}
        }
        let connected = client
            .as_ref()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected);
        let was = state.connected.swap(connected, Ordering::Relaxed);
        if js.is_some() && was != connected {
            if connected {
                tracing::info!("fleet: connected to NATS again");
            } else {
                tracing::warn!(
                    "fleet: NATS unreachable; local protection goes on, changes and alerts wait \
                     ({} now)",
                    backlog.len()
                );
                state.set_error(Some("NATS unreachable, reconnecting".into()));
            }
        }
        if js.is_none() && tokio::time::Instant::now() >= retry_at {
            match start(&cfg).await {
                Ok((c, j, own)) => {
                    tracing::info!(
                        "fleet: connected; this host's subjects hold {} blocks",
                        own.values().filter(|b| b.is_some()).count()
                    );
                    published = own;
                    failures = 0;
                    state.connected.store(true, Ordering::Relaxed);
                    state.set_error(None);
                    if cfg.apply {
                        follower = Some(tokio::spawn(follow(
                            j.clone(),
                            cfg.clone(),
                            changes.clone(),
                            state.clone(),
                        )));
                    }
                    client = Some(c);
                    js = Some(j);
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = Duration::from_secs(1 << failures.min(5)).min(MAX_BACKOFF);
                    retry_at = tokio::time::Instant::now() + wait;
                    let msg = format!(
                        "fleet: {e}; local protection goes on, {} changes and alerts wait, \
                         retrying in {} s",
                        backlog.len(),
                        wait.as_secs()
                    );
                    // Said in status before the log line (which a reader
                    // may act on).
                    state.set_error(Some(e.to_string()));
                    if failures == 1 {
                        tracing::warn!("{msg}");
                    } else {
                        tracing::debug!("{msg}");
                    }
                }
            }
        }
        if let Some(snapshot) = backlog.snapshot.take() {
            if js.is_some() {
                // Withdraw what the stream holds for this host that it no
                // longer blocks; (re)publish the rest.
                let mut want: HashMap<Prefix, Option<Shared>> = published
                    .iter()
                    .filter(|(_, b)| b.is_some())
                    .map(|(p, _)| (*p, None))
                    .collect();
                for (p, s) in snapshot {
                    want.insert(p, Some(s));
                }
                for (p, b) in want {
                    backlog.blocks.entry(p).or_insert(b);
                }
            } else {
                backlog.snapshot = Some(snapshot);
            }
        }
        state.backlog.store(backlog.len() as u64, Ordering::Relaxed);
        if let Some(j) = &js
            && connected
            && backlog.len() > 0
        {
            match flush(j, &cfg, &mut backlog, &mut published, &state).await {
                Ok(()) => {
                    if publish_failing {
                        tracing::info!("fleet: publishing again; the backlog is out");
                        publish_failing = false;
                    }
                }
                Err(e) => {
                    if !publish_failing {
                        tracing::warn!("fleet: {e}; kept for later ({} waiting)", backlog.len());
                        publish_failing = true;
                    }
                    state.set_error(Some(e.to_string()));
                }
            }
            state.backlog.store(backlog.len() as u64, Ordering::Relaxed);
        }
        if follower.as_ref().is_some_and(|f| f.is_finished()) {
            follower = None;
        }
    }
}

/// Connects, creates the streams, and reads what this host's subjects
/// hold.
async fn start(
    cfg: &FleetConfig,
) -> Result<
    (
        async_nats::Client,
        jetstream::Context,
        HashMap<Prefix, Option<Shared>>,
    ),
    FleetError,
> {
    let client = connect(cfg).await?;
    let js = jetstream::new(client.clone());
    ensure_streams(&js, cfg).await?;
    let own = read_own(&js, cfg).await?;
    Ok((client, js, own))
}

/// The last message of each of this host's block subjects.
async fn read_own(
    js: &jetstream::Context,
    cfg: &FleetConfig,
) -> Result<HashMap<Prefix, Option<Shared>>, FleetError> {
    let stream = js
        .get_stream(shared::blocks_stream(&cfg.name))
        .await
        .map_err(js_error)?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ack_policy: consumer::AckPolicy::None,
            filter_subject: format!("{}.blocks.{}.>", shared::root(&cfg.name), cfg.host),
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(js_error)?;
    let mut own = HashMap::new();
    let mut consumer = consumer;
    let mut left = consumer.info().await.map_err(js_error)?.num_pending;
    if left == 0 {
        return Ok(own);
    }
    let mut messages = consumer.messages().await.map_err(js_error)?;
    while left > 0 {
        let m = match tokio::time::timeout(Duration::from_secs(10), messages.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(Some(Err(e))) => return Err(js_error(e)),
            Ok(None) | Err(_) => return Err(FleetError::Ended),
        };
        left = m.info().map(|i| i.pending).unwrap_or(0);
        if let Ok(b) = serde_json::from_slice::<BlockMsg>(&m.payload)
            && b.v == VERSION
            && b.host == cfg.host
        {
            own.insert(b.prefix, b.block);
        }
    }
    Ok(own)
}

/// Publishes the backlog, alerts first; stops at the first failure (what
/// was not acknowledged stays in the backlog).
async fn flush(
    js: &jetstream::Context,
    cfg: &FleetConfig,
    backlog: &mut Backlog,
    published: &mut HashMap<Prefix, Option<Shared>>,
    state: &FleetState,
) -> Result<(), FleetError> {
    let subject = shared::alert_subject(&cfg.name, &cfg.host);
    while let Some(a) = backlog.alerts.front() {
        publish(js, subject.clone(), a.clone()).await?;
        backlog.alerts.pop_front();
        state.published.fetch_add(1, Ordering::Relaxed);
    }
    let pending: Vec<Prefix> = backlog.blocks.keys().copied().collect();
    for chunk in pending.chunks(BATCH) {
        // Sent together, then their acknowledgements awaited: what fails
        // stays pending (publishing it again is harmless: the subject
        // keeps its last message).
        let mut acks = Vec::with_capacity(chunk.len());
        for p in chunk {
            let want = backlog.blocks[p].clone();
            if published.get(p).cloned().flatten() == want {
                backlog.blocks.remove(p);
                continue;
            }
            let msg = BlockMsg {
                v: VERSION,
                host: cfg.host.clone(),
                prefix: *p,
                block: want.clone(),
            };
            let body = serde_json::to_vec(&msg).expect("a block message serializes");
            let ack = js
                .publish(shared::block_subject(&cfg.name, &cfg.host, p), body.into())
                .await
                .map_err(|e| FleetError::Publish(e.to_string()))?;
            acks.push((*p, want, ack));
        }
        for (p, want, ack) in acks {
            tokio::time::timeout(PUBLISH_TIMEOUT, ack)
                .await
                .map_err(|_| FleetError::Publish("no acknowledgement within 5 s".into()))?
                .map_err(|e| FleetError::Publish(e.to_string()))?;
            if backlog.blocks.get(&p) == Some(&want) {
                backlog.blocks.remove(&p);
            }
            published.insert(p, want);
            state.published.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

async fn publish(
    js: &jetstream::Context,
    subject: String,
    body: Vec<u8>,
) -> Result<(), FleetError> {
    let ack = tokio::time::timeout(PUBLISH_TIMEOUT, async {
        js.publish(subject, body.into())
            .await
            .map_err(|e| FleetError::Publish(e.to_string()))?
            .await
            .map_err(|e| FleetError::Publish(e.to_string()))
    })
    .await
    .map_err(|_| FleetError::Publish("no acknowledgement within 5 s".into()))??;
    drop(ack);
    Ok(())
}

/// Follows the fleet's blocks into the list `fleet`, again after each
/// failure.
async fn follow(
    js: jetstream::Context,
    cfg: FleetConfig,
    changes: mpsc::Sender<Job>,
    state: Arc<FleetState>,
) {
    let mut failures = 0u32;
    loop {
        match follow_once(&js, &cfg, &changes, &state).await {
            Err(FleetError::Stopping) => return,
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = Duration::from_secs(1 << failures.min(5)).min(MAX_BACKOFF);
                if failures == 1 {
                    tracing::warn!(
                        "fleet: following the fleet's blocks: {e}; the list fleet keeps its \
                         entries, reading again in {} s",
                        wait.as_secs()
                    );
                }
                tokio::time::sleep(wait).await;
            }
            Ok(()) => failures = 0,
        }
    }
}

/// One reading of the block stream: every subject's last message, then
/// each new one as it comes. The list `fleet` is synced to the whole state
/// once it is read, and changed address by address after.
async fn follow_once(
    js: &jetstream::Context,
    cfg: &FleetConfig,
    changes: &mpsc::Sender<Job>,
    state: &FleetState,
) -> Result<(), FleetError> {
    let stream = js
        .get_stream(shared::blocks_stream(&cfg.name))
        .await
        .map_err(js_error)?;
    // This host's durable consumer, made anew: the list is synced to the
    // stream's whole state, withdrawals made while this host was away
    // included.
    let name = format!("ironpost-{}", cfg.host);
    let _ = stream.delete_consumer(&name).await;
    let mut consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name),
            deliver_policy: consumer::DeliverPolicy::LastPerSubject,
            ack_policy: consumer::AckPolicy::Explicit,
            filter_subject: format!("{}.blocks.>", shared::root(&cfg.name)),
            ..Default::default()
        })
        .await
        .map_err(js_error)?;
    let mut tracker = Tracker::default();
    let mut caught_up = consumer.info().await.map_err(js_error)?.num_pending == 0;
    if caught_up {
        sync(changes, &tracker).await?;
    }
    // Messages ready together are applied as one change. Short pulls with
    // frequent heartbeats: when the server holding this consumer goes (a
    // cluster's node), the next pull goes to its successor within seconds
    // (the client's defaults wait about 30 s).
    let mut messages = consumer
        .stream()
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
        .map_err(js_error)?
        .ready_chunks(BATCH);
    let mut errors_in_a_row = 0u32;
    let mut prune = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            batch = messages.next() => {
                let Some(batch) = batch else {
                    return Err(FleetError::Ended);
                };
                let mut changed: HashMap<Prefix, Option<shared::InForce>> = HashMap::new();
                let mut last_pending = None;
                for m in batch {
                    let m = match m {
                        Ok(m) => {
                            errors_in_a_row = 0;
                            m
                        }
                        Err(e) => {
                            tracing::debug!("fleet: {e}");
                            errors_in_a_row += 1;
                            if errors_in_a_row >= MAX_PULL_ERRORS {
                                // Read the whole state again through a new
                                // consumer.
                                return Err(js_error(e));
                            }
                            continue;
                        }
                    };
                    let pending = m.info().map(|i| i.pending).unwrap_or(0);
                    last_pending = Some(pending);
                    let msg = serde_json::from_slice::<BlockMsg>(&m.payload);
                    let _ = m.ack().await;
                    let msg = match msg {
                        Ok(b) if b.v == VERSION => b,
                        Ok(b) => {
                            tracing::debug!("fleet: a block message of version {} ignored", b.v);
                            continue;
                        }
                        Err(e) => {
                            tracing::debug!("fleet: a block message that is not one: {e}");
                            continue;
                        }
                    };
                    // This host's own blocks are in force here already; what
                    // it learns from the fleet it never publishes again.
                    if msg.host == cfg.host {
                        continue;
                    }
                    let prefix = msg.prefix;
                    if let Some(after) = tracker.apply(msg, now_ms()) {
                        changed.insert(prefix, after);
                    }
                }
                if let Some(p) = last_pending {
                    state.behind.store(p, Ordering::Relaxed);
                }
                if caught_up {
                    if !changed.is_empty() {
                        apply_changed(changes, changed).await?;
                    }
                } else if last_pending == Some(0) {
                    caught_up = true;
                    sync(changes, &tracker).await?;
                }
                state.applied.store(tracker.len() as u64, Ordering::Relaxed);
            }
            _ = prune.tick() => {
                tracker.prune(now_ms());
                state.applied.store(tracker.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// The entry of the list `fleet` for one other host's block.
fn entry(prefix: Prefix, f: &shared::InForce, now: u64) -> BlockEntry {
    let mut e = BlockEntry::source(prefix, RuleAction::Drop, Origin::Manual, now);
    e.list = ironpost_policy::ListName::parse(ironpost_core::config::FLEET_LIST)
        .expect("the fleet list's name is valid");
    // Another host's words, kept short: a forged message must not fill
    // the store or the block list with megabytes of reason.
    let reason: String = f.block.reason.chars().take(MAX_REASON_CHARS).collect();
    e.reason = format!("fleet host {}: {reason}", f.host);
    e.id = f.block.id.clone();
    e.condition = f.block.condition;
    e.expires_ms = f.block.expires_ms;
    e
}

async fn apply_changed(
    changes: &mpsc::Sender<Job>,
    changed: HashMap<Prefix, Option<shared::InForce>>,
) -> Result<(), FleetError> {
    let now = now_ms();
    let mut upserts = Vec::new();
    let mut removes = Vec::new();
    for (prefix, after) in changed {
        match after {
            Some(f) => upserts.push(entry(prefix, &f, now)),
            None => removes.push(prefix),
        }
    }
    ask(changes, move |d| d.fleet_change(upserts, removes, false)).await
}

async fn sync(changes: &mpsc::Sender<Job>, tracker: &Tracker) -> Result<(), FleetError> {
    let now = now_ms();
    let upserts: Vec<BlockEntry> = tracker
        .all(now)
        .iter()
        .map(|(p, f)| entry(*p, f, now))
        .collect();
    let n = upserts.len();
    ask(changes, move |d| d.fleet_change(upserts, Vec::new(), true)).await?;
    tracing::info!("fleet: {n} addresses blocked by other hosts of the fleet (list fleet)");
    Ok(())
}

/// Runs a change on the daemon's main task and waits for its answer.
async fn ask(
    changes: &mpsc::Sender<Job>,
    f: impl FnOnce(&mut crate::daemon::Daemon) -> Result<Changed, ApiError> + Send + 'static,
) -> Result<(), FleetError> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move |d| {
        let _ = tx.send(f(d));
    });
    changes.send(job).await.map_err(|_| FleetError::Stopping)?;
    rx.await.map_err(|_| FleetError::Stopping)??;
    Ok(())
}
