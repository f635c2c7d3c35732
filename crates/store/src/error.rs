//! The store's error type: one variant for each way a caller reacts differently.

use std::path::PathBuf;

use crate::{KeyValue, Revision};

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The key does not exist.
    #[error("key {key:?} not found")]
    NotFound { key: String },

    /// A create found the key already there.
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String },

    /// An update or delete expected another revision; `current` is the value as it is now.
    #[error("key {key:?} was modified: expected revision {expected}, found {}", current.mod_revision)]
    Conflict {
        key: String,
        expected: Revision,
        current: Box<KeyValue>,
    },

    /// The revision asked for is older than the compaction point.
    #[error("revision {requested} has been compacted{}", compacted.map(|c| format!(" (history starts at {c})")).unwrap_or_default())]
    Compacted {
        requested: Revision,
        compacted: Option<Revision>,
    },

    /// The revision asked for has not been written yet.
    #[error("revision {requested} is in the future (current revision is {current})")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },

    /// The store's file could not be opened: it is damaged, from another program, or locked.
    #[error("cannot open store file {path}: {detail}")]
    Open { path: PathBuf, detail: String },

    /// A `--store` value that names no backend.
    #[error("{0}")]
    InvalidSpec(String),

    /// The store has been closed.
    #[error("store is closed")]
    Closed,

    /// The backend failed (disk, database, network). A local write that fails this way did not
    /// happen; over a broken network link to etcd, it may have.
    #[error("store backend failed: {0}")]
    Backend(String),
}

impl StoreError {
    pub(crate) fn backend(error: impl std::fmt::Display) -> Self {
        Self::Backend(error.to_string())
    }
}
