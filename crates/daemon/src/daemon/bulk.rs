//! Large block changes (an import, a sync) applied a chunk at a time, one
//! chunk per turn of the main loop, so that events, signals, detection,
//! expiry and read requests go on while a million entries go in.
//!
//! All or nothing still holds. The change's rows go into one store
//! transaction on a writer thread ([`BulkWriter`]), committed only when the
//! last chunk is in the kernel; a failure, a cancelled client or a stop
//! puts every chunk's keys back as they were and drops the transaction.
//! Other changes wait: requests that change the policy are taken only when
//! no large change is in progress. Automatic blocks and expiries still
//! happen in the kernel at once; their rows are saved when the large change
//! ends (the store belongs to the writer until then).

use std::time::Instant;

use ironpost_api::{ApiError, Changed, ErrorKind};
use ironpost_core::Prefix;
use ironpost_policy::{BlockEntry, Members, OnConfigConflict, RuleKey};
use tokio::sync::{mpsc, oneshot};

use super::{
    Daemon,
    requests::{block_error, chain, release_free_memory},
};
use crate::store::bulk::{BulkWriter, Finished};

/// Entries applied per turn of the main loop: about 30 ms of work here.
pub(crate) const CHUNK: usize = 16_384;

/// Where a change's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Changed, ApiError>>;

/// Told how far a change is (done, total); answers false when the client
/// has gone away, which cancels the change.
pub(crate) type Progress = Box<dyn FnMut(usize, usize) -> bool + Send>;

/// Where writer threads report that they ended.
pub(crate) type Finishing = mpsc::UnboundedSender<Finished>;

/// What a large change does, before it starts.
pub(crate) struct Plan {
    /// The sources to add or update, in order.
    pub adds: Vec<Prefix>,
    /// The entry each of them gets (with its own prefix).
    pub template: BlockEntry,
    /// What to do with keys a configured rule holds.
    pub conflict: OnConfigConflict,
    /// Keys that leave `list` (a sync's removals), in key order.
    pub leaving: Vec<RuleKey>,
    /// The list they leave.
    pub list: ironpost_policy::ListName,
    /// Notes for the answer.
    pub notes: Vec<String>,
    /// The log line of a change that succeeded, given what it did.
    pub done: Box<dyn FnOnce(&Changed) -> String + Send>,
}

impl Plan {
    /// The entry for `prefix`.
    pub fn entry(template: &BlockEntry, prefix: Prefix) -> BlockEntry {
        let mut e = template.clone();
        e.prefix = prefix;
        e
    }
}

/// A large change in progress.
pub(crate) struct Bulk {
    adds: Vec<Prefix>,
    /// How many of `adds` were applied.
    next: usize,
    /// The runs of `adds` that were in no list before (kept as ranges:
    /// most of an import, which `before` would otherwise hold key by key).
    fresh: Vec<std::ops::Range<usize>>,
    template: BlockEntry,
    conflict: OnConfigConflict,
    leaving: std::vec::IntoIter<RuleKey>,
    list: ironpost_policy::ListName,
    /// The memberships of the other keys touched so far, as they were.
    before: Vec<(RuleKey, Members)>,
    changed: Changed,
    done: usize,
    total: usize,
    progress: Progress,
    /// Until the commit is asked for (or the change fails).
    writer: Option<BulkWriter>,
    /// Why the change failed, once it has: its answer when the writer ends.
    failed: Option<ApiError>,
    log: Box<dyn FnOnce(&Changed) -> String + Send>,
    reply: Reply,
    started: Instant,
    /// Turns of the main loop it took, the longest, and all together.
    turns: u32,
    longest: std::time::Duration,
    held: std::time::Duration,
}

impl Bulk {
    /// What puts every key touched so far back as it was (and forgets it).
    fn taken_back(&mut self) -> Vec<(RuleKey, Members)> {
        let mut before = std::mem::take(&mut self.before);
        for r in std::mem::take(&mut self.fresh) {
            before.extend(
                self.adds[r]
                    .iter()
                    .map(|p| ((ironpost_core::Direction::Src, *p), Members::new())),
            );
        }
        before
    }
}

impl Daemon {
    /// Starts a large change; its answer comes when the last chunk is in
    /// and saved (see the module comment).
    /// `started` is when the request reached the main task: its planning
    /// counts as the first turn.
    pub(crate) fn start_bulk(
        &mut self,
        plan: Plan,
        progress: Progress,
        reply: Reply,
        started: Instant,
    ) {
        // What is not saved yet first: afterwards, the rows the change
        // writes are its own.
        if let Err(e) = self.save_now() {
            let _ = reply.send(Err(ApiError::new(
                ErrorKind::NotSaved,
                format!(
                    "nothing was changed: the state could not be saved: {}",
                    chain(&e)
                ),
            )));
            return;
        }
        let Some(store) = self.store.take() else {
            let _ = reply.send(Err(ApiError::new(
                ErrorKind::Internal,
                "another large change holds the store; nothing was changed",
            )));
            return;
        };
        let finishing = self.bulk_finishing.clone();
        let writer = BulkWriter::start(store, move |f| {
            let _ = finishing.send(f);
        });
        let total = plan.adds.len() + plan.leaving.len();
        tracing::info!(
            "applying a change of {total} entries (list {}), {CHUNK} per turn; other changes \
             wait for it",
            plan.list
        );
        self.bulk = Some(Bulk {
            adds: plan.adds,
            next: 0,
            fresh: Vec::new(),
            template: plan.template,
            conflict: plan.conflict,
            leaving: plan.leaving.into_iter(),
            list: plan.list,
            before: Vec::new(),
            changed: Changed {
                notes: plan.notes,
                ..Changed::default()
            },
            done: 0,
            total,
            progress,
            writer: Some(writer),
            failed: None,
            log: plan.done,
            reply,
            started,
            turns: 0,
            longest: started.elapsed(),
            held: started.elapsed(),
        });
    }

    /// Whether a large change has a chunk to apply (or its commit to ask
    /// for).
    pub(crate) fn bulk_ready(&self) -> bool {
        self.bulk.as_ref().is_some_and(|b| b.writer.is_some())
    }

    /// Whether a large change holds the policy (until its writer ends).
    pub(crate) fn bulk_in_progress(&self) -> bool {
        self.bulk.is_some()
    }

    /// Applies the next chunk of the large change in progress, or asks for
    /// its commit when none is left.
    pub(crate) fn bulk_step(&mut self) {
        let t = Instant::now();
        self.bulk_chunk();
        if let Some(b) = self.bulk.as_mut() {
            let took = t.elapsed();
            b.turns += 1;
            b.longest = b.longest.max(took);
            b.held += took;
        }
    }

    fn bulk_chunk(&mut self) {
        let keys = std::mem::take(&mut self.fleet_keys);
        self.fleet_publish(&keys);
        let Some(b) = self.bulk.as_mut() else {
            return;
        };
        let range = b.next..(b.next + CHUNK).min(b.adds.len());
        b.next = range.end;
        let adds: Vec<BlockEntry> = b.adds[range.clone()]
            .iter()
            .map(|p| Plan::entry(&b.template, *p))
            .collect();
        let leaving: Vec<RuleKey> = if adds.is_empty() {
            b.leaving.by_ref().take(CHUNK).collect()
        } else {
            Vec::new()
        };
        if adds.is_empty() && leaving.is_empty() {
            if let Some(w) = b.writer.take() {
                w.commit();
            }
            return;
        }
        let keys: Vec<RuleKey> = if adds.is_empty() {
            leaving.clone()
        } else {
            adds.iter().map(BlockEntry::key).collect()
        };
        let policy = self.engine.policy();
        let was: Vec<(RuleKey, Members)> = keys.iter().map(|k| (*k, policy.members(k))).collect();
        // Keys in no list yet (most of an import): each one's row is its
        // new entry, known without looking it up again once applied.
        let fresh = !adds.is_empty() && was.iter().all(|(_, m)| m.is_empty());
        if fresh {
            match b.fresh.last_mut() {
                Some(r) if r.end == range.start => r.end = range.end,
                _ => b.fresh.push(range),
            }
        } else {
            b.before.extend(was);
        }
        let mut held = 0;
        let n = keys.len();
        let applied = if adds.is_empty() {
            self.engine
                .unblock_from(&b.list, &leaving)
                .map(|gone| b.changed.removed += gone.len())
        } else {
            self.engine.block(adds, b.conflict, &mut |_| true).map(|r| {
                b.changed.added += r.added;
                b.changed.updated += r.updated;
                b.changed.skipped_config += r.skipped_config;
                held = r.skipped_config;
            })
        };
        if let Err(e) = applied {
            self.bulk_fail(block_error(e));
            return;
        }
        // This chunk's rows go to the writer; whatever else changed
        // meanwhile (an automatic block, an expiry) is saved afterwards.
        let mut changes = self.engine.take_policy_changes();
        let (mine, others): (Vec<RuleKey>, Vec<RuleKey>) = changes
            .blocks
            .into_iter()
            .partition(|k| keys.binary_search(k).is_ok());
        changes.blocks = others;
        self.engine.restore_policy_changes(changes);
        if self.fleet.is_some() {
            // Published at the next chunk (this one's borrow ends first).
            self.fleet_keys.extend(mine.iter().copied());
        }
        b.done += n;
        let sent = if fresh && held == 0 {
            // Every key now holds the template's entry alone. (A key a
            // configured rule holds keeps its entry beside the rule: looked
            // up like any other.)
            let entry = Plan::entry(
                &b.template,
                Prefix::host(std::net::Ipv4Addr::UNSPECIFIED.into()),
            );
            b.writer.as_ref().is_some_and(|w| w.same(keys, vec![entry]))
        } else {
            let policy = self.engine.policy();
            let rows = mine.into_iter().map(|k| (k, policy.members(&k))).collect();
            b.writer.as_ref().is_some_and(|w| w.rows(rows))
        };
        if !sent {
            // The writer failed: its outcome (with the error) is on its way.
            b.writer = None;
            return;
        }
        if !(b.progress)(b.done, b.total) {
            self.bulk_fail(block_error(ironpost_ebpf_engine::EngineError::Policy(
                ironpost_policy::PolicyError::Cancelled,
            )));
        }
    }

    /// Takes every chunk applied so far back out and drops the transaction;
    /// `error` is the answer once the writer has ended.
    pub(crate) fn bulk_fail(&mut self, error: ApiError) {
        let Some(b) = self.bulk.as_mut() else {
            return;
        };
        if b.failed.is_some() {
            return;
        }
        let before = b.taken_back();
        b.failed = Some(error);
        if let Some(w) = b.writer.take() {
            w.abandon();
        }
        if let Err(u) = self.engine.restore_members(before) {
            tracing::error!(
                "taking back a large change that failed: {}; the kernel holds part of it until \
                 the next restart (the store does not)",
                chain(&u)
            );
        }
    }

    /// The writer of the large change ended: the store comes back, and the
    /// change is answered (and taken back if it could not be stored).
    pub(crate) fn bulk_finished(&mut self, f: Finished) {
        self.store = Some(f.store);
        let Some(mut b) = self.bulk.take() else {
            return;
        };
        let mut before = b.taken_back();
        tracing::debug!(
            "large change of {} entries: {} turns of the main loop, the longest {:?}, {:?} in \
             all, {:?} from start to end",
            b.total,
            b.turns,
            b.longest,
            b.held,
            b.started.elapsed()
        );
        let answer = match (b.failed, f.result) {
            (Some(e), _) => Err(e),
            (None, Ok(())) => {
                let mut changed = b.changed;
                changed.elapsed_ms = b.started.elapsed().as_secs_f64() * 1000.0;
                tracing::info!("{}", (b.log)(&changed));
                Ok(changed)
            }
            (None, Err(e)) => {
                let saving = chain(&e);
                match self.engine.restore_members(std::mem::take(&mut before)) {
                    Ok(()) => Err(ApiError::new(
                        ErrorKind::NotSaved,
                        format!("nothing was changed: the state could not be saved: {saving}"),
                    )),
                    Err(u) => {
                        tracing::error!(
                            "taking back a change that could not be saved failed: {u}; the \
                             kernel holds it until the next restart"
                        );
                        Err(ApiError::new(
                            ErrorKind::Internal,
                            format!(
                                "the state could not be saved ({saving}), and taking the change \
                                 back out of the kernel failed too ({})",
                                chain(&u)
                            ),
                        ))
                    }
                }
            }
        };
        drop(before);
        if b.total >= 4 * CHUNK {
            // One turn, of about 60 ms per million entries held.
            let t = Instant::now();
            self.engine.compact_policy();
            tracing::debug!("policy packed in {:?}", t.elapsed());
        }
        release_free_memory();
        // What changed meanwhile (automatic blocks, expiries, a change
        // taken back) is saved now.
        if let Err(e) = self.save_now() {
            tracing::error!("saving the state: {}", chain(&e));
        }
        let _ = b.reply.send(answer);
    }
}
