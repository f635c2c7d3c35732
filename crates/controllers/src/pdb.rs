//! The disruption controller, as upstream's `pkg/controller/disruption`: every
//! PodDisruptionBudget's status says how many of the pods it selects are healthy, how many it
//! wants healthy, how many pods are expected and how many may be disrupted now, with the
//! `DisruptionAllowed` condition. The eviction subresource spends `disruptionsAllowed` and
//! records the pod in `disruptedPods`; this controller forgets such an entry once the pod is
//! being deleted, or two minutes after it was not (a `NotDeleted` event on the pod).
//!
//! The arithmetic is `petset_api::disruption`'s. A percentage, or `maxUnavailable`, counts
//! against the scale of the pods' controllers, found through their controller owner reference
//! and read generically: any served kind with a `scale` subresource, from its `spec.replicas`
//! (a ReplicaSet owned by a Deployment counts as the Deployment, as upstream). A sync that
//! cannot find them allows no disruption (`SyncFailed`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kube::{Client, Resource, ResourceExt};
use petset_api::disruption::{self, Health};
use serde_json::Value;

use crate::cache::Cache;
use crate::events::Recorder;
use crate::queue::Queue;

/// What one sync looks at: the budgets of a namespace, or of every namespace after a relist.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    Namespace(String),
    All,
}

/// The controller of a pod as its owner reference names it.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Owner {
    api_version: String,
    kind: String,
    name: String,
    uid: String,
}

fn controller_of(pod: &Value) -> Option<Owner> {
    petset_api::json::items(pod, "/metadata/ownerReferences")
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| {
            let field = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("").to_string();
            Owner {
                api_version: field("apiVersion"),
                kind: field("kind"),
                name: field("name"),
                uid: field("uid"),
            }
        })
}

/// Runs the controller until the task is aborted.
pub async fn run(client: Client) {
    let (queue, mut keys) = Queue::<Key>::new();
    let mut helpers = tokio::task::JoinSet::new();
    let budgets = Cache::follow_into(
        &mut helpers,
        &client,
        &queue,
        |budget: &PodDisruptionBudget| vec![Key::Namespace(budget.namespace().unwrap_or_default())],
        Key::All,
    );
    let pods = Cache::follow_into(
        &mut helpers,
        &client,
        &queue,
        |pod: &Pod| vec![Key::Namespace(pod.namespace().unwrap_or_default())],
        Key::All,
    );
    budgets.ready().await;
    pods.ready().await;
    let recorder = Recorder::new(client.clone(), "controllermanager");
    while let Some(key) = keys.recv().await {
        queue.taken(&key);
        let namespaces: Vec<String> = match &key {
            Key::Namespace(namespace) => vec![namespace.clone()],
            Key::All => {
                let mut all: Vec<String> = budgets
                    .store()
                    .state()
                    .iter()
                    .map(|b| b.namespace().unwrap_or_default())
                    .collect();
                all.sort();
                all.dedup();
                all
            }
        };
        for namespace in namespaces {
            let namespace_budgets = budgets.in_namespace(&namespace);
            // Most namespaces have no budget: their pods are not even looked at (a pod event
            // would otherwise cost every pod of the namespace, O(n²) for a scale-up).
            if namespace_budgets.is_empty() {
                continue;
            }
            let selected: Vec<Value> = pods
                .in_namespace(&namespace)
                .iter()
                .filter_map(|p| serde_json::to_value(p.as_ref()).ok())
                .collect();
            for budget in namespace_budgets {
                let Ok(budget_json) = serde_json::to_value(budget.as_ref()) else {
                    continue;
                };
                match sync(&client, &recorder, &budget, &budget_json, &selected).await {
                    Ok(Some(after)) => queue.add_after(Key::Namespace(namespace.clone()), after),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::debug!(%error, budget = %budget.name_any(), "could not sync a PodDisruptionBudget; retrying");
                        queue.add_after(
                            Key::Namespace(namespace.clone()),
                            Duration::from_millis(500),
                        );
                    }
                }
            }
        }
    }
}

/// One budget's `trySync` (and `failSafe` when it fails for another reason than a conflict);
/// answers when to look again for a pending disruption.
async fn sync(
    client: &Client,
    recorder: &Recorder,
    budget: &PodDisruptionBudget,
    budget_json: &Value,
    namespace_pods: &[Value],
) -> Result<Option<Duration>, kube::Error> {
    let pods: Vec<Value> = namespace_pods
        .iter()
        .filter(|p| disruption::selects(budget_json, p))
        .cloned()
        .collect();
    if pods.is_empty() {
        recorder.record(
            budget.object_ref(&()),
            "Normal",
            "NoPods",
            "No matching pods found".to_string(),
        );
    }
    let now = Timestamp::now();
    let now_text = petset_api::time::format(now);
    let scale = if disruption::needs_scale(budget_json) {
        match expected_scale(client, &pods).await {
            Ok(scale) => Some(scale),
            Err(Failure::Api(error)) => return Err(error),
            Err(Failure::Other(message)) => {
                recorder.record(
                    budget.object_ref(&()),
                    "Warning",
                    "CalculateExpectedPodCountFailed",
                    format!("Failed to calculate the number of expected pods: {message}"),
                );
                let status = disruption::fail_safe(budget_json, &message, &now_text);
                write_status(client, budget_json, status).await?;
                return Ok(None);
            }
        }
    } else {
        None
    };
    let (expected, desired) = match disruption::expected_and_desired(budget_json, pods.len(), scale)
    {
        Ok(counts) => counts,
        Err(message) => {
            let status = disruption::fail_safe(budget_json, &message, &now_text);
            write_status(client, budget_json, status).await?;
            return Ok(None);
        }
    };
    let (disrupted, recheck, overdue) = disruption::disrupted_pods(budget_json, &pods, now);
    for name in overdue {
        if let Some(pod) = pods
            .iter()
            .find(|p| p.pointer("/metadata/name").and_then(Value::as_str) == Some(&name))
            && let Ok(pod) = serde_json::from_value::<Pod>(pod.clone())
        {
            // Upstream names the namespace twice in this message.
            let namespace = budget.namespace().unwrap_or_default();
            recorder.record(
                pod.object_ref(&()),
                "Warning",
                "NotDeleted",
                format!(
                    "Pod was expected by PDB {namespace}/{namespace} to be deleted but it wasn't"
                ),
            );
        }
    }
    let health = Health {
        current_healthy: disruption::current_healthy(&pods, &disrupted, now),
        desired_healthy: desired,
        expected_pods: expected,
        disrupted_pods: disrupted,
    };
    if let Some(status) = disruption::status_after(budget_json, &health, &now_text) {
        write_status(client, budget_json, status).await?;
    }
    Ok(recheck.map(|at| {
        Duration::try_from(at.duration_since(now))
            .unwrap_or_default()
            .saturating_add(Duration::from_millis(100))
    }))
}

/// Replaces the budget's status under the resourceVersion it was computed from; a conflict is
/// an error the caller retries after the newer budget arrives.
async fn write_status(client: &Client, budget: &Value, status: Value) -> Result<(), kube::Error> {
    let namespace = budget
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let name = budget
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut updated = budget.clone();
    updated["status"] = status;
    let api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    let typed: PodDisruptionBudget =
        serde_json::from_value(updated).map_err(kube::Error::SerdeError)?;
    api.replace_status(name, &PostParams::default(), &typed)
        .await
        .map(|_| ())
}

enum Failure {
    Api(kube::Error),
    Other(String),
}

/// Upstream's `getExpectedScale`: the summed scale of the controllers of `pods`, each once.
async fn expected_scale(client: &Client, pods: &[Value]) -> Result<i64, Failure> {
    // By the uid of the controller counted (a Deployment for its ReplicaSets' pods).
    let mut scales: HashMap<String, i64> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    for pod in pods {
        let Some(owner) = controller_of(pod) else {
            // Unmanaged pods count for nothing (upstream's `UnmanagedPods`).
            continue;
        };
        if !seen.insert(owner.uid.clone()) {
            continue;
        }
        let namespace = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let pod_name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match scale_of(client, namespace, &owner, true).await? {
            Some((uid, scale)) => {
                scales.insert(uid, scale);
            }
            None => {
                return Err(Failure::Other(format!(
                    "found no controllers for pod {pod_name:?}"
                )));
            }
        }
    }
    Ok(scales.values().sum())
}

/// The `(uid, spec.replicas)` of the controller `owner` names when it is served with a scale
/// subresource and has that uid; `follow` goes from a ReplicaSet to its Deployment.
fn scale_of<'a>(
    client: &'a Client,
    namespace: &'a str,
    owner: &'a Owner,
    follow: bool,
) -> futures::future::BoxFuture<'a, Result<Option<(String, i64)>, Failure>> {
    Box::pin(async move {
        let (group, version) = match owner.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", owner.api_version.as_str()),
        };
        let Some(resource) = petset_api::resources::RESOURCES.iter().find(|r| {
            r.group == group
                && r.version == version
                && r.kind == owner.kind
                && r.subresources.iter().any(|s| s.name == "scale")
        }) else {
            return Ok(None);
        };
        let api_resource = ApiResource {
            group: group.to_string(),
            version: version.to_string(),
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            plural: resource.plural.to_string(),
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &api_resource);
        let object = match api.get_opt(&owner.name).await {
            Ok(Some(object)) => object,
            Ok(None) => return Ok(None),
            Err(error) => return Err(Failure::Api(error)),
        };
        if object.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
            return Ok(None);
        }
        let json = serde_json::to_value(&object).unwrap_or_default();
        if follow
            && owner.kind == "ReplicaSet"
            && let Some(deployment) = controller_of(&json).filter(|o| o.kind == "Deployment")
            && let Some(found) = scale_of(client, namespace, &deployment, false).await?
        {
            return Ok(Some(found));
        }
        let replicas = json
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        Ok(Some((owner.uid.clone(), replicas)))
    })
}
