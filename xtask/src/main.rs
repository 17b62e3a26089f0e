//! Project tasks: `cargo xtask setup | build-ebpf | test | demo | soak | bench | bench-import |
//! bench-fleet | matrix | package`.

mod demo;
mod fleet_bench;
mod import_bench;
mod package;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

/// Ironpost's project tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install everything the build, tests and demo need (Debian packages,
    /// rust-src for nightly, bpf-linker in .tools/). Idempotent.
    Setup,
    /// Build the XDP object on its own (the normal `cargo build` does this
    /// too, through the engine's build script) and print where it is.
    BuildEbpf,
    /// Run setup if needed, then the whole test suite: formatting, clippy,
    /// unit tests, BPF_PROG_TEST_RUN tests and real-traffic kernel tests.
    Test {
        /// Skip the tests that need root and a kernel with XDP (they are
        /// otherwise required and fail when they cannot run).
        #[arg(long)]
        skip_kernel: bool,
        /// Skip `cargo fmt --check` and `cargo clippy`.
        #[arg(long)]
        no_lint: bool,
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Run setup if needed, build, and run Ironpost on a lab of network
    /// namespaces and a veth pair: normal and blocked traffic, then a report.
    Demo,
    /// Long differential run of the datapath against the reference model:
    /// 10,000,000 random and mutated frames through BPF_PROG_TEST_RUN
    /// (needs root).
    Soak {
        /// Frames to run.
        #[arg(long, default_value_t = 10_000_000)]
        frames: u64,
        /// Seed of the frame generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run every attack and benign case of the detection matrix against
    /// the release daemon with its defaults, each on a lab of its own, and
    /// write docs/detection-matrix.md (needs root; about five minutes, a
    /// slow scan alone takes two).
    Matrix,
    /// Measure Ironpost against xdp-filter, nftables and trivial XDP
    /// programs (BPF_PROG_TEST_RUN ns/packet, veth receive rates with a
    /// live-frames generator, bpf_stats, import time, daemon RSS) and write
    /// docs/benchmarks.md (needs root; two minutes here, plus the build). Options after
    /// `--` go to the bench: `cargo xtask bench -- --help` lists them
    /// (--rounds, --repeat, --frames, --exact, --prefixes, --import, --out).
    Bench {
        /// Options for the bench binary.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Measure `ironpost block import` of N addresses and N /24 prefixes
    /// into a release daemon on a lab veth (needs root).
    BenchImport {
        /// Entries per list.
        #[arg(long, default_value_t = 1_000_000)]
        entries: u32,
    },
    /// Measure fleet mode: one nats-server and N release daemons on lab
    /// veths; the time from a block on one host to the kernel maps of the
    /// others (median, p99) and blocks per second carried to them (needs
    /// root).
    BenchFleet {
        /// Daemons (one publishes, the others follow).
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// Latency samples.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Addresses imported for the throughput.
        #[arg(long, default_value_t = 20_000)]
        blocks: u32,
    },
    /// Build the Debian package (target/package/deb/ironpost_*.deb): the
    /// release binary with its XDP program, the systemd unit, the default
    /// configuration, man pages, completions, the fail2ban action and the
    /// Grafana dashboard. Install it with `apt install ./FILE`.
    Package,
}

/// Where the project keeps the tools setup installs.
pub struct Tools {
    root: PathBuf,
}

impl Tools {
    fn new(workspace: &Path) -> Self {
        Self {
            root: workspace.join(".tools"),
        }
    }
    /// The tools folder (`.tools/`).
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Folder with the installed binaries.
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
    /// The bpf-linker binary.
    pub fn bpf_linker(&self) -> PathBuf {
        self.bin().join("bpf-linker")
    }
    /// The LLVM prefix bpf-linker was built against (kept for its rpath).
    pub fn llvm_prefix(&self) -> PathBuf {
        self.root.join("llvm")
    }
    /// PATH with the tools folder first.
    pub fn path_env(&self) -> std::ffi::OsString {
        let mut paths = vec![self.bin()];
        if let Some(p) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&p));
        }
        std::env::join_paths(paths).unwrap_or_default()
    }
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs a command with inherited stdio; an error names it when it fails.
pub fn run_status(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The `cargo` that runs this task.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn ensure_setup(tools: &Tools) -> Result<()> {
    if !setup::is_complete(tools) {
        println!("running setup first");
        setup::setup(tools)?;
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn build_ebpf(tools: &Tools, root: &Path) -> Result<()> {
    ensure_setup(tools)?;
    let crate_dir = root.join("crates/ebpf-engine/ebpf");
    run_status(
        Command::new("rustup")
            .args(["run", "nightly", "cargo", "build", "--release"])
            .args([
                "--package",
                "ironpost-ebpf",
                "--target",
                "bpfel-unknown-none",
            ])
            .args(["-Z", "build-std=core"])
            .env("PATH", tools.path_env())
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                "-Cdebuginfo=2\x1f-Clink-arg=--btf",
            )
            .current_dir(&crate_dir),
    )?;
    println!(
        "eBPF object: {}",
        root.join("target/bpfel-unknown-none/release/ironpost-ebpf")
            .display()
    );
    Ok(())
}

fn test(
    tools: &Tools,
    root: &Path,
    skip_kernel: bool,
    no_lint: bool,
    cargo_args: &[String],
) -> Result<()> {
    ensure_setup(tools)?;
    if !skip_kernel && !is_root() {
        bail!(
            "the kernel tests load XDP programs and create network namespaces, which needs \
             root: run as root, or pass --skip-kernel to run only the others"
        );
    }
    let path = tools.path_env();
    if !no_lint {
        println!("== cargo fmt --check");
        run_status(cargo().args(["fmt", "--all", "--check"]).current_dir(root))
            .context("formatting differs: run `cargo fmt --all`")?;
        println!("== cargo clippy");
        run_status(
            cargo()
                .args(["clippy", "--all-targets", "--", "-D", "warnings"])
                .env("PATH", &path)
                .current_dir(root),
        )?;
        for (package, dir) in [
            ("ironpost-ebpf", "crates/ebpf-engine/ebpf"),
            ("ironpost-bench-ebpf", "crates/bench/ebpf"),
        ] {
            println!("== cargo clippy (eBPF crate {package}, nightly)");
            run_status(
                Command::new("rustup")
                    .args(["run", "nightly", "cargo", "clippy", "--package", package])
                    .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
                    .arg("--target-dir")
                    .arg(root.join("target/ebpf-clippy"))
                    .args(["--", "-D", "warnings"])
                    .env("PATH", &path)
                    .current_dir(root.join(dir)),
            )?;
        }
    }
    println!("== cargo test");
    let mut cmd = cargo();
    cmd.args(["test", "--lib", "--bins", "--tests"])
        .args(cargo_args)
        .env("PATH", &path)
        .current_dir(root)
        .stdout(std::process::Stdio::piped());
    if skip_kernel {
        cmd.env("IRONPOST_SKIP_KERNEL_TESTS", "1");
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("could not start {cmd:?}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut totals = TestTotals::default();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait()?;
    println!(
        "tests: {} passed, {} failed, {} ignored",
        totals.passed, totals.failed, totals.ignored
    );
    if !status.success() {
        bail!("cargo test failed with {status}");
    }
    if totals.passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

/// Runs the differential test with `frames` frames, in release mode.
fn soak(tools: &Tools, root: &Path, frames: u64, seed: u64) -> Result<()> {
    if !is_root() {
        bail!("the soak loads the XDP program, which needs root");
    }
    println!("== differential soak: {frames} frames, seed {seed}");
    run_status(
        cargo()
            .args(["test", "--release", "-p", "ironpost-ebpf-engine"])
            .args(["--test", "differential", "--", "--nocapture"])
            .env("IRONPOST_DIFFERENTIAL_FRAMES", frames.to_string())
            .env("IRONPOST_DIFFERENTIAL_SEED", seed.to_string())
            .env("PATH", tools.path_env())
            .current_dir(root),
    )
}

/// Runs the detection matrix (an ignored test) in release mode.
fn matrix(tools: &Tools, root: &Path) -> Result<()> {
    if !is_root() {
        bail!("the matrix loads XDP programs and creates network namespaces: run it as root");
    }
    let out = root.join("docs/detection-matrix.md");
    println!("== detection matrix: writing {}", out.display());
    run_status(
        cargo()
            .args(["test", "--release", "-p", "ironpost", "--test", "matrix"])
            .args(["--", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("IRONPOST_MATRIX_OUT", &out)
            .env("PATH", tools.path_env())
            .current_dir(root),
    )
}

/// Builds the release daemon and the bench, then runs the bench.
fn bench(tools: &Tools, root: &Path, args: &[String]) -> Result<()> {
    let help = args.iter().any(|a| a == "--help" || a == "-h");
    if !help && !is_root() {
        bail!("the bench loads XDP programs and creates network namespaces: run it as root");
    }
    println!("== building ironpost and ironpost-bench (release)");
    run_status(
        cargo()
            .args(["build", "--release", "--package", "ironpost"])
            .args(["--package", "ironpost-bench"])
            .env("PATH", tools.path_env())
            .current_dir(root),
    )?;
    let mut command = String::from("cargo xtask bench");
    if !args.is_empty() {
        command.push_str(" -- ");
        command.push_str(&args.join(" "));
    }
    run_status(
        Command::new(root.join("target/release/ironpost-bench"))
            .arg("--ironpost")
            .arg(root.join("target/release/ironpost"))
            .arg("--out")
            .arg(root.join("docs/benchmarks.md"))
            .args(["--command", &command])
            .args(args)
            .env("PATH", tools.path_env())
            .current_dir(root),
    )
}

/// Sums cargo test's `test result:` lines over all test binaries.
#[derive(Default, Debug, PartialEq, Eq)]
struct TestTotals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestTotals {
    fn add(&mut self, line: &str) {
        let Some(rest) = line.strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(what), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let root = workspace_root();
    let tools = Tools::new(&root);
    let result = match cli.task {
        Task::Setup => setup::setup(&tools).map(|_| ()),
        Task::BuildEbpf => build_ebpf(&tools, &root),
        Task::Test {
            skip_kernel,
            no_lint,
            cargo_args,
        } => test(&tools, &root, skip_kernel, no_lint, &cargo_args),
        Task::Demo => ensure_setup(&tools).and_then(|()| demo::demo(&tools, &root)),
        Task::Soak { frames, seed } => {
            ensure_setup(&tools).and_then(|()| soak(&tools, &root, frames, seed))
        }
        Task::Bench { args } => ensure_setup(&tools).and_then(|()| bench(&tools, &root, &args)),
        Task::Matrix => ensure_setup(&tools).and_then(|()| matrix(&tools, &root)),
        Task::Package => {
            ensure_setup(&tools).and_then(|()| package::package(&tools, &root).map(|_| ()))
        }
        Task::BenchFleet {
            hosts,
            samples,
            blocks,
        } => ensure_setup(&tools)
            .and_then(|()| fleet_bench::bench_fleet(&tools, &root, hosts, samples, blocks)),
        Task::BenchImport { entries } => {
            ensure_setup(&tools).and_then(|()| import_bench::bench_import(&tools, &root, entries))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TestTotals;

    #[test]
    fn sums_test_result_lines() {
        let mut t = TestTotals::default();
        t.add("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 2.82s");
        t.add("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.1s");
        t.add("test foo ... ok");
        assert_eq!(
            t,
            TestTotals {
                passed: 15,
                failed: 2,
                ignored: 1
            }
        );
    }
}
