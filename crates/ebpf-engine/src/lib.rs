//! Ironpost's user-space packet engine: loads the XDP program `ironpost_xdp`
//! (embedded in this crate at build time), attaches it, keeps its maps in
//! sync with the policy ([`ironpost_policy`]), reads its events, signals
//! and counters. Everything here talks to the kernel through aya.
#![deny(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("the Ironpost engine needs Linux: XDP, BPF maps and TC are Linux kernel features");

mod batch;
pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod pin;
pub mod stats;

pub use config::{EngineConfig, RuleAction, XdpMode};
pub use engine::{
    AttachedMode, Attachment, EbpfEngine, EbpfEngineBuilder, Prepared, TestRunOutcome,
};
pub use error::EngineError;
pub use ironpost_ebpf_common as common;
pub use stats::{
    CLASS_NAMES, ClassMetrics, ClassesMetrics, DetectTotals, ParseTotals, TrafficSnapshot,
    TrafficStats,
};
