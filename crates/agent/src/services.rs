//! The node's service proxy: every TCP port of every Service with a ClusterIP answers on that
//! ClusterIP, and each connection is relayed to one of the Service's ready endpoints, in turn
//! (kube-proxy's old userspace mode).
//!
//! The ClusterIP range is local to the machine (a `local` route, see
//! `petset_runtime::network`), so a listener can bind any ClusterIP; the host reaches it
//! directly and pods through their default route, the bridge's address. No packet is
//! NATed, so nothing can leave the node's network through a Service: the proxy dials only pod
//! addresses of the pod networks this node reaches ([`PodNetworks`]: its own bridge's, and
//! those of other nodes it has host-gw routes to, `crate::routes`) and the API server. On a
//! single node that is its bridge alone. An nftables DNAT would skip the copy through user
//! space, but it needs IP forwarding turned on for the whole machine and a tool most hosts
//! lack. UDP ports are not proxied.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};

use crate::routes::PodNetworks;
use petset_informer::cache::Cache;
use petset_runtime::network::Cidr;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet};

/// One Service port: what a listener serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Frontend {
    address: SocketAddr,
    namespace: String,
    service: String,
    /// The Service port's name ("" when it has one unnamed port), which its Endpoints repeat.
    port_name: String,
}

/// The Service ports that should be listening: TCP ports of Services with an IPv4 ClusterIP.
fn frontends(services: &[Arc<Service>]) -> Vec<Frontend> {
    let mut wanted = Vec::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        for port in spec.ports.iter().flatten() {
            if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
                continue;
            }
            let Ok(number) = u16::try_from(port.port) else {
                continue;
            };
            wanted.push(Frontend {
                address: SocketAddr::new(IpAddr::V4(ip), number),
                namespace: service.metadata.namespace.clone().unwrap_or_default(),
                service: service.metadata.name.clone().unwrap_or_default(),
                port_name: port.name.clone().unwrap_or_default(),
            });
        }
    }
    wanted
}

/// The ready endpoints of a Service port, as addresses to dial.
pub(crate) fn backends(endpoints: &Endpoints, port_name: &str) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let Some(port) = subset
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or_default() == port_name)
            .and_then(|p| u16::try_from(p.port).ok())
        else {
            continue;
        };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<IpAddr>() {
                found.push(SocketAddr::new(ip, port));
            }
        }
    }
    found
}

/// Whether the proxy may connect to `backend`: a pod's address in one of `pod_networks` (not
/// a network's own, gateway or broadcast address: the gateway is a node itself), or the API
/// servers' addresses (the `kubernetes` Service). Nothing else: an Endpoints object anyone
/// writes cannot point the proxy at the node, its network or the outside.
pub(crate) fn may_dial(backend: SocketAddr, pod_networks: &[Cidr], api: &[SocketAddr]) -> bool {
    if api.contains(&backend) {
        return true;
    }
    let IpAddr::V4(ip) = backend.ip() else {
        return false;
    };
    pod_networks
        .iter()
        .any(|network| network.is_pod_address(ip))
}

/// Runs the proxy until aborted, dialing pods of the networks in `reached` and the API server
/// servers at `api`.
pub async fn run(client: Client, reached: PodNetworks, api: Vec<SocketAddr>) {
    let api: Arc<[SocketAddr]> = api.into();
    let changed = Arc::new(Notify::new());
    let mut helpers = JoinSet::new();
    let notify = changed.clone();
    let services: Cache<Service> = Cache::follow(
        &mut helpers,
        Api::all(client.clone()),
        watcher::Config::default(),
        move |_| notify.notify_one(),
    );
    let endpoints: Cache<Endpoints> = Cache::follow(
        &mut helpers,
        Api::all(client),
        watcher::Config::default(),
        |_| {},
    );
    let mut listening: HashMap<Frontend, AbortHandle> = HashMap::new();
    let mut listeners = JoinSet::new();
    loop {
        let wanted = frontends(&services.store().state());
        listening.retain(|frontend, handle| {
            let keep = wanted.contains(frontend);
            if !keep {
                handle.abort();
            }
            keep
        });
        for frontend in wanted {
            if listening.contains_key(&frontend) {
                continue;
            }
            match TcpListener::bind(frontend.address).await {
                Ok(listener) => {
                    tracing::debug!(address = %frontend.address, service = %frontend.service, "service port listening");
                    let handle = listeners.spawn(serve(
                        listener,
                        frontend.clone(),
                        endpoints.clone(),
                        reached.clone(),
                        api.clone(),
                    ));
                    listening.insert(frontend, handle);
                }
                Err(error) => {
                    // Outside the local ClusterIP range (a Service created with another
                    // range's address), or taken: said once per change, tried again then.
                    tracing::warn!(%error, address = %frontend.address, service = %frontend.service, "cannot listen on a ClusterIP");
                }
            }
        }
        while listeners.try_join_next().is_some() {}
        changed.notified().await;
    }
}

async fn serve(
    listener: TcpListener,
    frontend: Frontend,
    endpoints: Cache<Endpoints>,
    reached: PodNetworks,
    api: Arc<[SocketAddr]>,
) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            continue;
        };
        let current = endpoints
            .store()
            .get(&ObjectRef::new(&frontend.service).within(&frontend.namespace))
            .map(|e| backends(&e, &frontend.port_name))
            .unwrap_or_default();
        let networks = reached.current();
        let candidates: Vec<SocketAddr> = current
            .into_iter()
            .filter(|b| may_dial(*b, &networks, &api))
            .collect();
        let start = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(relay(inbound, candidates, start));
    }
}

/// Connects to the first backend that answers, starting at `start`, and copies both ways; a
/// connection with no backend is closed at once (the client sees a reset, as with no
/// endpoints upstream).
async fn relay(mut inbound: TcpStream, candidates: Vec<SocketAddr>, start: usize) {
    for attempt in 0..candidates.len() {
        let backend = candidates[(start + attempt) % candidates.len()];
        let connected =
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(backend)).await;
        if let Ok(Ok(mut outbound)) = connected {
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tcp_ports_of_cluster_ip_services_are_served_by_their_ready_endpoints() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"clusterIP": "10.96.0.20", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}]},
        }))
        .expect("service");
        let headless: Service = serde_json::from_value(json!({
            "metadata": {"name": "nginx", "namespace": "ns"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
        }))
        .expect("service");
        let wanted = frontends(&[Arc::new(service), Arc::new(headless)]);
        assert_eq!(wanted.len(), 1);
        assert_eq!(wanted[0].address.to_string(), "10.96.0.20:80");
        assert_eq!(wanted[0].port_name, "http");
        let endpoints: Endpoints = serde_json::from_value(json!({
            "subsets": [{"addresses": [{"ip": "10.244.0.5"}, {"ip": "10.244.0.6"}],
                "notReadyAddresses": [{"ip": "10.244.0.7"}],
                "ports": [{"name": "http", "port": 8080}]}],
        }))
        .expect("endpoints");
        let found: Vec<String> = backends(&endpoints, "http")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, ["10.244.0.5:8080", "10.244.0.6:8080"]);
        assert!(backends(&endpoints, "other").is_empty());
    }

    #[test]
    fn only_pods_of_the_reached_networks_and_the_api_server_are_dialed() {
        let own: Cidr = "10.42.1.0/24".parse().expect("cidr");
        let routed: Cidr = "10.42.2.0/24".parse().expect("cidr");
        let api: SocketAddr = "10.250.0.1:6443".parse().expect("address");
        let dial = |text: &str, networks: &[Cidr]| {
            may_dial(text.parse().expect("address"), networks, &[api])
        };
        // Every API server the node was given, with several servers.
        let second: SocketAddr = "10.250.0.1:6444".parse().expect("address");
        assert!(may_dial(second, &[], &[api, second]));
        assert!(!may_dial(second, &[], &[api]));
        for allowed in ["10.42.1.5:80", "10.42.2.9:8080", "10.250.0.1:6443"] {
            assert!(dial(allowed, &[own, routed]), "{allowed}");
        }
        for refused in [
            // A node's pod network it has no route to (the node is not reached).
            "10.42.3.4:80",
            // A bridge (a node itself), a network and a broadcast address.
            "10.42.1.1:22",
            "10.42.2.0:80",
            "10.42.2.255:80",
            // The API server's machine on another port, loopback, the outside, IPv6.
            "10.250.0.1:10250",
            "127.0.0.1:80",
            "192.0.2.7:80",
            "[fd00::5]:80",
        ] {
            assert!(!dial(refused, &[own, routed]), "{refused}");
        }
        // A single node reaches its bridge alone, as before there were many.
        assert!(!dial("10.42.2.9:8080", &[own]));
        assert!(!dial("10.42.1.5:80", &[]));
    }
}
