//! Builds the bench's XDP programs (crate `ironpost-bench-ebpf`, nightly,
//! bpfel-unknown-none) so that the bench binary can embed them.

use std::{env, path::PathBuf};

use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .and_then(|p| p.parent())
        .context("the bench crate is not two levels below the workspace root")?;
    // bpf-linker lives in the project's tools folder (`cargo xtask setup`).
    let tools_bin = workspace.join(".tools/bin");
    let mut paths = vec![tools_bin.clone()];
    if let Some(p) = env::var_os("PATH") {
        paths.extend(env::split_paths(&p));
    }
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true");
    if !skip && !paths.iter().any(|p| p.join("bpf-linker").is_file()) {
        bail!(
            "bpf-linker not found (looked in {} and on PATH): run `cargo xtask setup` first",
            tools_bin.display()
        );
    }
    let path = env::join_paths(&paths)?;
    // SAFETY: build scripts are single-threaded; nothing reads the
    // environment concurrently.
    unsafe { env::set_var("PATH", path) };
    let ebpf_dir = manifest_dir.join("ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "ironpost-bench-ebpf",
            root_dir: ebpf_dir.to_str().context("non-UTF-8 path")?,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the bench's XDP programs (crate ironpost-bench-ebpf) failed")
}
