//! The lifecycle every long-running component implements.

use serde::Serialize;

use crate::IronpostError;

/// How a component is doing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum HealthStatus {
    /// Running as configured.
    Healthy,
    /// Running, but something is off (the reason says what).
    Degraded(String),
    /// Not running or failed (the reason says why).
    Unhealthy(String),
}

/// A component with a start/stop lifecycle.
#[expect(
    async_fn_in_trait,
    reason = "implemented by concrete types, not used as dyn"
)]
pub trait Pipeline {
    /// Starts the component; calling it on a started component is an error.
    async fn start(&mut self) -> Result<(), IronpostError>;
    /// Stops the component and releases what it holds; idempotent.
    async fn stop(&mut self) -> Result<(), IronpostError>;
    /// The component's current health.
    fn health(&self) -> HealthStatus;
}
