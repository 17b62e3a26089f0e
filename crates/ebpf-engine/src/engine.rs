//! [`EbpfEngine`]: loads `ironpost_xdp`, attaches it, syncs its block list,
//! and runs the event reader and the stats poller.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use ironpost_core::{HealthStatus, IronpostError, PacketEvent, Pipeline};
use serde::Serialize;
use tokio::{sync::mpsc, task::JoinHandle};

use crate::{EngineConfig, EngineError, TrafficSnapshot, TrafficStats, XdpMode};

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
    interface: Option<String>,
    xdp_mode: Option<XdpMode>,
}

impl EbpfEngineBuilder {
    /// Uses this configuration (default: [`EngineConfig::default`]).
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }
    /// Attaches to this interface.
    pub fn interface(mut self, name: impl Into<String>) -> Self {
        self.interface = Some(name.into());
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
        EbpfEngine {
            config,
            interface: self.interface,
            inner: None,
            tasks: Vec::new(),
            started: None,
        }
    }
}

/// The packet engine. Dropping it detaches the program.
pub struct EbpfEngine {
    config: EngineConfig,
    interface: Option<String>,
    inner: Option<imp::Loaded>,
    tasks: Vec<JoinHandle<()>>,
    started: Option<Instant>,
}

impl std::fmt::Debug for EbpfEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EbpfEngine")
            .field("interface", &self.interface)
            .field("loaded", &self.inner.is_some())
            .field("attachment", &self.attachment())
            .finish()
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

    /// Loads the program and its maps into the kernel (without attaching).
    pub fn load(&mut self) -> Result<(), EngineError> {
        if self.inner.is_none() {
            self.inner = Some(imp::Loaded::load(&self.config)?);
        }
        Ok(())
    }

    fn loaded(&mut self) -> Result<&mut imp::Loaded, EngineError> {
        self.inner.as_mut().ok_or(EngineError::NotLoaded)
    }

    /// Loads if needed, writes the configured rules to BLOCKLIST, then
    /// attaches to the interface, so policy is in force from the first packet.
    pub fn load_and_attach(&mut self) -> Result<&Attachment, EngineError> {
        let interface = self.interface.clone().ok_or(EngineError::NoInterface)?;
        let mode = self.config.xdp_mode;
        self.load()?;
        self.sync_blocklist_to_map()?;
        let loaded = self.loaded()?;
        loaded.attach(&interface, mode)
    }

    /// Makes BLOCKLIST hold exactly the configured rules. A rule set larger
    /// than the map is refused before anything in the map changes.
    pub fn sync_blocklist_to_map(&mut self) -> Result<(), EngineError> {
        let rules = self.config.rules().to_vec();
        let capacity = self.config.blocklist_max_entries;
        if rules.len() > capacity as usize {
            return Err(EngineError::Rule(format!(
                "{} rules do not fit in the block list ({capacity} entries); nothing was changed",
                rules.len()
            )));
        }
        self.loaded()?.sync_blocklist(&rules)
    }

    /// The addresses in BLOCKLIST and their action codes, as the kernel has them.
    pub fn blocklist_entries(&mut self) -> Result<Vec<(Ipv4Addr, u8)>, EngineError> {
        self.loaded()?.blocklist_entries()
    }

    /// Where the program is attached, if it is.
    pub fn attachment(&self) -> Option<&Attachment> {
        self.inner.as_ref().and_then(|l| l.attachment())
    }

    /// Detaches the program from its interface (it stays loaded).
    pub fn detach(&mut self) -> Result<(), EngineError> {
        match self.inner.as_mut() {
            Some(l) => l.detach(),
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
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("detaching on drop: {e}");
        }
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
        if self.attachment().is_none() {
            return HealthStatus::Unhealthy("program not attached".into());
        }
        if let Some(i) = self.tasks.iter().position(JoinHandle::is_finished) {
            return HealthStatus::Degraded(format!("background task {i} has stopped"));
        }
        HealthStatus::Healthy
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::{collections::HashMap as StdHashMap, ffi::CString, io, net::Ipv4Addr};

    use aya::{
        Ebpf, EbpfLoader,
        maps::{HashMap, MapData, MapError, PerCpuArray, RingBuf},
        programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode as AyaXdpMode},
    };
    use ironpost_core::PacketEvent;
    use ironpost_ebpf_common::{
        BlocklistValue, EVENT_BUDGET_GLOBAL, EventCounters, PROGRAM_NAME, TrafficCounters, maps,
    };
    use tokio::{io::unix::AsyncFd, sync::mpsc, task::JoinHandle};

    use super::{AttachedMode, Attachment, TestRunOutcome};
    use crate::{EngineConfig, EngineError, TrafficSnapshot, XdpMode, config::action_code, event};

    /// The XDP object built by build.rs.
    static XDP_OBJECT: &[u8] =
        aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ironpost-ebpf"));

    pub(super) struct Loaded {
        ebpf: Ebpf,
        program_id: u32,
        link: Option<(aya::programs::xdp::XdpLinkId, Attachment)>,
    }

    fn is_eperm(e: &io::Error) -> bool {
        matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
    }

    fn map_err(map: &'static str, e: MapError) -> EngineError {
        EngineError::Map {
            map,
            message: e.to_string(),
        }
    }

    impl Loaded {
        pub(super) fn load(cfg: &EngineConfig) -> Result<Self, EngineError> {
            let budget = cfg.event_budget_per_cpu;
            let mut ebpf = EbpfLoader::new()
                .map_max_entries(maps::BLOCKLIST, cfg.blocklist_max_entries)
                .map_max_entries(maps::EVENTS, cfg.ring_buffer_size)
                .override_global(EVENT_BUDGET_GLOBAL, &budget, true)
                .load(XDP_OBJECT)
                .map_err(|e| {
                    let msg = format!("{e:#}");
                    if msg.contains("Operation not permitted") || msg.contains("EPERM") {
                        EngineError::PermissionDenied("loading the XDP program".into())
                    } else {
                        EngineError::Load(msg)
                    }
                })?;
            let prog: &mut Xdp = ebpf
                .program_mut(PROGRAM_NAME)
                .ok_or_else(|| EngineError::Load(format!("no program {PROGRAM_NAME} in object")))?
                .try_into()
                .map_err(|e: ProgramError| EngineError::Load(e.to_string()))?;
            prog.load().map_err(|e| match &e {
                ProgramError::LoadError { io_error, .. } if is_eperm(io_error) => {
                    EngineError::PermissionDenied("loading the XDP program".into())
                }
                _ => EngineError::Load(format!("{e}")),
            })?;
            let program_id = prog
                .info()
                .map_err(|e| EngineError::Load(e.to_string()))?
                .id();
            tracing::debug!(program_id, "loaded {PROGRAM_NAME}");
            Ok(Self {
                ebpf,
                program_id,
                link: None,
            })
        }

        fn program(&mut self) -> Result<&mut Xdp, EngineError> {
            self.ebpf
                .program_mut(PROGRAM_NAME)
                .ok_or(EngineError::NotLoaded)?
                .try_into()
                .map_err(|e: ProgramError| EngineError::Load(e.to_string()))
        }

        pub(super) fn attachment(&self) -> Option<&Attachment> {
            self.link.as_ref().map(|(_, a)| a)
        }

        pub(super) fn attach(
            &mut self,
            interface: &str,
            mode: XdpMode,
        ) -> Result<&Attachment, EngineError> {
            if self.link.is_some() {
                self.detach()?;
            }
            let ifindex = if_index(interface)?;
            let program_id = self.program_id;
            let prog = self.program()?;
            let try_mode = |prog: &mut Xdp, m: AttachedMode| {
                let aya_mode = match m {
                    AttachedMode::Native => AyaXdpMode::Driver,
                    AttachedMode::Skb => AyaXdpMode::Skb,
                };
                prog.attach_to_if_index(ifindex, aya_mode)
                    .map_err(|e| attach_error(interface, m, &e))
            };
            let (link, used) = match mode {
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
            };
            let att = Attachment {
                interface: interface.to_owned(),
                ifindex,
                mode: used,
                program_id,
            };
            tracing::info!(
                "attached {PROGRAM_NAME} (program id {program_id}) to {interface} in {} mode",
                used.as_str()
            );
            self.link = Some((link, att));
            Ok(&self.link.as_ref().expect("just set").1)
        }

        pub(super) fn detach(&mut self) -> Result<(), EngineError> {
            let Some((link, att)) = self.link.take() else {
                return Ok(());
            };
            self.program()?
                .detach(link)
                .map_err(|e| EngineError::Attach {
                    interface: att.interface.clone(),
                    mode: att.mode.as_str(),
                    message: format!("detach: {e}"),
                })?;
            tracing::info!("detached {PROGRAM_NAME} from {}", att.interface);
            Ok(())
        }

        fn blocklist(&mut self) -> Result<HashMap<&mut MapData, u32, BlocklistValue>, EngineError> {
            let map = self.ebpf.map_mut(maps::BLOCKLIST).ok_or(EngineError::Map {
                map: maps::BLOCKLIST,
                message: "missing from the object".into(),
            })?;
            HashMap::try_from(map).map_err(|e| map_err(maps::BLOCKLIST, e))
        }

        pub(super) fn sync_blocklist(
            &mut self,
            rules: &[crate::FilterRule],
        ) -> Result<(), EngineError> {
            let mut map = self.blocklist()?;
            let wanted: StdHashMap<u32, u8> = rules
                .iter()
                .map(|r| (u32::from_ne_bytes(r.src_ip.octets()), action_code(r.action)))
                .collect();
            let present: Vec<u32> = map.keys().filter_map(Result::ok).collect();
            for key in present {
                if !wanted.contains_key(&key) {
                    map.remove(&key).map_err(|e| map_err(maps::BLOCKLIST, e))?;
                }
            }
            for (key, action) in &wanted {
                map.insert(key, BlocklistValue::new(*action), 0)
                    .map_err(|e| map_err(maps::BLOCKLIST, e))?;
            }
            Ok(())
        }

        pub(super) fn blocklist_entries(&mut self) -> Result<Vec<(Ipv4Addr, u8)>, EngineError> {
            let map = self.blocklist()?;
            map.iter()
                .map(|r| {
                    r.map(|(k, v)| (Ipv4Addr::from(k.to_ne_bytes()), v.action))
                        .map_err(|e| map_err(maps::BLOCKLIST, e))
                })
                .collect()
        }

        fn map_id(&self, name: &'static str) -> Result<u32, EngineError> {
            let map = self.ebpf.map(name).ok_or(EngineError::Map {
                map: name,
                message: "missing from the object".into(),
            })?;
            let data = match map {
                aya::maps::Map::PerCpuArray(d) | aya::maps::Map::RingBuf(d) => d,
                _ => {
                    return Err(EngineError::Map {
                        map: name,
                        message: "unexpected map type".into(),
                    });
                }
            };
            Ok(data.info().map_err(|e| map_err(name, e))?.id())
        }

        pub(super) fn stats_reader(&self) -> Result<StatsReader, EngineError> {
            let open = |name: &'static str| -> Result<aya::maps::Map, EngineError> {
                let data = MapData::from_id(self.map_id(name)?).map_err(|e| map_err(name, e))?;
                Ok(aya::maps::Map::PerCpuArray(data))
            };
            Ok(StatsReader {
                stats: PerCpuArray::try_from(open(maps::STATS)?)
                    .map_err(|e| map_err(maps::STATS, e))?,
                events: PerCpuArray::try_from(open(maps::EVENT_COUNTERS)?)
                    .map_err(|e| map_err(maps::EVENT_COUNTERS, e))?,
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
                .map_err(|e| EngineError::TestRun(format!("{e}")))?;
            Ok(TestRunOutcome {
                action: r.return_value,
                duration: r.duration,
            })
        }

        pub(super) fn spawn_event_reader(
            &mut self,
            tx: mpsc::Sender<PacketEvent>,
        ) -> Result<JoinHandle<()>, EngineError> {
            let map = self.ebpf.take_map(maps::EVENTS).ok_or(EngineError::Map {
                map: maps::EVENTS,
                message: "already taken by another reader".into(),
            })?;
            let ring = RingBuf::try_from(map).map_err(|e| map_err(maps::EVENTS, e))?;
            // SAFETY: the RingBuf owns its map fd and keeps it open, unchanged,
            // for as long as the AsyncFd owns the RingBuf.
            let registered =
                unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
            let mut fd = registered.map_err(|e| EngineError::Map {
                map: maps::EVENTS,
                message: format!("registering with the runtime: {e}"),
            })?;
            let clock = event::Clock::now();
            Ok(tokio::spawn(async move {
                let mut names = InterfaceNames::default();
                let mut batch = Vec::new();
                loop {
                    let mut guard = match fd.readable_mut().await {
                        Ok(g) => g,
                        Err(e) => {
                            tracing::error!("event reader stopped: {e}");
                            return;
                        }
                    };
                    let ring = guard.get_inner_mut();
                    while let Some(item) = ring.next() {
                        batch.push(ironpost_ebpf_common::PacketEventRecord::from_bytes(&item));
                    }
                    guard.clear_ready();
                    for rec in batch.drain(..) {
                        let Some(rec) = rec else {
                            tracing::warn!("skipping a short event record");
                            continue;
                        };
                        let name = names.get(rec.ifindex);
                        match event::decode_record(&rec, &name, &clock) {
                            Ok(ev) => {
                                if tx.send(ev).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => tracing::warn!("skipping an event: {e}"),
                        }
                    }
                }
            }))
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
    }

    impl StatsReader {
        pub(crate) fn read(&mut self) -> Result<TrafficSnapshot, EngineError> {
            let stats = self.stats.get(&0, 0).map_err(|e| map_err(maps::STATS, e))?;
            let events = self
                .events
                .get(&0, 0)
                .map_err(|e| map_err(maps::EVENT_COUNTERS, e))?;
            Ok(TrafficSnapshot::from_per_cpu(&stats, &events))
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

    fn attach_error(interface: &str, mode: AttachedMode, e: &ProgramError) -> EngineError {
        let io_err = match e {
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
            _ => format!("{e}"),
        };
        EngineError::Attach {
            interface: interface.to_owned(),
            mode: mode.as_str(),
            message,
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    //! Elsewhere the engine compiles and refuses to load.
    use std::net::Ipv4Addr;

    use ironpost_core::PacketEvent;
    use tokio::{sync::mpsc, task::JoinHandle};

    use super::{Attachment, TestRunOutcome};
    use crate::{EngineConfig, EngineError, TrafficSnapshot, XdpMode};

    pub(super) enum Loaded {}

    pub(crate) enum StatsReader {}

    impl StatsReader {
        pub(crate) fn read(&mut self) -> Result<TrafficSnapshot, EngineError> {
            match *self {}
        }
    }

    impl Loaded {
        pub(super) fn load(_: &EngineConfig) -> Result<Self, EngineError> {
            Err(EngineError::Unsupported)
        }
        pub(super) fn attachment(&self) -> Option<&Attachment> {
            match *self {}
        }
        pub(super) fn attach(&mut self, _: &str, _: XdpMode) -> Result<&Attachment, EngineError> {
            match *self {}
        }
        pub(super) fn detach(&mut self) -> Result<(), EngineError> {
            match *self {}
        }
        pub(super) fn sync_blocklist(
            &mut self,
            _: &[crate::FilterRule],
        ) -> Result<(), EngineError> {
            match *self {}
        }
        pub(super) fn blocklist_entries(&mut self) -> Result<Vec<(Ipv4Addr, u8)>, EngineError> {
            match *self {}
        }
        pub(super) fn stats_reader(&self) -> Result<StatsReader, EngineError> {
            match *self {}
        }
        pub(super) fn counters(&mut self) -> Result<TrafficSnapshot, EngineError> {
            match *self {}
        }
        pub(super) fn test_run(&mut self, _: &[u8], _: u32) -> Result<TestRunOutcome, EngineError> {
            match *self {}
        }
        pub(super) fn spawn_event_reader(
            &mut self,
            _: mpsc::Sender<PacketEvent>,
        ) -> Result<JoinHandle<()>, EngineError> {
            match *self {}
        }
    }
}
