//! Project tasks: `cargo xtask setup | build-ebpf | test | demo`.

mod demo;
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
        println!("== cargo clippy (eBPF crate, nightly)");
        run_status(
            Command::new("rustup")
                .args([
                    "run",
                    "nightly",
                    "cargo",
                    "clippy",
                    "--package",
                    "ironpost-ebpf",
                ])
                .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
                .arg("--target-dir")
                .arg(root.join("target/ebpf-clippy"))
                .args(["--", "-D", "warnings"])
                .env("PATH", &path)
                .current_dir(root.join("crates/ebpf-engine/ebpf")),
        )?;
    }
    println!("== cargo test");
    let mut cmd = cargo();
    cmd.arg("test")
        .args(cargo_args)
        .env("PATH", &path)
        .current_dir(root);
    if skip_kernel {
        cmd.env("IRONPOST_SKIP_KERNEL_TESTS", "1");
    }
    run_status(&mut cmd)
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
