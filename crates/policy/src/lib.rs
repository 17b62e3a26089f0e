//! The policy the datapath enforces, and the one place that changes it.
#![deny(missing_docs)]
//!
//! [`Policy`] holds every block entry (address or prefix, source or
//! destination, with its origin, reason and expiry), the allow list and the
//! port rules, and writes each change to the kernel maps through
//! [`PolicyMaps`]. A change is all or nothing: it is checked against the
//! capacity before anything is written, and if the kernel refuses a write
//! part-way, what was already written is undone. Only then does the
//! in-memory policy change.

use std::collections::{BTreeSet, HashMap, HashSet};

use rustc_hash::{FxHashMap, FxHashSet};

use ironpost_core::{Condition, Direction, L4Protocol, Prefix, RuleAction, RuleConfig};
use ironpost_ebpf_common::{
    ACTION_DROP, ACTION_MONITOR, ACTION_NONE, ACTION_PASS, COND_RST_ONLY, COND_SYN_ONLY,
    POLICY_ALLOW_V4, POLICY_ALLOW_V6, POLICY_DST_V4, POLICY_DST_V6, POLICY_EXACT_V4, POLICY_PORTS,
    POLICY_SRC_V4, POLICY_SRC_V6, PORT_INDEX_LEN, RuleValue, ipproto,
};
use serde::{Deserialize, Serialize};

mod error;
mod lists;
mod summary;
mod table;

pub use error::PolicyError;
pub use lists::{ListName, Members};
use summary::{Listed, SourceSummary};
use table::BlockTable;

/// The datapath's action code for a rule action.
pub fn action_code(action: RuleAction) -> u8 {
    match action {
        RuleAction::Drop => ACTION_DROP,
        RuleAction::Monitor => ACTION_MONITOR,
        RuleAction::Pass => ACTION_PASS,
    }
}

/// Where an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The configuration file; changed only by editing it and reloading.
    Config,
    /// An operator, through `ironpost block` or `ironpost allow`.
    Manual,
    /// The detectors' automatic response.
    Auto,
}

impl Origin {
    /// Its name: `config`, `manual` or `auto`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Manual => "manual",
            Self::Auto => "auto",
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies a block entry: which address it matches, and the prefix.
pub type RuleKey = (Direction, Prefix);

/// One block-list entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockEntry {
    /// Source or destination.
    #[serde(default = "src", skip_serializing_if = "is_src")]
    pub direction: Direction,
    /// Address or prefix matched.
    pub prefix: Prefix,
    /// Protocol and port condition (config rules only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
    /// What to do with matching packets.
    #[serde(default, skip_serializing_if = "is_drop")]
    pub action: RuleAction,
    /// Where the entry came from.
    pub origin: Origin,
    /// Config rule id, or the alert id of an automatic block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Why it is there.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When it was added (Unix time, milliseconds).
    pub added_ms: u64,
    /// When it expires (Unix time, milliseconds); `None` for never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// The list it belongs to (see [`ListName`]).
    #[serde(default)]
    pub list: ListName,
}

fn src() -> Direction {
    Direction::Src
}

fn is_src(d: &Direction) -> bool {
    *d == Direction::Src
}

fn is_drop(a: &RuleAction) -> bool {
    *a == RuleAction::Drop
}

impl BlockEntry {
    /// A source block with `action`, no condition and no expiry.
    pub fn source(prefix: Prefix, action: RuleAction, origin: Origin, now_ms: u64) -> Self {
        Self {
            direction: Direction::Src,
            prefix,
            condition: None,
            action,
            origin,
            id: None,
            reason: String::new(),
            added_ms: now_ms,
            expires_ms: None,
            list: ListName::of(origin),
        }
    }

    /// The entry's key.
    pub fn key(&self) -> RuleKey {
        (self.direction, self.prefix)
    }

    /// The entry for a configured address rule; `None` for a port rule.
    pub fn from_rule(rule: &RuleConfig, now_ms: u64) -> Option<Self> {
        let (direction, prefix) = rule.address?;
        Some(Self {
            direction,
            prefix,
            condition: rule.condition,
            action: rule.action,
            origin: Origin::Config,
            id: Some(rule.id.clone()),
            reason: rule.description.clone(),
            added_ms: now_ms,
            expires_ms: None,
            list: ListName::of(Origin::Config),
        })
    }

    fn value(&self, else_action: u8) -> RuleValue {
        rule_value(self.action, self.condition.as_ref(), else_action)
    }
}

/// What the kernel holds for an entry with `action` and `condition`.
fn rule_value(action: RuleAction, condition: Option<&Condition>, else_action: u8) -> RuleValue {
    let mut v = RuleValue::new(action_code(action));
    if let Some(c) = condition {
        v.cond_proto = match c.protocol {
            L4Protocol::Tcp => ipproto::TCP,
            L4Protocol::Udp => ipproto::UDP,
            L4Protocol::Icmp => ipproto::ICMP,
        };
        let ports = c.ports();
        v.port_first = ports.first;
        v.port_last = ports.last;
        v.else_action = else_action;
        if c.syn_only {
            v.cond_flags |= COND_SYN_ONLY;
        }
        if c.rst_only {
            v.cond_flags |= COND_RST_ONLY;
        }
    }
    v
}

/// One allow-list entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowEntry {
    /// Source address or prefix that is never dropped.
    pub prefix: Prefix,
    /// Where it came from.
    pub origin: Origin,
    /// Why it is there.
    #[serde(default)]
    pub reason: String,
    /// When it was added (Unix time, milliseconds).
    pub added_ms: u64,
}

/// A rule without an address: protocol and destination ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PortRule {
    /// Config rule id.
    pub id: String,
    /// Protocol and ports.
    pub condition: Condition,
    /// Action.
    pub action: RuleAction,
    /// Free text.
    pub description: String,
}

/// What to do when an entry to add is already set by the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnConfigConflict {
    /// Refuse the whole change.
    Refuse,
    /// Leave the configured entry and add the others.
    Skip,
}

/// What a change did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChangeReport {
    /// Entries that were not there before.
    pub added: usize,
    /// Entries that were there and were updated.
    pub updated: usize,
    /// Entries left alone because the configuration sets them.
    pub skipped_config: usize,
    /// Entries removed.
    pub removed: usize,
}

/// The kernel side of the policy: one call per map write.
pub trait PolicyMaps {
    /// Writes a block entry; `keep_counters` carries the entry's hit
    /// counters over from the one it replaces.
    fn set_rule(
        &mut self,
        key: &RuleKey,
        value: &RuleValue,
        keep_counters: bool,
    ) -> Result<(), PolicyError>;
    /// Writes block entries that are not in the maps yet, all of one map
    /// (many at a time where the kernel allows). On failure, also says how
    /// many of the first ones were written.
    fn add_rules(&mut self, rules: &[(RuleKey, RuleValue)]) -> Result<(), (usize, PolicyError)> {
        for (i, (key, value)) in rules.iter().enumerate() {
            self.set_rule(key, value, false).map_err(|e| (i, e))?;
        }
        Ok(())
    }
    /// Removes a block entry.
    fn del_rule(&mut self, key: &RuleKey) -> Result<(), PolicyError>;
    /// Adds an allow-list entry.
    fn set_allow(&mut self, prefix: &Prefix) -> Result<(), PolicyError>;
    /// Removes an allow-list entry.
    fn del_allow(&mut self, prefix: &Prefix) -> Result<(), PolicyError>;
    /// Points PORT_RULES[index] at `slot` (0: no rule).
    fn set_port_index(&mut self, index: u32, slot: u32) -> Result<(), PolicyError>;
    /// Writes PORT_RULE_TABLE[slot].
    fn set_port_rule(&mut self, slot: u32, value: &RuleValue) -> Result<(), PolicyError>;
    /// Writes POLICY_FLAGS.
    fn set_flags(&mut self, flags: u32) -> Result<(), PolicyError>;
    /// Writes word `word` of the IPv4 source summary, SRC16_V4.
    fn set_summary(&mut self, word: u32, bits: u64) -> Result<(), PolicyError>;
}

/// What to do instead of adding or updating a configured entry.
const CHANGE_CONFIG: &str = "change the configuration instead; nothing was changed";
/// What to do instead of removing a configured entry.
const REMOVE_FROM_CONFIG: &str = "remove it from the configuration and reload";

/// New block entries waiting to be written, per kernel map (by flag bit),
/// handed out [`PerMap::CHUNK`] at a time: one `bpf()` call each.
#[derive(Default)]
struct PerMap(Vec<(u32, Vec<(RuleKey, RuleValue)>)>);

impl PerMap {
    /// Entries per write.
    const CHUNK: usize = 8192;

    /// Adds an entry; its map's entries when they fill a chunk (to be
    /// written and cleared).
    fn push(&mut self, key: RuleKey, value: RuleValue) -> Option<&mut Vec<(RuleKey, RuleValue)>> {
        let bit = rule_bit(&key);
        let at = match self.0.iter().position(|(b, _)| *b == bit) {
            Some(at) => at,
            None => {
                self.0.push((bit, Vec::with_capacity(Self::CHUNK)));
                self.0.len() - 1
            }
        };
        let rules = &mut self.0[at].1;
        rules.push((key, value));
        (rules.len() == Self::CHUNK).then_some(rules)
    }

    /// What is left, per map.
    fn rest(&self) -> impl Iterator<Item = &[(RuleKey, RuleValue)]> {
        self.0.iter().map(|(_, rules)| rules.as_slice())
    }
}

/// A map write and how to undo it.
enum Undo {
    Rule(RuleKey, Option<RuleValue>),
    Allow(Prefix, bool),
    PortIndex(u32, u32),
}

/// Writes to the maps, remembering how to undo each write.
struct Journal<'a, M: PolicyMaps + ?Sized> {
    maps: Option<&'a mut M>,
    undo: Vec<Undo>,
}

impl<M: PolicyMaps + ?Sized> Journal<'_, M> {
    fn set_rule(
        &mut self,
        key: &RuleKey,
        old: Option<RuleValue>,
        new: RuleValue,
    ) -> Result<(), PolicyError> {
        if old == Some(new) {
            return Ok(());
        }
        if let Some(m) = self.maps.as_deref_mut() {
            m.set_rule(key, &new, old.is_some())?;
        }
        self.undo.push(Undo::Rule(*key, old));
        Ok(())
    }

    fn add_rules(&mut self, rules: &[(RuleKey, RuleValue)]) -> Result<(), PolicyError> {
        let r = match self.maps.as_deref_mut() {
            Some(m) => m.add_rules(rules),
            None => Ok(()),
        };
        let written = match &r {
            Ok(()) => rules.len(),
            Err((n, _)) => *n,
        };
        self.undo
            .extend(rules[..written].iter().map(|(k, _)| Undo::Rule(*k, None)));
        r.map_err(|(_, e)| e)
    }

    fn del_rule(&mut self, key: &RuleKey, old: RuleValue) -> Result<(), PolicyError> {
        if let Some(m) = self.maps.as_deref_mut() {
            m.del_rule(key)?;
        }
        self.undo.push(Undo::Rule(*key, Some(old)));
        Ok(())
    }

    fn allow(&mut self, prefix: &Prefix, present: bool, want: bool) -> Result<(), PolicyError> {
        if present == want {
            return Ok(());
        }
        if let Some(m) = self.maps.as_deref_mut() {
            if want {
                m.set_allow(prefix)?;
            } else {
                m.del_allow(prefix)?;
            }
        }
        self.undo.push(Undo::Allow(*prefix, present));
        Ok(())
    }

    fn port_index(&mut self, index: u32, old: u32, new: u32) -> Result<(), PolicyError> {
        if old == new {
            return Ok(());
        }
        if let Some(m) = self.maps.as_deref_mut() {
            m.set_port_index(index, new)?;
        }
        self.undo.push(Undo::PortIndex(index, old));
        Ok(())
    }

    /// Undoes every write, newest first. Errors here are logged: the
    /// original error is the one to report.
    fn rollback(&mut self) {
        let Some(m) = self.maps.as_deref_mut() else {
            return;
        };
        for u in self.undo.drain(..).rev() {
            let r = match &u {
                Undo::Rule(key, Some(v)) => m.set_rule(key, v, true),
                Undo::Rule(key, None) => m.del_rule(key),
                Undo::Allow(p, true) => m.set_allow(p),
                Undo::Allow(p, false) => m.del_allow(p),
                Undo::PortIndex(i, slot) => m.set_port_index(*i, *slot),
            };
            if let Err(e) = r {
                tracing::error!("undoing a partial policy change: {e}");
            }
        }
    }
}

fn origin_index(origin: Origin) -> usize {
    match origin {
        Origin::Config => 0,
        Origin::Manual => 1,
        Origin::Auto => 2,
    }
}

/// The map flag bit for a block key.
fn rule_bit(key: &RuleKey) -> u32 {
    match (key.0, key.1.is_ipv4(), key.1.is_host()) {
        (Direction::Src, true, true) => POLICY_EXACT_V4,
        (Direction::Src, true, false) => POLICY_SRC_V4,
        (Direction::Src, false, _) => POLICY_SRC_V6,
        (Direction::Dst, true, _) => POLICY_DST_V4,
        (Direction::Dst, false, _) => POLICY_DST_V6,
    }
}

fn allow_bit(prefix: &Prefix) -> u32 {
    if prefix.is_ipv4() {
        POLICY_ALLOW_V4
    } else {
        POLICY_ALLOW_V6
    }
}

/// How full the policy's tables are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FillLevels {
    /// Block entries in use.
    pub blocks: usize,
    /// Block list capacity.
    pub blocks_capacity: usize,
    /// Allow entries in use.
    pub allow: usize,
    /// Allow list capacity.
    pub allow_capacity: usize,
    /// Port rules in use.
    pub port_rules: usize,
    /// Port rule capacity.
    pub port_rules_capacity: usize,
    /// Block entries by kernel map name.
    pub by_map: Vec<(&'static str, usize)>,
}

/// The whole policy: what is in force, and the kernel maps' mirror.
#[derive(Debug)]
pub struct Policy {
    block_capacity: usize,
    allow_capacity: usize,
    /// The block entries in force, in key order.
    blocks: BlockTable,
    allow: HashMap<Prefix, AllowEntry>,
    port_rules: Vec<PortRule>,
    /// PORT_RULES as written: slot per index.
    port_slots: Vec<u32>,
    /// (expiry, key) of every entry that expires.
    expiries: BTreeSet<(u64, RuleKey)>,
    /// Keys of entries with a condition, whose `else_action` depends on
    /// the entries around them.
    conditioned: BTreeSet<RuleKey>,
    /// `else_action` as written, per conditioned key.
    applied_else: HashMap<RuleKey, u8>,
    /// Block and allow entries per flag bit, so the flags word is computed
    /// without walking the tables.
    counts: FxHashMap<u32, usize>,
    /// IPv4 source and allow entries per /16, and SRC16_V4 as written.
    summary: SourceSummary,
    /// What changed since the last [`Policy::take_changes`]: what a store
    /// of the policy has to write, and nothing else.
    changes: Changes,
    /// Block entries per origin (config, manual, auto).
    by_origin: [usize; 3],
    /// The keys of the configured entries.
    configured: BTreeSet<RuleKey>,
    /// (added, key) of every automatic entry: the oldest go first when
    /// automatic blocks need room.
    autos: BTreeSet<(u64, RuleKey)>,
    /// Memberships of other lists for keys in more than one list: the
    /// entry in `blocks` is the strictest of them (see `lists.rs`).
    others: FxHashMap<RuleKey, Vec<BlockEntry>>,
}

/// The keys of block and allow entries that changed (added, updated or
/// removed) since they were last taken: the store writes each one as it is
/// in the policy now, or deletes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Block keys, in order, each once (as [`Policy::take_changes`] gives
    /// them; the policy appends as it goes, which costs a large change
    /// nothing per key).
    pub blocks: Vec<RuleKey>,
    /// Allow-list prefixes.
    pub allow: FxHashSet<Prefix>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.allow.is_empty()
    }

    /// Sorts the block keys and drops repeats.
    fn settle(&mut self) {
        self.blocks.sort_unstable();
        self.blocks.dedup();
    }
}

impl Policy {
    /// An empty policy with these capacities.
    pub fn new(block_capacity: usize, allow_capacity: usize) -> Self {
        Self {
            block_capacity,
            allow_capacity,
            blocks: BlockTable::default(),
            allow: HashMap::new(),
            port_rules: Vec::new(),
            port_slots: vec![0; PORT_INDEX_LEN as usize],
            expiries: BTreeSet::new(),
            conditioned: BTreeSet::new(),
            applied_else: HashMap::new(),
            counts: FxHashMap::default(),
            summary: SourceSummary::default(),
            changes: Changes::default(),
            others: FxHashMap::default(),
            by_origin: [0; 3],
            autos: BTreeSet::new(),
            configured: BTreeSet::new(),
        }
    }

    /// The allow-list entry of exactly `prefix`.
    pub fn allow_entry(&self, prefix: &Prefix) -> Option<&AllowEntry> {
        self.allow.get(prefix)
    }

    /// Takes the keys changed since the last call (see [`Changes`]).
    pub fn take_changes(&mut self) -> Changes {
        let mut c = std::mem::take(&mut self.changes);
        c.settle();
        c
    }

    /// Packs the block list's memory after a large change made in parts.
    pub fn compact(&mut self) {
        self.blocks.compact();
    }

    /// Puts back changes that could not be stored, to be tried again with
    /// the next ones.
    pub fn restore_changes(&mut self, c: Changes) {
        self.changes.blocks.extend(c.blocks);
        self.changes.allow.extend(c.allow);
        self.changes.settle();
    }

    /// At most `n` block entries in key order (direction, then prefix),
    /// starting after `after`: a listing pages through the policy with the
    /// last key of each page, whatever changes between pages.
    pub fn blocks_page(&self, after: Option<&RuleKey>, n: usize) -> Vec<BlockEntry> {
        self.blocks
            .after(after)
            .take(n)
            .map(|(k, s)| s.entry(k))
            .collect()
    }

    /// The block entries of `direction` that contain `addr`, longest
    /// prefix (the one the datapath finds) first.
    pub fn blocks_containing(
        &self,
        direction: Direction,
        addr: std::net::IpAddr,
    ) -> Vec<BlockEntry> {
        let mut p = Some(Prefix::host(addr));
        let mut out = Vec::new();
        while let Some(prefix) = p {
            let key = (direction, prefix);
            if let Some(e) = self.blocks.get(&key) {
                out.push(e.entry(&key));
            }
            p = prefix.parent();
        }
        out
    }

    /// The longest allow-list entry that contains `addr`.
    pub fn allow_containing(&self, addr: std::net::IpAddr) -> Option<&AllowEntry> {
        let mut p = Some(Prefix::host(addr));
        while let Some(prefix) = p {
            if let Some(a) = self.allow.get(&prefix) {
                return Some(a);
            }
            p = prefix.parent();
        }
        None
    }

    /// Block entries, in key order (each one made whole as it comes).
    pub fn blocks(&self) -> impl Iterator<Item = BlockEntry> + '_ {
        self.blocks.iter().map(|(k, s)| s.entry(k))
    }

    /// The keys of the block entries, in key order.
    pub fn block_keys(&self) -> impl Iterator<Item = &RuleKey> + '_ {
        self.blocks.iter().map(|(k, _)| k)
    }

    /// The keys of the configured block entries, in key order.
    pub fn configured_keys(&self) -> impl Iterator<Item = &RuleKey> + '_ {
        self.configured.iter()
    }

    /// How many block entries come from `origin`.
    pub fn count_from(&self, origin: Origin) -> usize {
        self.by_origin[origin_index(origin)]
    }

    /// The keys of the automatic block entries, oldest first.
    pub fn autos_oldest_first(&self) -> impl Iterator<Item = RuleKey> + '_ {
        self.autos.iter().map(|(_, k)| *k)
    }

    /// The block entry with this key.
    pub fn block(&self, key: &RuleKey) -> Option<BlockEntry> {
        self.blocks.get(key).map(|s| s.entry(key))
    }

    /// Allow-list entries, in no particular order.
    pub fn allow_entries(&self) -> impl Iterator<Item = &AllowEntry> {
        self.allow.values()
    }

    /// Port rules, in config order (slot = index + 1).
    pub fn port_rules(&self) -> &[PortRule] {
        &self.port_rules
    }

    /// How full the tables are.
    pub fn fill_levels(&self) -> FillLevels {
        let count = |bit| self.counts.get(&bit).copied().unwrap_or(0);
        FillLevels {
            blocks: self.blocks.len(),
            blocks_capacity: self.block_capacity,
            allow: self.allow.len(),
            allow_capacity: self.allow_capacity,
            port_rules: self.port_rules.len(),
            port_rules_capacity: ironpost_core::config::MAX_PORT_RULES,
            by_map: vec![
                ("BLOCKLIST", count(POLICY_EXACT_V4)),
                ("SRC_V4", count(POLICY_SRC_V4)),
                ("SRC_V6", count(POLICY_SRC_V6)),
                ("DST_V4", count(POLICY_DST_V4)),
                ("DST_V6", count(POLICY_DST_V6)),
            ],
        }
    }

    /// The earliest expiry, if any entry expires.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiries.first().map(|(t, _)| *t)
    }

    fn flags(&self) -> u32 {
        let mut f = 0;
        for (bit, n) in &self.counts {
            if *n > 0 {
                f |= bit;
            }
        }
        if !self.port_rules.is_empty() {
            f |= POLICY_PORTS;
        }
        f
    }

    /// What the kernel holds for `key` (as last written).
    fn kernel_value(&self, key: &RuleKey) -> Option<RuleValue> {
        let e = self.blocks.get(key)?;
        let else_action = self.applied_else.get(key).copied().unwrap_or(ACTION_NONE);
        Some(rule_value(e.action(), e.condition(), else_action))
    }

    /// The action code of the nearest entry without a condition that
    /// encloses `key` (same direction), or `ACTION_NONE`.
    fn enclosing_action(&self, key: &RuleKey) -> u8 {
        let mut p = key.1.parent();
        while let Some(prefix) = p {
            if let Some(e) = self.blocks.get(&(key.0, prefix))
                && e.condition().is_none()
            {
                return action_code(e.action());
            }
            p = prefix.parent();
        }
        ACTION_NONE
    }

    /// Writes the whole policy to freshly created maps.
    pub fn write_all(&mut self, maps: &mut dyn PolicyMaps) -> Result<(), PolicyError> {
        maps.set_flags(self.flags())?;
        // The summary first: a fresh map's bits are all clear.
        self.summary.forget_written();
        self.summary.settle(maps)?;
        let conditioned: Vec<RuleKey> = self.conditioned.iter().copied().collect();
        for key in conditioned {
            let else_action = self.enclosing_action(&key);
            self.applied_else.insert(key, else_action);
        }
        // Many at a time, per map.
        let mut pending = PerMap::default();
        for (key, _) in self.blocks.iter() {
            let value = self.kernel_value(key).expect("a key of the table");
            if let Some(full) = pending.push(*key, value) {
                maps.add_rules(full).map_err(|(_, e)| e)?;
                full.clear();
            }
        }
        for rules in pending.rest() {
            maps.add_rules(rules).map_err(|(_, e)| e)?;
        }
        for p in self.allow.keys() {
            maps.set_allow(p)?;
        }
        for (i, r) in self.port_rules.iter().enumerate() {
            maps.set_port_rule(i as u32 + 1, &RuleValue::new(action_code(r.action)))?;
        }
        for (i, slot) in self.port_slots.iter().enumerate() {
            if *slot != 0 {
                maps.set_port_index(i as u32, *slot)?;
            }
        }
        maps.set_flags(self.flags())
    }

    /// Adds or updates block entries. All or nothing: over capacity, or
    /// (with [`OnConfigConflict::Refuse`]) touching a configured entry,
    /// nothing changes. `progress` is called with the number of entries
    /// written so far, every few thousand; when it returns false the
    /// change is cancelled: the writes made so far are undone and nothing
    /// changes.
    pub fn upsert_blocks(
        &mut self,
        entries: Vec<BlockEntry>,
        on_conflict: OnConfigConflict,
        maps: Option<&mut (dyn PolicyMaps + '_)>,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<ChangeReport, PolicyError> {
        let mut report = ChangeReport::default();
        // One entry per key, the last one given, worked through in key
        // order: the table's nodes for neighbouring keys stay in the cache.
        let mut order: Vec<(RuleKey, u32)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.key(), i as u32))
            .collect();
        order.sort_unstable();
        order.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                *earlier = *later;
            }
            same
        });
        // (key, index in `entries`, whether the key is new)
        let mut batch: Vec<(RuleKey, u32, bool)> = Vec::with_capacity(order.len());
        for (key, i) in order {
            let e = &entries[i as usize];
            match self.blocks.get(&key) {
                Some(existing)
                    if existing.origin() == Origin::Config && e.origin != Origin::Config =>
                {
                    match on_conflict {
                        OnConfigConflict::Refuse => {
                            return Err(self.config_owned(&key, CHANGE_CONFIG));
                        }
                        OnConfigConflict::Skip => {
                            report.skipped_config += 1;
                            continue;
                        }
                    }
                }
                Some(_) => {
                    report.updated += 1;
                    batch.push((key, i, false));
                }
                None => {
                    report.added += 1;
                    batch.push((key, i, true));
                }
            }
        }
        self.check_block_capacity(report.added, 0)?;

        let mut journal = Journal {
            maps,
            undo: Vec::new(),
        };
        // New maps come into use before their first entry is written.
        let extra: u32 = batch
            .iter()
            .map(|(k, _, _)| rule_bit(k))
            .fold(0, |a, b| a | b);
        if let Some(m) = journal.maps.as_deref_mut() {
            m.set_flags(self.flags() | extra)?;
            let sources = batch.iter().filter(|(k, _, _)| k.0 == Direction::Src);
            self.summary
                .widen(m, Listed::Source, sources.map(|(k, _, _)| &k.1))?;
        }
        let written_else = match self.write_batch(&mut journal, &entries, &batch, progress) {
            Ok(w) => w,
            Err(err) => {
                journal.rollback();
                if let Some(m) = journal.maps.as_deref_mut()
                    && let Err(e) = m
                        .set_flags(self.flags())
                        .and_then(|()| self.summary.settle(m))
                {
                    tracing::error!("restoring the policy flags: {e}");
                }
                return Err(err);
            }
        };
        let mut maps = journal.maps.take();
        // Into the table: updates in place, the new entries merged in.
        let mut entries: Vec<Option<BlockEntry>> = entries.into_iter().map(Some).collect();
        let mut new = Vec::with_capacity(report.added);
        self.changes.blocks.reserve(batch.len());
        for (_, i, is_new) in batch {
            let e = entries[i as usize].take().expect("one entry per key");
            if is_new {
                self.track(&e);
                new.push(e);
            } else {
                self.insert_entry(e);
            }
        }
        drop(entries);
        self.blocks.insert_new_sorted(new);
        self.applied_else.extend(written_else);
        self.refresh_else(maps.as_deref_mut());
        self.write_flags(maps)?;
        Ok(report)
    }

    /// Writes a batch of block entries to the maps: updates one by one,
    /// new entries many at a time, per map. Returns the fallback written
    /// for each conditioned entry (as the kernel now holds it;
    /// `refresh_else` corrects it once all are in).
    fn write_batch<M: PolicyMaps + ?Sized>(
        &self,
        journal: &mut Journal<'_, M>,
        entries: &[BlockEntry],
        batch: &[(RuleKey, u32, bool)],
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Vec<(RuleKey, u8)>, PolicyError> {
        let mut written_else = Vec::new();
        let mut pending = PerMap::default();
        let (mut done, mut reported) = (0usize, 0usize);
        for (key, i, is_new) in batch {
            let e = &entries[*i as usize];
            let else_action = if e.condition.is_some() {
                let a = self.enclosing_action(key);
                written_else.push((*key, a));
                a
            } else {
                ACTION_NONE
            };
            let value = e.value(else_action);
            if *is_new {
                if let Some(full) = pending.push(*key, value) {
                    journal.add_rules(full)?;
                    done += full.len();
                    full.clear();
                }
            } else {
                journal.set_rule(key, self.kernel_value(key), value)?;
                done += 1;
            }
            if done >= reported + PerMap::CHUNK {
                reported = done;
                if !progress(done) {
                    return Err(PolicyError::Cancelled);
                }
            }
        }
        for rules in pending.rest() {
            journal.add_rules(rules)?;
            done += rules.len();
        }
        if !progress(done) {
            return Err(PolicyError::Cancelled);
        }
        Ok(written_else)
    }

    /// Removes block entries. All or nothing: an unknown key, or a
    /// configured entry when `allow_config` is false, changes nothing.
    pub fn remove_blocks(
        &mut self,
        keys: &[RuleKey],
        allow_config: bool,
        maps: Option<&mut (dyn PolicyMaps + '_)>,
    ) -> Result<Vec<BlockEntry>, PolicyError> {
        let mut seen = HashSet::new();
        for key in keys {
            match self.blocks.get(key) {
                None => {
                    return Err(PolicyError::NotFound(format!(
                        "{} {} is not in the block list",
                        key.0, key.1
                    )));
                }
                Some(e) if e.origin() == Origin::Config && !allow_config => {
                    return Err(self.config_owned(key, REMOVE_FROM_CONFIG));
                }
                Some(_) => {
                    seen.insert(*key);
                }
            }
        }
        let mut journal = Journal {
            maps,
            undo: Vec::new(),
        };
        for key in seen.iter() {
            let old = self.kernel_value(key).expect("checked above");
            if let Err(err) = journal.del_rule(key, old) {
                journal.rollback();
                return Err(err);
            }
        }
        let mut maps = journal.maps.take();
        let removed: Vec<BlockEntry> = seen.iter().filter_map(|k| self.remove_entry(k)).collect();
        for k in &seen {
            self.others.remove(k);
        }
        self.refresh_else(maps.as_deref_mut());
        self.write_flags(maps)?;
        Ok(removed)
    }

    /// Removes every entry whose expiry is at or before `now_ms`.
    pub fn expire(
        &mut self,
        now_ms: u64,
        maps: Option<&mut (dyn PolicyMaps + '_)>,
    ) -> Result<Vec<BlockEntry>, PolicyError> {
        let due: Vec<RuleKey> = self
            .expiries
            .iter()
            .take_while(|(t, _)| *t <= now_ms)
            .map(|(_, k)| *k)
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        self.remove_blocks(&due, true, maps)
    }

    /// Adds allow-list entries (existing ones are updated). All or nothing.
    pub fn add_allow(
        &mut self,
        entries: Vec<AllowEntry>,
        maps: Option<&mut (dyn PolicyMaps + '_)>,
    ) -> Result<ChangeReport, PolicyError> {
        let mut report = ChangeReport::default();
        let mut batch: HashMap<Prefix, AllowEntry> = HashMap::new();
        for e in entries {
            if let Some(existing) = self.allow.get(&e.prefix)
                && existing.origin == Origin::Config
                && e.origin != Origin::Config
            {
                report.skipped_config += 1;
                continue;
            }
            batch.insert(e.prefix, e);
        }
        let new = batch.keys().filter(|p| !self.allow.contains_key(p)).count();
        if self.allow.len() + new > self.allow_capacity {
            return Err(PolicyError::Capacity(format!(
                "{new} new allow entries do not fit: the allow list holds {} of {}; \
                 nothing was changed",
                self.allow.len(),
                self.allow_capacity
            )));
        }
        report.added = new;
        report.updated = batch.len() - new;
        let mut journal = Journal {
            maps,
            undo: Vec::new(),
        };
        if let Some(m) = journal.maps.as_deref_mut() {
            let extra = batch.keys().map(allow_bit).fold(0, |a, b| a | b);
            m.set_flags(self.flags() | extra)?;
            self.summary.widen(m, Listed::Allow, batch.keys())?;
        }
        for p in batch.keys() {
            if let Err(err) = journal.allow(p, self.allow.contains_key(p), true) {
                journal.rollback();
                return Err(err);
            }
        }
        let maps = journal.maps.take();
        for p in batch.keys() {
            if !self.allow.contains_key(p) {
                *self.counts.entry(allow_bit(p)).or_default() += 1;
                self.summary.add(Listed::Allow, p);
            }
        }
        self.changes.allow.extend(batch.keys().copied());
        self.allow.extend(batch);
        self.write_flags(maps)?;
        Ok(report)
    }

    /// Removes allow-list entries. All or nothing.
    pub fn remove_allow(
        &mut self,
        prefixes: &[Prefix],
        allow_config: bool,
        maps: Option<&mut (dyn PolicyMaps + '_)>,
    ) -> Result<Vec<AllowEntry>, PolicyError> {
        for p in prefixes {
            match self.allow.get(p) {
                None => {
                    return Err(PolicyError::NotFound(format!(
                        "{p} is not in the allow list"
                    )));
                }
                Some(e) if e.origin == Origin::Config && !allow_config => {
                    return Err(PolicyError::ConfigOwned(format!(
                        "{p} is in the configuration's allow list; remove it there and reload"
                    )));
                }
                Some(_) => {}
            }
        }
        let mut journal = Journal {
            maps,
            undo: Vec::new(),
        };
        let unique: HashSet<Prefix> = prefixes.iter().copied().collect();
        for p in &unique {
            if let Err(err) = journal.allow(p, true, false) {
                journal.rollback();
                return Err(err);
            }
        }
        let maps = journal.maps.take();
        let removed = unique
            .iter()
            .filter_map(|p| {
                let e = self.allow.remove(p)?;
                self.changes.allow.insert(*p);
                if let Some(n) = self.counts.get_mut(&allow_bit(p)) {
                    *n -= 1;
                }
                self.summary.remove(Listed::Allow, p);
                Some(e)
            })
            .collect();
        self.write_flags(maps)?;
        Ok(removed)
    }

    /// Makes the configured part of the policy match `rules` and `allow`:
    /// configured entries not in them go, new ones come (replacing manual
    /// or automatic entries with the same key), port rules are rewritten.
    /// Manual and automatic entries are otherwise untouched. All or nothing.
    pub fn set_config(
        &mut self,
        rules: &[RuleConfig],
        allow: &[Prefix],
        now_ms: u64,
        mut maps: Option<&mut (dyn PolicyMaps + '_)>,
    ) -> Result<ChangeReport, PolicyError> {
        let wanted: Vec<BlockEntry> = rules
            .iter()
            .filter_map(|r| BlockEntry::from_rule(r, now_ms))
            .collect();
        let wanted_keys: HashSet<RuleKey> = wanted.iter().map(BlockEntry::key).collect();
        let stale: Vec<RuleKey> = self
            .configured_keys()
            .filter(|k| !wanted_keys.contains(k))
            .copied()
            .collect();
        let new_keys = wanted_keys
            .iter()
            .filter(|k| !self.blocks.contains_key(k))
            .count();
        self.check_block_capacity(new_keys, stale.len())?;
        let wanted_allow: HashSet<Prefix> = allow.iter().copied().collect();
        let stale_allow: Vec<Prefix> = self
            .allow
            .values()
            .filter(|e| e.origin == Origin::Config && !wanted_allow.contains(&e.prefix))
            .map(|e| e.prefix)
            .collect();
        let new_allow = wanted_allow
            .iter()
            .filter(|p| !self.allow.contains_key(p))
            .count();
        if self.allow.len() - stale_allow.len() + new_allow > self.allow_capacity {
            return Err(PolicyError::Capacity(format!(
                "the configured allow list does not fit: {} entries would be in use, \
                 capacity {}; nothing was changed",
                self.allow.len() - stale_allow.len() + new_allow,
                self.allow_capacity
            )));
        }
        let port_rules: Vec<PortRule> = rules
            .iter()
            .filter(|r| r.address.is_none())
            .filter_map(|r| {
                Some(PortRule {
                    id: r.id.clone(),
                    condition: r.condition?,
                    action: r.action,
                    description: r.description.clone(),
                })
            })
            .collect();
        if port_rules.len() > ironpost_core::config::MAX_PORT_RULES {
            return Err(PolicyError::Capacity(format!(
                "{} port rules: at most {}",
                port_rules.len(),
                ironpost_core::config::MAX_PORT_RULES
            )));
        }
        let mut report = ChangeReport::default();
        // Port rules first: they are few, and a failure there leaves the
        // address entries untouched.
        self.set_port_rules(port_rules, maps.as_deref_mut())?;
        let changed: Vec<BlockEntry> = wanted
            .into_iter()
            .map(|mut e| {
                // Keep the original time of an unchanged configured entry.
                if let Some(old) = self.blocks.get(&e.key())
                    && old.origin() == Origin::Config
                {
                    e.added_ms = old.added_ms();
                }
                e
            })
            .filter(|e| !self.blocks.get(&e.key()).is_some_and(|s| s.is(e)))
            .collect();
        let r = self.upsert_blocks(
            changed,
            OnConfigConflict::Skip,
            maps.as_deref_mut(),
            &mut |_| true,
        )?;
        report.added += r.added;
        report.updated += r.updated;
        // Memberships held under rules that leave take the kernel entry
        // back (the strictest of those still in force), written over the
        // rule's so the address is never unblocked in between.
        let mut back = Vec::new();
        let mut rest = Vec::new();
        let mut gone = Vec::new();
        for key in &stale {
            let held: Vec<BlockEntry> = self
                .others
                .get(key)
                .into_iter()
                .flatten()
                .filter(|m| m.expires_ms.is_none_or(|t| t > now_ms))
                .cloned()
                .collect();
            if held.is_empty() {
                gone.push(*key);
            } else {
                let (winner, others) = lists::strictest(held);
                back.push(winner);
                rest.push((*key, others));
            }
        }
        report.removed += self.remove_blocks(&gone, true, maps.as_deref_mut())?.len();
        self.take_back(back, maps.as_deref_mut())?;
        report.removed += rest.len();
        for (key, others) in rest {
            self.set_others(key, others);
        }
        let allow_entries: Vec<AllowEntry> = allow
            .iter()
            .filter(|p| self.allow.get(p).is_none_or(|e| e.origin != Origin::Config))
            .map(|p| AllowEntry {
                prefix: *p,
                origin: Origin::Config,
                reason: "configuration".into(),
                added_ms: now_ms,
            })
            .collect();
        let r = self.add_allow(allow_entries, maps.as_deref_mut())?;
        report.added += r.added;
        report.updated += r.updated;
        report.removed += self.remove_allow(&stale_allow, true, maps)?.len();
        Ok(report)
    }

    /// The error for a change to `key`, which a configured rule holds;
    /// `remedy` says what to do instead.
    fn config_owned(&self, key: &RuleKey, remedy: &str) -> PolicyError {
        let id = self.blocks.get(key).and_then(|e| e.id()).unwrap_or("?");
        PolicyError::ConfigOwned(format!(
            "{} {} is set by config rule \"{id}\"; {remedy}",
            key.0, key.1
        ))
    }

    /// Replaces configured entries by listed ones for the same keys, each
    /// written over the other in the kernel. All or nothing.
    fn take_back(
        &mut self,
        entries: Vec<BlockEntry>,
        maps: Option<&mut (dyn PolicyMaps + '_)>,
    ) -> Result<(), PolicyError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut journal = Journal {
            maps,
            undo: Vec::new(),
        };
        let mut written_else = Vec::new();
        for e in &entries {
            let key = e.key();
            let else_action = if e.condition.is_some() {
                let a = self.enclosing_action(&key);
                written_else.push((key, a));
                a
            } else {
                ACTION_NONE
            };
            if let Err(err) = journal.set_rule(&key, self.kernel_value(&key), e.value(else_action))
            {
                journal.rollback();
                return Err(err);
            }
        }
        let mut maps = journal.maps.take();
        for e in entries {
            self.insert_entry(e);
        }
        self.applied_else.extend(written_else);
        self.refresh_else(maps.as_deref_mut());
        self.write_flags(maps)
    }

    fn set_port_rules(
        &mut self,
        rules: Vec<PortRule>,
        maps: Option<&mut (dyn PolicyMaps + '_)>,
    ) -> Result<(), PolicyError> {
        if rules == self.port_rules {
            return Ok(());
        }
        let mut slots = vec![0u32; PORT_INDEX_LEN as usize];
        for (i, r) in rules.iter().enumerate() {
            let slot = i as u32 + 1;
            let base = match r.condition.protocol {
                L4Protocol::Tcp => 0,
                L4Protocol::Udp => 65_536,
                L4Protocol::Icmp => {
                    slots[2 * 65_536] = slot;
                    continue;
                }
            };
            let ports = r.condition.ports();
            for p in ports.first..=ports.last {
                slots[base + p as usize] = slot;
            }
        }
        let mut journal = Journal {
            maps,
            undo: Vec::new(),
        };
        if let Some(m) = journal.maps.as_deref_mut() {
            for (i, r) in rules.iter().enumerate() {
                m.set_port_rule(i as u32 + 1, &RuleValue::new(action_code(r.action)))?;
            }
            if !rules.is_empty() {
                m.set_flags(self.flags() | POLICY_PORTS)?;
            }
        }
        for (i, (old, new)) in self.port_slots.iter().zip(&slots).enumerate() {
            if let Err(err) = journal.port_index(i as u32, *old, *new) {
                journal.rollback();
                return Err(err);
            }
        }
        let maps = journal.maps.take();
        self.port_slots = slots;
        self.port_rules = rules;
        self.write_flags(maps)
    }

    fn check_block_capacity(&self, new: usize, leaving: usize) -> Result<(), PolicyError> {
        let after = self.blocks.len() - leaving + new;
        if after > self.block_capacity {
            let free = self
                .block_capacity
                .saturating_sub(self.blocks.len() - leaving);
            return Err(PolicyError::Capacity(format!(
                "{new} new entries do not fit in the block list: {} of {} in use, {free} free \
                 (raise ebpf.blocklist_max_entries); nothing was changed",
                self.blocks.len(),
                self.block_capacity
            )));
        }
        Ok(())
    }

    /// Adds or replaces an entry. A configured entry that replaces a
    /// listed one holds it (and the key's other memberships) beside it.
    fn insert_entry(&mut self, e: BlockEntry) {
        let key = e.key();
        if let Some(old) = self.remove_entry(&key)
            && e.origin == Origin::Config
            && old.origin != Origin::Config
        {
            self.others.entry(key).or_default().insert(0, old);
        }
        self.track(&e);
        self.blocks.insert(e);
    }

    /// Records a new entry (not in the table yet) in the indexes beside
    /// the table.
    fn track(&mut self, e: &BlockEntry) {
        let key = e.key();
        if let Some(t) = e.expires_ms {
            self.expiries.insert((t, key));
        }
        if e.condition.is_some() {
            self.conditioned.insert(key);
        }
        *self.counts.entry(rule_bit(&key)).or_default() += 1;
        self.by_origin[origin_index(e.origin)] += 1;
        match e.origin {
            Origin::Auto => {
                self.autos.insert((e.added_ms, key));
            }
            Origin::Config => {
                self.configured.insert(key);
            }
            Origin::Manual => {}
        }
        if key.0 == Direction::Src {
            self.summary.add(Listed::Source, &key.1);
        }
        self.changes.blocks.push(key);
    }

    fn remove_entry(&mut self, key: &RuleKey) -> Option<BlockEntry> {
        let e = self.blocks.remove(key)?;
        self.changes.blocks.push(*key);
        if let Some(t) = e.expires_ms {
            self.expiries.remove(&(t, *key));
        }
        self.conditioned.remove(key);
        self.applied_else.remove(key);
        if let Some(n) = self.counts.get_mut(&rule_bit(key)) {
            *n -= 1;
        }
        self.by_origin[origin_index(e.origin)] -= 1;
        match e.origin {
            Origin::Auto => {
                self.autos.remove(&(e.added_ms, *key));
            }
            Origin::Config => {
                self.configured.remove(key);
            }
            Origin::Manual => {}
        }
        if key.0 == Direction::Src {
            self.summary.remove(Listed::Source, &key.1);
        }
        Some(e)
    }

    /// Rewrites the `else_action` of conditioned entries whose enclosing
    /// entry changed. Failures are logged: the entry keeps its old
    /// fallback, which the next change retries.
    fn refresh_else(&mut self, mut maps: Option<&mut (dyn PolicyMaps + '_)>) {
        let keys: Vec<RuleKey> = self.conditioned.iter().copied().collect();
        for key in keys {
            let want = self.enclosing_action(&key);
            let have = self.applied_else.get(&key).copied().unwrap_or(ACTION_NONE);
            if want == have {
                continue;
            }
            let Some(e) = self.blocks.get(&key) else {
                continue;
            };
            let v = rule_value(e.action(), e.condition(), want);
            if let Some(m) = maps.as_deref_mut()
                && let Err(e) = m.set_rule(&key, &v, true)
            {
                tracing::error!("updating the fallback of {} {}: {e}", key.0, key.1);
                continue;
            }
            self.applied_else.insert(key, want);
        }
    }

    /// Writes the flags and settles the source summary, once a change is
    /// in the maps.
    fn write_flags(&mut self, maps: Option<&mut (dyn PolicyMaps + '_)>) -> Result<(), PolicyError> {
        match maps {
            Some(m) => {
                m.set_flags(self.flags())?;
                self.summary.settle(m)
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Maps in memory, failing on the n-th write when asked to.
    #[derive(Default)]
    pub(crate) struct FakeMaps {
        rules: HashMap<RuleKey, RuleValue>,
        allow: HashSet<Prefix>,
        port_index: HashMap<u32, u32>,
        port_rules: HashMap<u32, RuleValue>,
        flags: u32,
        /// SRC16_V4 words as written.
        pub(crate) summary: HashMap<u32, u64>,
        writes: usize,
        fail_at: Option<usize>,
        /// Every key removed, in order.
        deleted: Vec<RuleKey>,
    }

    impl FakeMaps {
        fn tick(&mut self) -> Result<(), PolicyError> {
            self.writes += 1;
            if self.fail_at == Some(self.writes) {
                return Err(PolicyError::map(
                    "FAKE",
                    std::io::Error::other("injected failure"),
                ));
            }
            Ok(())
        }
    }

    impl PolicyMaps for FakeMaps {
        fn set_rule(&mut self, key: &RuleKey, v: &RuleValue, _: bool) -> Result<(), PolicyError> {
            self.tick()?;
            self.rules.insert(*key, *v);
            Ok(())
        }
        fn del_rule(&mut self, key: &RuleKey) -> Result<(), PolicyError> {
            self.tick()?;
            self.rules.remove(key);
            self.deleted.push(*key);
            Ok(())
        }
        fn set_allow(&mut self, p: &Prefix) -> Result<(), PolicyError> {
            self.tick()?;
            self.allow.insert(*p);
            Ok(())
        }
        fn del_allow(&mut self, p: &Prefix) -> Result<(), PolicyError> {
            self.tick()?;
            self.allow.remove(p);
            Ok(())
        }
        fn set_port_index(&mut self, i: u32, slot: u32) -> Result<(), PolicyError> {
            self.port_index.insert(i, slot);
            Ok(())
        }
        fn set_port_rule(&mut self, slot: u32, v: &RuleValue) -> Result<(), PolicyError> {
            self.port_rules.insert(slot, *v);
            Ok(())
        }
        fn set_flags(&mut self, flags: u32) -> Result<(), PolicyError> {
            self.flags = flags;
            Ok(())
        }
        fn set_summary(&mut self, word: u32, bits: u64) -> Result<(), PolicyError> {
            self.summary.insert(word, bits);
            Ok(())
        }
    }

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn manual(s: &str) -> BlockEntry {
        BlockEntry::source(p(s), RuleAction::Drop, Origin::Manual, 1_000)
    }

    fn rules(toml: &str) -> Vec<RuleConfig> {
        ironpost_core::IronpostConfig::parse(toml, "t.toml")
            .unwrap()
            .ebpf
            .rules
    }

    fn upsert(
        pol: &mut Policy,
        m: &mut FakeMaps,
        e: Vec<BlockEntry>,
    ) -> Result<ChangeReport, PolicyError> {
        pol.upsert_blocks(e, OnConfigConflict::Refuse, Some(m), &mut |_| true)
    }

    #[test]
    fn entries_go_to_the_right_maps_and_flags() {
        let mut pol = Policy::new(10, 10);
        let mut m = FakeMaps::default();
        upsert(
            &mut pol,
            &mut m,
            vec![
                manual("10.0.0.1"),
                manual("10.1.0.0/16"),
                manual("2001:db8::/32"),
            ],
        )
        .unwrap();
        assert_eq!(m.rules.len(), 3);
        assert_eq!(m.flags, POLICY_EXACT_V4 | POLICY_SRC_V4 | POLICY_SRC_V6);
        pol.remove_blocks(&[(Direction::Src, p("10.0.0.1"))], false, Some(&mut m))
            .unwrap();
        assert_eq!(m.flags, POLICY_SRC_V4 | POLICY_SRC_V6);
        let levels = pol.fill_levels();
        assert_eq!((levels.blocks, levels.blocks_capacity), (2, 10));
    }

    #[test]
    fn pages_follow_key_order_and_lookups_find_every_enclosing_entry() {
        let mut pol = Policy::new(100, 10);
        let mut m = FakeMaps::default();
        let all = [
            "10.0.0.0/8",
            "10.1.0.0/16",
            "10.1.2.3",
            "192.0.2.1",
            "2001:db8::/32",
        ];
        upsert(&mut pol, &mut m, all.iter().map(|a| manual(a)).collect()).unwrap();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page: Vec<RuleKey> = pol
                .blocks_page(after.as_ref(), 2)
                .iter()
                .map(|e| e.key())
                .collect();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            after = page.last().copied();
            seen.extend(page);
        }
        let mut want: Vec<RuleKey> = all.iter().map(|a| (Direction::Src, p(a))).collect();
        want.sort();
        assert_eq!(seen, want);
        // A removed key leaves the order too.
        pol.remove_blocks(&[(Direction::Src, p("192.0.2.1"))], false, Some(&mut m))
            .unwrap();
        assert_eq!(pol.blocks_page(None, 100).len(), 4);
        let hit: Vec<Prefix> = pol
            .blocks_containing(Direction::Src, "10.1.2.3".parse().unwrap())
            .iter()
            .map(|e| e.prefix)
            .collect();
        assert_eq!(hit, [p("10.1.2.3"), p("10.1.0.0/16"), p("10.0.0.0/8")]);
        assert!(
            pol.blocks_containing(Direction::Dst, "10.1.2.3".parse().unwrap())
                .is_empty()
        );
        assert!(
            pol.blocks_containing(Direction::Src, "11.0.0.1".parse().unwrap())
                .is_empty()
        );
    }

    #[test]
    fn capacity_is_checked_before_any_write() {
        let mut pol = Policy::new(3, 10);
        let mut m = FakeMaps::default();
        upsert(
            &mut pol,
            &mut m,
            vec![manual("10.0.0.1"), manual("10.0.0.2")],
        )
        .unwrap();
        let err = upsert(
            &mut pol,
            &mut m,
            vec![manual("10.0.0.3"), manual("10.0.0.4")],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("2 new entries do not fit"),
            "{err}"
        );
        assert!(err.to_string().contains("1 free"), "{err}");
        assert_eq!(m.rules.len(), 2);
        assert_eq!(pol.blocks().count(), 2);
        // Updating existing entries needs no room.
        let r = upsert(
            &mut pol,
            &mut m,
            vec![manual("10.0.0.1"), manual("10.0.0.3")],
        )
        .unwrap();
        assert_eq!((r.added, r.updated), (1, 1));
    }

    #[test]
    fn the_source_summary_follows_the_policy() {
        let mut pol = Policy::new(100, 10);
        let mut m = FakeMaps::default();
        let bit = |m: &FakeMaps, a: [u8; 2]| {
            let n = (u32::from(a[0]) << 8) | u32::from(a[1]);
            m.summary
                .get(&(n / 16))
                .is_some_and(|w| (w >> ((n % 16) * 4)) & 0xf != 0)
        };
        let dst = BlockEntry {
            direction: Direction::Dst,
            ..manual("198.51.100.0/24")
        };
        upsert(&mut pol, &mut m, vec![manual("10.1.2.3"), dst]).unwrap();
        assert!(bit(&m, [10, 1]) && !bit(&m, [198, 51]), "{:?}", m.summary);
        pol.add_allow(
            vec![AllowEntry {
                prefix: p("192.0.0.0/15"),
                origin: Origin::Manual,
                reason: "t".into(),
                added_ms: 0,
            }],
            Some(&mut m),
        )
        .unwrap();
        assert!(bit(&m, [192, 0]) && bit(&m, [192, 1]) && !bit(&m, [192, 2]));
        // A failed change leaves no bit behind for what it did not add.
        m.fail_at = Some(m.writes + 2);
        upsert(
            &mut pol,
            &mut m,
            vec![manual("20.0.0.1"), manual("20.0.0.2")],
        )
        .unwrap_err();
        assert!(!bit(&m, [20, 0]));
        pol.remove_blocks(&[(Direction::Src, p("10.1.2.3"))], false, Some(&mut m))
            .unwrap();
        pol.remove_allow(&[p("192.0.0.0/15")], false, Some(&mut m))
            .unwrap();
        assert!(m.summary.values().all(|w| *w == 0), "{:?}", m.summary);
    }

    #[test]
    fn a_failed_write_is_rolled_back() {
        let mut pol = Policy::new(100, 10);
        let mut m = FakeMaps::default();
        upsert(&mut pol, &mut m, vec![manual("10.0.0.1")]).unwrap();
        m.fail_at = Some(m.writes + 3);
        let err = upsert(
            &mut pol,
            &mut m,
            vec![manual("10.0.0.2"), manual("10.0.0.3"), manual("10.0.0.4")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        assert_eq!(
            m.rules.keys().collect::<Vec<_>>(),
            vec![&(Direction::Src, p("10.0.0.1"))]
        );
        assert_eq!(pol.blocks().count(), 1);
        assert_eq!(m.flags, POLICY_EXACT_V4);
    }

    #[test]
    fn a_cancelled_change_is_rolled_back() {
        let mut pol = Policy::new(100_000, 10);
        let mut m = FakeMaps::default();
        upsert(&mut pol, &mut m, vec![manual("10.0.0.1")]).unwrap();
        let many: Vec<BlockEntry> = (0..20_000u32)
            .map(|i| manual(&format!("10.1.{}.{}", i >> 8, i & 255)))
            .chain([manual("192.0.2.0/24")])
            .collect();
        let mut calls = Vec::new();
        let err = pol
            .upsert_blocks(many, OnConfigConflict::Refuse, Some(&mut m), &mut |n| {
                calls.push(n);
                calls.len() < 2
            })
            .unwrap_err();
        assert!(matches!(err, PolicyError::Cancelled), "{err}");
        assert_eq!(calls, [8192, 16384]);
        assert_eq!(
            m.rules.keys().collect::<Vec<_>>(),
            vec![&(Direction::Src, p("10.0.0.1"))]
        );
        assert_eq!(pol.blocks().count(), 1);
        assert_eq!(m.flags, POLICY_EXACT_V4);
    }

    #[test]
    fn config_entries_are_protected() {
        let mut pol = Policy::new(100, 10);
        let mut m = FakeMaps::default();
        let r = rules("[[ebpf.rules]]\nid = \"cfg\"\nsrc = \"10.0.0.1\"\n");
        pol.set_config(&r, &[], 1, Some(&mut m)).unwrap();
        let err = upsert(
            &mut pol,
            &mut m,
            vec![manual("10.0.0.1"), manual("10.0.0.2")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("config rule \"cfg\""), "{err}");
        assert_eq!(pol.blocks().count(), 1);
        let r2 = pol
            .upsert_blocks(
                vec![manual("10.0.0.1"), manual("10.0.0.2")],
                OnConfigConflict::Skip,
                Some(&mut m),
                &mut |_| true,
            )
            .unwrap();
        assert_eq!((r2.added, r2.skipped_config), (1, 1));
        let err = pol
            .remove_blocks(&[(Direction::Src, p("10.0.0.1"))], false, Some(&mut m))
            .unwrap_err();
        assert!(
            err.to_string().contains("remove it from the configuration"),
            "{err}"
        );
        let err = pol
            .remove_blocks(&[(Direction::Src, p("10.9.9.9"))], false, Some(&mut m))
            .unwrap_err();
        assert!(err.to_string().contains("not in the block list"), "{err}");
    }

    #[test]
    fn listed_memberships_wait_under_a_configured_rule_and_return_when_it_goes() {
        let mut pol = Policy::new(100, 10);
        let mut m = FakeMaps::default();
        let k = (Direction::Src, p("192.0.2.7"));
        let member = |list: &str, expires: Option<u64>| {
            let mut e = manual("192.0.2.7");
            e.list = ListName::parse(list).unwrap();
            e.expires_ms = expires;
            e
        };
        pol.upsert_members(
            vec![member("feed", None)],
            OnConfigConflict::Skip,
            Some(&mut m),
            &mut |_| true,
        )
        .unwrap();
        // A rule for the address takes the kernel entry; the feed's
        // membership waits beside it.
        let r = rules("[[ebpf.rules]]\nid = \"r\"\nsrc = \"192.0.2.7\"\naction = \"monitor\"\n");
        pol.set_config(&r, &[], 2, Some(&mut m)).unwrap();
        assert_eq!(pol.block(&k).unwrap().origin, Origin::Config);
        assert_eq!(m.rules[&k].action, ironpost_ebpf_common::ACTION_MONITOR);
        assert_eq!(pol.members(&k), vec![member("feed", None)]);
        // An import that meets the rule is held too, and counted as left to
        // the configuration; a single add is refused.
        let rep = pol
            .upsert_members(
                vec![member("other", Some(50))],
                OnConfigConflict::Skip,
                Some(&mut m),
                &mut |_| true,
            )
            .unwrap();
        assert_eq!(rep.skipped_config, 1);
        let lists: Vec<String> = pol.lists_of(&k).iter().map(ToString::to_string).collect();
        assert_eq!(lists, ["config", "feed", "other"]);
        assert!(matches!(
            pol.upsert_members(
                vec![member("third", None)],
                OnConfigConflict::Refuse,
                Some(&mut m),
                &mut |_| true
            ),
            Err(PolicyError::ConfigOwned(_))
        ));
        let feed = ListName::parse("feed").unwrap();
        assert_eq!(pol.list_members(&feed, 3).count(), 1);
        // The rule leaves: the strictest membership still in force (the
        // feed's, which never expires) takes the key back.
        pol.set_config(&[], &[], 3, Some(&mut m)).unwrap();
        assert!(!m.deleted.contains(&k), "written over, never removed");
        let back = pol.block(&k).unwrap();
        assert_eq!((back.origin, back.list.as_str()), (Origin::Manual, "feed"));
        assert_eq!(m.rules[&k].action, ironpost_ebpf_common::ACTION_DROP);
        assert_eq!(pol.members(&k).len(), 2, "feed in force, other beside it");
        // Taking a membership out while the rule holds the key leaves the
        // kernel alone.
        pol.set_config(&r, &[], 4, Some(&mut m)).unwrap();
        let other = ListName::parse("other").unwrap();
        pol.remove_members(&other, &[k], Some(&mut m)).unwrap();
        assert_eq!(pol.members(&k), vec![member("feed", None)]);
        assert_eq!(m.rules[&k].action, ironpost_ebpf_common::ACTION_MONITOR);
    }

    #[test]
    fn reload_replaces_only_config_entries() {
        let mut pol = Policy::new(100, 10);
        let mut m = FakeMaps::default();
        let r = rules(
            "[[ebpf.rules]]\nid = \"a\"\nsrc = \"10.0.0.1\"\n[[ebpf.rules]]\nid = \"b\"\nsrc = \"10.0.0.2\"\n[[ebpf.rules]]\nid = \"ssh\"\nprotocol = \"tcp\"\ndst_port = 22\n",
        );
        pol.set_config(&r, &[p("192.168.0.0/16")], 1, Some(&mut m))
            .unwrap();
        upsert(&mut pol, &mut m, vec![manual("10.0.0.9")]).unwrap();
        assert_eq!(m.port_index.get(&22), Some(&1));
        assert_eq!(m.flags & POLICY_PORTS, POLICY_PORTS);
        let r = rules(
            "[[ebpf.rules]]\nid = \"b\"\nsrc = \"10.0.0.2\"\naction = \"monitor\"\n[[ebpf.rules]]\nid = \"c\"\ndst = \"10.0.0.3\"\n",
        );
        let rep = pol.set_config(&r, &[], 2, Some(&mut m)).unwrap();
        assert_eq!((rep.added, rep.updated), (1, 1));
        assert_eq!(rep.removed, 2, "rule a and the allow entry");
        let keys: HashSet<RuleKey> = m.rules.keys().copied().collect();
        assert!(
            keys.contains(&(Direction::Src, p("10.0.0.9"))),
            "manual entry kept"
        );
        assert!(keys.contains(&(Direction::Dst, p("10.0.0.3"))));
        assert!(!keys.contains(&(Direction::Src, p("10.0.0.1"))));
        assert_eq!(
            m.rules[&(Direction::Src, p("10.0.0.2"))].action,
            ironpost_ebpf_common::ACTION_MONITOR
        );
        assert_eq!(m.port_index.get(&22), Some(&0));
        assert!(m.allow.is_empty());
        assert_eq!(m.flags & (POLICY_PORTS | POLICY_ALLOW_V4), 0);
    }

    #[test]
    fn conditioned_entries_fall_back_to_the_enclosing_block() {
        let mut pol = Policy::new(100, 10);
        let mut m = FakeMaps::default();
        let r = rules(
            "[[ebpf.rules]]\nid = \"ssh-from-host\"\nsrc = \"10.1.2.3\"\nprotocol = \"tcp\"\ndst_port = 22\naction = \"pass\"\n",
        );
        pol.set_config(&r, &[], 1, Some(&mut m)).unwrap();
        let key = (Direction::Src, p("10.1.2.3"));
        assert_eq!(m.rules[&key].else_action, ACTION_NONE);
        assert_eq!(m.rules[&key].cond_proto, ipproto::TCP);
        assert_eq!(
            (m.rules[&key].port_first, m.rules[&key].port_last),
            (22, 22)
        );
        upsert(&mut pol, &mut m, vec![manual("10.0.0.0/8")]).unwrap();
        assert_eq!(m.rules[&key].else_action, ironpost_ebpf_common::ACTION_DROP);
        pol.remove_blocks(&[(Direction::Src, p("10.0.0.0/8"))], false, Some(&mut m))
            .unwrap();
        assert_eq!(m.rules[&key].else_action, ACTION_NONE);
    }

    #[test]
    fn expiry_removes_due_entries_only() {
        let mut pol = Policy::new(100, 10);
        let mut m = FakeMaps::default();
        let mut a = manual("10.0.0.1");
        a.expires_ms = Some(5_000);
        let mut b = manual("10.0.0.2");
        b.expires_ms = Some(9_000);
        upsert(&mut pol, &mut m, vec![a, b, manual("10.0.0.3")]).unwrap();
        assert_eq!(pol.next_expiry(), Some(5_000));
        assert!(pol.expire(4_999, Some(&mut m)).unwrap().is_empty());
        let gone = pol.expire(5_000, Some(&mut m)).unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(m.rules.len(), 2);
        assert_eq!(pol.next_expiry(), Some(9_000));
        // Re-adding without a TTL clears the expiry.
        upsert(&mut pol, &mut m, vec![manual("10.0.0.2")]).unwrap();
        assert_eq!(pol.next_expiry(), None);
        assert!(pol.expire(u64::MAX, Some(&mut m)).unwrap().is_empty());
    }

    #[test]
    fn allow_list_capacity_and_protection() {
        let mut pol = Policy::new(10, 2);
        let mut m = FakeMaps::default();
        pol.set_config(&[], &[p("10.0.0.0/8")], 1, Some(&mut m))
            .unwrap();
        let entry = |s: &str| AllowEntry {
            prefix: p(s),
            origin: Origin::Manual,
            reason: String::new(),
            added_ms: 1,
        };
        pol.add_allow(vec![entry("2001:db8::1")], Some(&mut m))
            .unwrap();
        assert_eq!(m.flags, POLICY_ALLOW_V4 | POLICY_ALLOW_V6);
        let err = pol
            .add_allow(vec![entry("192.0.2.1")], Some(&mut m))
            .unwrap_err();
        assert!(err.to_string().contains("do not fit"), "{err}");
        let err = pol
            .remove_allow(&[p("10.0.0.0/8")], false, Some(&mut m))
            .unwrap_err();
        assert!(err.to_string().contains("configuration"), "{err}");
        pol.remove_allow(&[p("2001:db8::1")], false, Some(&mut m))
            .unwrap();
        assert_eq!(m.flags, POLICY_ALLOW_V4);
    }

    #[test]
    fn write_all_reproduces_the_policy_in_new_maps() {
        let mut pol = Policy::new(10, 10);
        let r = rules("[[ebpf.rules]]\nid = \"u\"\nprotocol = \"udp\"\ndst_port = \"53-54\"\n");
        pol.set_config(&r, &[p("::1")], 1, None).unwrap();
        pol.upsert_blocks(
            vec![manual("10.0.0.1")],
            OnConfigConflict::Refuse,
            None,
            &mut |_| true,
        )
        .unwrap();
        let mut m = FakeMaps::default();
        pol.write_all(&mut m).unwrap();
        assert_eq!(m.rules.len(), 1);
        assert!(m.allow.contains(&p("::1")));
        assert_eq!(m.port_index.get(&(65_536 + 53)), Some(&1));
        assert_eq!(m.port_index.get(&(65_536 + 54)), Some(&1));
        assert_eq!(m.port_index.get(&(65_536 + 55)), None);
        assert_eq!(m.flags, POLICY_EXACT_V4 | POLICY_ALLOW_V6 | POLICY_PORTS);
    }
}
