//! The Ironpost daemon (`ironpost run`): loads the XDP datapath and the
//! egress watcher, writes the policy into the kernel, turns the kernel's
//! events and signals into alerts and responses, saves what must survive a
//! restart, and serves the control API (Unix socket) and the metrics.
//!
//! The `ironpost` binary parses the command line and calls [`run`]; the
//! control commands talk to a running daemon through [`ironpost_api`].

mod activity;
mod api;
mod crowdsec;
mod daemon;
mod fleet;
mod hostinfo;
mod links;
mod metrics;
mod output;
mod privileges;
mod socket;
mod state;
mod store;

use std::path::PathBuf;

use ironpost_core::{XdpMode, config::OnExit};

pub use daemon::{NotConfigured, interface_exists, run};
pub use socket::daemon_running;

/// What `ironpost run` was asked on its command line; each set field
/// overrides the configuration file.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Interfaces to attach to (none: `ebpf.interfaces`).
    pub interface: Vec<String>,
    /// The configuration file (none: built-in defaults, no rules).
    pub config: Option<PathBuf>,
    /// The XDP mode.
    pub xdp_mode: Option<XdpMode>,
    /// Seconds between stats lines; 0 prints only the final one.
    pub stats_interval: u64,
    /// The state file.
    pub state_file: Option<PathBuf>,
    /// The pin directory, or `off`.
    pub pin_dir: Option<PathBuf>,
    /// What happens to the filter on exit.
    pub on_exit: Option<OnExit>,
    /// The control socket.
    pub socket: Option<PathBuf>,
}
