//! `ironpost-bench`, run by `cargo xtask bench`: Ironpost's datapath
//! against xdp-filter, nftables and trivial XDP programs, through
//! BPF_PROG_TEST_RUN and on a veth pair in native mode, with the daemon's
//! memory and import time. Writes `docs/benchmarks.md`. Needs root.

mod daemon;
mod flood;
mod jited;
mod napi;
mod packets;
mod peers;
mod programs;
mod report;
mod subjects;
mod testrun;
mod xlated;

use std::{
    fmt::Write as _,
    io::Write as _,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail, ensure};
use clap::Parser;
use ironpost_lab::Lab;

use crate::{
    flood::{BpfStats, Flood, RECEIVERS},
    programs::{BenchPrograms, Trivial},
    report::Report,
    subjects::Variant,
    testrun::{Check, Runner, Subject},
};

/// Column of Ironpost with its defaults.
pub const IRONPOST_DEFAULTS: &str = "Ironpost (defaults)";
/// Column of xdp-filter.
pub const XDP_FILTER: &str = "xdp-filter";
/// Row names the targets refer to (see `packets::cases`).
pub const CASE_SYN_V4: &str = "IPv4 TCP SYN, passed";
/// See [`CASE_SYN_V4`].
pub const CASE_UDP_V4: &str = "IPv4 UDP, passed";
/// See [`CASE_SYN_V4`].
pub const CASE_FRAG_V4: &str = "IPv4 UDP in 2 fragments, passed (mean per fragment)";
/// See [`CASE_SYN_V4`].
pub const CASE_EXACT_V4: &str = "IPv4 exact-address drop";
/// See [`CASE_SYN_V4`].
pub const CASE_PREFIX_V4: &str = "IPv4 prefix drop";

/// Measures Ironpost against its peers and writes the report.
#[derive(Parser)]
#[command(name = "ironpost-bench")]
struct Args {
    /// The release `ironpost` binary (the daemon under test).
    #[arg(long)]
    ironpost: PathBuf,
    /// Where to write the report.
    #[arg(long, default_value = "docs/benchmarks.md")]
    out: PathBuf,
    /// Rounds per figure (medians are reported).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// BPF_PROG_TEST_RUN repeat count per measurement. Each one lasts
    /// about 0.15 s at the default: shorter ones (200,000, about 15 ms)
    /// were taken whole by this machine's bursts of slowness (up to 50 ns
    /// a frame on any program), and their medians moved by as much.
    #[arg(long, default_value_t = 2_000_000)]
    repeat: u32,
    /// Frames per flood on the veth pair.
    #[arg(long, default_value_t = 2_000_000)]
    frames: u32,
    /// Run the floods' generator and receiver on one CPU, as the veth does
    /// by default, instead of giving the receiver's NAPI its own kernel
    /// thread on a CPU of its own (the rate then mixes the two).
    #[arg(long)]
    shared_cpu: bool,
    /// Exact IPv4 addresses in the "exact addresses" variant (at most 10M).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    exact: u32,
    /// /24 prefixes in the "prefixes" variant (at most 10M).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    prefixes: u32,
    /// /24 prefixes in the import measurement (at most 10M).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    import: u32,
    /// How the run was asked for, written into the report.
    #[arg(long, default_value = "ironpost-bench")]
    command: String,
    /// Only the floods on the veth pair, for profiling: prints their
    /// medians (and each round's receive rate and frames the veth refused)
    /// and writes no report.
    #[arg(long)]
    floods_only: bool,
    /// With `--floods-only`: flood only these receivers (trivial-drop,
    /// trivial-pass, trivial-pair, trivial-tracepoint, xdp-filter, nftables, ironpost).
    #[arg(long = "receiver", value_parser = parse_receiver, requires = "floods_only")]
    receivers: Vec<flood::Receiver>,
    /// With `--floods-only`: write each receiver's JIT-compiled programs
    /// into this directory while they are attached (`<receiver>-<hook>.jit`
    /// raw, `.lines` JIT offset to source line, `.xlated`), to read perf's
    /// sample offsets against the source.
    #[arg(long, requires = "floods_only")]
    jited: Option<PathBuf>,
    /// With `--floods-only`: only this flood (blocked, spoofed-syn).
    #[arg(long, value_parser = parse_scenario, requires = "floods_only")]
    scenario: Option<flood::Scenario>,
    /// Only the BPF_PROG_TEST_RUN figures, for profiling: prints their
    /// medians and writes no report.
    #[arg(long, conflicts_with = "floods_only")]
    testrun_only: bool,
    /// With `--testrun-only`: only the frames whose row name contains this
    /// text (for example "exact"; repeatable).
    #[arg(long = "case", requires = "testrun_only")]
    cases: Vec<String>,
}

fn parse_scenario(name: &str) -> Result<flood::Scenario, String> {
    match name {
        "blocked" => Ok(flood::Scenario::Blocked),
        "spoofed-syn" => Ok(flood::Scenario::SpoofedSyn),
        _ => Err(format!(
            "unknown flood {name:?}: one of blocked, spoofed-syn"
        )),
    }
}

fn parse_receiver(name: &str) -> Result<flood::Receiver, String> {
    flood::RECEIVERS
        .iter()
        .copied()
        .find(|r| r.key() == name)
        .ok_or_else(|| {
            let names: Vec<_> = flood::RECEIVERS.iter().map(|r| r.key()).collect();
            format!("unknown receiver {name:?}: one of {}", names.join(", "))
        })
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(
        args.repeat > 0 && args.frames > 0,
        "--repeat and --frames must be at least 1"
    );
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench loads XDP programs and creates network namespaces: run it as root");
    }
    for tool in ["xdp-filter", "nft", "bpftool", "ip"] {
        which(tool).with_context(|| {
            format!("{tool} is not installed: run `cargo xtask setup` (it installs the peers)")
        })?;
    }
    mount_bpffs()?;
    let dir = std::env::temp_dir().join(format!("ironpost-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    if args.testrun_only {
        let result = testrun_only(&args);
        let _ = std::fs::remove_dir_all(&dir);
        return result;
    }
    if args.floods_only {
        let result = floods_only(&args, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        return result;
    }
    let result = bench(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    std::fs::write(&args.out, report.markdown())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("\n== targets (Ironpost defaults / xdp-filter, medians)");
    for t in report.targets() {
        println!(
            "   {:<62} {:>6.2}  (bound {}{:.1}: {})",
            t.what,
            t.ratio,
            if t.at_least { "≥" } else { "≤" },
            t.bound,
            if t.met() { "met" } else { "NOT met" }
        );
    }
    println!("report written to {}", args.out.display());
    Ok(())
}

fn bench(args: &Args, dir: &Path) -> Result<Report> {
    let placement = placement(args)?;
    let mut progs = BenchPrograms::load()?;
    let lab = Lab::new(1).context("creating the lab (needs iproute2 and root)")?;
    println!(
        "== lab: {} <-> {} in {}",
        lab.host_if(),
        lab.peer_if(),
        lab.ns()
    );

    let testrun = testrun(args, &lab, &mut progs, packets::cases())?;

    let floods = floods(args, placement, &lab, &mut progs, dir)?;

    println!("== importing {} /24 prefixes into the daemon", args.import);
    let import = import(&args.ironpost, &lab, dir, args.import)?;
    drop(lab);

    Ok(Report {
        machine: machine()?,
        command: args.command.clone(),
        rounds: args.rounds,
        repeat: args.repeat,
        frames: args.frames,
        placement: placement.describe(),
        subjects: testrun.subjects,
        cases: testrun.cases,
        testrun: testrun.samples,
        floods,
        import,
        xlated: testrun.xlated,
        verdict_notes: testrun.verdict_notes,
    })
}

/// The TEST_RUN stage's results.
struct TestRunResults {
    subjects: Vec<String>,
    cases: Vec<String>,
    samples: testrun::Samples,
    verdict_notes: Vec<String>,
    xlated: Vec<String>,
}

/// Every subject on every case through BPF_PROG_TEST_RUN, subjects
/// interleaved round by round.
fn testrun(
    args: &Args,
    lab: &Lab,
    progs: &mut BenchPrograms,
    cases: Vec<packets::Case>,
) -> Result<TestRunResults> {
    println!("== BPF_PROG_TEST_RUN");
    let variants = [
        Variant {
            name: IRONPOST_DEFAULTS,
            detection: true,
            exact: 0,
            prefixes: 0,
        },
        Variant {
            name: "Ironpost, detection off",
            detection: false,
            exact: 0,
            prefixes: 0,
        },
        Variant {
            name: "Ironpost, +100k prefixes",
            detection: true,
            exact: 0,
            prefixes: args.prefixes,
        },
        Variant {
            name: "Ironpost, +1M addresses",
            detection: true,
            exact: args.exact,
            prefixes: 0,
        },
    ];
    let mut engines = Vec::new();
    for v in variants {
        let started = Instant::now();
        engines.push((v.name, subjects::ironpost_engine(v)?));
        println!(
            "   loaded {} in {:.1} s",
            v.name,
            started.elapsed().as_secs_f64()
        );
    }
    let xlated = xlated::inspect()?;
    let filter = peers::XdpFilter::load(lab.host_if())?;
    let filter_prog =
        programs::xdp_by_id(peers::attached_prog_id(lab.host_if())?, Path::new(BPFFS))?;
    let mut subjects = vec![
        Subject {
            name: "trivial XDP_DROP".into(),
            check: Check::None,
            runner: Runner::Xdp(progs.trivial(Trivial::Drop)?),
        },
        Subject {
            name: "trivial XDP_PASS".into(),
            check: Check::None,
            runner: Runner::Xdp(progs.trivial(Trivial::Pass)?),
        },
        Subject {
            name: XDP_FILTER.into(),
            check: Check::Report,
            runner: Runner::Xdp(&filter_prog),
        },
    ];
    for (name, engine) in engines {
        subjects.push(Subject {
            name: name.to_owned(),
            check: Check::Enforce,
            runner: Runner::Engine(Box::new(engine)),
        });
    }
    let (samples, verdict_notes) =
        testrun::measure(&mut subjects, &cases, args.rounds, args.repeat)?;
    let subject_names: Vec<String> = subjects.iter().map(|s| s.name.clone()).collect();
    drop(subjects);
    drop(filter_prog);
    drop(filter);

    Ok(TestRunResults {
        subjects: subject_names,
        cases: cases.iter().map(|c| c.name.to_owned()).collect(),
        samples,
        verdict_notes,
        xlated,
    })
}

/// `--testrun-only`: the TEST_RUN figures and their medians on stdout.
fn testrun_only(args: &Args) -> Result<()> {
    let cases: Vec<_> = packets::cases()
        .into_iter()
        .filter(|c| args.cases.is_empty() || args.cases.iter().any(|n| c.name.contains(n.as_str())))
        .collect();
    ensure!(
        !cases.is_empty(),
        "no frame's row name contains any of {:?}",
        args.cases
    );
    let mut progs = BenchPrograms::load()?;
    let lab = Lab::new(1).context("creating the lab (needs iproute2 and root)")?;
    let r = testrun(args, &lab, &mut progs, cases)?;
    for (c, case) in r.cases.iter().enumerate() {
        println!("   {case}");
        for (s, subject) in r.subjects.iter().enumerate() {
            let v = &r.samples[s][c];
            let rounds: Vec<String> = v.iter().map(|x| format!("{x:.0}")).collect();
            println!(
                "      {subject:<28} {:>6.1} ns  ({})",
                report::median(v),
                rounds.join(" ")
            );
        }
    }
    Ok(())
}

/// Every flood, one value per round, per receiver and scenario.
type Floods = Vec<(flood::Receiver, flood::Scenario, Vec<flood::Sample>)>;

/// The floods on the veth pair, receivers interleaved round by round.
fn floods(
    args: &Args,
    placement: napi::Placement,
    lab: &Lab,
    progs: &mut BenchPrograms,
    dir: &Path,
) -> Result<Floods> {
    println!("== floods on the veth pair ({} frames each)", args.frames);
    let stats = BpfStats::enable()?;
    let mut floods: Floods = Vec::new();
    {
        let mut flood = Flood::new(lab, progs, &args.ironpost, dir, args.frames, placement)?;
        flood.dump_jited(args.jited.as_deref())?;
        flood.only(args.scenario);
        let receivers: Vec<_> = RECEIVERS
            .into_iter()
            .filter(|r| args.receivers.is_empty() || args.receivers.contains(r))
            .collect();
        for round in 0..args.rounds {
            for k in 0..receivers.len() {
                let receiver = receivers[(k + round) % receivers.len()];
                for (scenario, sample) in flood.round(receiver)? {
                    match floods
                        .iter_mut()
                        .find(|(r, s, _)| *r == receiver && *s == scenario)
                    {
                        Some((_, _, v)) => v.push(sample),
                        None => floods.push((receiver, scenario, vec![sample])),
                    }
                }
            }
            println!("   flood round {}/{} done", round + 1, args.rounds);
        }
    }
    drop(stats);
    floods.sort_by_key(|(r, s, _)| {
        (
            *s as u8,
            RECEIVERS.iter().position(|x| x == r).unwrap_or(usize::MAX),
        )
    });
    Ok(floods)
}

/// Where the floods' generator and receiver run.
fn placement(args: &Args) -> Result<napi::Placement> {
    if args.shared_cpu {
        Ok(napi::Placement::Shared)
    } else {
        napi::Placement::dedicated()
    }
}

/// `--floods-only`: the floods and their medians on stdout.
fn floods_only(args: &Args, dir: &Path) -> Result<()> {
    let placement = placement(args)?;
    let mut progs = BenchPrograms::load()?;
    let lab = Lab::new(1).context("creating the lab (needs iproute2 and root)")?;
    for (receiver, scenario, samples) in floods(args, placement, &lab, &mut progs, dir)? {
        let m = |f: fn(&flood::Sample) -> f64| {
            report::median(&samples.iter().map(f).collect::<Vec<_>>())
        };
        let rates: Vec<String> = samples
            .iter()
            .map(|s| format!("{:.3}/{}k", s.mpps, s.refused / 1000))
            .collect();
        println!(
            "   {scenario:?} / {}: {:.3} Mpps (per round, Mpps/frames refused: {}), XDP {:.0} ns, egress {:.0} ns",
            receiver.name(),
            m(|s| s.mpps),
            rates.join(" "),
            m(|s| s.prog_ns),
            m(|s| s.egress_ns.unwrap_or(0.0)),
        );
    }
    Ok(())
}

/// Times `ironpost block import` of `entries` /24 prefixes into a daemon
/// on the lab; returns (entries, seconds, RSS before, RSS after).
fn import(bin: &Path, lab: &Lab, dir: &Path, entries: u32) -> Result<(u32, f64, u64, u64)> {
    let list = dir.join("prefixes.netset");
    let mut text = String::with_capacity(entries as usize * 16);
    text.push_str("# generated by cargo xtask bench\n");
    for i in 0..entries {
        let a = Ipv4Addr::from(u32::from(Ipv4Addr::new(40, 0, 0, 0)).wrapping_add(i << 8));
        let _ = writeln!(text, "{a}/24");
    }
    std::fs::write(&list, text)?;
    let config = subjects::ironpost_toml(true, entries + 16, "native");
    let daemon = daemon::Daemon::start(bin, lab.host_if(), &dir.join("import"), &config)?;
    let before = daemon.rss_kib()?;
    let started = Instant::now();
    daemon.ctl(&["block", "import", list.to_str().context("non-UTF-8 path")?])?;
    let secs = started.elapsed().as_secs_f64();
    let after = daemon.rss_kib()?;
    let status: serde_json::Value = serde_json::from_str(&daemon.ctl(&["status", "--json"])?)?;
    ensure!(
        status["maps"]["blocks"].as_u64().unwrap_or(0) >= u64::from(entries),
        "the daemon holds {} block entries after importing {entries}",
        status["maps"]["blocks"]
    );
    daemon.stop()?;
    Ok((entries, secs, before, after))
}

fn machine() -> Result<Vec<(String, String)>> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "unknown".into(),
            |k| format!("{:.1} GiB", k / 1024.0 / 1024.0),
        );
    let kernel = run("uname", &["-r"])?.trim().to_owned();
    let xdp_tools = run("xdp-filter", &["--version"])
        .or_else(|_| run("dpkg-query", &["-W", "-f", "${Version}", "xdp-tools"]))
        .unwrap_or_else(|_| "unknown".into());
    let nft = run("nft", &["--version"]).unwrap_or_default();
    let date = run("date", &["-u", "+%Y-%m-%d %H:%M UTC"])?;
    Ok(vec![
        ("date".into(), date.trim().into()),
        ("CPU".into(), cpu),
        ("cores".into(), cores.to_string()),
        ("memory".into(), mem_gib),
        ("kernel".into(), kernel),
        ("xdp-tools".into(), xdp_tools.trim().replace('\n', " ")),
        ("nftables".into(), nft.trim().into()),
    ])
}

const BPFFS: &str = "/sys/fs/bpf";

/// Mounts bpffs on /sys/fs/bpf if nothing is mounted there (xdp-filter
/// pins its maps there; the bench pins xdp-filter's program to test-run it).
fn mount_bpffs() -> Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(BPFFS))
    {
        return Ok(());
    }
    run("mount", &["-t", "bpf", "bpf", BPFFS]).map(|_| ())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// Runs a command, returning its stdout; the error names the command and
/// quotes its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    run_with_stdin(program, args, "")
}

/// [`run`] with `input` on stdin.
pub fn run_with_stdin(program: &str, args: &[&str], input: &str) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {program}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    ensure!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
