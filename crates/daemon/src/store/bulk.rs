//! One store transaction that a large change feeds while it is applied a
//! chunk at a time: the rows of each chunk are encoded and inserted on a
//! thread of their own, and the transaction is committed only when the
//! whole change is in the kernel. Dropped before that (the change failed,
//! was cancelled, or the daemon was killed), nothing of it is stored: the
//! change is all or nothing on disk too.

use std::{sync::mpsc, thread};

use ironpost_policy::{Members, RuleKey};

use super::{BLOCKS, Store, StoreError, block_key, db_err, encode_members};

/// What the main task sends the writer.
enum Message {
    /// Each key's memberships as they are now (none: its row is deleted).
    Rows(Vec<(RuleKey, Members)>),
    /// Keys that all hold the same memberships (most of an import): one
    /// value, encoded once.
    Same(Vec<RuleKey>, Members),
    /// Everything was sent: commit.
    Commit,
}

/// How a bulk write ended: the store (handed back), and whether the
/// transaction was committed.
pub struct Finished {
    /// The store, to be used again by the main task.
    pub store: Store,
    /// `Ok` when committed; an error when writing or committing failed, or
    /// when the change was abandoned ([`StoreError::Abandoned`]).
    pub result: Result<(), StoreError>,
}

/// The main task's end of a bulk write.
pub struct BulkWriter {
    tx: Option<mpsc::SyncSender<Message>>,
}

impl BulkWriter {
    /// Moves `store` to a writer thread with one open transaction; `done`
    /// is called with the outcome when the thread ends.
    pub fn start(store: Store, done: impl FnOnce(Finished) + Send + 'static) -> Self {
        // A few chunks in flight: the main task never waits on the disk.
        let (tx, rx) = mpsc::sync_channel(8);
        thread::Builder::new()
            .name("ironpost-store".into())
            .spawn(move || {
                let mut store = store;
                let result = write(&mut store, rx);
                if result.is_err() {
                    // The database refuses further writes in a process
                    // that saw an I/O error; it is opened again.
                    store.db = None;
                }
                done(Finished { store, result });
            })
            .expect("spawning the store writer thread");
        Self { tx: Some(tx) }
    }

    /// Sends one chunk's rows; false when the writer has already failed
    /// (its outcome says why).
    pub fn rows(&self, rows: Vec<(RuleKey, Members)>) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.send(Message::Rows(rows)).is_ok())
    }

    /// Sends keys that all hold `members`; false as for [`Self::rows`].
    pub fn same(&self, keys: Vec<RuleKey>, members: Members) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.send(Message::Same(keys, members)).is_ok())
    }

    /// Asks for the commit; the outcome comes through `done`.
    pub fn commit(mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Message::Commit);
        }
    }

    /// Abandons the transaction: nothing is written. The outcome comes
    /// through `done`, as [`StoreError::Abandoned`].
    pub fn abandon(self) {}
}

fn write(store: &mut Store, rx: mpsc::Receiver<Message>) -> Result<(), StoreError> {
    let path = store.path.clone();
    let db = store.db()?;
    let txn = db.begin_write().map_err(|e| db_err(&path, "writing", e))?;
    {
        let mut table = txn
            .open_table(BLOCKS)
            .map_err(|e| db_err(&path, "writing", e))?;
        loop {
            match rx.recv() {
                Ok(Message::Rows(rows)) => {
                    // In the B-tree's order (see `block_key`).
                    let mut rows: Vec<_> = rows
                        .into_iter()
                        .map(|(key, members)| (block_key(&key), members))
                        .collect();
                    rows.sort_unstable_by_key(|(k, _)| *k);
                    for (k, members) in rows {
                        if members.is_empty() {
                            table.remove(k.as_slice()).map(drop)
                        } else {
                            let v = encode_members(&members);
                            table.insert(k.as_slice(), v.as_slice()).map(drop)
                        }
                        .map_err(|e| db_err(&path, "writing", e))?;
                    }
                }
                Ok(Message::Same(keys, members)) => {
                    let v = encode_members(&members);
                    let mut keys: Vec<_> = keys.iter().map(block_key).collect();
                    keys.sort_unstable();
                    for k in keys {
                        table
                            .insert(k.as_slice(), v.as_slice())
                            .map_err(|e| db_err(&path, "writing", e))?;
                    }
                }
                Ok(Message::Commit) => break,
                // Dropped without a commit: the transaction goes unwritten.
                Err(mpsc::RecvError) => return Err(StoreError::Abandoned),
            }
        }
    }
    txn.commit().map_err(|e| db_err(&path, "committing", e))
}
