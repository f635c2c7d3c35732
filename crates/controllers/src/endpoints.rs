//! Endpoints and EndpointSlices for Services with a selector: the selected pods' IPs (ready and
//! not ready), their hostnames when they sit in the Service's subdomain, and the ports, so
//! `kubectl get endpoints` and `kubectl describe svc` show what a real cluster shows.
//!
//! `desired` decides what a Service's two objects hold and `changes` what to write for them;
//! the async code only reads caches and the API, and writes.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use petset_api::selector::LabelSelector;
use serde_json::{Value, json};

use crate::cache::{Cache, Change};
use crate::guarded;
use crate::queue::Queue;

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGER: &str = "endpointslice-controller.k8s.io";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

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

/// What one Service's Endpoints and its EndpointSlice should hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub endpoints: Endpoints,
    pub slice: EndpointSlice,
}

/// What to write for one object of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Create,
    /// Patch the object of this name.
    Update(String),
}

/// The writes that bring a Service's objects to `desired`, given what exists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    pub endpoints: Option<Write>,
    pub slice: Option<Write>,
    /// Slices beyond the first that the controller manages for this Service (name, uid).
    pub extra_slices: Vec<(String, String)>,
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.pod_ip.as_deref())
}

/// A Service port's target on a pod: a number, or a named container port.
fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
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

/// The Service's selector, when it has a non-empty one that parses.
fn selector_of(service: &Service) -> Option<LabelSelector> {
    let labels = service
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())?;
    LabelSelector::from_structured(&json!({"matchLabels": labels})).ok()
}

fn selects(selector: &LabelSelector, pod: &Pod) -> bool {
    let labels = serde_json::to_value(pod.labels()).ok();
    selector.matches(labels.as_ref().and_then(Value::as_object))
}

/// The Endpoints and EndpointSlice of `service` over the pods of its namespace; `None` for a
/// Service without a selector (its endpoints are someone else's).
pub fn desired(service: &Service, pods: &[Arc<Pod>]) -> Option<Desired> {
    let selector = selector_of(service)?;
    let spec = service.spec.clone().unwrap_or_default();
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let mut selected: Vec<&Pod> = pods
        .iter()
        .map(|pod| pod.as_ref())
        .filter(|pod| pod_ip(pod).is_some() && selects(&selector, pod))
        .collect();
    // Upstream orders addresses by IP, then pod uid; the cache has no order of its own.
    selected.sort_by_cached_key(|pod| {
        (
            pod_ip(pod).and_then(|ip| ip.parse::<std::net::IpAddr>().ok()),
            pod.uid(),
        )
    });
    let service_ports = spec.ports.clone().unwrap_or_default();
    let mut ready = Vec::new();
    let mut not_ready = Vec::new();
    let mut slice_endpoints = Vec::new();
    let mut ports: BTreeSet<(Option<String>, i32, String)> = BTreeSet::new();
    for pod in &selected {
        let ip = pod_ip(pod).unwrap_or_default().to_string();
        let pod_spec = pod.spec.clone().unwrap_or_default();
        let hostname = (pod_spec.subdomain.as_deref() == Some(name.as_str()))
            .then(|| pod_spec.hostname.clone())
            .flatten();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = is_ready(pod) || publish_not_ready;
        let target = ObjectReference {
            kind: Some("Pod".into()),
            namespace: Some(namespace.clone()),
            name: Some(pod.name_any()),
            uid: pod.uid(),
            ..ObjectReference::default()
        };
        let address = EndpointAddress {
            ip: ip.clone(),
            hostname: hostname.clone(),
            node_name: pod_spec.node_name.clone(),
            target_ref: Some(target.clone()),
        };
        if serving && !terminating {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
        slice_endpoints.push(Endpoint {
            addresses: vec![ip],
            conditions: Some(EndpointConditions {
                ready: Some(serving && !terminating),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname,
            node_name: pod_spec.node_name,
            target_ref: Some(target),
            ..Endpoint::default()
        });
        for port in &service_ports {
            if let Some(number) = target_port(port, pod) {
                let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
                ports.insert((port.name.clone(), number, protocol));
            }
        }
    }
    let subsets = if selected.is_empty() {
        Vec::new()
    } else {
        vec![EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port, protocol)| EndpointPort {
                        name: name.clone(),
                        port: *port,
                        protocol: Some(protocol.clone()),
                        ..EndpointPort::default()
                    })
                    .collect(),
            ),
        }]
    };
    let mut labels = service.labels().clone();
    if spec.cluster_ip.as_deref() == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    let endpoints = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        subsets: Some(subsets),
    };
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: Some(namespace),
            labels: Some(
                [
                    (SERVICE_NAME_LABEL.to_string(), name.clone()),
                    (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
                ]
                .into(),
            ),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name,
                uid: service.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: slice_endpoints,
        ports: Some(
            ports
                .into_iter()
                .map(|(name, port, protocol)| SlicePort {
                    name,
                    port: Some(port),
                    protocol: Some(protocol),
                    ..SlicePort::default()
                })
                .collect(),
        ),
    };
    Some(Desired { endpoints, slice })
}

fn same_subsets(a: &Endpoints, b: &Endpoints) -> bool {
    a.subsets.clone().unwrap_or_default() == b.subsets.clone().unwrap_or_default()
}

fn same_slice_content(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    a.endpoints == b.endpoints
        && a.ports.clone().unwrap_or_default() == b.ports.clone().unwrap_or_default()
}

/// What to write so that `existing` (the Endpoints of the name, the managed slices of the
/// Service) holds `desired`; the first slice is kept, any more are extra.
pub fn changes(
    desired: &Desired,
    existing_endpoints: Option<&Endpoints>,
    existing_slices: &[EndpointSlice],
) -> Changes {
    let endpoints = match existing_endpoints {
        None => Some(Write::Create),
        Some(current) if !same_subsets(current, &desired.endpoints) => {
            Some(Write::Update(current.name_any()))
        }
        Some(_) => None,
    };
    let slice = match existing_slices.first() {
        None => Some(Write::Create),
        Some(current) if !same_slice_content(current, &desired.slice) => {
            Some(Write::Update(current.name_any()))
        }
        Some(_) => None,
    };
    let extra_slices = existing_slices
        .iter()
        .skip(1)
        .map(|s| (s.name_any(), s.uid().unwrap_or_default()))
        .collect();
    Changes {
        endpoints,
        slice,
        extra_slices,
    }
}

/// Endpoints whose Service is gone (name, uid); their slices follow their owner through the
/// garbage collector.
pub fn orphaned(services: &[Arc<Service>], endpoints: &[Endpoints]) -> Vec<(String, String)> {
    endpoints
        .iter()
        .filter(|e| !services.iter().any(|s| s.name_any() == e.name_any()))
        .map(|e| (e.name_any(), e.uid().unwrap_or_default()))
        .collect()
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
    // A namespace without selecting Services needs no pods read.
    let pod_list = if service_list.iter().any(|s| selector_of(s).is_some()) {
        pods.in_namespace(namespace)
    } else {
        Vec::new()
    };
    for service in &service_list {
        let Some(desired) = desired(service, &pod_list) else {
            continue;
        };
        let name = service.name_any();
        let current = endpoints.get_opt(&name).await?;
        let managed = slices
            .list(&ListParams::default().labels(&format!(
                "{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGER}"
            )))
            .await?
            .items;
        let changes = changes(&desired, current.as_ref(), &managed);
        match changes.endpoints {
            Some(Write::Create) => {
                match endpoints
                    .create(&PostParams::default(), &desired.endpoints)
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 409 => {}
                    Err(error) => return Err(error),
                }
            }
            Some(Write::Update(name)) => {
                let subsets = json!({"subsets": desired.endpoints.subsets});
                endpoints
                    .patch(&name, &PatchParams::default(), &Patch::Merge(subsets))
                    .await?;
            }
            None => {}
        }
        match changes.slice {
            Some(Write::Create) => {
                slices
                    .create(&PostParams::default(), &desired.slice)
                    .await?;
            }
            Some(Write::Update(name)) => {
                let content = json!({
                    "endpoints": desired.slice.endpoints,
                    "ports": desired.slice.ports,
                });
                slices
                    .patch(&name, &PatchParams::default(), &Patch::Merge(content))
                    .await?;
            }
            None => {}
        }
        for (extra, uid) in &changes.extra_slices {
            guarded::delete(&slices, extra, uid).await?;
        }
    }
    let existing = endpoints.list(&ListParams::default()).await?.items;
    for (name, uid) in orphaned(&service_list, &existing) {
        guarded::delete(&endpoints, &name, &uid).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(extra: Value) -> Service {
        let mut value = json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
                         "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "clusterIP": "None",
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        });
        merge(&mut value, extra);
        serde_json::from_value(value).expect("service")
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool) -> Arc<Pod> {
        let status = if ready { "True" } else { "False" };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"),
                             "labels": {"app": "web"}},
                "spec": {"hostname": name, "subdomain": "web", "nodeName": "node-1",
                         "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": status}]},
            }))
            .expect("pod"),
        )
    }

    fn merge(target: &mut Value, patch: Value) {
        if let (Some(target), Value::Object(patch)) = (target.as_object_mut(), patch) {
            for (key, value) in patch {
                match target.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        target.insert(key, value);
                    }
                }
            }
        }
    }

    fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        addresses.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    fn subset(desired: &Desired) -> &EndpointSubset {
        &desired.endpoints.subsets.as_ref().expect("subsets")[0]
    }

    #[test]
    fn ready_pods_are_addresses_and_unready_pods_not_ready_addresses() {
        let pods = [
            pod("web-0", Some("10.0.0.2"), true),
            pod("web-1", Some("10.0.0.3"), false),
        ];
        let desired = desired(&service(json!({})), &pods).expect("selects");
        assert_eq!(ips(&subset(&desired).addresses), ["10.0.0.2"]);
        assert_eq!(ips(&subset(&desired).not_ready_addresses), ["10.0.0.3"]);
        let conditions: Vec<_> = desired
            .slice
            .endpoints
            .iter()
            .map(|e| e.conditions.clone().expect("conditions"))
            .map(|c| (c.ready, c.serving, c.terminating))
            .collect();
        assert_eq!(
            conditions,
            [
                (Some(true), Some(true), Some(false)),
                (Some(false), Some(false), Some(false))
            ]
        );
    }

    #[test]
    fn pods_without_an_ip_or_outside_the_selector_are_left_out() {
        let mut other = pod("other-0", Some("10.0.0.9"), true);
        Arc::make_mut(&mut other)
            .metadata
            .labels
            .replace([("app".to_string(), "other".to_string())].into());
        let pods = [pod("web-0", None, true), other];
        let desired = desired(&service(json!({})), &pods).expect("selects");
        assert_eq!(desired.endpoints.subsets, Some(Vec::new()));
        assert!(desired.slice.endpoints.is_empty());
    }

    #[test]
    fn addresses_are_ordered_by_ip_as_numbers() {
        let pods = [
            pod("web-0", Some("10.0.0.10"), true),
            pod("web-1", Some("10.0.0.9"), true),
        ];
        let desired = desired(&service(json!({})), &pods).expect("selects");
        assert_eq!(ips(&subset(&desired).addresses), ["10.0.0.9", "10.0.0.10"]);
    }

    #[test]
    fn a_hostname_is_published_only_for_pods_in_the_services_subdomain() {
        let mut elsewhere = pod("web-1", Some("10.0.0.3"), true);
        Arc::make_mut(&mut elsewhere)
            .spec
            .as_mut()
            .expect("spec")
            .subdomain = Some("db".into());
        let pods = [pod("web-0", Some("10.0.0.2"), true), elsewhere];
        let desired = desired(&service(json!({})), &pods).expect("selects");
        let hostnames: Vec<_> = subset(&desired)
            .addresses
            .iter()
            .flatten()
            .map(|a| a.hostname.as_deref())
            .collect();
        assert_eq!(hostnames, [Some("web-0"), None]);
    }

    #[test]
    fn publish_not_ready_addresses_serves_unready_pods_but_never_terminating_ones() {
        let mut leaving = pod("web-1", Some("10.0.0.3"), true);
        Arc::make_mut(&mut leaving).metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        let pods = [pod("web-0", Some("10.0.0.2"), false), leaving];
        let service = service(json!({"spec": {"publishNotReadyAddresses": true}}));
        let desired = desired(&service, &pods).expect("selects");
        assert_eq!(ips(&subset(&desired).addresses), ["10.0.0.2"]);
        assert_eq!(ips(&subset(&desired).not_ready_addresses), ["10.0.0.3"]);
        let leaving = desired.slice.endpoints[1]
            .conditions
            .clone()
            .expect("conditions");
        assert_eq!(
            (leaving.ready, leaving.serving, leaving.terminating),
            (Some(false), Some(true), Some(true))
        );
    }

    #[test]
    fn a_named_target_port_resolves_to_the_containers_port() {
        let desired =
            desired(&service(json!({})), &[pod("web-0", Some("10.0.0.2"), true)]).expect("selects");
        let port = &subset(&desired).ports.as_ref().expect("ports")[0];
        assert_eq!(
            (port.name.as_deref(), port.port, port.protocol.as_deref()),
            (Some("http"), 8080, Some("TCP"))
        );
        let slice_port = &desired.slice.ports.as_ref().expect("ports")[0];
        assert_eq!(slice_port.port, Some(8080));
    }

    #[test]
    fn a_service_without_a_selector_has_endpoints_someone_else_writes() {
        let service = service(json!({"spec": {"selector": null}}));
        assert_eq!(
            desired(&service, &[pod("web-0", Some("10.0.0.2"), true)]),
            None
        );
    }

    #[test]
    fn a_headless_services_endpoints_are_labelled_headless_and_its_slice_owned_by_it() {
        let desired = desired(&service(json!({})), &[]).expect("selects");
        let labels = desired.endpoints.metadata.labels.clone().expect("labels");
        assert_eq!(labels.get(HEADLESS_LABEL).map(String::as_str), Some(""));
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        let owner = &desired
            .slice
            .metadata
            .owner_references
            .as_ref()
            .expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Service", "svc-uid")
        );
    }

    #[test]
    fn nothing_is_written_when_the_objects_already_hold_what_is_desired() {
        let desired =
            desired(&service(json!({})), &[pod("web-0", Some("10.0.0.2"), true)]).expect("selects");
        let mut slice = desired.slice.clone();
        slice.metadata.name = Some("web-abcde".into());
        assert_eq!(
            changes(&desired, Some(&desired.endpoints), &[slice]),
            Changes::default()
        );
        assert_eq!(
            changes(&desired, None, &[]),
            Changes {
                endpoints: Some(Write::Create),
                slice: Some(Write::Create),
                extra_slices: Vec::new()
            }
        );
    }

    #[test]
    fn changed_addresses_update_the_objects_and_extra_slices_are_deleted_by_uid() {
        let before =
            desired(&service(json!({})), &[pod("web-0", Some("10.0.0.2"), true)]).expect("selects");
        let after = desired(
            &service(json!({})),
            &[pod("web-0", Some("10.0.0.2"), false)],
        )
        .expect("selects");
        let mut first = before.slice.clone();
        first.metadata.name = Some("web-abcde".into());
        let mut second = before.slice.clone();
        second.metadata.name = Some("web-fghij".into());
        second.metadata.uid = Some("second-uid".into());
        assert_eq!(
            changes(&after, Some(&before.endpoints), &[first, second]),
            Changes {
                endpoints: Some(Write::Update("web".into())),
                slice: Some(Write::Update("web-abcde".into())),
                extra_slices: vec![("web-fghij".into(), "second-uid".into())],
            }
        );
    }

    #[test]
    fn endpoints_of_a_service_that_is_gone_are_orphaned() {
        let kept = Arc::new(service(json!({})));
        let endpoints: Vec<Endpoints> = ["web", "gone"]
            .iter()
            .map(|name| Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    uid: Some(format!("{name}-uid")),
                    ..ObjectMeta::default()
                },
                subsets: None,
            })
            .collect();
        assert_eq!(
            orphaned(&[kept], &endpoints),
            [("gone".to_string(), "gone-uid".to_string())]
        );
    }
}
