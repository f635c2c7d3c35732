//! What every kind of node does the same way: register a Node with its status, and renew its
//! Lease as the kubelet does.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::fence::Fence;
use crate::machine::Machine;

/// The Node annotation by which a node says that its pods are stopped within this many seconds
/// of its last renewal even when its agent process is killed or hangs (`Fence::
/// covers_agent_death`): the servers' failover reads it. Absent: no such promise.
pub const FENCE_DEADLINE_ANNOTATION: &str = "petset.dev/fence-deadline-seconds";

/// How often the node's Lease is renewed (the kubelet's default).
const LEASE_RENEWAL: Duration = Duration::from_secs(10);
/// The first retry of a renewal that failed, and the longest (the kubelet's).
const FIRST_LEASE_RETRY: Duration = Duration::from_millis(200);
const MAX_LEASE_RETRY: Duration = Duration::from_secs(7);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Pods are bookkeeping only.
    Simulated,
    /// Pods are runc containers.
    Runc,
}

/// Now, as Kubernetes writes times (seconds).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// What a node says about itself beyond its kind.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// The pod network's range (`spec.podCIDR`).
    pub pod_cidr: String,
    /// `status.capacity` and `status.allocatable`.
    pub capacity: Value,
    pub allocatable: Value,
}

impl NodeFacts {
    /// A node on this machine: its resources as measured (see [`Machine`]).
    pub fn of_machine(pod_cidr: String, machine: &Machine) -> Self {
        Self {
            pod_cidr,
            capacity: machine.capacity(),
            allocatable: machine.allocatable(),
        }
    }

    /// A simulated node: room for the thousands of bookkeeping pods the scale tests run, as a
    /// kwok node is configured; only its pod range is real. It has ephemeral storage too, so
    /// pods that request some (Bitnami charts' resource presets do) are scheduled.
    pub fn simulated(pod_cidr: String) -> Self {
        let resources = json!({"cpu": "32", "memory": "256Gi", "ephemeral-storage": "1Ti",
            "pods": "10000"});
        Self {
            pod_cidr,
            capacity: resources.clone(),
            allocatable: resources,
        }
    }
}

pub async fn register(
    client: &Client,
    node_name: &str,
    kind: Kind,
    facts: &NodeFacts,
) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let simulated = kind == Kind::Simulated;
    let (runtime, os_image) = if simulated {
        ("simulated://petset", "petset simulated node")
    } else {
        ("runc://petset", "")
    };
    let posting = posting(kind);
    let host = HostFacts::read();
    let os_image = if os_image.is_empty() {
        host.os_image.as_str()
    } else {
        os_image
    };
    let labels = labels(node_name, kind);
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": node_name, "labels": labels},
        "spec": {"podCIDR": facts.pod_cidr, "podCIDRs": [facts.pod_cidr]},
    }))
    .map_err(kube::Error::SerdeError)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // A node registered by an earlier run with another pod range says the current one.
            let registered = nodes.get(node_name).await?;
            let current = registered.spec.and_then(|s| s.pod_cidr);
            if current.as_deref() != Some(facts.pod_cidr.as_str()) {
                let spec =
                    json!({"spec": {"podCIDR": facts.pod_cidr, "podCIDRs": [facts.pod_cidr]}});
                if let Err(error) = nodes
                    .patch(node_name, &PatchParams::default(), &Patch::Merge(spec))
                    .await
                {
                    tracing::warn!(%error, node = node_name, "could not update the node's pod range");
                }
            }
        }
        Err(error) => return Err(error),
    }
    let status = json!({"status": {
        "conditions": conditions(posting, &now()),
        "capacity": facts.capacity,
        "allocatable": facts.allocatable,
        "nodeInfo": {
            "kubeletVersion": "v1.33.0",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": runtime,
            "operatingSystem": "linux",
            "architecture": go_arch(),
            "osImage": os_image,
            "kernelVersion": host.kernel_version,
            "machineID": host.machine_id, "systemUUID": host.system_uuid, "bootID": host.boot_id,
        },
    }});
    nodes
        .patch_status(node_name, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(())
}

/// The Ready condition's message the node posts.
fn posting(kind: Kind) -> &'static str {
    match kind {
        Kind::Simulated => "simulated node is posting ready status",
        Kind::Runc => "kubelet is posting ready status",
    }
}

/// The node's conditions as it posts them: no pressure, and Ready.
fn conditions(posting: &str, now: &str) -> Value {
    json!([
        {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
         "message": "kubelet has sufficient memory available", "lastHeartbeatTime": now, "lastTransitionTime": now},
        {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
         "message": "kubelet has no disk pressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
        {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
         "message": "kubelet has sufficient PID available", "lastHeartbeatTime": now, "lastTransitionTime": now},
        {"type": "Ready", "status": "True", "reason": "KubeletReady",
         "message": posting, "lastHeartbeatTime": now, "lastTransitionTime": now},
    ])
}

/// What the node posts when it finds its Ready condition is not `True` (the server's node
/// lifecycle controller set it `Unknown` while the node was silent); `None` when it is.
/// The node never says it is not ready itself, so any other Ready is someone else's word,
/// and posting its conditions again, with a new heartbeat, is how the kubelet's next status
/// update brings a node back.
pub fn status_to_restore(node: &Node, now: &str) -> Option<Value> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))?;
    if ready.status == "True" {
        return None;
    }
    let simulated = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("node.petset.dev/simulated"))
        .is_some_and(|v| v == "true");
    let kind = if simulated {
        Kind::Simulated
    } else {
        Kind::Runc
    };
    Some(json!({"status": {"conditions": conditions(posting(kind), now)}}))
}

/// Posts the node's conditions again if its Ready is not `True`.
async fn restore_ready(nodes: &Api<Node>, node_name: &str) {
    let node = match nodes.get(node_name).await {
        Ok(node) => node,
        Err(error) => {
            tracing::debug!(%error, node = node_name, "could not read the node");
            return;
        }
    };
    let Some(status) = status_to_restore(&node, &now()) else {
        return;
    };
    match nodes
        .patch_status(node_name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        Ok(_) => tracing::info!(node = node_name, "posted Ready again"),
        Err(error) => tracing::debug!(%error, node = node_name, "could not post Ready again"),
    }
}

/// Registers `node_name` without a pod range, if it is not registered yet, and waits until
/// the server's node IPAM has given it one (`spec.podCIDR`), which it returns. A Node that
/// already has one (a restart) keeps it.
pub async fn await_pod_cidr(
    client: &Client,
    node_name: &str,
    kind: Kind,
) -> Result<String, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": node_name, "labels": labels(node_name, kind)},
    }))
    .map_err(kube::Error::SerdeError)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error),
    }
    let mut told = false;
    loop {
        let current = nodes.get(node_name).await?;
        if let Some(cidr) = current
            .spec
            .and_then(|s| s.pod_cidr)
            .filter(|c| !c.is_empty())
        {
            return Ok(cidr);
        }
        if !told {
            tracing::info!(
                node = node_name,
                "waiting for the server to give the node a pod range"
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the kubelet reports of its machine in `status.nodeInfo` (empty where this machine does
/// not say).
struct HostFacts {
    kernel_version: String,
    os_image: String,
    machine_id: String,
    system_uuid: String,
    boot_id: String,
}

impl HostFacts {
    fn read() -> Self {
        let first_line = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.lines().next().map(|line| line.trim().to_string()))
                .unwrap_or_default()
        };
        Self {
            kernel_version: first_line("/proc/sys/kernel/osrelease"),
            os_image: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|text| pretty_name(&text))
                .unwrap_or_else(|| "Linux".to_string()),
            machine_id: first_line("/etc/machine-id"),
            system_uuid: first_line("/sys/class/dmi/id/product_uuid"),
            boot_id: first_line("/proc/sys/kernel/random/boot_id"),
        }
    }
}

/// `PRETTY_NAME` of an os-release file, unquoted (the kubelet's `osImage`).
fn pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim().trim_matches('"').to_string())
    })
}

/// This machine's architecture as Kubernetes names it (Go's `GOARCH`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The labels a node registers with, as the kubelet's.
fn labels(node_name: &str, kind: Kind) -> Value {
    let mut labels = json!({
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": go_arch(),
    });
    if kind == Kind::Simulated {
        labels["node.petset.dev/simulated"] = json!("true");
    }
    labels
}

/// Where the node API answers, as the kubelet publishes it: `status.addresses` (InternalIP,
/// the address it serves on, and Hostname, the node's name) and
/// `status.daemonEndpoints.kubeletEndpoint.Port`.
pub fn kubelet_endpoint_status(node_name: &str, address: std::net::IpAddr, port: u16) -> Value {
    json!({"status": {
        "addresses": [
            {"type": "InternalIP", "address": address.to_string()},
            {"type": "Hostname", "address": node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
    }})
}

/// Publishes the node API's endpoint on the Node once it is registered (the node's start
/// registers it; this waits for that, retrying). `register` leaves both fields alone, so the
/// two never undo each other whatever their order.
pub async fn publish_kubelet_endpoint(
    client: Client,
    node_name: String,
    address: std::net::IpAddr,
    port: u16,
) {
    let nodes: Api<Node> = Api::all(client);
    let status = kubelet_endpoint_status(&node_name, address, port);
    loop {
        match nodes
            .patch_status(&node_name, &PatchParams::default(), &Patch::Merge(&status))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                tracing::debug!(%error, node = %node_name, "could not publish the node API endpoint yet");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Renews the node's Lease every 10 s, and after each renewal posts the node's conditions
/// again if the server marked it not Ready meanwhile. Without a fence: for nodes that run no
/// containers of their own (the benchmark's); a node's own loop is `keep_fenced_lease`.
pub async fn keep_lease(client: Client, node_name: String) {
    lease_loop(client, node_name, None).await
}

/// As `keep_lease`, telling `fence` when each renewal that succeeded was sent (the fence's
/// watchdog, `Fence::watch`, raises it when none has for its deadline; the watchdog outside
/// the process, `crate::watchdog`, reads the heartbeat `Fence::heartbeat` writes), and keeping
/// the Node's `FENCE_DEADLINE_ANNOTATION` what the fence covers.
pub async fn keep_fenced_lease(client: Client, node_name: String, fence: Fence) {
    lease_loop(client, node_name, Some(fence)).await
}

/// The seconds the node advertises in `FENCE_DEADLINE_ANNOTATION` (rounded up: a promise may
/// be late, not early); `None`: no annotation.
fn advertised_seconds(fence: &Fence) -> Option<u64> {
    fence
        .covers_agent_death()
        .map(|deadline| deadline.as_secs() + u64::from(deadline.subsec_nanos() > 0))
}

/// The merge patch that makes the Node's fence annotation say `seconds` (`None` removes it).
fn fence_annotation_patch(seconds: Option<u64>) -> Value {
    json!({"metadata": {"annotations": {
        FENCE_DEADLINE_ANNOTATION: seconds.map(|s| s.to_string()),
    }}})
}

/// What a Node's fence annotation says.
fn fence_annotation(node: &Node) -> Option<&str> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(FENCE_DEADLINE_ANNOTATION))
        .map(String::as_str)
}

/// Makes the Node's fence annotation say `seconds`, patching it only when it says otherwise.
/// A Node that does not exist promises nothing, which is right when nothing is to be promised.
async fn advertise_fence(
    nodes: &Api<Node>,
    node_name: &str,
    seconds: Option<u64>,
) -> Result<(), kube::Error> {
    let node = match nodes.get(node_name).await {
        Ok(node) => node,
        Err(kube::Error::Api(status)) if status.code == 404 && seconds.is_none() => return Ok(()),
        Err(error) => return Err(error),
    };
    let wanted = seconds.map(|s| s.to_string());
    if fence_annotation(&node) == wanted.as_deref() {
        return Ok(());
    }
    nodes
        .patch(
            node_name,
            &PatchParams::default(),
            &Patch::Merge(fence_annotation_patch(seconds)),
        )
        .await?;
    match &wanted {
        Some(seconds) => {
            tracing::info!(node = node_name, seconds = %seconds, "the node advertises that its fence covers its agent's death")
        }
        None => tracing::info!(node = node_name, "the node no longer advertises a fence"),
    }
    Ok(())
}

/// The wait after a failed renewal: 200 ms doubling to 7 s, as the kubelet's lease controller.
fn retry_after(previous: Option<Duration>) -> Duration {
    previous.map_or(FIRST_LEASE_RETRY, |d| (d * 2).min(MAX_LEASE_RETRY))
}

async fn lease_loop(client: Client, node_name: String, fence: Option<Fence>) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    // At least three renewals per fence deadline (a deadline shorter than 30 s, in tests).
    let period = fence
        .as_ref()
        .map_or(LEASE_RENEWAL, |f| LEASE_RENEWAL.min(f.deadline() / 3));
    let mut retry = None;
    // What the Node's fence annotation is known to say (`None`: not known yet).
    let mut advertised: Option<Option<u64>> = None;
    loop {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(node_name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node_name.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(jiff::Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        // Taken before the request goes out: the server may observe it from then on. Both
        // clocks, the process's for its own fence and the machine's for the watchdog.
        let sent = tokio::time::Instant::now();
        let sent_monotonic = crate::watchdog::monotonic_now();
        let result = tokio::time::timeout(
            period,
            leases.patch(
                &node_name,
                &PatchParams::apply("petset-node").force(),
                &Patch::Apply(&lease),
            ),
        )
        .await;
        let wait = match result {
            Ok(Ok(_)) => {
                if let Some(fence) = &fence {
                    // The watchdog first: the containers that the lowered fence lets start are
                    // covered from their start.
                    fence.heartbeat(sent_monotonic);
                    let wanted = advertised_seconds(fence);
                    if advertised != Some(wanted) {
                        match tokio::time::timeout(
                            period,
                            advertise_fence(&nodes, &node_name, wanted),
                        )
                        .await
                        {
                            Ok(Ok(())) => advertised = Some(wanted),
                            Ok(Err(error)) => {
                                tracing::warn!(%error, node = %node_name, "could not set the node's fence annotation");
                            }
                            Err(_) => {
                                tracing::warn!(node = %node_name, "setting the node's fence annotation timed out");
                            }
                        }
                    }
                    // A Node that may still promise a fence this node does not have (an earlier
                    // run's annotation) starts no container until it says the truth; one that
                    // promises less than it has only delays the servers.
                    if advertised == Some(wanted) || wanted.is_some() {
                        fence.renewed(sent);
                    }
                }
                retry = None;
                // Bounded, so that an API that hangs after a renewal does not stop the next.
                let _ = tokio::time::timeout(period, restore_ready(&nodes, &node_name)).await;
                period
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, "could not renew the node lease");
                (*retry.insert(retry_after(retry))).min(period)
            }
            Err(_) => {
                tracing::debug!("the node lease's renewal timed out");
                (*retry.insert(retry_after(retry))).min(period)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_marked_unknown_posts_ready_again_and_a_ready_one_posts_nothing() {
        let node = |ready: &str, simulated: bool| -> Node {
            serde_json::from_value(json!({
                "metadata": {"name": "n", "labels": if simulated {
                    json!({"node.petset.dev/simulated": "true"}) } else { json!({}) }},
                "status": {"conditions": [{"type": "Ready", "status": ready,
                    "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."}]},
            }))
            .expect("node")
        };
        let now = "2026-12-01T17:00:00Z";
        assert_eq!(status_to_restore(&node("True", false), now), None);
        let restored = status_to_restore(&node("Unknown", true), now).expect("a status");
        let conditions = restored["status"]["conditions"].as_array().expect("list");
        assert_eq!(conditions.len(), 4);
        let ready = &conditions[3];
        assert_eq!(ready["type"], "Ready");
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(ready["message"], "simulated node is posting ready status");
        assert_eq!(ready["lastHeartbeatTime"], now);
        assert!(status_to_restore(&node("False", false), now).is_some());
    }

    #[test]
    fn the_fence_annotation_says_the_deadline_in_whole_seconds_or_goes() {
        assert_eq!(
            fence_annotation_patch(Some(30)),
            json!({"metadata": {"annotations": {"petset.dev/fence-deadline-seconds": "30"}}})
        );
        // A merge patch's null removes the key.
        assert_eq!(
            fence_annotation_patch(None),
            json!({"metadata": {"annotations": {"petset.dev/fence-deadline-seconds": null}}})
        );
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n",
            "annotations": {"petset.dev/fence-deadline-seconds": "30"}}}))
        .expect("node");
        assert_eq!(fence_annotation(&node), Some("30"));
        assert_eq!(fence_annotation(&Node::default()), None);

        let simulated = |deadline| {
            Fence::new(deadline)
                .expect("fence")
                .with_pods_that_die_with_the_agent()
        };
        assert_eq!(
            advertised_seconds(&simulated(Duration::from_secs(30))),
            Some(30)
        );
        assert_eq!(
            advertised_seconds(&simulated(Duration::from_millis(2_500))),
            Some(3),
            "rounded up"
        );
        // Off, or in-process only: no promise.
        assert_eq!(
            advertised_seconds(&Fence::off().with_pods_that_die_with_the_agent()),
            None
        );
        assert_eq!(
            advertised_seconds(&Fence::new(Duration::from_secs(30)).expect("fence")),
            None
        );
    }

    #[test]
    fn failed_renewals_retry_from_200_ms_doubling_to_7_s() {
        let waits: Vec<Duration> =
            std::iter::successors(Some(retry_after(None)), |d| Some(retry_after(Some(*d))))
                .take(8)
                .collect();
        let millis: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [200, 400, 800, 1600, 3200, 6400, 7000, 7000]);
    }

    #[test]
    fn the_os_image_is_the_pretty_name() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            pretty_name(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(pretty_name("ID=debian\n"), None);
    }
}
