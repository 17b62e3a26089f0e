//! The daemon's side of fleet mode: what it hands the fleet task (its
//! shared blocks, its alerts) and how the fleet's blocks enter the list
//! `fleet`.

use std::collections::HashSet;

use ironpost_api::{ApiError, Changed};
use ironpost_core::{Alert, Direction, Prefix, config::FLEET_LIST};
use ironpost_detection::{Shield, response};
use ironpost_ebpf_engine::engine::now_ms;
use ironpost_policy::{BlockEntry, ListName, OnConfigConflict, Origin, RuleKey};
use tokio::sync::mpsc;

use super::{
    Daemon,
    requests::{block_error, changed, engine_error},
};
use crate::{
    api::Job,
    fleet::{Fleet, Outgoing, shared::Shared},
    hostinfo,
};

fn fleet_list() -> ListName {
    ListName::parse(FLEET_LIST).expect("the fleet list's name is valid")
}

impl Daemon {
    /// Starts the fleet task when `[fleet]` is set, and hands it every block
    /// this host shares.
    pub(crate) fn start_fleet(&mut self, changes: mpsc::Sender<Job>) {
        let Some(cfg) = self.fleet_config.clone() else {
            return;
        };
        let fleet = Fleet::spawn(cfg, changes);
        let now = now_ms();
        let mut all = Vec::new();
        for list in self.shared_lists() {
            for e in self.engine.policy().list_members(&list, now) {
                if e.direction == Direction::Src && e.origin != Origin::Config {
                    all.push((e.prefix, shared(&e)));
                }
            }
        }
        let _ = fleet.tx.send(Outgoing::Snapshot(all));
        self.fleet = Some(fleet);
    }

    /// The lists whose entries this host publishes.
    fn shared_lists(&self) -> Vec<ListName> {
        let Some(cfg) = &self.fleet_config else {
            return Vec::new();
        };
        let mut lists: Vec<ListName> = cfg
            .share_lists
            .iter()
            .filter_map(|l| ListName::parse(l).ok())
            .collect();
        if cfg.share_auto_blocks {
            lists.push(ListName::of(Origin::Auto));
        }
        lists
    }

    /// Hands the fleet task the shared state of `keys` after a change.
    pub(crate) fn fleet_publish(&mut self, keys: &[RuleKey]) {
        let Some(fleet) = &self.fleet else {
            return;
        };
        if keys.is_empty() {
            return;
        }
        let lists: HashSet<ListName> = self.shared_lists().into_iter().collect();
        let policy = self.engine.policy();
        for key in keys {
            if key.0 != Direction::Src {
                continue;
            }
            // The strictest shared membership (the kernel's entry first,
            // then the others in order of strictness is not kept: pick).
            let mut best: Option<BlockEntry> = None;
            for m in policy.members(key) {
                if !lists.contains(&m.list) || m.origin == Origin::Config {
                    continue;
                }
                let better = best
                    .as_ref()
                    .is_none_or(|b| match (m.expires_ms, b.expires_ms) {
                        (None, Some(_)) => true,
                        (Some(_), None) => false,
                        (x, y) => x > y,
                    });
                if better {
                    best = Some(m);
                }
            }
            let _ = fleet
                .tx
                .send(Outgoing::Block(key.1, best.as_ref().map(shared)));
        }
    }

    /// Hands the fleet task an alert when alerts are shared.
    pub(crate) fn fleet_alert(&self, alert: &Alert) {
        let Some(fleet) = &self.fleet else {
            return;
        };
        if !fleet.cfg.share_alerts {
            return;
        }
        if let Ok(body) = serde_json::to_vec(alert) {
            let _ = fleet.tx.send(Outgoing::Alert(body));
        }
    }

    /// Changes the list `fleet`: `upserts` set (each the other hosts'
    /// strictest block on its address), `removes` leave; with `exact`, every
    /// other member leaves too. Addresses this host must never block (its
    /// own, its gateways and resolvers, `never_block`) are not applied: a
    /// host of the fleet cannot cut another off its network.
    pub(crate) fn fleet_change(
        &mut self,
        upserts: Vec<BlockEntry>,
        removes: Vec<Prefix>,
        exact: bool,
    ) -> Result<Changed, ApiError> {
        let list = fleet_list();
        let shield = Shield {
            allow: Vec::new(),
            own: hostinfo::local_addresses(),
            gateways: hostinfo::default_gateways(),
            resolvers: hostinfo::resolvers(),
        };
        let never = self.responder.config().never_block.clone();
        let mut notes = Vec::new();
        let upserts: Vec<BlockEntry> = upserts
            .into_iter()
            .filter(|e| {
                if e.prefix.is_empty() {
                    tracing::warn!("fleet: a block on {} (every address) not applied", e.prefix);
                    return false;
                }
                let ip = e.prefix.addr();
                match response::protected(ip, &shield, &never) {
                    Some(why) if e.prefix.is_host() => {
                        tracing::warn!("fleet: a block on {} not applied: {why}", e.prefix);
                        notes.push(why);
                        false
                    }
                    _ => {
                        let covers_own = shield
                            .own
                            .iter()
                            .chain(&shield.gateways)
                            .any(|a| e.prefix.contains_addr(*a));
                        if covers_own {
                            tracing::warn!(
                                "fleet: a block on {} not applied: it covers an address of \
                                 this host or its gateway",
                                e.prefix
                            );
                        }
                        !covers_own
                    }
                }
            })
            .collect();
        let want: HashSet<Prefix> = upserts.iter().map(|e| e.prefix).collect();
        let mut leaving: Vec<Prefix> = removes;
        if exact {
            let now = now_ms();
            leaving.extend(
                self.engine
                    .policy()
                    .list_members(&list, now)
                    .filter(|e| e.direction == Direction::Src && !want.contains(&e.prefix))
                    .map(|e| e.prefix),
            );
        }
        let leaving: Vec<RuleKey> = leaving
            .into_iter()
            .map(|p| (Direction::Src, p))
            .filter(|k| self.engine.policy().lists_of(k).contains(&list))
            .collect();
        if upserts.is_empty() && leaving.is_empty() {
            return Ok(Changed::default());
        }
        let mut keys: Vec<RuleKey> = upserts.iter().map(BlockEntry::key).collect();
        keys.extend(leaving.iter().copied());
        let before = self.snapshot(&keys);
        let r = if upserts.is_empty() {
            Default::default()
        } else {
            self.engine
                .block(upserts, OnConfigConflict::Skip, &mut |_| true)
                .map_err(block_error)?
        };
        let mut c = changed(r, notes);
        if !leaving.is_empty() {
            match self.engine.unblock_from(&list, &leaving) {
                Ok(gone) => {
                    c.removed = gone.len();
                    for e in &gone {
                        tracing::info!("fleet: unblocked {} (withdrawn or expired)", e.prefix);
                    }
                }
                Err(e) => {
                    if let Err(u) = self.engine.restore_members(before) {
                        tracing::error!("taking back a failed change: {u}");
                    }
                    return Err(engine_error(e));
                }
            }
        }
        self.save_or_undo(|engine| engine.restore_members(before))?;
        for k in &keys {
            if let Some(e) = self.engine.policy().block(k)
                && e.list == list
            {
                tracing::info!("fleet: blocked {} ({})", k.1, e.reason);
            }
        }
        Ok(c)
    }
}

/// A membership as the fleet carries it.
fn shared(e: &BlockEntry) -> Shared {
    Shared {
        reason: e.reason.clone(),
        id: e.id.clone(),
        condition: e.condition,
        expires_ms: e.expires_ms,
    }
}
