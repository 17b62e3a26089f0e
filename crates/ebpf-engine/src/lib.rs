//! Ironpost's user-space packet engine: loads the XDP program `ironpost_xdp`
//! (embedded in this crate at build time), attaches it, keeps its block list
//! in sync with the policy, reads its events and counters.
#![deny(missing_docs)]

pub mod config;
pub mod detector;
pub mod engine;
pub mod error;
pub mod event;
pub mod policy;
pub mod response;
pub mod stats;
pub mod summary;

pub use config::{EngineConfig, RuleAction, XdpMode};
pub use detector::{Outcome, PacketDetector};
pub use engine::{AttachedMode, Attachment, EbpfEngine, EbpfEngineBuilder, TestRunOutcome};
pub use error::EngineError;
pub use ironpost_ebpf_common as common;
pub use policy::{
    AllowEntry, BlockEntry, ChangeReport, FillLevels, OnConfigConflict, Origin, Policy, PortRule,
    RuleKey,
};
pub use response::{Decision, Responder, Shield};
pub use stats::{DetectTotals, ParseTotals, TrafficSnapshot, TrafficStats};
