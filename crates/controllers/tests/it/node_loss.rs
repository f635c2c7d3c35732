//! Fenced failover of a lost node's StatefulSet pods, with one-second fence deadlines and a
//! short stop allowance: a fenced node whose Lease stops loses its StatefulSet pods, which are
//! made again on a live node; an unfenced node and a node that renews in time keep theirs; a
//! pod whose claim is local to the lost node waits (told once) unless its set opts in to an
//! empty claim. Every "nothing happened" is checked after something later did happen (another
//! node, silent no shorter, was failed over), never after a sleep.

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use petset_controllers::nodeloss::{
    self, FENCE_DEADLINE_ANNOTATION, FENCED_TAINT, NodeLossConfig, ON_NODE_LOSS_ANNOTATION,
    RECREATE_CLAIM,
};
use serde_json::{Value, json};

use crate::support::{
    Running, cluster, create, events_about, eventually, eventually_equal, heartbeat, node_of,
    register_node, wait_exists, wait_gone,
};

/// Lost 1.5 s after the last renewal of a node with a one-second deadline.
fn quick() -> NodeLossConfig {
    NodeLossConfig {
        stop_allowance: Duration::from_millis(500),
        check_period: Duration::from_millis(50),
    }
}

/// A Ready node that renews its Lease until the answer is dropped; fenced with a deadline of
/// one second when `fenced`.
async fn node(client: &Client, name: &str, fenced: bool) -> Running {
    register_node(client, name, true).await;
    if fenced {
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {FENCE_DEADLINE_ANNOTATION: "1"}}}),
                ),
            )
            .await
            .expect("annotate the node");
    }
    heartbeat(client, name)
}

/// A StatefulSet `name` of one replica, with a claim template `www` when `claims`, annotated
/// with `annotations`.
async fn create_set(client: &Client, name: &str, claims: bool, annotations: Value) -> StatefulSet {
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    let templates = if claims {
        json!([{"metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}}])
    } else {
        json!([])
    };
    create(
        &sets,
        json!({"metadata": {"name": name, "annotations": annotations},
               "spec": {"serviceName": name, "replicas": 1,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                        "volumeClaimTemplates": templates}}),
    )
    .await
}

/// A pod of `set` bound to `node`, as its controller and the scheduler would make it (for the
/// tests that run neither), mounting `claim` if given.
async fn create_member(
    client: &Client,
    set: &StatefulSet,
    pod: &str,
    node: &str,
    claim: Option<&str>,
) {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let volumes: Vec<Value> = claim
        .map(|c| json!({"name": "www", "persistentVolumeClaim": {"claimName": c}}))
        .into_iter()
        .collect();
    create(
        &pods,
        json!({"metadata": {"name": pod, "labels": {"app": set.name_any()},
                   "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                       "name": set.name_any(), "uid": set.uid(), "controller": true,
                       "blockOwnerDeletion": true}]},
               "spec": {"nodeName": node, "volumes": volumes,
                        "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
}

/// A claim bound both ways to a volume pinned to `node`, as the provisioner leaves them.
async fn create_local_claim(client: &Client, claim: &str, node: &str) {
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let volume = format!("pvc-{claim}");
    let made = create(
        &claims,
        json!({"metadata": {"name": claim},
               "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": volume,
                        "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    create(
        &volumes,
        json!({"metadata": {"name": volume},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                        "hostPath": {"path": "/nonexistent/petset-it"},
                        "claimRef": {"namespace": "default", "name": claim, "uid": made.uid()},
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}),
    )
    .await;
}

async fn uid_of<K>(api: &Api<K>, name: &str) -> String
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get(name).await.expect("get").uid().expect("uid")
}

/// The events about `object` with `reason`: their messages and counts.
async fn events(client: &Client, object: &str, reason: &str) -> Vec<(String, i32)> {
    events_about(client, object)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .map(|e| (e.message.unwrap_or_default(), e.count.unwrap_or(0)))
        .collect()
}

/// Waits until the pod is bound to `node`.
async fn wait_on_node(client: &Client, pod: &str, node: &str) {
    let what = format!("{pod} is on {node}");
    eventually_equal(&what, node.to_string(), || node_of(client, pod)).await;
}

/// Waits until an event about `object` has `reason` and a message containing `part`.
async fn wait_for_event_with(client: &Client, object: &str, reason: &str, part: &str) -> String {
    eventually(&format!("a {reason} event on {object}"), || async {
        let found = events(client, object, reason).await;
        found
            .iter()
            .map(|(message, _)| message.clone())
            .find(|m| m.contains(part))
            .ok_or_else(|| format!("{found:?}"))
    })
    .await
}

fn taints(node: &Node) -> Vec<(String, String)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.effect))
        .collect()
}

/// Waits until `name` is there with another uid than `old`, and answers it.
async fn wait_replaced<K>(api: &Api<K>, name: &str, old: &str) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} is made again"), || async {
        match api.get_opt(name).await.map_err(|e| e.to_string())? {
            Some(object) if object.uid().as_deref() != Some(old) => Ok(object),
            Some(_) => Err("still the old one".to_string()),
            None => Err("gone".to_string()),
        }
    })
    .await
}

#[tokio::test]
async fn a_fenced_node_that_stops_renewing_loses_its_statefulset_pod_to_a_live_node() {
    let (_cluster, client) = cluster().await;
    let lost = node(&client, "node-a", true).await;
    let _controllers = Running::default()
        .with(petset_controllers::statefulset::run(client.clone()))
        .with(petset_controllers::scheduler::run(client.clone()))
        .with(nodeloss::run(client.clone(), quick()));
    create_set(&client, "web", false, json!({})).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    wait_exists(&pods, "web-0").await;
    wait_on_node(&client, "web-0", "node-a").await;
    // A pod of no StatefulSet beside it, which only the taint manager may evict.
    create(
        &pods,
        json!({"metadata": {"name": "plain"},
               "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let _live = node(&client, "node-b", true).await;
    let old = uid_of(&pods, "web-0").await;

    drop(lost);
    let replacement = wait_replaced(&pods, "web-0", &old).await;
    wait_on_node(&client, "web-0", "node-b").await;
    assert!(replacement.metadata.deletion_timestamp.is_none());
    let message = wait_for_event_with(&client, "web-0", "NodeLostFailover", "node-a").await;
    assert!(
        message.starts_with("Node node-a stopped renewing its Lease ")
            && message.ends_with(
                "s ago and fenced itself after its 1s deadline: deleting the pod at once so StatefulSet web makes it again on another node"
            ),
        "{message}"
    );
    wait_for_event_with(
        &client,
        "web",
        "NodeLostFailover",
        "Pod web-0 was on node node-a",
    )
    .await;
    wait_for_event_with(
        &client,
        "node-a",
        "NodeLostFenced",
        "tainted petset.dev/fenced",
    )
    .await;
    let nodes: Api<Node> = Api::all(client.clone());
    let node_a = nodes.get("node-a").await.expect("node-a");
    assert!(
        taints(&node_a).contains(&(FENCED_TAINT.to_string(), "NoSchedule".to_string())),
        "{:?}",
        taints(&node_a)
    );
    let plain = pods.get("plain").await.expect("the plain pod stays");
    assert!(plain.metadata.deletion_timestamp.is_none());
}

#[tokio::test]
async fn a_node_without_the_fence_annotation_keeps_its_pods() {
    let (_cluster, client) = cluster().await;
    let unfenced = node(&client, "node-x", false).await;
    let fenced = node(&client, "node-y", true).await;
    let _live = node(&client, "node-z", true).await;
    let _controller = Running::default().with(nodeloss::run(client.clone(), quick()));
    let set = create_set(&client, "web", false, json!({})).await;
    create_member(&client, &set, "web-0", "node-x", None).await;
    create_member(&client, &set, "web-1", "node-y", None).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let kept = uid_of(&pods, "web-0").await;

    // node-x goes silent first, so it has been silent longest when node-y is failed over.
    drop(unfenced);
    drop(fenced);
    wait_gone(&pods, "web-1").await;
    let web_0 = pods.get("web-0").await.expect("web-0 stays");
    assert_eq!(web_0.uid().as_deref(), Some(kept.as_str()));
    assert!(web_0.metadata.deletion_timestamp.is_none());
    let nodes: Api<Node> = Api::all(client.clone());
    assert_eq!(
        taints(&nodes.get("node-x").await.expect("node-x")),
        Vec::new()
    );
    assert!(
        events(&client, "web-0", "NodeLostFailover")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_pod_whose_claim_is_local_to_the_lost_node_waits_with_one_event_until_its_set_opts_in() {
    let (_cluster, client) = cluster().await;
    let holding = node(&client, "node-a", true).await;
    let other = node(&client, "node-b", true).await;
    let _live = node(&client, "node-c", true).await;
    let _controller = Running::default().with(nodeloss::run(client.clone(), quick()));
    let web = create_set(&client, "web", true, json!({})).await;
    create_local_claim(&client, "www-web-0", "node-a").await;
    create_member(&client, &web, "web-0", "node-a", Some("www-web-0")).await;
    let cache = create_set(&client, "cache", false, json!({})).await;
    create_member(&client, &cache, "cache-0", "node-b", None).await;

    drop(holding);
    let message = wait_for_event_with(&client, "web-0", "NodeLostWaitingForVolume", "node-a").await;
    assert!(
        message.ends_with(
            "but the pod waits for it: claim www-web-0 is bound to a local volume there. To make it again on another node with an empty volume instead, run: kubectl annotate statefulset web -n default petset.dev/on-node-loss=recreate-claim"
        ),
        "{message}"
    );
    wait_for_event_with(
        &client,
        "web",
        "NodeLostWaitingForVolume",
        "Pod web-0 waits for node node-a",
    )
    .await;
    // node-b goes silent after node-a was found lost: once cache-0 is failed over, node-a has
    // been looked at many times since.
    drop(other);
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    wait_gone(&pods, "cache-0").await;
    let web_0 = pods.get("web-0").await.expect("web-0 waits");
    assert!(web_0.metadata.deletion_timestamp.is_none());
    for object in ["web-0", "web"] {
        let told = events(&client, object, "NodeLostWaitingForVolume").await;
        assert_eq!(told.len(), 1, "{object}: {told:?}");
        assert_eq!(told[0].1, 1, "{object}: told once: {told:?}");
    }

    // The set opts in: the claim and the pod go (no controller here makes them again).
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {ON_NODE_LOSS_ANNOTATION: RECREATE_CLAIM}}}),
        ),
    )
    .await
    .expect("annotate the set");
    wait_gone(&pods, "web-0").await;
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let claim = claims.get_opt("www-web-0").await.expect("get");
    assert!(
        claim.is_none_or(|c| c.metadata.deletion_timestamp.is_some()),
        "the claim is deleted"
    );
    wait_for_event_with(
        &client,
        "www-web-0",
        "NodeLostClaimReplaced",
        "The claim's volume pvc-www-web-0 is local to node node-a",
    )
    .await;
}

#[tokio::test]
async fn recreate_claim_replaces_a_local_claim_with_an_empty_one_on_a_live_node() {
    let (_cluster, client) = cluster().await;
    let lost = node(&client, "node-a", true).await;
    let root = std::env::temp_dir().join(format!(
        "petset-it-volumes-never-made-{}",
        std::process::id()
    ));
    let _controllers = Running::default()
        .with(petset_controllers::statefulset::run(client.clone()))
        .with(petset_controllers::scheduler::run(client.clone()))
        .with(petset_controllers::volumes::run(client.clone(), root))
        .with(petset_controllers::protection::run(client.clone()))
        .with(nodeloss::run(client.clone(), quick()));
    create_set(
        &client,
        "web",
        true,
        json!({ON_NODE_LOSS_ANNOTATION: RECREATE_CLAIM}),
    )
    .await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let bound_on = |node: &'static str, not_uid: Option<String>| {
        let (claims, volumes) = (claims.clone(), volumes.clone());
        async move {
            let claim = claims.get("www-web-0").await.map_err(|e| e.to_string())?;
            if not_uid.is_some() && claim.uid() == not_uid {
                return Err("still the old claim".to_string());
            }
            let volume = claim
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .ok_or("not bound")?;
            let volume = volumes.get(&volume).await.map_err(|e| e.to_string())?;
            let pinned =
                serde_json::to_value(volume.spec.as_ref().and_then(|s| s.node_affinity.clone()))
                    .map_err(|e| e.to_string())?;
            let host = pinned
                .pointer("/required/nodeSelectorTerms/0/matchExpressions/0/values/0")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if host == node {
                Ok(claim)
            } else {
                Err(format!("pinned to {host:?}"))
            }
        }
    };
    let old_claim = eventually("www-web-0 is bound on node-a", || bound_on("node-a", None)).await;
    wait_on_node(&client, "web-0", "node-a").await;
    let old_pod = uid_of(&pods, "web-0").await;
    let _live = node(&client, "node-b", true).await;

    drop(lost);
    let new_claim = eventually("a new www-web-0 is bound on node-b", || {
        bound_on("node-b", old_claim.uid())
    })
    .await;
    assert_ne!(new_claim.uid(), old_claim.uid());
    wait_replaced(&pods, "web-0", &old_pod).await;
    wait_on_node(&client, "web-0", "node-b").await;
    wait_for_event_with(
        &client,
        "web-0",
        "NodeLostFailover",
        "deleting claim www-web-0 (local to that node) and the pod at once, so StatefulSet web makes it again on another node with empty volumes (petset.dev/on-node-loss=recreate-claim)",
    )
    .await;
    wait_for_event_with(
        &client,
        "www-web-0",
        "NodeLostClaimReplaced",
        "deleting the claim so StatefulSet web replaces it with an empty one on a live node",
    )
    .await;
}

#[tokio::test]
async fn a_lease_renewed_again_in_time_keeps_the_pods_and_a_node_that_returns_is_untainted() {
    let (_cluster, client) = cluster().await;
    let pausing = node(&client, "node-a", true).await;
    let stopping = node(&client, "node-b", true).await;
    // Lost 3 s after the last renewal: node-a's pause of a tenth of that is far from it.
    let config = NodeLossConfig {
        stop_allowance: Duration::from_secs(2),
        ..quick()
    };
    let _controller = Running::default().with(nodeloss::run(client.clone(), config));
    let set = create_set(&client, "web", false, json!({})).await;
    create_member(&client, &set, "web-0", "node-a", None).await;
    create_member(&client, &set, "web-1", "node-b", None).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let kept = uid_of(&pods, "web-0").await;

    drop(pausing);
    drop(stopping);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _resumed = heartbeat(&client, "node-a");
    wait_gone(&pods, "web-1").await;
    let web_0 = pods.get("web-0").await.expect("web-0 stays");
    assert_eq!(web_0.uid().as_deref(), Some(kept.as_str()));
    assert!(web_0.metadata.deletion_timestamp.is_none());

    // node-b comes back: it is untainted, and says so.
    let nodes: Api<Node> = Api::all(client.clone());
    let tainted = nodes.get("node-b").await.expect("node-b");
    assert!(taints(&tainted).contains(&(FENCED_TAINT.to_string(), "NoSchedule".to_string())));
    let _back = heartbeat(&client, "node-b");
    eventually("node-b is untainted", || async {
        let node = nodes.get("node-b").await.map_err(|e| e.to_string())?;
        if taints(&node).is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", taints(&node)))
        }
    })
    .await;
    wait_for_event_with(&client, "node-b", "NodeReturned", "renewed its Lease again").await;
}
