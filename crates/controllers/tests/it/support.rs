//! What every test here needs: a cluster, fake Nodes, the controllers under test, and waiting
//! for a condition (never for a duration).

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use petset_apiserver::test_cluster::TestCluster;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// A generous bound for a condition that holds within milliseconds when nothing is wrong.
const PATIENCE: Duration = Duration::from_secs(30);

/// Controllers that run until the test drops them.
#[derive(Default)]
pub struct Running(Vec<JoinHandle<()>>);

impl Running {
    /// Also runs `controller`.
    pub fn with(mut self, controller: impl Future<Output = ()> + Send + 'static) -> Self {
        self.0.push(tokio::spawn(controller));
        self
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Waits until `check` answers `Some`, and returns that; fails the test after `PATIENCE`
/// with `what` and the last answer's reason.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: still not so after {PATIENCE:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// An object from its JSON.
pub fn object<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("a valid object")
}

/// Creates `value` through `api` and returns it as stored.
pub async fn create<K>(api: &Api<K>, value: Value) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &object(value))
        .await
        .expect("create")
}

/// Registers a Node as an agent would, labelled with its hostname, Ready or not, with room
/// for the pods of a test (4 CPUs, 8 GiB, 110 pods).
pub async fn register_node(client: &Client, name: &str, ready: bool) {
    let nodes: Api<Node> = Api::all(client.clone());
    create(
        &nodes,
        json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
    )
    .await;
    let status = if ready { "True" } else { "False" };
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "conditions": [{"type": "Ready", "status": status, "reason": "KubeletReady"}],
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})),
        )
        .await
        .expect("node status");
}

/// Sets a pod's IP and Ready condition, as its node would.
pub async fn set_pod_status(client: &Client, name: &str, ip: &str, ready: bool) {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let ready = if ready { "True" } else { "False" };
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": ready}]}})),
    )
    .await
    .expect("pod status");
}

/// The events about the object `name` in `default`.
pub async fn events_about(client: &Client, name: &str) -> Vec<Event> {
    let events: Api<Event> = Api::default_namespaced(client.clone());
    events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .collect()
}

/// The reasons and messages of the events about the object `name` in `default`.
pub async fn events_of(client: &Client, name: &str) -> Vec<(String, String)> {
    events_about(client, name)
        .await
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

/// A cluster and its client.
pub async fn cluster() -> (TestCluster, Client) {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    (cluster, client)
}

/// Waits until `read` answers `want`.
pub async fn eventually_equal<T, F, Fut>(what: &str, want: T, mut read: F)
where
    T: PartialEq + std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    eventually(what, || {
        let seen = read();
        async {
            match seen.await? {
                seen if seen == want => Ok(()),
                seen => Err(format!("{seen:?}")),
            }
        }
    })
    .await
}

/// Waits until an event about `object` has this reason and message.
pub async fn wait_for_event(client: &Client, object: &str, reason: &str, message: &str) {
    let wanted = (reason.to_string(), message.to_string());
    eventually(&format!("a {reason} event on {object}"), || async {
        let events = events_of(client, object).await;
        if events.contains(&wanted) {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await
}

/// Waits until an event about `object` satisfies `wanted`. Controllers record events through
/// a queue of their own, so an event may land after the change it reports is visible.
pub async fn wait_for_event_matching(
    client: &Client,
    object: &str,
    what: &str,
    wanted: impl Fn(&Event) -> bool,
) {
    eventually(what, || async {
        let events = events_about(client, object).await;
        if events.iter().any(&wanted) {
            Ok(())
        } else {
            Err(format!(
                "{:?}",
                events
                    .iter()
                    .map(|e| (&e.reason, &e.message))
                    .collect::<Vec<_>>()
            ))
        }
    })
    .await
}

/// Waits until `name` exists, and returns it.
pub async fn wait_exists<K>(api: &Api<K>, name: &str) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} exists"), || async {
        api.get_opt(name)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "not yet".to_string())
    })
    .await
}

/// Waits until `name` is gone.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    eventually(&format!("{name} is gone"), || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(object)) => Err(format!(
                "still there: {:?}",
                object.meta().deletion_timestamp
            )),
            Err(error) => Err(error.to_string()),
        }
    })
    .await
}

/// The pod's node, once it has one.
pub async fn node_of(client: &Client, pod: &str) -> Result<String, String> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod = pods.get(pod).await.map_err(|e| e.to_string())?;
    let spec = pod.spec.unwrap_or_default();
    spec.node_name.ok_or_else(|| {
        let conditions = pod.status.and_then(|s| s.conditions).unwrap_or_default();
        format!("not scheduled; conditions {conditions:?}")
    })
}

/// The message of the pod's `PodScheduled=False` condition, once it has one.
pub async fn unschedulable_message(client: &Client, pod: &str) -> Result<String, String> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod = pods.get(pod).await.map_err(|e| e.to_string())?;
    pod.status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .and_then(|c| c.message)
        .ok_or_else(|| "no PodScheduled=False yet".to_string())
}

/// Renews the node's Lease every 100 ms, until dropped.
pub fn heartbeat(client: &Client, name: &str) -> Running {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let name = name.to_string();
    Running::default().with(async move {
        loop {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                         "renewTime": petset_api::time::now_micro()}});
            let _ = leases
                .patch(
                    &name,
                    &PatchParams::apply("test-node").force(),
                    &Patch::Apply(&lease),
                )
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
