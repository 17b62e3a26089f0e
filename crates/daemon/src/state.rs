//! What the daemon restores at start: manual and automatic blocks with
//! their expiry, and allow-list entries added at run time, as read from the
//! store ([`crate::store`]), or from a JSON state file of the earlier
//! format, which the store converts.

use std::{
    fs,
    path::{Path, PathBuf},
};

use ironpost_core::MAX_TTL_SECS;
use ironpost_policy::{AllowEntry, BlockEntry, RuleKey};
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
    /// Reads a JSON state file (v1); `None` when there is none.
    pub fn load_json(path: &Path) -> Result<Option<Self>, StateError> {
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

    /// Drops entries that expired at or before `now_ms`; returns their keys.
    pub fn drop_expired(&mut self, now_ms: u64) -> Vec<RuleKey> {
        let mut gone = Vec::new();
        self.blocks.retain(|b| {
            let keep = b.expires_ms.is_none_or(|t| t > now_ms);
            if !keep {
                gone.push(b.key());
            }
            keep
        });
        gone
    }

    /// Brings expiries later than [`MAX_TTL_SECS`] from `now_ms` back to
    /// that bound (a file written by hand, or by a version without the
    /// bound); returns their keys.
    pub fn clamp_expiry(&mut self, now_ms: u64) -> Vec<RuleKey> {
        let last = now_ms.saturating_add(MAX_TTL_SECS * 1000);
        let mut clamped = Vec::new();
        for b in &mut self.blocks {
            if let Some(t) = &mut b.expires_ms
                && *t > last
            {
                *t = last;
                clamped.push(b.key());
            }
        }
        clamped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironpost_core::{Direction, RuleAction};
    use ironpost_policy::Origin;

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
    fn expired_entries_are_dropped_and_far_expiries_clamped() {
        let mut state = State {
            version: VERSION,
            saved_ms: 0,
            blocks: vec![
                entry("10.0.0.1", Origin::Manual, Some(5_000)),
                entry("10.0.0.2", Origin::Auto, Some(u64::MAX)),
                entry("2001:db8::/32", Origin::Auto, None),
            ],
            allow: Vec::new(),
        };
        let gone = state.drop_expired(5_000);
        assert_eq!(gone, vec![(Direction::Src, "10.0.0.1".parse().unwrap())]);
        assert_eq!(state.clamp_expiry(1_000).len(), 1);
        assert_eq!(
            state.blocks[0].expires_ms,
            Some(1_000 + MAX_TTL_SECS * 1000)
        );
    }

    #[test]
    fn missing_file_is_no_state_and_corrupt_file_is_an_error() {
        let dir = tmpdir("bad");
        fs::create_dir_all(&dir).unwrap();
        assert!(State::load_json(&dir.join("none.json")).unwrap().is_none());
        let path = dir.join("state.json");
        fs::write(
            &path,
            "{\"version\":1,\"saved_ms\":0,\n\"blocks\":[{\"prefix\":\"10.0.0.300\"}]}",
        )
        .unwrap();
        let err = State::load_json(&path).unwrap_err().to_string();
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
            State::load_json(&path)
                .unwrap_err()
                .to_string()
                .contains("version 9")
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
