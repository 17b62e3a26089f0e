//! Named lists of block entries.
//!
//! Every manual or automatic block belongs to a list: `manual` by default,
//! `auto` for the detectors' blocks, or one a feeder picks (a fail2ban
//! jail, CrowdSec, a threat feed). The same address in two lists is two
//! memberships. The kernel holds one entry per address: the strictest
//! membership, the one that lasts longest (never expiring beats any
//! expiry), and, of equals, an unconditioned block over a conditioned one.
//! The other memberships wait beside it (`Policy::others`, only for keys
//! in more than one list). Removing an address from one list leaves it
//! blocked by the others; since the entry in the kernel always outlasts
//! the rest, when it expires they have expired too.
//!
//! A configured rule owns its key in the kernel. The memberships of lists
//! for that key (an import that meets it, or entries there before the rule
//! was configured) are held beside it, all in `others`, and one of them
//! takes the kernel entry back when the rule leaves the configuration.

use std::{fmt, sync::Arc};

use serde::{Deserialize, Serialize};

use crate::{
    BlockEntry, ChangeReport, OnConfigConflict, Origin, Policy, PolicyError, PolicyMaps, RuleKey,
};

/// The name of a list: 1 to 64 letters, digits, `.`, `_` or `-`. Shared
/// (reference-counted) by the entries of one list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ListName(Arc<str>);

impl ListName {
    /// Manual blocks that name no list.
    pub const MANUAL: &str = "manual";
    /// The detectors' automatic blocks.
    pub const AUTO: &str = "auto";
    /// Configured rules.
    pub const CONFIG: &str = "config";

    /// Checks and makes a list name.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(format!(
                "{s:?} is not a list name: 1 to 64 letters, digits, '.', '_' or '-'"
            ));
        }
        Ok(Self(Arc::from(s)))
    }

    /// The list of entries of `origin` that name none.
    pub fn of(origin: Origin) -> Self {
        Self(Arc::from(match origin {
            Origin::Manual => Self::MANUAL,
            Origin::Auto => Self::AUTO,
            Origin::Config => Self::CONFIG,
        }))
    }

    /// Whether the daemon keeps this name for itself (`auto`, `config`).
    pub fn is_reserved(&self) -> bool {
        matches!(&*self.0, Self::AUTO | Self::CONFIG)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ListName {
    fn default() -> Self {
        Self::of(Origin::Manual)
    }
}

impl fmt::Display for ListName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ListName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<ListName> for String {
    fn from(l: ListName) -> Self {
        l.0.to_string()
    }
}

/// Every membership of one key: the entry in the kernel first, then the
/// others.
pub type Members = Vec<BlockEntry>;

/// Whether `a` is stricter than `b` (see the module comment).
fn stricter(a: &BlockEntry, b: &BlockEntry) -> bool {
    match (a.expires_ms, b.expires_ms) {
        (None, Some(_)) => true,
        (Some(_), None) => false,
        (x, y) if x != y => x > y,
        _ => a.condition.is_none() && b.condition.is_some(),
    }
}

/// Splits `members` into the strictest and the rest (`members` not empty).
pub(crate) fn strictest(mut members: Members) -> (BlockEntry, Members) {
    let mut best = 0;
    for i in 1..members.len() {
        if stricter(&members[i], &members[best]) {
            best = i;
        }
    }
    let winner = members.swap_remove(best);
    (winner, members)
}

impl Policy {
    /// Every membership of `key`, the kernel's entry first (empty when the
    /// key is not blocked; under a configured rule, the memberships held
    /// beside it).
    pub fn members(&self, key: &RuleKey) -> Members {
        let Some(e) = self.blocks.get(key) else {
            return Vec::new();
        };
        if e.origin() == Origin::Config {
            return self.others.get(key).cloned().unwrap_or_default();
        }
        let mut all = vec![e.entry(key)];
        if let Some(o) = self.others.get(key) {
            all.extend(o.iter().cloned());
        }
        all
    }

    /// The lists `key` is in (the kernel entry's first).
    pub fn lists_of(&self, key: &RuleKey) -> Vec<ListName> {
        let mut lists: Vec<ListName> = self
            .blocks
            .get(key)
            .map(|e| e.list().clone())
            .into_iter()
            .collect();
        if let Some(o) = self.others.get(key) {
            lists.extend(o.iter().map(|e| e.list.clone()));
        }
        lists
    }

    /// The memberships of `list` that are in force at `now_ms`, in no
    /// particular order.
    pub fn list_members<'a>(
        &'a self,
        list: &'a ListName,
        now_ms: u64,
    ) -> impl Iterator<Item = BlockEntry> + 'a {
        let live = move |t: Option<u64>| t.is_none_or(|t| t > now_ms);
        self.blocks
            .iter()
            .filter(move |(_, s)| s.list() == list && live(s.expires_ms()))
            .map(|(k, s)| s.entry(k))
            .chain(
                self.others
                    .values()
                    .flatten()
                    .filter(move |e| &e.list == list && live(e.expires_ms))
                    .cloned(),
            )
    }

    /// At most `n` memberships of `list` in force at `now_ms`, in key
    /// order after `after` (a listing pages through one list as through
    /// the whole block list).
    pub fn list_page(
        &self,
        list: &ListName,
        after: Option<&RuleKey>,
        n: usize,
        now_ms: u64,
    ) -> Vec<BlockEntry> {
        let live = |t: Option<u64>| t.is_none_or(|t| t > now_ms);
        self.blocks
            .after(after)
            .filter_map(|(k, s)| {
                if s.list() == list && live(s.expires_ms()) {
                    return Some(s.entry(k));
                }
                self.others
                    .get(k)?
                    .iter()
                    .find(|e| &e.list == list && live(e.expires_ms))
                    .cloned()
            })
            .take(n)
            .collect()
    }

    /// Whether each of `entries` will be its key's only membership: every
    /// key given once, and in no list or only in the entry's own (or set by
    /// the configuration, which keeps it). The stored memberships of such
    /// a change are the entries themselves.
    pub fn sole_memberships(&self, entries: &[BlockEntry]) -> bool {
        self.sole_change(entries).is_some()
    }

    /// As [`Policy::sole_memberships`]; when they are, also how many of
    /// their keys are new to the block list.
    pub fn sole_change(&self, entries: &[BlockEntry]) -> Option<usize> {
        let mut keys: Vec<RuleKey> = entries.iter().map(BlockEntry::key).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return None;
        }
        drop(keys);
        let mut new = 0;
        for e in entries {
            let key = e.key();
            match self.blocks.get(&key) {
                None => new += 1,
                Some(cur) if cur.origin() == Origin::Config || cur.list() != &e.list => {
                    return None;
                }
                Some(_) => {}
            }
            if self.others.contains_key(&key) {
                return None;
            }
        }
        Some(new)
    }

    /// Whether `e` is a listed entry for a key a configured rule holds.
    fn under_config(&self, e: &BlockEntry) -> bool {
        e.origin != Origin::Config && self.configured.contains(&e.key())
    }

    /// Holds listed entries under the configured rules of their keys
    /// (replacing a membership of the same list).
    fn hold_under_config(&mut self, entries: Vec<BlockEntry>) {
        for e in entries {
            let key = e.key();
            let held = self.others.entry(key).or_default();
            match held.iter_mut().find(|m| m.list == e.list) {
                Some(m) => *m = e,
                None => held.push(e),
            }
            self.changes.blocks.push(key);
        }
    }

    /// Adds or updates memberships: each entry in its own list. The kernel
    /// gets the strictest membership of each key. All or nothing, like
    /// [`Policy::upsert_blocks`], whose conflict rule and progress it
    /// follows; `added` counts new memberships, `updated` changed ones.
    pub fn upsert_members(
        &mut self,
        entries: Vec<BlockEntry>,
        on_conflict: OnConfigConflict,
        maps: Option<&mut (dyn PolicyMaps + '_)>,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<ChangeReport, PolicyError> {
        // Entries for keys a configured rule holds change nothing in the
        // kernel: refused, or held beside the rule (see the module comment).
        let (held, entries): (Vec<BlockEntry>, Vec<BlockEntry>) =
            entries.into_iter().partition(|e| self.under_config(e));
        if let Some(e) = held.first()
            && on_conflict == OnConfigConflict::Refuse
        {
            return Err(self.config_owned(&e.key(), crate::CHANGE_CONFIG));
        }
        let mut r = self.upsert_listed(entries, on_conflict, maps, progress)?;
        r.skipped_config += held.len();
        self.hold_under_config(held);
        Ok(r)
    }

    /// [`Policy::upsert_members`] of entries for keys no configured rule
    /// holds.
    fn upsert_listed(
        &mut self,
        entries: Vec<BlockEntry>,
        on_conflict: OnConfigConflict,
        maps: Option<&mut (dyn PolicyMaps + '_)>,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<ChangeReport, PolicyError> {
        // Most changes (an import into one list) give keys that are in no
        // list yet, once each: each entry is its key's only membership,
        // written as it is, without gathering memberships.
        let fresh = self.sole_memberships(&entries);
        if fresh {
            return self.upsert_blocks(entries, on_conflict, maps, progress);
        }
        // The memberships of each key after the change; the keys in order.
        let mut after: rustc_hash::FxHashMap<RuleKey, Members> = rustc_hash::FxHashMap::default();
        let mut order = Vec::new();
        let (mut added, mut updated) = (0usize, 0usize);
        for e in entries {
            let key = e.key();
            let members = after.entry(key).or_insert_with(|| {
                order.push(key);
                self.members(&key)
            });
            match members.iter_mut().find(|m| m.list == e.list) {
                Some(m) => {
                    *m = e;
                    updated += 1;
                }
                None => {
                    members.push(e);
                    added += 1;
                }
            }
        }
        // The kernel changes only where the strictest membership changed.
        let mut to_write = Vec::new();
        let mut rest: Vec<(RuleKey, Members)> = Vec::with_capacity(order.len());
        for key in order {
            let members = after.remove(&key).expect("every key was collected");
            let (winner, others) = strictest(members);
            if !self.blocks.get(&key).is_some_and(|s| s.is(&winner)) {
                to_write.push(winner);
            }
            rest.push((key, others));
        }
        let r = self.upsert_blocks(to_write, on_conflict, maps, progress)?;
        for (key, others) in rest {
            // A key the configuration holds keeps no memberships.
            if self
                .blocks
                .get(&key)
                .is_some_and(|e| e.origin() == Origin::Config)
            {
                continue;
            }
            self.set_others(key, others);
        }
        Ok(ChangeReport {
            added: added.saturating_sub(r.skipped_config),
            updated,
            skipped_config: r.skipped_config,
            ..ChangeReport::default()
        })
    }

    /// Removes `keys` from `list`. A key in other lists stays blocked by
    /// the strictest of them. All or nothing: a key not in `list` is an
    /// error and changes nothing. Returns the memberships removed.
    pub fn remove_members(
        &mut self,
        list: &ListName,
        keys: &[RuleKey],
        maps: Option<&mut (dyn PolicyMaps + '_)>,
    ) -> Result<Vec<BlockEntry>, PolicyError> {
        let mut seen = std::collections::HashSet::new();
        let mut held_gone = Vec::new();
        let mut promote = Vec::new();
        let mut delete = Vec::new();
        let mut rest: Vec<(RuleKey, Members)> = Vec::new();
        let mut removed = Vec::new();
        for key in keys {
            if !seen.insert(*key) {
                continue;
            }
            if let Some(e) = self.blocks.get(key)
                && e.origin() == Origin::Config
            {
                // A membership held under the rule goes without touching
                // the kernel.
                if let Some(i) = self
                    .others
                    .get(key)
                    .and_then(|held| held.iter().position(|m| &m.list == list))
                {
                    held_gone.push((*key, i));
                    continue;
                }
                return Err(self.config_owned(key, crate::REMOVE_FROM_CONFIG));
            }
            let mut members = self.members(key);
            let Some(i) = members.iter().position(|m| &m.list == list) else {
                let lists: Vec<&str> = members.iter().map(|m| m.list.as_str()).collect();
                return Err(PolicyError::NotFound(if lists.is_empty() {
                    format!("{} {} is not in the block list", key.0, key.1)
                } else {
                    format!(
                        "{} {} is not in the list {list} (it is in: {}; name one with --list)",
                        key.0,
                        key.1,
                        lists.join(", ")
                    )
                }));
            };
            let gone = members.remove(i);
            if members.is_empty() {
                delete.push(*key);
            } else if i == 0 {
                let (winner, others) = strictest(members);
                promote.push(winner);
                rest.push((*key, others));
            } else {
                // The entry in force stays; the others are what is left
                // beside it.
                members.remove(0);
                rest.push((*key, members));
            }
            removed.push(gone);
        }
        self.apply_members(promote, &delete, rest, OnConfigConflict::Refuse, maps)?;
        for (key, i) in held_gone {
            if let Some(held) = self.others.get_mut(&key) {
                removed.push(held.remove(i));
                if held.is_empty() {
                    self.others.remove(&key);
                }
                self.changes.blocks.push(key);
            }
        }
        Ok(removed)
    }

    /// Writes the new entries in force, removes the keys left in no list,
    /// then records the other memberships.
    fn apply_members(
        &mut self,
        write: Vec<BlockEntry>,
        delete: &[RuleKey],
        rest: Vec<(RuleKey, Members)>,
        on_conflict: OnConfigConflict,
        mut maps: Option<&mut (dyn PolicyMaps + '_)>,
    ) -> Result<(), PolicyError> {
        self.upsert_blocks(write, on_conflict, maps.as_deref_mut(), &mut |_| true)?;
        self.remove_blocks(delete, false, maps)?;
        for (key, others) in rest {
            self.set_others(key, others);
        }
        Ok(())
    }

    /// Puts the memberships of each key back as `snapshot` holds them
    /// (taken with [`Policy::members`]): the undo of a change the store
    /// could not keep. An entry in force is replaced in place, never
    /// removed first.
    pub fn restore_members(
        &mut self,
        snapshot: Vec<(RuleKey, Members)>,
        maps: Option<&mut (dyn PolicyMaps + '_)>,
    ) -> Result<(), PolicyError> {
        let mut write = Vec::new();
        let mut delete = Vec::new();
        let mut rest = Vec::new();
        for (key, members) in snapshot {
            // Under a configured rule, memberships are held beside it.
            if self
                .blocks
                .get(&key)
                .is_some_and(|e| e.origin() == Origin::Config)
            {
                self.set_others(key, members);
                continue;
            }
            if members.is_empty() {
                if self
                    .blocks
                    .get(&key)
                    .is_some_and(|e| e.origin() != Origin::Config)
                {
                    delete.push(key);
                }
                continue;
            }
            let (winner, others) = strictest(members);
            if !self.blocks.get(&key).is_some_and(|s| s.is(&winner)) {
                write.push(winner);
            }
            rest.push((key, others));
        }
        self.apply_members(write, &delete, rest, OnConfigConflict::Skip, maps)
    }

    pub(crate) fn set_others(&mut self, key: RuleKey, others: Members) {
        let changed = if others.is_empty() {
            self.others.remove(&key).is_some()
        } else {
            self.others.insert(key, others.clone()) != Some(others)
        };
        if changed {
            self.changes.blocks.push(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use ironpost_core::RuleAction;

    use super::*;

    fn member(p: &str, list: &str, expires: Option<u64>) -> BlockEntry {
        let mut e = BlockEntry::source(p.parse().unwrap(), RuleAction::Drop, Origin::Manual, 1);
        e.list = ListName::parse(list).unwrap();
        e.expires_ms = expires;
        e
    }

    fn key(p: &str) -> RuleKey {
        (ironpost_core::Direction::Src, p.parse().unwrap())
    }

    fn names(p: &Policy, k: &RuleKey) -> Vec<String> {
        p.lists_of(k).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn removing_a_membership_beside_the_one_in_force_leaves_only_the_others() {
        let mut p = Policy::new(10, 10);
        let k = key("192.0.2.8");
        for (list, expires) in [
            ("f2b-sshd", Some(60_000)),
            ("feed", None),
            ("crowdsec", Some(90_000)),
        ] {
            p.upsert_members(
                vec![member("192.0.2.8", list, expires)],
                OnConfigConflict::Refuse,
                None,
                &mut |_| true,
            )
            .unwrap();
        }
        assert_eq!(p.block(&k).unwrap().list.as_str(), "feed");
        let f2b = ListName::parse("f2b-sshd").unwrap();
        p.remove_members(&f2b, &[k], None).unwrap();
        // The entry in force is not also held beside itself.
        assert_eq!(names(&p, &k), ["feed", "crowdsec"]);
        let feed = ListName::parse("feed").unwrap();
        p.remove_members(&feed, &[k], None).unwrap();
        assert_eq!(names(&p, &k), ["crowdsec"]);
        assert_eq!(p.block(&k).unwrap().expires_ms, Some(90_000));
        let cs = ListName::parse("crowdsec").unwrap();
        p.remove_members(&cs, &[k], None).unwrap();
        assert!(p.block(&k).is_none());
        assert!(p.members(&k).is_empty());
    }

    #[test]
    fn two_lists_are_two_memberships_and_the_strictest_is_in_force() {
        let mut p = Policy::new(10, 10);
        let k = key("192.0.2.7");
        p.upsert_members(
            vec![member("192.0.2.7", "f2b-sshd", Some(60_000))],
            OnConfigConflict::Refuse,
            None,
            &mut |_| true,
        )
        .unwrap();
        let r = p
            .upsert_members(
                vec![member("192.0.2.7", "crowdsec", Some(90_000))],
                OnConfigConflict::Refuse,
                None,
                &mut |_| true,
            )
            .unwrap();
        assert_eq!((r.added, r.updated), (1, 0));
        assert_eq!(p.block(&k).unwrap().list.as_str(), "crowdsec");
        assert_eq!(names(&p, &k), ["crowdsec", "f2b-sshd"]);
        // An update of the weaker one to never expire makes it the one in
        // force.
        p.upsert_members(
            vec![member("192.0.2.7", "f2b-sshd", None)],
            OnConfigConflict::Refuse,
            None,
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(p.block(&k).unwrap().list.as_str(), "f2b-sshd");
        assert_eq!(p.block(&k).unwrap().expires_ms, None);
        // Removing it from one list leaves the other in force.
        let name = ListName::parse("f2b-sshd").unwrap();
        let gone = p.remove_members(&name, &[k], None).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(p.block(&k).unwrap().list.as_str(), "crowdsec");
        assert_eq!(p.block(&k).unwrap().expires_ms, Some(90_000));
        assert_eq!(names(&p, &k), ["crowdsec"]);
        // Not in that list any more: an error that changes nothing.
        assert!(matches!(
            p.remove_members(&name, &[k], None),
            Err(PolicyError::NotFound(_))
        ));
        let cs = ListName::parse("crowdsec").unwrap();
        p.remove_members(&cs, &[k], None).unwrap();
        assert!(p.block(&k).is_none());
        assert!(p.members(&k).is_empty());
    }

    #[test]
    fn the_entry_in_force_outlasts_the_others_so_expiry_ends_them_all() {
        let mut p = Policy::new(10, 10);
        let k = key("198.51.100.0/24");
        p.upsert_members(
            vec![
                member("198.51.100.0/24", "a", Some(10)),
                member("198.51.100.0/24", "b", Some(20)),
            ],
            OnConfigConflict::Refuse,
            None,
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(p.block(&k).unwrap().expires_ms, Some(20));
        let a = ListName::parse("a").unwrap();
        assert_eq!(p.list_members(&a, 5).count(), 1);
        assert_eq!(p.list_members(&a, 15).count(), 0, "a's membership ran out");
        assert_eq!(p.expire(15, None).unwrap().len(), 0);
        assert_eq!(p.expire(20, None).unwrap().len(), 1);
        assert!(p.members(&k).is_empty());
        let _ = p.take_changes();
    }

    #[test]
    fn list_names_are_checked() {
        assert!(ListName::parse("f2b-sshd").is_ok());
        assert!(ListName::parse("crowdsec.cti_1").is_ok());
        for bad in ["", "a b", "x/y", &"n".repeat(65), "é"] {
            assert!(ListName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ListName::parse("auto").unwrap().is_reserved());
        assert!(!ListName::parse("manual").unwrap().is_reserved());
    }
}
