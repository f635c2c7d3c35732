//! Events as upstream's recorders write them (core/v1, named `<object>.<16 hex>`), so
//! `kubectl describe` and `kubectl get events` show what controllers did.
//!
//! Like client-go's EventCorrelator, a recorder does not write every event it is given:
//! - a source may burst 25 events about one object, then one more every 5 minutes (the rest
//!   are dropped), so a scale-up to 1,000 pods writes 25 events about the set, not 2,000;
//! - from the 10th event about one object with the same reason but different messages within
//!   10 minutes, they are combined into one event, "(combined from similar events): …";
//! - an event identical to an earlier one bumps that event's `count` and `lastTimestamp`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// How many objects' worth of correlation state is kept (client-go keeps an LRU of 4096).
const MAX_ENTRIES: usize = 4096;
const SPAM_BURST: f64 = 25.0;
const SPAM_REFILL_PER_SECOND: f64 = 1.0 / 300.0;
const AGGREGATE_AFTER: usize = 10;
const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);

/// What the correlator decided for one event.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Drop,
    /// Write a new event with this message.
    Create {
        message: String,
    },
    /// Bump the count of the event written earlier under this name.
    Repeat {
        name: String,
        count: i32,
        message: String,
    },
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Similar {
    messages: HashSet<String>,
    last: Instant,
}

/// The correlation state of one recorder.
#[derive(Default)]
struct Correlator {
    buckets: HashMap<String, Bucket>,
    similar: HashMap<String, Similar>,
    /// Events written, by their full key: their name and count.
    written: HashMap<String, (String, i32)>,
}

/// Keeps a map bounded: when full it starts over, which only forgets some history.
fn bounded<V>(map: &mut HashMap<String, V>) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
}

impl Correlator {
    /// `object` identifies the involved object (and the source), `reason` and `message` the
    /// event; `name` is the name a new event would get.
    fn decide(
        &mut self,
        object: &str,
        reason: &str,
        message: &str,
        name: &str,
        now: Instant,
    ) -> Decision {
        bounded(&mut self.buckets);
        let bucket = self.buckets.entry(object.to_string()).or_insert(Bucket {
            tokens: SPAM_BURST,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * SPAM_REFILL_PER_SECOND;
        bucket.tokens = (bucket.tokens + refill).min(SPAM_BURST);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Decision::Drop;
        }
        bucket.tokens -= 1.0;

        bounded(&mut self.similar);
        let similar_key = format!("{object}\0{reason}");
        let similar = self
            .similar
            .entry(similar_key.clone())
            .or_insert_with(|| Similar {
                messages: HashSet::new(),
                last: now,
            });
        if now.duration_since(similar.last) > AGGREGATE_WINDOW {
            similar.messages.clear();
        }
        similar.last = now;
        similar.messages.insert(message.to_string());
        let (key, message) = if similar.messages.len() >= AGGREGATE_AFTER {
            (
                similar_key,
                format!("(combined from similar events): {message}"),
            )
        } else {
            (
                format!("{object}\0{reason}\0{message}"),
                message.to_string(),
            )
        };

        bounded(&mut self.written);
        match self.written.get_mut(&key) {
            Some((name, count)) => {
                *count += 1;
                Decision::Repeat {
                    name: name.clone(),
                    count: *count,
                    message,
                }
            }
            None => {
                self.written.insert(key, (name.to_string(), 1));
                Decision::Create { message }
            }
        }
    }
}

/// Writes events for one component.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
    /// The node an event comes from (`source.host`), for the kubelet's events.
    host: Option<String>,
    correlator: Arc<Mutex<Correlator>>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Self {
            client,
            component,
            host: None,
            correlator: Arc::new(Mutex::new(Correlator::default())),
        }
    }

    /// The same recorder, naming `host` as the events' source (as the kubelet names its node).
    pub fn on_host(mut self, host: String) -> Self {
        self.host = Some(host);
        self
    }

    /// The `SuccessfulCreate` event of upstream's pod controllers (ReplicaSet, DaemonSet, Job).
    pub fn pod_created(&self, object: ObjectReference, pod: &str) {
        let message = format!("Created pod: {pod}");
        self.record(object, "Normal", "SuccessfulCreate", message);
    }

    /// Their `FailedCreate` event, for a pod that could not be made.
    pub fn pod_create_failed(&self, object: ObjectReference, error: impl std::fmt::Display) {
        let message = format!("Error creating: {error}");
        self.record(object, "Warning", "FailedCreate", message);
    }

    /// Their `SuccessfulDelete` event.
    pub fn pod_deleted(&self, object: ObjectReference, pod: &str) {
        let message = format!("Deleted pod: {pod}");
        self.record(object, "Normal", "SuccessfulDelete", message);
    }

    /// Records an event about `object` in the background, as upstream's broadcaster does: the
    /// caller never waits for it, and a failure to record is logged, never fatal.
    pub fn record(&self, object: ObjectReference, type_: &str, reason: &str, message: String) {
        let namespace = object.namespace.clone().unwrap_or_else(|| "default".into());
        let now = Time(jiff::Timestamp::now());
        let unique = jiff::Timestamp::now().as_nanosecond() as u64
            ^ SEQUENCE
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let name = format!("{}.{unique:016x}", object.name.clone().unwrap_or_default());
        let object_key = format!(
            "{}\0{}\0{}\0{}\0{}",
            self.component,
            object.kind.as_deref().unwrap_or_default(),
            namespace,
            object.name.as_deref().unwrap_or_default(),
            object.uid.as_deref().unwrap_or_default(),
        );
        let decision = self
            .correlator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .decide(
                &object_key,
                &format!("{type_}\0{reason}"),
                &message,
                &name,
                Instant::now(),
            );
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let reason = reason.to_string();
        match decision {
            Decision::Drop => {
                tracing::debug!(reason, message, "event dropped by the spam filter");
            }
            Decision::Create { message } => {
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(name),
                        namespace: Some(namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    involved_object: object,
                    reason: Some(reason.clone()),
                    message: Some(message),
                    type_: Some(type_.to_string()),
                    source: Some(EventSource {
                        component: Some(self.component.to_string()),
                        host: self.host.clone(),
                    }),
                    first_timestamp: Some(now.clone()),
                    last_timestamp: Some(now),
                    count: Some(1),
                    reporting_component: Some(self.component.to_string()),
                    reporting_instance: self.host.clone(),
                    ..Event::default()
                };
                tokio::spawn(async move {
                    if let Err(error) = api.create(&PostParams::default(), &event).await {
                        tracing::debug!(%error, reason, "could not record an event");
                    }
                });
            }
            Decision::Repeat {
                name,
                count,
                message,
            } => {
                let patch = json!({"count": count, "lastTimestamp": now, "message": message});
                tokio::spawn(async move {
                    if let Err(error) = api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                    {
                        tracing::debug!(%error, reason, "could not update an event");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(message: &str) -> Decision {
        Decision::Create {
            message: message.into(),
        }
    }

    #[test]
    fn an_object_gets_25_events_in_a_burst_then_one_per_5_minutes() {
        let mut correlator = Correlator::default();
        let start = Instant::now();
        let decisions: Vec<Decision> = (0..30)
            .map(|i| correlator.decide("set", &format!("R{i}"), "m", &format!("e{i}"), start))
            .collect();
        assert!(decisions[..25].iter().all(|d| *d != Decision::Drop));
        assert!(decisions[25..].iter().all(|d| *d == Decision::Drop));
        let later = start + Duration::from_secs(301);
        assert_eq!(
            correlator.decide("set", "R99", "m", "e99", later),
            create("m")
        );
        assert_eq!(
            correlator.decide("set", "R100", "m", "e100", later),
            Decision::Drop
        );
        // Other objects have their own budget.
        assert_eq!(correlator.decide("pod", "R", "m", "p", start), create("m"));
    }

    #[test]
    fn the_tenth_similar_message_starts_a_combined_event_that_then_counts() {
        let mut correlator = Correlator::default();
        let now = Instant::now();
        for i in 0..9 {
            let message = format!("create Pod web-{i}");
            assert_eq!(
                correlator.decide("set", "SuccessfulCreate", &message, &format!("e{i}"), now),
                create(&message)
            );
        }
        assert_eq!(
            correlator.decide("set", "SuccessfulCreate", "create Pod web-9", "e9", now),
            create("(combined from similar events): create Pod web-9")
        );
        assert_eq!(
            correlator.decide("set", "SuccessfulCreate", "create Pod web-10", "e10", now),
            Decision::Repeat {
                name: "e9".into(),
                count: 2,
                message: "(combined from similar events): create Pod web-10".into(),
            }
        );
    }

    #[test]
    fn an_identical_event_bumps_the_count_of_the_first() {
        let mut correlator = Correlator::default();
        let now = Instant::now();
        assert_eq!(
            correlator.decide("pod", "FailedScheduling", "no nodes", "a", now),
            create("no nodes")
        );
        assert_eq!(
            correlator.decide("pod", "FailedScheduling", "no nodes", "b", now),
            Decision::Repeat {
                name: "a".into(),
                count: 2,
                message: "no nodes".into(),
            }
        );
    }
}
