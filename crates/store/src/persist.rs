//! The embedded backend's file: a redb database with the current values and the history window.
//!
//! One redb write transaction per batch of writes; redb's default durability syncs the file
//! before `commit` returns, so a batch is acknowledged only once it is on disk. redb also locks
//! the file, so a second process cannot open it.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition};

use crate::codec::{decode_event, decode_value, encode_event, encode_value};
use crate::mvcc::{INITIAL_REVISION, Mvcc};
use crate::{Event, KeyValue, Result, Revision, StoreError};

const VALUES: TableDefinition<&str, &[u8]> = TableDefinition::new("values_v1");
const HISTORY: TableDefinition<i64, &[u8]> = TableDefinition::new("history_v1");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta_v1");
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";

pub(crate) struct RedbFile {
    db: Database,
}

impl RedbFile {
    /// Opens (or creates) the file and loads its state; damage is reported with the file's path.
    pub(crate) fn open(path: &Path) -> Result<(Self, Mvcc)> {
        let fail = |detail: String| StoreError::Open {
            path: PathBuf::from(path),
            detail,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("creating directory {}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| fail(describe_open_error(e)))?;
        let txn = db.begin_write().map_err(|e| fail(e.to_string()))?;
        {
            txn.open_table(VALUES).map_err(|e| fail(e.to_string()))?;
            txn.open_table(HISTORY).map_err(|e| fail(e.to_string()))?;
            txn.open_table(META).map_err(|e| fail(e.to_string()))?;
        }
        txn.commit().map_err(|e| fail(e.to_string()))?;
        let state = load(&db).map_err(fail)?;
        Ok((Self { db }, state))
    }

    /// Writes a batch in one transaction and returns once it is durable.
    pub(crate) fn commit(&mut self, events: &[Event], compact_to: Option<Revision>) -> Result<()> {
        let txn = self.db.begin_write().map_err(StoreError::backend)?;
        {
            let mut values = txn.open_table(VALUES).map_err(StoreError::backend)?;
            let mut history = txn.open_table(HISTORY).map_err(StoreError::backend)?;
            let mut meta = txn.open_table(META).map_err(StoreError::backend)?;
            for event in events {
                history
                    .insert(event.revision, encode_event(event).as_slice())
                    .map_err(StoreError::backend)?;
                match &event.value {
                    Some(kv) => values.insert(&*event.key, encode_value(kv).as_slice()),
                    None => values.remove(&*event.key),
                }
                .map_err(StoreError::backend)?;
            }
            if let Some(last) = events.last() {
                meta.insert(META_REVISION, last.revision)
                    .map_err(StoreError::backend)?;
            }
            if let Some(revision) = compact_to {
                meta.insert(META_COMPACTED, revision)
                    .map_err(StoreError::backend)?;
                history
                    .retain_in(..revision, |_, _| false)
                    .map_err(StoreError::backend)?;
            }
        }
        txn.commit().map_err(StoreError::backend)
    }
}

fn describe_open_error(error: DatabaseError) -> String {
    match error {
        DatabaseError::DatabaseAlreadyOpen => {
            "it is already open in another process (is another petset using this data directory?)"
                .into()
        }
        other => {
            format!("{other} (the file is damaged or is not a petset store; it was left untouched)")
        }
    }
}

fn load(db: &Database) -> Result<Mvcc, String> {
    let read = db.begin_read().map_err(|e| e.to_string())?;
    let meta = read.open_table(META).map_err(|e| e.to_string())?;
    let meta_value = |name: &str| -> Result<Option<i64>, String> {
        Ok(meta
            .get(name)
            .map_err(|e| e.to_string())?
            .map(|guard| guard.value()))
    };
    let revision = meta_value(META_REVISION)?.unwrap_or(INITIAL_REVISION);
    let compacted = meta_value(META_COMPACTED)?.unwrap_or(0);

    let mut current: BTreeMap<Arc<str>, KeyValue> = BTreeMap::new();
    let values = read.open_table(VALUES).map_err(|e| e.to_string())?;
    for row in values.iter().map_err(|e| e.to_string())? {
        let (key, value) = row.map_err(|e| e.to_string())?;
        let kv = decode_value(key.value(), value.value())
            .map_err(|e| format!("value of key {:?}: {e}", key.value()))?;
        current.insert(kv.key.clone(), kv);
    }

    let mut history = VecDeque::new();
    let log = read.open_table(HISTORY).map_err(|e| e.to_string())?;
    for row in log.iter().map_err(|e| e.to_string())? {
        let (revision, event) = row.map_err(|e| e.to_string())?;
        history.push_back(decode_event(revision.value(), event.value())?);
    }
    Mvcc::restore(current, history, revision, compacted)
}
