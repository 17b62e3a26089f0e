//! Ironpost's shared model: packet events, the pipeline trait, errors and
//! the configuration file.
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod event;
pub mod net;
pub mod pipeline;

pub use config::{
    Condition, ConfigError, DaemonConfig, Direction, EbpfConfig, IronpostConfig, RuleAction,
    RuleConfig, XdpMode,
};
pub use error::IronpostError;
pub use event::{PacketAction, PacketEvent, Protocol};
pub use net::{L4Protocol, PortRange, Prefix};
pub use pipeline::{HealthStatus, Pipeline};
