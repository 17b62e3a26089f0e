//! `ironpost unload`: removes the filter a stopped daemon left attached.

use std::path::{Path, PathBuf};

use anyhow::bail;
use ironpost_ebpf_engine::pin;

use ironpost_daemon::daemon_running;

/// Removes the pinned links in `dir` (those of `interfaces`, or all): the
/// program leaves those interfaces for good. Refused while a daemon answers
/// on `socket_path`: it holds the links and would go on filtering with
/// state that no longer matches the interfaces.
pub fn unload(socket_path: &Path, dir: &Path, interfaces: &[String]) -> anyhow::Result<()> {
    if daemon_running(socket_path) {
        bail!(
            "an ironpost daemon is running on {}: stop it with `--on-exit detach` (or stop it, \
             then run this again)",
            socket_path.display()
        );
    }
    let pinned: Vec<(String, PathBuf)> = pin::pinned(dir)
        .into_iter()
        .filter(|(i, _)| interfaces.is_empty() || interfaces.contains(i))
        .collect();
    for want in interfaces {
        if !pinned.iter().any(|(i, _)| i == want) {
            eprintln!("{want}: no filter pinned in {}", dir.display());
        }
    }
    if pinned.is_empty() {
        println!("nothing to unload in {}", dir.display());
        return Ok(());
    }
    for (iface, _) in &pinned {
        pin::remove(dir, iface)?;
        println!("{iface}: filter removed");
    }
    Ok(())
}
