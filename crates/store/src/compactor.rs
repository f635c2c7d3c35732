//! Periodic compaction keeping a window of history, as kube-apiserver does for etcd: each round
//! compacts to the revision seen one round earlier, so watchers and paginated lists always have
//! at least one interval of history to resume from.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{Revision, Store, StoreError};

/// Compacts `store` every `interval` to the revision it had one interval before.
/// The task runs until aborted (or the runtime stops).
pub fn spawn_compactor(store: Arc<dyn Store>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous: Option<Revision> = None;
        loop {
            ticker.tick().await;
            if let Some(revision) = previous {
                match store.compact(revision).await {
                    Ok(()) => tracing::debug!(revision, "compacted store history"),
                    // Someone else (another petset on the same etcd) compacted further already.
                    Err(StoreError::Compacted { .. }) => {}
                    Err(error) => tracing::warn!(%error, revision, "store compaction failed"),
                }
            }
            match store.current_revision().await {
                Ok(revision) => previous = Some(revision),
                Err(error) => tracing::warn!(%error, "reading the store revision failed"),
            }
        }
    })
}
