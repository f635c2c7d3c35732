//! The simulated node (`petset up --node-runtime simulated`), like kwok: it registers a Node
//! and keeps its Lease, and marks the pods bound to it Running and Ready without running
//! anything. Pod IPs come from the pod CIDR (`--pod-cidr`) and are bookkeeping only: nothing
//! ever dials them.
//!
//! Knobs the acceptance suites use:
//! - pod annotation `simulation.petset.dev/ready: "false"`: Running but not Ready;
//! - an image tagged `never-ready`: never Ready;
//! - pod annotation `simulation.petset.dev/ready-after-ms: "N"`: Ready N ms after Running.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use petset_runtime::network::Cidr;
use serde_json::{Value, json};

use crate::pods::{ContainerView, PodStatusView, container_status, pod_status};

const READY_ANNOTATION: &str = "simulation.petset.dev/ready";
const READY_AFTER_ANNOTATION: &str = "simulation.petset.dev/ready-after-ms";
const NEVER_READY_TAG: &str = ":never-ready";
/// How long a simulated pod takes to terminate (at most its grace period).
const TERMINATION: Duration = Duration::from_millis(1000);

/// Pod IPs handed out, by pod uid.
struct Addresses {
    by_uid: HashMap<String, Ipv4Addr>,
    next: u32,
    network: u32,
    /// How many addresses the range has past its network address and the bridge's.
    usable: u32,
}

impl Addresses {
    fn new(cidr: &Cidr) -> Self {
        let size = 1u64 << (32 - u32::from(cidr.prefix().min(32)));
        Self {
            by_uid: HashMap::new(),
            next: 0,
            network: u32::from(cidr.network()),
            // The network address, the bridge's first address and the broadcast are not pods'.
            usable: size.saturating_sub(3).clamp(1, u64::from(u32::MAX)) as u32,
        }
    }

    fn for_pod(&mut self, uid: &str, existing: Option<&str>) -> Ipv4Addr {
        if let Some(ip) = self.by_uid.get(uid) {
            return *ip;
        }
        let ip = existing
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| {
                // From the range's third address on, skipping the network, the bridge's first
                // address and the broadcast.
                let offset = 2 + self.next % self.usable;
                self.next = self.next.wrapping_add(1);
                Ipv4Addr::from(self.network.wrapping_add(offset))
            });
        self.by_uid.insert(uid.to_string(), ip);
        ip
    }
}

/// Runs the simulated node `node_name`, its pods' addresses from `pod_cidr`, until the task
/// is aborted.
pub async fn run(client: Client, node_name: String, pod_cidr: Cidr) {
    let facts = crate::node::NodeFacts::simulated(pod_cidr.to_string());
    if let Err(error) =
        crate::node::register(&client, &node_name, crate::node::Kind::Simulated, &facts).await
    {
        tracing::warn!(%error, node = %node_name, "could not register the simulated node");
    }
    let mut helpers = tokio::task::JoinSet::new();
    helpers.spawn(crate::node::keep_lease(client.clone(), node_name.clone()));
    // The simulated node's volumes are bookkeeping too: it makes no directories.
    let disk = crate::local_path::Disk::bookkeeping();
    helpers.spawn(crate::local_path::run(
        client.clone(),
        node_name.clone(),
        disk,
    ));
    let addresses = Arc::new(Mutex::new(Addresses::new(&pod_cidr)));
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let mut events = watcher(pods, config).default_backoff().boxed();
    let (recheck, mut rechecks) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    loop {
        let pod = tokio::select! {
            event = events.next() => match event {
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => pod,
                Some(Ok(_)) => continue,
                Some(Err(error)) => {
                    tracing::debug!(%error, "simulated node watch error");
                    continue;
                }
                None => return,
            },
            Some((namespace, name)) = rechecks.recv() => {
                let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
                match api.get_opt(&name).await {
                    Ok(Some(pod)) => pod,
                    _ => continue,
                }
            }
        };
        let client = client.clone();
        let addresses = addresses.clone();
        let recheck = recheck.clone();
        tokio::spawn(async move {
            if let Err(error) = handle(&client, &addresses, &recheck, pod).await {
                tracing::debug!(%error, "simulated node could not update a pod");
            }
        });
    }
}

/// Terminations are confirmed at least this far apart: pods deleted together do not vanish in
/// the same instant (kubectl's delete-wait, pod after pod, races a pod that vanishes just as it
/// starts waiting for it and is re-created at once).
const TERMINATION_SPACING: Duration = Duration::from_millis(250);

/// When to confirm the termination of pod `uid`; `None` when it is already scheduled.
fn schedule_termination(uid: &str, delay: Duration) -> Option<tokio::time::Instant> {
    static SCHEDULE: Mutex<Option<(tokio::time::Instant, Vec<String>)>> = Mutex::new(None);
    let mut schedule = SCHEDULE.lock().unwrap_or_else(|p| p.into_inner());
    let now = tokio::time::Instant::now();
    let (next_free, pending) = schedule.get_or_insert_with(|| (now, Vec::new()));
    if pending.iter().any(|u| u == uid) {
        return None;
    }
    pending.push(uid.to_string());
    if pending.len() > 1024 {
        pending.remove(0);
    }
    let at = (now + delay).max(*next_free);
    *next_free = at + TERMINATION_SPACING;
    Some(at)
}

/// Whether the pod should be Ready now, and if not yet, in how long to look again.
fn readiness(pod: &Pod, running_since: Option<i64>) -> (bool, Option<Duration>) {
    let annotations = pod.annotations();
    if annotations.get(READY_ANNOTATION).map(String::as_str) == Some("false") {
        return (false, None);
    }
    let never = pod.spec.as_ref().is_some_and(|s| {
        s.containers.iter().any(|c| {
            c.image
                .as_deref()
                .is_some_and(|i| i.ends_with(NEVER_READY_TAG))
        })
    });
    if never {
        return (false, None);
    }
    if let Some(delay) = annotations
        .get(READY_AFTER_ANNOTATION)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|d| *d > 0)
    {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let since_ms = running_since.map_or(now_ms, |s| s * 1000);
        let ready_at = since_ms + delay as i64;
        if now_ms < ready_at {
            return (
                false,
                Some(Duration::from_millis((ready_at - now_ms) as u64 + 5)),
            );
        }
    }
    (true, None)
}

async fn handle(
    client: &Client,
    addresses: &Mutex<Addresses>,
    recheck: &tokio::sync::mpsc::UnboundedSender<(String, String)>,
    pod: Pod,
) -> Result<(), kube::Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let uid = pod.uid().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        // Nothing runs, so there is nothing to stop; the node still takes a moment, as a real
        // one does, before it confirms (kubectl's delete-wait relies on seeing the pod go).
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        if grace > 0 {
            let delay = TERMINATION.min(Duration::from_secs(grace as u64));
            let Some(at) = schedule_termination(&uid, delay) else {
                return Ok(());
            };
            tokio::time::sleep_until(at).await;
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        return match api.delete(&pod.name_any(), &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => Ok(()),
            Err(error) => Err(error),
        };
    }
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_default();
    if matches!(phase.as_str(), "Succeeded" | "Failed") {
        return Ok(());
    }
    let running_since = status.start_time.as_ref().map(|t| t.0.as_second());
    let (ready, again) = readiness(&pod, running_since);
    let was_ready = status
        .conditions
        .as_ref()
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status == "True");
    if let Some(delay) = again {
        let key = (namespace.clone(), pod.name_any());
        let recheck = recheck.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = recheck.send(key);
        });
    }
    let ip = addresses
        .lock()
        .map(|mut a| a.for_pod(&uid, status.pod_ip.as_deref()))
        .unwrap_or(Ipv4Addr::new(10, 244, 0, 2));
    if phase == "Running" && was_ready == Some(ready) && status.pod_ip.is_some() {
        return Ok(());
    }
    let now = crate::node::now();
    let start_time = status
        .start_time
        .as_ref()
        .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| now.clone());
    let ready_transition = if was_ready == Some(ready) {
        status
            .conditions
            .as_ref()
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| now.clone())
    } else {
        now.clone()
    };
    let containers: Vec<Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            container_status(ContainerView {
                name: &c.name,
                image: c.image.as_deref(),
                image_id: &format!("simulated://{}", c.image.clone().unwrap_or_default()),
                container_id: Some(format!("simulated://{uid}/{}", c.name)),
                ready,
                started: true,
                restart_count: 0,
                state: json!({"running": {"startedAt": start_time}}),
                last_state: Value::Null,
            })
        })
        .collect();
    let transition = |kind: &str, _: &str| match kind {
        "Ready" | "ContainersReady" => json!(ready_transition),
        _ => json!(start_time),
    };
    let patch = json!({"status": pod_status(PodStatusView {
        phase: "Running",
        ready,
        initialized: true,
        sandbox_ready: true,
        pod_ip: Some(ip),
        start_time: &start_time,
        containers,
        init_containers: Vec::new(),
        transition: &transition,
    })});
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn bookkeeping_addresses_come_from_the_pod_cidr() {
        let cidr = Cidr::from_str("10.213.7.0/30").expect("cidr");
        let mut addresses = Addresses::new(&cidr);
        assert_eq!(addresses.for_pod("a", None), Ipv4Addr::new(10, 213, 7, 2));
        assert_eq!(addresses.for_pod("a", None), Ipv4Addr::new(10, 213, 7, 2));
        // A /30 has one address for pods; it is handed out again rather than leaving it.
        assert_eq!(addresses.for_pod("b", None), Ipv4Addr::new(10, 213, 7, 2));
        assert_eq!(
            addresses.for_pod("c", Some("10.213.7.9")),
            Ipv4Addr::new(10, 213, 7, 9)
        );
        let mut wide = Addresses::new(&Cidr::from_str("10.244.0.0/16").expect("cidr"));
        assert_eq!(wide.for_pod("a", None), Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(wide.for_pod("b", None), Ipv4Addr::new(10, 244, 0, 3));
    }
}

#[cfg(test)]
mod cluster_tests {
    //! The simulated node over the in-process API.

    use std::str::FromStr;

    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, PostParams};
    use petset_apiserver::test_cluster::TestCluster;
    use petset_runtime::network::Cidr;
    use serde_json::json;

    use crate::testing::eventually;

    #[tokio::test]
    async fn bound_pods_run_ready_with_a_bookkeeping_address_and_graceful_deletes_complete() {
        let cluster = TestCluster::start().await;
        let cidr = Cidr::from_str("10.213.0.0/16").expect("cidr");
        let node = tokio::spawn(super::run(cluster.client(), "sim".into(), cidr));
        let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
        for (name, annotations) in [
            ("ready", json!({})),
            ("unready", json!({"simulation.petset.dev/ready": "false"})),
        ] {
            let pod = serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": annotations},
                "spec": {"nodeName": "sim", "containers": [{"name": "app", "image": "nginx"}]},
            }))
            .expect("pod");
            pods.create(&PostParams::default(), &pod)
                .await
                .expect("create");
        }
        let status_of = async |name: &str| {
            let pod = pods.get(name).await.expect("get");
            serde_json::to_value(pod.status).expect("status")
        };
        let ready_condition = |status: &serde_json::Value| {
            status["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].clone())
        };
        eventually("both pods Running", async || {
            status_of("ready").await["phase"] == "Running"
                && status_of("unready").await["phase"] == "Running"
        })
        .await;
        let ready = status_of("ready").await;
        assert_eq!(ready_condition(&ready), Some(json!("True")));
        assert_eq!(ready["containerStatuses"][0]["ready"], true);
        let address = ready["podIP"].as_str().unwrap_or_default().to_string();
        assert!(address.starts_with("10.213."), "{address:?}");
        let unready = status_of("unready").await;
        assert_eq!(ready_condition(&unready), Some(json!("False")));
        assert_ne!(unready["podIP"], ready["podIP"], "one address per pod");
        pods.delete("ready", &DeleteParams::default())
            .await
            .expect("delete");
        eventually("the graceful delete completes", async || {
            pods.get_opt("ready").await.expect("get").is_none()
        })
        .await;
        node.abort();
    }
}
