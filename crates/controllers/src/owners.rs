//! What the Deployment, ReplicaSet and ReplicationController controllers share in wiring: the
//! selectors of the owners seen, for routing what they own (and the orphans they may adopt) to
//! the owners' keys, and for queueing every owner again after a relist or on the resync timer.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Client, Resource};
use petset_api::selector::LabelSelector;
use serde_json::Value;

use crate::cache::{Cache, Cached, Change, key_of};
use crate::queue::{Queue, resync_every};

pub(crate) type Key = (String, String);

/// The selector of every owner seen, by key.
#[derive(Default)]
pub(crate) struct Selectors(Mutex<HashMap<Key, LabelSelector>>);

impl Selectors {
    /// Follows every owner `K` into a cache: each change remembers (or forgets) its selector
    /// and queues it; a relist queues every owner known.
    pub(crate) fn follow_owners<K: Cached>(
        self: &Arc<Self>,
        helpers: &mut tokio::task::JoinSet<()>,
        client: &Client,
        queue: &Arc<Queue<Key>>,
        selector: fn(&K) -> Option<LabelSelector>,
    ) -> Cache<K> {
        let (known, queue) = (self.clone(), queue.clone());
        Cache::follow_all(helpers, client, move |change: Change<'_, K>| match change {
            Change::Applied(owner) | Change::Deleted(owner) => {
                let key = key_of(owner);
                if let Ok(mut selectors) = known.0.lock() {
                    if matches!(change, Change::Applied(_)) {
                        selectors.insert(key.clone(), selector(owner).unwrap_or_default());
                    } else {
                        selectors.remove(&key);
                    }
                }
                queue.add(key);
            }
            Change::Relisted => known.queue_all(&queue),
        })
    }

    /// Follows every owned `K` into a cache: each change queues the owners `owners` names for
    /// it; a relist queues every owner known.
    pub(crate) fn follow_owned<K: Cached>(
        self: &Arc<Self>,
        helpers: &mut tokio::task::JoinSet<()>,
        client: &Client,
        queue: &Arc<Queue<Key>>,
        owners: fn(&Self, &K) -> Vec<Key>,
    ) -> Cache<K> {
        let (known, queue) = (self.clone(), queue.clone());
        Cache::follow_all(helpers, client, move |change: Change<'_, K>| match change {
            Change::Applied(owned) | Change::Deleted(owned) => {
                for key in owners(&known, owned) {
                    queue.add(key);
                }
            }
            Change::Relisted => known.queue_all(&queue),
        })
    }

    /// Queues every owner known every `period`.
    pub(crate) fn resync_every(
        self: &Arc<Self>,
        helpers: &mut tokio::task::JoinSet<()>,
        queue: &Arc<Queue<Key>>,
        period: Duration,
    ) {
        let (known, queue) = (self.clone(), queue.clone());
        resync_every(helpers, period, move || known.queue_all(&queue));
    }

    fn queue_all(&self, queue: &Queue<Key>) {
        let keys: Vec<Key> = self
            .0
            .lock()
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default();
        for key in keys {
            queue.add(key);
        }
    }

    /// The owner controlling `object` when `is_owner` accepts its controller reference (none
    /// when another kind controls it), or, for an orphan, every owner of its namespace whose
    /// selector matches it.
    pub(crate) fn owners_of(
        &self,
        object: &impl Resource,
        is_owner: impl Fn(&OwnerReference) -> bool,
    ) -> Vec<Key> {
        let namespace = object.meta().namespace.clone().unwrap_or_default();
        if let Some(owner) = object
            .meta()
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
        {
            return if is_owner(owner) {
                vec![(namespace, owner.name.clone())]
            } else {
                Vec::new()
            };
        }
        let labels = object.meta().labels.clone().unwrap_or_default();
        self.0
            .lock()
            .map(|known| {
                known
                    .iter()
                    .filter(|((ns, _), s)| *ns == namespace && selects(s, &labels))
                    .map(|(key, _)| key.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Whether a non-empty selector matches `labels` (an empty one selects nothing here).
pub(crate) fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels = serde_json::to_value(labels).ok();
    !selector.is_empty() && selector.matches(labels.as_ref().and_then(Value::as_object))
}
