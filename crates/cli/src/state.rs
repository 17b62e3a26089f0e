//! The daemon's state file: manual and automatic blocks with their expiry,
//! and allow-list entries added at run time. Configured entries are not
//! stored: they come from the configuration at every start.
//!
//! Writes are atomic: the new state goes to a temporary file in the same
//! directory, which is flushed to disk (fsync), renamed over the old file,
//! and the directory is flushed too. A crash at any point leaves either the
//! old state or the new one, never a mix.

use std::{
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use ironpost_core::MAX_TTL_SECS;
use ironpost_policy::{AllowEntry, BlockEntry, Origin};
use serde::{Deserialize, Serialize};

/// Version of the file format.
const VERSION: u32 = 1;

/// What the state file holds.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// When it was written (Unix time, milliseconds).
    pub saved_ms: u64,
    /// Manual and automatic blocks.
    pub blocks: Vec<BlockEntry>,
    /// Allow-list entries added at run time.
    pub allow: Vec<AllowEntry>,
}

/// A state file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading, writing, syncing or renaming failed.
    #[error("state file {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The file is not valid state; it is left untouched.
    #[error(
        "state file {path}:{line}:{column}: {message} \
         (the file was left as it is; move it away to start without it)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> StateError {
    StateError::Io {
        path: path.to_owned(),
        message: format!("{what}: {e}"),
    }
}

impl State {
    /// The state to save: manual and automatic entries only.
    pub fn collect<'a>(
        blocks: impl Iterator<Item = &'a BlockEntry>,
        allow: impl Iterator<Item = &'a AllowEntry>,
        now_ms: u64,
    ) -> Self {
        let mut blocks: Vec<BlockEntry> = blocks
            .filter(|b| b.origin != Origin::Config)
            .cloned()
            .collect();
        blocks.sort_by_key(BlockEntry::key);
        let mut allow: Vec<AllowEntry> = allow
            .filter(|a| a.origin != Origin::Config)
            .cloned()
            .collect();
        allow.sort_by_key(|a| a.prefix);
        Self {
            version: VERSION,
            saved_ms: now_ms,
            blocks,
            allow,
        }
    }

    /// Reads the state file; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Self>, StateError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path, "reading", e)),
        };
        let state: State = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        if state.version != VERSION {
            return Err(StateError::Corrupt {
                path: path.to_owned(),
                line: 1,
                column: 1,
                message: format!(
                    "format version {} is not the one this ironpost reads ({VERSION})",
                    state.version
                ),
            });
        }
        Ok(Some(state))
    }

    /// Drops entries that expired at or before `now_ms`; returns how many.
    pub fn drop_expired(&mut self, now_ms: u64) -> usize {
        let before = self.blocks.len();
        self.blocks
            .retain(|b| b.expires_ms.is_none_or(|t| t > now_ms));
        before - self.blocks.len()
    }

    /// Brings expiries later than [`MAX_TTL_SECS`] from `now_ms` back to
    /// that bound (a file written by hand, or by a version without the
    /// bound); returns how many.
    pub fn clamp_expiry(&mut self, now_ms: u64) -> usize {
        let last = now_ms.saturating_add(MAX_TTL_SECS * 1000);
        let mut n = 0;
        for b in &mut self.blocks {
            if let Some(t) = &mut b.expires_ms
                && *t > last
            {
                *t = last;
                n += 1;
            }
        }
        n
    }

    /// Writes the state atomically (write, fsync, rename, fsync directory),
    /// creating the directory (mode 0700) if needed. The file is 0600.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_err(dir, "creating the directory", e))?;
        }
        let name = path
            .file_name()
            .map_or("state".into(), |n| n.to_string_lossy());
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let result = (|| {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| io_err(&tmp, "creating", e))?;
            let mut w = BufWriter::with_capacity(1 << 20, file);
            serde_json::to_writer(&mut w, self).map_err(|e| StateError::Io {
                path: tmp.clone(),
                message: format!("writing: {e}"),
            })?;
            w.write_all(b"\n").map_err(|e| io_err(&tmp, "writing", e))?;
            let file = w
                .into_inner()
                .map_err(|e| io_err(&tmp, "writing", e.into_error()))?;
            file.sync_all().map_err(|e| io_err(&tmp, "fsync", e))?;
            fs::rename(&tmp, path).map_err(|e| io_err(path, "renaming into place", e))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err(dir, "fsync of the directory", e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironpost_core::RuleAction;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ironpost-state-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn entry(p: &str, origin: Origin, expires: Option<u64>) -> BlockEntry {
        let mut e = BlockEntry::source(p.parse().unwrap(), RuleAction::Drop, origin, 1);
        e.expires_ms = expires;
        e.reason = "because".into();
        e
    }

    #[test]
    fn round_trip_keeps_manual_and_auto_only() {
        let dir = tmpdir("rt");
        let path = dir.join("sub/state.json");
        let blocks = [
            entry("10.0.0.1", Origin::Manual, Some(5_000)),
            entry("2001:db8::/32", Origin::Auto, None),
            entry("10.0.0.2", Origin::Config, None),
        ];
        let state = State::collect(blocks.iter(), std::iter::empty(), 42);
        state.save(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let mut back = State::load(&path).unwrap().unwrap();
        assert_eq!(back, state);
        assert_eq!(back.blocks.len(), 2);
        assert_eq!(back.drop_expired(5_000), 1);
        assert_eq!(back.blocks[0].prefix.to_string(), "2001:db8::/32");
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn missing_file_is_no_state_and_corrupt_file_is_an_error() {
        let dir = tmpdir("bad");
        fs::create_dir_all(&dir).unwrap();
        assert!(State::load(&dir.join("none.json")).unwrap().is_none());
        let path = dir.join("state.json");
        fs::write(
            &path,
            "{\"version\":1,\"saved_ms\":0,\n\"blocks\":[{\"prefix\":\"10.0.0.300\"}]}",
        )
        .unwrap();
        let err = State::load(&path).unwrap_err().to_string();
        assert!(err.contains("state.json:2:"), "{err}");
        assert!(err.contains("left as it is"), "{err}");
        // The corrupt file is not touched by a failed load.
        assert!(fs::read_to_string(&path).unwrap().contains("10.0.0.300"));
        fs::write(
            &path,
            "{\"version\":9,\"saved_ms\":0,\"blocks\":[],\"allow\":[]}",
        )
        .unwrap();
        assert!(
            State::load(&path)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
