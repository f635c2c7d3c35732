//! A revisioned key-value store with watch: the contract etcd (and kine) give kube-apiserver.
//!
//! Keys are strings, values are bytes; nothing here knows about Kubernetes. Every write bumps one
//! global revision, which the API server exposes as `resourceVersion`. Backends:
//!
//! - [`LocalStore::in_memory`]: for tests;
//! - [`LocalStore::open`]: embedded and durable (redb), with group commit;
//! - [`EtcdStore::connect`]: an existing etcd v3 cluster.
//!
//! All three pass the same battery (`tests/it/battery.rs`).

mod codec;
mod compactor;
mod error;
mod etcd;
mod local;
mod mvcc;
mod persist;

use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub use compactor::spawn_compactor;
pub use error::StoreError;
pub use etcd::EtcdStore;
pub use local::LocalStore;

/// A point in the store's history. Every write increments it by one; 0 means "none" or "now".
pub type Revision = i64;

/// Result type of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One stored value with the revisions that describe its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Arc<str>,
    pub value: Bytes,
    /// The revision of the write that created this key (in its current life).
    pub create_revision: Revision,
    /// The revision of the last write to this key.
    pub mod_revision: Revision,
}

/// What one write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
}

/// One write, as watchers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The revision of this write.
    pub revision: Revision,
    pub kind: EventKind,
    pub key: Arc<str>,
    /// The value after the write; `None` for [`EventKind::Deleted`].
    pub value: Option<KeyValue>,
    /// The value before the write; `None` for [`EventKind::Created`].
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The value an observer should see for this event: the new one, or the last one for a delete.
    pub fn object(&self) -> Option<&KeyValue> {
        self.value.as_ref().or(self.prev.as_ref())
    }
}

/// What to list: keys under `prefix`, in key order.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub prefix: String,
    /// Start at this key (inclusive) instead of at `prefix`; used to continue a paginated list.
    pub start: Option<String>,
    /// At most this many items; `None` or 0 for all.
    pub limit: Option<usize>,
    /// Read the state at this past revision; `None` or 0 for the current state.
    pub revision: Option<Revision>,
}

/// A page of a list.
#[derive(Debug, Clone, Default)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    /// The revision the list was read at: pass it back to read the next page consistently.
    pub revision: Revision,
    /// How many items under the prefix come after the returned ones.
    pub remaining: u64,
}

/// What a watch delivers: the matching events up to `revision`, in revision order.
///
/// A batch with no events is a progress report: every matching event up to `revision` has been
/// delivered (the API server turns it into a bookmark).
#[derive(Debug, Clone, Default)]
pub struct WatchBatch {
    pub events: Vec<Event>,
    pub revision: Revision,
}

/// A live watch. It ends with an error when it can no longer be continued (for example
/// [`StoreError::Compacted`] when it fell behind the compaction point), or when the store closes.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchBatch>> + Send>>;

/// The store contract. Writes are linearizable: once a write is acknowledged, every later read
/// and every watch sees it; on the durable backends it has also reached the disk.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The revision of the last write.
    async fn current_revision(&self) -> Result<Revision>;

    /// The current value of one key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys under a prefix, now or at a past revision, optionally paginated.
    async fn list(&self, options: ListOptions) -> Result<ListResult>;

    /// Writes a key that must not exist ([`StoreError::AlreadyExists`] otherwise).
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces a key whose last write was at `expected` ([`StoreError::Conflict`] with the
    /// current value otherwise, [`StoreError::NotFound`] when it does not exist).
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue>;

    /// Removes a key, if `expected` is given only when its last write was at that revision.
    /// Returns the delete event (its `prev` holds the removed value).
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Event>;

    /// Streams every write under `prefix` from `start` (inclusive) on: first from history, then
    /// live. `start` 0 means "from the next write". A compacted `start` fails with
    /// [`StoreError::Compacted`], either at once or as the stream's first item (etcd's way).
    async fn watch(&self, prefix: &str, start: Revision) -> Result<WatchStream>;

    /// Forgets history before `revision`: lists at and watches from older revisions then fail
    /// with [`StoreError::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Ends this process's use of the store at shutdown, once every write acknowledged before
    /// is durable: the local backends drain their writer and close the file (writes after it
    /// fail with [`StoreError::Closed`], watches end); etcd has nothing to flush. Closing twice
    /// is harmless.
    async fn close(&self);
}

/// How a store is chosen on the command line: `memory`, `embedded`, or `etcd://HOST:PORT[,…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Memory,
    Embedded,
    Etcd { endpoints: Vec<String> },
}

impl std::str::FromStr for StoreSpec {
    type Err = StoreError;

    fn from_str(spec: &str) -> Result<Self> {
        match spec {
            "memory" => Ok(Self::Memory),
            "embedded" => Ok(Self::Embedded),
            _ => {
                let Some(hosts) = spec.strip_prefix("etcd://") else {
                    return Err(StoreError::InvalidSpec(format!(
                        "unknown store {spec:?}: expected embedded, memory or etcd://HOST:PORT[,HOST:PORT…]"
                    )));
                };
                let endpoints: Vec<String> = hosts
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(|h| format!("http://{h}"))
                    .collect();
                if endpoints.is_empty() {
                    return Err(StoreError::InvalidSpec(format!(
                        "store {spec:?} names no etcd endpoint"
                    )));
                }
                Ok(Self::Etcd { endpoints })
            }
        }
    }
}

impl std::fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Embedded => f.write_str("embedded"),
            Self::Etcd { endpoints } => {
                let hosts: Vec<&str> = endpoints
                    .iter()
                    .map(|e| e.strip_prefix("http://").unwrap_or(e))
                    .collect();
                write!(f, "etcd://{}", hosts.join(","))
            }
        }
    }
}

/// The file the embedded backend keeps in a data directory.
pub const EMBEDDED_FILE: &str = "store.redb";

/// Opens the store a [`StoreSpec`] names; the embedded one lives in `data_dir`.
pub async fn open(spec: &StoreSpec, data_dir: &std::path::Path) -> Result<Arc<dyn Store>> {
    Ok(match spec {
        StoreSpec::Memory => Arc::new(LocalStore::in_memory()),
        StoreSpec::Embedded => Arc::new(LocalStore::open(&data_dir.join(EMBEDDED_FILE))?),
        StoreSpec::Etcd { endpoints } => Arc::new(EtcdStore::connect(endpoints).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_spec_parses_every_backend() {
        assert_eq!("memory".parse::<StoreSpec>().ok(), Some(StoreSpec::Memory));
        assert_eq!(
            "embedded".parse::<StoreSpec>().ok(),
            Some(StoreSpec::Embedded)
        );
        assert_eq!(
            "etcd://127.0.0.1:2379, 127.0.0.1:2380"
                .parse::<StoreSpec>()
                .ok(),
            Some(StoreSpec::Etcd {
                endpoints: vec![
                    "http://127.0.0.1:2379".into(),
                    "http://127.0.0.1:2380".into()
                ]
            })
        );
        assert!("etcd://".parse::<StoreSpec>().is_err());
        let spec: StoreSpec = "etcd://a:1,b:2".parse().expect("parses");
        assert_eq!(spec.to_string(), "etcd://a:1,b:2");
        assert!("sqlite".parse::<StoreSpec>().is_err());
    }
}
