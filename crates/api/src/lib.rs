//! Ironpost's control API, the one definition both sides use: HTTP/1.1 on
//! the daemon's root-only Unix socket, JSON bodies, NDJSON where a reply
//! streams. The daemon serves it (`crates/cli/src/api.rs`), `ironpost`'s
//! commands call it (`crates/cli/src/client.rs`), and anything else may:
//! `curl --unix-socket /run/ironpost/ironpost.sock http://ironpost/v1/status`.
//!
//! Every failure answers with an HTTP status and an [`ApiError`] body; its
//! [`ErrorKind`] also fixes the CLI's exit code.
#![deny(missing_docs)]

mod error;
mod status;
mod types;

pub use error::{ApiError, ErrorKind, exit};
pub use status::*;
pub use types::*;

/// The API's paths.
pub mod path {
    /// `GET`: the block list, streamed as NDJSON ([`crate::BlockRow`] per
    /// line, ordered by direction and prefix); `?list=NAME`: the
    /// memberships of one list. `POST` ([`crate::BlockAdd`]):
    /// add or update; with `?progress=true` the answer streams
    /// [`crate::ChangeLine`]s. `DELETE` ([`crate::Prefixes`]): remove.
    pub const BLOCKS: &str = "/v1/blocks";
    /// `POST` ([`crate::BlockSync`]): replace one list's entries with
    /// these, adding and removing only the difference ([`crate::Changed`]).
    pub const BLOCK_SYNC: &str = "/v1/blocks/sync";
    /// `POST` ([`crate::BlockFlush`]): remove every entry of one list.
    pub const BLOCK_FLUSH: &str = "/v1/blocks/flush";
    /// `GET ?addr=ADDR`: which entries decide an address ([`crate::BlockShow`]).
    pub const BLOCK_SHOW: &str = "/v1/blocks/show";
    /// `GET`: the configured port rules ([`crate::PortRuleRow`] list).
    pub const PORT_RULES: &str = "/v1/port-rules";
    /// `GET`: the allow list ([`crate::AllowRow`] list). `POST`
    /// ([`crate::AllowAdd`]): add. `DELETE` ([`crate::Prefixes`]): remove.
    pub const ALLOW: &str = "/v1/allow";
    /// `GET`: counters and rates (the stats line's JSON object).
    pub const STATS: &str = "/v1/stats";
    /// `GET`: the daemon's status ([`crate::Status`]).
    pub const STATUS: &str = "/v1/status";
    /// `GET`: latest alerts, top sources, latest blocks (`ironpost top`).
    pub const ACTIVITY: &str = "/v1/activity";
    /// `POST`: re-read the configuration file ([`crate::Changed`]).
    pub const RELOAD: &str = "/v1/reload";
}

/// Media type of streamed answers: one JSON value per line.
pub const NDJSON: &str = "application/x-ndjson";

/// Largest request body (a 1,000,000-line import is ~20 MB).
pub const MAX_REQUEST_BYTES: usize = 256 << 20;

/// Request bodies up to this size are read by any number of clients at
/// once; a larger one (an import) waits for its turn, so that the memory
/// held by requests being read stays bounded whatever clients send.
pub const SMALL_REQUEST_BYTES: usize = 1 << 20;
