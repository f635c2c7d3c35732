//! Endpoints and EndpointSlices for Services with a selector: the selected pods' IPs (ready and
//! not ready), their hostnames when they sit in the Service's subdomain, and the ports, so
//! `kubectl get endpoints` and `kubectl describe svc` show what a real cluster shows.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use petset_api::selector::LabelSelector;
use serde_json::{Value, json};

use crate::cache::{Cache, Change};
use crate::queue::Queue;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER: &str = "endpointslice-controller.k8s.io";

/// Runs the controller until the task is aborted. The unit of work is a namespace.
pub async fn run(client: Client) {
    let (queue, mut namespaces) = Queue::<String>::new();
    let mut helpers = tokio::task::JoinSet::new();
    let services = Cache::follow(
        &mut helpers,
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        queue_namespace(&queue),
    );
    let pods = Cache::follow(
        &mut helpers,
        Api::<Pod>::all(client.clone()),
        watcher::Config::default(),
        queue_namespace(&queue),
    );
    services.ready().await;
    pods.ready().await;
    while let Some(namespace) = namespaces.recv().await {
        queue.taken(&namespace);
        if let Err(error) = sync(&client, &services, &pods, &namespace).await {
            tracing::debug!(%error, namespace, "endpoints sync failed; retrying");
            queue.add_after(namespace, std::time::Duration::from_millis(500));
        }
    }
}

/// A change to a Service or a pod queues its namespace.
fn queue_namespace<K: ResourceExt>(
    queue: &Arc<Queue<String>>,
) -> impl Fn(Change<'_, K>) + Send + 'static {
    let queue = queue.clone();
    move |change| match change {
        Change::Applied(object) | Change::Deleted(object) => {
            if let Some(namespace) = object.namespace() {
                queue.add(namespace);
            }
        }
        Change::Relisted => {}
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A Service port's target on a pod: a number, or a named container port.
fn target_port(port: &k8s_openapi::api::core::v1::ServicePort, pod: &Pod) -> Option<i32> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => pod.spec.as_ref().and_then(|spec| {
            spec.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
        }),
    }
}

async fn sync(
    client: &Client,
    services: &Cache<Service>,
    pods: &Cache<Pod>,
    namespace: &str,
) -> Result<(), kube::Error> {
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let service_list = services.in_namespace(namespace);
    let selects = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|spec| spec.selector.as_ref())
            .is_some_and(|selector| !selector.is_empty())
    };
    // A namespace without selecting Services needs no pods read.
    let pod_list = if service_list.iter().any(|s| selects(s)) {
        pods.in_namespace(namespace)
    } else {
        Vec::new()
    };
    for service in &service_list {
        let Some(selector_map) = service
            .spec
            .as_ref()
            .and_then(|s| s.selector.clone())
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        let selector_value = json!({"matchLabels": selector_map});
        let Ok(selector) = LabelSelector::from_structured(&selector_value) else {
            continue;
        };
        let spec = service.spec.clone().unwrap_or_default();
        let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
        let name = service.name_any();
        let selected: Vec<&Pod> = pod_list
            .iter()
            .map(|pod| pod.as_ref())
            .filter(|pod| {
                let labels = serde_json::to_value(pod.labels()).ok();
                selector.matches(labels.as_ref().and_then(Value::as_object))
                    && pod
                        .status
                        .as_ref()
                        .and_then(|s| s.pod_ip.as_ref())
                        .is_some()
            })
            .collect();
        let mut selected = selected;
        // Upstream orders addresses by IP, then pod uid; the cache has no order of its own.
        selected.sort_by_cached_key(|pod| {
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref());
            (
                ip.and_then(|ip| ip.parse::<std::net::IpAddr>().ok()),
                pod.uid(),
            )
        });
        let ports = spec.ports.clone().unwrap_or_default();
        let mut ready = Vec::new();
        let mut not_ready = Vec::new();
        let mut slice_endpoints = Vec::new();
        let mut resolved_ports: BTreeMap<(Option<String>, i32, String), ()> = BTreeMap::new();
        for pod in &selected {
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_default();
            let pod_spec = pod.spec.clone().unwrap_or_default();
            let hostname = (pod_spec.subdomain.as_deref() == Some(name.as_str()))
                .then(|| pod_spec.hostname.clone())
                .flatten();
            let terminating = pod.metadata.deletion_timestamp.is_some();
            let serving = is_ready(pod) || publish_not_ready;
            let address = json!({
                "ip": ip,
                "hostname": hostname,
                "nodeName": pod_spec.node_name,
                "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod.name_any(), "uid": pod.uid()},
            });
            if serving && !terminating {
                ready.push(address);
            } else {
                not_ready.push(address);
            }
            slice_endpoints.push(json!({
                "addresses": [ip],
                "conditions": {"ready": serving && !terminating, "serving": serving, "terminating": terminating},
                "hostname": hostname,
                "nodeName": pod_spec.node_name,
                "targetRef": {"kind": "Pod", "namespace": namespace, "name": pod.name_any(), "uid": pod.uid()},
            }));
            for port in &ports {
                if let Some(number) = target_port(port, pod) {
                    resolved_ports.insert(
                        (
                            port.name.clone(),
                            number,
                            port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        ),
                        (),
                    );
                }
            }
        }
        let port_values: Vec<Value> = resolved_ports
            .keys()
            .map(|(name, port, protocol)| json!({"name": name, "port": port, "protocol": protocol}))
            .collect();
        let subsets = if ready.is_empty() && not_ready.is_empty() {
            json!([])
        } else {
            let mut subset = json!({"ports": port_values});
            if !ready.is_empty() {
                subset["addresses"] = json!(ready);
            }
            if !not_ready.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready);
            }
            json!([subset])
        };
        let mut labels = service.labels().clone();
        if spec.cluster_ip.as_deref() == Some("None") {
            labels.insert("service.kubernetes.io/headless".into(), String::new());
        }
        let wanted = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "subsets": subsets,
        });
        // Typed, so that absent fields compare equal to what the server returns.
        let object: Endpoints = serde_json::from_value(wanted).map_err(kube::Error::SerdeError)?;
        let wanted_subsets =
            serde_json::to_value(object.subsets.clone().unwrap_or_default()).unwrap_or(Value::Null);
        let current = endpoints.get_opt(&name).await?;
        match current {
            None => match endpoints.create(&PostParams::default(), &object).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error),
            },
            Some(existing) => {
                let existing_subsets =
                    serde_json::to_value(existing.subsets.clone().unwrap_or_default())
                        .unwrap_or(Value::Null);
                if existing_subsets != wanted_subsets {
                    endpoints
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"subsets": wanted_subsets})),
                        )
                        .await?;
                }
            }
        }

        let owner = json!([{"apiVersion": "v1", "kind": "Service", "name": name, "uid": service.uid(),
            "controller": true, "blockOwnerDeletion": true}]);
        let existing = slices
            .list(&ListParams::default().labels(&format!(
                "{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGER}"
            )))
            .await?
            .items;
        let typed: EndpointSlice = serde_json::from_value(json!({
            "addressType": "IPv4", "metadata": {}, "endpoints": slice_endpoints, "ports": port_values,
        }))
        .map_err(kube::Error::SerdeError)?;
        let wanted_slice = json!({
            "endpoints": serde_json::to_value(&typed.endpoints).unwrap_or(Value::Null),
            "ports": serde_json::to_value(typed.ports.clone().unwrap_or_default()).unwrap_or(Value::Null),
        });
        match existing.first() {
            None => {
                let slice: EndpointSlice = serde_json::from_value(json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": format!("{name}-"), "namespace": namespace,
                        "labels": {SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGER},
                        "ownerReferences": owner},
                    "addressType": "IPv4",
                    "endpoints": wanted_slice["endpoints"],
                    "ports": wanted_slice["ports"],
                }))
                .map_err(kube::Error::SerdeError)?;
                slices.create(&PostParams::default(), &slice).await?;
            }
            Some(slice) => {
                let current = json!({
                    "endpoints": serde_json::to_value(&slice.endpoints).unwrap_or(Value::Null),
                    "ports": serde_json::to_value(slice.ports.clone().unwrap_or_default()).unwrap_or(Value::Null),
                });
                if current != wanted_slice {
                    slices
                        .patch(
                            &slice.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(wanted_slice),
                        )
                        .await?;
                }
                for extra in existing.iter().skip(1) {
                    let _ = slices
                        .delete(&extra.name_any(), &DeleteParams::default())
                        .await;
                }
            }
        }
    }
    // Endpoints of Services that are gone go too (slices follow their owner by GC).
    for stale in endpoints.list(&ListParams::default()).await?.items {
        let name = stale.name_any();
        if !service_list.iter().any(|s| s.name_any() == name) {
            match endpoints.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
    }
    Ok(())
}
