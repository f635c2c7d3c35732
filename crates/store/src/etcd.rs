//! The etcd v3 backend: the same contract over an existing etcd cluster, for users who have
//! outgrown one machine.
//!
//! Each write is one etcd transaction with the same guard kube-apiserver uses (create-if-absent,
//! update-if-mod-revision-matches), so revisions, compaction and watch are etcd's own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, PutOptions,
    Txn, TxnOp, TxnOpResponse, TxnResponse, WatchOptions,
};
use futures::StreamExt;

use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Result, Revision, Store, StoreError,
    WatchBatch, WatchStream,
};

/// A store on an etcd v3 cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
}

impl EtcdStore {
    /// Connects to the given endpoints (`http://host:port`).
    pub async fn connect(endpoints: &[String]) -> Result<Self> {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| {
                StoreError::Backend(format!("connecting to etcd at {endpoints:?}: {e}"))
            })?;
        Ok(Self { client })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.client.kv_client().txn(txn).await.map_err(map_error)
    }

    /// The current value of `key` from the failure branch of a guarded transaction.
    fn current_from(response: &TxnResponse, key: &str) -> Result<KeyValue> {
        response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(convert_kv),
                _ => None,
            })
            .unwrap_or_else(|| Err(StoreError::NotFound { key: key.into() }))
    }
}

fn revision_of(response: &TxnResponse) -> Result<Revision> {
    response
        .header()
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::backend("etcd answered without a header"))
}

fn convert_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = kv
        .key_str()
        .map_err(|_| StoreError::backend("etcd holds a key that is not UTF-8"))?;
    Ok(KeyValue {
        key: Arc::from(key),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

/// etcd reports compaction and future revisions only in the message of its gRPC status.
fn map_error(error: etcd_client::Error) -> StoreError {
    let text = error.to_string();
    if text.contains("required revision has been compacted") {
        StoreError::Compacted {
            requested: 0,
            compacted: None,
        }
    } else if text.contains("required revision is a future revision") {
        StoreError::FutureRevision {
            requested: 0,
            current: 0,
        }
    } else {
        StoreError::Backend(format!("etcd: {text}"))
    }
}

/// Fills in the revision the caller asked for, which etcd's messages leave out.
fn with_requested(error: StoreError, revision: Revision) -> StoreError {
    match error {
        StoreError::Compacted { compacted, .. } => StoreError::Compacted {
            requested: revision,
            compacted,
        },
        StoreError::FutureRevision { current, .. } => StoreError::FutureRevision {
            requested: revision,
            current,
        },
        other => other,
    }
}

/// The smallest key greater than every key with this prefix, as etcd's range end.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn start_key(prefix: &str) -> Vec<u8> {
    if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        let response = self
            .client
            .kv_client()
            .get("/", Some(GetOptions::new().with_count_only()))
            .await
            .map_err(map_error)?;
        response
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| StoreError::backend("etcd answered without a header"))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let response = self
            .client
            .kv_client()
            .get(key, None)
            .await
            .map_err(map_error)?;
        response.kvs().first().map(convert_kv).transpose()
    }

    async fn list(&self, options: ListOptions) -> Result<ListResult> {
        let start = match &options.start {
            Some(start) if start.as_str() > options.prefix.as_str() => start.as_bytes().to_vec(),
            _ => start_key(&options.prefix),
        };
        let mut get = GetOptions::new().with_range(prefix_end(&options.prefix));
        if let Some(limit) = options.limit.filter(|l| *l > 0) {
            get = get.with_limit(limit as i64);
        }
        let requested = options.revision.unwrap_or(0);
        if requested > 0 {
            get = get.with_revision(requested);
        }
        let response = self
            .client
            .kv_client()
            .get(start, Some(get))
            .await
            .map_err(|e| with_requested(map_error(e), requested))?;
        let items = response
            .kvs()
            .iter()
            .map(convert_kv)
            .collect::<Result<Vec<_>>>()?;
        let header_revision = response.header().map_or(0, |h| h.revision());
        Ok(ListResult {
            remaining: (response.count() as u64).saturating_sub(items.len() as u64),
            items,
            revision: if requested > 0 {
                requested
            } else {
                header_revision
            },
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.into() });
        }
        let revision = revision_of(&response)?;
        Ok(KeyValue {
            key: Arc::from(key),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(
                key,
                value.to_vec(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded() {
            let current = Self::current_from(&response, key)?;
            return Err(StoreError::Conflict {
                key: key.into(),
                expected,
                current: Box::new(current),
            });
        }
        let create_revision = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| StoreError::backend("etcd update returned no previous value"))?;
        Ok(KeyValue {
            key: Arc::from(key),
            value,
            create_revision,
            mod_revision: revision_of(&response)?,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<Event> {
        let guard = match expected {
            Some(revision) => Compare::mod_revision(key, CompareOp::Equal, revision),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([guard])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let response = self.txn(txn).await?;
        if !response.succeeded() {
            let current = Self::current_from(&response, key)?;
            return Err(StoreError::Conflict {
                key: key.into(),
                expected: expected.unwrap_or(0),
                current: Box::new(current),
            });
        }
        let prev = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().map(convert_kv),
                _ => None,
            })
            .transpose()?
            .ok_or_else(|| StoreError::NotFound { key: key.into() })?;
        Ok(Event {
            revision: revision_of(&response)?,
            kind: EventKind::Deleted,
            key: prev.key.clone(),
            value: None,
            prev: Some(prev),
        })
    }

    async fn watch(&self, prefix: &str, start: Revision) -> Result<WatchStream> {
        let mut options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_prev_key()
            .with_progress_notify();
        if start > 0 {
            options = options.with_start_revision(start);
        }
        let mut stream = self
            .client
            .watch_client()
            .watch(start_key(prefix), Some(options))
            .await
            .map_err(map_error)?;
        // etcd confirms the watch first, or cancels it at once when `start` is compacted.
        match stream.message().await.map_err(map_error)? {
            Some(response) if response.canceled() => {
                return Err(canceled(&response, start));
            }
            Some(_) => {}
            None => return Err(StoreError::backend("etcd closed the watch at once")),
        }
        let batches = stream.map(move |response| {
            let response = response.map_err(map_error)?;
            if response.canceled() {
                return Err(canceled(&response, start));
            }
            let events = response
                .events()
                .iter()
                .map(convert_event)
                .collect::<Result<Vec<_>>>()?;
            let revision = match events.last() {
                Some(event) => event.revision,
                None => response.header().map_or(0, |h| h.revision()),
            };
            Ok(WatchBatch { events, revision })
        });
        Ok(Box::pin(batches))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.client
            .kv_client()
            .compact(revision, None)
            .await
            .map(|_| ())
            .map_err(|e| with_requested(map_error(e), revision))
    }

    /// Nothing to flush: etcd acknowledged every write once its cluster had it. The client's
    /// connections close when the store is dropped.
    async fn close(&self) {}
}

fn canceled(response: &etcd_client::WatchResponse, start: Revision) -> StoreError {
    if response.compact_revision() > 0 {
        StoreError::Compacted {
            requested: start,
            compacted: Some(response.compact_revision()),
        }
    } else {
        StoreError::Backend(format!(
            "etcd canceled the watch: {}",
            response.cancel_reason()
        ))
    }
}

fn convert_event(event: &etcd_client::Event) -> Result<Event> {
    let prev = event.prev_kv().map(convert_kv).transpose()?;
    match event.event_type() {
        EventType::Put => {
            let kv = event
                .kv()
                .map(convert_kv)
                .transpose()?
                .ok_or_else(|| StoreError::backend("etcd put event without a value"))?;
            let kind = if kv.create_revision == kv.mod_revision {
                EventKind::Created
            } else {
                EventKind::Updated
            };
            Ok(Event {
                revision: kv.mod_revision,
                kind,
                key: kv.key.clone(),
                value: Some(kv),
                prev,
            })
        }
        EventType::Delete => {
            let deleted = event
                .kv()
                .ok_or_else(|| StoreError::backend("etcd delete event without a key"))?;
            let key: Arc<str> = Arc::from(
                deleted
                    .key_str()
                    .map_err(|_| StoreError::backend("etcd holds a key that is not UTF-8"))?,
            );
            Ok(Event {
                revision: deleted.mod_revision(),
                kind: EventKind::Deleted,
                key,
                value: None,
                prev,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
