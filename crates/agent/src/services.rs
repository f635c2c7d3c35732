//! The node's service proxy: every TCP port of every Service with a ClusterIP answers on that
//! ClusterIP, and each connection is relayed to one of the Service's ready endpoints, in turn
//! (kube-proxy's old userspace mode).
//!
//! The ClusterIP range is local to the machine (a `local` route, see
//! `petset_runtime::network`), so a listener can bind any ClusterIP; the host reaches it
//! directly and pods through their default route, the bridge's address. No packet is
//! forwarded or NATed, so nothing can leave the machine through a Service, and the proxy dials
//! only pod addresses on petset's bridge. An nftables DNAT would skip the copy through user
//! space, but it needs IP forwarding turned on for the whole machine and a tool most hosts lack.
//! UDP ports are not proxied.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};
use petset_informer::cache::Cache;
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
fn backends(endpoints: &Endpoints, port_name: &str) -> Vec<SocketAddr> {
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

/// Runs the proxy until aborted; `may_dial` says which endpoints it may connect to: pods on
/// this node's bridge, and the API server for the `kubernetes` Service.
pub async fn run(client: Client, may_dial: Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>) {
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
                        may_dial.clone(),
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
    may_dial: Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>,
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
        let candidates: Vec<SocketAddr> = current.into_iter().filter(|b| may_dial(*b)).collect();
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
}
