//! Watches: the store's revisioned event stream turned into Kubernetes watch events, with
//! selectors applied to both sides of every change, synthetic ADDED events for watches from
//! "now", bookmarks, and 410 Gone for history that has been compacted.

use std::time::Duration;

use futures::{Stream, StreamExt};
use petset_api::ApiError;
use petset_api::resources::ResourceType;
use petset_store::{EventKind, Revision, StoreError};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::registry::{Filters, Registry, Scope, decode_at, store_error};

/// One event of a watch, before it is rendered for the client.
#[derive(Debug, Clone)]
pub enum WatchEvent {
    Added(Value),
    Modified(Value),
    Deleted(Value),
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

    pub fn object(&self) -> Option<&Value> {
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

/// Starts a watch. Errors before the first event (a bad revision) are returned directly; later
/// ones arrive as an ERROR event.
pub async fn watch(
    registry: &Registry,
    scope: Scope<'_>,
    request: WatchRequest,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<impl Stream<Item = WatchEvent> + Send + 'static, ApiError> {
    let resource: &'static ResourceType = scope.resource;
    let prefix = resource.list_prefix(scope.namespace);
    let from_now = request.resource_version.is_none_or(|rv| rv == 0);
    let mut initial = Vec::new();
    let start = if from_now || request.send_initial_events {
        let page = registry
            .list(scope, &request.filters, None, None, None)
            .await?;
        initial.extend(page.items.into_iter().map(WatchEvent::Added));
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
    let store_stream = registry.store().watch(&prefix, start + 1).await;
    let filters = request.filters;
    let allow_bookmarks = request.allow_bookmarks;
    let deadline = request.timeout.map(|t| Instant::now() + t);
    let stream = async_stream(move |sender| async move {
        for event in initial {
            if sender.send(event).await.is_err() {
                return;
            }
        }
        let mut store_stream = match store_stream {
            Ok(stream) => stream,
            Err(error) => {
                let _ = sender.send(WatchEvent::Error(gone(error, start))).await;
                return;
            }
        };
        let mut last_bookmark = Instant::now();
        loop {
            let batch = tokio::select! {
                batch = store_stream.next() => batch,
                _ = sleep_until(deadline) => return,
                _ = shutdown.changed() => return,
            };
            let batch = match batch {
                Some(Ok(batch)) => batch,
                Some(Err(error)) => {
                    let _ = sender.send(WatchEvent::Error(gone(error, start))).await;
                    return;
                }
                None => return,
            };
            if batch.events.is_empty() {
                if allow_bookmarks && last_bookmark.elapsed() >= BOOKMARK_INTERVAL {
                    last_bookmark = Instant::now();
                    let bookmark = WatchEvent::Bookmark {
                        revision: batch.revision,
                        initial_events_end: false,
                    };
                    if sender.send(bookmark).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            for event in batch.events {
                let translated = match translate(resource, &filters, &event) {
                    Ok(Some(translated)) => translated,
                    Ok(None) => continue,
                    Err(error) => WatchEvent::Error(error),
                };
                if sender.send(translated).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(stream)
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

/// Maps one store event to what this watcher sees, given its selectors: an object that starts
/// matching is ADDED, one that stops matching is DELETED.
fn translate(
    resource: &ResourceType,
    filters: &Filters,
    event: &petset_store::Event,
) -> Result<Option<WatchEvent>, ApiError> {
    let new = match &event.value {
        Some(kv) => Some(decode_at(resource, &kv.value, event.revision)?),
        None => None,
    };
    let old = match &event.prev {
        Some(kv) => Some(decode_at(resource, &kv.value, event.revision)?),
        None => None,
    };
    let new_matches = new.as_ref().is_some_and(|o| filters.matches(o));
    let old_matches = old.as_ref().is_some_and(|o| filters.matches(o));
    Ok(match (event.kind, new, old) {
        (EventKind::Created, Some(new), _) if new_matches => Some(WatchEvent::Added(new)),
        (EventKind::Updated, Some(new), _) if new_matches && old_matches => {
            Some(WatchEvent::Modified(new))
        }
        (EventKind::Updated, Some(new), _) if new_matches => Some(WatchEvent::Added(new)),
        (EventKind::Updated, Some(new), _) if old_matches => Some(WatchEvent::Deleted(new)),
        (EventKind::Deleted, _, Some(old)) if old_matches => Some(WatchEvent::Deleted(old)),
        _ => None,
    })
}

/// A stream fed by a task through a small channel: the task ends when the client goes away.
fn async_stream<F, Fut>(producer: F) -> impl Stream<Item = WatchEvent> + Send + 'static
where
    F: FnOnce(tokio::sync::mpsc::Sender<WatchEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, mut receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(producer(sender));
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
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
