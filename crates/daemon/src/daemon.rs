//! `ironpost run`: the daemon. Attaches the datapath to its interfaces,
//! owns the policy (config, manual and automatic entries), answers the
//! control socket, expires blocks, saves its state, and reports events and
//! stats as JSON lines on stdout until SIGINT or SIGTERM. SIGHUP reloads the
//! configuration.

use std::{
    collections::HashSet,
    io::{self, Write},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ironpost_api::{ClassLine, EventCounts, InterfaceTraffic, KernelDetection, StatsLine, Traffic};
use ironpost_core::{
    Alert, AlertAction, Direction, IronpostConfig, PacketAction, PacketEvent, Pipeline, Prefix,
    RuleAction, Signal,
    config::{
        AlertFormat, CrowdsecConfig, DEFAULT_STATE_FILE, DetectionConfig, LEGACY_STATE_FILE,
        OnExit, check_interface_name,
    },
};
use ironpost_detection::{Decision, Outcome, PacketDetector, Responder, Shield, response};
use ironpost_ebpf_engine::{
    Attachment, ClassesMetrics, EbpfEngine, EngineConfig, EngineError, Prepared, TrafficStats,
    engine::now_ms, pin,
};
use ironpost_policy::{BlockEntry, OnConfigConflict, Origin};
use serde_json::{Value, json};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

mod bulk;
mod fleet_link;
mod interfaces;
pub(crate) mod requests;

use crate::{
    RunOptions,
    activity::Activity,
    api, crowdsec, hostinfo, links, metrics,
    output::Output,
    privileges,
    socket::{self, SocketGuard},
    state::State,
    store::{Store, StoreError},
};

/// How often expiries are checked: entries leave the maps within this much
/// of their expiry time.
const EXPIRY_TICK: Duration = Duration::from_millis(200);
/// How often port scans held for the decoy check are looked at: a port
/// scan's alert comes at most this long after its hold.
const HOLD_TICK: Duration = Duration::from_millis(20);
/// How often every configured interface is compared with the device of
/// that name, in case a link event was lost.
const LINK_CHECK_TICK: Duration = Duration::from_secs(1);
/// Expiries are saved to the state file at most this often (changes made
/// through the control socket are saved before they are answered).
const EXPIRY_SAVE_DELAY: Duration = Duration::from_secs(2);

/// The daemon cannot start as configured: a setting is missing or
/// contradicts itself. Restarting it will not help (`ironpost run` exits
/// with [`ironpost_api::exit::CONFIG`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotConfigured(pub String);

/// Runs the daemon until a signal.
pub fn run(args: RunOptions) -> anyhow::Result<()> {
    let cfg = match &args.config {
        Some(path) => IronpostConfig::load(path)?,
        None => IronpostConfig::default(),
    };
    if !cfg.ebpf.enabled {
        tracing::warn!("ebpf.enabled is false in the configuration: nothing to run");
        return Ok(());
    }
    let interfaces = if args.interface.is_empty() {
        cfg.ebpf.interfaces.clone()
    } else {
        args.interface.clone()
    };
    if interfaces.is_empty() {
        let source = args.config.as_ref().map_or(
            format!(
                "{} (or the file --config names)",
                ironpost_core::config::DEFAULT_CONFIG
            ),
            |p| p.display().to_string(),
        );
        return Err(NotConfigured(format!(
            "no interface given: pass --interface IFACE or set ebpf.interfaces in {source}"
        ))
        .into());
    }
    let mut seen = HashSet::new();
    for iface in &interfaces {
        check_interface_name(iface).map_err(NotConfigured)?;
        check_interface_exists(iface)?;
        if !seen.insert(iface) {
            return Err(NotConfigured(format!("interface {iface} is given twice")).into());
        }
    }
    if !privileges::can_load_xdp() {
        bail!(
            "loading XDP programs needs root (or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON): \
             run ironpost as root"
        );
    }
    let socket = args.socket.clone().unwrap_or(cfg.daemon.socket.clone());
    let state_file = args
        .state_file
        .clone()
        .unwrap_or(cfg.daemon.state_file.clone());
    if socket::daemon_running(&socket) {
        bail!(
            "another ironpost daemon is running: it answers on {} (stop it first, or use \
             another --socket)",
            socket.display()
        );
    }
    // Earlier versions kept a JSON file at the old default path.
    let legacy = (args.state_file.is_none()
        && cfg.daemon.state_file == Path::new(DEFAULT_STATE_FILE))
    .then_some(Path::new(LEGACY_STATE_FILE));
    let mut engine_cfg = EngineConfig::from_core(&cfg.ebpf).with_detection(&cfg.detection);
    if let Some(mode) = args.xdp_mode {
        engine_cfg.xdp_mode = mode;
    }
    let pin_dir = match &args.pin_dir {
        Some(p) if p.as_os_str() == "off" => None,
        Some(p) => Some(p.clone()),
        None => cfg.daemon.pin_dir.clone(),
    };
    let on_exit = args.on_exit.unwrap_or(cfg.daemon.on_exit);
    if let Some(dir) = &pin_dir {
        pin::prepare(dir)?;
        // Pins of interfaces not configured now: one whose device is gone
        // filters nothing and is removed; one still filtering is left (it
        // may be another daemon's, given the same pin directory) and said.
        for (iface, path) in pin::pinned(dir) {
            if interfaces.contains(&iface) {
                continue;
            }
            if pin::is_live(dir, &iface)? {
                tracing::warn!(
                    "{} still filters {iface}, which is not configured: `ironpost unload -i \
                     {iface}` removes it",
                    path.display()
                );
            } else {
                pin::remove(dir, &iface)?;
                tracing::info!("removed {}: its device is gone", path.display());
            }
        }
    } else if on_exit == OnExit::Keep {
        tracing::info!(
            "pinning is off (daemon.pin_dir = \"off\"): the filter is detached when the daemon \
             exits"
        );
    }
    engine_cfg.pin_dir = pin_dir;
    // The program loads on a second thread (the kernel's verifier takes
    // about a second) while this one reads the store and rebuilds the
    // policy from it; the policy is then written to the new maps at once.
    let loading = {
        let cfg = engine_cfg.clone();
        std::thread::spawn(move || EbpfEngine::prepare(&cfg))
    };
    let (store, state) = Store::open(&state_file, legacy)?;
    let alerts = AlertSink::open(&cfg.detection)?;
    let mut builder = EbpfEngine::builder().config(engine_cfg);
    for iface in &interfaces {
        builder = builder.interface(iface);
    }
    let engine = builder.build();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (bulk_finishing, bulk_finished) = mpsc::unbounded_channel();
    let daemon = Daemon {
        engine,
        config_path: args.config.clone(),
        interfaces_from_cli: !args.interface.is_empty(),
        xdp_mode_from_cli: args.xdp_mode,
        state_file,
        store: Some(store),
        bulk: None,
        bulk_finishing,
        socket,
        started: Instant::now(),
        live: TrafficStats::new(),
        expired_unsaved: false,
        last_save: Instant::now(),
        output_dropped: 0,
        metrics_listen: cfg.daemon.metrics_listen,
        metrics_addr: None,
        detector: PacketDetector::new(&cfg.detection, alert_id_prefix()),
        responder: Responder::new(
            cfg.response.clone(),
            cfg.detection.max_tracked_sources as usize,
        ),
        detection: cfg.detection.clone(),
        crowdsec: cfg
            .crowdsec
            .clone()
            .map(|c| (c, Arc::new(crowdsec::FeedState::default()))),
        crowdsec_task: None,
        changes_tx: None,
        fleet_config: cfg.fleet.clone(),
        fleet: None,
        fleet_keys: Vec::new(),
        alerts,
        on_exit,
        signals_lost_reported: 0,
        absent: interfaces::AbsentInterfaces::new(),
        interface_losses: std::collections::BTreeMap::new(),
        alerts_by_severity: [0; 4],
        activity: Activity::default(),
    };
    rt.block_on(daemon.serve(state, loading, bulk_finished, args.stats_interval))
}

/// Whether the host has a network interface of that name now.
pub fn interface_exists(iface: &str) -> bool {
    Path::new("/sys/class/net").join(iface).exists()
}

fn check_interface_exists(iface: &str) -> anyhow::Result<()> {
    if !interface_exists(iface) {
        bail!("no such network interface: {iface}");
    }
    Ok(())
}

/// The daemon's state, owned by its main task; API requests reach it as
/// [`api::Job`]s (see `requests.rs`).
pub(crate) struct Daemon {
    engine: EbpfEngine,
    config_path: Option<PathBuf>,
    interfaces_from_cli: bool,
    xdp_mode_from_cli: Option<ironpost_core::XdpMode>,
    state_file: PathBuf,
    /// Where manual and automatic entries are kept across restarts (held
    /// by the writer thread of a large change while one is in progress).
    store: Option<Store>,
    /// The large change in progress (an import, a sync), if any.
    bulk: Option<bulk::Bulk>,
    /// Where writer threads say they ended.
    bulk_finishing: bulk::Finishing,
    socket: PathBuf,
    started: Instant,
    /// Counters and rates over the last second, for `ironpost stats`.
    live: TrafficStats,
    expired_unsaved: bool,
    last_save: Instant,
    /// Stdout lines dropped because the reader was too slow.
    output_dropped: u64,
    /// Where to serve metrics (configured), and where they are served.
    metrics_listen: Option<std::net::SocketAddr>,
    metrics_addr: Option<std::net::SocketAddr>,
    /// The detectors and their alert windows (owned by the main task).
    detector: PacketDetector,
    /// Automatic blocks and the offence history.
    responder: Responder,
    detection: DetectionConfig,
    alerts: AlertSink,
    /// What stopping does with the filter.
    on_exit: OnExit,
    /// Signal losses already warned about.
    signals_lost_reported: u64,
    /// Configured interfaces the program is not attached to now.
    absent: interfaces::AbsentInterfaces,
    /// Times each interface's device went away while attached.
    interface_losses: std::collections::BTreeMap<String, u64>,
    /// Alerts raised, by severity (low, medium, high, critical).
    alerts_by_severity: [u64; 4],
    /// Latest alerts and blocks, top sources (`ironpost top`).
    activity: Activity,
    /// `[crowdsec]` in force, and the follower's state.
    crowdsec: Option<(CrowdsecConfig, Arc<crowdsec::FeedState>)>,
    /// The task following the CrowdSec Local API, while it runs.
    crowdsec_task: Option<tokio::task::JoinHandle<()>>,
    /// The queue of changes, for tasks started after the daemon (the
    /// CrowdSec follower after a reload).
    changes_tx: Option<mpsc::Sender<api::Job>>,
    /// `[fleet]` as the daemon started (a change needs a restart).
    fleet_config: Option<ironpost_core::config::FleetConfig>,
    /// The fleet task, while it runs.
    pub(crate) fleet: Option<crate::fleet::Fleet>,
    /// Keys a large change's last chunk changed, published with the next.
    pub(crate) fleet_keys: Vec<ironpost_policy::RuleKey>,
}

/// A prefix for alert ids that differs between runs: the start time in
/// milliseconds, in base 36.
fn alert_id_prefix() -> String {
    let mut n = now_ms();
    let mut s = Vec::new();
    while n > 0 {
        s.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
    }
    s.reverse();
    format!("a{}", String::from_utf8_lossy(&s))
}

/// Where alerts go: stdout (with the packet events and stats) and an
/// optional file, appended to, one JSON line each.
struct AlertSink {
    stdout: bool,
    file: Option<(PathBuf, std::fs::File)>,
    format: AlertFormat,
}

impl AlertSink {
    fn open(cfg: &DetectionConfig) -> anyhow::Result<Self> {
        let file = match &cfg.alerts_file {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("opening the alerts file {}", path.display()))?;
                Some((path.clone(), f))
            }
            None => None,
        };
        Ok(Self {
            stdout: cfg.alerts_stdout,
            file,
            format: cfg.alert_format,
        })
    }

    fn line(&self, alert: &Alert) -> Value {
        match self.format {
            AlertFormat::Alert => serde_json::to_value(alert).unwrap_or(Value::Null),
            AlertFormat::LogEntry => {
                serde_json::to_value(alert.to_log_entry()).unwrap_or(Value::Null)
            }
        }
    }

    /// Writes the alert; a failing file is reported, stdout failures are
    /// returned (the daemon stops when stdout is gone).
    fn write(&mut self, alert: &Alert, out: &mut impl Write) -> io::Result<()> {
        let line = self.line(alert);
        if let Some((path, f)) = &mut self.file {
            let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
            bytes.push(b'\n');
            if let Err(e) = f.write_all(&bytes) {
                tracing::error!("writing alert {} to {}: {e}", alert.id, path.display());
            }
        }
        if self.stdout {
            let mut v = line;
            if let Value::Object(m) = &mut v {
                m.insert("type".into(), json!("alert"));
            }
            emit(out, &v)?;
        }
        Ok(())
    }
}

impl Daemon {
    async fn serve(
        mut self,
        state: State,
        loading: std::thread::JoinHandle<Result<Prepared, EngineError>>,
        mut bulk_finished: mpsc::UnboundedReceiver<crate::store::bulk::Finished>,
        stats_interval: u64,
    ) -> anyhow::Result<()> {
        // Signals first, so a signal during start-up is not lost.
        let mut sigint =
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut sigterm =
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;

        // Policy before attaching: config, then what the last run saved,
        // in memory while the program loads, then into its maps.
        self.engine.apply_config()?;
        {
            let mut state = state;
            let expired = state.drop_expired(now_ms());
            let clamped = state.clamp_expiry(now_ms());
            if !clamped.is_empty() {
                tracing::warn!(
                    "{}: {} saved blocks expired more than 10 years from now; they now \
                     expire in 10 years, the longest TTL",
                    self.state_file.display(),
                    clamped.len()
                );
            }
            let blocks = state.blocks.len();
            // The store gives each key's memberships together: the first of
            // each goes in as one batch of single memberships (the fast
            // way), the few others after it.
            let mut firsts = Vec::with_capacity(blocks);
            let mut more = Vec::new();
            for e in state.blocks {
                if firsts
                    .last()
                    .is_some_and(|f: &BlockEntry| f.key() == e.key())
                {
                    more.push(e);
                } else {
                    firsts.push(e);
                }
            }
            let r = self
                .engine
                .block(firsts, OnConfigConflict::Skip, &mut |_| true)
                .context("restoring the saved blocks")?;
            if !more.is_empty() {
                self.engine
                    .block(more, OnConfigConflict::Skip, &mut |_| true)
                    .context("restoring the saved memberships of several lists")?;
            }
            let a = self
                .engine
                .allow(state.allow)
                .context("restoring the saved allow list")?;
            tracing::info!(
                "restored {blocks} blocks ({} now set by the config instead, {} expired \
                 while stopped) and {} allow entries from {}",
                r.skipped_config,
                expired.len(),
                a.added + a.updated,
                self.state_file.display()
            );
            // What was restored is stored already; only the entries that
            // expired while stopped, or were clamped, are written.
            let _ = self.engine.take_policy_changes();
            let mut fix = ironpost_policy::Changes::default();
            fix.blocks.extend(expired);
            fix.blocks.extend(clamped);
            if !fix.is_empty()
                && let Some(store) = self.store.as_mut()
            {
                store
                    .write(self.engine.policy(), &fix)
                    .context("updating the store")?;
            }
        }
        let prepared = loading
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))?;
        self.engine.install(prepared)?;
        self.engine.start().await?;
        let attachments: Vec<Attachment> = self.engine.attachments().to_vec();

        let (ev_tx, mut ev_rx) = mpsc::channel::<PacketEvent>(4096);
        self.engine.spawn_event_reader(ev_tx)?;
        let (sig_tx, mut sig_rx) = mpsc::channel::<Signal>(4096);
        self.engine.spawn_signal_reader(sig_tx)?;
        let (st_tx, mut st_rx) = mpsc::channel::<TrafficStats>(4);
        self.engine
            .spawn_stats_poller(Duration::from_secs(1), st_tx)?;

        // Link events: an interface deleted and created again is attached
        // again. Without them (no netlink here), the once-a-second check
        // below still does it.
        // (Without them, a channel whose sender stays here: it never yields.)
        let (link_tx, idle_rx) = mpsc::channel::<links::LinkChange>(1);
        let (mut link_rx, link_tasks) = match links::watch() {
            Ok((rx, tasks)) => (rx, Vec::from(tasks)),
            Err(e) => {
                tracing::warn!(
                    "link events: cannot follow them ({e}); interfaces that come back are \
                     attached within a second, by polling"
                );
                (idle_rx, Vec::new())
            }
        };
        let mut link_check = tokio::time::interval(LINK_CHECK_TICK);
        link_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let listener = socket::bind(&self.socket)?;
        let _socket_guard = SocketGuard::new(&self.socket);
        let (jobs_tx, mut jobs_rx) = mpsc::channel::<api::Job>(64);
        let (changes_tx, mut changes_rx) = mpsc::channel::<api::Job>(64);
        self.changes_tx = Some(changes_tx.clone());
        self.start_crowdsec();
        self.start_fleet(changes_tx.clone());
        let accept = tokio::spawn(api::serve(
            listener,
            api::Queues {
                reads: jobs_tx,
                changes: changes_tx,
            },
            self.config_path.clone(),
        ));
        // SIGHUP's configuration is read and checked by a task of its own,
        // one read at a time, in order; the main loop applies the result.
        let (hup_tx, mut hup_rx) = mpsc::channel::<()>(1);
        let (reload_tx, mut reload_rx) = mpsc::channel(1);
        let reader = self.config_path.clone().map(|path| {
            tokio::spawn(async move {
                while hup_rx.recv().await.is_some() {
                    let read = requests::read_config_off_loop(path.clone()).await;
                    if reload_tx.send(read).await.is_err() {
                        break;
                    }
                }
            })
        });
        // Scrapes come to this loop like control requests; the sender is
        // kept here too, so that with metrics off the channel stays open
        // (and idle) rather than closed.
        let (scrape_tx, mut scrape_rx) = mpsc::channel::<metrics::Scrape>(8);
        let mut metrics_task = None;
        if let Some(addr) = self.metrics_listen
            && let Some(l) = metrics::bind(addr).await
        {
            self.metrics_addr = l.local_addr().ok();
            tracing::info!(
                "metrics on http://{}/metrics, health on /healthz",
                self.metrics_addr.unwrap_or(addr)
            );
            metrics_task = Some(tokio::spawn(metrics::serve(l, scrape_tx.clone())));
        }

        let names: Vec<&str> = attachments.iter().map(|a| a.interface.as_str()).collect();
        tracing::info!(
            "ready: reporting events and stats from {} (control socket {}, stop with SIGINT or \
             SIGTERM, reload with SIGHUP)",
            names.join(", "),
            self.socket.display()
        );

        let mut out = Output::spawn(io::stdout()).context("starting the stdout writer")?;
        let mut printed = TrafficStats::new();
        let mut ticks = 0u64;
        let mut expiry = tokio::time::interval(EXPIRY_TICK);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hold = tokio::time::interval(HOLD_TICK);
        hold.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cleanup =
            tokio::time::interval(Duration::from_secs(self.detection.cleanup_interval_secs));
        cleanup.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reason = loop {
            tokio::select! {
                _ = sigint.recv() => break "SIGINT",
                _ = sigterm.recv() => break "SIGTERM",
                _ = sighup.recv() => {
                    if self.config_path.is_none() {
                        tracing::error!("SIGHUP: {}", requests::no_config());
                    }
                    // Read and checked off the main loop, applied when
                    // ready; SIGHUPs while one read waits are that read.
                    let _ = hup_tx.try_send(());
                }
                // A reload changes the policy: it waits for a large change.
                Some(read) = reload_rx.recv(), if !self.bulk_in_progress() => {
                    match read.and_then(|cfg| self.reload_with(cfg)) {
                        Ok(c) => tracing::info!(
                            "SIGHUP: configuration reloaded: {} added, {} updated, {} removed{}",
                            c.added, c.updated, c.removed,
                            c.notes.iter().map(|n| format!("; {n}")).collect::<String>()
                        ),
                        Err(e) => tracing::error!("SIGHUP: reload refused, the running policy stays: {e}"),
                    }
                }
                ev = ev_rx.recv() => match ev {
                    Some(ev) => {
                        self.activity.packet(ev.src, ev.action == PacketAction::Drop, now_ms());
                        if emit(&mut out, &event_line(&ev)).is_err() {
                            break "stdout closed";
                        }
                    }
                    None => break "event reader stopped",
                },
                sig = sig_rx.recv() => match sig {
                    Some(sig) => {
                        if self.on_signal(&sig, &mut out).is_err() {
                            break "stdout closed";
                        }
                    }
                    None => break "signal reader stopped",
                },
                st = st_rx.recv() => match st {
                    Some(st) => {
                        self.live = st;
                        self.warn_signal_loss();
                        out.report_drops();
                        self.output_dropped = out.dropped();
                        if stats_interval > 0 && ticks > 0 && ticks.is_multiple_of(stats_interval) {
                            if let Some(snap) = self.live.snapshot() {
                                printed.update(snap, Instant::now());
                            }
                            let line = stats_line(self.engine.attachments(), &printed, false);
                            if emit(&mut out, &line).is_err() {
                                break "stdout closed";
                            }
                        } else if ticks == 0 && let Some(snap) = self.live.snapshot() {
                            printed.update(snap, Instant::now());
                        }
                        ticks += 1;
                    }
                    None => break "stats poller stopped",
                },
                Some(job) = jobs_rx.recv() => job(&mut self),
                // Changes wait while a large one is applied, a chunk per
                // turn of this loop.
                Some(job) = changes_rx.recv(), if !self.bulk_in_progress() => job(&mut self),
                () = std::future::ready(()), if self.bulk_ready() => self.bulk_step(),
                Some(f) = bulk_finished.recv() => self.bulk_finished(f),
                Some(scrape) = scrape_rx.recv() => {
                    let _ = scrape.send(self.readings());
                }
                _ = expiry.tick() => self.expire(),
                _ = hold.tick() => {
                    if self.release_held(now_ms(), &mut out).is_err() {
                        break "stdout closed";
                    }
                }
                _ = cleanup.tick() => self.cleanup_detection(),
                Some(change) = link_rx.recv() => self.on_link(change),
                _ = link_check.tick() => self.check_interfaces(),
            }
        };
        drop(link_tx);
        for t in link_tasks {
            t.abort();
        }
        tracing::info!("{reason}: stopping");
        accept.abort();
        if let Some(t) = self.crowdsec_task.take() {
            t.abort();
        }
        if let Some(f) = self.fleet.take() {
            f.stop();
        }
        if self.bulk_in_progress() {
            // Abandoned while chunks remain; once its commit was asked for,
            // the store may hold it already: its outcome is awaited.
            if self.bulk_ready() {
                self.bulk_fail(ironpost_api::ApiError::new(
                    ironpost_api::ErrorKind::Unavailable,
                    "the daemon is stopping; nothing was changed",
                ));
            }
            if let Some(f) = bulk_finished.recv().await {
                self.bulk_finished(f);
            }
        }
        if let Some(t) = reader {
            t.abort();
        }
        if let Some(t) = metrics_task {
            t.abort();
        }
        drop(scrape_tx);
        // Held port scans are alerts too: raised now rather than lost.
        let _ = self.release_held(u64::MAX, &mut out);
        while let Ok(ev) = ev_rx.try_recv() {
            let _ = emit(&mut out, &event_line(&ev));
        }
        match self.engine.counters() {
            Ok(snap) => {
                printed.update(snap, Instant::now());
                let _ = emit(
                    &mut out,
                    &stats_line(self.engine.attachments(), &printed, true),
                );
            }
            Err(e) => tracing::warn!("reading the final counters: {e}"),
        }
        out.finish(Duration::from_secs(2));
        if self.expired_unsaved
            && let Err(e) = self.save()
        {
            tracing::error!("saving the state: {}", requests::chain(&e));
        }
        match self.on_exit {
            OnExit::Keep => self.engine.keep_filtering(),
            OnExit::Detach => self.engine.stop().await?,
        }
        Ok(())
    }

    /// Runs a signal through the detectors; a new alert gets its response
    /// (an automatic block, unless something forbids it) and is written.
    fn on_signal(&mut self, sig: &Signal, out: &mut impl Write) -> io::Result<()> {
        let alert = match self.detector.observe(sig) {
            Outcome::Alert(a) => a,
            Outcome::Held => {
                tracing::debug!("{:?} from {}: held for the decoy check", sig.kind, sig.src);
                return Ok(());
            }
            Outcome::Repeat { alert_id, repeats } => {
                tracing::debug!(
                    "{:?} from {}: repeat {repeats} of alert {alert_id}",
                    sig.kind,
                    sig.src
                );
                return Ok(());
            }
            Outcome::Ignored => {
                tracing::debug!(
                    "{:?} from {}: below the detectors' thresholds",
                    sig.kind,
                    sig.src
                );
                return Ok(());
            }
        };
        self.raise(alert, out)
    }

    /// Port scans whose decoy hold ended by `now_ms`, raised.
    fn release_held(&mut self, now_ms: u64, out: &mut impl Write) -> io::Result<()> {
        for alert in self.detector.release(now_ms) {
            self.raise(alert, out)?;
        }
        Ok(())
    }

    /// Gives a new alert its response and writes it.
    fn raise(&mut self, mut alert: Box<Alert>, out: &mut impl Write) -> io::Result<()> {
        self.alerts_by_severity[alert.severity as usize] += 1;
        alert.action = self.respond(&alert);
        match &alert.action {
            AlertAction::Blocked {
                ttl_secs, traffic, ..
            } => tracing::warn!(
                "alert {} ({}, {}): {}; blocked ({traffic} traffic) for {ttl_secs} s",
                alert.id,
                alert.detector,
                alert.severity,
                alert.summary
            ),
            AlertAction::DryRun {
                ttl_secs, traffic, ..
            } => tracing::warn!(
                "alert {} ({}, {}): {}; dry run: would block ({traffic} traffic) for {ttl_secs} s",
                alert.id,
                alert.detector,
                alert.severity,
                alert.summary
            ),
            AlertAction::None { reason } => tracing::warn!(
                "alert {} ({}, {}): {}; not blocked: {reason}",
                alert.id,
                alert.detector,
                alert.severity,
                alert.summary
            ),
        }
        if let AlertAction::Blocked { block, .. } = &alert.action
            && let Ok(prefix) = block.parse::<Prefix>()
        {
            self.activity
                .blocked(std::iter::once((Direction::Src, prefix)));
        }
        if let Ok(v) = serde_json::to_value(&*alert) {
            self.activity.alert(v);
        }
        self.fleet_alert(&alert);
        self.alerts.write(&alert, out)
    }

    /// Decides and carries out the response to a new alert.
    fn respond(&mut self, alert: &Alert) -> AlertAction {
        let none = |reason: String| AlertAction::None { reason };
        if let Some(src) = alert.source {
            let key = (Direction::Src, Prefix::host(src.to_canonical()));
            if let Some(e) = self.engine.policy().block(&key)
                && e.origin != Origin::Auto
            {
                return none(format!(
                    "{} has a {} entry ({}), which an automatic block does not override",
                    key.1, e.origin, e.action
                ));
            }
        }
        let shield = Shield {
            allow: self
                .engine
                .policy()
                .allow_entries()
                .map(|a| a.prefix)
                .collect(),
            own: hostinfo::local_addresses(),
            gateways: hostinfo::default_gateways(),
            resolvers: hostinfo::resolvers(),
        };
        let now = now_ms();
        match self.responder.decide(alert, &shield, now) {
            Decision::Skip(reason) => none(reason),
            Decision::DryRun {
                prefix,
                ttl_secs,
                offence,
                condition,
            } => AlertAction::DryRun {
                would_block: prefix.to_string(),
                ttl_secs,
                offence,
                traffic: traffic(condition.as_ref()),
            },
            Decision::Block {
                prefix,
                ttl_secs,
                offence,
                condition,
            } => {
                if let Err(reason) = self.make_room_for(prefix) {
                    return none(reason);
                }
                // A block of all traffic already in force is never narrowed
                // to the attack's traffic by a later alert.
                let key = (Direction::Src, prefix);
                let condition = condition.filter(|_| {
                    self.engine
                        .policy()
                        .block(&key)
                        .is_none_or(|old| old.condition.is_some())
                });
                let mut e = BlockEntry::source(prefix, RuleAction::Drop, Origin::Auto, now);
                e.condition = condition;
                e.id = Some(alert.id.clone());
                e.reason = alert.summary.clone();
                let expires = now + ttl_secs * 1000;
                e.expires_ms = Some(expires);
                match self
                    .engine
                    .block(vec![e], OnConfigConflict::Skip, &mut |_| true)
                {
                    Ok(r) if r.skipped_config > 0 => {
                        none(format!("{prefix} is set by a config rule"))
                    }
                    Ok(_) => {
                        if let Err(e) = self.save() {
                            tracing::error!("saving the state: {}", requests::chain(&e));
                        }
                        AlertAction::Blocked {
                            block: prefix.to_string(),
                            ttl_secs,
                            expires: requests::rfc3339(expires),
                            offence,
                            traffic: traffic(condition.as_ref()),
                        }
                    }
                    Err(e) => none(format!("blocking {prefix} failed: {e}")),
                }
            }
        }
    }

    /// Keeps automatic blocks within their share of the block list: before
    /// a new one, the oldest automatic entries go as needed.
    fn make_room_for(&mut self, prefix: Prefix) -> Result<(), String> {
        let policy = self.engine.policy();
        if policy.block(&(Direction::Src, prefix)).is_some() {
            return Ok(());
        }
        let evict = response::make_room(
            policy.count_from(Origin::Auto),
            policy.autos_oldest_first(),
            policy.fill_levels().blocks_capacity,
            self.responder.config().auto_block_share_percent,
        );
        if evict.is_empty() {
            return Ok(());
        }
        match self.engine.unblock(&evict) {
            Ok(gone) => {
                for e in gone {
                    tracing::info!(
                        "removed the automatic block of {} (the oldest) to stay within \
                         [response] auto_block_share_percent",
                        e.prefix
                    );
                }
                Ok(())
            }
            Err(e) => Err(format!(
                "making room among automatic blocks for {prefix} failed: {e}"
            )),
        }
    }

    fn cleanup_detection(&mut self) {
        let now = now_ms();
        for (id, detector, repeats) in self.detector.cleanup(now) {
            if repeats > 0 {
                tracing::info!("alert {id} ({detector}) window closed: {repeats} repeats");
            }
        }
        let forgotten = self.responder.cleanup(now);
        if forgotten > 0 {
            tracing::debug!("forgot {forgotten} quiet offenders");
        }
    }

    /// Warns once per increase of the signals the datapath could not
    /// deliver.
    fn warn_signal_loss(&mut self) {
        let lost = self.live.detect().signals_lost;
        if lost > self.signals_lost_reported {
            tracing::warn!(
                "{} detection signals lost ({lost} in all): the SIGNALS ring buffer was full; \
                 raise detection.signal_ring_buffer_size",
                lost - self.signals_lost_reported
            );
            self.signals_lost_reported = lost;
        }
    }

    /// One consistent reading for a metrics scrape: the kernel's counters
    /// now, the policy, detection and response counts.
    fn readings(&mut self) -> metrics::Readings {
        let mut traffic = TrafficStats::new();
        match self.engine.counters() {
            Ok(snap) => traffic.update(snap, Instant::now()),
            Err(e) => {
                tracing::warn!("metrics: reading the counters: {e}");
                traffic = self.live.clone();
            }
        }
        let policy = self.engine.policy();
        let by_origin = [Origin::Config, Origin::Manual, Origin::Auto]
            .map(|o| (o.as_str(), policy.count_from(o) as u64));
        let fill = policy.fill_levels();
        let rule_hits = self.rule_hits();
        let by_interface: Vec<(String, ClassesMetrics)> = counted_as(self.engine.attachments())
            .into_iter()
            .map(|(name, slot)| (name, traffic.slot(slot)))
            .collect();
        metrics::Readings {
            by_interface,
            traffic,
            fill,
            blocks_by_origin: by_origin.to_vec(),
            detection: self.detector.counts(),
            response: self.responder.counts(),
            output_dropped: self.output_dropped,
            rule_hits,
            alerts_by_severity: self.alerts_by_severity,
            interfaces: self.interface_states(),
            interface_losses: self
                .interface_losses
                .iter()
                .map(|(n, c)| (n.clone(), *c))
                .collect(),
            crowdsec: self.crowdsec_status(),
            fleet: self.fleet.as_ref().map(crate::fleet::Fleet::status),
        }
    }

    /// Hit counters of every configured rule, for the metrics.
    fn rule_hits(&self) -> Vec<metrics::RuleHits> {
        let policy = self.engine.policy();
        let configured: Vec<BlockEntry> = policy
            .configured_keys()
            .filter_map(|k| policy.block(k))
            .filter(|e| e.id.is_some())
            .collect();
        let keys: Vec<_> = configured.iter().map(|e| e.key()).collect();
        let mut out = Vec::with_capacity(keys.len());
        match self.engine.hits_of(&keys, &[]) {
            Ok(hits) => out.extend(configured.iter().map(|e| {
                let h = hits.blocks.get(&e.key()).copied().unwrap_or_default();
                metrics::RuleHits {
                    id: e.id.clone().unwrap_or_default(),
                    kind: "address",
                    packets: h.packets,
                    bytes: h.bytes,
                }
            })),
            Err(e) => tracing::warn!("metrics: reading the rules' hits: {e}"),
        }
        match self.engine.port_rule_hits() {
            Ok(hits) => out.extend(self.engine.policy().port_rules().iter().enumerate().map(
                |(i, r)| {
                    let h = hits.get(&(i as u32 + 1)).copied().unwrap_or_default();
                    metrics::RuleHits {
                        id: r.id.clone(),
                        kind: "port",
                        packets: h.packets,
                        bytes: h.bytes,
                    }
                },
            )),
            Err(e) => tracing::warn!("metrics: reading the port rules' hits: {e}"),
        }
        out
    }

    /// Saves what changed now, or (while a large change holds the store)
    /// when that change ends: for the daemon's own changes (automatic
    /// blocks, expiries), which no client waits on.
    fn save(&mut self) -> Result<(), StoreError> {
        if self.store.is_none() {
            return Ok(());
        }
        self.save_now()
    }

    /// Writes what changed in the policy since the last save to the store
    /// (one transaction of the changed rows). On failure the changes are
    /// kept for the next save.
    fn save_now(&mut self) -> Result<(), StoreError> {
        let store = self.store.as_mut().ok_or(StoreError::Busy)?;
        let changes = self.engine.take_policy_changes();
        if !changes.is_empty()
            && let Err(e) = store.write(self.engine.policy(), &changes)
        {
            self.engine.restore_policy_changes(changes);
            return Err(e);
        }
        self.fleet_publish(&changes.blocks);
        self.expired_unsaved = false;
        self.last_save = Instant::now();
        Ok(())
    }

    fn expire(&mut self) {
        match self.engine.expire(now_ms()) {
            Ok(gone) => {
                for e in &gone {
                    tracing::info!("{} block on {} {} expired", e.origin, e.direction, e.prefix);
                }
                if !gone.is_empty() {
                    self.expired_unsaved = true;
                }
            }
            Err(e) => tracing::error!("removing expired blocks: {e}"),
        }
        if self.expired_unsaved
            && self.last_save.elapsed() >= EXPIRY_SAVE_DELAY
            && let Err(e) = self.save()
        {
            tracing::error!("saving the state: {}", requests::chain(&e));
        }
    }
}

/// What a block drops, for the alert: `all`, or its condition.
fn traffic(condition: Option<&ironpost_core::Condition>) -> String {
    condition.map_or_else(|| "all".to_owned(), ToString::to_string)
}

fn emit(out: &mut impl Write, line: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")?;
    out.flush()
}

fn event_line(ev: &PacketEvent) -> Value {
    let mut v = serde_json::to_value(ev).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert("type".into(), json!("event"));
    }
    v
}

/// The attached interfaces as their traffic is counted: each with its
/// STATS slot, in attachment order; interfaces that share a slot come as
/// one, named `a+b`.
pub fn counted_as(atts: &[Attachment]) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = Vec::new();
    for a in atts {
        match out.iter_mut().find(|(_, slot)| *slot == a.stats_slot) {
            Some((name, _)) => {
                name.push('+');
                name.push_str(&a.interface);
            }
            None => out.push((a.interface.clone(), a.stats_slot)),
        }
    }
    out
}

/// Counters and rates of every class, as the API carries them.
pub fn class_lines(m: &ClassesMetrics) -> Traffic {
    use ironpost_ebpf_engine::common::{
        CLASS_ICMP, CLASS_OTHER, CLASS_TCP, CLASS_TOTAL, CLASS_UDP,
    };
    let line = |i: usize| {
        let c = m[i];
        ClassLine {
            packets: c.packets,
            bytes: c.bytes,
            drops: c.drops,
            pps: c.pps,
            bps: c.bps,
            dps: c.dps,
        }
    };
    Traffic {
        tcp: line(CLASS_TCP),
        udp: line(CLASS_UDP),
        icmp: line(CLASS_ICMP),
        other: line(CLASS_OTHER),
        total: line(CLASS_TOTAL),
    }
}

/// A stats line: per-class counters and rates, for every interface
/// together and for each, and where they come from.
pub fn stats_line(atts: &[Attachment], st: &TrafficStats, last: bool) -> StatsLine {
    let first = atts.first();
    let events = st.events();
    let detect = st.detect();
    let all: ClassesMetrics = std::array::from_fn(|i| st.class(i));
    StatsLine {
        kind: "stats".into(),
        time: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        interface: first.map(|a| a.interface.clone()),
        interfaces: atts.iter().map(|a| a.interface.clone()).collect(),
        xdp_mode: first.map(|a| a.mode.as_str().to_owned()),
        program_id: first.map(|a| a.program_id),
        events: EventCounts {
            delivered: events.delivered,
            lost_ring_full: events.lost_ring_full,
            lost_budget: events.lost_budget,
        },
        events_lost: events.lost(),
        traffic: class_lines(&all),
        by_interface: counted_as(atts)
            .into_iter()
            .map(|(interface, slot)| InterfaceTraffic {
                interface,
                traffic: class_lines(&st.slot(slot)),
            })
            .collect(),
        detection: KernelDetection {
            sources_new: detect.sources_new,
            targets_new: detect.targets_new,
            signals: detect.signals,
            signals_lost: detect.signals_lost,
            sources_deferred: detect.sources_deferred,
            admit_over_budget: detect.admit_over_budget,
        },
        parse: st
            .parse()
            .named()
            .map(|(name, n)| (name.to_owned(), n))
            .collect(),
        last,
    }
}

#[cfg(test)]
mod tests {
    use ironpost_ebpf_engine::AttachedMode;

    use super::*;

    fn att(name: &str, slot: u32) -> Attachment {
        Attachment {
            interface: name.into(),
            ifindex: slot + 64,
            mode: AttachedMode::Skb,
            program_id: 1,
            pinned: None,
            stats_slot: slot,
        }
    }

    #[test]
    fn interfaces_sharing_a_counter_slot_are_reported_as_one() {
        let atts = [att("eth0", 2), att("eth1", 3), att("veth9", 2)];
        assert_eq!(
            counted_as(&atts),
            [("eth0+veth9".to_owned(), 2), ("eth1".to_owned(), 3)]
        );
        assert!(counted_as(&[]).is_empty());
    }
}
