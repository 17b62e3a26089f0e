//! The block entries in force, held compactly: a list of a million
//! entries is what the daemon spends its memory on.
//!
//! An entry is its key, two times and a shared [`Meta`]: what every entry
//! of one change has in common (list, reason, origin, action, condition,
//! rule or alert id). The entries of an import share one `Meta`, so an
//! entry costs its key and 24 bytes in a B-tree, about 45–80 bytes in all,
//! where a whole [`BlockEntry`] in a hash map with an order index beside it
//! cost about 400. The B-tree keeps the keys in order for listings, and a
//! batch worked through in key order finds its nodes in the cache.

use std::{collections::BTreeMap, ops::Bound, sync::Arc};

use ironpost_core::{Condition, RuleAction};
use rustc_hash::FxHashSet;

use crate::{BlockEntry, ListName, Origin, RuleKey};

/// What the entries of one change share.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct Meta {
    condition: Option<Condition>,
    action: RuleAction,
    origin: Origin,
    id: Option<String>,
    reason: String,
    list: ListName,
}

/// One entry in the table: its times and its shared part.
#[derive(Debug)]
pub(crate) struct Slot {
    added_ms: u64,
    /// 0: never; otherwise the expiry plus one.
    expires: u64,
    meta: Arc<Meta>,
}

impl Slot {
    pub(crate) fn origin(&self) -> Origin {
        self.meta.origin
    }

    pub(crate) fn action(&self) -> RuleAction {
        self.meta.action
    }

    pub(crate) fn condition(&self) -> Option<&Condition> {
        self.meta.condition.as_ref()
    }

    pub(crate) fn id(&self) -> Option<&str> {
        self.meta.id.as_deref()
    }

    pub(crate) fn list(&self) -> &ListName {
        &self.meta.list
    }

    pub(crate) fn added_ms(&self) -> u64 {
        self.added_ms
    }

    pub(crate) fn expires_ms(&self) -> Option<u64> {
        self.expires.checked_sub(1)
    }

    /// The whole entry.
    pub(crate) fn entry(&self, key: &RuleKey) -> BlockEntry {
        let m = &*self.meta;
        BlockEntry {
            direction: key.0,
            prefix: key.1,
            condition: m.condition,
            action: m.action,
            origin: m.origin,
            id: m.id.clone(),
            reason: m.reason.clone(),
            added_ms: self.added_ms,
            expires_ms: self.expires_ms(),
            list: m.list.clone(),
        }
    }

    /// Whether this is `e` (whose key is this slot's).
    pub(crate) fn is(&self, e: &BlockEntry) -> bool {
        let m = &*self.meta;
        self.added_ms == e.added_ms
            && self.expires_ms() == e.expires_ms
            && m.condition == e.condition
            && m.action == e.action
            && m.origin == e.origin
            && m.id == e.id
            && m.reason == e.reason
            && m.list == e.list
    }
}

/// Block entries by key, in key order.
#[derive(Debug, Default)]
pub(crate) struct BlockTable {
    map: BTreeMap<RuleKey, Slot>,
    /// Every `Meta` in use, once.
    metas: FxHashSet<Arc<Meta>>,
}

impl BlockTable {
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, key: &RuleKey) -> Option<&Slot> {
        self.map.get(key)
    }

    pub(crate) fn contains_key(&self, key: &RuleKey) -> bool {
        self.map.contains_key(key)
    }

    /// Every entry, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&RuleKey, &Slot)> {
        self.map.iter()
    }

    /// The entries after `after` (all of them for `None`), in key order.
    pub(crate) fn after(&self, after: Option<&RuleKey>) -> impl Iterator<Item = (&RuleKey, &Slot)> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.map.range((from, Bound::Unbounded))
    }

    fn slot(&mut self, e: BlockEntry) -> Slot {
        let meta = Meta {
            condition: e.condition,
            action: e.action,
            origin: e.origin,
            id: e.id,
            reason: e.reason,
            list: e.list,
        };
        let meta = match self.metas.get(&meta) {
            Some(m) => Arc::clone(m),
            None => {
                let m = Arc::new(meta);
                self.metas.insert(Arc::clone(&m));
                m
            }
        };
        Slot {
            added_ms: e.added_ms,
            expires: e.expires_ms.map_or(0, |t| t.saturating_add(1)),
            meta,
        }
    }

    /// Forgets a slot's `Meta` if no other slot shares it.
    fn release(&mut self, slot: &Slot) {
        // One reference in `metas`, one in `slot`.
        if Arc::strong_count(&slot.meta) == 2 {
            self.metas.remove(&*slot.meta);
        }
    }

    /// Inserts `e` (replacing the entry with its key); the entry replaced.
    pub(crate) fn insert(&mut self, e: BlockEntry) -> Option<BlockEntry> {
        let key = e.key();
        let slot = self.slot(e);
        let old = self.map.insert(key, slot)?;
        self.release(&old);
        Some(old.entry(&key))
    }

    /// Inserts entries whose keys are not in the table, given in key
    /// order. Many at once are merged into the tree in one pass, which
    /// also leaves its nodes full.
    pub(crate) fn insert_new_sorted(&mut self, entries: Vec<BlockEntry>) {
        debug_assert!(entries.windows(2).all(|w| w[0].key() < w[1].key()));
        if entries.len() < 1024 || entries.len() < self.map.len() / 4 {
            for e in entries {
                let key = e.key();
                let slot = self.slot(e);
                self.map.insert(key, slot);
            }
            return;
        }
        let mut new: BTreeMap<RuleKey, Slot> = entries
            .into_iter()
            .map(|e| {
                let key = e.key();
                (key, self.slot(e))
            })
            .collect();
        self.map.append(&mut new);
    }

    /// Rebuilds the tree with full nodes (entries inserted a few thousand
    /// at a time leave them about half full).
    pub(crate) fn compact(&mut self) {
        self.map = std::mem::take(&mut self.map).into_iter().collect();
    }

    /// Removes the entry with `key`.
    pub(crate) fn remove(&mut self, key: &RuleKey) -> Option<BlockEntry> {
        let old = self.map.remove(key)?;
        self.release(&old);
        Some(old.entry(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironpost_core::Direction;

    fn entry(p: &str, list: &str) -> BlockEntry {
        let mut e = BlockEntry::source(p.parse().unwrap(), RuleAction::Drop, Origin::Manual, 5);
        e.list = ListName::parse(list).unwrap();
        e.reason = "feed".into();
        e
    }

    #[test]
    fn entries_of_one_change_share_their_meta_and_it_goes_with_the_last() {
        let mut t = BlockTable::default();
        let batch: Vec<BlockEntry> = (0..2000u32)
            .map(|i| entry(&std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string(), "a"))
            .collect();
        t.insert_new_sorted(batch);
        t.insert(entry("192.0.2.1", "b"));
        assert_eq!((t.len(), t.metas.len()), (2001, 2));
        let k = (Direction::Src, "10.0.0.7".parse().unwrap());
        assert!(t.get(&k).unwrap().is(&entry("10.0.0.7", "a")));
        assert_eq!(t.remove(&k).unwrap(), entry("10.0.0.7", "a"));
        let b = (Direction::Src, "192.0.2.1".parse().unwrap());
        assert_eq!(t.remove(&b).unwrap().list.as_str(), "b");
        assert_eq!(t.metas.len(), 1, "list b's meta went with its last entry");
        let mut e = entry("10.0.0.8", "a");
        e.expires_ms = Some(0);
        assert_eq!(t.insert(e.clone()), Some(entry("10.0.0.8", "a")));
        assert_eq!(t.get(&e.key()).unwrap().expires_ms(), Some(0));
        let keys: Vec<RuleKey> = t.after(Some(&k)).take(2).map(|(k, _)| *k).collect();
        assert_eq!(keys[0].1.to_string(), "10.0.0.8");
    }
}
