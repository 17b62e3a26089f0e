//! What hosts of a fleet tell each other about blocks, and what one host
//! makes of it: the message on the wire, its subject, and the tracker that
//! turns the messages of many hosts into one entry per address.
//!
//! Each host publishes, per address it blocks, the block in force from the
//! lists it shares (or its withdrawal) on a subject of its own for that
//! address. The stream keeps the last message of each subject, so the
//! stream is the fleet's current state and a host that joins reads exactly
//! that.

use std::collections::{BTreeMap, HashMap};

use ironpost_core::{Condition, Prefix};
use serde::{Deserialize, Serialize};

/// The version of [`BlockMsg`] this daemon writes; messages of other
/// versions are ignored (and counted).
pub const VERSION: u8 = 1;

/// One host's block on one address, as it publishes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shared {
    /// Why (the alert's summary, or the manual reason).
    pub reason: String,
    /// The alert id of an automatic block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The traffic it drops: `None` for all of it, or the attack's own (a
    /// SYN flood in a client's name blocks only its bare SYNs, on every
    /// host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// When it expires (Unix ms); `None` for never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// A message on a block subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMsg {
    /// [`VERSION`].
    pub v: u8,
    /// The host that raised it.
    pub host: String,
    /// The address or prefix.
    pub prefix: Prefix,
    /// The block; `None` when the host withdrew it.
    pub block: Option<Shared>,
}

/// The subject prefix of a fleet: `ironpost.NAME`.
pub fn root(fleet: &str) -> String {
    format!("ironpost.{fleet}")
}

/// The subject of `host`'s block on `prefix`: dots of the address become
/// `_` (a dot separates subject tokens).
pub fn block_subject(fleet: &str, host: &str, prefix: &Prefix) -> String {
    let token = prefix.to_string().replace('.', "_");
    format!("{}.blocks.{host}.{token}", root(fleet))
}

/// The subject of `host`'s alerts.
pub fn alert_subject(fleet: &str, host: &str) -> String {
    format!("{}.alerts.{host}", root(fleet))
}

/// The stream of a fleet's blocks.
pub fn blocks_stream(fleet: &str) -> String {
    format!("IRONPOST_{fleet}_BLOCKS")
}

/// The stream of a fleet's alerts.
pub fn alerts_stream(fleet: &str) -> String {
    format!("IRONPOST_{fleet}_ALERTS")
}

/// The entry one address should have in the list `fleet`: the strictest of
/// the other hosts' blocks on it (never expiring first, then the latest
/// expiry, then a block of all traffic over a conditioned one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InForce {
    /// The host whose block it is.
    pub host: String,
    /// Its block.
    pub block: Shared,
}

fn stricter(a: &Shared, b: &Shared) -> bool {
    match (a.expires_ms, b.expires_ms) {
        (None, Some(_)) => true,
        (Some(_), None) => false,
        (x, y) if x != y => x > y,
        _ => a.condition.is_none() && b.condition.is_some(),
    }
}

/// The other hosts' blocks, per address.
#[derive(Default)]
pub struct Tracker {
    by_prefix: HashMap<Prefix, BTreeMap<String, Shared>>,
}

impl Tracker {
    /// Takes in one message; returns the address's entry before and after
    /// when it changed.
    pub fn apply(&mut self, msg: BlockMsg, now_ms: u64) -> Option<Option<InForce>> {
        let before = self.in_force(&msg.prefix, now_ms);
        match msg.block {
            Some(b) => {
                self.by_prefix
                    .entry(msg.prefix)
                    .or_default()
                    .insert(msg.host, b);
            }
            None => {
                if let Some(hosts) = self.by_prefix.get_mut(&msg.prefix) {
                    hosts.remove(&msg.host);
                    if hosts.is_empty() {
                        self.by_prefix.remove(&msg.prefix);
                    }
                }
            }
        }
        let after = self.in_force(&msg.prefix, now_ms);
        (before != after).then_some(after)
    }

    /// The entry `prefix` should have now, if any.
    pub fn in_force(&self, prefix: &Prefix, now_ms: u64) -> Option<InForce> {
        let hosts = self.by_prefix.get(prefix)?;
        let mut best: Option<(&String, &Shared)> = None;
        for (h, b) in hosts {
            if b.expires_ms.is_some_and(|t| t <= now_ms) {
                continue;
            }
            if best.is_none_or(|(_, cur)| stricter(b, cur)) {
                best = Some((h, b));
            }
        }
        best.map(|(h, b)| InForce {
            host: h.clone(),
            block: b.clone(),
        })
    }

    /// Every address's entry now.
    pub fn all(&self, now_ms: u64) -> Vec<(Prefix, InForce)> {
        self.by_prefix
            .keys()
            .filter_map(|p| Some((*p, self.in_force(p, now_ms)?)))
            .collect()
    }

    /// Forgets blocks that expired before `now_ms`.
    pub fn prune(&mut self, now_ms: u64) {
        self.by_prefix.retain(|_, hosts| {
            hosts.retain(|_, b| b.expires_ms.is_none_or(|t| t > now_ms));
            !hosts.is_empty()
        });
    }

    /// Addresses with at least one block.
    pub fn len(&self) -> usize {
        self.by_prefix.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(host: &str, p: &str, expires: Option<Option<u64>>) -> BlockMsg {
        BlockMsg {
            v: VERSION,
            host: host.into(),
            prefix: p.parse().unwrap(),
            block: expires.map(|expires_ms| Shared {
                reason: format!("from {host}"),
                id: None,
                condition: None,
                expires_ms,
            }),
        }
    }

    #[test]
    fn subjects_hold_one_token_per_address() {
        let p: Prefix = "192.0.2.7".parse().unwrap();
        assert_eq!(
            block_subject("prod", "web-1", &p),
            "ironpost.prod.blocks.web-1.192_0_2_7"
        );
        let p6: Prefix = "2001:db8::/48".parse().unwrap();
        assert_eq!(
            block_subject("prod", "web-1", &p6),
            "ironpost.prod.blocks.web-1.2001:db8::/48"
        );
    }

    #[test]
    fn the_strictest_hosts_block_is_in_force_and_a_withdrawal_leaves_the_others() {
        let mut t = Tracker::default();
        let p: Prefix = "192.0.2.7".parse().unwrap();
        let a = t
            .apply(msg("a", "192.0.2.7", Some(Some(10_000))), 0)
            .unwrap();
        assert_eq!(a.unwrap().host, "a");
        let b = t
            .apply(msg("b", "192.0.2.7", Some(Some(20_000))), 0)
            .unwrap();
        assert_eq!(b.unwrap().host, "b");
        // A shorter one changes nothing.
        assert!(
            t.apply(msg("c", "192.0.2.7", Some(Some(5_000))), 0)
                .is_none()
        );
        // b withdraws: a's is in force again.
        let after = t.apply(msg("b", "192.0.2.7", None), 0).unwrap();
        assert_eq!(after.unwrap().host, "a");
        // At 10 s a's has expired: c's too, nothing is left.
        assert_eq!(t.in_force(&p, 10_000), None);
        t.prune(10_000);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn an_expired_block_is_not_applied() {
        let mut t = Tracker::default();
        assert!(
            t.apply(msg("a", "192.0.2.8", Some(Some(1_000))), 2_000)
                .is_none()
        );
        assert!(t.all(2_000).is_empty());
    }

    #[test]
    fn a_block_of_all_traffic_beats_a_conditioned_one_of_the_same_expiry() {
        let mut t = Tracker::default();
        let mut m = msg("a", "192.0.2.9", Some(Some(10_000)));
        m.block.as_mut().unwrap().condition = Some(Condition {
            protocol: ironpost_core::L4Protocol::Tcp,
            dst_port: None,
            syn_only: true,
            rst_only: false,
        });
        t.apply(m, 0);
        let all = t
            .apply(msg("b", "192.0.2.9", Some(Some(10_000))), 0)
            .unwrap();
        assert_eq!(all.unwrap().block.condition, None);
    }
}
