//! The watch cache: one store watch over every object, each event decoded once and serialized
//! at most once, fanned out to every API watch (upstream's cacher does the same). A recent
//! window of events is kept so that a watch starting a little in the past is served from memory.
//!
//! Watches the cache cannot serve (too far back, or a watcher too slow to keep up) fall back to
//! a direct store watch, which replays history or answers 410 Gone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use petset_api::resources;
use petset_store::{EventKind, ListOptions, Revision, Store, StoreError};
use serde_json::Value;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::auth::RbacIndex;
use crate::registry::decode_at;

/// An object shared by every watcher that receives it, with its JSON made once.
#[derive(Clone, Debug)]
pub struct Shared {
    value: Arc<Value>,
    json: Arc<OnceLock<Bytes>>,
}

impl Shared {
    pub fn new(value: Value) -> Self {
        Self {
            value: Arc::new(value),
            json: Arc::new(OnceLock::new()),
        }
    }

    pub fn value(&self) -> &Value {
        &self.value
    }

    pub fn json(&self) -> Bytes {
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&*self.value).unwrap_or_default()))
            .clone()
    }
}

/// One store event, decoded: both sides carry the event's revision as resourceVersion.
#[derive(Debug)]
pub struct CachedEvent {
    pub revision: Revision,
    pub kind: EventKind,
    pub key: Arc<str>,
    pub new: Option<Shared>,
    pub old: Option<Shared>,
}

impl CachedEvent {
    /// Decodes a store event; `None` for keys outside the served types.
    pub fn decode(event: &petset_store::Event) -> Option<Self> {
        let resource = resources::find_by_key(&event.key)?;
        let side = |kv: &Option<petset_store::KeyValue>| {
            kv.as_ref()
                .and_then(|kv| decode_at(resource, &kv.value, event.revision).ok())
                .map(Shared::new)
        };
        Some(Self {
            revision: event.revision,
            kind: event.kind,
            key: event.key.clone(),
            new: side(&event.value),
            old: side(&event.prev),
        })
    }
}

/// What the cache broadcasts: the events of one store batch (none: a progress report).
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Arc<CachedEvent>>,
    pub revision: Revision,
}

/// How many recent events are kept for watches that start in the past.
const WINDOW: usize = 4096;
/// How many batches a watcher may fall behind before it is moved to a store watch.
const CHANNEL: usize = 1024;

struct Window {
    events: VecDeque<Arc<CachedEvent>>,
    /// Every event from this revision on (up to `revision`) is in `events`.
    complete_from: Revision,
    /// The last revision the cache has processed; 0 while it is not running.
    revision: Revision,
}

pub struct WatchCache {
    window: Mutex<Window>,
    sender: broadcast::Sender<Arc<Batch>>,
}

/// A watcher's starting point: the events it missed, then live batches.
pub struct Subscription {
    pub backlog: Vec<Arc<CachedEvent>>,
    pub live: broadcast::Receiver<Arc<Batch>>,
}

impl Default for WatchCache {
    fn default() -> Self {
        Self::new()
    }
}

impl WatchCache {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CHANNEL);
        Self {
            window: Mutex::new(Window {
                events: VecDeque::new(),
                complete_from: Revision::MAX,
                revision: 0,
            }),
            sender,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Subscribes from revision `from` (inclusive); `None` when the cache cannot serve it.
    pub fn subscribe(&self, from: Revision) -> Option<Subscription> {
        let window = self.lock();
        if window.revision == 0 || from < window.complete_from {
            return None;
        }
        let backlog = window
            .events
            .iter()
            .filter(|e| e.revision >= from)
            .cloned()
            .collect();
        Some(Subscription {
            backlog,
            live: self.sender.subscribe(),
        })
    }

    fn publish(&self, batch: Batch) {
        let mut window = self.lock();
        for event in &batch.events {
            window.events.push_back(event.clone());
        }
        while window.events.len() > WINDOW {
            if let Some(dropped) = window.events.pop_front() {
                window.complete_from = dropped.revision + 1;
            }
        }
        window.revision = window.revision.max(batch.revision);
        // Sent under the lock: a subscriber sees each event either in its backlog or live.
        let _ = self.sender.send(Arc::new(batch));
    }

    fn restart_at(&self, revision: Revision) {
        let mut window = self.lock();
        window.events.clear();
        window.complete_from = revision + 1;
        window.revision = revision;
    }

    fn stop(&self) {
        let mut window = self.lock();
        window.events.clear();
        window.revision = 0;
        window.complete_from = Revision::MAX;
    }
}

/// Feeds the cache (and `rbac`) from the store until the returned task is aborted.
pub fn spawn(
    cache: Arc<WatchCache>,
    store: Arc<dyn Store>,
    rbac: Arc<RbacIndex>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(error) = feed(&cache, &store, &rbac).await {
                tracing::warn!(%error, "watch cache lost its store watch; restarting");
            }
            cache.stop();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

async fn feed(
    cache: &WatchCache,
    store: &Arc<dyn Store>,
    rbac: &RbacIndex,
) -> Result<(), StoreError> {
    let start = store.current_revision().await?;
    let mut stream = store.watch("/registry/", start + 1).await?;
    load_rbac(store, rbac, start).await?;
    cache.restart_at(start);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let events: Vec<Arc<CachedEvent>> = batch
            .events
            .iter()
            .filter_map(CachedEvent::decode)
            .map(Arc::new)
            .collect();
        // Applied before anyone sees the batch: a client that watched its binding arrive is
        // authorized by it.
        for event in &events {
            apply_rbac(rbac, event);
        }
        cache.publish(Batch {
            events,
            revision: batch.revision,
        });
    }
    Ok(())
}

/// Loads the RBAC index from the store now, for a request that comes before the watch cache
/// has (or on a server that runs none).
pub(crate) async fn load_rbac_now(
    store: &Arc<dyn Store>,
    rbac: &RbacIndex,
) -> Result<(), StoreError> {
    let revision = store.current_revision().await?;
    load_rbac(store, rbac, revision).await
}

/// The RBAC objects as of `revision`, the one the store watch continues from.
async fn load_rbac(
    store: &Arc<dyn Store>,
    rbac: &RbacIndex,
    revision: Revision,
) -> Result<(), StoreError> {
    let mut objects = Vec::new();
    for plural in crate::auth::rbac::PLURALS {
        let Some(resource) = resources::find(crate::auth::rbac::GROUP, "v1", plural) else {
            continue;
        };
        let page = store
            .list(ListOptions {
                prefix: resource.list_prefix(None),
                revision: Some(revision),
                ..ListOptions::default()
            })
            .await?;
        for kv in &page.items {
            if let Ok(object) = decode_at(resource, &kv.value, revision) {
                objects.push((plural, object));
            }
        }
    }
    rbac.replace_at(
        revision,
        objects.iter().map(|(plural, object)| (*plural, object)),
    );
    Ok(())
}

fn apply_rbac(rbac: &RbacIndex, event: &CachedEvent) {
    let Some(resource) = resources::find_by_key(&event.key) else {
        return;
    };
    if resource.group != crate::auth::rbac::GROUP {
        return;
    }
    let new = match event.kind {
        EventKind::Deleted => None,
        _ => event.new.as_ref().map(Shared::value),
    };
    rbac.apply_at(
        event.revision,
        resource.plural,
        event.old.as_ref().map(Shared::value),
        new,
    );
}
