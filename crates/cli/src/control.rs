//! The control channel between `ironpost` commands and the running daemon:
//! a Unix socket (mode 0600, root only) carrying one JSON request line and
//! answering with JSON lines: progress lines, then one final line.

use std::{
    io::{self, BufRead, BufReader, Write},
    os::unix::{
        fs::{DirBuilderExt, PermissionsExt},
        net::UnixStream,
    },
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use ironpost_core::Prefix;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Largest request the daemon reads (a 1,000,000-line import is ~20 MB).
pub const MAX_REQUEST_BYTES: usize = 256 << 20;

/// A command for the daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Block sources (add or update).
    BlockAdd {
        /// Addresses and prefixes.
        prefixes: Vec<Prefix>,
        /// Seconds until the blocks expire; none for never.
        ttl_secs: Option<u64>,
        /// Why.
        reason: String,
        /// From `block import`: entries set by the config are skipped
        /// rather than refusing the whole change.
        import: bool,
        /// Allow `0.0.0.0/0` and `::/0` (every address of a family).
        #[serde(default)]
        force: bool,
    },
    /// Remove source blocks.
    BlockDel {
        /// Addresses and prefixes.
        prefixes: Vec<Prefix>,
    },
    /// List the block list.
    BlockList,
    /// Add allow-list entries.
    AllowAdd {
        /// Addresses and prefixes.
        prefixes: Vec<Prefix>,
        /// Why.
        reason: String,
    },
    /// Remove allow-list entries.
    AllowDel {
        /// Addresses and prefixes.
        prefixes: Vec<Prefix>,
    },
    /// List the allow list.
    AllowList,
    /// Traffic counters and rates.
    Stats,
    /// Interfaces, program, maps, uptime.
    Status,
    /// Re-read the configuration file.
    Reload,
}

/// One answer line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Work in progress: `done` of `total`.
    Progress {
        /// Entries done.
        done: usize,
        /// Entries in all.
        total: usize,
    },
    /// The final answer.
    Ok(Value),
    /// The request failed; nothing was changed.
    Error(String),
}

/// Sends `req` to the daemon at `socket` and returns its final answer,
/// calling `on_progress` for each progress line.
pub fn call(
    socket: &Path,
    req: &Request,
    on_progress: &mut dyn FnMut(usize, usize),
) -> anyhow::Result<Value> {
    let stream = connect(socket)?;
    let mut w = io::BufWriter::with_capacity(1 << 20, &stream);
    serde_json::to_writer(&mut w, req).context("sending the request")?;
    w.write_all(b"\n").context("sending the request")?;
    w.flush().context("sending the request")?;
    drop(w);
    stream
        .shutdown(std::net::Shutdown::Write)
        .context("sending the request")?;
    let reader = BufReader::new(&stream);
    for line in reader.lines() {
        let line = line.context("reading the daemon's answer")?;
        match serde_json::from_str::<Reply>(&line)
            .with_context(|| format!("the daemon sent something unexpected: {line}"))?
        {
            Reply::Progress { done, total } => on_progress(done, total),
            Reply::Ok(v) => return Ok(v),
            Reply::Error(e) => bail!("{e}"),
        }
    }
    bail!("the daemon closed the connection without answering (see its log)")
}

fn connect(socket: &Path) -> anyhow::Result<UnixStream> {
    UnixStream::connect(socket).map_err(|e| {
        let s = socket.display();
        match e.kind() {
            io::ErrorKind::NotFound => anyhow::anyhow!(
                "no ironpost daemon is running: there is no control socket at {s} \
                 (start one with `ironpost run`, or pass --socket)"
            ),
            io::ErrorKind::ConnectionRefused => anyhow::anyhow!(
                "no ironpost daemon is running: the control socket {s} is left over \
                 from one that stopped"
            ),
            io::ErrorKind::PermissionDenied => {
                anyhow::anyhow!("permission denied on the control socket {s}: it is for root only")
            }
            _ => anyhow::anyhow!("connecting to the daemon at {s}: {e}"),
        }
    })
}

/// Whether a daemon answers on `socket`.
pub fn daemon_running(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

/// Creates the control socket: its directory (0700) if missing, a stale
/// socket file removed, the socket itself 0600. Refuses when another
/// daemon answers on it.
pub fn bind(socket: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    if socket.exists() {
        if daemon_running(socket) {
            bail!(
                "another ironpost daemon is running: it answers on {} (stop it first, or use \
                 another --socket)",
                socket.display()
            );
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing the stale socket {}", socket.display()))?;
    }
    // SAFETY: umask only changes this process's file creation mask; the
    // previous mask is put back right after the socket is created, so the
    // socket never exists with wider permissions.
    let old = unsafe { libc::umask(0o177) };
    let listener = tokio::net::UnixListener::bind(socket);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener =
        listener.with_context(|| format!("creating the control socket {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", socket.display()))?;
    Ok(listener)
}

/// Removes the control socket if it is still ours (same inode).
pub struct SocketGuard {
    path: PathBuf,
    ino: Option<u64>,
}

impl SocketGuard {
    /// Guards the socket at `path`, as it is now.
    pub fn new(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            path: path.to_owned(),
            ino: std::fs::metadata(path).ok().map(|m| m.ino()),
        }
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::metadata(&self.path).ok().map(|m| m.ino());
        if now.is_some() && now == self.ino {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json_lines() {
        let req = Request::BlockAdd {
            prefixes: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ],
            ttl_secs: Some(600),
            reason: "test".into(),
            import: false,
            force: false,
        };
        let text = serde_json::to_string(&req).unwrap();
        assert!(text.contains("\"cmd\":\"block_add\""), "{text}");
        assert!(text.contains("\"10.0.0.0/8\""), "{text}");
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        let bad = serde_json::from_str::<Request>(
            "{\"cmd\":\"block_del\",\"prefixes\":[\"10.0.0.1/8\"]}",
        )
        .unwrap_err();
        assert!(bad.to_string().contains("host bits"), "{bad}");
        let reply = serde_json::to_string(&Reply::Progress { done: 1, total: 2 }).unwrap();
        assert_eq!(reply, "{\"progress\":{\"done\":1,\"total\":2}}");
    }

    #[test]
    fn no_daemon_is_said_clearly() {
        let path = std::env::temp_dir().join(format!("ironpost-nosock-{}", std::process::id()));
        let err = call(&path, &Request::Status, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("no ironpost daemon is running"), "{err}");
        // A socket file nobody listens on.
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(l);
        let err = call(&path, &Request::Status, &mut |_, _| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains("left over"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
