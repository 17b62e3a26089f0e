//! The engine's error type.

use aya::{EbpfError, maps::MapError, programs::ProgramError};
use ironpost_core::IronpostError;
use ironpost_policy::PolicyError;

/// An error from the packet engine. Each keeps the loader's or the
/// kernel's error as its source.
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
    /// The kernel refused the object or its maps.
    #[error("loading the XDP object failed")]
    Object(#[source] Box<EbpfError>),
    /// The kernel refused a program (the verifier's log is in the source).
    #[error("loading the program {program} failed")]
    Program {
        /// The program's name.
        program: &'static str,
        /// The loader's error.
        #[source]
        source: Box<ProgramError>,
    },
    /// The object lacks a program or map the engine needs.
    #[error("{what} {name} is missing from the XDP object")]
    Missing {
        /// "program" or "map".
        what: &'static str,
        /// Its name.
        name: &'static str,
    },
    /// The pin directory cannot be used, or holds something that is not
    /// Ironpost's.
    #[error("pinned filter at {path}: {message}")]
    Pin {
        /// The pin directory or pinned link.
        path: std::path::PathBuf,
        /// What is wrong, in the operator's terms.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Attaching to an interface failed.
    #[error("attaching to {interface} in {mode} mode failed: {message}")]
    Attach {
        /// The interface.
        interface: String,
        /// The mode tried.
        mode: &'static str,
        /// Why, in the operator's terms.
        message: String,
        /// The loader's error.
        #[source]
        source: Box<ProgramError>,
    },
    /// Reading or writing a map failed.
    #[error("map {map}: {source}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// The loader's error.
        #[source]
        source: Box<MapError>,
    },
    /// A map reader could not start.
    #[error("map {map}: {source}")]
    Reader {
        /// The map's name.
        map: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A policy change was refused or failed; nothing was changed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A change was refused by the engine (it would leave the datapath
    /// without its configuration).
    #[error("{0}")]
    Refused(String),
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
    #[error("BPF_PROG_TEST_RUN failed")]
    TestRun(#[source] Box<ProgramError>),
}

impl From<EngineError> for IronpostError {
    fn from(e: EngineError) -> Self {
        IronpostError::Engine(Box::new(e))
    }
}

impl From<EngineError> for PolicyError {
    /// A failed map write, as the policy reports it.
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Policy(p) => p,
            EngineError::Map { map, source } => PolicyError::map(map, *source),
            EngineError::Missing { name, .. } => PolicyError::map(name, e),
            other => PolicyError::map("(engine)", other),
        }
    }
}
