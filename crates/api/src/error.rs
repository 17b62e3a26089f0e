//! Error kinds: each has one HTTP status and one CLI exit code.

use serde::{Deserialize, Serialize};

/// The CLI's exit codes besides those of [`ErrorKind`].
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// Any failure without a code of its own.
    pub const FAILURE: u8 = 1;
    /// Bad command line (clap's code).
    pub const USAGE: u8 = 2;
    /// No daemon answers on the control socket.
    pub const NO_DAEMON: u8 = 3;
    /// The control socket is root's.
    pub const PERMISSION: u8 = 4;
    /// `ironpost run`: the configuration is invalid or incomplete (no
    /// interface set); sysexits' EX_CONFIG, so that a service manager does
    /// not restart it in a loop.
    pub const CONFIG: u8 = 78;
}

/// Why the daemon refused a request. Whatever the kind, nothing was
/// changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is not one the API knows, or its body does not parse.
    BadRequest,
    /// The request body is larger than the API reads.
    TooLarge,
    /// A value is out of range or refused as given (a TTL, `0.0.0.0/0`
    /// without force, a configuration that does not check).
    Invalid,
    /// The entry to change or show does not exist.
    NotFound,
    /// The entry is set by the configuration file; edit it and reload.
    ConfigOwned,
    /// The change does not fit in the kernel's maps.
    Capacity,
    /// The state file could not be saved, so the change was taken back.
    NotSaved,
    /// The client went away before the change was complete.
    Cancelled,
    /// The daemon is stopping.
    Unavailable,
    /// Anything else (the kernel refused a write, ...); see the daemon's log.
    Internal,
}

impl ErrorKind {
    /// The HTTP status the daemon answers with.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::NotFound => 404,
            Self::ConfigOwned => 409,
            Self::TooLarge => 413,
            Self::Invalid => 422,
            Self::Cancelled => 499,
            Self::Internal => 500,
            Self::Unavailable => 503,
            Self::NotSaved | Self::Capacity => 507,
        }
    }

    /// The `ironpost` command's exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::BadRequest | Self::TooLarge => 10,
            Self::Invalid => 11,
            Self::NotFound => 12,
            Self::ConfigOwned => 13,
            Self::Capacity => 14,
            Self::NotSaved => 15,
            Self::Cancelled => 16,
            Self::Unavailable => 17,
            Self::Internal => exit::FAILURE,
        }
    }

    /// Every kind, for documentation and tests.
    pub const ALL: [ErrorKind; 10] = [
        Self::BadRequest,
        Self::TooLarge,
        Self::Invalid,
        Self::NotFound,
        Self::ConfigOwned,
        Self::Capacity,
        Self::NotSaved,
        Self::Cancelled,
        Self::Unavailable,
        Self::Internal,
    ];
}

/// A refused request: its kind and what to tell the operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What went wrong, as a kind.
    pub kind: ErrorKind,
    /// What went wrong, in words.
    pub message: String,
}

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_distinct_exit_codes_and_error_statuses() {
        let mut codes = std::collections::HashMap::new();
        for k in ErrorKind::ALL {
            assert!(k.status() >= 400, "{k:?}");
            let c = k.exit_code();
            assert!(c != exit::OK && c != exit::USAGE && c != exit::NO_DAEMON);
            if let Some(other) = codes.insert(c, k) {
                // Only the two kinds of bad request share a code.
                assert_eq!(
                    [other, k],
                    [ErrorKind::BadRequest, ErrorKind::TooLarge],
                    "{c}"
                );
            }
        }
        let e = ApiError::new(ErrorKind::ConfigOwned, "set by config");
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"kind":"config_owned","message":"set by config"}"#);
        assert_eq!(serde_json::from_str::<ApiError>(&text).unwrap(), e);
    }
}
