//! The reconcile loop every controller runs over its work queue: take a key, mark it taken (so
//! changes from now on queue it again), reconcile it inside a tracing span that names the
//! controller and the key, then requeue it when the reconcile asks to or when it failed, with
//! a back-off per key that a success resets (as client-go's rate-limited work queue).

use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::Instrument;

use crate::queue::Queue;

/// How soon a key whose reconcile failed is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The delay after the first failure.
    pub first: Duration,
    /// The longest delay: each further failure in a row doubles the delay up to this.
    pub max: Duration,
}

impl Retry {
    /// The same delay after every failure.
    pub const fn fixed(delay: Duration) -> Self {
        Self {
            first: delay,
            max: delay,
        }
    }

    /// A delay that doubles from `first` with each failure in a row, up to `max`.
    pub const fn exponential(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The delay after the `failures`-th failure in a row (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// What a reconcile asks for when it succeeds.
pub type Requeue = Option<Duration>;

/// Runs `reconcile` for every key `keys` delivers, until the task is aborted. A
/// success may ask for another pass after a delay; a failure is logged (at debug: a retry is
/// routine, the next pass reports what is still wrong) and retried as `retry` says.
pub async fn run<K, F, Fut, E>(
    controller: &'static str,
    queue: Arc<Queue<K>>,
    mut keys: mpsc::UnboundedReceiver<K>,
    retry: Retry,
    mut reconcile: F,
) where
    K: Clone + Eq + Hash + Debug + Send + 'static,
    F: FnMut(K) -> Fut,
    Fut: Future<Output = Result<Requeue, E>>,
    E: Display,
{
    let mut failures: HashMap<K, u32> = HashMap::new();
    while let Some(key) = keys.recv().await {
        queue.taken(&key);
        let span = tracing::debug_span!("reconcile", controller, key = ?key);
        match reconcile(key.clone()).instrument(span.clone()).await {
            Ok(requeue) => {
                failures.remove(&key);
                if let Some(delay) = requeue {
                    queue.add_after(key, delay);
                }
            }
            Err(error) => {
                let count = failures.entry(key.clone()).or_default();
                *count = count.saturating_add(1);
                let delay = retry.delay(*count);
                span.in_scope(|| tracing::debug!(%error, ?delay, "reconcile failed; retrying"));
                queue.add_after(key, delay);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn a_delay_doubles_with_each_failure_up_to_the_maximum() {
        let retry = Retry::exponential(Duration::from_millis(5), Duration::from_secs(20));
        assert_eq!(retry.delay(1), Duration::from_millis(5));
        assert_eq!(retry.delay(2), Duration::from_millis(10));
        assert_eq!(retry.delay(4), Duration::from_millis(40));
        assert_eq!(retry.delay(40), Duration::from_secs(20));
        assert_eq!(retry.delay(u32::MAX), Duration::from_secs(20));
        let fixed = Retry::fixed(Duration::from_millis(500));
        assert_eq!(fixed.delay(1), fixed.delay(9));
    }

    /// A failing key is retried until it succeeds, and then left alone; a success that asks for
    /// another pass gets exactly one.
    #[tokio::test]
    async fn a_failing_key_is_retried_until_it_succeeds_and_a_requeue_is_honoured() {
        let (queue, keys) = Queue::<&'static str>::new();
        let seen: Arc<Mutex<Vec<&'static str>>> = Arc::default();
        let (progress, mut watched) = tokio::sync::watch::channel(0usize);
        queue.add("flaky");
        queue.add("periodic");
        let log = seen.clone();
        let mut flaky_failures = 0;
        let mut periodic_passes = 0;
        let runner = tokio::spawn(run(
            "test",
            queue,
            keys,
            Retry::exponential(Duration::from_millis(1), Duration::from_millis(8)),
            move |key| {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.push(key);
                progress.send_replace(log.len());
                let outcome = match key {
                    "flaky" if flaky_failures < 3 => {
                        flaky_failures += 1;
                        Err("not yet")
                    }
                    "periodic" if periodic_passes < 1 => {
                        periodic_passes += 1;
                        Ok(Some(Duration::from_millis(10)))
                    }
                    _ => Ok(None),
                };
                async move { outcome }
            },
        ));
        tokio::time::timeout(Duration::from_secs(30), watched.wait_for(|n| *n >= 6))
            .await
            .expect("every pass ran")
            .expect("the runner is alive");
        // Room for a wrong extra retry or requeue to show up before the count is checked.
        tokio::time::sleep(Duration::from_millis(100)).await;
        runner.abort();
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let count = |name: &str| seen.iter().filter(|key| **key == name).count();
        assert_eq!(count("flaky"), 4, "{seen:?}");
        assert_eq!(count("periodic"), 2, "{seen:?}");
    }
}
