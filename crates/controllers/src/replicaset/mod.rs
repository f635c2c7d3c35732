//! The replica set controller, serving both apps/v1 ReplicaSets and v1 ReplicationControllers
//! (upstream runs the same code as two controllers): it keeps `replicas` pods of the template,
//! adopts matching orphans and releases pods whose labels stopped matching, and writes status.
//!
//! Pods come from a watch-fed cache; a sync first waits until that cache shows the set's own
//! last pod writes, so it never counts from a view older than what it did itself (upstream's
//! expectations serve the same end). The set is read from the API. Writes stay safe on a stale
//! view: adoptions are guarded by resourceVersion, deletes by uid. `plan` decides.

pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use petset_api::selector::LabelSelector;
use serde_json::{Value, json};

use crate::cache::{Cache, version_of};
use crate::events::Recorder;
use crate::guarded::{self, Deleted};
use crate::owners::{Selectors, selects};
use crate::queue::Queue;
use crate::runner::{self, Retry};
use plan::Diff;

/// How often every set is looked at again, whatever happened.
const RESYNC: Duration = Duration::from_secs(30);
/// How long a sync waits for the pod cache to show the set's own last writes.
const CATCH_UP: Duration = Duration::from_secs(2);

type Key = (String, String);

/// What the controller needs of a kind with replicas of a pod template.
pub trait Replicated:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::de::DeserializeOwned
    + serde::Serialize
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The controller's name in events and logs.
    const COMPONENT: &'static str;
    fn selector(&self) -> Option<LabelSelector>;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn observed_generation(&self) -> Option<i64>;
}

/// The accessors ReplicaSet and ReplicationController answer alike (their spec and status
/// share these field names and defaults).
macro_rules! same_shape_accessors {
    () => {
        fn replicas(&self) -> i32 {
            self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
        }
        fn min_ready_seconds(&self) -> i32 {
            self.spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0)
        }
        fn template(&self) -> Option<&PodTemplateSpec> {
            self.spec.as_ref()?.template.as_ref()
        }
        fn observed_generation(&self) -> Option<i64> {
            self.status.as_ref()?.observed_generation
        }
    };
}

impl Replicated for ReplicaSet {
    const COMPONENT: &'static str = "replicaset-controller";
    fn selector(&self) -> Option<LabelSelector> {
        let selector = serde_json::to_value(&self.spec.as_ref()?.selector).ok()?;
        LabelSelector::from_structured(&selector).ok()
    }
    same_shape_accessors!();
}

impl Replicated for ReplicationController {
    const COMPONENT: &'static str = "replication-controller";
    fn selector(&self) -> Option<LabelSelector> {
        let selector = serde_json::to_value(self.spec.as_ref()?.selector.as_ref()?).ok()?;
        petset_api::kinds::replicationcontroller::map_selector(Some(&selector))
    }
    same_shape_accessors!();
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// Runs the ReplicaSet controller until the task is aborted.
pub async fn run_replica_sets(client: Client) {
    run::<ReplicaSet>(client).await;
}

/// Runs the ReplicationController controller until the task is aborted.
pub async fn run_replication_controllers(client: Client) {
    run::<ReplicationController>(client).await;
}

async fn run<K: Replicated>(client: Client) {
    let (queue, keys) = Queue::<Key>::new();
    let selectors = Arc::new(Selectors::default());
    let mut helpers = tokio::task::JoinSet::new();
    let sets = selectors.follow_owners(&mut helpers, &client, &queue, K::selector);
    let pods = selectors.follow_owned(&mut helpers, &client, &queue, sets_for_pod::<K>);
    selectors.resync_every(&mut helpers, &queue, RESYNC);
    sets.ready().await;
    pods.ready().await;
    let controller = Controller::<K> {
        recorder: Recorder::new(client.clone(), K::COMPONENT),
        client,
        sets,
        pods,
        wrote: Mutex::new(HashMap::new()),
    };
    let controller = &controller;
    let retry = Retry::exponential(Duration::from_millis(5), Duration::from_secs(1000));
    runner::run(K::COMPONENT, queue, keys, retry, |key: Key| async move {
        controller.sync(&key.0, &key.1).await
    })
    .await;
}

/// The set that controls a pod, or, for an orphan, every set whose selector matches it.
fn sets_for_pod<K: Replicated>(selectors: &Selectors, pod: &Pod) -> Vec<Key> {
    selectors.owners_of(pod, |owner| {
        owner.kind == K::kind(&()) && owner.api_version == K::api_version(&())
    })
}

/// The controller reference an owner puts on what it controls.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The uid of an object's controller, if it has one.
pub fn controller_uid<O: ResourceExt>(object: &O) -> Option<String> {
    object
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

/// Adds `owner`'s controller reference to an orphan, guarded by the resourceVersion it was
/// read at; a concurrent change makes the adoption fail and the next sync look again.
pub async fn adopt<O, K>(api: &Api<O>, object: &O, owner: &K) -> Result<O, kube::Error>
where
    O: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Resource<DynamicType = ()>,
{
    let mut references = object.meta().owner_references.clone().unwrap_or_default();
    references.push(controller_ref(owner));
    let patch = json!({"metadata": {"ownerReferences": references,
        "resourceVersion": object.meta().resource_version}});
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
}

/// Removes the reference to the owner with `uid` (a release: the labels stopped matching).
pub async fn release<O>(api: &Api<O>, object: &O, uid: &str) -> Result<O, kube::Error>
where
    O: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"ownerReferences": [{"uid": uid, "$patch": "delete"}],
        "uid": object.meta().uid}});
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
}

struct Controller<K: Replicated> {
    client: Client,
    recorder: Recorder,
    sets: Cache<K>,
    pods: Cache<Pod>,
    /// The newest resourceVersion of a pod each set's syncs wrote.
    wrote: Mutex<HashMap<Key, u64>>,
}

impl<K: Replicated> Controller<K> {
    fn wrote_pod(&self, key: &Key, pod: &Pod) {
        if let Ok(mut wrote) = self.wrote.lock() {
            let newest = wrote.entry(key.clone()).or_default();
            *newest = (*newest).max(version_of(pod));
        }
    }

    fn last_write(&self, key: &Key) -> u64 {
        self.wrote
            .lock()
            .ok()
            .and_then(|w| w.get(key).copied())
            .unwrap_or(0)
    }

    async fn sync(&self, namespace: &str, name: &str) -> Result<Option<Duration>, SyncError> {
        let key = (namespace.to_string(), name.to_string());
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        if self.sets.get(namespace, name).is_none() && api.get_opt(name).await?.is_none() {
            if let Ok(mut wrote) = self.wrote.lock() {
                wrote.remove(&key);
            }
            return Ok(None);
        }
        self.pods.caught_up(self.last_write(&key), CATCH_UP).await;
        // Read after the pods: a set read first could be older than the pods it made.
        let Some(set) = api.get_opt(name).await? else {
            return Ok(None);
        };
        let Some(selector) = set.selector() else {
            tracing::warn!(namespace, name, "invalid selector; not syncing");
            return Ok(None);
        };
        let pods = self.claim_pods(&key, &set, &selector).await;
        let active: Vec<Arc<Pod>> = pods.into_iter().filter(|p| plan::is_active(p)).collect();
        let deleting = set.meta().deletion_timestamp.is_some();
        let result = if deleting {
            Ok(())
        } else {
            self.manage(&key, &set, &active).await
        };
        let now = jiff::Timestamp::now().as_second();
        let template_labels = set
            .template()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let min_ready = set.min_ready_seconds();
        let counts = plan::counts(&active, &template_labels, min_ready, now);
        self.write_status(&api, &set, counts).await?;
        result?;
        if min_ready > 0 && counts.ready > counts.available {
            return Ok(Some(Duration::from_secs(
                u64::try_from(min_ready).unwrap_or(0) + 1,
            )));
        }
        Ok(None)
    }

    /// The set's pods: owned ones that still match, and matching orphans it adopts.
    async fn claim_pods(&self, key: &Key, set: &K, selector: &LabelSelector) -> Vec<Arc<Pod>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.0);
        let uid = set.meta().uid.clone().unwrap_or_default();
        let deleting = set.meta().deletion_timestamp.is_some();
        let mut claimed = Vec::new();
        for pod in self.pods.in_namespace(&key.0) {
            let owner = controller_uid(pod.as_ref());
            if owner.as_ref().is_some_and(|owner| *owner != uid) {
                continue;
            }
            let matches = selects(selector, pod.labels());
            match owner {
                Some(_) if matches => claimed.push(pod),
                Some(_) if !deleting => match release(&api, pod.as_ref(), &uid).await {
                    Ok(released) => self.wrote_pod(key, &released),
                    Err(error) => tracing::debug!(%error, "could not release a pod"),
                },
                None if matches && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                    match adopt(&api, pod.as_ref(), set).await {
                        Ok(adopted) => {
                            self.wrote_pod(key, &adopted);
                            claimed.push(Arc::new(adopted));
                        }
                        Err(error) => tracing::debug!(%error, "could not adopt a pod"),
                    }
                }
                _ => {}
            }
        }
        claimed
    }

    /// Makes or deletes pods toward `replicas`.
    async fn manage(&self, key: &Key, set: &K, active: &[Arc<Pod>]) -> Result<(), SyncError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &key.0);
        match plan::diff(active, set.replicas()) {
            Diff::None => Ok(()),
            Diff::Create(count) => {
                let pod = new_pod(set);
                let params = PostParams::default();
                for batch in plan::batches(count) {
                    let results =
                        futures::future::join_all((0..batch).map(|_| api.create(&params, &pod)))
                            .await;
                    let mut failed = None;
                    for result in results {
                        match result {
                            Ok(created) => {
                                self.wrote_pod(key, &created);
                                self.recorder
                                    .pod_created(set.object_ref(&()), &created.name_any());
                            }
                            Err(error) => {
                                self.recorder.pod_create_failed(set.object_ref(&()), &error);
                                failed = Some(error);
                            }
                        }
                    }
                    if let Some(error) = failed {
                        return Err(error.into());
                    }
                }
                Ok(())
            }
            Diff::Delete(order) => {
                let results = futures::future::join_all(order.iter().map(|index| {
                    let pod = &active[*index];
                    let api = &api;
                    async move {
                        let name = pod.name_any();
                        let uid = pod.uid().unwrap_or_default();
                        (name.clone(), guarded::delete(api, &name, &uid).await)
                    }
                }))
                .await;
                let mut failed = None;
                for (name, result) in results {
                    match result {
                        Ok(deleted) => {
                            if let Deleted::Done(Some(pod)) = &deleted {
                                self.wrote_pod(key, pod);
                            }
                            if !matches!(deleted, Deleted::Already) {
                                self.recorder.pod_deleted(set.object_ref(&()), &name);
                            }
                        }
                        Err(error) => {
                            self.recorder.record(
                                set.object_ref(&()),
                                "Warning",
                                "FailedDelete",
                                format!("Error deleting: {error}"),
                            );
                            failed = Some(error);
                        }
                    }
                }
                failed.map_or(Ok(()), |error| Err(error.into()))
            }
        }
    }

    async fn write_status(
        &self,
        api: &Api<K>,
        set: &K,
        counts: plan::Counts,
    ) -> Result<(), SyncError> {
        let generation = set.meta().generation;
        let stored = serde_json::to_value(set)
            .ok()
            .and_then(|v| v.get("status").cloned())
            .unwrap_or_else(|| json!({}));
        let number = |field: &str| stored.get(field).and_then(Value::as_i64).unwrap_or(0);
        let unchanged = number("replicas") == i64::from(counts.replicas)
            && number("fullyLabeledReplicas") == i64::from(counts.fully_labeled)
            && number("readyReplicas") == i64::from(counts.ready)
            && number("availableReplicas") == i64::from(counts.available)
            && set.observed_generation() == generation;
        if unchanged {
            return Ok(());
        }
        let patch = json!({"status": {
            "replicas": counts.replicas,
            "fullyLabeledReplicas": counts.fully_labeled,
            "readyReplicas": counts.ready,
            "availableReplicas": counts.available,
            "observedGeneration": generation,
        }});
        let name = set.meta().name.clone().unwrap_or_default();
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if crate::errors::is_not_found(&error) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

/// A new pod of the set's template: `<set>-` and a random suffix, the template's labels and
/// annotations, the set as its controller.
fn new_pod<K: Replicated>(set: &K) -> Pod {
    let template = set.template().cloned().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let name = set.meta().name.clone().unwrap_or_default();
    let prefix: String = name.chars().take(57).collect();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{prefix}-")),
            namespace: set.meta().namespace.clone(),
            labels: meta
                .labels
                .filter(|l: &BTreeMap<String, String>| !l.is_empty()),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}
