//! The cluster DNS: authoritative for the cluster domain (`cluster.local`) and for reverse
//! lookups of the addresses it knows, over UDP and TCP. Answers come from watch caches of
//! Services and Endpoints ([`zone`]), so a name resolves as soon as its Endpoints show it.
//!
//! It never forwards or recurses: a name outside the cluster is refused, so no query ever
//! leaves the machine through petset.

pub mod zone;

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, ResponseCode};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};
use petset_informer::cache::Cache;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinSet;

pub use zone::{ClusterView, Zone};

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen for DNS on {address}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// Where the DNS answers, and for which domain.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub listen: SocketAddr,
    pub domain: String,
    /// The pods' network (address, prefix length): the cluster CIDR, which holds every node's
    /// pod CIDR (on a single node, its pod CIDR). A query from there may come from a pod the
    /// caches do not show yet, and waits a little for it. The names and records themselves
    /// do not depend on it: they come from the Endpoints of every node's pods.
    pub pod_network: Option<(std::net::Ipv4Addr, u8)>,
}

/// Who may be a pod not yet in the caches: an address of the pods' network other than its
/// first address and the address the DNS listens on (a node's bridge, which that node's own
/// queries come from; on another node's bridge, the host of that node).
#[derive(Debug, Clone, Copy)]
struct PodClients {
    network: (std::net::Ipv4Addr, u8),
    listen: std::net::IpAddr,
}

impl PodClients {
    fn may_be_a_pod(&self, address: std::net::IpAddr) -> bool {
        let std::net::IpAddr::V4(v4) = address else {
            return false;
        };
        let (network, prefix) = self.network;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        u32::from(v4) & mask == u32::from(network) & mask
            && u32::from(v4) != u32::from(network) + 1
            && address != self.listen
    }
}

/// The largest UDP answer without EDNS (RFC 1035); larger ones are truncated, and the client
/// asks again over TCP.
const CLASSIC_UDP_SIZE: usize = 512;
/// What this server offers with EDNS: the size DNS Flag Day 2020 settled on.
const EDNS_UDP_SIZE: u16 = 1232;

/// The caches the answers are read from.
#[derive(Clone)]
pub struct Caches {
    services: Cache<Service>,
    endpoints: Cache<Endpoints>,
    /// For the namespace of a pod asking (the server-side search path).
    pods: Cache<Pod>,
}

impl Caches {
    pub fn follow(client: &Client, tasks: &mut JoinSet<()>) -> Self {
        Self {
            services: Cache::follow(
                tasks,
                Api::all(client.clone()),
                watcher::Config::default(),
                |_| {},
            ),
            endpoints: Cache::follow(
                tasks,
                Api::all(client.clone()),
                watcher::Config::default(),
                |_| {},
            ),
            pods: Cache::follow(
                tasks,
                Api::all(client.clone()),
                watcher::Config::default(),
                |_| {},
            ),
        }
    }

    /// Waits for the first complete lists of both kinds.
    pub async fn ready(&self) {
        self.services.ready().await;
        self.endpoints.ready().await;
        self.pods.ready().await;
    }
}

impl ClusterView for Caches {
    fn service(&self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        self.services
            .store()
            .get(&ObjectRef::new(name).within(namespace))
    }

    fn endpoints(&self, namespace: &str, name: &str) -> Option<Arc<Endpoints>> {
        self.endpoints
            .store()
            .get(&ObjectRef::new(name).within(namespace))
    }

    fn services(&self) -> Vec<Arc<Service>> {
        self.services.store().state()
    }

    fn all_endpoints(&self) -> Vec<Arc<Endpoints>> {
        self.endpoints.store().state()
    }

    fn namespace_of(&self, address: std::net::IpAddr) -> Option<String> {
        let address = address.to_string();
        // A scan, but only for names outside the cluster domain (short names from clients
        // that do not search themselves).
        self.pods
            .store()
            .state()
            .iter()
            .find(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_deref()) == Some(&address))
            .and_then(|p| p.metadata.namespace.clone())
    }
}

/// Binds UDP and TCP on `config.listen` (port 0 picks one, the same for both) and serves in
/// tasks added to `tasks`; returns the address bound.
pub async fn serve(
    client: &Client,
    config: &DnsConfig,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, DnsError> {
    let udp = UdpSocket::bind(config.listen)
        .await
        .map_err(|source| DnsError::Listen {
            address: config.listen,
            source,
        })?;
    let address = udp.local_addr().map_err(|source| DnsError::Listen {
        address: config.listen,
        source,
    })?;
    let tcp = TcpListener::bind(address)
        .await
        .map_err(|source| DnsError::Listen { address, source })?;
    let caches = Caches::follow(client, tasks);
    let zone = Arc::new(Zone::new(&config.domain));
    let pods = config.pod_network.map(|network| PodClients {
        network,
        listen: address.ip(),
    });
    tasks.spawn(serve_udp(udp, zone.clone(), caches.clone(), pods));
    tasks.spawn(serve_tcp(tcp, zone, caches, pods));
    tracing::info!(%address, domain = %config.domain, "cluster DNS listening");
    Ok(address)
}

/// The answer to one request as bytes, fitting `limit` when one is given (UDP).
async fn respond(
    zone: &Zone,
    view: &Caches,
    request: &[u8],
    client: SocketAddr,
    limit: Option<usize>,
    pods: Option<PodClients>,
) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    let mut response = zone.answer(view, &request, Some(client.ip()));
    // A pod may ask before its address has reached the cache (its first process starts right
    // after the address is written): a short name from an unknown address waits a little for
    // the pod to show up, then gets its search path.
    if response.metadata.response_code == ResponseCode::Refused
        && pods.is_some_and(|p| p.may_be_a_pod(client.ip()))
        && view.namespace_of(client.ip()).is_none()
    {
        for _ in 0..20 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if view.namespace_of(client.ip()).is_some() {
                response = zone.answer(view, &request, Some(client.ip()));
                break;
            }
        }
    }
    let limit = match &request.edns {
        Some(edns) => {
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_UDP_SIZE);
            response.edns = Some(ours);
            limit.map(|_| usize::from(edns.max_payload().clamp(512, EDNS_UDP_SIZE)))
        }
        None => limit.map(|_| CLASSIC_UDP_SIZE),
    };
    let bytes = response.to_vec().ok()?;
    match limit {
        Some(limit) if bytes.len() > limit => response.truncate().to_vec().ok(),
        _ => Some(bytes),
    }
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Zone>, caches: Caches, pods: Option<PodClients>) {
    let socket = Arc::new(socket);
    let mut buffer = vec![0u8; 4096];
    loop {
        let (length, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "DNS receive failed");
                continue;
            }
        };
        // A task per query: almost all answer at once, but one may wait for its pod.
        let request = buffer[..length].to_vec();
        let (socket, zone, caches) = (socket.clone(), zone.clone(), caches.clone());
        tokio::spawn(async move {
            if let Some(answer) =
                respond(&zone, &caches, &request, peer, Some(CLASSIC_UDP_SIZE), pods).await
            {
                let _ = socket.send_to(&answer, peer).await;
            }
        });
    }
}

async fn serve_tcp(
    listener: TcpListener,
    zone: Arc<Zone>,
    caches: Caches,
    pods: Option<PodClients>,
) {
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            continue;
        };
        let (zone, caches) = (zone.clone(), caches.clone());
        tokio::spawn(async move {
            // Each message is preceded by its length (RFC 1035 4.2.2); a connection may carry
            // several, and an idle one is closed.
            loop {
                let mut length = [0u8; 2];
                let read = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    stream.read_exact(&mut length),
                )
                .await;
                if !matches!(read, Ok(Ok(_))) {
                    return;
                }
                let mut request = vec![0u8; usize::from(u16::from_be_bytes(length))];
                if stream.read_exact(&mut request).await.is_err() {
                    return;
                }
                let Some(answer) = respond(&zone, &caches, &request, peer, None, pods).await else {
                    return;
                };
                let Ok(size) = u16::try_from(answer.len()) else {
                    return;
                };
                let mut framed = size.to_be_bytes().to_vec();
                framed.extend_from_slice(&answer);
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_pod_addresses_are_waited_for() {
        // The cluster CIDR; this DNS listens on node 2's bridge.
        let pods = super::PodClients {
            network: (std::net::Ipv4Addr::new(10, 42, 0, 0), 16),
            listen: "10.42.2.1".parse().expect("ip"),
        };
        let waits = |address: &str| pods.may_be_a_pod(address.parse().expect("ip"));
        // Pods of this node and of the others.
        assert!(waits("10.42.2.7"));
        assert!(waits("10.42.1.4"));
        assert!(waits("10.42.3.4"));
        // This node's host (through its bridge), the network's first address, the outside.
        assert!(!waits("10.42.2.1"));
        assert!(!waits("10.42.0.1"));
        assert!(!waits("10.43.0.1"));
        assert!(!waits("::1"));
    }
}
