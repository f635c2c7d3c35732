//! Watch-fed caches, as upstream's informers: controllers read objects from memory instead of
//! listing them from the API on every sync, and learn of every change as it is applied.
//!
//! A cache also knows the highest resourceVersion it has applied, so a controller can read its
//! own writes: after a write answered with resourceVersion R, waiting until the cache has seen R
//! guarantees the cache reflects that write (one watch delivers a kind's events in revision
//! order). petset's resourceVersions are store revisions, so they compare as numbers.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

/// The objects of one kind as the watch last showed them.
pub struct Cache<K: kube::Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    seen: Arc<tokio::sync::watch::Sender<u64>>,
}

impl<K: kube::Resource<DynamicType = ()> + 'static> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            seen: self.seen.clone(),
        }
    }
}

/// What a cache tells its owner about each change: the object as it is now, or as it was
/// when it was deleted.
pub enum Change<'a, K> {
    Applied(&'a K),
    Deleted(&'a K),
    /// The watch started over and the cache was rebuilt: deletions may have been missed.
    Relisted,
}

/// The `(namespace, name)` key most controllers queue an object by (namespace empty for a
/// cluster-scoped one).
pub fn key_of<K: kube::Resource>(object: &K) -> (String, String) {
    (
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default(),
    )
}

/// The resourceVersion of an object as a number (0 when absent or not a number).
pub fn version_of<K: kube::Resource>(object: &K) -> u64 {
    object
        .meta()
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

/// What a cache can hold: an API object kube-runtime can watch.
pub trait Cached:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Cached for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

impl<K: Cached> Cache<K> {
    /// Starts following `api` in a task held by `helpers`; `changed` hears of every change after
    /// the cache has applied it.
    pub fn follow(
        helpers: &mut tokio::task::JoinSet<()>,
        api: Api<K>,
        config: watcher::Config,
        changed: impl Fn(Change<'_, K>) + Send + 'static,
    ) -> Self {
        let (store, writer) = reflector::store();
        let (seen, _) = tokio::sync::watch::channel(0u64);
        let seen = Arc::new(seen);
        let events = watcher(api, config).default_backoff();
        let advance = seen.clone();
        helpers.spawn(async move {
            let mut events = reflector::reflector(writer, events).boxed();
            while let Some(event) = events.next().await {
                let event = match event {
                    Ok(event) => event,
                    Err(error) => {
                        tracing::debug!(%error, kind = %K::kind(&()), "watch error");
                        continue;
                    }
                };
                let (object, change) = match &event {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                        (Some(o), Change::Applied(o))
                    }
                    watcher::Event::Delete(o) => (Some(o), Change::Deleted(o)),
                    watcher::Event::InitDone => (None, Change::Relisted),
                    watcher::Event::Init => continue,
                };
                if let Some(object) = object {
                    let version = version_of(object);
                    advance.send_if_modified(|seen| {
                        let newer = version > *seen;
                        if newer {
                            *seen = version;
                        }
                        newer
                    });
                }
                changed(change);
            }
        });
        Self { store, seen }
    }

    /// Follows every `K` of the cluster (all namespaces, no selector), as `follow`.
    pub fn follow_all(
        helpers: &mut tokio::task::JoinSet<()>,
        client: &kube::Client,
        changed: impl Fn(Change<'_, K>) + Send + 'static,
    ) -> Self {
        Self::follow(
            helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            changed,
        )
    }

    /// Follows every `K` of the cluster into a cache, each change queueing the keys `keys`
    /// names for it; a relist queues nothing (for controllers that resync on a timer instead).
    pub fn follow_keys<Q, I>(
        helpers: &mut tokio::task::JoinSet<()>,
        client: &kube::Client,
        queue: &Arc<crate::queue::Queue<Q>>,
        keys: impl Fn(&K) -> I + Send + 'static,
    ) -> Self
    where
        Q: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
        I: IntoIterator<Item = Q>,
    {
        let queue = queue.clone();
        Self::follow_all(helpers, client, move |change| {
            if let Change::Applied(object) | Change::Deleted(object) = change {
                for key in keys(object) {
                    queue.add(key);
                }
            }
        })
    }

    /// Follows every `K` of the cluster into a cache, each change queueing the keys `keys`
    /// names for it, and `all` after a relist (when deletions may have been missed): the
    /// wiring every keyed controller starts with.
    pub fn follow_into<Q>(
        helpers: &mut tokio::task::JoinSet<()>,
        client: &kube::Client,
        queue: &Arc<crate::queue::Queue<Q>>,
        keys: fn(&K) -> Vec<Q>,
        all: Q,
    ) -> Self
    where
        Q: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
    {
        let queue = queue.clone();
        Self::follow_all(helpers, client, move |change| match change {
            Change::Applied(object) | Change::Deleted(object) => {
                for key in keys(object) {
                    queue.add(key);
                }
            }
            Change::Relisted => queue.add(all.clone()),
        })
    }

    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// The cached object `name` of `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.store
            .get(&reflector::ObjectRef::new(name).within(namespace))
    }

    /// The cached object `name` of a cluster-scoped kind.
    pub fn get_cluster_scoped(&self, name: &str) -> Option<Arc<K>> {
        self.store.get(&reflector::ObjectRef::new(name))
    }

    /// The uids of every cached object, to forget what is remembered of the ones gone.
    pub fn uids(&self) -> std::collections::HashSet<String> {
        self.store
            .state()
            .iter()
            .filter_map(|o| o.meta().uid.clone())
            .collect()
    }

    /// The cached objects of one namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.store
            .state()
            .into_iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
            .collect()
    }

    /// Waits for the first complete list.
    pub async fn ready(&self) {
        let _ = self.store.wait_until_ready().await;
    }

    /// Waits until the cache has applied resourceVersion `version` (or anything later), for at
    /// most `timeout`; says whether it has. A timeout is not an error: readers of a stale cache
    /// must be safe anyway (writes are guarded by names, uids and resourceVersions), the wait
    /// only spares them work based on a view older than their own writes.
    pub async fn caught_up(&self, version: u64, timeout: Duration) -> bool {
        let mut seen = self.seen.subscribe();
        tokio::time::timeout(timeout, seen.wait_for(|seen| *seen >= version))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}
