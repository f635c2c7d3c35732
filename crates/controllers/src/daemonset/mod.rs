//! The DaemonSet controller, as upstream's `pkg/controller/daemon`: one pod of the set on
//! every node its template may run on (`plan::should_run`), each pinned to its node by a
//! required `matchFields metadata.name` affinity and bound by the scheduler; ControllerRevisions
//! named `<set>-<hash>` with the `controller-revision-hash` label (the revision bytes and hash
//! of `statefulset::revision`, shared); rolling updates by `maxUnavailable` or `maxSurge`, or
//! OnDelete; the status `kubectl rollout status ds/x` reads; `SuccessfulCreate` and
//! `SuccessfulDelete` events. `plan.rs` decides; this file gathers its inputs and acts.

pub mod plan;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::cache::Cache;
use crate::events::Recorder;
use crate::queue::Queue;
use crate::statefulset::plan::is_available;
use crate::statefulset::revision;
use plan::{Daemon, HASH_LABEL, Update};

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    Set(String, String),
    All,
}

fn owner_key(object: &impl Resource) -> Vec<Key> {
    object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.controller == Some(true) && r.kind == "DaemonSet")
        .map(|r| {
            Key::Set(
                object.meta().namespace.clone().unwrap_or_default(),
                r.name.clone(),
            )
        })
        .collect()
}

struct Controller {
    client: Client,
    sets: Cache<DaemonSet>,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    revisions: Cache<ControllerRevision>,
    recorder: Recorder,
}

/// Runs the controller until the task is aborted.
pub async fn run(client: Client) {
    let (queue, mut keys) = Queue::<Key>::new();
    let mut helpers = tokio::task::JoinSet::new();
    let sets = Cache::follow_into(
        &mut helpers,
        &client,
        &queue,
        |set: &DaemonSet| {
            vec![Key::Set(
                set.namespace().unwrap_or_default(),
                set.name_any(),
            )]
        },
        Key::All,
    );
    let pods = Cache::follow_into(&mut helpers, &client, &queue, owner_key, Key::All);
    let nodes = Cache::follow_into(
        &mut helpers,
        &client,
        &queue,
        |_: &Node| vec![Key::All],
        Key::All,
    );
    let revisions = Cache::follow_into(&mut helpers, &client, &queue, owner_key, Key::All);
    sets.ready().await;
    pods.ready().await;
    nodes.ready().await;
    revisions.ready().await;
    let controller = Controller {
        recorder: Recorder::new(client.clone(), "daemonset-controller"),
        client,
        sets,
        pods,
        nodes,
        revisions,
    };
    while let Some(key) = keys.recv().await {
        queue.taken(&key);
        let targets: Vec<(String, String)> = match &key {
            Key::Set(namespace, name) => vec![(namespace.clone(), name.clone())],
            Key::All => controller
                .sets
                .store()
                .state()
                .iter()
                .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
                .collect(),
        };
        for (namespace, name) in targets {
            let Some(set) = controller.sets.get(&namespace, &name) else {
                continue;
            };
            match controller.sync(&set).await {
                Ok(again) => {
                    if let Some(after) = again {
                        queue.add_after(Key::Set(namespace, name), after);
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, set = %name, "could not sync a DaemonSet; retrying");
                    queue.add_after(Key::Set(namespace, name), Duration::from_millis(500));
                }
            }
        }
    }
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Controller {
    async fn sync(&self, set: &DaemonSet) -> Result<Option<Duration>, kube::Error> {
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let namespace = set.namespace().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let set_json = serde_json::to_value(set).map_err(kube::Error::SerdeError)?;
        let template = set_json
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let (hash, collision_count) = self.ensure_revision(set, &set_json, &template).await?;

        // The template as the node filters read it: its own affinity, the daemon tolerations.
        let mut probe = plan::pod_for(&template, &set_json, "", &hash);
        probe["spec"]["affinity"] = template
            .pointer("/spec/affinity")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let probe: Pod = serde_json::from_value(probe).map_err(kube::Error::SerdeError)?;
        let mut nodes: Vec<(String, bool)> = self
            .nodes
            .store()
            .state()
            .iter()
            .map(|n| (n.name_any(), plan::should_run(&probe, n)))
            .collect();
        nodes.sort();

        let min_ready = set
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0);
        let now = jiff::Timestamp::now().as_second();
        let mut by_node: BTreeMap<String, Vec<Daemon>> = BTreeMap::new();
        for pod in self.pods.in_namespace(&namespace) {
            let owned = controlled_by(&pod.metadata, &uid);
            if !owned || pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(node) = target_node(&pod) else {
                continue;
            };
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or_default();
            by_node.entry(node).or_default().push(Daemon {
                name: pod.name_any(),
                hash: pod.labels().get(HASH_LABEL).cloned().unwrap_or_default(),
                ready: crate::statefulset::plan::is_running_and_ready(&pod),
                available: is_available(&pod, min_ready, now),
                failed: phase == "Failed",
                created: pod
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default(),
            });
        }
        let update = update_of(&set_json);
        let (actions, mut counts) = plan::plan(&nodes, &by_node, &hash, &update);
        counts.desired = nodes.iter().filter(|(_, run)| *run).count() as i64;

        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        for node in &actions.create {
            let pod = plan::pod_for(&template, &set_json, node, &hash);
            let pod: Pod = serde_json::from_value(pod).map_err(kube::Error::SerdeError)?;
            match pods.create(&PostParams::default(), &pod).await {
                Ok(created) => self
                    .recorder
                    .pod_created(set.object_ref(&()), &created.name_any()),
                Err(error) => {
                    self.recorder.pod_create_failed(set.object_ref(&()), &error);
                    return Err(error);
                }
            }
        }
        for name in &actions.delete {
            match pods.delete(name, &DeleteParams::default()).await {
                Ok(_) => self.recorder.pod_deleted(set.object_ref(&()), name),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let generation = set.metadata.generation.unwrap_or(0);
        let status = counts.status(generation, collision_count);
        let current = set_json.get("status").cloned().unwrap_or_else(|| json!({}));
        let changed = status
            .as_object()
            .into_iter()
            .flatten()
            .any(|(k, v)| current.get(k).unwrap_or(&json!(0)) != v)
            || (current
                .get("numberUnavailable")
                .is_some_and(|v| v != &json!(0))
                && status.get("numberUnavailable").is_none());
        if changed {
            let mut patch = json!({"status": status});
            if status.get("numberUnavailable").is_none() {
                patch["status"]["numberUnavailable"] = Value::Null;
            }
            let sets: Api<DaemonSet> = Api::namespaced(self.client.clone(), &namespace);
            sets.patch_status(
                &set.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        }
        self.truncate_history(set, &by_node, &hash).await?;
        // Availability comes with time (minReadySeconds) and pods change: look again soon
        // while the set is not settled.
        let settled = actions == plan::Plan::default()
            && counts.updated == counts.desired
            && counts.available == counts.desired;
        Ok((!settled).then_some(Duration::from_secs(1)))
    }

    /// The update revision's hash, making or renumbering its ControllerRevision (a template
    /// equal to an older revision's, as after `rollout undo`, moves that one to the top).
    async fn ensure_revision(
        &self,
        set: &DaemonSet,
        set_json: &Value,
        template: &Value,
    ) -> Result<(String, Option<i64>), kube::Error> {
        let namespace = set.namespace().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let data = revision::patch_of_template(template.clone());
        let bytes = revision::bytes_of(&data);
        let mut collisions = set_json
            .pointer("/status/collisionCount")
            .and_then(Value::as_i64);
        let owned: Vec<ControllerRevision> = self
            .revisions
            .in_namespace(&namespace)
            .iter()
            .filter(|r| controlled_by(&r.metadata, &uid))
            .map(|r| r.as_ref().clone())
            .collect();
        let top = owned.iter().map(|r| r.revision).max().unwrap_or(0);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &namespace);
        for _ in 0..8 {
            let count = collisions.unwrap_or(0) as i32;
            let hash = revision::hash(&bytes, count);
            let name = revision::name(&set.name_any(), &hash);
            let existing = match self.revisions.get(&namespace, &name) {
                Some(found) => Some(found.as_ref().clone()),
                None => api.get_opt(&name).await?,
            };
            match existing {
                Some(found) if found.data.as_ref().map(|d| &d.0) == Some(&data) => {
                    if found.revision < top {
                        let patch = json!({"revision": top + 1});
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await?;
                    }
                    return Ok((hash, collisions));
                }
                Some(_) => {
                    // Another template has this name: upstream's hash collision.
                    collisions = Some(i64::from(count) + 1);
                }
                None => {
                    let mut labels = template
                        .pointer("/metadata/labels")
                        .cloned()
                        .unwrap_or_else(|| json!({}));
                    labels[HASH_LABEL] = json!(hash);
                    let made = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
                        "metadata": {"name": name, "namespace": namespace, "labels": labels,
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                "name": set.name_any(), "uid": uid,
                                "controller": true, "blockOwnerDeletion": true}]},
                        "data": data, "revision": top + 1});
                    let made: ControllerRevision =
                        serde_json::from_value(made).map_err(kube::Error::SerdeError)?;
                    match api.create(&PostParams::default(), &made).await {
                        Ok(_) => return Ok((hash, collisions)),
                        Err(kube::Error::Api(status)) if status.code == 409 => continue,
                        Err(error) => return Err(error),
                    }
                }
            }
        }
        Err(kube::Error::Service(
            "too many ControllerRevision hash collisions".into(),
        ))
    }

    /// Keeps `revisionHistoryLimit` revisions besides the update one and those live pods use.
    async fn truncate_history(
        &self,
        set: &DaemonSet,
        pods: &BTreeMap<String, Vec<Daemon>>,
        hash: &str,
    ) -> Result<(), kube::Error> {
        let namespace = set.namespace().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0) as usize;
        let live: Vec<&str> = pods.values().flatten().map(|p| p.hash.as_str()).collect();
        let mut old: Vec<ControllerRevision> = self
            .revisions
            .in_namespace(&namespace)
            .iter()
            .filter(|r| controlled_by(&r.metadata, &uid))
            .filter(|r| {
                let label = r.labels().get(HASH_LABEL).map(String::as_str).unwrap_or("");
                label != hash && !live.contains(&label)
            })
            .map(|r| r.as_ref().clone())
            .collect();
        if old.len() <= limit {
            return Ok(());
        }
        old.sort_by_key(|r| r.revision);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &namespace);
        for gone in &old[..old.len() - limit] {
            match api.delete(&gone.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// Whether the object's controller owner reference names `uid`.
fn controlled_by(meta: &kube::api::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Upstream's `GetTargetNodeName`: the bound node, else the node the pin names.
fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(node.clone());
    }
    let value = serde_json::to_value(spec.affinity.as_ref()?).ok()?;
    petset_api::json::items(
        &value,
        "/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
    )
    .iter()
    .flat_map(|term| petset_api::json::items(term, "/matchFields"))
    .find(|r| text(r, "/key") == "metadata.name" && text(r, "/operator") == "In")
    .and_then(|r| r.pointer("/values/0"))
    .and_then(Value::as_str)
    .map(str::to_string)
}

fn update_of(set: &Value) -> Update {
    if text(set, "/spec/updateStrategy/type") == "OnDelete" {
        return Update::OnDelete;
    }
    let rolling = set
        .pointer("/spec/updateStrategy/rollingUpdate")
        .cloned()
        .unwrap_or_else(|| json!({}));
    Update::RollingUpdate {
        max_unavailable: rolling.get("maxUnavailable").cloned().unwrap_or(json!(1)),
        max_surge: rolling.get("maxSurge").cloned().unwrap_or(json!(0)),
    }
}
