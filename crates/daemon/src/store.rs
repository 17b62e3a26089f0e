//! The daemon's store: manual and automatic blocks with their expiry, and
//! allow-list entries added at run time, in an embedded database (redb).
//! Configured entries are not stored: they come from the configuration at
//! every start.
//!
//! Why redb: one change costs one transaction that writes the rows it
//! touches (a B-tree insert or delete each), not a rewrite of everything,
//! so `block add` costs the same with ten entries stored or ten million.
//! Each commit is durable when it returns (fsync of the data, then of the
//! commit slot), and a crash at any point leaves the last committed state:
//! what the daemon acknowledged. It is pure Rust, one file, no server, and
//! its format is stable. SQLite would do the same through C and a SQL
//! layer the daemon has no use for.
//!
//! A block row holds every membership of one key, in a compact binary form
//! (postcard): about 30 bytes plus the reason and list names, so that a
//! million entries are a file of tens of megabytes, written in about a
//! second.
//!
//! A state file in the earlier JSON format (v1) is read once and converted;
//! the JSON file is kept beside the store as `NAME.v1.json`. A store of
//! layout 2 (JSON rows) is rewritten in this layout when it is opened.

use std::{
    borrow::Cow,
    fs,
    net::IpAddr,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
};

use ironpost_core::{Condition, Direction, L4Protocol, PortRange, Prefix, RuleAction};
use ironpost_policy::{AllowEntry, BlockEntry, Changes, ListName, Origin, Policy, RuleKey};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::state::{State, StateError};

pub mod bulk;

/// Block entries by [`block_key`]: every membership of the key, as
/// [`Member`]s.
const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
/// Allow-list entries by [`prefix_key`], as JSON.
const ALLOW: TableDefinition<&[u8], &[u8]> = TableDefinition::new("allow");
/// `format`: the layout of the tables.
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
/// This layout.
const FORMAT: u32 = 3;
/// The layout with JSON block rows, converted when opened.
const FORMAT_JSON_ROWS: u32 = 2;
/// Changes of at least this many block rows are encoded on a second
/// thread while the first writes them.
const PIPELINE_FROM: usize = 16_384;
/// redb's page cache.
const CACHE_BYTES: usize = 16 << 20;

/// A store that cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused an operation.
    #[error("state file {path}: {what}")]
    Db {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The database's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// The file holds something this version does not read.
    #[error(
        "state file {path}: {message} (the file was left as it is; move it away to start without it)"
    )]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A JSON state file (v1) that cannot be read or converted.
    #[error(transparent)]
    Legacy(#[from] StateError),
    /// A bulk write given up before its commit: nothing of it was written.
    #[error("the change was abandoned before it was stored; nothing of it was written")]
    Abandoned,
    /// The store is held by a bulk write in progress.
    #[error("the store is busy with a large change")]
    Busy,
}

/// The daemon's store.
pub struct Store {
    path: PathBuf,
    /// Closed after a failed write (a full or read-only disk), and opened
    /// again for the next one: the database refuses further writes in the
    /// process that saw an I/O error.
    db: Option<Database>,
}

fn to_json(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(v).expect("an entry serializes")
}

/// One membership as a block row stores it (the row's key holds the
/// direction and the prefix).
#[derive(Serialize, Deserialize)]
struct Member<'a> {
    added_ms: u64,
    expires_ms: Option<u64>,
    action: RuleAction,
    origin: Origin,
    condition: Option<StoredCondition>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    reason: Cow<'a, str>,
    #[serde(borrow)]
    list: Cow<'a, str>,
}

/// A condition with every field written (postcard has no optional fields).
#[derive(Serialize, Deserialize)]
struct StoredCondition {
    protocol: L4Protocol,
    ports: Option<(u16, u16)>,
    syn_only: bool,
    rst_only: bool,
}

/// A block row's value: the memberships of one key.
fn encode_members(members: &[BlockEntry]) -> Vec<u8> {
    let rows: Vec<Member<'_>> = members
        .iter()
        .map(|e| Member {
            added_ms: e.added_ms,
            expires_ms: e.expires_ms,
            action: e.action,
            origin: e.origin,
            condition: e.condition.map(|c| StoredCondition {
                protocol: c.protocol,
                ports: c.dst_port.map(|p| (p.first, p.last)),
                syn_only: c.syn_only,
                rst_only: c.rst_only,
            }),
            id: e.id.as_deref().map(Cow::Borrowed),
            reason: Cow::Borrowed(&e.reason),
            list: Cow::Borrowed(e.list.as_str()),
        })
        .collect();
    postcard::to_allocvec(&rows).expect("a membership serializes")
}

/// The memberships of the block row `key` holds `value`.
fn decode_members(key: &[u8], value: &[u8]) -> Result<Vec<BlockEntry>, String> {
    let (direction, prefix) = key_prefix(key).ok_or("not a block key")?;
    let rows: Vec<Member<'_>> = postcard::from_bytes(value).map_err(|e| e.to_string())?;
    rows.into_iter()
        .map(|m| {
            Ok(BlockEntry {
                direction,
                prefix,
                condition: m.condition.map(|c| Condition {
                    protocol: c.protocol,
                    dst_port: c.ports.map(|(first, last)| PortRange { first, last }),
                    syn_only: c.syn_only,
                    rst_only: c.rst_only,
                }),
                action: m.action,
                origin: m.origin,
                id: m.id.map(Cow::into_owned),
                reason: m.reason.into_owned(),
                added_ms: m.added_ms,
                expires_ms: m.expires_ms,
                list: ListName::parse(&m.list)?,
            })
        })
        .collect()
}

/// A key's bytes: the family (4 or 6), the address (big-endian), the
/// length. Rows are written in this order, which is the B-tree's: a large
/// change appends pages instead of touching random ones.
pub type Key = [u8; 19];

fn prefix_key(p: &Prefix, direction: u8) -> Key {
    let mut k = [0u8; 19];
    k[0] = direction;
    match p.addr() {
        IpAddr::V4(a) => {
            k[1] = 4;
            k[2..6].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            k[1] = 6;
            k[2..18].copy_from_slice(&a.octets());
        }
    }
    k[18] = p.len();
    k
}

fn block_key(k: &RuleKey) -> Key {
    prefix_key(&k.1, u8::from(k.0 == Direction::Dst))
}

/// The direction and prefix of a block key (see [`prefix_key`]).
fn key_prefix(k: &[u8]) -> Option<RuleKey> {
    let k: &Key = k.try_into().ok()?;
    let direction = match k[0] {
        0 => Direction::Src,
        1 => Direction::Dst,
        _ => return None,
    };
    let addr = match k[1] {
        4 => IpAddr::from(<[u8; 4]>::try_from(&k[2..6]).ok()?),
        6 => IpAddr::from(<[u8; 16]>::try_from(&k[2..18]).ok()?),
        _ => return None,
    };
    Some((direction, Prefix::new(addr, k[18])?))
}

impl Store {
    /// Opens (or creates) the store at `path` and reads what it holds. A
    /// JSON state file of the earlier format is converted first: one at
    /// `path` itself, or at `legacy` when there is no store yet.
    pub fn open(path: &Path, legacy: Option<&Path>) -> Result<(Self, State), StoreError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| StateError::Io {
                    path: dir.to_owned(),
                    message: format!("creating the directory: {e}"),
                })?;
        }
        if is_json(path) {
            migrate(path, path)?;
        } else if !path.exists()
            && let Some(old) = legacy.filter(|l| is_json(l))
        {
            migrate(old, path)?;
        }
        let mut store = Self {
            path: path.to_owned(),
            db: None,
        };
        store.db()?;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
        let state = store.read()?;
        Ok((store, state))
    }

    fn err(&self, what: &str, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Db {
            path: self.path.clone(),
            what: what.to_owned(),
            source: Box::new(e.into()),
        }
    }

    fn db(&mut self) -> Result<&Database, StoreError> {
        if self.db.is_none() {
            // The daemon reads the store once, at start, and then only
            // writes: a small page cache (redb's default is 1 GiB, which it
            // fills as it writes) keeps the daemon's memory for the policy.
            let db = redb::Builder::new()
                .set_cache_size(CACHE_BYTES)
                .create(&self.path)
                .map_err(|e| match e {
                    redb::DatabaseError::Storage(redb::StorageError::Corrupted(m)) => {
                        StoreError::Format {
                            path: self.path.clone(),
                            message: format!("not a store this version reads: {m}"),
                        }
                    }
                    e => self.err("opening", e),
                })?;
            self.db = Some(db);
        }
        Ok(self.db.as_ref().expect("just opened"))
    }

    /// Everything stored, checking the layout (and writing it into a new
    /// store).
    fn read(&mut self) -> Result<State, StoreError> {
        let path = self.path.clone();
        let db = self.db()?;
        let txn = db.begin_write().map_err(|e| db_err(&path, "reading", e))?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| db_err(&path, "reading", e))?;
            let format = meta
                .get("format")
                .map_err(|e| db_err(&path, "reading", e))?
                .map(|v| v.value());
            match format {
                Some(FORMAT) => {}
                None => {
                    meta.insert("format", FORMAT)
                        .map_err(|e| db_err(&path, "writing", e))?;
                }
                Some(FORMAT_JSON_ROWS) => {
                    let mut blocks = txn
                        .open_table(BLOCKS)
                        .map_err(|e| db_err(&path, "reading", e))?;
                    let rows = json_rows(&path, &blocks)?;
                    for (k, v) in &rows {
                        blocks
                            .insert(k.as_slice(), v.as_slice())
                            .map_err(|e| db_err(&path, "writing", e))?;
                    }
                    meta.insert("format", FORMAT)
                        .map_err(|e| db_err(&path, "writing", e))?;
                    tracing::info!(
                        "{}: {} block rows converted from layout {FORMAT_JSON_ROWS} to {FORMAT}",
                        path.display(),
                        rows.len()
                    );
                }
                Some(other) => {
                    return Err(StoreError::Format {
                        path,
                        message: format!(
                            "layout {other} is not the one this ironpost reads ({FORMAT})"
                        ),
                    });
                }
            }
            txn.open_table(BLOCKS)
                .map_err(|e| db_err(&path, "reading", e))?;
            txn.open_table(ALLOW)
                .map_err(|e| db_err(&path, "reading", e))?;
        }
        txn.commit().map_err(|e| db_err(&path, "writing", e))?;
        let txn = db.begin_read().map_err(|e| db_err(&path, "reading", e))?;
        let mut state = State::default();
        let blocks = txn
            .open_table(BLOCKS)
            .map_err(|e| db_err(&path, "reading", e))?;
        for row in blocks.iter().map_err(|e| db_err(&path, "reading", e))? {
            let (k, v) = row.map_err(|e| db_err(&path, "reading", e))?;
            let members = decode_members(k.value(), v.value()).map_err(|e| StoreError::Format {
                path: path.clone(),
                message: format!("block row {:x?}: {e}", k.value()),
            })?;
            state.blocks.extend(members);
        }
        let allow = txn
            .open_table(ALLOW)
            .map_err(|e| db_err(&path, "reading", e))?;
        for row in allow.iter().map_err(|e| db_err(&path, "reading", e))? {
            let (k, v) = row.map_err(|e| db_err(&path, "reading", e))?;
            let e: AllowEntry =
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Format {
                    path: path.clone(),
                    message: format!("allow row {:x?}: {e}", k.value()),
                })?;
            state.allow.push(e);
        }
        Ok(state)
    }

    /// Writes the changed keys as `policy` has them now (an entry that is
    /// gone, or set by the configuration, is deleted), in one durable
    /// transaction. On failure nothing is written, and the database is
    /// opened again for the next write.
    pub fn write(&mut self, policy: &Policy, changes: &Changes) -> Result<(), StoreError> {
        let mut blocks: Vec<(Key, &RuleKey)> =
            changes.blocks.iter().map(|k| (block_key(k), k)).collect();
        blocks.sort_unstable_by_key(|(k, _)| *k);
        let mut allow: Vec<(Key, &Prefix)> = changes
            .allow
            .iter()
            .map(|p| (prefix_key(p, 0), p))
            .collect();
        allow.sort_unstable_by_key(|(k, _)| *k);
        let encode = |(k, key): &(Key, &RuleKey)| {
            let members = policy.members(key);
            (*k, (!members.is_empty()).then(|| encode_members(&members)))
        };
        let allow = allow.into_iter().map(|(k, p)| {
            let e = policy.allow_entry(p).filter(|e| e.origin != Origin::Config);
            (k, e.map(to_json))
        });
        if blocks.len() < PIPELINE_FROM {
            return self.put(blocks.iter().map(encode), allow);
        }
        // A large change: rows are encoded on a second thread while this
        // one inserts them.
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(Key, Option<Vec<u8>>)>>(4);
            scope.spawn(move || {
                for chunk in blocks.chunks(4096) {
                    if tx.send(chunk.iter().map(encode).collect()).is_err() {
                        return;
                    }
                }
            });
            self.put(rx.into_iter().flatten(), allow)
        })
    }

    /// Inserts (`Some` value) or deletes (`None`) rows in one transaction.
    fn put(
        &mut self,
        blocks: impl Iterator<Item = (Key, Option<Vec<u8>>)>,
        allow: impl Iterator<Item = (Key, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let r = self.try_put(blocks, allow);
        if r.is_err() {
            self.db = None;
        }
        r
    }

    fn try_put(
        &mut self,
        blocks: impl Iterator<Item = (Key, Option<Vec<u8>>)>,
        allow: impl Iterator<Item = (Key, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let db = self.db()?;
        let txn = db.begin_write().map_err(|e| db_err(&path, "writing", e))?;
        for (table, rows) in [
            (BLOCKS, Box::new(blocks) as Box<dyn Iterator<Item = _>>),
            (ALLOW, Box::new(allow)),
        ] {
            let mut t = txn
                .open_table(table)
                .map_err(|e| db_err(&path, "writing", e))?;
            for (k, v) in rows {
                match v {
                    Some(v) => t.insert(k.as_slice(), v.as_slice()).map(drop),
                    None => t.remove(k.as_slice()).map(drop),
                }
                .map_err(|e| db_err(&path, "writing", e))?;
            }
        }
        txn.commit().map_err(|e| db_err(&path, "committing", e))
    }
}

fn db_err(path: &Path, what: &str, e: impl Into<redb::Error>) -> StoreError {
    StoreError::Db {
        path: path.to_owned(),
        what: what.to_owned(),
        source: Box::new(e.into()),
    }
}

/// A row's key and value.
type Row = (Vec<u8>, Vec<u8>);

/// The block rows of layout 2 (JSON), in this layout.
fn json_rows(path: &Path, blocks: &redb::Table<'_, &[u8], &[u8]>) -> Result<Vec<Row>, StoreError> {
    let mut rows = Vec::new();
    for row in blocks.iter().map_err(|e| db_err(path, "reading", e))? {
        let (k, v) = row.map_err(|e| db_err(path, "reading", e))?;
        let members: Vec<BlockEntry> =
            serde_json::from_slice(v.value()).map_err(|e| StoreError::Format {
                path: path.to_owned(),
                message: format!(
                    "block row {:x?} (layout {FORMAT_JSON_ROWS}): {e}",
                    k.value()
                ),
            })?;
        rows.push((k.value().to_vec(), encode_members(&members)));
    }
    Ok(rows)
}

/// Whether `path` is a JSON state file (v1): its first byte is `{`.
fn is_json(path: &Path) -> bool {
    use std::io::Read;
    let mut b = [0u8; 1];
    fs::File::open(path)
        .and_then(|mut f| f.read(&mut b))
        .is_ok_and(|n| n == 1 && b[0] == b'{')
}

/// Converts the JSON state file at `json` into a store at `path` (which
/// may be the same file); the JSON file is kept as `NAME.v1.json`. A JSON
/// file that cannot be read stops here, untouched.
fn migrate(json: &Path, path: &Path) -> Result<(), StoreError> {
    let state = State::load_json(json)?.unwrap_or_default();
    let name = path
        .file_name()
        .map_or("state".into(), |n| n.to_string_lossy());
    let tmp = path.with_file_name(format!(".{name}.converting"));
    let _ = fs::remove_file(&tmp);
    {
        let mut store = Store {
            path: tmp.clone(),
            db: None,
        };
        store.read()?;
        let mut blocks: Vec<(Key, &BlockEntry)> = state
            .blocks
            .iter()
            .filter(|e| e.origin != Origin::Config)
            .map(|e| (block_key(&e.key()), e))
            .collect();
        blocks.sort_unstable_by_key(|(k, _)| *k);
        let mut allow: Vec<(Key, &AllowEntry)> = state
            .allow
            .iter()
            .filter(|e| e.origin != Origin::Config)
            .map(|e| (prefix_key(&e.prefix, 0), e))
            .collect();
        allow.sort_unstable_by_key(|(k, _)| *k);
        store.put(
            blocks
                .into_iter()
                .map(|(k, e)| (k, Some(encode_members(std::slice::from_ref(e))))),
            allow.into_iter().map(|(k, e)| (k, Some(to_json(e)))),
        )?;
    }
    let json_name = json
        .file_name()
        .map_or("state".into(), |n| n.to_string_lossy());
    let backup = json.with_file_name(format!("{json_name}.v1.json"));
    fs::rename(json, &backup).map_err(|e| StateError::Io {
        path: backup.clone(),
        message: format!("keeping the JSON state file: {e}"),
    })?;
    fs::rename(&tmp, path).map_err(|e| StateError::Io {
        path: path.to_owned(),
        message: format!("putting the converted store in place: {e}"),
    })?;
    tracing::info!(
        "{}: converted {} blocks and {} allow entries from the JSON state file to the store; \
         the JSON file is kept as {}",
        path.display(),
        state.blocks.len(),
        state.allow.len(),
        backup.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironpost_core::RuleAction;
    use ironpost_policy::OnConfigConflict;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ironpost-store-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn entry(p: &str, origin: Origin, expires: Option<u64>) -> BlockEntry {
        let mut e = BlockEntry::source(p.parse().unwrap(), RuleAction::Drop, origin, 1);
        e.expires_ms = expires;
        e.reason = "because".into();
        e
    }

    fn prefixes(s: &State) -> Vec<String> {
        let mut v: Vec<String> = s.blocks.iter().map(|e| e.prefix.to_string()).collect();
        v.sort();
        v
    }

    /// Runs a bulk write: `feed` sends to the writer, then `end` commits
    /// or abandons it; returns the outcome and the store.
    fn bulk(store: Store, feed: impl FnOnce(&bulk::BulkWriter), commit: bool) -> bulk::Finished {
        let (tx, rx) = std::sync::mpsc::channel();
        let w = bulk::BulkWriter::start(store, move |f| tx.send(f).unwrap());
        feed(&w);
        if commit {
            w.commit()
        } else {
            w.abandon()
        }
        rx.recv().unwrap()
    }

    #[test]
    fn a_bulk_write_is_stored_whole_on_commit_and_not_at_all_otherwise() {
        let dir = tmpdir("bulk");
        let path = dir.join("state.redb");
        let (store, _) = Store::open(&path, None).unwrap();
        let a = entry("192.0.2.1", Origin::Manual, None);
        let b = entry("192.0.2.2", Origin::Manual, Some(9));
        let rows = |w: &bulk::BulkWriter| {
            assert!(w.rows(vec![(a.key(), vec![a.clone()])]));
            assert!(w.same(vec![b.key()], vec![b.clone()]));
        };
        // Abandoned: nothing of it is stored.
        let f = bulk(store, rows, false);
        assert!(
            matches!(f.result, Err(StoreError::Abandoned)),
            "{:?}",
            f.result
        );
        drop(f.store);
        let (store, state) = Store::open(&path, None).unwrap();
        assert!(state.blocks.is_empty(), "{:?}", state.blocks);
        // Committed: all of it, and a later chunk's empty row deletes.
        let f = bulk(store, rows, true);
        f.result.unwrap();
        drop(f.store);
        let (store, state) = Store::open(&path, None).unwrap();
        assert_eq!(prefixes(&state), ["192.0.2.1", "192.0.2.2"]);
        assert_eq!(state.blocks[1].expires_ms, Some(9));
        let f = bulk(
            store,
            |w| assert!(w.rows(vec![(a.key(), Vec::new())])),
            true,
        );
        f.result.unwrap();
        drop(f.store);
        let (_, state) = Store::open(&path, None).unwrap();
        assert_eq!(prefixes(&state), ["192.0.2.2"]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn only_changed_rows_are_written_and_config_entries_never() {
        let dir = tmpdir("rows");
        let path = dir.join("sub/state.redb");
        let (mut store, state) = Store::open(&path, None).unwrap();
        assert!(state.blocks.is_empty() && state.allow.is_empty());
        assert_eq!(
            fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let mut policy = Policy::new(100, 10);
        policy
            .upsert_blocks(
                vec![
                    entry("10.0.0.1", Origin::Manual, Some(5_000)),
                    entry("2001:db8::/32", Origin::Auto, None),
                    entry("10.0.0.2", Origin::Config, None),
                ],
                OnConfigConflict::Skip,
                None,
                &mut |_| true,
            )
            .unwrap();
        let changes = policy.take_changes();
        assert_eq!(changes.blocks.len(), 3);
        store.write(&policy, &changes).unwrap();
        assert!(policy.take_changes().is_empty());
        drop(store);
        let (mut store, back) = Store::open(&path, None).unwrap();
        assert_eq!(prefixes(&back), ["10.0.0.1", "2001:db8::/32"]);
        assert_eq!(back.blocks[0].reason, "because");

        // A removal is one deleted row; the rest stays.
        let gone: RuleKey = (ironpost_core::Direction::Src, "10.0.0.1".parse().unwrap());
        policy.remove_blocks(&[gone], false, None).unwrap();
        let changes = policy.take_changes();
        assert_eq!(changes.blocks.len(), 1);
        store.write(&policy, &changes).unwrap();
        drop(store);
        let (_, back) = Store::open(&path, None).unwrap();
        assert_eq!(prefixes(&back), ["2001:db8::/32"]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_field_of_every_membership_comes_back() {
        let mut cond = entry("203.0.113.0/24", Origin::Auto, Some(9_000));
        cond.direction = Direction::Dst;
        cond.condition = Some(Condition {
            protocol: L4Protocol::Tcp,
            dst_port: Some(PortRange {
                first: 80,
                last: 90,
            }),
            syn_only: true,
            rst_only: false,
        });
        cond.id = Some("alert-7".into());
        cond.action = RuleAction::Monitor;
        let mut other = entry("203.0.113.0/24", Origin::Manual, None);
        other.direction = Direction::Dst;
        other.list = ListName::parse("feed-1").unwrap();
        let members = vec![cond, other];
        let key = block_key(&members[0].key());
        assert_eq!(
            decode_members(&key, &encode_members(&members)).unwrap(),
            members
        );
        assert!(decode_members(&key, b"\x01").is_err());
        // A row that claims 2^35 memberships is an error, not an allocation.
        assert!(decode_members(&key, &[0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert!(decode_members(&[9u8; 19], &encode_members(&members)).is_err());
    }

    #[test]
    fn a_store_with_json_rows_is_converted_when_opened() {
        let dir = tmpdir("layout2");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.redb");
        let e = entry("192.0.2.9", Origin::Manual, Some(7_000));
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("format", FORMAT_JSON_ROWS)
                .unwrap();
            txn.open_table(BLOCKS)
                .unwrap()
                .insert(block_key(&e.key()).as_slice(), to_json(&[&e]).as_slice())
                .unwrap();
            txn.open_table(ALLOW).unwrap();
            txn.commit().unwrap();
        }
        let (_, state) = Store::open(&path, None).unwrap();
        assert_eq!(state.blocks, std::slice::from_ref(&e));
        let (_, again) = Store::open(&path, None).unwrap();
        assert_eq!(again.blocks, [e]);
        let db = Database::create(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let format = txn.open_table(META).unwrap().get("format").unwrap();
        assert_eq!(format.map(|v| v.value()), Some(FORMAT));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_json_state_file_is_converted_once_and_kept() {
        let dir = tmpdir("json");
        fs::create_dir_all(&dir).unwrap();
        let json = dir.join("state.json");
        let e = serde_json::to_string(&entry("192.0.2.7", Origin::Manual, None)).unwrap();
        fs::write(
            &json,
            format!("{{\"version\":1,\"saved_ms\":1,\"blocks\":[{e}],\"allow\":[]}}"),
        )
        .unwrap();
        // In place: the same path becomes the store.
        let (_, state) = Store::open(&json, None).unwrap();
        assert_eq!(prefixes(&state), ["192.0.2.7"]);
        assert!(!is_json(&json), "the file is the store now");
        assert!(dir.join("state.json.v1.json").exists());
        let (_, again) = Store::open(&json, None).unwrap();
        assert_eq!(prefixes(&again), ["192.0.2.7"]);

        // From the old default path into a new store.
        let old = dir.join("old.json");
        fs::copy(dir.join("state.json.v1.json"), &old).unwrap();
        let (_, state) = Store::open(&dir.join("new.redb"), Some(&old)).unwrap();
        assert_eq!(prefixes(&state), ["192.0.2.7"]);
        assert!(!old.exists() && dir.join("old.json.v1.json").exists());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unreadable_files_are_errors_and_left_untouched() {
        let dir = tmpdir("bad");
        fs::create_dir_all(&dir).unwrap();
        let json = dir.join("state.json");
        let bad = "{\"version\":1,\"saved_ms\":0,\n\"blocks\":[{\"prefix\":\"10.0.0.300\"}]}";
        fs::write(&json, bad).unwrap();
        let err = Store::open(&json, None).err().unwrap().to_string();
        assert!(err.contains("state.json:2:"), "{err}");
        assert!(err.contains("left as it is"), "{err}");
        assert_eq!(fs::read_to_string(&json).unwrap(), bad);

        let junk = dir.join("junk.redb");
        fs::write(&junk, vec![7u8; 8192]).unwrap();
        let err = Store::open(&junk, None).err().unwrap().to_string();
        assert!(err.contains("junk.redb"), "{err}");
        assert_eq!(fs::read(&junk).unwrap(), vec![7u8; 8192]);
        fs::remove_dir_all(dir).unwrap();
    }
}
