//! The engine's runtime configuration: the validated `[ebpf]` section.

use ironpost_core::{EbpfConfig, Prefix, RuleConfig};
pub use ironpost_core::{RuleAction, XdpMode};
use ironpost_ebpf_common::{ACTION_DROP, ACTION_MONITOR, ACTION_PASS};

/// The datapath's action code for a rule action.
pub fn action_code(action: RuleAction) -> u8 {
    match action {
        RuleAction::Drop => ACTION_DROP,
        RuleAction::Monitor => ACTION_MONITOR,
        RuleAction::Pass => ACTION_PASS,
    }
}

/// Everything the engine needs to load and run the datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Attach mode.
    pub xdp_mode: XdpMode,
    /// EVENTS ring buffer size in bytes.
    pub ring_buffer_size: u32,
    /// Block list capacity (entries of every origin).
    pub blocklist_max_entries: u32,
    /// Allow list capacity.
    pub allow_max_entries: u32,
    /// Events per second per CPU.
    pub event_budget_per_cpu: u32,
    /// Configured rules, in file order.
    pub rules: Vec<RuleConfig>,
    /// Configured allow list.
    pub allow: Vec<Prefix>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self::from_core(&EbpfConfig::default())
    }
}

impl EngineConfig {
    /// Builds the engine configuration from the validated `[ebpf]` section.
    pub fn from_core(cfg: &EbpfConfig) -> Self {
        Self {
            xdp_mode: cfg.xdp_mode,
            ring_buffer_size: cfg.ring_buffer_size,
            blocklist_max_entries: cfg.blocklist_max_entries,
            allow_max_entries: cfg.allow_max_entries,
            event_budget_per_cpu: cfg.event_budget_per_cpu,
            rules: cfg.rules.clone(),
            allow: cfg.allow.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_core_keeps_rules_and_sizes() {
        let core = ironpost_core::IronpostConfig::parse(
            "[ebpf]\nblocklist_max_entries = 5\nallow = [\"10.0.0.0/8\"]\n[[ebpf.rules]]\nid = \"a\"\nsrc_ip = \"10.1.2.3\"\naction = \"monitor\"\n",
            "t.toml",
        )
        .unwrap();
        let cfg = EngineConfig::from_core(&core.ebpf);
        assert_eq!(cfg.blocklist_max_entries, 5);
        assert_eq!(cfg.rules.len(), 1);
        assert_eq!(cfg.allow.len(), 1);
        assert_eq!(action_code(cfg.rules[0].action), ACTION_MONITOR);
    }
}
