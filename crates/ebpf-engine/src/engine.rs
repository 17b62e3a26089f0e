//! [`EbpfEngine`]: loads `ironpost_xdp`, attaches it to one or more
//! interfaces, owns its policy (and so the contents of its policy maps),
//! and runs the event reader and the stats poller.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ironpost_core::{HealthStatus, IronpostError, PacketEvent, Pipeline, Prefix, Signal};
use serde::Serialize;
use tokio::{sync::mpsc, task::JoinHandle};

use ironpost_policy::{
    AllowEntry, BlockEntry, ChangeReport, ListName, Members, OnConfigConflict, Policy, PolicyMaps,
    RuleKey,
};

use crate::{EngineConfig, EngineError, TrafficSnapshot, TrafficStats, XdpMode};

/// Hit counters of one entry, as the kernel counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Hits {
    /// Packets that matched.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
}

/// Hit counters of every policy entry.
#[derive(Clone, Debug, Default)]
pub struct PolicyHits {
    /// Block entries.
    pub blocks: HashMap<RuleKey, Hits>,
    /// Allow-list entries.
    pub allow: HashMap<Prefix, Hits>,
    /// Port rules, by slot (rule index + 1).
    pub port_rules: HashMap<u32, Hits>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The mode the program actually runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachedMode {
    /// In the driver.
    Native,
    /// Generic (skb) XDP.
    Skb,
}

impl AttachedMode {
    /// The mode's name as the config spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Skb => "skb",
        }
    }
}

/// Where and how the program is attached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// Interface name.
    pub interface: String,
    /// Interface index.
    pub ifindex: u32,
    /// Mode in use.
    pub mode: AttachedMode,
    /// Kernel id of the loaded program.
    pub program_id: u32,
    /// Where its link is pinned (it outlives the process), if it is.
    pub pinned: Option<std::path::PathBuf>,
    /// Its STATS slot: where the program counts its frames (shared with
    /// any other attached interface whose ifindex has the same remainder).
    pub stats_slot: u32,
}

/// Result of one BPF_PROG_TEST_RUN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// The XDP action returned (`XDP_DROP` = 1, `XDP_PASS` = 2).
    pub action: u32,
    /// Average time per run as the kernel measured it.
    pub duration: Duration,
}

/// Builds an [`EbpfEngine`].
#[derive(Debug, Default)]
pub struct EbpfEngineBuilder {
    config: EngineConfig,
    interfaces: Vec<String>,
    xdp_mode: Option<XdpMode>,
}

impl EbpfEngineBuilder {
    /// Uses this configuration (default: [`EngineConfig::default`]).
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }
    /// Attaches to this interface (call again for more).
    pub fn interface(mut self, name: impl Into<String>) -> Self {
        self.interfaces.push(name.into());
        self
    }
    /// Overrides the configuration's XDP mode.
    pub fn xdp_mode(mut self, mode: XdpMode) -> Self {
        self.xdp_mode = Some(mode);
        self
    }
    /// The engine, not yet loaded.
    pub fn build(self) -> EbpfEngine {
        let mut config = self.config;
        if let Some(mode) = self.xdp_mode {
            config.xdp_mode = mode;
        }
        let policy = Policy::new(
            config.blocklist_max_entries as usize,
            config.allow_max_entries as usize,
        );
        EbpfEngine {
            config,
            interfaces: self.interfaces,
            policy,
            inner: None,
            tasks: Vec::new(),
            started: None,
        }
    }
}

/// The packet engine. Dropping it detaches the program.
pub struct EbpfEngine {
    config: EngineConfig,
    interfaces: Vec<String>,
    policy: Policy,
    inner: Option<imp::Loaded>,
    tasks: Vec<JoinHandle<()>>,
    started: Option<Instant>,
}

impl std::fmt::Debug for EbpfEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfEngine")
            .field("interfaces", &self.interfaces)
            .field("loaded", &self.inner.is_some())
            .field("attachments", &self.attachments())
            .finish()
    }
}

/// A program and its maps loaded into the kernel, not yet the engine's
/// (see [`EbpfEngine::prepare`]).
pub struct Prepared(imp::Loaded);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

impl EbpfEngine {
    /// A builder.
    pub fn builder() -> EbpfEngineBuilder {
        EbpfEngineBuilder::default()
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The policy's keys changed since the last call, for the store (see
    /// [`Policy::take_changes`]).
    pub fn take_policy_changes(&mut self) -> ironpost_policy::Changes {
        self.policy.take_changes()
    }

    /// Packs the policy's memory after a large change made in parts (see
    /// [`Policy::compact`]).
    pub fn compact_policy(&mut self) {
        self.policy.compact();
    }

    /// Puts back changes the store could not write.
    pub fn restore_policy_changes(&mut self, c: ironpost_policy::Changes) {
        self.policy.restore_changes(c);
    }

    /// Loads the program and its maps into the kernel (without attaching)
    /// and writes the policy held so far to the maps.
    pub fn load(&mut self) -> Result<(), EngineError> {
        if self.inner.is_none() {
            let prepared = Self::prepare(&self.config)?;
            self.install(prepared)?;
        }
        Ok(())
    }

    /// Loads the program and its maps for `config` into the kernel, on any
    /// thread: the kernel's verifier takes about a second, which a daemon
    /// spends reading its saved policy meanwhile. [`EbpfEngine::install`]
    /// takes the result.
    pub fn prepare(config: &EngineConfig) -> Result<Prepared, EngineError> {
        Ok(Prepared(imp::Loaded::load(config)?))
    }

    /// Takes a program loaded by [`EbpfEngine::prepare`] (for this
    /// engine's configuration) and writes the policy held so far to its
    /// maps.
    pub fn install(&mut self, prepared: Prepared) -> Result<(), EngineError> {
        if self.inner.is_some() {
            return Ok(());
        }
        let mut loaded = prepared.0;
        self.policy.write_all(&mut loaded)?;
        self.inner = Some(loaded);
        Ok(())
    }

    fn loaded(&mut self) -> Result<&mut imp::Loaded, EngineError> {
        self.inner.as_mut().ok_or(EngineError::NotLoaded)
    }

    /// Loads if needed, writes the configured policy to the maps, then
    /// attaches to every interface, so policy is in force from the first
    /// packet. If one interface fails, those already attached are detached.
    pub fn load_and_attach(&mut self) -> Result<&[Attachment], EngineError> {
        if self.interfaces.is_empty() {
            return Err(EngineError::NoInterface);
        }
        self.load()?;
        self.apply_config()?;
        let mode = self.config.xdp_mode;
        for iface in self.interfaces.clone() {
            if let Err(e) = self.loaded()?.attach(&iface, mode) {
                let _ = self.loaded()?.detach_all();
                return Err(e);
            }
        }
        Ok(self.attachments())
    }

    /// Makes the configured part of the policy match the configuration.
    pub fn apply_config(&mut self) -> Result<ChangeReport, EngineError> {
        let rules = self.config.rules.clone();
        let allow = self.config.allow.clone();
        let now = now_ms();
        let maps = self.inner.as_mut().map(|l| l as &mut dyn PolicyMaps);
        Ok(self.policy.set_config(&rules, &allow, now, maps)?)
    }

    /// Replaces the configuration's rules and allow list with those of
    /// `config` and applies them. Settings that only take effect at load
    /// (sizes, budget) are refused with the names of what differs; on any
    /// error the policy in force stays as it was.
    pub fn reload_config(&mut self, config: EngineConfig) -> Result<ChangeReport, EngineError> {
        let mut fixed = Vec::new();
        if config.ring_buffer_size != self.config.ring_buffer_size {
            fixed.push("ring_buffer_size");
        }
        if config.blocklist_max_entries != self.config.blocklist_max_entries {
            fixed.push("blocklist_max_entries");
        }
        if config.allow_max_entries != self.config.allow_max_entries {
            fixed.push("allow_max_entries");
        }
        if config.event_budget_per_cpu != self.config.event_budget_per_cpu {
            fixed.push("event_budget_per_cpu");
        }
        if config.max_tracked_fragments != self.config.max_tracked_fragments {
            fixed.push("max_tracked_fragments");
        }
        let mut fixed: Vec<String> = fixed.into_iter().map(|f| format!("ebpf.{f}")).collect();
        if config.detection.max_tracked_sources != self.config.detection.max_tracked_sources {
            fixed.push("detection.max_tracked_sources".into());
        }
        if config.detection.enabled && !self.config.detection.enabled {
            fixed.push("detection.enabled (the tracking maps were sized at start)".into());
        }
        if config.detection.signal_ring_buffer_size != self.config.detection.signal_ring_buffer_size
        {
            fixed.push("detection.signal_ring_buffer_size".into());
        }
        if !fixed.is_empty() {
            return Err(EngineError::Refused(format!(
                "{} changed: these take effect only at start; restart ironpost \
                 (nothing was changed)",
                fixed.join(", ")
            )));
        }
        let maps = self.inner.as_mut().map(|l| l as &mut dyn PolicyMaps);
        let report = self
            .policy
            .set_config(&config.rules, &config.allow, now_ms(), maps)?;
        if let Some(l) = self.inner.as_mut() {
            l.set_detection(&config.detection)?;
        }
        self.config.detection = config.detection;
        self.config.rules = config.rules;
        self.config.allow = config.allow;
        self.config.xdp_mode = config.xdp_mode;
        Ok(report)
    }

    /// Adds or updates block entries (all or nothing); see
    /// [`Policy::upsert_blocks`].
    pub fn block(
        &mut self,
        entries: Vec<BlockEntry>,
        on_conflict: OnConfigConflict,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<ChangeReport, EngineError> {
        let maps = self.inner.as_mut().map(|l| l as &mut dyn PolicyMaps);
        Ok(self
            .policy
            .upsert_members(entries, on_conflict, maps, progress)?)
    }

    /// Removes manual or automatic block entries from every list (all or
    /// nothing).
    pub fn unblock(&mut self, keys: &[RuleKey]) -> Result<Vec<BlockEntry>, EngineError> {
        let maps = self.inner.as_mut().map(|l| l as &mut dyn PolicyMaps);
        Ok(self.policy.remove_blocks(keys, false, maps)?)
    }

    /// Removes keys from one list; those in other lists stay blocked (see
    /// [`Policy::remove_members`]).
    pub fn unblock_from(
        &mut self,
        list: &ListName,
        keys: &[RuleKey],
    ) -> Result<Vec<BlockEntry>, EngineError> {
        let maps = self.inner.as_mut().map(|l| l as &mut dyn PolicyMaps);
        Ok(self.policy.remove_members(list, keys, maps)?)
    }

    /// Puts memberships back as a snapshot holds them (see
    /// [`Policy::restore_members`]).
    pub fn restore_members(
        &mut self,
        snapshot: Vec<(RuleKey, Members)>,
    ) -> Result<(), EngineError> {
        let maps = self.inner.as_mut().map(|l| l as &mut dyn PolicyMaps);
        Ok(self.policy.restore_members(snapshot, maps)?)
    }

    /// Adds allow-list entries (all or nothing).
    pub fn allow(&mut self, entries: Vec<AllowEntry>) -> Result<ChangeReport, EngineError> {
        let maps = self.inner.as_mut().map(|l| l as &mut dyn PolicyMaps);
        Ok(self.policy.add_allow(entries, maps)?)
    }

    /// Removes manual allow-list entries (all or nothing).
    pub fn disallow(&mut self, prefixes: &[Prefix]) -> Result<Vec<AllowEntry>, EngineError> {
        let maps = self.inner.as_mut().map(|l| l as &mut dyn PolicyMaps);
        Ok(self.policy.remove_allow(prefixes, false, maps)?)
    }

    /// Removes the entries that expired at or before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) -> Result<Vec<BlockEntry>, EngineError> {
        let maps = self.inner.as_mut().map(|l| l as &mut dyn PolicyMaps);
        Ok(self.policy.expire(now_ms, maps)?)
    }

    /// The kernel's hit counters of every policy entry.
    pub fn hits(&mut self) -> Result<PolicyHits, EngineError> {
        let loaded = self.inner.as_ref().ok_or(EngineError::NotLoaded)?;
        let blocks: Vec<RuleKey> = self.policy.block_keys().copied().collect();
        let allow: Vec<Prefix> = self.policy.allow_entries().map(|a| a.prefix).collect();
        loaded.hits(
            blocks.iter(),
            allow.iter(),
            self.policy.port_rules().len() as u32,
        )
    }

    /// Hit counters of the given block and allow entries only.
    pub fn hits_of(&self, blocks: &[RuleKey], allow: &[Prefix]) -> Result<PolicyHits, EngineError> {
        let loaded = self.inner.as_ref().ok_or(EngineError::NotLoaded)?;
        loaded.hits(blocks.iter(), allow.iter(), 0)
    }

    /// Hit counters of the port rules, by slot (rule index + 1).
    pub fn port_rule_hits(&self) -> Result<HashMap<u32, Hits>, EngineError> {
        let loaded = self.inner.as_ref().ok_or(EngineError::NotLoaded)?;
        let n = self.policy.port_rules().len() as u32;
        Ok(loaded.hits([].iter(), [].iter(), n)?.port_rules)
    }

    /// Where the program is attached (the first interface), if it is.
    pub fn attachment(&self) -> Option<&Attachment> {
        self.attachments().first()
    }

    /// Every interface the program is attached to.
    pub fn attachments(&self) -> &[Attachment] {
        self.inner.as_ref().map(|l| l.attachments()).unwrap_or(&[])
    }

    /// Attaches to one more interface.
    pub fn attach_interface(&mut self, name: &str) -> Result<&Attachment, EngineError> {
        let mode = self.config.xdp_mode;
        if !self.interfaces.iter().any(|i| i == name) {
            self.interfaces.push(name.to_owned());
        }
        self.loaded()?.attach(name, mode)
    }

    /// Detaches from one interface.
    pub fn detach_interface(&mut self, name: &str) -> Result<(), EngineError> {
        self.interfaces.retain(|i| i != name);
        match self.inner.as_mut() {
            Some(l) => l.detach(name),
            None => Ok(()),
        }
    }

    /// The interfaces the engine is configured for, attached or not.
    pub fn interfaces(&self) -> &[String] {
        &self.interfaces
    }

    /// Forgets the attachment to `name`, whose device went away (the kernel
    /// removed the program with it, or the name now belongs to another
    /// device). The interface stays configured: [`Self::attach_interface`]
    /// attaches to it again when it returns.
    pub fn forget_interface(&mut self, name: &str) {
        if let Some(l) = self.inner.as_mut() {
            l.forget(name);
        }
    }

    /// Detaches the program from every interface (it stays loaded).
    pub fn detach(&mut self) -> Result<(), EngineError> {
        match self.inner.as_mut() {
            Some(l) => l.detach_all(),
            None => Ok(()),
        }
    }

    /// Reads the counters now, summed over CPUs.
    pub fn counters(&mut self) -> Result<TrafficSnapshot, EngineError> {
        self.loaded()?.counters()
    }

    /// Runs the loaded program once per `repeat` on `packet` through
    /// BPF_PROG_TEST_RUN (no attach needed); counters and events are real.
    pub fn test_run(&mut self, packet: &[u8], repeat: u32) -> Result<TestRunOutcome, EngineError> {
        self.loaded()?.test_run(packet, repeat)
    }

    /// Starts the task that reads EVENTS and sends each decoded event to
    /// `tx`. It waits on the ring buffer's fd (epoll), never busy-polls.
    /// Must be called within a tokio runtime.
    pub fn spawn_event_reader(&mut self, tx: mpsc::Sender<PacketEvent>) -> Result<(), EngineError> {
        let task = self.loaded()?.spawn_event_reader(tx)?;
        self.tasks.push(task);
        Ok(())
    }

    /// Starts the task that reads SIGNALS (threshold crossings of the
    /// detection tracking) and sends each decoded signal to `tx`. Must be
    /// called within a tokio runtime.
    pub fn spawn_signal_reader(&mut self, tx: mpsc::Sender<Signal>) -> Result<(), EngineError> {
        let task = self.loaded()?.spawn_signal_reader(tx)?;
        self.tasks.push(task);
        Ok(())
    }

    /// Starts the task that reads the counters every `interval` and sends
    /// the updated statistics (with rates) to `tx`; the first message,
    /// at once, holds the counters as they were when this was called.
    pub fn spawn_stats_poller(
        &mut self,
        interval: Duration,
        tx: mpsc::Sender<TrafficStats>,
    ) -> Result<(), EngineError> {
        let mut reader = self.loaded()?.stats_reader()?;
        // The baseline is taken now, not when the task first runs, so rates
        // cover all traffic after this call returns.
        let mut stats = TrafficStats::new();
        stats.update(reader.read()?, Instant::now());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            if tx.send(stats.clone()).await.is_err() {
                return;
            }
            loop {
                tick.tick().await;
                match reader.read() {
                    Ok(snap) => {
                        stats.update(snap, Instant::now());
                        if tx.send(stats.clone()).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => tracing::warn!("reading counters: {e}"),
                }
            }
        });
        self.tasks.push(task);
        Ok(())
    }

    /// Time since `start`, if running.
    pub fn uptime(&self) -> Option<Duration> {
        self.started.map(|t| t.elapsed())
    }

    /// Stops the engine but leaves every pinned link attached, with the
    /// policy in force, for the next run to take over (links that are not
    /// pinned are detached).
    pub fn keep_filtering(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(l) = self.inner.as_mut() {
            l.keep_pinned();
        }
        self.inner = None;
        self.started = None;
    }

    fn shutdown(&mut self) -> Result<(), EngineError> {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let result = self.detach();
        self.inner = None;
        self.started = None;
        result
    }
}

impl Drop for EbpfEngine {
    /// An engine dropped without [`Pipeline::stop`] (an error, a panic)
    /// leaves its pinned links attached: the filter fails closed for what
    /// it blocks.
    fn drop(&mut self) {
        self.keep_filtering();
    }
}

impl Pipeline for EbpfEngine {
    async fn start(&mut self) -> Result<(), IronpostError> {
        if self.started.is_some() {
            return Err(EngineError::AlreadyRunning.into());
        }
        self.load_and_attach()?;
        self.started = Some(Instant::now());
        Ok(())
    }

    async fn stop(&mut self) -> Result<(), IronpostError> {
        self.shutdown().map_err(Into::into)
    }

    fn health(&self) -> HealthStatus {
        if self.started.is_none() {
            return HealthStatus::Unhealthy("not started".into());
        }
        if self.attachments().len() < self.interfaces.len() {
            return HealthStatus::Unhealthy(format!(
                "attached to {} of {} interfaces",
                self.attachments().len(),
                self.interfaces.len()
            ));
        }
        if let Some(i) = self.tasks.iter().position(JoinHandle::is_finished) {
            return HealthStatus::Degraded(format!("background task {i} has stopped"));
        }
        HealthStatus::Healthy
    }
}

mod imp {
    use std::{
        collections::HashMap as StdHashMap,
        ffi::CString,
        io,
        path::{Path, PathBuf},
    };

    use aya::{
        Ebpf, EbpfLoader,
        maps::{
            Array, HashMap, MapData, MapError, PerCpuArray, PerCpuValues, RingBuf,
            lpm_trie::{Key, LpmTrie},
        },
        programs::{
            ProgramError, SchedClassifier, TcAttachType, TestRun, TestRunOptions, Xdp,
            XdpMode as AyaXdpMode,
            links::FdLink,
            tc::SchedClassifierLinkId,
            xdp::{XdpLink, XdpLinkId},
        },
    };
    use ironpost_core::{Direction, PacketEvent, Prefix, Signal};
    use ironpost_ebpf_common::{
        ADMIT_SEED_GLOBAL, DetectConfig, DetectCounters, EGRESS_PROGRAM_NAME, EVENT_BUDGET_GLOBAL,
        EventCounters, PROGRAM_NAME, ParseCounters, RuleValue, STATS_SLOTS, SignalRecord,
        TABLE_FRAGS, TABLE_MASKS_GLOBAL, TABLE_SLOW, TABLE_SOURCES, TABLE_TARGETS, TABLES,
        TRACKED_SLOW, TRACKED_TARGETS, TrafficCounters, hash, maps, stats_slot, table_buckets,
    };
    use tokio::{io::unix::AsyncFd, sync::mpsc, task::JoinHandle};

    use super::{AttachedMode, Attachment, Hits, PolicyHits, TestRunOutcome};
    use ironpost_policy::{PolicyError, PolicyMaps, RuleKey};

    use crate::{EngineConfig, EngineError, TrafficSnapshot, XdpMode, batch, event, pin};

    /// How the engine holds one interface's XDP link.
    pub(super) enum Held {
        /// In the program's own links: detached when the process exits.
        Owned(XdpLinkId),
        /// Pinned in bpffs: attached until the pin is removed.
        Pinned {
            /// The link.
            link: FdLink,
            /// Its pin.
            path: PathBuf,
        },
    }

    /// The XDP object built by build.rs.
    static XDP_OBJECT: &[u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ironpost-ebpf"));

    pub(super) struct Loaded {
        ebpf: Ebpf,
        program_id: u32,
        links: Vec<(Held, Attachment)>,
        /// Where XDP links are pinned (none: links die with the process).
        pin_dir: Option<PathBuf>,
        /// The egress watcher's links, by interface.
        egress_links: Vec<(SchedClassifierLinkId, String)>,
        attachments: Vec<Attachment>,
    }

    /// A random seed for the admission sketch's hash (getrandom; the
    /// monotonic clock if that fails, which still differs per start).
    fn random_seed() -> u32 {
        let mut buf = [0u8; 4];
        // SAFETY: the buffer is valid for 4 bytes of writes.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n == 4 {
            u32::from_ne_bytes(buf)
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0x5eed)
        }
    }

    fn program_err(program: &'static str, source: ProgramError) -> EngineError {
        EngineError::Program {
            program,
            source: Box::new(source),
        }
    }

    fn is_eperm(e: &io::Error) -> bool {
        matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
    }

    fn map_err(map: &'static str, source: MapError) -> EngineError {
        EngineError::Map {
            map,
            source: Box::new(source),
        }
    }

    /// Whether the loader's error comes from the kernel refusing this
    /// process the privilege (EPERM or EACCES anywhere in its chain).
    fn denied(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cur = Some(e);
        while let Some(err) = cur {
            if let Some(io) = err.downcast_ref::<io::Error>()
                && is_eperm(io)
            {
                return true;
            }
            cur = err.source();
        }
        false
    }

    impl Loaded {
        /// Runs a program load again when the verifier gave up because a
        /// signal arrived for this process (it returns EAGAIN then; a
        /// SIGCHLD of any child of a multi-threaded process will do),
        /// as libbpf does: up to five attempts.
        fn retry_interrupted(
            mut load: impl FnMut() -> Result<(), ProgramError>,
        ) -> Result<(), ProgramError> {
            let mut attempt = 1;
            loop {
                match load() {
                    Err(ProgramError::LoadError { io_error, .. })
                        if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < 5 =>
                    {
                        tracing::debug!("program load interrupted by a signal; trying again");
                        attempt += 1;
                    }
                    r => return r,
                }
            }
        }

        pub(super) fn load(cfg: &EngineConfig) -> Result<Self, EngineError> {
            let budget = cfg.event_budget_per_cpu;
            let seed = random_seed();
            let v4_states = [
                hash::v4_state(seed),
                hash::v4_state(seed ^ hash::TARGET_SALT),
            ];
            // With detection off, the tracking maps are not used: keep them
            // at one entry instead of megabytes.
            let (sources, targets, slow) = if cfg.detection.enabled {
                (
                    cfg.detection.max_tracked_sources,
                    TRACKED_TARGETS,
                    TRACKED_SLOW,
                )
            } else {
                (1, 1, 1)
            };
            let mut masks = [0u32; TABLES];
            masks[TABLE_SOURCES] = table_buckets(sources) - 1;
            masks[TABLE_TARGETS] = table_buckets(targets) - 1;
            masks[TABLE_FRAGS] = table_buckets(cfg.max_tracked_fragments) - 1;
            masks[TABLE_SLOW] = table_buckets(slow) - 1;
            let blocks = cfg.blocklist_max_entries;
            let allow = cfg.allow_max_entries;
            let mut ebpf = EbpfLoader::new()
                .map_max_entries(maps::BLOCKLIST, blocks)
                .map_max_entries(maps::SRC_V4, blocks)
                .map_max_entries(maps::SRC_V6, blocks)
                .map_max_entries(maps::DST_V4, blocks)
                .map_max_entries(maps::DST_V6, blocks)
                .map_max_entries(maps::ALLOW_V4, allow)
                .map_max_entries(maps::ALLOW_V6, allow)
                .map_max_entries(maps::EVENTS, cfg.ring_buffer_size)
                .map_max_entries(maps::SOURCES, masks[TABLE_SOURCES] + 1)
                .map_max_entries(maps::TARGETS, masks[TABLE_TARGETS] + 1)
                .map_max_entries(maps::FRAGS, masks[TABLE_FRAGS] + 1)
                .map_max_entries(maps::SLOW, masks[TABLE_SLOW] + 1)
                .map_max_entries(maps::SIGNALS, cfg.detection.signal_ring_buffer_size)
                .override_global(EVENT_BUDGET_GLOBAL, &budget, true)
                .override_global(ADMIT_SEED_GLOBAL, &seed, true)
                .override_global(hash::V4_STATES_GLOBAL, &v4_states, true)
                .override_global(TABLE_MASKS_GLOBAL, &masks, true)
                .load(XDP_OBJECT)
                .map_err(|e| {
                    if denied(&e) {
                        EngineError::PermissionDenied("loading the XDP program".into())
                    } else {
                        EngineError::Object(Box::new(e))
                    }
                })?;
            let prog: &mut Xdp = ebpf
                .program_mut(PROGRAM_NAME)
                .ok_or(EngineError::Missing {
                    what: "program",
                    name: PROGRAM_NAME,
                })?
                .try_into()
                .map_err(|e: ProgramError| program_err(PROGRAM_NAME, e))?;
            Self::retry_interrupted(|| prog.load()).map_err(|e| match &e {
                ProgramError::LoadError { io_error, .. } if is_eperm(io_error) => {
                    EngineError::PermissionDenied("loading the XDP program".into())
                }
                _ => program_err(PROGRAM_NAME, e),
            })?;
            let program_id = prog.info().map_err(|e| program_err(PROGRAM_NAME, e))?.id();
            tracing::debug!(program_id, "loaded {PROGRAM_NAME}");
            let egress: &mut SchedClassifier = ebpf
                .program_mut(EGRESS_PROGRAM_NAME)
                .ok_or(EngineError::Missing {
                    what: "program",
                    name: EGRESS_PROGRAM_NAME,
                })?
                .try_into()
                .map_err(|e: ProgramError| program_err(EGRESS_PROGRAM_NAME, e))?;
            Self::retry_interrupted(|| egress.load()).map_err(|e| match &e {
                ProgramError::LoadError { io_error, .. }
                    if io_error.raw_os_error() == Some(libc::EPERM) =>
                {
                    EngineError::PermissionDenied("loading the TC egress program".into())
                }
                _ => program_err(EGRESS_PROGRAM_NAME, e),
            })?;
            let mut loaded = Self {
                ebpf,
                program_id,
                links: Vec::new(),
                pin_dir: cfg.pin_dir.clone(),
                egress_links: Vec::new(),
                attachments: Vec::new(),
            };
            loaded.set_detection(&cfg.detection)?;
            Ok(loaded)
        }

        /// Writes the detection windows and thresholds.
        pub(super) fn set_detection(
            &mut self,
            detection: &ironpost_core::config::DetectionConfig,
        ) -> Result<(), EngineError> {
            let params = crate::config::detect_params(detection);
            let name = maps::DETECT_CONFIG;
            let mut map: Array<&mut MapData, DetectConfig> =
                Array::try_from(self.map_mut(name)?).map_err(|e| map_err(name, e))?;
            map.set(0, params, 0).map_err(|e| map_err(name, e))
        }

        fn program(&mut self) -> Result<&mut Xdp, EngineError> {
            self.ebpf
                .program_mut(PROGRAM_NAME)
                .ok_or(EngineError::NotLoaded)?
                .try_into()
                .map_err(|e: ProgramError| program_err(PROGRAM_NAME, e))
        }

        pub(super) fn attachments(&self) -> &[Attachment] {
            &self.attachments
        }

        pub(super) fn attach(
            &mut self,
            interface: &str,
            mode: XdpMode,
        ) -> Result<&Attachment, EngineError> {
            if self.attachments.iter().any(|a| a.interface == interface) {
                self.detach(interface)?;
            }
            let ifindex = if_index(interface)?;
            let program_id = self.program_id;
            let adopted = match self.pin_dir.clone() {
                Some(dir) => self.adopt(&dir, interface, ifindex, mode)?,
                None => None,
            };
            let (held, used, how) = match adopted {
                Some((held, used, old)) => (
                    held,
                    used,
                    format!(" (program {old} replaced in the pinned link: no unfiltered instant)"),
                ),
                None => {
                    let (id, used) = self.attach_fresh(interface, ifindex, mode)?;
                    let held = self.hold(id, interface, used)?;
                    let how = match &held {
                        Held::Pinned { path, .. } => {
                            format!(" (link pinned at {})", path.display())
                        }
                        Held::Owned(_) => String::new(),
                    };
                    (held, used, how)
                }
            };
            let stats_slot = self.give_stats_slot(interface, ifindex);
            let att = Attachment {
                interface: interface.to_owned(),
                ifindex,
                mode: used,
                program_id,
                pinned: match &held {
                    Held::Pinned { path, .. } => Some(path.clone()),
                    Held::Owned(_) => None,
                },
                stats_slot,
            };
            tracing::info!(
                "attached {PROGRAM_NAME} (program id {program_id}) to {interface} in {} mode{how}",
                used.as_str()
            );
            self.links.push((held, att.clone()));
            self.attachments.push(att);
            self.attach_egress(interface);
            Ok(self.attachments.last().expect("just pushed"))
        }

        /// A new link of the program to `interface`, in `mode` (auto: native,
        /// else skb).
        fn attach_fresh(
            &mut self,
            interface: &str,
            ifindex: u32,
            mode: XdpMode,
        ) -> Result<(XdpLinkId, AttachedMode), EngineError> {
            let prog = self.program()?;
            let try_mode = |prog: &mut Xdp, m: AttachedMode| {
                let aya_mode = match m {
                    AttachedMode::Native => AyaXdpMode::Driver,
                    AttachedMode::Skb => AyaXdpMode::Skb,
                };
                prog.attach_to_if_index(ifindex, aya_mode)
                    .map_err(|e| attach_error(interface, m, e))
            };
            Ok(match mode {
                XdpMode::Native => (try_mode(prog, AttachedMode::Native)?, AttachedMode::Native),
                XdpMode::Skb => (try_mode(prog, AttachedMode::Skb)?, AttachedMode::Skb),
                XdpMode::Auto => match try_mode(prog, AttachedMode::Native) {
                    Ok(link) => (link, AttachedMode::Native),
                    Err(EngineError::PermissionDenied(m)) => {
                        return Err(EngineError::PermissionDenied(m));
                    }
                    Err(e) => {
                        tracing::warn!(
                            "native XDP refused on {interface} ({e}); falling back to skb mode"
                        );
                        (try_mode(prog, AttachedMode::Skb)?, AttachedMode::Skb)
                    }
                },
            })
        }

        /// Keeps a new link: pinned when there is a pin directory (taken
        /// out of the program's own links, which die with the process).
        fn hold(
            &mut self,
            id: XdpLinkId,
            interface: &str,
            mode: AttachedMode,
        ) -> Result<Held, EngineError> {
            let Some(dir) = self.pin_dir.clone() else {
                return Ok(Held::Owned(id));
            };
            let path = pin::link_path(&dir, interface);
            let link = self
                .program()?
                .take_link(id)
                .map_err(|e| EngineError::Attach {
                    interface: interface.to_owned(),
                    mode: mode.as_str(),
                    message: "taking the link to pin it failed".into(),
                    source: Box::new(e),
                })?;
            // A netlink attachment (kernels before 5.9) cannot be pinned;
            // dropping it here leaves it attached with no owner, so the
            // error says to restart without a pin directory.
            let link = FdLink::try_from(link).map_err(|e| EngineError::Pin {
                path: path.clone(),
                message: "this kernel attached XDP without a BPF link, which cannot be \
                          pinned; run with daemon.pin_dir = \"off\""
                    .into(),
                source: Some(Box::new(e)),
            })?;
            let pinned = link.pin(&path).map_err(|e| EngineError::Pin {
                path: path.clone(),
                message: "pinning the link failed".into(),
                source: Some(Box::new(e)),
            })?;
            Ok(Held::Pinned {
                link: pinned.into(),
                path,
            })
        }

        /// Takes over the link pinned for `interface` by an earlier run:
        /// swaps this program into it in one step. `None` when there is
        /// none, or when it is stale (its device is gone, or the mode asked
        /// for differs), in which case its pin is removed. A pin that holds
        /// something other than Ironpost's program is refused.
        fn adopt(
            &mut self,
            dir: &Path,
            interface: &str,
            ifindex: u32,
            mode: XdpMode,
        ) -> Result<Option<(Held, AttachedMode, u32)>, EngineError> {
            let path = pin::link_path(dir, interface);
            if !path.exists() {
                return Ok(None);
            }
            let pin_error =
                |message: String, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
                    EngineError::Pin {
                        path: path.clone(),
                        message,
                        source,
                    }
                };
            let stale = |why: &str| -> Result<Option<(Held, AttachedMode, u32)>, EngineError> {
                tracing::warn!("{}: {why}; attaching afresh", path.display());
                std::fs::remove_file(&path).map_err(|e| EngineError::Pin {
                    path: path.clone(),
                    message: "removing the stale pinned link failed".into(),
                    source: Some(Box::new(e)),
                })?;
                Ok(None)
            };
            let (link, old) = pin::open(&path)?;
            // Listing programs needs CAP_SYS_ADMIN, which the service does
            // not have: then the pin's place vouches for it (a directory of
            // Ironpost's own, that only root writes to).
            let mut denied = false;
            let name = aya::programs::loaded_programs()
                .filter_map(|p| p.map_err(|_| denied = true).ok())
                .find(|p| p.id() == old)
                .and_then(|p| p.name_as_str().map(str::to_owned));
            if name.is_none() && denied {
                tracing::debug!(
                    "{}: the name of program {old} cannot be read without CAP_SYS_ADMIN; taken \
                     over as Ironpost's, pinned in its own directory",
                    path.display()
                );
            } else if name.as_deref() != Some(PROGRAM_NAME) {
                return Err(pin_error(
                    format!(
                        "it runs program {old} ({}), not Ironpost's {PROGRAM_NAME}: remove the \
                         pin if nothing needs it (`ironpost unload -i {interface}`)",
                        name.as_deref().unwrap_or("no name")
                    ),
                    None,
                ));
            }
            let current = match pin::xdp_on(ifindex) {
                Ok(Some((id, m))) if id == old => m,
                Ok(_) => {
                    drop(link);
                    return stale(&format!(
                        "its program is not on the device now named {interface} (the device \
                         was deleted, or replaced)"
                    ));
                }
                Err(e) => {
                    return Err(pin_error(
                        format!("asking the kernel what {interface} runs failed"),
                        Some(Box::new(e)),
                    ));
                }
            };
            let wanted = match mode {
                XdpMode::Native => Some(AttachedMode::Native),
                XdpMode::Skb => Some(AttachedMode::Skb),
                XdpMode::Auto => None,
            };
            if wanted.is_some_and(|w| w != current) {
                drop(link);
                return stale(&format!(
                    "attached in {} mode, {} mode asked for: the link is made again (a mode \
                     change cannot be swapped in one step)",
                    current.as_str(),
                    wanted.map_or("", AttachedMode::as_str)
                ));
            }
            let link = XdpLink::try_from(link)
                .map_err(|e| pin_error("it is not an XDP link".into(), Some(Box::new(e))))?;
            let id = self.program()?.attach_to_link(link).map_err(|e| {
                pin_error("swapping the program in failed".into(), Some(Box::new(e)))
            })?;
            let taken = self
                .program()?
                .take_link(id)
                .map_err(|e| pin_error("taking the link failed".into(), Some(Box::new(e))))?;
            let link = FdLink::try_from(taken)
                .map_err(|e| pin_error("it is not a BPF link".into(), Some(Box::new(e))))?;
            Ok(Some((
                Held::Pinned {
                    link,
                    path: path.clone(),
                },
                current,
                old,
            )))
        }

        /// Attaches the egress watcher (TC, TCX where the kernel has it).
        /// Without it the datapath still filters and tracks ingress; only
        /// the refusal counts are missing, which the log says.
        fn attach_egress(&mut self, interface: &str) {
            let result = self
                .ebpf
                .program_mut(EGRESS_PROGRAM_NAME)
                .ok_or_else(|| format!("no program {EGRESS_PROGRAM_NAME}"))
                .and_then(|p| <&mut SchedClassifier>::try_from(p).map_err(|e| e.to_string()))
                .and_then(|p| {
                    let tcx = aya::util::KernelVersion::current()
                        .is_ok_and(|v| v >= aya::util::KernelVersion::new(6, 6, 0));
                    if !tcx {
                        // Before TCX, tc filters need the clsact qdisc.
                        let _ = aya::programs::tc::qdisc_add_clsact(interface);
                    }
                    p.attach(interface, TcAttachType::Egress)
                        .map_err(|e| format!("{e:#}"))
                });
            match result {
                Ok(link) => {
                    tracing::info!("attached {EGRESS_PROGRAM_NAME} to {interface} (TC egress)");
                    self.egress_links.push((link, interface.to_owned()));
                }
                Err(e) => tracing::warn!(
                    "could not attach {EGRESS_PROGRAM_NAME} to {interface} (TC egress): {e}; \
                     scans are detected from their probes only"
                ),
            }
        }

        fn detach_egress(&mut self, interface: &str) {
            let Some(i) = self.egress_links.iter().position(|(_, n)| n == interface) else {
                return;
            };
            let (link, _) = self.egress_links.remove(i);
            let result = self
                .ebpf
                .program_mut(EGRESS_PROGRAM_NAME)
                .ok_or_else(|| format!("no program {EGRESS_PROGRAM_NAME}"))
                .and_then(|p| <&mut SchedClassifier>::try_from(p).map_err(|e| e.to_string()))
                .and_then(|p| p.detach(link).map_err(|e| e.to_string()));
            if let Err(e) = result {
                tracing::warn!("detaching {EGRESS_PROGRAM_NAME} from {interface}: {e}");
            }
        }

        /// The STATS slot of `ifindex`, its counters zeroed first unless
        /// another attached interface counts there too (they then share it,
        /// and say so).
        fn give_stats_slot(&mut self, interface: &str, ifindex: u32) -> u32 {
            let slot = stats_slot(ifindex);
            if let Some(other) = self.attachments.iter().find(|a| a.stats_slot == slot) {
                tracing::warn!(
                    "{interface} (ifindex {ifindex}) shares its traffic counters with {} \
                     (ifindex {}): they are reported together",
                    other.interface,
                    other.ifindex
                );
            } else if let Err(e) = self.zero_stats_slot(slot) {
                tracing::warn!("{interface}: zeroing its traffic counters: {e}");
            }
            slot
        }

        /// Zeroes STATS slot `slot` on every CPU.
        fn zero_stats_slot(&mut self, slot: u32) -> Result<(), EngineError> {
            let name = maps::STATS;
            let cpus = aya::util::nr_cpus()
                .map_err(|(_, source)| EngineError::Reader { map: name, source })?;
            let mut map: PerCpuArray<&mut MapData, TrafficCounters> =
                PerCpuArray::try_from(self.map_mut(name)?).map_err(|e| map_err(name, e))?;
            let zero = PerCpuValues::try_from(vec![TrafficCounters::default(); cpus])
                .map_err(|source| EngineError::Reader { map: name, source })?;
            map.set(slot, zero, 0).map_err(|e| map_err(name, e))
        }

        pub(super) fn detach_all(&mut self) -> Result<(), EngineError> {
            let mut first_err = None;
            for name in self
                .attachments
                .iter()
                .map(|a| a.interface.clone())
                .collect::<Vec<_>>()
            {
                if let Err(e) = self.detach(&name) {
                    first_err.get_or_insert(e);
                }
            }
            first_err.map_or(Ok(()), Err)
        }

        pub(super) fn detach(&mut self, interface: &str) -> Result<(), EngineError> {
            let Some(i) = self
                .links
                .iter()
                .position(|(_, a)| a.interface == interface)
            else {
                return Ok(());
            };
            let (held, att) = self.links.remove(i);
            self.attachments.retain(|a| a.interface != interface);
            self.detach_egress(interface);
            self.release(held, true).map_err(|e| EngineError::Attach {
                interface: att.interface.clone(),
                mode: att.mode.as_str(),
                message: "detaching failed".into(),
                source: Box::new(e),
            })?;
            tracing::info!("detached {PROGRAM_NAME} from {}", att.interface);
            Ok(())
        }

        /// Lets go of a link: detached, or (`for_good` false) a pinned one
        /// left attached for the next run.
        fn release(&mut self, held: Held, for_good: bool) -> Result<(), ProgramError> {
            match held {
                Held::Owned(id) => self
                    .program()
                    .map_err(|_| ProgramError::NotLoaded)?
                    .detach(id),
                Held::Pinned { link, path } => {
                    if for_good && let Err(e) = std::fs::remove_file(&path) {
                        tracing::warn!("removing the pin {}: {e}", path.display());
                    }
                    // Closing the last descriptor of an unpinned link
                    // detaches it.
                    drop(link);
                    Ok(())
                }
            }
        }

        /// Leaves every pinned link attached (with this program and its
        /// maps) for the next run; detaches the rest.
        pub(super) fn keep_pinned(&mut self) {
            for (held, att) in std::mem::take(&mut self.links) {
                let pinned = matches!(held, Held::Pinned { .. });
                if let Err(e) = self.release(held, false) {
                    tracing::warn!("detaching from {}: {e}", att.interface);
                }
                if pinned {
                    tracing::info!(
                        "{}: the filter stays attached (pinned) with the policy in force now; \
                         the next start takes it over without a gap (`ironpost unload` removes it)",
                        att.interface
                    );
                }
            }
            self.attachments.clear();
        }

        /// Drops the links of an interface whose device is gone (their
        /// pins too: a new device gets a new link). Closing them is all
        /// that is left to do: a link of a deleted device is already
        /// detached, so a failure here is expected and only logged.
        pub(super) fn forget(&mut self, interface: &str) {
            let Some(i) = self
                .links
                .iter()
                .position(|(_, a)| a.interface == interface)
            else {
                return;
            };
            let (held, _) = self.links.remove(i);
            self.attachments.retain(|a| a.interface != interface);
            self.detach_egress(interface);
            if let Err(e) = self.release(held, true) {
                tracing::debug!("closing the link to the departed {interface}: {e}");
            }
        }

        /// Writes new block entries, all of one map, in as few calls as
        /// the kernel takes; where it refuses a batch, the rest one by one
        /// (so that an entry that fails is named by its own error). On
        /// failure, also says how many of the first ones were written.
        fn add_rules_batched(
            &mut self,
            rules: &[(RuleKey, RuleValue)],
        ) -> Result<(), (usize, EngineError)> {
            let Some((first, _)) = rules.first() else {
                return Ok(());
            };
            let name = if is_exact(first) {
                maps::BLOCKLIST
            } else {
                trie_name(first)
            };
            debug_assert!(
                rules.iter().all(|(k, _)| is_exact(k) == is_exact(first)
                    && (is_exact(k) || trie_name(k) == name))
            );
            let values: Vec<RuleValue> = rules.iter().map(|(_, v)| *v).collect();
            let data = match self.map_mut(name).map_err(|e| (0, e))? {
                aya::maps::Map::HashMap(d) | aya::maps::Map::LpmTrie(d) => &*d,
                _ => return Err((0, EngineError::Missing { what: "map", name })),
            };
            let r = if is_exact(first) {
                let keys: Vec<u32> = rules
                    .iter()
                    .map(|(k, _)| u32::from_ne_bytes(v4(&k.1).data()))
                    .collect();
                batch::update(data, &keys, &values)
            } else if first.1.is_ipv4() {
                let keys: Vec<Key<[u8; 4]>> = rules.iter().map(|(k, _)| v4(&k.1)).collect();
                batch::update(data, &keys, &values)
            } else {
                let keys: Vec<Key<[u8; 16]>> = rules.iter().map(|(k, _)| v6(&k.1)).collect();
                batch::update(data, &keys, &values)
            };
            let Err((done, e)) = r else {
                return Ok(());
            };
            tracing::debug!(
                "{name}: a batch write stopped after {done} of {} entries ({e}); writing the \
                 rest one by one",
                rules.len()
            );
            for (i, (key, value)) in rules.iter().enumerate().skip(done) {
                MapWrites::set_rule(self, key, value, false).map_err(|e| (i, e))?;
            }
            Ok(())
        }

        fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, EngineError> {
            self.ebpf
                .map_mut(name)
                .ok_or(EngineError::Missing { what: "map", name })
        }

        /// Hit counters of the given entries, looked up one by one (an
        /// exact-key lookup per entry; iterating a large trie is slower).
        pub(super) fn hits<'a>(
            &self,
            blocks: impl Iterator<Item = &'a RuleKey>,
            allow: impl Iterator<Item = &'a Prefix>,
            port_slots: u32,
        ) -> Result<PolicyHits, EngineError> {
            let mut out = PolicyHits::default();
            let hits = |v: RuleValue| Hits {
                packets: v.packets,
                bytes: v.bytes,
            };
            let get = |name: &'static str| {
                self.ebpf
                    .map(name)
                    .ok_or(EngineError::Missing { what: "map", name })
            };
            let exact: HashMap<&MapData, u32, RuleValue> = HashMap::try_from(get(maps::BLOCKLIST)?)
                .map_err(|e| map_err(maps::BLOCKLIST, e))?;
            let trie4 = |name| -> Result<LpmTrie<&MapData, [u8; 4], RuleValue>, EngineError> {
                LpmTrie::try_from(get(name)?).map_err(|e| map_err(name, e))
            };
            let trie6 = |name| -> Result<LpmTrie<&MapData, [u8; 16], RuleValue>, EngineError> {
                LpmTrie::try_from(get(name)?).map_err(|e| map_err(name, e))
            };
            let (src4, src6, dst4, dst6) = (
                trie4(maps::SRC_V4)?,
                trie6(maps::SRC_V6)?,
                trie4(maps::DST_V4)?,
                trie6(maps::DST_V6)?,
            );
            for key in blocks {
                let v = if is_exact(key) {
                    exact.get(&u32::from_ne_bytes(v4(&key.1).data()), 0)
                } else {
                    match (key.0, key.1.is_ipv4()) {
                        (Direction::Src, true) => src4.get(&v4(&key.1), 0),
                        (Direction::Src, false) => src6.get(&v6(&key.1), 0),
                        (Direction::Dst, true) => dst4.get(&v4(&key.1), 0),
                        (Direction::Dst, false) => dst6.get(&v6(&key.1), 0),
                    }
                };
                if let Ok(v) = v {
                    out.blocks.insert(*key, hits(v));
                }
            }
            let (allow4, allow6) = (trie4(maps::ALLOW_V4)?, trie6(maps::ALLOW_V6)?);
            for p in allow {
                let v = if p.is_ipv4() {
                    allow4.get(&v4(p), 0)
                } else {
                    allow6.get(&v6(p), 0)
                };
                if let Ok(v) = v {
                    out.allow.insert(*p, hits(v));
                }
            }
            let table: Array<&MapData, RuleValue> = Array::try_from(get(maps::PORT_RULE_TABLE)?)
                .map_err(|e| map_err(maps::PORT_RULE_TABLE, e))?;
            for slot in 1..=port_slots {
                let v = table
                    .get(&slot, 0)
                    .map_err(|e| map_err(maps::PORT_RULE_TABLE, e))?;
                out.port_rules.insert(slot, hits(v));
            }
            Ok(out)
        }

        /// A second handle on a per-CPU array map, for the stats thread: its
        /// descriptor duplicated (opening it again by id would need
        /// CAP_SYS_ADMIN, which the service does not have).
        fn map_dup(&self, name: &'static str) -> Result<MapData, EngineError> {
            let map = self
                .ebpf
                .map(name)
                .ok_or(EngineError::Missing { what: "map", name })?;
            let aya::maps::Map::PerCpuArray(data) = map else {
                return Err(EngineError::Missing {
                    what: "per-CPU array map",
                    name,
                });
            };
            let fd = std::os::fd::AsFd::as_fd(data.fd())
                .try_clone_to_owned()
                .map_err(|io_error| {
                    map_err(
                        name,
                        MapError::SyscallError(aya::sys::SyscallError {
                            call: "dup",
                            io_error,
                        }),
                    )
                })?;
            MapData::from_fd(fd).map_err(|e| map_err(name, e))
        }

        pub(super) fn stats_reader(&self) -> Result<StatsReader, EngineError> {
            let open = |name: &'static str| -> Result<aya::maps::Map, EngineError> {
                Ok(aya::maps::Map::PerCpuArray(self.map_dup(name)?))
            };
            Ok(StatsReader {
                stats: PerCpuArray::try_from(open(maps::STATS)?)
                    .map_err(|e| map_err(maps::STATS, e))?,
                events: PerCpuArray::try_from(open(maps::EVENT_COUNTERS)?)
                    .map_err(|e| map_err(maps::EVENT_COUNTERS, e))?,
                detect: PerCpuArray::try_from(open(maps::DETECT_COUNTERS)?)
                    .map_err(|e| map_err(maps::DETECT_COUNTERS, e))?,
                parse: PerCpuArray::try_from(open(maps::PARSE_COUNTERS)?)
                    .map_err(|e| map_err(maps::PARSE_COUNTERS, e))?,
            })
        }

        pub(super) fn counters(&mut self) -> Result<TrafficSnapshot, EngineError> {
            self.stats_reader()?.read()
        }

        pub(super) fn test_run(
            &mut self,
            packet: &[u8],
            repeat: u32,
        ) -> Result<TestRunOutcome, EngineError> {
            let prog = self.program()?;
            let opts = TestRunOptions {
                data_in: Some(packet),
                repeat: repeat.max(1),
                ..TestRunOptions::default()
            };
            let r = prog
                .test_run(opts)
                .map_err(|e| EngineError::TestRun(Box::new(e)))?;
            Ok(TestRunOutcome {
                action: r.return_value,
                duration: r.duration,
            })
        }

        pub(super) fn spawn_event_reader(
            &mut self,
            tx: mpsc::Sender<PacketEvent>,
        ) -> Result<JoinHandle<()>, EngineError> {
            let clock = event::Clock::now();
            self.spawn_ring_reader(maps::EVENTS, tx, move |bytes, names| {
                let Some(rec) = ironpost_ebpf_common::PacketEventRecord::from_bytes(bytes) else {
                    tracing::warn!("skipping a short event record");
                    return None;
                };
                event::decode_record(&rec, &names.get(rec.ifindex), &clock)
                    .map_err(|e| tracing::warn!("skipping an event: {e}"))
                    .ok()
            })
        }

        /// Takes SIGNALS and starts the task that decodes each record and
        /// sends it to `tx`.
        pub(super) fn spawn_signal_reader(
            &mut self,
            tx: mpsc::Sender<Signal>,
        ) -> Result<JoinHandle<()>, EngineError> {
            let clock = event::Clock::now();
            self.spawn_ring_reader(maps::SIGNALS, tx, move |bytes, names| {
                let Some(rec) = SignalRecord::from_bytes(bytes) else {
                    tracing::warn!("skipping a short signal record");
                    return None;
                };
                let sig = event::decode_signal(&rec, &names.get(rec.ifindex), &clock);
                if sig.is_none() {
                    tracing::warn!("skipping a signal of unknown kind {}", rec.kind);
                }
                sig
            })
        }

        /// Takes the ring buffer `name` and starts the task that waits on
        /// its fd (epoll, never a busy poll), decodes each entry with
        /// `decode` and sends the result to `tx`, until `tx` closes.
        fn spawn_ring_reader<T: Send + 'static>(
            &mut self,
            name: &'static str,
            tx: mpsc::Sender<T>,
            mut decode: impl FnMut(&[u8], &mut InterfaceNames) -> Option<T> + Send + 'static,
        ) -> Result<JoinHandle<()>, EngineError> {
            let map = self.ebpf.take_map(name).ok_or(EngineError::Reader {
                map: name,
                source: io::Error::other("already taken by another reader"),
            })?;
            let ring = RingBuf::try_from(map).map_err(|e| map_err(name, e))?;
            // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
            // for as long as the AsyncFd owns the RingBuf.
            let registered =
                unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
            let mut fd = registered.map_err(|e| EngineError::Reader {
                map: name,
                source: e.into(),
            })?;
            Ok(tokio::spawn(async move {
                let mut names = InterfaceNames::default();
                let mut batch = Vec::new();
                loop {
                    let mut guard = match fd.readable_mut().await {
                        Ok(g) => g,
                        Err(e) => {
                            tracing::error!("{name} reader stopped: {e}");
                            return;
                        }
                    };
                    let ring = guard.get_inner_mut();
                    while let Some(item) = ring.next() {
                        if let Some(v) = decode(&item, &mut names) {
                            batch.push(v);
                        }
                    }
                    guard.clear_ready();
                    for v in batch.drain(..) {
                        if tx.send(v).await.is_err() {
                            return;
                        }
                    }
                }
            }))
        }
    }

    fn trie_name(key: &RuleKey) -> &'static str {
        match (key.0, key.1.is_ipv4()) {
            (Direction::Src, true) => maps::SRC_V4,
            (Direction::Src, false) => maps::SRC_V6,
            (Direction::Dst, true) => maps::DST_V4,
            (Direction::Dst, false) => maps::DST_V6,
        }
    }

    /// Whether a block key lives in the exact IPv4 hash map.
    fn is_exact(key: &RuleKey) -> bool {
        key.0 == Direction::Src && key.1.is_ipv4() && key.1.is_host()
    }

    fn v4(p: &Prefix) -> Key<[u8; 4]> {
        let mut d = [0u8; 4];
        d.copy_from_slice(&p.octets());
        Key::new(u32::from(p.len()), d)
    }

    fn v6(p: &Prefix) -> Key<[u8; 16]> {
        let mut d = [0u8; 16];
        d.copy_from_slice(&p.octets());
        Key::new(u32::from(p.len()), d)
    }

    fn carry_counters(value: &RuleValue, old: Option<RuleValue>) -> RuleValue {
        let mut v = *value;
        if let Some(old) = old {
            v.packets = old.packets;
            v.bytes = old.bytes;
        }
        v
    }

    /// Writes `value` at `k` in the trie `name`, keeping the entry's hit
    /// counters when `keep_counters`.
    fn upsert_trie<K: aya::Pod>(
        data: &mut aya::maps::Map,
        name: &'static str,
        k: &Key<K>,
        value: &RuleValue,
        keep_counters: bool,
    ) -> Result<(), EngineError> {
        let mut map: LpmTrie<&mut MapData, K, RuleValue> =
            LpmTrie::try_from(data).map_err(|e| map_err(name, e))?;
        let old = if keep_counters {
            map.get(k, 0).ok()
        } else {
            None
        };
        map.insert(k, carry_counters(value, old), 0)
            .map_err(|e| map_err(name, e))
    }

    /// Removes `k` from the trie `name`.
    fn remove_trie<K: aya::Pod>(
        data: &mut aya::maps::Map,
        name: &'static str,
        k: &Key<K>,
    ) -> Result<(), EngineError> {
        let mut map: LpmTrie<&mut MapData, K, RuleValue> =
            LpmTrie::try_from(data).map_err(|e| map_err(name, e))?;
        map.remove(k).map_err(|e| map_err(name, e))
    }

    /// The map writes behind [`PolicyMaps`], with the engine's errors.
    trait MapWrites {
        fn set_rule(
            &mut self,
            key: &RuleKey,
            value: &RuleValue,
            keep: bool,
        ) -> Result<(), EngineError>;
        fn del_rule(&mut self, key: &RuleKey) -> Result<(), EngineError>;
        fn set_allow(&mut self, prefix: &Prefix) -> Result<(), EngineError>;
        fn del_allow(&mut self, prefix: &Prefix) -> Result<(), EngineError>;
        fn set_port_index(&mut self, index: u32, slot: u32) -> Result<(), EngineError>;
        fn set_port_rule(&mut self, slot: u32, value: &RuleValue) -> Result<(), EngineError>;
        fn set_flags(&mut self, flags: u32) -> Result<(), EngineError>;
        fn set_summary(&mut self, word: u32, bits: u64) -> Result<(), EngineError>;
    }

    impl PolicyMaps for Loaded {
        fn set_rule(
            &mut self,
            key: &RuleKey,
            value: &RuleValue,
            keep: bool,
        ) -> Result<(), PolicyError> {
            Ok(MapWrites::set_rule(self, key, value, keep)?)
        }
        fn add_rules(
            &mut self,
            rules: &[(RuleKey, RuleValue)],
        ) -> Result<(), (usize, PolicyError)> {
            self.add_rules_batched(rules)
                .map_err(|(n, e)| (n, e.into()))
        }
        fn del_rule(&mut self, key: &RuleKey) -> Result<(), PolicyError> {
            Ok(MapWrites::del_rule(self, key)?)
        }
        fn set_allow(&mut self, prefix: &Prefix) -> Result<(), PolicyError> {
            Ok(MapWrites::set_allow(self, prefix)?)
        }
        fn del_allow(&mut self, prefix: &Prefix) -> Result<(), PolicyError> {
            Ok(MapWrites::del_allow(self, prefix)?)
        }
        fn set_port_index(&mut self, index: u32, slot: u32) -> Result<(), PolicyError> {
            Ok(MapWrites::set_port_index(self, index, slot)?)
        }
        fn set_port_rule(&mut self, slot: u32, value: &RuleValue) -> Result<(), PolicyError> {
            Ok(MapWrites::set_port_rule(self, slot, value)?)
        }
        fn set_flags(&mut self, flags: u32) -> Result<(), PolicyError> {
            Ok(MapWrites::set_flags(self, flags)?)
        }
        fn set_summary(&mut self, word: u32, bits: u64) -> Result<(), PolicyError> {
            Ok(MapWrites::set_summary(self, word, bits)?)
        }
    }

    impl MapWrites for Loaded {
        fn set_rule(
            &mut self,
            key: &RuleKey,
            value: &RuleValue,
            keep_counters: bool,
        ) -> Result<(), EngineError> {
            if is_exact(key) {
                let name = maps::BLOCKLIST;
                let mut map: HashMap<&mut MapData, u32, RuleValue> =
                    HashMap::try_from(self.map_mut(name)?).map_err(|e| map_err(name, e))?;
                let k = u32::from_ne_bytes(v4(&key.1).data());
                let old = if keep_counters {
                    map.get(&k, 0).ok()
                } else {
                    None
                };
                return map
                    .insert(k, carry_counters(value, old), 0)
                    .map_err(|e| map_err(name, e));
            }
            let name = trie_name(key);
            let data = self.map_mut(name)?;
            if key.1.is_ipv4() {
                upsert_trie(data, name, &v4(&key.1), value, keep_counters)
            } else {
                upsert_trie(data, name, &v6(&key.1), value, keep_counters)
            }
        }

        fn del_rule(&mut self, key: &RuleKey) -> Result<(), EngineError> {
            if is_exact(key) {
                let name = maps::BLOCKLIST;
                let mut map: HashMap<&mut MapData, u32, RuleValue> =
                    HashMap::try_from(self.map_mut(name)?).map_err(|e| map_err(name, e))?;
                return map
                    .remove(&u32::from_ne_bytes(v4(&key.1).data()))
                    .map_err(|e| map_err(name, e));
            }
            let name = trie_name(key);
            let data = self.map_mut(name)?;
            if key.1.is_ipv4() {
                remove_trie(data, name, &v4(&key.1))
            } else {
                remove_trie(data, name, &v6(&key.1))
            }
        }

        fn set_allow(&mut self, prefix: &Prefix) -> Result<(), EngineError> {
            let value = RuleValue::new(ironpost_ebpf_common::ACTION_PASS);
            if prefix.is_ipv4() {
                let data = self.map_mut(maps::ALLOW_V4)?;
                upsert_trie(data, maps::ALLOW_V4, &v4(prefix), &value, false)
            } else {
                let data = self.map_mut(maps::ALLOW_V6)?;
                upsert_trie(data, maps::ALLOW_V6, &v6(prefix), &value, false)
            }
        }

        fn del_allow(&mut self, prefix: &Prefix) -> Result<(), EngineError> {
            if prefix.is_ipv4() {
                remove_trie(self.map_mut(maps::ALLOW_V4)?, maps::ALLOW_V4, &v4(prefix))
            } else {
                remove_trie(self.map_mut(maps::ALLOW_V6)?, maps::ALLOW_V6, &v6(prefix))
            }
        }

        fn set_port_index(&mut self, index: u32, slot: u32) -> Result<(), EngineError> {
            let name = maps::PORT_RULES;
            let mut map: Array<&mut MapData, u32> =
                Array::try_from(self.map_mut(name)?).map_err(|e| map_err(name, e))?;
            map.set(index, slot, 0).map_err(|e| map_err(name, e))
        }

        fn set_port_rule(&mut self, slot: u32, value: &RuleValue) -> Result<(), EngineError> {
            let name = maps::PORT_RULE_TABLE;
            let mut map: Array<&mut MapData, RuleValue> =
                Array::try_from(self.map_mut(name)?).map_err(|e| map_err(name, e))?;
            let old = map.get(&slot, 0).ok();
            map.set(slot, carry_counters(value, old), 0)
                .map_err(|e| map_err(name, e))
        }

        fn set_flags(&mut self, flags: u32) -> Result<(), EngineError> {
            let name = maps::POLICY_FLAGS;
            let mut map: Array<&mut MapData, u32> =
                Array::try_from(self.map_mut(name)?).map_err(|e| map_err(name, e))?;
            map.set(0, flags, 0).map_err(|e| map_err(name, e))
        }

        fn set_summary(&mut self, word: u32, bits: u64) -> Result<(), EngineError> {
            let name = maps::SRC16_V4;
            let mut map: Array<&mut MapData, u64> =
                Array::try_from(self.map_mut(name)?).map_err(|e| map_err(name, e))?;
            map.set(word, bits, 0).map_err(|e| map_err(name, e))
        }
    }

    /// Interface names by index, looked up once each.
    #[derive(Default)]
    struct InterfaceNames(StdHashMap<u32, String>);

    impl InterfaceNames {
        fn get(&mut self, ifindex: u32) -> String {
            self.0
                .entry(ifindex)
                .or_insert_with(|| if_name(ifindex).unwrap_or_else(|| format!("if{ifindex}")))
                .clone()
        }
    }

    /// Reads STATS and EVENT_COUNTERS through handles of its own.
    pub(crate) struct StatsReader {
        stats: PerCpuArray<MapData, TrafficCounters>,
        events: PerCpuArray<MapData, EventCounters>,
        detect: PerCpuArray<MapData, DetectCounters>,
        parse: PerCpuArray<MapData, ParseCounters>,
    }

    impl StatsReader {
        pub(crate) fn read(&mut self) -> Result<TrafficSnapshot, EngineError> {
            let stats = (0..STATS_SLOTS)
                .map(|slot| {
                    self.stats
                        .get(&slot, 0)
                        .map(|per_cpu| per_cpu.to_vec())
                        .map_err(|e| map_err(maps::STATS, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let events = self
                .events
                .get(&0, 0)
                .map_err(|e| map_err(maps::EVENT_COUNTERS, e))?;
            let detect = self
                .detect
                .get(&0, 0)
                .map_err(|e| map_err(maps::DETECT_COUNTERS, e))?;
            let parse = self
                .parse
                .get(&0, 0)
                .map_err(|e| map_err(maps::PARSE_COUNTERS, e))?;
            Ok(TrafficSnapshot::from_per_cpu(
                &stats, &events, &detect, &parse,
            ))
        }
    }

    fn if_index(name: &str) -> Result<u32, EngineError> {
        let c = CString::new(name).map_err(|_| EngineError::NoSuchInterface(name.to_owned()))?;
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if idx == 0 {
            return Err(EngineError::NoSuchInterface(name.to_owned()));
        }
        Ok(idx)
    }

    fn if_name(index: u32) -> Option<String> {
        let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
        // SAFETY: `buf` has IF_NAMESIZE bytes, as if_indextoname requires.
        let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
        if p.is_null() {
            return None;
        }
        // SAFETY: on success the buffer holds a NUL-terminated name.
        let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
        Some(s.to_string_lossy().into_owned())
    }

    fn attach_error(interface: &str, mode: AttachedMode, e: ProgramError) -> EngineError {
        let io_err = match &e {
            ProgramError::SyscallError(s) => Some(&s.io_error),
            _ => None,
        };
        if io_err.is_some_and(is_eperm) {
            return EngineError::PermissionDenied(format!("attaching to {interface}"));
        }
        let message = match io_err.and_then(io::Error::raw_os_error) {
            Some(libc::EBUSY) | Some(libc::EEXIST) => format!(
                "another XDP program is already attached to {interface} \
                 (see `ip link show {interface}`; remove it with `ip link set dev {interface} xdp off`)"
            ),
            Some(libc::EOPNOTSUPP) => {
                format!("the driver of {interface} does not support this mode")
            }
            _ => "the kernel refused it".to_owned(),
        };
        EngineError::Attach {
            interface: interface.to_owned(),
            mode: mode.as_str(),
            message,
            source: Box::new(e),
        }
    }
}
