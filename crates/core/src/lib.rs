//! Ironpost's shared model: packet events, detection signals, alerts and
//! log entries, the pipeline and detector traits, errors and the
//! configuration file.
#![deny(missing_docs)]

pub mod alert;
pub mod config;
pub mod detect;
pub mod error;
pub mod event;
pub mod net;
pub mod pipeline;
pub mod text;
pub mod ttl;

pub use alert::{
    Alert, AlertAction, DetectorKind, Evidence, LogEntry, LogLevel, Severity,
    packet_event_to_log_entry,
};
pub use config::{
    Condition, ConfigError, DaemonConfig, Direction, EbpfConfig, IronpostConfig, RuleAction,
    RuleConfig, XdpMode,
};
pub use detect::{Detector, Finding, Signal, SignalKind};
pub use error::IronpostError;
pub use event::{PacketAction, PacketEvent, Protocol};
pub use net::{L4Protocol, PortRange, Prefix};
pub use pipeline::{HealthStatus, Pipeline};
pub use text::printable;
pub use ttl::{MAX_TTL_SECS, TtlError, parse_ttl};
