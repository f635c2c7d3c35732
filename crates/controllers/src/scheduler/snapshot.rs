//! What the scheduler knows of the cluster between two decisions, as upstream's scheduler cache:
//! every node with the requests, ports and pods already placed on it, and indexes of the placed
//! pods by namespace and label, kept current change by change (a decision never rescans every
//! pod). A pod counts on its node from the moment it is chosen (upstream "assumes" it) until it
//! is deleted or finishes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use kube::ResourceExt;
use petset_api::quantity::Quantity;
use serde_json::{Map, Value};

use super::affinity::{PodTerms, placed_terms};

/// A pod: (namespace, name).
pub type Key = (String, String);

/// What a container without a CPU or memory request counts as when nodes are scored
/// (upstream's `DefaultMilliCPURequest` and `DefaultMemoryRequest`), so that many such pods do
/// not all pile onto one node.
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// Compute resources, in the units upstream's scheduler counts them in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Extended resources and huge pages, in whole units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// The scheduler's resources of a resource list; anything that is not a quantity counts
    /// as nothing (validation refuses it before it is stored).
    pub fn of(list: Option<&BTreeMap<String, ApiQuantity>>) -> Self {
        let mut resources = Self::default();
        for (name, quantity) in list.into_iter().flatten() {
            let Some(quantity) = Quantity::parse(&quantity.0) else {
                continue;
            };
            match name.as_str() {
                "cpu" => resources.milli_cpu += quantity.milli_value(),
                "memory" => resources.memory += quantity.value(),
                "ephemeral-storage" => resources.ephemeral_storage += quantity.value(),
                other if is_scalar(other) => {
                    *resources.scalar.entry(other.to_string()).or_default() += quantity.value();
                }
                _ => {}
            }
        }
        resources
    }

    pub fn add(&mut self, other: &Self) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() += value;
        }
    }

    pub fn subtract(&mut self, other: &Self) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        for (name, value) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() -= value;
        }
    }

    fn raise_to(&mut self, other: &Self) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        for (name, value) in &other.scalar {
            let mine = self.scalar.entry(name.clone()).or_default();
            *mine = (*mine).max(*value);
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// Upstream's `IsScalarResourceName`: extended resources (a domain other than
/// `kubernetes.io`), huge pages and attachable volumes.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || name.split_once('/').is_some_and(|(domain, _)| {
            domain != "kubernetes.io" && !domain.ends_with(".kubernetes.io")
        })
}

/// A container's requests; a resource with a limit and no request requests its limit, as the
/// API server's defaulting sets it.
fn container_requests(container: &Container) -> Resources {
    let resources = container.resources.as_ref();
    let mut requests = resources
        .and_then(|r| r.requests.clone())
        .unwrap_or_default();
    for (name, limit) in resources
        .and_then(|r| r.limits.as_ref())
        .into_iter()
        .flatten()
    {
        requests
            .entry(name.clone())
            .or_insert_with(|| limit.clone());
    }
    Resources::of(Some(&requests))
}

/// The same, with upstream's defaults for a missing CPU or memory request (for scoring).
fn container_requests_non_zero(container: &Container) -> Resources {
    let mut requests = container_requests(container);
    let stated = |name: &str| {
        let resources = container.resources.as_ref();
        [
            resources.and_then(|r| r.requests.as_ref()),
            resources.and_then(|r| r.limits.as_ref()),
        ]
        .into_iter()
        .flatten()
        .any(|list| list.contains_key(name))
    };
    if !stated("cpu") {
        requests.milli_cpu = DEFAULT_MILLI_CPU;
    }
    if !stated("memory") {
        requests.memory = DEFAULT_MEMORY;
    }
    requests
}

/// What a pod asks of its node, as upstream's `PodRequests`: its containers together, or its
/// largest init container if that is more (sidecars, init containers that keep running,
/// count with everything started after them), plus the pod's overhead.
pub fn pod_requests(pod: &Pod, of: fn(&Container) -> Resources) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::default();
    };
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&of(container));
    }
    let mut sidecars = Resources::default();
    let mut largest_init = Resources::default();
    for container in spec.init_containers.iter().flatten() {
        let mut requests = of(container);
        if container.restart_policy.as_deref() == Some("Always") {
            total.add(&requests);
            sidecars.add(&requests);
            requests = sidecars.clone();
        } else {
            requests.add(&sidecars);
        }
        largest_init.raise_to(&requests);
    }
    total.raise_to(&largest_init);
    total.add(&Resources::of(spec.overhead.as_ref()));
    total
}

/// A host port a pod takes on its node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Two pods collide on a port when protocol and port are the same and either listens on
    /// every address or both on the same one.
    pub fn conflicts(&self, other: &Self) -> bool {
        const ANY: &str = "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY || other.ip == ANY)
    }
}

pub fn host_ports(pod: &Pod) -> Vec<HostPort> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|p| *p > 0)?;
            Some(HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                port,
            })
        })
        .collect()
}

/// A node as the filters see it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub unschedulable: bool,
    /// The node's taints, and the one upstream's node lifecycle controller adds for its Ready
    /// condition (`not-ready` when False or not reported yet, `unreachable` when Unknown).
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
    pub allowed_pods: i64,
    /// The requests of the pods placed here.
    pub requested: Resources,
    /// The same with the defaults for missing CPU and memory requests (for scoring).
    pub non_zero_requested: Resources,
    pub pods: HashSet<Key>,
    pub ports: Vec<HostPort>,
}

/// The taint a node not Ready is given, by its Ready condition's status.
fn condition_taint(node: &Node) -> Option<&'static str> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str());
    match ready {
        Some("True") => None,
        Some("Unknown") => Some("node.kubernetes.io/unreachable"),
        _ => Some("node.kubernetes.io/not-ready"),
    }
}

impl NodeInfo {
    /// What the filters read of a Node; the placed pods are the snapshot's to add.
    pub(crate) fn describe(node: &Node) -> Self {
        let spec = node.spec.as_ref();
        let mut taints: Vec<Taint> = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        if let Some(key) = condition_taint(node)
            && !taints
                .iter()
                .any(|t| t.key == key && t.effect == "NoSchedule")
        {
            taints.push(Taint {
                key: key.to_string(),
                effect: "NoSchedule".into(),
                ..Taint::default()
            });
        }
        let allocatable = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
        let allowed_pods = allocatable
            .and_then(|a| a.get("pods"))
            .and_then(|q| Quantity::parse(&q.0))
            .map_or(0, Quantity::value);
        Self {
            name: node.name_any(),
            labels: node.labels().clone(),
            unschedulable: spec.and_then(|s| s.unschedulable) == Some(true),
            taints,
            allocatable: Resources::of(allocatable),
            allowed_pods,
            ..Self::default()
        }
    }

    /// Whether two descriptions differ in anything a filter or score reads (a heartbeat
    /// does not: it wakes no waiting pod).
    fn same_for_scheduling(&self, other: &Self) -> bool {
        self.labels == other.labels
            && self.unschedulable == other.unschedulable
            && self.taints == other.taints
            && self.allocatable == other.allocatable
            && self.allowed_pods == other.allowed_pods
    }
}

/// A pod placed on a node, as the filters and scores read it.
#[derive(Debug, Clone)]
pub struct Placed {
    pub node: String,
    pub namespace: String,
    pub labels: Map<String, Value>,
    pub terminating: bool,
    pub requests: Resources,
    pub non_zero_requests: Resources,
    pub ports: Vec<HostPort>,
    /// Its pod (anti-)affinity terms, when it has any.
    pub affinity: Option<Arc<PodTerms>>,
}

/// A pod's labels as the selectors of `petset_api::selector` read them.
pub fn labels_of(pod: &Pod) -> Map<String, Value> {
    pod.labels()
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect()
}

impl Placed {
    fn of(pod: &Pod, node: &str) -> Self {
        Self {
            node: node.to_string(),
            namespace: pod.namespace().unwrap_or_default(),
            labels: labels_of(pod),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            requests: pod_requests(pod, container_requests),
            non_zero_requests: pod_requests(pod, container_requests_non_zero),
            ports: host_ports(pod),
            affinity: placed_terms(pod),
        }
    }
}

/// The requests of a pod that is being scheduled: what the resource filter checks and what
/// the resource scores add.
pub fn requests_of(pod: &Pod) -> (Resources, Resources) {
    (
        pod_requests(pod, container_requests),
        pod_requests(pod, container_requests_non_zero),
    )
}

#[derive(Debug, Default)]
pub struct Snapshot {
    /// By name: the filters visit nodes in this order, and a tie goes to the first.
    pub nodes: BTreeMap<String, NodeInfo>,
    pub placed: HashMap<Key, Placed>,
    by_label: HashMap<(String, String, String), HashSet<Key>>,
    by_namespace: HashMap<String, HashSet<Key>>,
    /// Placed pods with pod affinity or anti-affinity of their own.
    pub with_affinity: HashSet<Key>,
    /// Namespaces' labels, for affinity terms with a `namespaceSelector`.
    pub namespaces: HashMap<String, Map<String, Value>>,
}

/// What a change did to the snapshot, so the loop knows which waiting pods to look at again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Nothing,
    /// A node appeared, went, or changed in what scheduling reads.
    NodeChanged,
    /// A placed pod went: its room, ports and anti-affinity are free.
    PodLeft,
    /// A pod was placed: pods waiting for pod affinity may now fit.
    PodPlaced,
}

impl Snapshot {
    pub fn apply_node(&mut self, node: &Node) -> Effect {
        let described = NodeInfo::describe(node);
        match self.nodes.get_mut(&described.name) {
            Some(known) if known.same_for_scheduling(&described) => Effect::Nothing,
            Some(known) => {
                let NodeInfo {
                    labels,
                    unschedulable,
                    taints,
                    allocatable,
                    allowed_pods,
                    ..
                } = described;
                known.labels = labels;
                known.unschedulable = unschedulable;
                known.taints = taints;
                known.allocatable = allocatable;
                known.allowed_pods = allowed_pods;
                Effect::NodeChanged
            }
            None => {
                let mut described = described;
                // Pods placed before their node was seen (a relist) count from now on.
                let name = described.name.clone();
                for (key, placed) in self.placed.iter().filter(|(_, p)| p.node == name) {
                    add_to_node(&mut described, key, placed);
                }
                self.nodes.insert(described.name.clone(), described);
                Effect::NodeChanged
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) -> Effect {
        match self.nodes.remove(name) {
            Some(_) => Effect::NodeChanged,
            None => Effect::Nothing,
        }
    }

    /// A pod as the watch shows it: placed on its node, or (unscheduled, finished, deleted)
    /// not placed anywhere. An unscheduled pod keeps the node it was assumed on.
    pub fn apply_pod(&mut self, pod: &Pod) -> Effect {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        match node {
            Some(node) if !finished => self.place(key, Placed::of(pod, node)),
            Some(_) => self.forget(&key),
            None => Effect::Nothing,
        }
    }

    /// Counts `pod` on `node` before the binding is written.
    pub fn assume(&mut self, pod: &Pod, node: &str) {
        let key = (pod.namespace().unwrap_or_default(), pod.name_any());
        self.place(key, Placed::of(pod, node));
    }

    fn place(&mut self, key: Key, placed: Placed) -> Effect {
        let moved = self.placed.get(&key).is_none_or(|p| p.node != placed.node);
        self.forget(&key);
        if let Some(node) = self.nodes.get_mut(&placed.node) {
            add_to_node(node, &key, &placed);
        }
        for (label, value) in &placed.labels {
            let value = value.as_str().unwrap_or_default().to_string();
            self.by_label
                .entry((placed.namespace.clone(), label.clone(), value))
                .or_default()
                .insert(key.clone());
        }
        self.by_namespace
            .entry(placed.namespace.clone())
            .or_default()
            .insert(key.clone());
        if placed.affinity.is_some() {
            self.with_affinity.insert(key.clone());
        }
        self.placed.insert(key, placed);
        if moved {
            Effect::PodPlaced
        } else {
            Effect::Nothing
        }
    }

    /// The pod no longer counts anywhere.
    pub fn forget(&mut self, key: &Key) -> Effect {
        let Some(placed) = self.placed.remove(key) else {
            return Effect::Nothing;
        };
        if let Some(node) = self.nodes.get_mut(&placed.node) {
            node.requested.subtract(&placed.requests);
            node.non_zero_requested.subtract(&placed.non_zero_requests);
            node.pods.remove(key);
            for port in &placed.ports {
                if let Some(at) = node.ports.iter().position(|p| p == port) {
                    node.ports.swap_remove(at);
                }
            }
        }
        for (label, value) in &placed.labels {
            let value = value.as_str().unwrap_or_default().to_string();
            let index = (placed.namespace.clone(), label.clone(), value);
            if let Some(keys) = self.by_label.get_mut(&index) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_label.remove(&index);
                }
            }
        }
        if let Some(keys) = self.by_namespace.get_mut(&placed.namespace) {
            keys.remove(key);
        }
        self.with_affinity.remove(key);
        Effect::PodLeft
    }

    /// The placed pods that may match a selector in `namespace`: those with one of its
    /// `label=value` requirements when it has one (the fewest), else all of the namespace.
    pub fn candidates<'a>(
        &'a self,
        namespace: &str,
        equalities: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> impl Iterator<Item = (&'a Key, &'a Placed)> + 'a {
        let fewest = equalities
            .map(|(k, v)| {
                self.by_label
                    .get(&(namespace.to_string(), k.to_string(), v.to_string()))
            })
            .min_by_key(|keys| keys.map_or(0, HashSet::len));
        let keys: Option<&HashSet<Key>> = match fewest {
            Some(keys) => keys,
            None => self.by_namespace.get(namespace),
        };
        keys.into_iter()
            .flatten()
            .filter_map(|key| self.placed.get_key_value(key))
    }
}

fn add_to_node(node: &mut NodeInfo, key: &Key, placed: &Placed) {
    node.requested.add(&placed.requests);
    node.non_zero_requested.add(&placed.non_zero_requests);
    node.pods.insert(key.clone());
    node.ports.extend(placed.ports.iter().cloned());
}
