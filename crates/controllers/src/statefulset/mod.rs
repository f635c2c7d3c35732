//! The StatefulSet controller: claims pods and revisions, chooses the current and update
//! revisions, lets `plan` decide, carries the actions out through the API, and writes status.
//!
//! Pods, the many objects, come from a watch-fed cache; a sync first waits until that cache
//! shows the controller's own last pod writes for the set, so it never plans from a view older
//! than what it did itself. The set, its revisions and claims are read from the API (few, and
//! read-your-writes for free). Writes stay safe on a stale view: pods are created by name
//! (AlreadyExists is a no-op) and deleted with a uid precondition, as upstream does.
//!
//! A sync's work does not depend on `replicas`: the plan looks at the pods that exist plus at
//! most `plan::BURST` new (or condemned) ones and asks for another sync for the rest, and
//! between batches a sync stops when the set watch shows its set changed or gone.

mod newest;
pub mod plan;
pub mod revision;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use petset_api::selector::LabelSelector;
use serde_json::{Value, json};

use crate::cache::{Cache, Change, version_of};
use crate::events::Recorder;
use crate::guarded::{self, Deleted};
use crate::queue::{Queue, resync_every};
use crate::runner::{self, Retry};
use plan::{Action, Observed, REVISION_LABEL, Revision, Why};

const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// How often every set is looked at again, whatever happened.
const RESYNC: Duration = Duration::from_secs(30);

type Key = (String, String);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// Sets seen by the watcher: their selectors, for routing orphan pods to the sets that may
/// adopt them, and their last state, so a sync in flight stops when its set changes.
#[derive(Default)]
struct Known {
    selectors: HashMap<Key, LabelSelector>,
    newest: newest::Newest,
}

/// Runs the controller until the task is aborted.
pub async fn run(client: Client) {
    let (queue, keys) = Queue::<Key>::new();
    let known = Arc::new(Mutex::new(Known::default()));
    // Helpers live as long as this task: aborting it drops the set, which aborts them.
    let mut helpers = tokio::task::JoinSet::new();
    helpers.spawn(watch_sets(client.clone(), queue.clone(), known.clone()));
    let pods = Cache::follow(
        &mut helpers,
        Api::<Pod>::all(client.clone()),
        watcher::Config::default(),
        route_pod_changes(queue.clone(), known.clone()),
    );
    {
        let (queue, known) = (queue.clone(), known.clone());
        resync_every(&mut helpers, RESYNC, move || {
            queue_every_set(&queue, &known)
        });
    }
    let claims = Cache::follow(
        &mut helpers,
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
        route_claim_deletions(queue.clone(), known.clone()),
    );
    let controller = Controller {
        recorder: Recorder::new(client.clone(), "statefulset-controller"),
        client,
        pods,
        claims,
        wrote: Mutex::new(HashMap::new()),
        known,
    };
    controller.pods.ready().await;
    controller.claims.ready().await;
    let controller = &controller;
    // 10 ms doubling to about 20 s, as upstream's per-item exponential rate limiter.
    let retry = Retry::exponential(Duration::from_millis(10), Duration::from_millis(20_480));
    runner::run("statefulset", queue, keys, retry, |key: Key| async move {
        controller.sync(&key.0, &key.1).await
    })
    .await;
}

async fn watch_sets(client: Client, queue: Arc<Queue<Key>>, known: Arc<Mutex<Known>>) {
    let api: Api<StatefulSet> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let sets: Vec<(StatefulSet, bool)> = match event {
            Ok(watcher::Event::Apply(set) | watcher::Event::InitApply(set)) => vec![(set, true)],
            Ok(watcher::Event::Delete(set)) => vec![(set, false)],
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "statefulset watch error");
                continue;
            }
        };
        for (set, present) in sets {
            let key = (set.namespace().unwrap_or_default(), set.name_any());
            if let Ok(mut known) = known.lock() {
                if present {
                    let selector = selector_of(&set).unwrap_or_default();
                    known.selectors.insert(key.clone(), selector);
                    known.newest.applied(&set);
                } else {
                    known.selectors.remove(&key);
                    known.newest.deleted(&set);
                }
            }
            queue.add(key);
        }
    }
}

fn queue_every_set(queue: &Queue<Key>, known: &Mutex<Known>) {
    let keys: Vec<Key> = known
        .lock()
        .map(|k| k.selectors.keys().cloned().collect())
        .unwrap_or_default();
    for key in keys {
        queue.add(key);
    }
}

/// Queues the set that owns a changed pod, or every set whose selector matches an orphan.
fn route_pod_changes(
    queue: Arc<Queue<Key>>,
    known: Arc<Mutex<Known>>,
) -> impl Fn(Change<'_, Pod>) + Send + 'static {
    move |change| {
        let pod = match change {
            Change::Applied(pod) | Change::Deleted(pod) => pod,
            Change::Relisted => {
                // Deletions during the gap were not seen: every set looks again.
                queue_every_set(&queue, &known);
                return;
            }
        };
        let namespace = pod.namespace().unwrap_or_default();
        let owner = pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true) && o.kind == "StatefulSet")
            .map(|o| o.name.clone());
        match owner {
            Some(owner) => queue.add((namespace, owner)),
            None => {
                for key in sets_selecting(&known, &namespace, pod.labels()) {
                    queue.add(key);
                }
            }
        }
    }
}

/// The sets of `namespace` whose (non-empty) selector matches `labels`.
fn sets_selecting(
    known: &Mutex<Known>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> Vec<Key> {
    let labels = serde_json::to_value(labels).ok();
    known
        .lock()
        .map(|k| {
            k.selectors
                .iter()
                .filter(|((ns, _), selector)| {
                    ns == namespace
                        && !selector.is_empty()
                        && selector.matches(labels.as_ref().and_then(Value::as_object))
                })
                .map(|(key, _)| key.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Queues the sets a deleted claim may have belonged to (a set's claims carry its selector's
/// labels): a pod waiting to be made again because its claim was being deleted ("pvc … is
/// being deleted") is made at once, with a new claim, instead of at its next retry.
fn route_claim_deletions(
    queue: Arc<Queue<Key>>,
    known: Arc<Mutex<Known>>,
) -> impl Fn(Change<'_, PersistentVolumeClaim>) + Send + 'static {
    move |change| {
        if let Change::Deleted(claim) = change {
            let namespace = claim.namespace().unwrap_or_default();
            for key in sets_selecting(&known, &namespace, claim.labels()) {
                queue.add(key);
            }
        }
    }
}

fn selector_of(set: &StatefulSet) -> Option<LabelSelector> {
    let selector = serde_json::to_value(&set.spec.as_ref()?.selector).ok()?;
    LabelSelector::from_structured(&selector).ok()
}

fn controller_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: set.name_any(),
        uid: set.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Adds the set's controller reference to an orphan, guarded by the resourceVersion it was
/// read at (a concurrent change makes the adoption fail and the next sync look again).
async fn adopt<K>(api: &Api<K>, object: &K, set: &StatefulSet) -> Result<K, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut references = object.owner_references().to_vec();
    references.push(controller_ref(set));
    let patch = json!({"metadata": {"ownerReferences": references,
        "resourceVersion": object.resource_version()}});
    api.patch(
        &object.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
}

fn controller_uid<K: ResourceExt>(object: &K) -> Option<String> {
    object
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.clone())
}

struct Controller {
    client: Client,
    recorder: Recorder,
    pods: Cache<Pod>,
    /// Claims, to find the missing ones without asking the API about each.
    claims: Cache<PersistentVolumeClaim>,
    /// The newest resourceVersion of a pod each set's syncs wrote.
    wrote: Mutex<HashMap<Key, u64>>,
    /// What the set watch saw, shared with it.
    known: Arc<Mutex<Known>>,
}

/// How carrying out a plan ended, when no write failed.
#[derive(Debug, PartialEq, Eq)]
enum Carried {
    All,
    /// The set changed or went away meanwhile; the rest was left to the sync that change
    /// queued.
    Superseded,
}

/// How long a sync waits for the pod cache to show the set's own last writes.
const CATCH_UP: Duration = Duration::from_secs(2);

impl Controller {
    fn wrote_pod(&self, set: &StatefulSet, pod: &Pod) {
        let key = (set.namespace().unwrap_or_default(), set.name_any());
        if let Ok(mut wrote) = self.wrote.lock() {
            let newest = wrote.entry(key).or_default();
            *newest = (*newest).max(version_of(pod));
        }
    }

    fn superseded(&self, set: &StatefulSet) -> bool {
        self.known
            .lock()
            .is_ok_and(|known| known.newest.supersedes(set))
    }

    fn last_write(&self, namespace: &str, name: &str) -> u64 {
        self.wrote
            .lock()
            .ok()
            .and_then(|w| w.get(&(namespace.to_string(), name.to_string())).copied())
            .unwrap_or(0)
    }
}

impl Controller {
    /// One sync of one set; returns when to look again regardless of events.
    async fn sync(&self, namespace: &str, name: &str) -> Result<Option<Duration>, SyncError> {
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), namespace);
        let Some(set) = sets.get_opt(name).await? else {
            if let Ok(mut wrote) = self.wrote.lock() {
                wrote.remove(&(namespace.to_string(), name.to_string()));
            }
            if let Ok(mut known) = self.known.lock() {
                known.newest.forget(namespace, name);
            }
            return Ok(None);
        };
        self.pods
            .caught_up(self.last_write(namespace, name), CATCH_UP)
            .await;
        let Some(selector) = selector_of(&set) else {
            tracing::warn!(
                namespace,
                name,
                "statefulset has an invalid selector; not syncing"
            );
            return Ok(None);
        };
        let selector_text = selector.to_string();
        let deleting = set.metadata.deletion_timestamp.is_some();

        let revisions = self.claim_revisions(&set, &selector_text, deleting).await?;
        let pods = self.claim_pods(&set, &selector, deleting).await?;
        let (current, update, collision_count, revisions) =
            self.resolve_revisions(&set, revisions).await?;
        let now = jiff::Timestamp::now().as_second();
        let decided = plan::plan(&Observed {
            set: &set,
            pods: &pods,
            current_revision: &current.name_any(),
            update_revision: &update.name_any(),
            collision_count,
            now,
        });
        let result = self
            .act_all(&set, &decided.actions, &current, &update)
            .await;
        if matches!(result, Ok(Carried::Superseded)) {
            // Status and history from an outdated spec would only be rewritten at once.
            return Ok(None);
        }
        self.write_status(&sets, &set, decided.status).await?;
        self.truncate_history(&set, &revisions, &pods, &current, &update)
            .await?;
        result?;
        if decided.unfinished {
            return Ok(Some(Duration::ZERO));
        }
        let min_ready = set
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        Ok((min_ready > 0).then(|| Duration::from_secs(min_ready as u64 + 1)))
    }

    /// The set's revisions: owned, or ownerless and selected (those are adopted).
    async fn claim_revisions(
        &self,
        set: &StatefulSet,
        selector: &str,
        deleting: bool,
    ) -> Result<Vec<ControllerRevision>, SyncError> {
        let namespace = set.namespace().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &namespace);
        let uid = set.uid().unwrap_or_default();
        let mut claimed = Vec::new();
        for revision in api
            .list(&ListParams::default().labels(selector))
            .await?
            .items
        {
            match controller_uid(&revision) {
                Some(owner) if owner == uid => claimed.push(revision),
                Some(_) => {}
                None if !deleting => match adopt(&api, &revision, set).await {
                    Ok(adopted) => claimed.push(adopted),
                    Err(error) => tracing::debug!(%error, "could not adopt a revision"),
                },
                None => {}
            }
        }
        Ok(claimed)
    }

    /// The set's pods: owned and still matching, plus matching orphans (adopted); owned pods
    /// that stopped matching are released.
    async fn claim_pods(
        &self,
        set: &StatefulSet,
        selector: &LabelSelector,
        deleting: bool,
    ) -> Result<Vec<Arc<Pod>>, SyncError> {
        let namespace = set.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let uid = set.uid().unwrap_or_default();
        let set_name = set.name_any();
        let mut claimed = Vec::new();
        for pod in self.pods.in_namespace(&namespace) {
            let owner = controller_uid(pod.as_ref());
            if owner.as_ref().is_some_and(|owner| *owner != uid) {
                continue;
            }
            let member = plan::parent_and_ordinal(&pod.name_any())
                .is_some_and(|(parent, _)| parent == set_name);
            let matches = member && {
                let labels = serde_json::to_value(pod.labels()).ok();
                selector.matches(labels.as_ref().and_then(Value::as_object))
            };
            match owner {
                Some(_) => {
                    if matches {
                        claimed.push(pod);
                    } else if !deleting {
                        let patch = json!({"metadata": {"ownerReferences": [{"uid": uid, "$patch": "delete"}]}});
                        match api
                            .patch(
                                &pod.name_any(),
                                &PatchParams::default(),
                                &Patch::Strategic(patch),
                            )
                            .await
                        {
                            Ok(released) => self.wrote_pod(set, &released),
                            Err(error) => tracing::debug!(%error, "could not release a pod"),
                        }
                    }
                }
                None if matches && !deleting && pod.metadata.deletion_timestamp.is_none() => {
                    match adopt(&api, pod.as_ref(), set).await {
                        Ok(adopted) => {
                            self.wrote_pod(set, &adopted);
                            claimed.push(Arc::new(adopted));
                        }
                        Err(error) => tracing::debug!(%error, "could not adopt a pod"),
                    }
                }
                None => {}
            }
        }
        Ok(claimed)
    }

    /// Chooses the current and update revisions (§4.2), creating or renumbering one if needed.
    async fn resolve_revisions(
        &self,
        set: &StatefulSet,
        mut revisions: Vec<ControllerRevision>,
    ) -> Result<
        (
            ControllerRevision,
            ControllerRevision,
            i32,
            Vec<ControllerRevision>,
        ),
        SyncError,
    > {
        let namespace = set.namespace().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &namespace);
        revisions.sort_by(|a, b| {
            a.revision
                .cmp(&b.revision)
                .then_with(|| {
                    a.metadata
                        .creation_timestamp
                        .cmp(&b.metadata.creation_timestamp)
                })
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
        let mut collision_count = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let next = revisions.last().map_or(1, |r| r.revision + 1);
        let patch = revision::patch_of(set);
        let data_of = |r: &ControllerRevision| r.data.as_ref().map(|d| d.0.clone());
        let equal: Vec<usize> = revisions
            .iter()
            .enumerate()
            .filter(|(_, r)| data_of(r).as_ref() == Some(&patch))
            .map(|(i, _)| i)
            .collect();
        let newest = revisions.len().checked_sub(1);
        let update = if let Some(&index) = equal.last() {
            if Some(index) == newest {
                revisions[index].clone()
            } else {
                // A rollback: the old revision is renumbered and reused.
                let mut renumbered = revisions[index].clone();
                renumbered.revision = next;
                let updated = api
                    .replace(&renumbered.name_any(), &PostParams::default(), &renumbered)
                    .await?;
                revisions[index] = updated.clone();
                updated
            }
        } else {
            let bytes = revision::bytes_of(&patch);
            loop {
                let hash = revision::hash(&bytes, collision_count);
                let mut labels: BTreeMap<String, String> = set
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.metadata.as_ref())
                    .and_then(|m| m.labels.clone())
                    .unwrap_or_default();
                labels.insert(HASH_LABEL.into(), hash.clone());
                let candidate = ControllerRevision {
                    metadata: ObjectMeta {
                        name: Some(revision::name(&set.name_any(), &hash)),
                        namespace: Some(namespace.clone()),
                        labels: Some(labels),
                        annotations: set.metadata.annotations.clone(),
                        owner_references: Some(vec![controller_ref(set)]),
                        ..ObjectMeta::default()
                    },
                    data: Some(RawExtension(patch.clone())),
                    revision: next,
                };
                match api.create(&PostParams::default(), &candidate).await {
                    Ok(created) => {
                        revisions.push(created.clone());
                        break created;
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        let existing = api.get(&candidate.name_any()).await?;
                        if data_of(&existing).as_ref() == Some(&patch) {
                            break existing;
                        }
                        collision_count += 1;
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        };
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current = current_name
            .and_then(|name| revisions.iter().find(|r| r.name_any() == name).cloned())
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collision_count, revisions))
    }

    /// Carries out a plan. Creations run in batches of 1, 2, 4 … at once, as upstream's
    /// `slowStartBatch` does (a plan holds several only in Parallel mode, `plan::BURST` at
    /// most); the first failing batch stops the rest. Other actions run one after another.
    /// Before each batch and each other action, a set the watch shows changed or gone stops
    /// the work.
    async fn act_all(
        &self,
        set: &StatefulSet,
        actions: &[Action],
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<Carried, SyncError> {
        let (creates, others): (Vec<&Action>, Vec<&Action>) = actions
            .iter()
            .partition(|a| matches!(a, Action::CreatePod { .. }));
        let mut remaining = creates.as_slice();
        let mut batch = 1;
        while !remaining.is_empty() {
            if self.superseded(set) {
                return Ok(Carried::Superseded);
            }
            let (now, later) = remaining.split_at(batch.min(remaining.len()));
            let results = futures::future::join_all(
                now.iter()
                    .map(|action| self.act(set, action, current, update)),
            )
            .await;
            if let Some(error) = results.into_iter().find_map(Result::err) {
                return Err(error);
            }
            remaining = later;
            batch *= 2;
        }
        for action in others {
            if self.superseded(set) {
                return Ok(Carried::Superseded);
            }
            self.act(set, action, current, update).await?;
        }
        Ok(Carried::All)
    }

    async fn act(
        &self,
        set: &StatefulSet,
        action: &Action,
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<(), SyncError> {
        let namespace = set.namespace().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        match action {
            Action::CreateClaims { ordinal } => self.create_claims(set, *ordinal).await,
            Action::CreatePod { ordinal, revision } => {
                let revision = match revision {
                    Revision::Current => current,
                    Revision::Update => update,
                };
                // As upstream: no pod while one of its claims cannot serve it (being deleted,
                // or still an earlier pod's): the pod would find the old claim and its data,
                // or wait on it, instead of getting a new one once it is gone.
                if let Err(error) = self.create_claims(set, *ordinal).await {
                    self.recorder.record(
                        set.object_ref(&()),
                        "Warning",
                        "FailedCreate",
                        format!(
                            "create Pod {}-{ordinal} in StatefulSet {} failed error: {error}",
                            set.name_any(),
                            set.name_any()
                        ),
                    );
                    return Err(error);
                }
                let pod = new_pod(set, *ordinal, revision)?;
                let pod_name = pod.name_any();
                match pods.create(&PostParams::default(), &pod).await {
                    Ok(created) => {
                        self.wrote_pod(set, &created);
                        self.recorder.record(
                            set.object_ref(&()),
                            "Normal",
                            "SuccessfulCreate",
                            format!(
                                "create Pod {pod_name} in StatefulSet {} successful",
                                set.name_any()
                            ),
                        );
                        Ok(())
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
                    Err(error) => {
                        self.recorder.record(
                            set.object_ref(&()),
                            "Warning",
                            "FailedCreate",
                            format!(
                                "create Pod {pod_name} in StatefulSet {} failed error: {error}",
                                set.name_any()
                            ),
                        );
                        Err(error.into())
                    }
                }
            }
            Action::DeletePod { name, uid, why } => {
                if *why == Why::Condemned && retention(set, "whenScaled") == "Delete" {
                    self.hand_claims_to_pod(set, name, uid).await?;
                }
                let deleted = guarded::delete(&pods, name, uid).await?;
                if let Deleted::Done(Some(pod)) = &deleted {
                    self.wrote_pod(set, pod);
                }
                if !matches!(deleted, Deleted::Already) {
                    self.recorder.record(
                        set.object_ref(&()),
                        "Normal",
                        "SuccessfulDelete",
                        format!(
                            "delete Pod {name} in StatefulSet {} successful",
                            set.name_any()
                        ),
                    );
                }
                Ok(())
            }
        }
    }

    /// whenScaled=Delete: before a condemned pod goes, its claims get a controller reference
    /// to it (and none to the set), so the garbage collector deletes them after the pod.
    async fn hand_claims_to_pod(
        &self,
        set: &StatefulSet,
        pod: &str,
        uid: &str,
    ) -> Result<(), SyncError> {
        let Some((_, ordinal)) = plan::parent_and_ordinal(pod) else {
            return Ok(());
        };
        let namespace = set.namespace().unwrap_or_default();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
        let set_uid = set.uid().unwrap_or_default();
        for claim in claims_for(set, ordinal) {
            let Some(existing) = claims.get_opt(&claim.name_any()).await? else {
                continue;
            };
            let mut owners: Vec<OwnerReference> = existing
                .owner_references()
                .iter()
                .filter(|o| o.uid != set_uid && o.uid != uid)
                .cloned()
                .collect();
            if owners.iter().any(|o| o.controller == Some(true)) {
                // Someone else controls this claim: the retention policy does not apply.
                continue;
            }
            owners.push(OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: pod.to_string(),
                uid: uid.to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            });
            let patch = json!({"metadata": {"ownerReferences": owners, "resourceVersion": existing.resource_version()}});
            claims
                .patch(
                    &claim.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await?;
        }
        Ok(())
    }

    /// Creates the claims of `ordinal` that are missing. The cache says which exist; one it
    /// has not seen yet is created anyway, and AlreadyExists sends us to the API to look at it.
    async fn create_claims(&self, set: &StatefulSet, ordinal: i32) -> Result<(), SyncError> {
        let namespace = set.namespace().unwrap_or_default();
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &namespace);
        for claim in claims_for(set, ordinal) {
            let claim_name = claim.name_any();
            let cached = self
                .claims
                .store()
                .get(&ObjectRef::new(&claim_name).within(&namespace));
            if let Some(existing) = cached {
                usable_claim(set, ordinal, &existing)?;
                continue;
            }
            match claims.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    self.recorder.record(
                        set.object_ref(&()),
                        "Normal",
                        "SuccessfulCreate",
                        format!(
                            "create Claim {claim_name} Pod {}-{ordinal} in StatefulSet {} success",
                            set.name_any(),
                            set.name_any()
                        ),
                    );
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    if let Some(existing) = claims.get_opt(&claim_name).await? {
                        usable_claim(set, ordinal, &existing)?;
                    }
                }
                Err(error) => {
                    self.recorder
                        .record(
                            set.object_ref(&()),
                            "Warning",
                            "FailedCreate",
                            format!("create Claim {claim_name} for Pod {}-{ordinal} in StatefulSet {} failed error: {error}", set.name_any(), set.name_any()),
                        );
                    return Err(error.into());
                }
            }
        }
        Ok(())
    }

    /// Writes status when a field upstream compares changed.
    async fn write_status(
        &self,
        api: &Api<StatefulSet>,
        set: &StatefulSet,
        status: StatefulSetStatus,
    ) -> Result<(), SyncError> {
        let stored = set.status.clone().unwrap_or_default();
        let changed = status.observed_generation > stored.observed_generation
            || status.replicas != stored.replicas
            || status.ready_replicas.unwrap_or(0) != stored.ready_replicas.unwrap_or(0)
            || status.current_replicas.unwrap_or(0) != stored.current_replicas.unwrap_or(0)
            || status.updated_replicas.unwrap_or(0) != stored.updated_replicas.unwrap_or(0)
            || status.available_replicas.unwrap_or(0) != stored.available_replicas.unwrap_or(0)
            || status.current_revision != stored.current_revision
            || status.update_revision != stored.update_revision;
        if !changed {
            return Ok(());
        }
        let patch = json!({"status": status});
        match api
            .patch_status(
                &set.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes history beyond `revisionHistoryLimit`, oldest first, never a live revision.
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        revisions: &[ControllerRevision],
        pods: &[Arc<Pod>],
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<(), SyncError> {
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        if limit < 0 {
            return Ok(());
        }
        // A set each pod's label goes into once: thousands of pods share a few revisions.
        let (current_name, update_name) = (current.name_any(), update.name_any());
        let live: HashSet<&str> = pods
            .iter()
            .filter_map(|p| p.labels().get(REVISION_LABEL).map(String::as_str))
            .chain([current_name.as_str(), update_name.as_str()])
            .collect();
        let mut history: Vec<&ControllerRevision> = revisions
            .iter()
            .filter(|r| !live.contains(r.name_any().as_str()))
            .collect();
        history.sort_by_key(|r| r.revision);
        let excess = history.len().saturating_sub(limit as usize);
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), &set.namespace().unwrap_or_default());
        for revision in history.into_iter().take(excess) {
            let uid = revision.uid().unwrap_or_default();
            guarded::delete(&api, &revision.name_any(), &uid).await?;
        }
        Ok(())
    }
}

/// Whether an existing claim can serve the pod of `ordinal`.
fn usable_claim(
    set: &StatefulSet,
    ordinal: i32,
    existing: &PersistentVolumeClaim,
) -> Result<(), SyncError> {
    let claim_name = existing.name_any();
    if existing.metadata.deletion_timestamp.is_some() {
        return Err(SyncError::Invalid(format!(
            "pvc {claim_name} is being deleted"
        )));
    }
    // A claim still owned by an earlier pod of this name waits for the garbage collector
    // (upstream's PodClaimIsStale).
    let pod_name = format!("{}-{ordinal}", set.name_any());
    let stale = existing
        .owner_references()
        .iter()
        .any(|o| o.kind == "Pod" && o.name == pod_name);
    if stale {
        return Err(SyncError::Invalid(format!(
            "pvc {claim_name} still belongs to an earlier pod {pod_name}"
        )));
    }
    Ok(())
}

/// `persistentVolumeClaimRetentionPolicy.<field>`: `Retain` (the default) or `Delete`.
fn retention(set: &StatefulSet, field: &str) -> String {
    let policy = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let value = match field {
        "whenDeleted" => policy.and_then(|p| p.when_deleted.clone()),
        _ => policy.and_then(|p| p.when_scaled.clone()),
    };
    value.unwrap_or_else(|| "Retain".into())
}

/// The claims of one ordinal, from the set's volumeClaimTemplates.
fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let match_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let template_name = template.name_any();
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.extend(match_labels.clone());
            // whenDeleted=Delete: the set owns its claims, so deleting it deletes them (§2.5).
            let owners =
                (retention(set, "whenDeleted") == "Delete").then(|| vec![controller_ref(set)]);
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(format!("{template_name}-{}-{ordinal}", set.name_any())),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: template.metadata.annotations.clone(),
                    owner_references: owners,
                    ..ObjectMeta::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// A pod for `ordinal` from `revision`'s template, as `newVersionedStatefulSetPod` makes it.
fn new_pod(
    set: &StatefulSet,
    ordinal: i32,
    revision: &ControllerRevision,
) -> Result<Pod, SyncError> {
    let template_value = revision
        .data
        .as_ref()
        .and_then(|d| revision::template_of(&d.0))
        .ok_or_else(|| {
            SyncError::Invalid(format!("revision {} has no template", revision.name_any()))
        })?;
    let template: PodTemplateSpec = serde_json::from_value(template_value)
        .map_err(|e| SyncError::Invalid(format!("revision {}: {e}", revision.name_any())))?;
    let set_name = set.name_any();
    let name = format!("{set_name}-{ordinal}");
    let template_meta = template.metadata.unwrap_or_default();
    let mut labels = template_meta.labels.unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), revision.name_any());
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    let mut spec: PodSpec = template.spec.unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let claims = claims_for(set, ordinal);
    let templates: Vec<String> = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .map(|t| t.iter().map(|c| c.name_any()).collect())
        .unwrap_or_default();
    let mut volumes: Vec<Volume> = templates
        .iter()
        .zip(&claims)
        .map(|(template, claim)| Volume {
            name: template.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.name_any(),
                read_only: Some(false),
            }),
            ..Volume::default()
        })
        .collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !templates.contains(&v.name)),
    );
    if !volumes.is_empty() {
        spec.volumes = Some(volumes);
    }
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(name),
            generate_name: Some(format!("{set_name}-")),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: template_meta.annotations,
            finalizers: template_meta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    })
}
