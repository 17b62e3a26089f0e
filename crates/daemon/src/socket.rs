//! The control socket's file: created 0600 (root only) in a 0700
//! directory, refused when another daemon answers on it, removed when the
//! daemon stops; and connecting to it with errors that say what is wrong.

use std::{
    os::unix::{
        fs::{DirBuilderExt, PermissionsExt},
        net::UnixStream,
    },
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

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
