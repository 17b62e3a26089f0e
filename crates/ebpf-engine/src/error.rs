//! The engine's error type.

use ironpost_core::IronpostError;

/// An error from the packet engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The interface does not exist.
    #[error("no such network interface: {0}")]
    NoSuchInterface(String),
    /// The process lacks the privileges to load or attach the program.
    #[error(
        "{0}: permission denied (loading XDP programs needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
    )]
    PermissionDenied(String),
    /// The kernel refused the program or its maps.
    #[error("loading the XDP program failed: {0}")]
    Load(String),
    /// Attaching to an interface failed.
    #[error("attaching to {interface} in {mode} mode failed: {message}")]
    Attach {
        /// The interface.
        interface: String,
        /// The mode tried.
        mode: &'static str,
        /// Why.
        message: String,
    },
    /// Reading or writing a map failed.
    #[error("map {map}: {message}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// What failed.
        message: String,
    },
    /// The client cancelled the change before it was complete; the
    /// writes made so far were undone.
    #[error("cancelled by the client; nothing was changed")]
    Cancelled,
    /// A rule change was refused.
    #[error("{0}")]
    Rule(String),
    /// A change does not fit in a map.
    #[error("{0}")]
    Capacity(String),
    /// The entry to change does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The operation needs a loaded program.
    #[error("the XDP program is not loaded")]
    NotLoaded,
    /// `start` was called on a running engine.
    #[error("the engine is already running")]
    AlreadyRunning,
    /// No interface was given.
    #[error("no interface given (set ebpf.interfaces or pass --interface)")]
    NoInterface,
    /// BPF_PROG_TEST_RUN failed.
    #[error("BPF_PROG_TEST_RUN failed: {0}")]
    TestRun(String),
    /// XDP is a Linux feature.
    #[error("the XDP engine needs Linux")]
    Unsupported,
}

impl From<EngineError> for IronpostError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Unsupported => IronpostError::Unsupported(e.to_string()),
            e => IronpostError::Engine(e.to_string()),
        }
    }
}
