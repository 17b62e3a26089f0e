//! `cargo xtask setup`: installs what building, testing and the demo need,
//! idempotently.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{Tools, run_status};

/// Debian packages the tests, the demo and the benchmarks use.
const DEBIAN_PACKAGES: &[&str] = &[
    "iproute2",
    "iputils-ping",
    "xdp-tools",
    "bpftool",
    "hping3",
    "nmap",
    "nftables",
    "tcpdump",
    "python3-scapy",
    "iperf3",
    // promtool, which checks the daemon's /metrics in the tests.
    "prometheus",
    // The package's tests: lint it, verify its unit, render its man pages,
    // drive `ironpost top` in a terminal, ban through fail2ban.
    "lintian",
    "systemd",
    "man-db",
    "tmux",
    "fail2ban",
    "util-linux",
    // Fleet mode's tests: JetStream servers for daemons to share blocks.
    "nats-server",
    // Certificates for the fleet's TLS test.
    "openssl",
];

const CARGO_DEB_VERSION: &str = "3.8.0";

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Runs every setup step; returns whether anything had to be done.
pub fn setup(tools: &Tools) -> Result<bool> {
    let mut changed = false;
    changed |= debian_packages()?;
    changed |= nightly_rust_src()?;
    changed |= bpf_linker(tools)?;
    changed |= cargo_deb(tools)?;
    changed |= crowdsec(tools)?;
    if changed {
        println!("setup: done");
    } else {
        println!("setup: nothing to do, everything is already in place");
    }
    Ok(changed)
}

/// True when every setup step is already satisfied (no side effects).
pub fn is_complete(tools: &Tools) -> bool {
    missing_packages().is_ok_and(|m| m.is_empty())
        && has_rust_src().unwrap_or(false)
        && bpf_linker_ok(tools)
        && cargo_deb_ok(tools)
        && crowdsec_ok(tools)
}

fn cargo_deb_ok(tools: &Tools) -> bool {
    Command::new(tools.bin().join("cargo-deb"))
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION)
        })
}

/// cargo-deb, which `cargo xtask package` builds the package with.
fn cargo_deb(tools: &Tools) -> Result<bool> {
    if cargo_deb_ok(tools) {
        println!(
            "ok: cargo-deb {CARGO_DEB_VERSION} in {}",
            tools.bin().display()
        );
        return Ok(false);
    }
    println!("building cargo-deb {CARGO_DEB_VERSION} (about two minutes)");
    run_status(
        Command::new("cargo")
            .args([
                "install",
                "cargo-deb",
                "--locked",
                "--version",
                CARGO_DEB_VERSION,
            ])
            .arg("--root")
            .arg(tools.root())
            .current_dir(tools.root()),
    )
    .context("building cargo-deb failed (see the cargo output above)")?;
    if !cargo_deb_ok(tools) {
        bail!("cargo-deb was built but `cargo-deb --version` does not run");
    }
    Ok(true)
}

/// Where CrowdSec's binaries are unpacked.
pub fn crowdsec_root(tools: &Tools) -> PathBuf {
    tools.root().join("crowdsec")
}

fn crowdsec_ok(tools: &Tools) -> bool {
    let root = crowdsec_root(tools);
    ["usr/bin/crowdsec", "usr/bin/cscli"]
        .iter()
        .all(|b| root.join(b).is_file())
}

/// CrowdSec for the tests: the Debian package's post-install step needs
/// the network, so the package is fetched and unpacked, not installed.
fn crowdsec(tools: &Tools) -> Result<bool> {
    let root = crowdsec_root(tools);
    if crowdsec_ok(tools) {
        println!("ok: crowdsec unpacked in {}", root.display());
        return Ok(false);
    }
    println!("fetching the crowdsec Debian package (unpacked, not installed)");
    let download = tools.root().join("downloads");
    fs::create_dir_all(&download).with_context(|| format!("creating {}", download.display()))?;
    run_status(
        Command::new("apt-get")
            .args(["download", "-q", "crowdsec"])
            .current_dir(&download),
    )
    .context("`apt-get download crowdsec` failed; check the package sources")?;
    let deb = fs::read_dir(&download)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("crowdsec_") && n.ends_with(".deb"))
        })
        .context("apt-get download crowdsec left no crowdsec_*.deb")?;
    run_status(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    if !crowdsec_ok(tools) {
        bail!(
            "{} holds no usr/bin/crowdsec and usr/bin/cscli after unpacking",
            root.display()
        );
    }
    Ok(true)
}

fn missing_packages() -> Result<Vec<&'static str>> {
    if Command::new("dpkg-query")
        .arg("--version")
        .output()
        .is_err()
    {
        bail!(
            "dpkg-query not found: setup installs Debian packages and needs a Debian-based \
             system; install these by other means: {}",
            DEBIAN_PACKAGES.join(" ")
        );
    }
    let mut missing = Vec::new();
    for pkg in DEBIAN_PACKAGES {
        let out = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", pkg])
            .output()
            .context("running dpkg-query")?;
        if !String::from_utf8_lossy(&out.stdout).contains("install ok installed") {
            missing.push(*pkg);
        }
    }
    Ok(missing)
}

fn debian_packages() -> Result<bool> {
    let missing = missing_packages()?;
    if missing.is_empty() {
        println!("ok: Debian packages ({})", DEBIAN_PACKAGES.join(", "));
        return Ok(false);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "Debian packages missing: {}. Installing them needs root: run \
             `sudo apt-get install -y {}` or run this command as root",
            missing.join(" "),
            missing.join(" ")
        );
    }
    println!("installing Debian packages: {}", missing.join(" "));
    run_status(
        Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get update failed; check the package sources and the network")?;
    run_status(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("apt-get install failed for: {}", missing.join(" ")))?;
    let still = missing_packages()?;
    if !still.is_empty() {
        bail!(
            "apt-get finished but these packages are still not installed: {}",
            still.join(" ")
        );
    }
    Ok(true)
}

fn nightly_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("running `rustc +nightly --print sysroot` (is rustup installed?)")?;
    if !out.status.success() {
        bail!(
            "the `nightly` Rust toolchain is missing; the eBPF program needs it. \
             Install it with `rustup toolchain install nightly --profile minimal` \
             ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn has_rust_src() -> Result<bool> {
    let out = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("running rustup")?;
    if !out.status.success() {
        nightly_sysroot()?;
        bail!(
            "rustup component list failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src")))
}

fn nightly_rust_src() -> Result<bool> {
    nightly_sysroot()?;
    if has_rust_src()? {
        println!("ok: rust-src for the nightly toolchain");
        return Ok(false);
    }
    println!("installing rust-src for the nightly toolchain");
    run_status(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
    .context("`rustup component add rust-src --toolchain nightly` failed")?;
    Ok(true)
}

fn bpf_linker_ok(tools: &Tools) -> bool {
    Command::new(tools.bpf_linker())
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        })
}

/// The nightly's own libLLVM and its major version.
fn nightly_llvm() -> Result<(PathBuf, String)> {
    let sysroot = nightly_sysroot()?;
    let out = Command::new("rustc")
        .args(["+nightly", "-vV"])
        .output()
        .context("running `rustc +nightly -vV`")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let major = text
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .map(str::to_owned)
        .context("`rustc +nightly -vV` did not report an LLVM version")?;
    let lib_dir = sysroot.join("lib");
    let lib = fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("libLLVM.so.{major}")))
        })
        .with_context(|| {
            format!(
                "no libLLVM.so.{major}* in {}: this nightly does not ship LLVM as a shared \
                 library, which bpf-linker needs",
                lib_dir.display()
            )
        })?;
    Ok((lib, major))
}

fn bpf_linker(tools: &Tools) -> Result<bool> {
    if bpf_linker_ok(tools) {
        println!(
            "ok: bpf-linker {BPF_LINKER_VERSION} in {}",
            tools.bin().display()
        );
        return Ok(false);
    }
    let (lib, major) = nightly_llvm()?;
    let prefix = tools.llvm_prefix();
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("creating {}", prefix_lib.display()))?;
    let file_name = lib.file_name().context("libLLVM path has no file name")?;
    symlink_force(&lib, &prefix_lib.join("libLLVM.so"))?;
    symlink_force(&lib, &prefix_lib.join(file_name))?;
    println!(
        "building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} \
         (about a minute)"
    );
    run_status(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
                "--root",
            ])
            .arg(tools.root())
            .env("LLVM_PREFIX", &prefix)
            .current_dir(tools.root()),
    )
    .context("building bpf-linker failed (see the cargo output above)")?;
    if !bpf_linker_ok(tools) {
        bail!(
            "bpf-linker was built but `{} --version` does not run",
            tools.bpf_linker().display()
        );
    }
    Ok(true)
}

fn symlink_force(target: &Path, link: &Path) -> Result<()> {
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}
