//! Builds the XDP program (crate `ironpost-ebpf`, nightly, bpfel-unknown-none)
//! so that the engine can embed it: `cargo build` yields one binary.

use std::{env, path::PathBuf};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .and_then(|p| p.parent())
        .context("the engine crate is not two levels below the workspace root")?;
    let ebpf_dir = manifest_dir.join("ebpf");
    let common_dir = manifest_dir.join("ebpf-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());

    // bpf-linker lives in the project's tools folder (`cargo xtask setup`);
    // the child cargo that aya-build spawns must find it on PATH.
    let tools_bin = workspace.join(".tools/bin");
    let mut paths = vec![tools_bin.clone()];
    if let Some(p) = env::var_os("PATH") {
        paths.extend(env::split_paths(&p));
    }
    let path = env::join_paths(&paths)?;
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    if !skip && which(&paths, "bpf-linker").is_none() {
        bail!(
            "bpf-linker not found (looked in {} and on PATH): run `cargo xtask setup` first",
            tools_bin.display()
        );
    }
    // SAFETY: build scripts are single-threaded; nothing reads the
    // environment concurrently.
    unsafe { env::set_var("PATH", path) };

    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "ironpost-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the XDP program (crate ironpost-ebpf) failed")
}

fn which(paths: &[PathBuf], name: &str) -> Option<PathBuf> {
    paths.iter().map(|p| p.join(name)).find(|p| p.is_file())
}
