//! The bench's own XDP programs (crate `ironpost-bench-ebpf`): the trivial
//! receivers and the live-frames generator.

use std::{net::Ipv4Addr, time::Duration};

use anyhow::{Context as _, Result};
use aya::{
    Ebpf,
    maps::Array,
    programs::{
        SchedClassifier, TcAttachType, TestRun as _, TestRunAttrs, TestRunOptions, TracePoint, Xdp,
        XdpMode, tc::SchedClassifierLinkId, trace_point::TracePointLinkId, xdp::XdpLinkId,
    },
};

static OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ironpost-bench-ebpf"));

/// A trivial receiver program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trivial {
    /// Returns XDP_DROP.
    Drop,
    /// Returns XDP_PASS.
    Pass,
}

impl Trivial {
    fn program(self) -> &'static str {
        match self {
            Self::Drop => "bench_drop",
            Self::Pass => "bench_pass",
        }
    }
}

/// The trivial TC egress program.
pub const TC_NEXT: &str = "bench_tc_next";

/// The trivial program on `tcp:tcp_send_reset`.
pub const TP_RESET: &str = "bench_tp_reset";

/// The loaded bench object.
pub struct BenchPrograms {
    ebpf: Ebpf,
}

/// What the generator sends.
#[derive(Clone, Copy, Debug)]
pub enum Sources {
    /// The template's own source, unchanged.
    Template,
    /// `base | (random & mask)` per frame.
    Random {
        /// Fixed bits.
        base: Ipv4Addr,
        /// Random bits.
        mask: u32,
    },
}

impl BenchPrograms {
    /// Loads (does not attach) the five programs.
    pub fn load() -> Result<Self> {
        let mut ebpf = Ebpf::load(OBJECT).context("loading the bench's XDP object")?;
        let refused = |name: &str| format!("the verifier refused {name}");
        for name in ["bench_drop", "bench_pass", "flood_gen"] {
            program_mut::<Xdp>(&mut ebpf, name)?
                .load()
                .with_context(|| refused(name))?;
        }
        program_mut::<SchedClassifier>(&mut ebpf, TC_NEXT)?
            .load()
            .with_context(|| refused(TC_NEXT))?;
        program_mut::<TracePoint>(&mut ebpf, TP_RESET)?
            .load()
            .with_context(|| refused(TP_RESET))?;
        Ok(Self { ebpf })
    }

    fn tc_next(&mut self) -> Result<&mut SchedClassifier> {
        program_mut(&mut self.ebpf, TC_NEXT)
    }

    /// Attaches the trivial TC program to `iface`'s egress.
    pub fn attach_tc_egress(&mut self, iface: &str) -> Result<SchedClassifierLinkId> {
        self.tc_next()?
            .attach(iface, TcAttachType::Egress)
            .with_context(|| format!("attaching {TC_NEXT} to {iface} egress"))
    }

    /// Attaches the trivial tracepoint program to `tcp:tcp_send_reset`.
    pub fn attach_tp_reset(&mut self) -> Result<TracePointLinkId> {
        self.tp_reset()?
            .attach("tcp", "tcp_send_reset")
            .with_context(|| format!("attaching {TP_RESET} to tcp:tcp_send_reset"))
    }

    /// Detaches what [`Self::attach_tp_reset`] attached.
    pub fn detach_tp_reset(&mut self, link: TracePointLinkId) -> Result<()> {
        Ok(self.tp_reset()?.detach(link)?)
    }

    fn tp_reset(&mut self) -> Result<&mut TracePoint> {
        program_mut(&mut self.ebpf, TP_RESET)
    }

    /// Detaches what [`Self::attach_tc_egress`] attached.
    pub fn detach_tc_egress(&mut self, link: SchedClassifierLinkId) -> Result<()> {
        Ok(self.tc_next()?.detach(link)?)
    }

    fn xdp(&self, name: &str) -> Result<&Xdp> {
        Ok(self
            .ebpf
            .program(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?)
    }

    fn xdp_mut(&mut self, name: &str) -> Result<&mut Xdp> {
        program_mut(&mut self.ebpf, name)
    }

    /// The program fd of a trivial receiver, for BPF_PROG_TEST_RUN.
    pub fn trivial(&self, which: Trivial) -> Result<&Xdp> {
        self.xdp(which.program())
    }

    /// Attaches a trivial receiver to `iface` in native mode.
    pub fn attach(&mut self, which: Trivial, iface: &str) -> Result<XdpLinkId> {
        self.xdp_mut(which.program())?
            .attach(iface, XdpMode::Driver)
            .with_context(|| format!("attaching {} to {iface} (native)", which.program()))
    }

    /// Detaches what [`Self::attach`] attached.
    pub fn detach(&mut self, which: Trivial, link: XdpLinkId) -> Result<()> {
        Ok(self.xdp_mut(which.program())?.detach(link)?)
    }

    /// Sets what the generator writes into the source of its frames.
    pub fn set_sources(&mut self, sources: Sources) -> Result<()> {
        let mut gen_cfg: Array<_, u32> =
            Array::try_from(self.ebpf.map_mut("GEN").context("no map GEN")?)?;
        let (random, base, mask) = match sources {
            Sources::Template => (0, 0, 0),
            Sources::Random { base, mask } => (1, u32::from(base) & !mask, mask),
        };
        gen_cfg.set(0, random, 0)?;
        gen_cfg.set(1, base, 0)?;
        gen_cfg.set(2, mask, 0)?;
        Ok(())
    }

    /// Runs the generator `frames` times on `template` in live-frames mode,
    /// as if received on `ifindex` (in the calling thread's namespace); each
    /// run transmits its frame (XDP_TX). Returns the kernel's time per run.
    pub fn generate(&self, template: &[u8], ifindex: u32, frames: u32) -> Result<Duration> {
        let prog = self.xdp("flood_gen")?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(template.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        let opts = TestRunOptions {
            data_in: Some(template),
            ctx_in: Some(&ctx),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::default()
        };
        // Live-frames mode reports no return value: the receiver's counters
        // say what arrived.
        let r = prog
            .test_run(opts)
            .context("running the live-frames generator")?;
        Ok(r.duration)
    }
}

/// The program `name` of the bench object, as its type `P`.
fn program_mut<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    Ok(ebpf
        .program_mut(name)
        .with_context(|| format!("no program {name} in the bench object"))?
        .try_into()?)
}

/// Opens the XDP program with kernel id `id` through a pin in bpffs, so it
/// can be test-run (used for xdp-filter's program). `pin_dir` must be on
/// bpffs: bpftool would otherwise mount one over it.
pub fn xdp_by_id(id: u32, pin_dir: &std::path::Path) -> Result<Xdp> {
    let pin = pin_dir.join(format!("ironpost-bench-{}-prog-{id}", std::process::id()));
    let _ = std::fs::remove_file(&pin);
    crate::run(
        "bpftool",
        &["prog", "pin", "id", &id.to_string(), path_str(&pin)?],
    )?;
    let prog = Xdp::from_pin(&pin, aya_obj::programs::XdpAttachType::Interface)
        .with_context(|| format!("opening program {id} from {}", pin.display()));
    let _ = std::fs::remove_file(&pin);
    prog
}

fn path_str(p: &std::path::Path) -> Result<&str> {
    p.to_str().context("non-UTF-8 path")
}
