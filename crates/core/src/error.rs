//! The error type shared by Ironpost's components.

use crate::config::ConfigError;

/// An error from any Ironpost component.
#[derive(Debug, thiserror::Error)]
pub enum IronpostError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The packet engine failed (loading, attaching, map access).
    #[error("engine: {0}")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync>),
}
