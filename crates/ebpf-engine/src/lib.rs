//! Ironpost's user-space packet engine: loads the XDP program `ironpost_xdp`
//! (embedded in this crate at build time), attaches it, keeps its block list
//! in sync with the configuration, reads its events and counters.
#![deny(missing_docs)]

pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod stats;

pub use config::{EngineConfig, FilterRule, RuleAction, XdpMode};
pub use engine::{AttachedMode, Attachment, EbpfEngine, EbpfEngineBuilder, TestRunOutcome};
pub use error::EngineError;
pub use ironpost_ebpf_common as common;
pub use stats::{TrafficSnapshot, TrafficStats};
