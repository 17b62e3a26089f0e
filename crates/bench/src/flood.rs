//! Receive rates on the lab's veth pair in native mode. The generator
//! (`flood_gen`, BPF_PROG_RUN with live frames, XDP_TX) runs on the
//! namespace end; each receiver sits on the host end, on a CPU of its own
//! by default (see [`Placement`]).

use std::{
    net::Ipv4Addr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, ensure};
use ironpost_lab::Lab;
use serde_json::Value;

use crate::{
    daemon::Daemon,
    napi::Placement,
    packets::{BLOCKED_V4, flood_template},
    peers::{NftIngress, XdpFilter, attached_prog_id},
    programs::{BenchPrograms, Sources, TC_NEXT, TP_RESET, Trivial},
    run,
};

/// Random sources of the spoofed flood: 100.64.0.0/10 (shared address
/// space), routed back into the lab so the host's replies stay there.
const SPOOF_BASE: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
const SPOOF_MASK: u32 = (1 << 22) - 1;
const SPOOF_NET: &str = "100.64.0.0/10";
/// A closed port on the host: every passed SYN is answered with a RST.
const FLOOD_PORT: u16 = 9;

/// What the flood is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Every frame from one blocked source: all receivers drop it.
    Blocked,
    /// TCP SYNs from random sources to a closed port: all receivers pass
    /// them to the stack.
    SpoofedSyn,
}

/// Who receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receiver {
    /// `bench_drop` or `bench_pass`.
    Trivial(Trivial),
    /// `bench_pass` and `bench_tc_next` on egress: the floor of a receiver
    /// that, like Ironpost, runs a program on each hook.
    TrivialPair,
    /// `bench_pass` and `bench_tp_reset` on `tcp:tcp_send_reset`: the floor
    /// of a receiver that watches the host's RSTs where they are made.
    TrivialTracepoint,
    /// xdp-filter, all features.
    XdpFilter,
    /// nftables netdev ingress (behind `bench_pass`, which veth needs to
    /// take XDP frames at all).
    Nftables,
    /// `ironpost run` with its defaults (detection on).
    Ironpost,
}

impl Receiver {
    /// Column name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Trivial(Trivial::Drop) => "trivial XDP_DROP",
            Self::Trivial(Trivial::Pass) => "trivial XDP_PASS",
            Self::TrivialPair => "trivial XDP_PASS + TC egress",
            Self::TrivialTracepoint => "trivial XDP_PASS + RST tracepoint",
            Self::XdpFilter => "xdp-filter",
            Self::Nftables => "nftables ingress",
            Self::Ironpost => "Ironpost (defaults)",
        }
    }

    /// Its name on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Self::Trivial(Trivial::Drop) => "trivial-drop",
            Self::Trivial(Trivial::Pass) => "trivial-pass",
            Self::TrivialPair => "trivial-pair",
            Self::TrivialTracepoint => "trivial-tracepoint",
            Self::XdpFilter => "xdp-filter",
            Self::Nftables => "nftables",
            Self::Ironpost => "ironpost",
        }
    }

    /// The scenarios this receiver is measured in.
    pub fn scenarios(self) -> &'static [Scenario] {
        match self {
            Self::Trivial(Trivial::Drop) => &[Scenario::Blocked],
            Self::Trivial(Trivial::Pass) | Self::TrivialPair | Self::TrivialTracepoint => {
                &[Scenario::SpoofedSyn]
            }
            _ => &[Scenario::Blocked, Scenario::SpoofedSyn],
        }
    }
}

/// Every receiver, in the order of the first round.
pub const RECEIVERS: [Receiver; 7] = [
    Receiver::Trivial(Trivial::Drop),
    Receiver::Trivial(Trivial::Pass),
    Receiver::TrivialPair,
    Receiver::TrivialTracepoint,
    Receiver::XdpFilter,
    Receiver::Nftables,
    Receiver::Ironpost,
];

/// One flood through one receiver.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Frames the receiver got per second of wall time, in millions.
    pub mpps: f64,
    /// In-kernel time per run of the receiver's XDP program (bpf_stats).
    pub prog_ns: f64,
    /// In-kernel time of the receiver's TC egress program (Ironpost's
    /// watcher, or the trivial one) per frame its XDP program ran for
    /// (bpf_stats): what watching the host's replies costs.
    pub egress_ns: Option<f64>,
    /// Frames the veth refused to hand over (receiver ring full).
    pub refused: u64,
    /// The daemon's RSS after the flood, KiB (Ironpost only).
    pub rss_kib: Option<u64>,
}

impl Sample {
    /// Every in-kernel nanosecond the receiver spent per frame it took.
    pub fn kernel_ns(&self) -> f64 {
        self.prog_ns + self.egress_ns.unwrap_or(0.0)
    }
}

/// The flood bench on one lab.
pub struct Flood<'a> {
    lab: &'a Lab,
    progs: &'a mut BenchPrograms,
    ironpost: &'a Path,
    dir: &'a Path,
    ifindex: u32,
    blocked: Vec<u8>,
    spoofed: Vec<u8>,
    frames: u32,
    jited: Option<std::path::PathBuf>,
    only: Option<Scenario>,
    placement: Placement,
}

impl<'a> Flood<'a> {
    /// Prepares the templates and the return route of the spoofed sources.
    pub fn new(
        lab: &'a Lab,
        progs: &'a mut BenchPrograms,
        ironpost: &'a Path,
        dir: &'a Path,
        frames: u32,
        placement: Placement,
    ) -> Result<Self> {
        let mac = |s: &str| -> Result<[u8; 6]> {
            let mut m = [0u8; 6];
            let parts: Vec<u8> = s
                .trim()
                .split(':')
                .map(|h| u8::from_str_radix(h, 16))
                .collect::<Result<_, _>>()
                .with_context(|| format!("bad MAC address {s:?}"))?;
            ensure!(parts.len() == 6, "bad MAC address {s:?}");
            m.copy_from_slice(&parts);
            Ok(m)
        };
        let host_mac = mac(&std::fs::read_to_string(format!(
            "/sys/class/net/{}/address",
            lab.host_if()
        ))?)?;
        let peer_mac = mac(&String::from_utf8_lossy(
            &lab.exec(
                "cat",
                &[&format!("/sys/class/net/{}/address", lab.peer_if())],
            )?
            .stdout,
        ))?;
        let peer_if = lab.peer_if().to_owned();
        let ifindex = lab.in_ns(move || {
            let name = std::ffi::CString::new(peer_if).expect("no NUL in an interface name");
            // SAFETY: a valid NUL-terminated name.
            unsafe { libc::if_nametoindex(name.as_ptr()) }
        })?;
        ensure!(
            ifindex != 0,
            "{} has no ifindex in its namespace",
            lab.peer_if()
        );
        // The host answers each passed SYN with a RST to its spoofed
        // source: route those back into the lab's namespace (which drops
        // them) instead of out of the machine.
        run(
            "ip",
            &[
                "route",
                "add",
                SPOOF_NET,
                "via",
                &lab.peer_addr(0).to_string(),
            ],
        )?;
        let template = |src| flood_template(peer_mac, host_mac, src, lab.host_addr(), FLOOD_PORT);
        Ok(Self {
            lab,
            progs,
            ironpost,
            dir,
            ifindex,
            blocked: template(BLOCKED_V4),
            spoofed: template(lab.peer_addr(0)),
            frames,
            jited: None,
            only: None,
            placement,
        })
    }

    /// Floods only `scenario` (all of them with `None`).
    pub fn only(&mut self, scenario: Option<Scenario>) {
        self.only = scenario;
    }

    /// Writes each receiver's JIT-compiled programs into `dir` while they
    /// are attached (for profiling).
    pub fn dump_jited(&mut self, dir: Option<&Path>) -> Result<()> {
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            self.jited = Some(dir.to_owned());
        }
        Ok(())
    }

    /// Sets `receiver` up, floods it once per scenario, tears it down.
    pub fn round(&mut self, receiver: Receiver) -> Result<Vec<(Scenario, Sample)>> {
        let host_if = self.lab.host_if().to_owned();
        let mut out = Vec::new();
        match receiver {
            Receiver::Trivial(t) => {
                let link = self.progs.attach(t, &host_if)?;
                let r = self.floods(receiver, None);
                self.progs.detach(t, link)?;
                out = r?;
            }
            Receiver::TrivialPair => {
                let link = self.progs.attach(Trivial::Pass, &host_if)?;
                let r = self.progs.attach_tc_egress(&host_if).and_then(|tc| {
                    let r = self.floods(receiver, Some(TC_NEXT));
                    self.progs.detach_tc_egress(tc)?;
                    r
                });
                self.progs.detach(Trivial::Pass, link)?;
                out = r?;
            }
            Receiver::TrivialTracepoint => {
                let link = self.progs.attach(Trivial::Pass, &host_if)?;
                let r = self.progs.attach_tp_reset().and_then(|tp| {
                    let r = self.floods(receiver, Some(TP_RESET));
                    self.progs.detach_tp_reset(tp)?;
                    r
                });
                self.progs.detach(Trivial::Pass, link)?;
                out = r?;
            }
            Receiver::XdpFilter => {
                let _filter = XdpFilter::load(&host_if)?;
                out = self.floods(receiver, None)?;
            }
            Receiver::Nftables => {
                let link = self.progs.attach(Trivial::Pass, &host_if)?;
                let r = NftIngress::load(&host_if).and_then(|nft| {
                    let r = self.floods(receiver, None);
                    drop(nft);
                    r
                });
                self.progs.detach(Trivial::Pass, link)?;
                out.extend(r?);
            }
            Receiver::Ironpost => {
                let config = crate::subjects::ironpost_toml(true, 65_536, "native");
                let daemon = Daemon::start(self.ironpost, &host_if, self.dir, &config)?;
                let r = self.floods(receiver, Some(EGRESS_PROG)).and_then(|mut r| {
                    for (_, s) in &mut r {
                        s.rss_kib = Some(daemon.rss_kib()?);
                    }
                    Ok(r)
                });
                daemon.stop()?;
                out = r?;
            }
        }
        Ok(out)
    }

    /// Floods the receiver attached now, once per scenario; `egress`
    /// names its second program (TC egress, or the RST tracepoint), if it has one.
    fn floods(
        &mut self,
        receiver: Receiver,
        egress: Option<&str>,
    ) -> Result<Vec<(Scenario, Sample)>> {
        let prog = attached_prog_id(self.lab.host_if())?;
        self.placement.receiver_attached(self.lab.host_if())?;
        let egress = egress.map(prog_id_by_name).transpose()?;
        if let Some(dir) = &self.jited {
            for (hook, id) in [("xdp", Some(prog)), ("egress", egress)] {
                if let Some(id) = id {
                    crate::jited::dump(id, dir, &format!("{}-{hook}", receiver.key()))?;
                }
            }
        }
        let mut out = Vec::new();
        for &scenario in receiver.scenarios() {
            if self.only.is_some_and(|only| only != scenario) {
                continue;
            }
            out.push((scenario, self.flood(scenario, prog, egress)?));
        }
        Ok(out)
    }

    fn flood(&mut self, scenario: Scenario, prog: u32, egress: Option<u32>) -> Result<Sample> {
        let (template, sources) = match scenario {
            Scenario::Blocked => (&self.blocked, Sources::Template),
            Scenario::SpoofedSyn => (
                &self.spoofed,
                Sources::Random {
                    base: SPOOF_BASE,
                    mask: SPOOF_MASK,
                },
            ),
        };
        self.progs.set_sources(sources)?;
        let progs = &*self.progs;
        let (ifindex, frames, placement) = (self.ifindex, self.frames, self.placement);
        // The rate with bpf_stats off: accounting costs every program run
        // (the generator's, the receiver's and any other hook's) two clock
        // reads. The in-kernel time in a second flood, with it on.
        BpfStats::set(false)?;
        let refused_before = self.refused()?;
        let started = Instant::now();
        self.lab.in_ns(|| {
            placement.generator_starts()?;
            progs.generate(template, ifindex, frames)
        })??;
        let wall = started.elapsed();
        let refused = self.refused()? - refused_before;
        let received = u64::from(frames) - refused;
        BpfStats::set(true)?;
        let refused_before = self.refused()?;
        let stats_before = prog_stats(prog)?;
        let egress_before = egress.map(prog_stats).transpose()?;
        self.lab.in_ns(|| {
            placement.generator_starts()?;
            progs.generate(template, ifindex, frames)
        })??;
        // The generator returns once the frames are in the veth's ring; the
        // receiver may still be running on the last of them.
        let received_timed = u64::from(frames) - (self.refused()? - refused_before);
        let stats_after = settled_stats(prog, stats_before.1 + received_timed)?;
        let egress_after = egress.map(|id| settled_stats(id, 0)).transpose()?;
        let runs = stats_after.1 - stats_before.1;
        ensure!(
            runs >= received_timed,
            "the receiver's program ran {runs} times for {received_timed} frames handed to it"
        );
        Ok(Sample {
            mpps: received as f64 / wall.as_secs_f64() / 1e6,
            prog_ns: (stats_after.0 - stats_before.0).as_nanos() as f64 / runs.max(1) as f64,
            egress_ns: egress_before
                .zip(egress_after)
                .map(|(b, a)| (a.0 - b.0).as_nanos() as f64 / runs.max(1) as f64),
            refused,
            rss_kib: None,
        })
    }

    /// Frames the namespace end could not hand to the host end so far.
    fn refused(&self) -> Result<u64> {
        let out = run(
            "ip",
            &[
                "-n",
                self.lab.ns(),
                "-s",
                "-j",
                "link",
                "show",
                "dev",
                self.lab.peer_if(),
            ],
        )?;
        let v: Value = serde_json::from_str(&out).context("parsing `ip -s -j link`")?;
        v[0]["stats64"]["tx"]["dropped"]
            .as_u64()
            .context("no tx dropped counter in `ip -s -j link`")
    }
}

/// The name the kernel gives Ironpost's TC egress program.
const EGRESS_PROG: &str = "ironpost_egress";

/// The id of the one loaded program named `name`.
fn prog_id_by_name(name: &str) -> Result<u32> {
    let mut ids = Vec::new();
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if info.name_as_str() == Some(name) {
            ids.push(info.id());
        }
    }
    match ids.as_slice() {
        [id] => Ok(*id),
        [] => anyhow::bail!("no loaded program is named {name}"),
        _ => anyhow::bail!("{} loaded programs are named {name}: {ids:?}", ids.len()),
    }
}

/// (run time, run count) of program `id` (needs kernel.bpf_stats_enabled).
fn prog_stats(id: u32) -> Result<(Duration, u64)> {
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if info.id() == id {
            return Ok((info.run_time(), info.run_count()));
        }
    }
    anyhow::bail!("program {id} is no longer loaded")
}

/// [`prog_stats`] once the run count has reached `at_least` and stopped
/// moving (10 ms apart), for at most two seconds: with its own NAPI thread
/// the receiver may still be taking the last ring of frames when the
/// generator returns.
fn settled_stats(id: u32, at_least: u64) -> Result<(Duration, u64)> {
    let mut last = prog_stats(id)?;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(10));
        let now = prog_stats(id)?;
        if now.1 == last.1 && now.1 >= at_least {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// Turns `kernel.bpf_stats_enabled` on and restores it on drop.
pub struct BpfStats {
    before: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    /// Enables run-time accounting of every BPF program.
    pub fn enable() -> Result<Self> {
        let before = std::fs::read_to_string(BPF_STATS)?.trim().to_owned();
        Self::set(true)?;
        Ok(Self { before })
    }

    /// Turns the accounting on or off (the guard still restores the value
    /// found at the start).
    pub fn set(on: bool) -> Result<()> {
        std::fs::write(BPF_STATS, if on { "1" } else { "0" })
            .context("setting kernel.bpf_stats_enabled")
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.before);
    }
}
