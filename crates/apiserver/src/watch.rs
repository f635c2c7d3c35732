//! Watches: the store's revisioned event stream turned into Kubernetes watch events, with
//! selectors applied to both sides of every change, synthetic ADDED events for watches from
//! "now", bookmarks, and 410 Gone for history that has been compacted. Served from the watch
//! cache when it can, from a store watch otherwise.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use petset_api::ApiError;
use petset_api::resources::ResourceType;
use petset_store::{EventKind, Revision, StoreError};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc::Sender;
use tokio::time::Instant;

use crate::registry::{Filters, Registry, Scope, store_error};
use crate::watch_cache::{CachedEvent, Shared, WatchCache};

/// One event of a watch, before it is rendered for the client.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Added(Shared),
    Modified(Shared),
    Deleted(Shared),
    Bookmark {
        revision: Revision,
        initial_events_end: bool,
    },
    /// A terminal error (410 Gone and friends); the stream ends after it.
    Error(ApiError),
}

impl WatchEvent {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Added(_) => "ADDED",
            Self::Modified(_) => "MODIFIED",
            Self::Deleted(_) => "DELETED",
            Self::Bookmark { .. } => "BOOKMARK",
            Self::Error(_) => "ERROR",
        }
    }

    pub fn object(&self) -> Option<&Shared> {
        match self {
            Self::Added(o) | Self::Modified(o) | Self::Deleted(o) => Some(o),
            _ => None,
        }
    }
}

/// What a watch request asked for.
pub struct WatchRequest {
    pub filters: Filters,
    /// `None` or `Some(0)`: start from now, with a synthetic ADDED for every current match.
    pub resource_version: Option<Revision>,
    pub send_initial_events: bool,
    pub allow_bookmarks: bool,
    pub timeout: Option<Duration>,
}

/// How often an idle watch gets a bookmark when it asked for them (upstream: about a minute).
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// Everything a watch's producer task needs.
struct Watcher {
    prefix: String,
    filters: Filters,
    allow_bookmarks: bool,
    deadline: Option<Instant>,
    last_bookmark: Instant,
    /// The next revision this watcher wants.
    next: Revision,
    sender: Sender<WatchEvent>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

/// How a phase of the watch ended.
enum Ended {
    /// The client left, the deadline passed, or the server stops.
    Done,
    /// The cache dropped this watcher for being slow: continue from the store.
    Lagged,
}

/// Starts a watch. Errors before the first event (a bad selector, a failed list) are returned
/// directly; later ones arrive as an ERROR event.
pub async fn watch(
    registry: &Registry,
    cache: &Arc<WatchCache>,
    scope: Scope<'_>,
    request: WatchRequest,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<impl Stream<Item = WatchEvent> + Send + 'static, ApiError> {
    let resource: &'static ResourceType = scope.resource;
    let from_now = request.resource_version.is_none_or(|rv| rv == 0);
    let mut initial = Vec::new();
    let start = if from_now || request.send_initial_events {
        let page = registry
            .list(scope, &request.filters, None, None, None)
            .await?;
        initial.extend(
            page.items
                .into_iter()
                .map(|item| WatchEvent::Added(Shared::new(item))),
        );
        if request.send_initial_events {
            initial.push(WatchEvent::Bookmark {
                revision: page.resource_version,
                initial_events_end: true,
            });
        }
        page.resource_version
    } else {
        request.resource_version.unwrap_or(0)
    };
    let store = registry.store().clone();
    let cache = cache.clone();
    let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
    let mut watcher = Watcher {
        prefix: resource.list_prefix(scope.namespace),
        filters: request.filters,
        allow_bookmarks: request.allow_bookmarks,
        // A timeout past what the clock can represent is no timeout (timeoutSeconds is the
        // client's number).
        deadline: request.timeout.and_then(|t| Instant::now().checked_add(t)),
        last_bookmark: Instant::now(),
        next: start + 1,
        sender,
        shutdown,
    };
    tokio::spawn(async move {
        for event in initial {
            if watcher.sender.send(event).await.is_err() {
                return;
            }
        }
        if let Some(subscription) = cache.subscribe(watcher.next) {
            if let Ended::Done = watcher.follow_cache(subscription).await {
                return;
            }
            tracing::debug!(
                next = watcher.next,
                "watcher fell behind the cache; continuing from the store"
            );
        }
        watcher.follow_store(store).await;
    });
    Ok(futures::stream::poll_fn(move |cx| receiver.poll_recv(cx)))
}

impl Watcher {
    /// Delivers one event if it is this watcher's; false when the client is gone.
    async fn offer(&mut self, event: &CachedEvent) -> bool {
        if event.revision < self.next || !event.key.starts_with(self.prefix.as_str()) {
            return true;
        }
        self.next = event.revision + 1;
        match translate(&self.filters, event) {
            Some(translated) => self.sender.send(translated).await.is_ok(),
            None => true,
        }
    }

    async fn progress(&mut self, revision: Revision) -> bool {
        if !self.allow_bookmarks || self.last_bookmark.elapsed() < BOOKMARK_INTERVAL {
            return true;
        }
        self.last_bookmark = Instant::now();
        let bookmark = WatchEvent::Bookmark {
            revision: revision.max(self.next - 1),
            initial_events_end: false,
        };
        self.sender.send(bookmark).await.is_ok()
    }

    async fn follow_cache(&mut self, subscription: crate::watch_cache::Subscription) -> Ended {
        let mut live = subscription.live;
        for event in subscription.backlog {
            if !self.offer(&event).await {
                return Ended::Done;
            }
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                _ = sleep_until(self.deadline) => return Ended::Done,
                _ = self.shutdown.changed() => return Ended::Done,
            };
            let batch = match received {
                Ok(batch) => batch,
                Err(RecvError::Lagged(_)) => return Ended::Lagged,
                Err(RecvError::Closed) => return Ended::Done,
            };
            if batch.events.is_empty() {
                if !self.progress(batch.revision).await {
                    return Ended::Done;
                }
                continue;
            }
            for event in &batch.events {
                if !self.offer(event).await {
                    return Ended::Done;
                }
            }
        }
    }

    async fn follow_store(&mut self, store: Arc<dyn petset_store::Store>) {
        let start = self.next;
        let mut stream = match store.watch(&self.prefix, start).await {
            Ok(stream) => stream,
            Err(error) => {
                let _ = self
                    .sender
                    .send(WatchEvent::Error(gone(error, start - 1)))
                    .await;
                return;
            }
        };
        loop {
            let batch = tokio::select! {
                batch = stream.next() => batch,
                _ = sleep_until(self.deadline) => return,
                _ = self.shutdown.changed() => return,
            };
            let batch = match batch {
                Some(Ok(batch)) => batch,
                Some(Err(error)) => {
                    let _ = self
                        .sender
                        .send(WatchEvent::Error(gone(error, start - 1)))
                        .await;
                    return;
                }
                None => return,
            };
            if batch.events.is_empty() {
                if !self.progress(batch.revision).await {
                    return;
                }
                continue;
            }
            for event in &batch.events {
                let Some(decoded) = CachedEvent::decode(event) else {
                    continue;
                };
                if !self.offer(&decoded).await {
                    return;
                }
            }
        }
    }
}

fn gone(error: StoreError, start: Revision) -> ApiError {
    match error {
        StoreError::Compacted { compacted, .. } => ApiError::expired(format!(
            "too old resource version: {start} ({})",
            compacted.unwrap_or(start + 1)
        )),
        other => store_error(other),
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Maps one change to what this watcher sees, given its selectors: an object that starts
/// matching is ADDED, one that stops matching is DELETED.
fn translate(filters: &Filters, event: &CachedEvent) -> Option<WatchEvent> {
    let new_matches = event
        .new
        .as_ref()
        .is_some_and(|o| filters.matches(o.value()));
    let old_matches = event
        .old
        .as_ref()
        .is_some_and(|o| filters.matches(o.value()));
    match (event.kind, &event.new, &event.old) {
        (EventKind::Created, Some(new), _) if new_matches => Some(WatchEvent::Added(new.clone())),
        (EventKind::Updated, Some(new), _) if new_matches && old_matches => {
            Some(WatchEvent::Modified(new.clone()))
        }
        (EventKind::Updated, Some(new), _) if new_matches => Some(WatchEvent::Added(new.clone())),
        (EventKind::Updated, Some(new), _) if old_matches => Some(WatchEvent::Deleted(new.clone())),
        (EventKind::Deleted, _, Some(old)) if old_matches => Some(WatchEvent::Deleted(old.clone())),
        _ => None,
    }
}

/// The bookmark object: kube-rs needs kind and apiVersion on it.
pub fn bookmark_object(
    resource: &ResourceType,
    revision: Revision,
    initial_events_end: bool,
) -> Value {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": resource.kind, "apiVersion": resource.api_version(), "metadata": metadata})
}
