//! What the daemon does for each API request, on its main task: changes
//! are applied to the kernel, saved, and taken back if saving fails, so
//! that what the kernel enforces is always what was acknowledged.

use std::{collections::HashMap, net::IpAddr, path::PathBuf, time::Instant};

use ironpost_api::{
    AbsentInterface, Activity, AllowAdd, AllowRow, ApiError, BlockAdd, BlockFlush, BlockRow,
    BlockShow, BlockSync, Changed, DetectionStatus, DetectorAlerts, Detectors, ErrorKind,
    EventCounts, InterfaceStatus, KernelDetection, MapFill, PortRuleRow, Response, StatsLine,
    Status,
};
use ironpost_core::{Direction, IronpostConfig, MAX_TTL_SECS, Prefix, RuleAction, printable};
use ironpost_ebpf_engine::{EbpfEngine, EngineConfig, EngineError, engine::now_ms};
use ironpost_policy::{
    AllowEntry, BlockEntry, ChangeReport, ListName, Members, OnConfigConflict, Origin, PolicyError,
    RuleKey,
};

use crate::crowdsec;

use super::{
    AlertSink, Daemon,
    bulk::{CHUNK, Plan, Progress, Reply},
    check_interface_exists, stats_line,
};

/// An error as the API reports it: its kind, and the whole chain of
/// causes in words.
pub(crate) fn engine_error(e: EngineError) -> ApiError {
    let kind = match &e {
        EngineError::Policy(p) => match p {
            PolicyError::Cancelled => ErrorKind::Cancelled,
            PolicyError::ConfigOwned(_) => ErrorKind::ConfigOwned,
            PolicyError::Capacity(_) => ErrorKind::Capacity,
            PolicyError::NotFound(_) => ErrorKind::NotFound,
            PolicyError::Map { .. } => ErrorKind::Internal,
        },
        EngineError::Refused(_) | EngineError::NoSuchInterface(_) => ErrorKind::Invalid,
        _ => ErrorKind::Internal,
    };
    ApiError::new(kind, chain(&e))
}

/// `e` and its sources, joined with ": ".
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::Invalid, message)
}

pub(super) fn changed(r: ChangeReport, notes: Vec<String>) -> Changed {
    Changed {
        added: r.added,
        updated: r.updated,
        skipped_config: r.skipped_config,
        removed: r.removed,
        notes,
        elapsed_ms: 0.0,
    }
}

impl Daemon {
    /// Blocks (or updates) sources. `progress` is told how far the change
    /// is; when it answers false (the client went away) the change stops
    /// and is undone. A large change (an import) is applied a chunk at a
    /// time between the main loop's other work (see [`super::bulk`]); the
    /// answer goes to `reply` when it is done.
    pub(crate) fn block_add(&mut self, req: BlockAdd, mut progress: Progress, reply: Reply) {
        let started = Instant::now();
        let plan = match self.plan_add(req) {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let dir = plan.template.direction;
        let keys: Vec<RuleKey> = plan
            .adds
            .iter()
            .rev()
            .take(crate::activity::BLOCKS)
            .rev()
            .map(|p| (dir, *p))
            .collect();
        if plan.adds.len() >= CHUNK {
            self.start_bulk(plan, progress, reply, started);
        } else {
            let total = plan.adds.len();
            let r = self.apply_now(plan, &mut |done| progress(done, total));
            let _ = reply.send(r.map(|c| timed_since(c, started)));
        }
        // Looked up when shown: one refused or taken back is not shown.
        self.activity.blocked(keys.into_iter());
    }

    /// What `ironpost top` shows besides the counters.
    pub(crate) fn activity(&self) -> Result<Activity, ApiError> {
        let policy = self.engine.policy();
        let entries: Vec<BlockEntry> = self
            .activity
            .block_keys()
            .filter_map(|k| policy.block(k))
            .collect();
        let mut blocks = self.block_rows(&entries)?;
        blocks.sort_by(|a, b| {
            let left = |r: &BlockRow| r.expires_in_secs.unwrap_or(f64::INFINITY);
            left(a).total_cmp(&left(b))
        });
        Ok(Activity {
            alerts: self.activity.alerts(),
            sources: self.activity.top_sources(10),
            blocks,
        })
    }

    /// Checks a block change and says what it does, as a [`Plan`].
    fn plan_add(&self, req: BlockAdd) -> Result<Plan, ApiError> {
        let BlockAdd {
            prefixes,
            ttl_secs,
            reason,
            import,
            force,
            list,
        } = req;
        let list = list_for_add(list)?;
        let prefixes = unique(prefixes);
        if !force && let Some(all) = prefixes.iter().find(|p| p.is_empty()) {
            return Err(invalid(format!(
                "{all} is every {} address: blocking it cuts the host off; pass --force if \
                 that is what you want (nothing was changed)",
                if all.is_ipv4() { "IPv4" } else { "IPv6" }
            )));
        }
        if let Some(t) = ttl_secs
            && !(1..=MAX_TTL_SECS).contains(&t)
        {
            return Err(invalid(format!(
                "a TTL of {t} s is out of range: it must be between 1 s and {MAX_TTL_SECS} s \
                 (10 years); nothing was changed"
            )));
        }
        let reason = if reason.is_empty() {
            "manual".to_owned()
        } else {
            reason
        };
        let now = now_ms();
        let total = prefixes.len();
        let expires = ttl_secs.map(|t| now.saturating_add(t * 1000));
        let mut notes = Vec::new();
        if !import {
            for p in &prefixes {
                if let Some(a) = self
                    .engine
                    .policy()
                    .allow_entries()
                    .find(|a| a.prefix.contains(p) || p.contains(&a.prefix))
                {
                    notes.push(format!(
                        "{p} overlaps allow-list entry {}: the allow list wins for its addresses",
                        a.prefix
                    ));
                }
            }
        }
        let mut template = BlockEntry::source(
            Prefix::host(std::net::Ipv4Addr::UNSPECIFIED.into()),
            RuleAction::Drop,
            Origin::Manual,
            now,
        );
        template.reason = reason.clone();
        template.expires_ms = expires;
        template.list = list.clone();
        let conflict = if import {
            OnConfigConflict::Skip
        } else {
            OnConfigConflict::Refuse
        };
        let name = list.clone();
        let shown = if import {
            String::new()
        } else {
            join(&prefixes)
        };
        let done: Box<dyn FnOnce(&Changed) -> String + Send> = if import {
            Box::new(move |r| {
                format!(
                    "imported {total} entries into list {name} ({} new, {} updated, {} set by \
                     config) ({})",
                    r.added,
                    r.updated,
                    r.skipped_config,
                    printable(&reason)
                )
            })
        } else {
            Box::new(move |_| {
                format!(
                    "blocked {shown} in list {name}{} ({})",
                    ttl_secs.map_or(String::new(), |t| format!(" for {t} s")),
                    printable(&reason)
                )
            })
        };
        Ok(Plan {
            adds: prefixes,
            template,
            conflict,
            leaving: Vec::new(),
            list,
            notes,
            done,
        })
    }

    /// Applies a small change at once: its additions, then its removals,
    /// saved together (or taken back together).
    fn apply_now(
        &mut self,
        plan: Plan,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<Changed, ApiError> {
        let Plan {
            adds,
            template,
            conflict,
            leaving,
            list,
            notes,
            done,
        } = plan;
        let adds: Vec<BlockEntry> = adds
            .into_iter()
            .map(|p| Plan::entry(&template, p))
            .collect();
        let mut keys: Vec<RuleKey> = adds.iter().map(BlockEntry::key).collect();
        keys.extend(leaving.iter().copied());
        let before = self.snapshot(&keys);
        let r = if adds.is_empty() {
            ChangeReport::default()
        } else {
            self.engine
                .block(adds, conflict, progress)
                .map_err(block_error)?
        };
        let mut changed = changed(r, notes);
        if !leaving.is_empty() {
            match self.engine.unblock_from(&list, &leaving) {
                Ok(gone) => changed.removed = gone.len(),
                Err(e) => {
                    if let Err(u) = self.engine.restore_members(before) {
                        tracing::error!("taking back a failed change: {u}");
                    }
                    return Err(engine_error(e));
                }
            }
        }
        self.save_or_undo(|engine| engine.restore_members(before))?;
        tracing::info!("{}", done(&changed));
        Ok(changed)
    }

    /// Saves the state after a change already in the kernel; when saving
    /// fails, `undo` takes the change back out, so that what the kernel
    /// enforces is always what was acknowledged and saved.
    pub(super) fn save_or_undo(
        &mut self,
        undo: impl FnOnce(&mut EbpfEngine) -> Result<(), EngineError>,
    ) -> Result<(), ApiError> {
        let Err(e) = self.save_now() else {
            return Ok(());
        };
        let saving = chain(&e);
        match undo(&mut self.engine) {
            Ok(()) => Err(ApiError::new(
                ErrorKind::NotSaved,
                format!("nothing was changed: the state could not be saved: {saving}"),
            )),
            Err(u) => {
                tracing::error!(
                    "taking back a change that could not be saved failed: {u}; the kernel \
                     holds it until the next restart"
                );
                Err(ApiError::new(
                    ErrorKind::Internal,
                    format!(
                        "the state could not be saved ({saving}), and taking the change back \
                         out of the kernel failed too ({})",
                        chain(&u)
                    ),
                ))
            }
        }
    }

    /// The memberships of `keys` now, to put back if a change cannot be
    /// saved.
    /// (A key given twice is there twice: putting it back twice is the
    /// same.)
    pub(super) fn snapshot(&self, keys: &[RuleKey]) -> Vec<(RuleKey, Members)> {
        keys.iter()
            .map(|k| (*k, self.engine.policy().members(k)))
            .collect()
    }

    /// Takes `keys` out of `list` and saves the change (or takes it back).
    fn leave(&mut self, list: &ListName, keys: &[RuleKey]) -> Result<Vec<BlockEntry>, ApiError> {
        let before = self.snapshot(keys);
        let gone = self.engine.unblock_from(list, keys).map_err(engine_error)?;
        self.save_or_undo(|engine| engine.restore_members(before))?;
        Ok(gone)
    }

    /// Removes source blocks from one list; an address in other lists
    /// stays blocked by them.
    pub(crate) fn block_del(
        &mut self,
        prefixes: Vec<Prefix>,
        list: Option<ListName>,
    ) -> Result<Changed, ApiError> {
        let list = list_for(list, false)?;
        let keys: Vec<RuleKey> = unique(prefixes)
            .into_iter()
            .map(|p| (Direction::Src, p))
            .collect();
        let gone = self.leave(&list, &keys)?;
        let mut still = 0;
        for e in &gone {
            let left = self.engine.policy().lists_of(&e.key());
            if left.is_empty() {
                tracing::info!(
                    "unblocked {} (list {list}, {})",
                    e.prefix,
                    printable(&e.reason)
                );
            } else {
                still += 1;
                tracing::info!(
                    "removed {} from list {list}; still blocked by list {}",
                    e.prefix,
                    left[0]
                );
            }
        }
        let mut notes = Vec::new();
        if still > 0 {
            notes.push(format!(
                "{still} of them are still blocked: they are in other lists too"
            ));
        }
        Ok(Changed {
            removed: gone.len(),
            notes,
            ..Changed::default()
        })
    }

    /// Makes `list` hold exactly `req.prefixes`: new ones are added, the
    /// ones it holds are updated (TTL, reason), the others leave it. The
    /// additions and removals are one change, saved (or taken back) whole.
    pub(crate) fn block_sync(&mut self, req: BlockSync, reply: Reply) {
        let started = Instant::now();
        let plan = match self.plan_sync(req) {
            Ok(p) => p,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        if plan.adds.len() + plan.leaving.len() >= CHUNK {
            self.start_bulk(plan, Box::new(|_, _| true), reply, started);
            return;
        }
        let r = self.apply_now(plan, &mut |_| true);
        let _ = reply.send(r.map(|c| timed_since(c, started)));
    }

    /// Checks a sync and says what it does: the additions of an import
    /// into the list, and the removal of what the list holds beyond them.
    fn plan_sync(&self, req: BlockSync) -> Result<Plan, ApiError> {
        let list = list_for_add(Some(req.list))?;
        // An empty feed is far more often a failed download than a wish to
        // unblock everything: emptying a list is `block flush`.
        if req.prefixes.is_empty() {
            return Err(invalid(format!(
                "no addresses given: refusing to empty the list {list} by a sync (a truncated \
                 or failed download looks the same); use block flush --list {list}; nothing \
                 was changed"
            )));
        }
        let now = now_ms();
        let want: std::collections::HashSet<Prefix> = req.prefixes.iter().copied().collect();
        let mut leaving: Vec<RuleKey> = self
            .engine
            .policy()
            .list_members(&list, now)
            .filter(|e| e.direction == Direction::Src && !want.contains(&e.prefix))
            .map(|e| e.key())
            .collect();
        leaving.sort_unstable();
        leaving.dedup();
        let add = BlockAdd {
            prefixes: req.prefixes,
            ttl_secs: req.ttl_secs,
            reason: req.reason,
            import: true,
            force: req.force,
            list: Some(list.clone()),
        };
        let mut plan = self.plan_add(add)?;
        plan.leaving = leaving;
        plan.done = Box::new(move |c| {
            format!(
                "list {list} synced: {} added, {} updated, {} removed",
                c.added, c.updated, c.removed
            )
        });
        Ok(plan)
    }

    /// Removes every entry of `list`.
    pub(crate) fn block_flush(&mut self, req: BlockFlush) -> Result<Changed, ApiError> {
        let list = list_for(Some(req.list), false)?;
        let keys: Vec<RuleKey> = self
            .engine
            .policy()
            .list_members(&list, now_ms())
            .map(|e| e.key())
            .collect();
        if keys.is_empty() {
            return Ok(Changed::default());
        }
        let gone = self.leave(&list, &keys)?;
        tracing::info!("list {list} flushed: {} entries removed", gone.len());
        Ok(Changed {
            removed: gone.len(),
            ..Changed::default()
        })
    }

    /// Adds allow-list entries.
    pub(crate) fn allow_add(&mut self, req: AllowAdd) -> Result<Changed, ApiError> {
        let prefixes = unique(req.prefixes);
        let reason = if req.reason.is_empty() {
            "manual".to_owned()
        } else {
            req.reason
        };
        let now = now_ms();
        let before: HashMap<Prefix, AllowEntry> = self
            .engine
            .policy()
            .allow_entries()
            .filter(|a| prefixes.contains(&a.prefix))
            .map(|a| (a.prefix, a.clone()))
            .collect();
        let entries = prefixes
            .iter()
            .map(|p| AllowEntry {
                prefix: *p,
                origin: Origin::Manual,
                reason: reason.clone(),
                added_ms: now,
            })
            .collect();
        let r = self.engine.allow(entries).map_err(engine_error)?;
        self.save_or_undo(|engine| {
            let fresh: Vec<Prefix> = prefixes
                .iter()
                .filter(|p| !before.contains_key(p))
                .copied()
                .collect();
            engine.disallow(&fresh)?;
            let changed = before.into_values().filter(|a| a.origin != Origin::Config);
            engine.allow(changed.collect())?;
            Ok(())
        })?;
        tracing::info!("allowed {}", join(&prefixes));
        Ok(changed(r, Vec::new()))
    }

    /// Removes allow-list entries.
    pub(crate) fn allow_del(&mut self, prefixes: Vec<Prefix>) -> Result<Changed, ApiError> {
        let prefixes = unique(prefixes);
        let gone = self.engine.disallow(&prefixes).map_err(engine_error)?;
        let back = gone.clone();
        self.save_or_undo(|engine| {
            engine.allow(back)?;
            Ok(())
        })?;
        tracing::info!("removed {} from the allow list", join(&prefixes));
        Ok(Changed {
            removed: gone.len(),
            ..Changed::default()
        })
    }

    fn block_rows(&self, entries: &[BlockEntry]) -> Result<Vec<BlockRow>, ApiError> {
        // (`entries` are memberships: of a list, or the ones in force.)
        let keys: Vec<RuleKey> = entries.iter().map(|e| e.key()).collect();
        let hits = self.engine.hits_of(&keys, &[]).map_err(engine_error)?;
        let now = now_ms();
        Ok(entries
            .iter()
            .map(|e| {
                let h = hits.blocks.get(&e.key()).copied().unwrap_or_default();
                BlockRow {
                    prefix: e.prefix,
                    direction: e.direction,
                    condition: e.condition.map(|c| c.to_string()),
                    action: e.action,
                    origin: e.origin,
                    id: e.id.clone(),
                    reason: e.reason.clone(),
                    added: rfc3339(e.added_ms),
                    expires: e.expires_ms.map(rfc3339),
                    expires_in_secs: e.expires_ms.map(|t| t.saturating_sub(now) as f64 / 1000.0),
                    packets: h.packets,
                    bytes: h.bytes,
                    list: e.list.clone(),
                    also_in: self
                        .engine
                        .policy()
                        .lists_of(&e.key())
                        .into_iter()
                        .filter(|l| l != &e.list)
                        .collect(),
                }
            })
            .collect())
    }

    /// One page of the block list: at most `n` entries after `after`, in
    /// key order, with their hit counters.
    pub(crate) fn block_page(
        &self,
        after: Option<RuleKey>,
        n: usize,
    ) -> Result<Vec<BlockRow>, ApiError> {
        let page = self.engine.policy().blocks_page(after.as_ref(), n);
        self.block_rows(&page)
    }

    /// One page of one list's memberships, as [`Self::block_page`] pages
    /// through everything.
    pub(crate) fn list_page(
        &self,
        list: &ListName,
        after: Option<RuleKey>,
        n: usize,
    ) -> Result<Vec<BlockRow>, ApiError> {
        let page = self
            .engine
            .policy()
            .list_page(list, after.as_ref(), n, now_ms());
        self.block_rows(&page)
    }

    /// Which entries decide traffic from and to `addr`.
    pub(crate) fn block_show(&self, addr: IpAddr) -> Result<BlockShow, ApiError> {
        let policy = self.engine.policy();
        let source = self.block_rows(&policy.blocks_containing(Direction::Src, addr))?;
        let destination = self.block_rows(&policy.blocks_containing(Direction::Dst, addr))?;
        let allowed_by = match policy.allow_containing(addr) {
            Some(a) => {
                let hits = self
                    .engine
                    .hits_of(&[], &[a.prefix])
                    .map_err(engine_error)?;
                let h = hits.allow.get(&a.prefix).copied().unwrap_or_default();
                Some(allow_row(a, h.packets, h.bytes))
            }
            None => None,
        };
        let verdict = match (&allowed_by, source.first()) {
            (Some(a), _) => format!(
                "passed: allow-list entry {} wins over every block entry",
                a.prefix
            ),
            (None, None) => "not in the block list: passed unless a port rule or a \
                             destination entry drops it"
                .to_owned(),
            (None, Some(first)) => {
                let action = |r: &BlockRow| format!("{:?}", r.action).to_lowercase();
                match &first.condition {
                    None => format!("{} by {}", action(first), first.prefix),
                    Some(c) => {
                        let rest = source
                            .iter()
                            .skip(1)
                            .find(|r| r.condition.is_none())
                            .map_or("passed".to_owned(), |r| {
                                format!("{} by {}", action(r), r.prefix)
                            });
                        format!(
                            "{c}: {} by {}; other traffic: {rest}",
                            action(first),
                            first.prefix
                        )
                    }
                }
            }
        };
        Ok(BlockShow {
            address: addr,
            allowed_by,
            source,
            destination,
            verdict,
        })
    }

    /// The configured port rules with their hit counters.
    pub(crate) fn port_rules(&mut self) -> Result<Vec<PortRuleRow>, ApiError> {
        let hits = self.engine.port_rule_hits().map_err(engine_error)?;
        Ok(self
            .engine
            .policy()
            .port_rules()
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let h = hits.get(&(i as u32 + 1)).copied().unwrap_or_default();
                PortRuleRow {
                    id: r.id.clone(),
                    condition: r.condition.to_string(),
                    action: r.action,
                    reason: r.description.clone(),
                    packets: h.packets,
                    bytes: h.bytes,
                }
            })
            .collect())
    }

    /// The allow list, in prefix order, with hit counters.
    pub(crate) fn allow_list(&self) -> Result<Vec<AllowRow>, ApiError> {
        let mut rows: Vec<&AllowEntry> = self.engine.policy().allow_entries().collect();
        rows.sort_by_key(|a| a.prefix);
        let prefixes: Vec<Prefix> = rows.iter().map(|a| a.prefix).collect();
        let hits = self.engine.hits_of(&[], &prefixes).map_err(engine_error)?;
        Ok(rows
            .into_iter()
            .map(|a| {
                let h = hits.allow.get(&a.prefix).copied().unwrap_or_default();
                allow_row(a, h.packets, h.bytes)
            })
            .collect())
    }

    /// Counters and rates over the last second.
    pub(crate) fn stats(&self) -> StatsLine {
        stats_line(self.engine.attachments(), &self.live, false)
    }

    /// The daemon's status.
    pub(crate) fn status(&self) -> Status {
        let events = self.live.events();
        let fill = self.engine.policy().fill_levels();
        let kernel = self.live.detect();
        let detected = self.detector.counts();
        let response = self.responder.counts();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            interfaces: self
                .engine
                .attachments()
                .iter()
                .map(|a| InterfaceStatus {
                    interface: a.interface.clone(),
                    ifindex: a.ifindex,
                    mode: a.mode.as_str().to_owned(),
                    program_id: a.program_id,
                    pinned: a.pinned.clone(),
                    // Shared with any interface whose ifindex has the same
                    // remainder (the log said so when it was attached).
                    traffic: crate::daemon::class_lines(&self.live.slot(a.stats_slot)),
                })
                .collect(),
            absent_interfaces: self
                .absent
                .values()
                .map(|a| AbsentInterface {
                    interface: a.interface.clone(),
                    since: a.since.clone(),
                    last_ifindex: a.last_ifindex,
                    reason: a.reason.clone(),
                })
                .collect(),
            on_exit: match self.on_exit {
                ironpost_core::config::OnExit::Keep => "keep",
                ironpost_core::config::OnExit::Detach => "detach",
            }
            .to_owned(),
            program_id: self.engine.attachment().map(|a| a.program_id),
            maps: MapFill {
                blocks: fill.blocks,
                blocks_capacity: fill.blocks_capacity,
                allow: fill.allow,
                allow_capacity: fill.allow_capacity,
                port_rules: fill.port_rules,
                port_rules_capacity: fill.port_rules_capacity,
                by_map: fill
                    .by_map
                    .iter()
                    .map(|(name, n)| ((*name).to_owned(), *n))
                    .collect(),
            },
            events: EventCounts {
                delivered: events.delivered,
                lost_ring_full: events.lost_ring_full,
                lost_budget: events.lost_budget,
            },
            events_lost: events.lost(),
            output_lines_dropped: self.output_dropped,
            metrics: self.metrics_addr.map(|a| format!("http://{a}/metrics")),
            parse: self
                .live
                .parse()
                .named()
                .map(|(name, n)| (name.to_owned(), n))
                .collect(),
            detection: DetectionStatus {
                enabled: self.detection.enabled,
                kernel: KernelDetection {
                    sources_new: kernel.sources_new,
                    targets_new: kernel.targets_new,
                    signals: kernel.signals,
                    signals_lost: kernel.signals_lost,
                    sources_deferred: kernel.sources_deferred,
                    admit_over_budget: kernel.admit_over_budget,
                },
                detectors: Detectors {
                    signals: detected.signals,
                    ignored: detected.ignored,
                    detectors: detected
                        .detectors
                        .iter()
                        .map(|(kind, c)| {
                            (
                                kind.as_str().to_owned(),
                                DetectorAlerts {
                                    alerts: c.alerts,
                                    repeats: c.repeats,
                                },
                            )
                        })
                        .collect(),
                    evicted: detected.evicted,
                    tracked: detected.tracked,
                },
                response: Response {
                    blocked: response.blocked,
                    dry_run: response.dry_run,
                    skipped: response.skipped,
                    capped: response.capped,
                    offenders: response.offenders,
                },
                dry_run: self.responder.config().dry_run,
                auto_block: self.responder.config().auto_block,
            },
            config: self.config_path.clone(),
            state_file: self.state_file.clone(),
            socket: self.socket.clone(),
            crowdsec: self.crowdsec_status(),
            fleet: self.fleet.as_ref().map(crate::fleet::Fleet::status),
        }
    }

    /// Starts following the Local API when `[crowdsec]` is set (at start,
    /// or after a reload changed it).
    pub(crate) fn start_crowdsec(&mut self) {
        if let (Some((cfg, state)), Some(tx)) = (&self.crowdsec, &self.changes_tx) {
            self.crowdsec_task = Some(crowdsec::spawn(cfg.clone(), tx.clone(), state.clone()));
        }
    }

    /// Applies a reloaded `[crowdsec]`: a changed one restarts the follower,
    /// which reads the whole decision stream again and syncs the list to
    /// it; a removed one stops it, leaving the list to its entries' expiry.
    fn reconfigure_crowdsec(
        &mut self,
        new: Option<ironpost_core::config::CrowdsecConfig>,
        notes: &mut Vec<String>,
    ) {
        if self.crowdsec.as_ref().map(|(c, _)| c) == new.as_ref() {
            return;
        }
        if let Some(t) = self.crowdsec_task.take() {
            t.abort();
        }
        let had = self.crowdsec.is_some();
        self.crowdsec = new.map(|c| (c, std::sync::Arc::new(crowdsec::FeedState::default())));
        match &self.crowdsec {
            Some((c, _)) => notes.push(format!(
                "crowdsec: following http://{}:{} (the list {} is synced to its decisions)",
                c.lapi_host,
                c.lapi_port,
                crowdsec::LIST
            )),
            None if had => notes.push(format!(
                "crowdsec: no longer followed; the list {list} keeps its entries until they \
                 expire (`ironpost block flush --list {list}` removes them now)",
                list = crowdsec::LIST
            )),
            None => {}
        }
        self.start_crowdsec();
    }

    /// The CrowdSec follower's state, when `[crowdsec]` is set.
    pub(crate) fn crowdsec_status(&self) -> Option<ironpost_api::CrowdsecStatus> {
        use std::sync::atomic::Ordering::Relaxed;
        let (cfg, state) = self.crowdsec.as_ref()?;
        let last = state.last_success_ms.load(Relaxed);
        Some(ironpost_api::CrowdsecStatus {
            lapi: format!("http://{}:{}", cfg.lapi_host, cfg.lapi_port),
            connected: state.connected.load(Relaxed),
            decisions: state.decisions.load(Relaxed),
            failures: state.failures.load(Relaxed),
            last_success: (last > 0).then(|| rfc3339(last)),
        })
    }

    /// Removes from `list` those of `prefixes` that are in it (a feed's
    /// withdrawal of an entry someone already removed is no error).
    pub(crate) fn leave_list(
        &mut self,
        list: &ListName,
        prefixes: Vec<Prefix>,
    ) -> Result<Changed, ApiError> {
        let members: Vec<Prefix> = prefixes
            .into_iter()
            .filter(|p| {
                self.engine
                    .policy()
                    .lists_of(&(Direction::Src, *p))
                    .contains(list)
            })
            .collect();
        if members.is_empty() {
            return Ok(Changed::default());
        }
        self.block_del(members, Some(list.clone()))
    }

    /// Re-reads the configuration. A bad file, or one that needs a
    /// restart, changes nothing.
    /// Applies a configuration that [`read_config`] read and checked (off
    /// the main loop: parsing 100,000 rules takes about half a second).
    pub(crate) fn reload_with(&mut self, cfg: IronpostConfig) -> Result<Changed, ApiError> {
        let Some(path) = self.config_path.clone() else {
            return Err(no_config());
        };
        // Interfaces configured before (attached, or absent for now) are
        // kept whether their device exists or not; only a new name must
        // exist (a misspelt one would otherwise wait for ever, unfiltered).
        let have: Vec<String> = self.engine.interfaces().to_vec();
        let want: Vec<String> = if self.interfaces_from_cli {
            have.clone()
        } else {
            cfg.ebpf.interfaces.clone()
        };
        if want.is_empty() {
            return Err(invalid(format!(
                "{}: ebpf.interfaces is empty; nothing was changed",
                path.display()
            )));
        }
        for iface in want.iter().filter(|i| !have.contains(i)) {
            check_interface_exists(iface).map_err(|e| invalid(format!("{e:#}")))?;
        }
        let mut engine_cfg = EngineConfig::from_core(&cfg.ebpf).with_detection(&cfg.detection);
        if let Some(mode) = self.xdp_mode_from_cli {
            engine_cfg.xdp_mode = mode;
        }
        let alerts = AlertSink::open(&cfg.detection).map_err(|e| invalid(format!("{e:#}")))?;
        let report = self
            .engine
            .reload_config(engine_cfg)
            .map_err(engine_error)?;
        self.alerts = alerts;
        self.detector.reconfigure(&cfg.detection);
        self.responder.reconfigure(
            cfg.response.clone(),
            cfg.detection.max_tracked_sources as usize,
        );
        self.detection = cfg.detection.clone();
        let mut notes = Vec::new();
        self.reconfigure_crowdsec(cfg.crowdsec.clone(), &mut notes);
        if cfg.fleet != self.fleet_config {
            notes.push("fleet: [fleet] changed; that takes effect at the next start".into());
        }
        for gone in have.iter().filter(|i| !want.contains(i)) {
            self.engine.detach_interface(gone).map_err(engine_error)?;
            if self.absent.remove(gone).is_some() {
                notes.push(format!("{gone} (absent) is no longer configured"));
            } else {
                notes.push(format!("detached from {gone}"));
            }
        }
        for absent in want.iter().filter(|i| self.absent.contains_key(*i)) {
            notes.push(format!(
                "{absent} is still absent: attached when its device returns"
            ));
        }
        for new in want.iter().filter(|i| !have.contains(i)) {
            match self.engine.attach_interface(new) {
                Ok(a) => notes.push(format!("attached to {new} in {} mode", a.mode.as_str())),
                Err(e) => {
                    return Err(ApiError::new(
                        ErrorKind::Internal,
                        format!(
                            "the rules were reloaded, but attaching to {new} failed: {}",
                            chain(&e)
                        ),
                    ));
                }
            }
        }
        Ok(changed(report, notes))
    }
}

/// The list a change names (default `manual`). Nothing can be added to
/// the daemon's own lists (`auto`, `config`); entries can leave `auto` (an
/// operator lifting an automatic block), never `config` (the configuration
/// says what is there).
/// The error of a reload without a configuration file.
pub(crate) fn no_config() -> ApiError {
    invalid("the daemon was started without --config: there is nothing to reload")
}

/// Reads and checks the configuration file for a reload. It needs no
/// daemon state, so it runs off the main loop; an empty file is refused
/// (an editor that truncates before it writes, or a failed copy, must not
/// remove every rule of a running filter).
pub(crate) fn read_config(path: &std::path::Path) -> Result<IronpostConfig, ApiError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(format!(
            "reading {}: {e}; the running configuration stays",
            path.display()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(invalid(format!(
            "{} is empty: refusing to reload from it, the running configuration stays",
            path.display()
        )));
    }
    IronpostConfig::parse(&text, &path.display().to_string()).map_err(|e| invalid(e.to_string()))
}

/// [`read_config`] on a blocking thread.
pub(crate) async fn read_config_off_loop(path: PathBuf) -> Result<IronpostConfig, ApiError> {
    tokio::task::spawn_blocking(move || read_config(&path))
        .await
        .map_err(|e| {
            ApiError::new(
                ErrorKind::Internal,
                format!("reading the configuration: {e}"),
            )
        })?
}

fn list_for_add(list: Option<ListName>) -> Result<ListName, ApiError> {
    list_for(list, true)
}

fn list_for(list: Option<ListName>, adding: bool) -> Result<ListName, ApiError> {
    let list = list.unwrap_or_default();
    let refused = list.as_str() == ListName::CONFIG || (adding && list.is_reserved());
    if refused {
        return Err(invalid(format!(
            "the list {list} is the daemon's own ({}); nothing was changed",
            if list.as_str() == ListName::AUTO {
                "the detectors' blocks: entries can be removed from it, not added"
            } else {
                "configured rules: change the configuration and reload"
            }
        )));
    }
    Ok(list)
}

fn allow_row(a: &AllowEntry, packets: u64, bytes: u64) -> AllowRow {
    AllowRow {
        prefix: a.prefix,
        origin: a.origin,
        reason: a.reason.clone(),
        added: rfc3339(a.added_ms),
        packets,
        bytes,
    }
}

/// `prefixes` without repeats, in their first order: `block add X X` is
/// one entry.
/// Each prefix once, in order (the policy works through a change in key
/// order, and finds its entries fastest that way).
fn unique(mut prefixes: Vec<Prefix>) -> Vec<Prefix> {
    prefixes.sort_unstable();
    prefixes.dedup();
    prefixes
}

/// Gives the memory a large change freed back to the system. The C
/// allocator keeps what the second thread freed in that thread's arena,
/// where a daemon holding a million entries would carry tens of megabytes
/// it no longer uses.
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it
    // takes the allocator's locks like any allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The API error for a block change the engine refused.
pub(crate) fn block_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Policy(PolicyError::Cancelled) => {
            tracing::info!(
                "a change of block entries was cancelled by its client before it was complete; \
                 nothing was changed"
            );
            ApiError::new(
                ErrorKind::Cancelled,
                "cancelled by the client; nothing was changed",
            )
        }
        e => engine_error(e),
    }
}

/// `c` with the time since `started`.
fn timed_since(mut c: Changed, started: Instant) -> Changed {
    c.elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    c
}

fn join(prefixes: &[Prefix]) -> String {
    let mut s: Vec<String> = prefixes.iter().take(5).map(ToString::to_string).collect();
    if prefixes.len() > 5 {
        s.push(format!("and {} more", prefixes.len() - 5));
    }
    s.join(", ")
}

/// `ms` since the epoch as an RFC 3339 time. Times past 9999-12-31 (which
/// RFC 3339 cannot write) are written as that last second: no saved or
/// requested value makes this fail.
pub(crate) fn rfc3339(ms: u64) -> String {
    const LAST_MS: u64 = 253_402_300_799_000;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.min(LAST_MS));
    humantime::format_rfc3339_seconds(t).to_string()
}
