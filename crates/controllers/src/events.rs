//! Events as upstream's recorders write them (core/v1, named `<object>.<16 hex>`), so
//! `kubectl describe` and `kubectl get events` show what controllers did.

use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, PostParams};

/// Writes events for one component.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Self { client, component }
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
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{unique:016x}",
                    object.name.clone().unwrap_or_default()
                )),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: object,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(type_.to_string()),
            source: Some(EventSource {
                component: Some(self.component.to_string()),
                host: None,
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(self.component.to_string()),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let reason = reason.to_string();
        tokio::spawn(async move {
            if let Err(error) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(%error, reason, "could not record an event");
            }
        });
    }
}
