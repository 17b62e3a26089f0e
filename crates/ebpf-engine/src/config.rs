//! The engine's runtime configuration: the validated `[ebpf]` section turned
//! into the rule set the engine keeps in the kernel.

use std::net::Ipv4Addr;

use ironpost_core::{EbpfConfig, RuleConfig};
pub use ironpost_core::{RuleAction, XdpMode};
use ironpost_ebpf_common::{ACTION_DROP, ACTION_MONITOR, ACTION_PASS};

use crate::EngineError;

/// A filter rule: an exact IPv4 source and what to do with its packets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterRule {
    /// Unique id.
    pub id: String,
    /// Free text for operators.
    pub description: String,
    /// Source address matched.
    pub src_ip: Ipv4Addr,
    /// Action on match.
    pub action: RuleAction,
}

impl From<&RuleConfig> for FilterRule {
    fn from(r: &RuleConfig) -> Self {
        Self {
            id: r.id.clone(),
            description: r.description.clone(),
            src_ip: r.src_ip,
            action: r.action,
        }
    }
}

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
    /// BLOCKLIST capacity.
    pub blocklist_max_entries: u32,
    /// Events per second per CPU.
    pub event_budget_per_cpu: u32,
    rules: Vec<FilterRule>,
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
            event_budget_per_cpu: cfg.event_budget_per_cpu,
            rules: cfg.rules.iter().map(FilterRule::from).collect(),
        }
    }

    /// The rules, in the order they were added.
    pub fn rules(&self) -> &[FilterRule] {
        &self.rules
    }

    /// Adds a rule; refuses a duplicate id or address, or one over capacity.
    pub fn add_rule(&mut self, rule: FilterRule) -> Result<(), EngineError> {
        if let Some(r) = self.rules.iter().find(|r| r.id == rule.id) {
            return Err(EngineError::Rule(format!(
                "a rule with id \"{}\" exists",
                r.id
            )));
        }
        if let Some(r) = self.rules.iter().find(|r| r.src_ip == rule.src_ip) {
            return Err(EngineError::Rule(format!(
                "{} is already matched by rule \"{}\"",
                rule.src_ip, r.id
            )));
        }
        if self.rules.len() >= self.blocklist_max_entries as usize {
            return Err(EngineError::Rule(format!(
                "the block list is full ({} entries)",
                self.blocklist_max_entries
            )));
        }
        self.rules.push(rule);
        Ok(())
    }

    /// Removes the rule with `id`; returns it, or `None` if there was none.
    pub fn remove_rule(&mut self, id: &str) -> Option<FilterRule> {
        let i = self.rules.iter().position(|r| r.id == id)?;
        Some(self.rules.remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, ip: [u8; 4]) -> FilterRule {
        FilterRule {
            id: id.into(),
            description: String::new(),
            src_ip: Ipv4Addr::from(ip),
            action: RuleAction::Drop,
        }
    }

    #[test]
    fn from_core_keeps_rules_and_sizes() {
        let core = ironpost_core::IronpostConfig::parse(
            "[ebpf]\nblocklist_max_entries = 5\n[[ebpf.rules]]\nid = \"a\"\nsrc_ip = \"10.1.2.3\"\naction = \"monitor\"\n",
            "t.toml",
        )
        .unwrap();
        let cfg = EngineConfig::from_core(&core.ebpf);
        assert_eq!(cfg.blocklist_max_entries, 5);
        assert_eq!(cfg.rules().len(), 1);
        assert_eq!(cfg.rules()[0].action, RuleAction::Monitor);
        assert_eq!(action_code(cfg.rules()[0].action), ACTION_MONITOR);
    }

    #[test]
    fn add_and_remove_rules() {
        let mut cfg = EngineConfig {
            blocklist_max_entries: 2,
            ..EngineConfig::default()
        };
        cfg.add_rule(rule("a", [10, 0, 0, 1])).unwrap();
        assert!(
            cfg.add_rule(rule("a", [10, 0, 0, 2])).is_err(),
            "duplicate id"
        );
        assert!(
            cfg.add_rule(rule("b", [10, 0, 0, 1])).is_err(),
            "duplicate address"
        );
        cfg.add_rule(rule("b", [10, 0, 0, 2])).unwrap();
        let err = cfg.add_rule(rule("c", [10, 0, 0, 3])).unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        assert_eq!(
            cfg.remove_rule("a").unwrap().src_ip,
            Ipv4Addr::new(10, 0, 0, 1)
        );
        assert!(cfg.remove_rule("a").is_none());
        cfg.add_rule(rule("c", [10, 0, 0, 3])).unwrap();
        assert_eq!(cfg.rules().len(), 2);
    }
}
