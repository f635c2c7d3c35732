//! Routes to the other nodes' pods without an overlay, as flannel's host-gw backend: for every
//! other Node with a `spec.podCIDR` and an `InternalIP`, the route `podCIDR via InternalIP`
//! in this node's network namespace. A packet for a pod of another node then leaves through
//! this node's own link and arrives on that node, which forwards it onto its pod bridge.
//!
//! host-gw needs the nodes on one layer-2 network, so a gateway that is not on a directly
//! connected subnet is refused (flannel refuses a NAT'd address the same way), as is any
//! route that would take over a network of this node (its pod CIDR, a subnet of one of its
//! interfaces, loopback) or point at this node itself. The routes are the kernel's, marked
//! with [`ROUTE_PROTOCOL`]: each pass reads what is there, so routes a crash left behind are
//! removed or taken over on the first pass, and only petset's marked routes are ever touched.
//! One node per network namespace: two agents in one namespace would remove each other's
//! routes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::runtime::watcher;
use kube::{Api, Client};
use petset_informer::cache::Cache;
use petset_runtime::network::Cidr;
pub use petset_runtime::network::routes::ROUTE_PROTOCOL;
use petset_runtime::network::routes::{self as kernel, InterfaceAddress, PodRoute};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// How often the routes are checked without a Node change: a route someone removed by hand,
/// or one the kernel refused while its link was down, comes back.
const RESYNC: Duration = Duration::from_secs(30);

/// The pod networks this node reaches: its own (its bridge) and those it has routes to. The
/// service proxy dials only addresses in them; shared between [`run`] and the proxy.
#[derive(Debug, Clone, Default)]
pub struct PodNetworks {
    reached: Arc<RwLock<Reached>>,
}

#[derive(Debug, Default)]
struct Reached {
    own: Option<Cidr>,
    routed: Vec<Cidr>,
}

impl PodNetworks {
    /// The node's own pod network, before any route (and for ever on a single node).
    pub fn of_this_node(own: Option<Cidr>) -> Self {
        Self {
            reached: Arc::new(RwLock::new(Reached {
                own,
                routed: Vec::new(),
            })),
        }
    }

    pub fn current(&self) -> Vec<Cidr> {
        let reached = self.reached.read().unwrap_or_else(|e| e.into_inner());
        reached.own.iter().chain(&reached.routed).copied().collect()
    }

    fn set_routed(&self, routed: Vec<Cidr>) {
        self.reached
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .routed = routed;
    }
}

/// Why no route is made to a node's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteRefused {
    InvalidPodCidr {
        node: String,
        pod_cidr: String,
        reason: String,
    },
    /// host-gw's layer-2 requirement.
    NotDirectlyConnected {
        node: String,
        address: Ipv4Addr,
        pod_cidr: Cidr,
    },
    /// The gateway would be this node: loopback, one of its addresses, or one of its pods.
    GatewayIsThisNode { node: String, address: Ipv4Addr },
    OverlapsOwnPodCidr {
        node: String,
        pod_cidr: Cidr,
        own: Cidr,
    },
    OverlapsInterface {
        node: String,
        pod_cidr: Cidr,
        device: String,
        subnet: Cidr,
    },
    OverlapsOtherNode {
        node: String,
        pod_cidr: Cidr,
        other: String,
    },
    /// This node's own Node names an address none of its interfaces holds (a NAT): the other
    /// nodes' routes to its pods lead elsewhere. Routes from here are still made.
    OwnAddressNotLocal { node: String, address: Ipv4Addr },
}

impl fmt::Display for RouteRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPodCidr {
                node,
                pod_cidr,
                reason,
            } => write!(
                f,
                "node {node} has an unusable podCIDR {pod_cidr:?} ({reason}): no route to its pods"
            ),
            Self::NotDirectlyConnected {
                node,
                address,
                pod_cidr,
            } => write!(
                f,
                "node {node}'s InternalIP {address} is not on a network this node is directly connected to, meaning that probably it is behind a router or a NAT, which is not supported by host-gw routing: no route to its pod CIDR {pod_cidr}"
            ),
            Self::GatewayIsThisNode { node, address } => write!(
                f,
                "node {node}'s InternalIP {address} is an address of this node: no route to its pods"
            ),
            Self::OverlapsOwnPodCidr {
                node,
                pod_cidr,
                own,
            } => write!(
                f,
                "node {node}'s pod CIDR {pod_cidr} overlaps this node's pod CIDR {own}: no route to it"
            ),
            Self::OverlapsInterface {
                node,
                pod_cidr,
                device,
                subnet,
            } => write!(
                f,
                "node {node}'s pod CIDR {pod_cidr} overlaps the network {subnet} of this node's {device}: no route to it"
            ),
            Self::OverlapsOtherNode {
                node,
                pod_cidr,
                other,
            } => write!(
                f,
                "node {node}'s pod CIDR {pod_cidr} overlaps node {other}'s: no route to it"
            ),
            Self::OwnAddressNotLocal { node, address } => write!(
                f,
                "this node {node}'s InternalIP {address} differs from its interfaces' addresses, meaning that probably it is behind a NAT, which is not supported by host-gw routing: other nodes cannot reach its pods"
            ),
        }
    }
}

impl std::error::Error for RouteRefused {}

/// The routes this node should have, and the nodes it refuses to route to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// Pod CIDR → the node address it is reached through.
    pub routes: BTreeMap<Cidr, Ipv4Addr>,
    pub refused: Vec<RouteRefused>,
}

/// A Node's pod CIDR as written (`spec.podCIDR`, else the first IPv4 of `spec.podCIDRs`).
pub fn pod_cidr_of(node: &Node) -> Option<&str> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr.as_deref().or_else(|| {
        spec.pod_cidrs
            .iter()
            .flatten()
            .map(String::as_str)
            .find(|c| !c.contains(':'))
    })
}

/// A Node's first IPv4 `InternalIP`.
fn internal_ip_of(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// The route to one other node's pods, `None` while the node has no pod CIDR or address yet.
fn route_to(
    node: &Node,
    own_cidr: Cidr,
    interfaces: &[InterfaceAddress],
) -> Result<Option<(Cidr, Ipv4Addr)>, RouteRefused> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let (Some(text), Some(gateway)) = (pod_cidr_of(node), internal_ip_of(node)) else {
        return Ok(None);
    };
    let pod_cidr: Cidr = text
        .parse()
        .map_err(|reason| RouteRefused::InvalidPodCidr {
            node: name.clone(),
            pod_cidr: text.to_string(),
            reason,
        })?;
    if pod_cidr.overlaps(&own_cidr) {
        return Err(RouteRefused::OverlapsOwnPodCidr {
            node: name,
            pod_cidr,
            own: own_cidr,
        });
    }
    if let Some(taken) = interfaces.iter().find(|i| i.subnet.overlaps(&pod_cidr)) {
        return Err(RouteRefused::OverlapsInterface {
            node: name,
            pod_cidr,
            device: taken.device.clone(),
            subnet: taken.subnet,
        });
    }
    if gateway.is_loopback()
        || gateway.is_unspecified()
        || own_cidr.contains(gateway)
        || interfaces.iter().any(|i| i.address == gateway)
    {
        return Err(RouteRefused::GatewayIsThisNode {
            node: name,
            address: gateway,
        });
    }
    let on_link = interfaces.iter().any(|i| {
        !i.address.is_loopback()
            && i.subnet.prefix() < 32
            && !i.subnet.overlaps(&own_cidr)
            && i.subnet.contains(gateway)
    });
    if !on_link || gateway.is_multicast() || gateway.is_broadcast() {
        return Err(RouteRefused::NotDirectlyConnected {
            node: name,
            address: gateway,
            pod_cidr,
        });
    }
    Ok(Some((pod_cidr, gateway)))
}

/// The routes to every other node's pods (`me` is this node's name, `own_cidr` its pod CIDR,
/// `interfaces` the addresses of its namespace). Nodes are taken by name, so when two claim
/// overlapping pod CIDRs the first keeps its route and the other is refused.
pub fn desired_routes(
    nodes: &[Arc<Node>],
    me: &str,
    own_cidr: Cidr,
    interfaces: &[InterfaceAddress],
) -> Desired {
    let mut others: Vec<&Node> = nodes
        .iter()
        .map(Arc::as_ref)
        .filter(|n| n.metadata.name.as_deref() != Some(me))
        .collect();
    others.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut desired = Desired::default();
    if let Some(address) = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(me))
        .and_then(|n| internal_ip_of(n))
        .filter(|address| !interfaces.iter().any(|i| i.address == *address))
    {
        desired.refused.push(RouteRefused::OwnAddressNotLocal {
            node: me.to_string(),
            address,
        });
    }
    let mut owners: BTreeMap<Cidr, String> = BTreeMap::new();
    for node in others {
        let name = node.metadata.name.clone().unwrap_or_default();
        match route_to(node, own_cidr, interfaces) {
            Ok(None) => {}
            Ok(Some((pod_cidr, gateway))) => {
                if let Some((_, other)) = owners.iter().find(|(c, _)| c.overlaps(&pod_cidr)) {
                    desired.refused.push(RouteRefused::OverlapsOtherNode {
                        node: name,
                        pod_cidr,
                        other: other.clone(),
                    });
                    continue;
                }
                owners.insert(pod_cidr, name);
                desired.routes.insert(pod_cidr, gateway);
            }
            Err(refused) => desired.refused.push(refused),
        }
    }
    desired
}

/// What to do to get from the routes there are to the routes wanted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteChanges {
    /// Routes to add, or whose gateway changed.
    pub replace: Vec<PodRoute>,
    /// Destinations whose route goes.
    pub remove: Vec<Cidr>,
}

pub fn changes(
    current: &BTreeMap<Cidr, Ipv4Addr>,
    desired: &BTreeMap<Cidr, Ipv4Addr>,
) -> RouteChanges {
    RouteChanges {
        replace: desired
            .iter()
            .filter(|(cidr, gateway)| current.get(cidr) != Some(gateway))
            .map(|(destination, gateway)| PodRoute {
                destination: *destination,
                gateway: *gateway,
            })
            .collect(),
        remove: current
            .keys()
            .filter(|cidr| !desired.contains_key(cidr))
            .copied()
            .collect(),
    }
}

/// The destinations of `routes` that are wanted as they are.
fn wanted_of(
    routes: impl IntoIterator<Item = (Cidr, Ipv4Addr)>,
    desired: &BTreeMap<Cidr, Ipv4Addr>,
) -> Vec<Cidr> {
    routes
        .into_iter()
        .filter(|(cidr, gateway)| desired.get(cidr) == Some(gateway))
        .map(|(cidr, _)| cidr)
        .collect()
}

/// Keeps this namespace's routes to the other nodes' pods until aborted, and `reached` (the
/// service proxy's) in step with them. With `enable_forwarding` it first turns IPv4
/// forwarding on here, so that this node passes packets between its link and its pods: only
/// for a node in a namespace of its own.
pub async fn run(
    client: Client,
    node_name: String,
    own_cidr: Cidr,
    enable_forwarding: bool,
    reached: PodNetworks,
) {
    if enable_forwarding {
        match tokio::task::spawn_blocking(kernel::enable_ipv4_forwarding).await {
            Ok(Ok(())) => {
                tracing::info!(node = %node_name, "IPv4 forwarding is on in this node's network namespace")
            }
            Ok(Err(error)) => {
                tracing::error!(%error, "cannot turn IPv4 forwarding on: other nodes cannot reach this node's pods")
            }
            Err(_) => return,
        }
    }
    let changed = Arc::new(Notify::new());
    let mut helpers = JoinSet::new();
    let notify = changed.clone();
    let nodes: Cache<Node> = Cache::follow(
        &mut helpers,
        Api::all(client),
        watcher::Config::default(),
        move |_| notify.notify_one(),
    );
    nodes.ready().await;
    let mut reported = BTreeSet::new();
    loop {
        let listed = nodes.store().state();
        let me = node_name.clone();
        let shared = reached.clone();
        let pass =
            tokio::task::spawn_blocking(move || reconcile(&listed, &me, own_cidr, &shared)).await;
        match pass {
            Ok(Ok(refused)) => {
                // Said once, not on every pass: a refusal stays until the Node changes.
                for refusal in &refused {
                    if !reported.contains(refusal) {
                        tracing::error!(node = %node_name, "{refusal}");
                    }
                }
                reported = refused;
            }
            Ok(Err(error)) => tracing::warn!(%error, "cannot read this node's routes"),
            Err(_) => return,
        }
        tokio::select! {
            () = changed.notified() => {}
            () = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// One pass: reads the interfaces and petset's routes, applies the changes, publishes the
/// networks now routed; returns the refusals (as text, to say each once).
fn reconcile(
    nodes: &[Arc<Node>],
    me: &str,
    own_cidr: Cidr,
    reached: &PodNetworks,
) -> Result<BTreeSet<String>, petset_runtime::pods::RuntimeError> {
    let interfaces = kernel::interface_addresses()?;
    let desired = desired_routes(nodes, me, own_cidr, &interfaces);
    let current: BTreeMap<Cidr, Ipv4Addr> = kernel::petset_routes()?
        .into_iter()
        .map(|r| (r.destination, r.gateway))
        .collect();
    let todo = changes(&current, &desired.routes);
    // The proxy stops dialing a network before its route goes, so that nothing meant for a
    // node's pods follows another route once it is gone.
    reached.set_routed(wanted_of(current.clone(), &desired.routes));
    for destination in todo.remove {
        match kernel::remove_route(destination) {
            Ok(()) => {
                tracing::info!(%destination, "removed the route to a node's pods that is gone")
            }
            Err(error) => tracing::warn!(%error, %destination, "cannot remove a route"),
        }
    }
    for route in todo.replace {
        match kernel::replace_route(&route) {
            Ok(()) => {
                tracing::info!(destination = %route.destination, gateway = %route.gateway, "routing a node's pods")
            }
            Err(error) => {
                tracing::warn!(%error, destination = %route.destination, gateway = %route.gateway, "cannot route a node's pods")
            }
        }
    }
    // What the kernel holds now, of what is wanted: a route it refused is not reached.
    let now = kernel::petset_routes()?
        .into_iter()
        .map(|r| (r.destination, r.gateway));
    reached.set_routed(wanted_of(now, &desired.routes));
    Ok(desired.refused.iter().map(ToString::to_string).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, pod_cidr: Option<&str>, address: Option<&str>) -> Arc<Node> {
        let mut value = json!({"metadata": {"name": name}, "spec": {}, "status": {}});
        if let Some(cidr) = pod_cidr {
            value["spec"] = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
        }
        if let Some(address) = address {
            value["status"]["addresses"] = json!([
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": address}]);
        }
        Arc::new(serde_json::from_value(value).expect("node"))
    }

    fn cidr(text: &str) -> Cidr {
        text.parse().expect("cidr")
    }

    /// Node 1's namespace: loopback, its link on the node network, its pod bridge.
    fn interfaces() -> Vec<InterfaceAddress> {
        [
            ("lo", "127.0.0.1", "127.0.0.0/8"),
            ("eth0", "10.250.0.11", "10.250.0.0/24"),
            ("petset0", "10.42.1.1", "10.42.1.0/24"),
        ]
        .iter()
        .map(|(device, address, subnet)| InterfaceAddress {
            device: device.to_string(),
            address: address.parse().expect("ip"),
            subnet: cidr(subnet),
        })
        .collect()
    }

    fn desired(nodes: &[Arc<Node>]) -> Desired {
        desired_routes(nodes, "node-1", cidr("10.42.1.0/24"), &interfaces())
    }

    #[test]
    fn every_other_node_with_a_pod_cidr_and_an_address_gets_one_route() {
        let found = desired(&[
            node("node-1", Some("10.42.1.0/24"), Some("10.250.0.11")),
            node("node-2", Some("10.42.2.0/24"), Some("10.250.0.12")),
            node("node-3", Some("10.42.3.0/24"), Some("10.250.0.13")),
            node("joining", None, Some("10.250.0.14")),
            node("unaddressed", Some("10.42.5.0/24"), None),
        ]);
        assert!(found.refused.is_empty(), "{:?}", found.refused);
        assert_eq!(
            found.routes,
            BTreeMap::from([
                (cidr("10.42.2.0/24"), Ipv4Addr::new(10, 250, 0, 12)),
                (cidr("10.42.3.0/24"), Ipv4Addr::new(10, 250, 0, 13)),
            ])
        );
    }

    #[test]
    fn a_node_not_on_this_nodes_link_is_refused_with_host_gws_reason() {
        let found = desired(&[node("far", Some("10.42.2.0/24"), Some("192.0.2.7"))]);
        assert!(found.routes.is_empty());
        assert_eq!(
            found.refused,
            [RouteRefused::NotDirectlyConnected {
                node: "far".into(),
                address: Ipv4Addr::new(192, 0, 2, 7),
                pod_cidr: cidr("10.42.2.0/24"),
            }]
        );
        let message = found.refused[0].to_string();
        assert!(
            message.contains("which is not supported by host-gw routing"),
            "{message}"
        );
    }

    #[test]
    fn no_route_points_at_this_node_or_takes_over_one_of_its_networks() {
        let found = desired(&[
            node("loop", Some("10.42.2.0/24"), Some("127.0.0.1")),
            node("me-again", Some("10.42.3.0/24"), Some("10.250.0.11")),
            node("in-my-pods", Some("10.42.4.0/24"), Some("10.42.1.9")),
            node("mine", Some("10.42.1.0/24"), Some("10.250.0.15")),
            node("cluster-wide", Some("10.42.0.0/16"), Some("10.250.0.16")),
            node("link", Some("10.250.0.0/24"), Some("10.250.0.17")),
            node("localhost", Some("127.0.0.0/8"), Some("10.250.0.18")),
            node("garbage", Some("10.42.x.0/24"), Some("10.250.0.19")),
        ]);
        assert!(found.routes.is_empty(), "{:?}", found.routes);
        let kinds: Vec<String> = found
            .refused
            .iter()
            .map(|r| {
                format!("{r:?}")
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "OverlapsOwnPodCidr",
                "InvalidPodCidr",
                "GatewayIsThisNode",
                "OverlapsInterface",
                "OverlapsInterface",
                "GatewayIsThisNode",
                "GatewayIsThisNode",
                "OverlapsOwnPodCidr",
            ],
            "{:?}",
            found.refused
        );
    }

    fn assert_only_node_2_is_routed(found: &Desired, refused: RouteRefused) {
        assert_eq!(
            found.routes,
            BTreeMap::from([(cidr("10.42.2.0/24"), Ipv4Addr::new(10, 250, 0, 12))])
        );
        assert_eq!(found.refused, [refused]);
    }

    #[test]
    fn this_node_behind_a_nat_is_told_and_still_routes_to_the_others() {
        let found = desired(&[
            node("node-1", Some("10.42.1.0/24"), Some("203.0.113.4")),
            node("node-2", Some("10.42.2.0/24"), Some("10.250.0.12")),
        ]);
        assert_only_node_2_is_routed(
            &found,
            RouteRefused::OwnAddressNotLocal {
                node: "node-1".into(),
                address: Ipv4Addr::new(203, 0, 113, 4),
            },
        );
        assert!(found.refused[0].to_string().contains("behind a NAT"));
    }

    #[test]
    fn of_two_nodes_claiming_one_network_the_first_by_name_keeps_it() {
        let found = desired(&[
            node("node-3", Some("10.42.2.128/25"), Some("10.250.0.13")),
            node("node-2", Some("10.42.2.0/24"), Some("10.250.0.12")),
        ]);
        assert_only_node_2_is_routed(
            &found,
            RouteRefused::OverlapsOtherNode {
                node: "node-3".into(),
                pod_cidr: cidr("10.42.2.128/25"),
                other: "node-2".into(),
            },
        );
    }

    #[test]
    fn changes_replace_new_and_moved_routes_and_remove_the_rest() {
        let current = BTreeMap::from([
            (cidr("10.42.2.0/24"), Ipv4Addr::new(10, 250, 0, 12)),
            (cidr("10.42.3.0/24"), Ipv4Addr::new(10, 250, 0, 13)),
            (cidr("10.42.9.0/24"), Ipv4Addr::new(10, 250, 0, 19)),
        ]);
        let desired = BTreeMap::from([
            (cidr("10.42.2.0/24"), Ipv4Addr::new(10, 250, 0, 12)),
            (cidr("10.42.3.0/24"), Ipv4Addr::new(10, 250, 0, 23)),
            (cidr("10.42.4.0/24"), Ipv4Addr::new(10, 250, 0, 14)),
        ]);
        assert_eq!(
            changes(&current, &desired),
            RouteChanges {
                replace: vec![
                    PodRoute {
                        destination: cidr("10.42.3.0/24"),
                        gateway: Ipv4Addr::new(10, 250, 0, 23),
                    },
                    PodRoute {
                        destination: cidr("10.42.4.0/24"),
                        gateway: Ipv4Addr::new(10, 250, 0, 14),
                    },
                ],
                remove: vec![cidr("10.42.9.0/24")],
            }
        );
        assert_eq!(changes(&desired, &desired), RouteChanges::default());
    }
}
