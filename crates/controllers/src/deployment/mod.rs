//! The Deployment controller: owns one replica set per pod template (named
//! `<deployment>-<pod-template-hash>`), rolls from the old sets to the new one as the strategy
//! says (RollingUpdate within maxSurge/maxUnavailable, or Recreate), keeps revisions and their
//! history in annotations, scales proportionally, prunes old sets beyond
//! `revisionHistoryLimit`, and reports Progressing/Available conditions (upstream's
//! `pkg/controller/deployment`).
//!
//! Replica sets come from a watch-fed cache; a sync first waits until the cache shows the
//! deployment's own last replica-set writes. The deployment is read from the API. `plan` holds
//! the arithmetic.

pub mod plan;
pub mod rollback;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as Selector, ObjectMeta, Time};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use petset_api::selector::LabelSelector;
use serde_json::{Value, json};

use crate::cache::{Cache, version_of};
use crate::events::Recorder;
use crate::owners::{Selectors, selects};
use crate::queue::Queue;
use crate::replicaset::{adopt, controller_ref, controller_uid, release};
use crate::runner::{self, Retry};

pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations of the deployment that its replica sets do not copy.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
const RESYNC: Duration = Duration::from_secs(30);
const CATCH_UP: Duration = Duration::from_secs(2);

type Key = (String, String);

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Collision(String),
}

/// Runs the controller until the task is aborted.
pub async fn run(client: Client) {
    let (queue, keys) = Queue::<Key>::new();
    let selectors = Arc::new(Selectors::default());
    let mut helpers = tokio::task::JoinSet::new();
    let deployments = selectors.follow_owners(&mut helpers, &client, &queue, selector_of);
    let sets = selectors.follow_owned(&mut helpers, &client, &queue, owners_of);
    selectors.resync_every(&mut helpers, &queue, RESYNC);
    deployments.ready().await;
    sets.ready().await;
    let controller = Controller {
        recorder: Recorder::new(client.clone(), "deployment-controller"),
        client,
        sets,
        wrote: Mutex::new(HashMap::new()),
    };
    let controller = &controller;
    let retry = Retry::exponential(Duration::from_millis(5), Duration::from_secs(1000));
    runner::run("deployment", queue, keys, retry, |key: Key| async move {
        controller.sync(&key.0, &key.1).await
    })
    .await;
}

fn selector_of(d: &Deployment) -> Option<LabelSelector> {
    let selector = serde_json::to_value(&d.spec.as_ref()?.selector).ok()?;
    LabelSelector::from_structured(&selector).ok()
}

/// The deployment controlling a replica set, or for an orphan those selecting it.
fn owners_of(selectors: &Selectors, rs: &ReplicaSet) -> Vec<Key> {
    selectors.owners_of(rs, |owner| owner.kind == "Deployment")
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn status_of(rs: &ReplicaSet) -> (i32, i32, i32) {
    let status = rs.status.clone().unwrap_or_default();
    (
        status.replicas,
        status.ready_replicas.unwrap_or(0),
        status.available_replicas.unwrap_or(0),
    )
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.annotations()
        .get(REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn annotation_number(rs: &ReplicaSet, name: &str) -> Option<i32> {
    rs.annotations().get(name).and_then(|r| r.parse().ok())
}

/// A template as JSON without the pod-template-hash label (upstream's `EqualIgnoreHash`).
fn template_without_hash(template: Option<&PodTemplateSpec>) -> Value {
    let mut value = template
        .and_then(|t| serde_json::to_value(t).ok())
        .unwrap_or_else(|| json!({}));
    if let Some(labels) = value
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(HASH_LABEL);
        if labels.is_empty()
            && let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("labels");
        }
    }
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut)
        && meta.is_empty()
        && let Some(map) = value.as_object_mut()
    {
        map.remove("metadata");
    }
    value
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// The deployment being synced, with what its rollout needs at hand.
struct Rollout {
    deployment: Deployment,
    desired: i32,
    surge: i32,
    unavailable: i32,
    new: Option<ReplicaSet>,
    /// Oldest first.
    old: Vec<ReplicaSet>,
    /// Conditions set on the way, merged into the status written at the end.
    conditions: Vec<DeploymentCondition>,
}

impl Rollout {
    fn all(&self) -> impl Iterator<Item = &ReplicaSet> {
        self.new.iter().chain(self.old.iter())
    }

    fn all_replicas(&self) -> i32 {
        self.all().map(replicas).sum()
    }

    fn name(&self) -> String {
        self.deployment.name_any()
    }

    fn recreate(&self) -> bool {
        self.deployment
            .spec
            .as_ref()
            .and_then(|s| s.strategy.as_ref())
            .and_then(|s| s.type_.as_deref())
            == Some("Recreate")
    }
}

struct Controller {
    client: Client,
    recorder: Recorder,
    sets: Cache<ReplicaSet>,
    wrote: Mutex<HashMap<Key, u64>>,
}

impl Controller {
    fn wrote_set(&self, key: &Key, rs: &ReplicaSet) {
        if let Ok(mut wrote) = self.wrote.lock() {
            let newest = wrote.entry(key.clone()).or_default();
            *newest = (*newest).max(version_of(rs));
        }
    }

    async fn sync(&self, namespace: &str, name: &str) -> Result<Option<Duration>, SyncError> {
        let key = (namespace.to_string(), name.to_string());
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let last = self
            .wrote
            .lock()
            .ok()
            .and_then(|w| w.get(&key).copied())
            .unwrap_or(0);
        self.sets.caught_up(last, CATCH_UP).await;
        let Some(deployment) = api.get_opt(name).await? else {
            if let Ok(mut wrote) = self.wrote.lock() {
                wrote.remove(&key);
            }
            return Ok(None);
        };
        let Some(selector) = selector_of(&deployment) else {
            return Ok(None);
        };
        let spec = deployment.spec.clone().unwrap_or_default();
        if selector.is_empty() {
            self.recorder.record(
                deployment.object_ref(&()),
                "Warning",
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.".into(),
            );
            return Ok(None);
        }
        let sets = self.claim_sets(&key, &deployment, &selector).await;
        if deployment.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        // As upstream, a paused deployment keeps its rollback for later; the write of a
        // rollback brings the deployment back to this queue.
        if !spec.paused.unwrap_or(false)
            && let Some(revision) = rollback::requested(&deployment)
        {
            self.roll_back(&api, &deployment, &sets, revision).await?;
            return Ok(None);
        }
        let desired = spec.replicas.unwrap_or(1);
        let rolling = spec
            .strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref());
        let (surge, unavailable) =
            if spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate") {
                (0, 0)
            } else {
                plan::fenceposts(
                    rolling.and_then(|r| r.max_surge.as_ref()),
                    rolling.and_then(|r| r.max_unavailable.as_ref()),
                    desired,
                )
            };
        let mut rollout = Rollout {
            deployment,
            desired,
            surge,
            unavailable,
            new: None,
            old: Vec::new(),
            conditions: Vec::new(),
        };
        let paused = spec.paused.unwrap_or(false);
        self.paused_condition(&mut rollout, paused);
        let scaling = self.scaling_event(&rollout, &sets);
        let mut requeue = None;
        if paused || scaling {
            self.find_sets(&key, &mut rollout, sets, false).await?;
            self.scale(&key, &mut rollout).await?;
            if paused {
                self.cleanup(&rollout).await?;
            }
        } else if rollout.recreate() {
            self.find_sets(&key, &mut rollout, sets, false).await?;
            let scaled = self.scale_old_down_to(&key, &mut rollout, |_| 0).await?;
            if !scaled && !self.old_pods_running(&rollout).await? {
                if rollout.new.is_none() {
                    let all: Vec<ReplicaSet> = rollout.old.drain(..).collect();
                    self.find_sets(&key, &mut rollout, all, true).await?;
                }
                let desired = rollout.desired;
                if let Some(new) = rollout.new.clone() {
                    self.scale_set(&key, &mut rollout, &new, desired, true)
                        .await?;
                }
            } else {
                requeue = Some(Duration::from_secs(1));
            }
            if self.complete(&rollout) {
                self.cleanup(&rollout).await?;
            }
        } else {
            self.find_sets(&key, &mut rollout, sets, true).await?;
            self.rolling(&key, &mut rollout).await?;
            if self.complete(&rollout) {
                self.cleanup(&rollout).await?;
            }
        }
        let deadline = self.write_status(&api, &mut rollout, paused).await?;
        Ok(requeue.or(deadline))
    }

    /// Upstream's `rollback`: the deployment takes the template (and the annotations) of the
    /// set of the revision asked for, and the request goes in any case, in one write under
    /// the resourceVersion read.
    async fn roll_back(
        &self,
        api: &Api<Deployment>,
        deployment: &Deployment,
        sets: &[ReplicaSet],
        revision: i64,
    ) -> Result<(), SyncError> {
        let name = deployment.name_any();
        let current = template_without_hash(deployment.spec.as_ref().map(|s| &s.template));
        let mut next = deployment.clone();
        let mut annotations = next.annotations().clone();
        annotations.remove(rollback::ROLLBACK_TO);
        let (type_, reason, message) = match rollback::decide(revision, &current, sets) {
            rollback::Step::Restore(rs, revision) => {
                if let Some(mut template) = rs.spec.as_ref().and_then(|s| s.template.clone()) {
                    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut())
                    {
                        labels.remove(HASH_LABEL);
                    }
                    if let Some(spec) = next.spec.as_mut() {
                        spec.template = template;
                    }
                }
                // The set's own annotations come back with its template (upstream's
                // `SetDeploymentAnnotationsTo`).
                annotations.retain(|key, _| NOT_COPIED.contains(&key.as_str()));
                for (key, value) in rs.annotations() {
                    if !NOT_COPIED.contains(&key.as_str()) {
                        annotations.insert(key.clone(), value.clone());
                    }
                }
                (
                    "Normal",
                    "DeploymentRollback",
                    format!("Rolled back deployment {name:?} to revision {revision}"),
                )
            }
            rollback::Step::Unchanged => (
                "Warning",
                "DeploymentRollbackTemplateUnchanged",
                format!(
                    "The rollback revision contains the same template as current deployment {name:?}"
                ),
            ),
            rollback::Step::NotFound(message) => (
                "Warning",
                "DeploymentRollbackRevisionNotFound",
                message.to_string(),
            ),
        };
        next.metadata.annotations = Some(annotations);
        api.replace(&name, &PostParams::default(), &next).await?;
        self.recorder
            .record(deployment.object_ref(&()), type_, reason, message);
        Ok(())
    }

    /// The deployment's replica sets: owned ones that still match, and adopted orphans.
    async fn claim_sets(
        &self,
        key: &Key,
        d: &Deployment,
        selector: &LabelSelector,
    ) -> Vec<ReplicaSet> {
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &key.0);
        let uid = d.uid().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let mut claimed = Vec::new();
        for rs in self.sets.in_namespace(&key.0) {
            let owner = controller_uid(rs.as_ref());
            if owner.as_ref().is_some_and(|o| *o != uid) {
                continue;
            }
            let selected = selects(selector, rs.labels());
            match owner {
                Some(_) if selected => claimed.push(rs.as_ref().clone()),
                Some(_) if !deleting => match release(&api, rs.as_ref(), &uid).await {
                    Ok(released) => self.wrote_set(key, &released),
                    Err(error) => tracing::debug!(%error, "could not release a replica set"),
                },
                None if selected && !deleting && rs.metadata.deletion_timestamp.is_none() => {
                    match adopt(&api, rs.as_ref(), d).await {
                        Ok(adopted) => {
                            self.wrote_set(key, &adopted);
                            claimed.push(adopted);
                        }
                        Err(error) => tracing::debug!(%error, "could not adopt a replica set"),
                    }
                }
                _ => {}
            }
        }
        claimed
    }

    /// Sets `Progressing` to DeploymentPaused/DeploymentResumed when `paused` changed.
    fn paused_condition(&self, rollout: &mut Rollout, paused: bool) {
        let current = condition(&rollout.deployment, "Progressing");
        let marked_paused =
            current.is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        if paused && !marked_paused {
            rollout.conditions.push(new_condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".into(),
            ));
        } else if !paused && marked_paused {
            rollout.conditions.push(new_condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".into(),
            ));
        }
    }

    /// Whether an active set was sized for another replica count (upstream's
    /// `isScalingEvent`).
    fn scaling_event(&self, rollout: &Rollout, sets: &[ReplicaSet]) -> bool {
        sets.iter()
            .filter(|rs| replicas(rs) > 0)
            .any(|rs| annotation_number(rs, DESIRED_REPLICAS).is_some_and(|d| d != rollout.desired))
    }

    /// Splits `sets` into the new one (the template's) and the old ones, creating the new one
    /// when asked and absent, and brings revisions up to date (upstream's
    /// `getAllReplicaSetsAndSyncRevision`).
    async fn find_sets(
        &self,
        key: &Key,
        rollout: &mut Rollout,
        mut sets: Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(), SyncError> {
        let template = rollout.deployment.spec.as_ref().map(|s| s.template.clone());
        let wanted = template_without_hash(template.as_ref());
        sets.sort_by(|a, b| {
            a.metadata
                .creation_timestamp
                .cmp(&b.metadata.creation_timestamp)
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
        let new_index = sets.iter().position(|rs| {
            template_without_hash(rs.spec.as_ref().and_then(|s| s.template.as_ref())) == wanted
        });
        let new = new_index.map(|i| sets.remove(i));
        let max_old = sets.iter().map(revision_of).max().unwrap_or(0);
        rollout.old = sets;
        let revision = max_old + 1;
        match new {
            Some(existing) => {
                let updated = self.annotate_new(key, rollout, existing, revision).await?;
                self.set_deployment_revision(rollout, &updated).await?;
                let reason_is = |r: &str| {
                    condition(&rollout.deployment, "Progressing")
                        .is_some_and(|c| c.reason.as_deref() == Some(r))
                };
                if condition(&rollout.deployment, "Progressing").is_none()
                    || (!reason_is("ReplicaSetUpdated")
                        && !reason_is("NewReplicaSetAvailable")
                        && !reason_is("FoundNewReplicaSet")
                        && !reason_is("ProgressDeadlineExceeded")
                        && !reason_is("NewReplicaSetCreated")
                        && !reason_is("DeploymentPaused"))
                {
                    rollout.conditions.push(new_condition(
                        "Progressing",
                        "True",
                        "FoundNewReplicaSet",
                        format!("Found new replica set \"{}\"", updated.name_any()),
                    ));
                }
                rollout.new = Some(updated);
            }
            None if create => {
                let created = self
                    .create_new(key, rollout, template.unwrap_or_default(), revision)
                    .await?;
                self.set_deployment_revision(rollout, &created).await?;
                rollout.new = Some(created);
            }
            None => {}
        }
        Ok(())
    }

    /// Brings the new set's annotations up to date: the deployment's own, the revision (and
    /// the history of revisions it had), desired and max replicas.
    async fn annotate_new(
        &self,
        key: &Key,
        rollout: &Rollout,
        rs: ReplicaSet,
        revision: i64,
    ) -> Result<ReplicaSet, SyncError> {
        let mut annotations = rs.annotations().clone();
        self.new_annotations(rollout, &mut annotations, revision, false);
        let min_ready = rollout
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds);
        let spec_min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if annotations == *rs.annotations() && min_ready.unwrap_or(0) == spec_min_ready.unwrap_or(0)
        {
            return Ok(rs);
        }
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &key.0);
        let patch = json!({"metadata": {"annotations": annotations,
            "resourceVersion": rs.resource_version()},
            "spec": {"minReadySeconds": min_ready.unwrap_or(0)}});
        let updated = api
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
        self.wrote_set(key, &updated);
        Ok(updated)
    }

    /// The annotations of a new set (upstream's `SetNewReplicaSetAnnotations`); `fresh` for a
    /// set being created, whose replica counts are set where it is made.
    fn new_annotations(
        &self,
        rollout: &Rollout,
        annotations: &mut BTreeMap<String, String>,
        revision: i64,
        fresh: bool,
    ) {
        for (name, value) in rollout.deployment.annotations() {
            if !NOT_COPIED.contains(&name.as_str()) {
                annotations.insert(name.clone(), value.clone());
            }
        }
        let old_revision = annotations
            .get(REVISION)
            .and_then(|r| r.parse::<i64>().ok());
        if old_revision.is_none_or(|old| old < revision) {
            annotations.insert(REVISION.into(), revision.to_string());
            if let Some(old) = old_revision {
                let history = match annotations.get(REVISION_HISTORY) {
                    Some(history) if !history.is_empty() => format!("{history},{old}"),
                    _ => old.to_string(),
                };
                annotations.insert(REVISION_HISTORY.into(), history);
            }
        }
        if fresh || !annotations.contains_key(DESIRED_REPLICAS) {
            annotations.insert(DESIRED_REPLICAS.into(), rollout.desired.to_string());
            annotations.insert(
                MAX_REPLICAS.into(),
                (rollout.desired + rollout.surge).to_string(),
            );
        }
    }

    /// Copies the new set's revision onto the deployment's annotation.
    async fn set_deployment_revision(
        &self,
        rollout: &mut Rollout,
        rs: &ReplicaSet,
    ) -> Result<(), SyncError> {
        let Some(revision) = rs.annotations().get(REVISION).cloned() else {
            return Ok(());
        };
        if rollout.deployment.annotations().get(REVISION) == Some(&revision) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(
            self.client.clone(),
            &rollout.deployment.namespace().unwrap_or_default(),
        );
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}});
        rollout.deployment = api
            .patch(
                &rollout.name(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
        Ok(())
    }

    async fn create_new(
        &self,
        key: &Key,
        rollout: &mut Rollout,
        template: PodTemplateSpec,
        revision: i64,
    ) -> Result<ReplicaSet, SyncError> {
        let d = &rollout.deployment;
        let spec = d.spec.clone().unwrap_or_default();
        let collision_count = d.status.as_ref().and_then(|s| s.collision_count);
        let template_value = serde_json::to_value(&template).unwrap_or_default();
        let hash = plan::template_hash(&template_value, collision_count);
        let mut template = template;
        let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
        let mut labels = meta.labels.clone().unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        meta.labels = Some(labels.clone());
        let mut selector: Selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(HASH_LABEL.into(), hash.clone());
        let all = rollout.all_replicas();
        let new_replicas = if rollout.recreate() {
            rollout.desired
        } else {
            plan::new_replicas_rolling(rollout.desired, rollout.surge, all, 0)
        };
        let mut annotations = BTreeMap::new();
        self.new_annotations(rollout, &mut annotations, revision, true);
        let name: String = d.name_any();
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{name}-{hash}")),
                namespace: d.namespace(),
                labels: Some(labels),
                annotations: Some(annotations),
                owner_references: Some(vec![controller_ref(d)]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(new_replicas),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &key.0);
        match api.create(&PostParams::default(), &rs).await {
            Ok(created) => {
                self.wrote_set(key, &created);
                if new_replicas > 0 {
                    self.recorder.record(
                        rollout.deployment.object_ref(&()),
                        "Normal",
                        "ScalingReplicaSet",
                        format!(
                            "Scaled up replica set {} from 0 to {new_replicas}",
                            created.name_any()
                        ),
                    );
                }
                rollout.conditions.push(new_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetCreated",
                    format!("Created new replica set \"{}\"", created.name_any()),
                ));
                Ok(created)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api.get(&rs.name_any()).await?;
                let ours = controller_uid(&existing) == rollout.deployment.uid();
                let same =
                    template_without_hash(existing.spec.as_ref().and_then(|s| s.template.as_ref()))
                        == template_without_hash(
                            rs.spec.as_ref().and_then(|s| s.template.as_ref()),
                        );
                if ours && same {
                    return Ok(existing);
                }
                // Another set has the name: try the next hash.
                let count = collision_count.unwrap_or(0).saturating_add(1);
                let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &key.0);
                deployments
                    .patch_status(
                        &rollout.name(),
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"collisionCount": count}})),
                    )
                    .await?;
                Err(SyncError::Collision(format!(
                    "hash collision for replica set {}",
                    rs.name_any()
                )))
            }
            Err(error) => {
                self.recorder.record(
                    rollout.deployment.object_ref(&()),
                    "Warning",
                    "ReplicaSetCreateError",
                    format!(
                        "Failed to create new replica set \"{}\": {error}",
                        rs.name_any()
                    ),
                );
                Err(error.into())
            }
        }
    }

    /// Sizes `rs` to `count` (and its annotations to the deployment's size), with upstream's
    /// event; the rollout's copy of the set is replaced by the answer.
    async fn scale_set(
        &self,
        key: &Key,
        rollout: &mut Rollout,
        rs: &ReplicaSet,
        count: i32,
        annotate: bool,
    ) -> Result<bool, SyncError> {
        let from = replicas(rs);
        let desired = rollout.desired.to_string();
        let max = (rollout.desired + rollout.surge).to_string();
        let annotations_stale = annotate
            && (rs.annotations().get(DESIRED_REPLICAS) != Some(&desired)
                || rs.annotations().get(MAX_REPLICAS) != Some(&max));
        if from == count && !annotations_stale {
            return Ok(false);
        }
        let mut patch = json!({"metadata": {"resourceVersion": rs.resource_version()},
            "spec": {"replicas": count}});
        if annotate {
            patch["metadata"]["annotations"] =
                json!({DESIRED_REPLICAS: desired, MAX_REPLICAS: max});
        }
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &key.0);
        let updated = api
            .patch(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await?;
        self.wrote_set(key, &updated);
        if from != count {
            let direction = if count > from { "up" } else { "down" };
            self.recorder.record(
                rollout.deployment.object_ref(&()),
                "Normal",
                "ScalingReplicaSet",
                format!(
                    "Scaled {direction} replica set {} from {from} to {count}",
                    rs.name_any()
                ),
            );
        }
        let uid = rs.uid();
        if rollout.new.as_ref().is_some_and(|n| n.uid() == uid) {
            rollout.new = Some(updated);
        } else if let Some(old) = rollout.old.iter_mut().find(|o| o.uid() == uid) {
            *old = updated;
        }
        Ok(from != count)
    }

    /// Scales each old set to what `target` says; whether any changed.
    async fn scale_old_down_to(
        &self,
        key: &Key,
        rollout: &mut Rollout,
        target: impl Fn(&ReplicaSet) -> i32,
    ) -> Result<bool, SyncError> {
        let mut scaled = false;
        for rs in rollout.old.clone() {
            if replicas(&rs) == 0 {
                continue;
            }
            let count = target(&rs);
            scaled |= self.scale_set(key, rollout, &rs, count, true).await?;
        }
        Ok(scaled)
    }

    /// Whether any old pod is still there (a Recreate waits for none).
    async fn old_pods_running(&self, rollout: &Rollout) -> Result<bool, SyncError> {
        if rollout.old.iter().any(|rs| status_of(rs).0 > 0) {
            return Ok(true);
        }
        let namespace = rollout.deployment.namespace().unwrap_or_default();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let old_uids: Vec<String> = rollout.old.iter().filter_map(|rs| rs.uid()).collect();
        if old_uids.is_empty() {
            return Ok(false);
        }
        let Some(selector) = selector_of(&rollout.deployment) else {
            return Ok(false);
        };
        let listed = pods
            .list(&ListParams::default().labels(&selector.to_string()))
            .await?;
        Ok(listed.items.iter().any(|pod| {
            controller_uid(pod).is_some_and(|uid| old_uids.contains(&uid))
                && !matches!(
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Failed" | "Succeeded")
                )
        }))
    }

    /// One step of a rolling update: grow the new set, then shrink the old ones.
    async fn rolling(&self, key: &Key, rollout: &mut Rollout) -> Result<(), SyncError> {
        if let Some(new) = rollout.new.clone() {
            let target = if replicas(&new) > rollout.desired {
                rollout.desired
            } else {
                plan::new_replicas_rolling(
                    rollout.desired,
                    rollout.surge,
                    rollout.all_replicas(),
                    replicas(&new),
                )
            };
            self.scale_set(key, rollout, &new, target, true).await?;
        }
        let old_count: i32 = rollout.old.iter().map(replicas).sum();
        if old_count == 0 {
            return Ok(());
        }
        let (new_replicas, new_available) = rollout
            .new
            .as_ref()
            .map_or((0, 0), |n| (replicas(n), status_of(n).2));
        let mut budget = plan::max_scaled_down(
            rollout.all_replicas(),
            rollout.desired,
            rollout.unavailable,
            new_replicas,
            new_available,
        );
        if budget <= 0 {
            return Ok(());
        }
        // First the old pods that are not available anyway.
        for rs in rollout.old.clone() {
            if budget <= 0 {
                break;
            }
            let (count, available) = (replicas(&rs), status_of(&rs).2);
            if count == 0 || available >= count {
                continue;
            }
            let down = budget.min(count - available);
            self.scale_set(key, rollout, &rs, count - down, true)
                .await?;
            budget -= down;
        }
        // Then available ones, as long as enough stay available.
        let min_available = rollout.desired - rollout.unavailable;
        let available: i32 = rollout.all().map(|rs| status_of(rs).2).sum();
        if available <= min_available {
            return Ok(());
        }
        let mut left = available - min_available;
        for rs in rollout.old.clone() {
            if left <= 0 {
                break;
            }
            let count = replicas(&rs);
            if count == 0 {
                continue;
            }
            let down = count.min(left);
            self.scale_set(key, rollout, &rs, count - down, true)
                .await?;
            left -= down;
        }
        Ok(())
    }

    /// Sizes the sets for a new replica count (upstream's `scale`): one active set takes it
    /// all; otherwise the change is shared in proportion to the sets' sizes.
    async fn scale(&self, key: &Key, rollout: &mut Rollout) -> Result<(), SyncError> {
        let active: Vec<ReplicaSet> = rollout
            .all()
            .filter(|rs| replicas(rs) > 0)
            .cloned()
            .collect();
        let single = match active.len() {
            0 => rollout.new.clone().or_else(|| rollout.old.last().cloned()),
            1 => active.first().cloned(),
            _ => None,
        };
        if let Some(rs) = single {
            let desired = rollout.desired;
            self.scale_set(key, rollout, &rs, desired, true).await?;
            return Ok(());
        }
        let saturated = rollout.new.as_ref().is_some_and(|n| {
            replicas(n) == rollout.desired
                && annotation_number(n, DESIRED_REPLICAS) == Some(rollout.desired)
                && status_of(n).2 == rollout.desired
        });
        if saturated {
            self.scale_old_down_to(key, rollout, |_| 0).await?;
            return Ok(());
        }
        if rollout.recreate() {
            return Ok(());
        }
        let total: i32 = active.iter().map(replicas).sum();
        let allowed = if rollout.desired > 0 {
            rollout.desired + rollout.surge
        } else {
            0
        };
        let to_add = allowed - total;
        let mut ordered = active;
        // Larger sets first, the newer first among equals; the reverse when shrinking.
        ordered.sort_by(|a, b| {
            replicas(b).cmp(&replicas(a)).then_with(|| {
                b.metadata
                    .creation_timestamp
                    .cmp(&a.metadata.creation_timestamp)
            })
        });
        if to_add < 0 {
            ordered.reverse();
        }
        let mut added = 0;
        let mut sizes: Vec<(ReplicaSet, i32)> = Vec::new();
        for rs in &ordered {
            let max = annotation_number(rs, MAX_REPLICAS).unwrap_or(
                rollout
                    .deployment
                    .status
                    .as_ref()
                    .map_or(0, |s| s.replicas.unwrap_or(0)),
            );
            let change = plan::proportion(replicas(rs), max, allowed, to_add, added);
            added += change;
            sizes.push((rs.clone(), replicas(rs) + change));
        }
        if let Some(first) = sizes.first_mut()
            && added != to_add
        {
            first.1 = (first.1 + to_add - added).max(0);
        }
        for (rs, size) in sizes {
            self.scale_set(key, rollout, &rs, size.max(0), true).await?;
        }
        Ok(())
    }

    /// Whether the rollout is done: every replica updated and available.
    fn complete(&self, rollout: &Rollout) -> bool {
        let status = computed_status(rollout);
        status.updated_replicas == Some(rollout.desired)
            && status.replicas == Some(rollout.desired)
            && status.available_replicas == Some(rollout.desired)
    }

    /// Deletes the oldest empty sets beyond `revisionHistoryLimit`.
    async fn cleanup(&self, rollout: &Rollout) -> Result<(), SyncError> {
        let limit = rollout
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let mut alive: Vec<&ReplicaSet> = rollout
            .old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = alive
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        if excess == 0 {
            return Ok(());
        }
        alive.sort_by_key(|rs| revision_of(rs));
        let namespace = rollout.deployment.namespace().unwrap_or_default();
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &namespace);
        for rs in alive.into_iter().take(excess) {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if status_of(rs).0 != 0
                || replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            crate::guarded::delete(&api, &rs.name_any(), &rs.uid().unwrap_or_default()).await?;
        }
        Ok(())
    }

    /// Writes the status the sets add up to, with the conditions; returns when to look again
    /// for the progress deadline.
    async fn write_status(
        &self,
        api: &Api<Deployment>,
        rollout: &mut Rollout,
        paused: bool,
    ) -> Result<Option<Duration>, SyncError> {
        let mut status = computed_status(rollout);
        let stored = rollout.deployment.status.clone().unwrap_or_default();
        status.collision_count = stored.collision_count;
        let mut conditions = stored.conditions.clone().unwrap_or_default();
        for condition in rollout.conditions.drain(..) {
            set_condition(&mut conditions, condition);
        }
        let available_enough =
            status.available_replicas.unwrap_or(0) >= rollout.desired - rollout.unavailable;
        set_condition(
            &mut conditions,
            if available_enough {
                new_condition(
                    "Available",
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.".into(),
                )
            } else {
                new_condition(
                    "Available",
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.".into(),
                )
            },
        );
        let deadline = rollout
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.progress_deadline_seconds)
            .unwrap_or(600);
        let mut requeue = None;
        let progressing = conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .cloned();
        let paused_now = progressing
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some("DeploymentPaused"));
        if !paused && !paused_now {
            let new_name = rollout.new.as_ref().map(|n| n.name_any());
            let complete = status.updated_replicas == Some(rollout.desired)
                && status.replicas == Some(rollout.desired)
                && status.available_replicas == Some(rollout.desired)
                && status.observed_generation >= rollout.deployment.metadata.generation;
            let progressed = status.updated_replicas.unwrap_or(0)
                > stored.updated_replicas.unwrap_or(0)
                || status.replicas.unwrap_or(0) - status.updated_replicas.unwrap_or(0)
                    < stored.replicas.unwrap_or(0) - stored.updated_replicas.unwrap_or(0)
                || status.ready_replicas.unwrap_or(0) > stored.ready_replicas.unwrap_or(0)
                || status.available_replicas.unwrap_or(0) > stored.available_replicas.unwrap_or(0);
            if let Some(new_name) = new_name {
                if complete {
                    set_condition(
                        &mut conditions,
                        new_condition(
                            "Progressing",
                            "True",
                            "NewReplicaSetAvailable",
                            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                        ),
                    );
                } else if progressed {
                    let mut updated = new_condition(
                        "Progressing",
                        "True",
                        "ReplicaSetUpdated",
                        format!("ReplicaSet \"{new_name}\" is progressing."),
                    );
                    if let Some(current) = &progressing
                        && current.status == "True"
                    {
                        updated.last_transition_time = current.last_transition_time.clone();
                    }
                    force_condition(&mut conditions, updated);
                } else if let Some(current) = &progressing
                    && !matches!(
                        current.reason.as_deref(),
                        Some("NewReplicaSetAvailable" | "ProgressDeadlineExceeded")
                    )
                {
                    let from = current
                        .last_update_time
                        .as_ref()
                        .map_or(0, |t| t.0.as_second());
                    let left = from + i64::from(deadline) - jiff::Timestamp::now().as_second();
                    if left < 0 {
                        set_condition(
                            &mut conditions,
                            new_condition(
                                "Progressing",
                                "False",
                                "ProgressDeadlineExceeded",
                                format!("ReplicaSet \"{new_name}\" has timed out progressing."),
                            ),
                        );
                    } else {
                        requeue = Some(Duration::from_secs(u64::try_from(left).unwrap_or(0) + 1));
                    }
                }
            }
        }
        // Available before Progressing, in the order upstream's first sync adds them.
        conditions.sort_by_key(|c| if c.type_ == "Progressing" { 1 } else { 0 });
        status.conditions = Some(conditions);
        if status_equal(&status, &stored) {
            return Ok(requeue);
        }
        let patch = json!({"status": status});
        match api
            .patch_status(
                &rollout.name(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Ok(requeue),
            Err(error) if crate::errors::is_not_found(&error) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

/// Equal, apart from the times of conditions that did not change otherwise.
fn status_equal(a: &DeploymentStatus, b: &DeploymentStatus) -> bool {
    let strip = |s: &DeploymentStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_update_time = None;
            c.last_transition_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

/// The counts the sets add up to (upstream's `calculateStatus`).
fn computed_status(rollout: &Rollout) -> DeploymentStatus {
    let sum = |f: fn(&ReplicaSet) -> i32| rollout.all().map(f).sum::<i32>();
    let replicas_total = sum(|rs| status_of(rs).0);
    let ready = sum(|rs| status_of(rs).1);
    let available = sum(|rs| status_of(rs).2);
    let updated = rollout.new.as_ref().map_or(0, |n| status_of(n).0);
    DeploymentStatus {
        observed_generation: rollout.deployment.metadata.generation,
        replicas: Some(replicas_total),
        updated_replicas: Some(updated),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((rollout.desired - available).max(0)),
        ..DeploymentStatus::default()
    }
}

fn condition<'a>(d: &'a Deployment, type_: &str) -> Option<&'a DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn new_condition(type_: &str, status: &str, reason: &str, message: String) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(now()),
        last_transition_time: Some(now()),
    }
}

/// Sets a condition unless one of the type says the same already (upstream's
/// `SetDeploymentCondition`: the transition time is kept when the status is).
fn set_condition(conditions: &mut Vec<DeploymentCondition>, mut condition: DeploymentCondition) {
    if let Some(current) = conditions.iter().find(|c| c.type_ == condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
}

/// Replaces a condition even when it says the same (a progressing rollout's update time).
fn force_condition(conditions: &mut Vec<DeploymentCondition>, condition: DeploymentCondition) {
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_compare_without_the_hash_label() {
        let mut a: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}}))
        .expect("as the test set it up");
        let b = a.clone();
        a.metadata
            .as_mut()
            .expect("as the test set it up")
            .labels
            .as_mut()
            .expect("as the test set it up")
            .insert(HASH_LABEL.into(), "abc".into());
        assert_eq!(
            template_without_hash(Some(&a)),
            template_without_hash(Some(&b))
        );
        let only_hash: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {HASH_LABEL: "x"}}}))
        .expect("as the test set it up");
        assert_eq!(
            template_without_hash(Some(&only_hash)),
            template_without_hash(Some(&PodTemplateSpec::default()))
        );
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let mut conditions = Vec::new();
        let mut first = new_condition("Progressing", "True", "NewReplicaSetCreated", "a".into());
        first.last_transition_time = Some(Time(
            jiff::Timestamp::from_second(5).expect("as the test set it up"),
        ));
        set_condition(&mut conditions, first);
        set_condition(
            &mut conditions,
            new_condition("Progressing", "True", "ReplicaSetUpdated", "b".into()),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].reason.as_deref(), Some("ReplicaSetUpdated"));
        assert_eq!(
            conditions[0]
                .last_transition_time
                .as_ref()
                .expect("as the test set it up")
                .0
                .as_second(),
            5
        );
        set_condition(
            &mut conditions,
            new_condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                "c".into(),
            ),
        );
        assert_ne!(
            conditions[0]
                .last_transition_time
                .as_ref()
                .expect("as the test set it up")
                .0
                .as_second(),
            5
        );
    }
}
