//! A work queue of object keys: a key waiting is queued once, however many changes name it,
//! and a key is never processed by two workers at once (there is one worker per queue).

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

pub struct Queue<K> {
    waiting: Mutex<HashSet<K>>,
    sender: mpsc::UnboundedSender<K>,
}

impl<K: Clone + Eq + Hash + Send + 'static> Queue<K> {
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<K>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            Arc::new(Self {
                waiting: Mutex::new(HashSet::new()),
                sender,
            }),
            receiver,
        )
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashSet<K>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, key: K) {
        if self.waiting().insert(key.clone()) {
            let _ = self.sender.send(key);
        }
    }

    /// Called by the worker as it starts on a key: changes from now on queue it again.
    pub fn taken(&self, key: &K) {
        self.waiting().remove(key);
    }

    pub fn add_after(self: &Arc<Self>, key: K, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }
}

/// Calls `resync` every `period` (first after one period) in a task held by `helpers`: the
/// periodic "look at everything again" of upstream's informer resync.
pub fn resync_every(
    helpers: &mut tokio::task::JoinSet<()>,
    period: Duration,
    resync: impl Fn() + Send + 'static,
) {
    helpers.spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            resync();
        }
    });
}
