//! How the API server opens a connection to a node's API: [`NodeConnector`], one byte stream
//! per request, over which `relay.rs` speaks HTTP/1.1.
//!
//! - [`InProcess`]: the node of this process, through an in-memory pipe served by its router
//!   (no socket, no TLS: nothing outside the process can reach a pipe).
//! - [`Tls`]: a node over the network, at the address and port its Node publishes, with the
//!   API server's client certificate; the node's serving certificate must chain to the
//!   cluster CA.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

/// The port a node API answers on when its Node does not say (upstream's default).
pub const DEFAULT_KUBELET_PORT: u16 = 10250;

/// How long dialing a node may take (upstream's `--kubelet-timeout`).
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Room in an in-process pipe; the relay copies through it in chunks of about this size.
const PIPE_BYTES: usize = 64 * 1024;

/// A connection to a node's API.
pub trait NodeStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> NodeStream for T {}

/// Where a node's API answers, as its Node object publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub node: String,
    /// The preferred address of `status.addresses`; `None` when it publishes none.
    pub address: Option<String>,
    pub port: u16,
}

/// The address types tried in turn, as k3s configures kube-apiserver
/// (`--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname`): an IP first, so
/// reaching a node never depends on name resolution.
const PREFERRED_ADDRESS_TYPES: [&str; 3] = ["InternalIP", "ExternalIP", "Hostname"];

impl NodeEndpoint {
    /// The endpoint a Node publishes: `status.addresses` by preference and
    /// `status.daemonEndpoints.kubeletEndpoint.Port` (the default when it is not above 0).
    pub fn of(node: &Value) -> Self {
        let addresses = node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let address = PREFERRED_ADDRESS_TYPES.iter().find_map(|kind| {
            addresses
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
                .and_then(|a| a.get("address")?.as_str())
                .filter(|a| !a.is_empty())
                .map(str::to_string)
        });
        let port = node
            .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
            .and_then(Value::as_i64)
            .filter(|port| *port > 0)
            .and_then(|port| u16::try_from(port).ok())
            .unwrap_or(DEFAULT_KUBELET_PORT);
        Self {
            node: node
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            address,
            port,
        }
    }
}

/// Why a node could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("node {node:?} is not reachable from this API server")]
    NotReachable { node: String },
    #[error("node {node:?} publishes no address the API server can dial")]
    NoAddress { node: String },
    #[error("dialing node {node:?} at {address}: {source}")]
    Dial {
        node: String,
        address: String,
        source: std::io::Error,
    },
    #[error("dialing node {node:?} at {address}: timed out")]
    Timeout { node: String, address: String },
    #[error("the node API of {node:?} answered no HTTP: {detail}")]
    Protocol { node: String, detail: String },
    #[error(
        "the node API at {address} is not node {node:?}'s: its certificate names {presented:?}"
    )]
    WrongNode {
        node: String,
        address: String,
        presented: String,
    },
}

/// Opens connections to nodes' APIs: the only way the API server reaches a node.
pub trait NodeConnector: Send + Sync + 'static {
    fn connect<'a>(
        &'a self,
        endpoint: &'a NodeEndpoint,
    ) -> BoxFuture<'a, Result<Box<dyn NodeStream>, ConnectError>>;
}

/// The node of this process: each connection is a pipe, its far end served by the node's
/// router (which trusts it: only this process holds the pipe).
pub struct InProcess {
    node: String,
    router: axum::Router,
}

impl InProcess {
    /// Reaches `node` through `router` (the node's in-process router); other nodes are not
    /// reachable.
    pub fn new(node: impl Into<String>, router: axum::Router) -> Self {
        Self {
            node: node.into(),
            router,
        }
    }
}

impl NodeConnector for InProcess {
    fn connect<'a>(
        &'a self,
        endpoint: &'a NodeEndpoint,
    ) -> BoxFuture<'a, Result<Box<dyn NodeStream>, ConnectError>> {
        Box::pin(async move {
            if endpoint.node != self.node {
                return Err(ConnectError::NotReachable {
                    node: endpoint.node.clone(),
                });
            }
            let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
            let service = TowerToHyperService::new(self.router.clone());
            tokio::spawn(async move {
                let served = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(theirs), service)
                    .with_upgrades()
                    .await;
                if let Err(error) = served {
                    tracing::debug!(%error, "in-process node API connection ended with an error");
                }
            });
            Ok(Box::new(ours) as Box<dyn NodeStream>)
        })
    }
}

/// Nodes over the network, with TLS (see [`crate::tls::kubelet_client_config`]).
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
}

impl Tls {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Self {
        Self { config }
    }
}

impl NodeConnector for Tls {
    fn connect<'a>(
        &'a self,
        endpoint: &'a NodeEndpoint,
    ) -> BoxFuture<'a, Result<Box<dyn NodeStream>, ConnectError>> {
        Box::pin(async move {
            let node = endpoint.node.clone();
            let address = endpoint
                .address
                .clone()
                .ok_or_else(|| ConnectError::NoAddress { node: node.clone() })?;
            let shown = format!("{address}:{}", endpoint.port);
            let dial_error = |source| ConnectError::Dial {
                node: node.clone(),
                address: shown.clone(),
                source,
            };
            let server_name = match address.parse::<IpAddr>() {
                Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
                Err(_) => {
                    rustls::pki_types::ServerName::try_from(address.clone()).map_err(|e| {
                        dial_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                    })?
                }
            };
            let connector = tokio_rustls::TlsConnector::from(self.config.clone());
            let dial = async {
                let tcp = match address.parse::<IpAddr>() {
                    Ok(ip) => {
                        tokio::net::TcpStream::connect(SocketAddr::new(ip, endpoint.port)).await
                    }
                    Err(_) => {
                        tokio::net::TcpStream::connect((address.as_str(), endpoint.port)).await
                    }
                }?;
                connector.connect(server_name, tcp).await
            };
            match tokio::time::timeout(DIAL_TIMEOUT, dial).await {
                Ok(Ok(tls)) => {
                    // The CA vouches for the address; the certificate's name must also be
                    // this node's, or another node that answers at a published address
                    // would pass for it.
                    let presented = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| petset_pki::subject::common_name(leaf.as_ref()))
                        .unwrap_or_default();
                    if presented != format!("system:node:{node}") {
                        return Err(ConnectError::WrongNode {
                            node,
                            address: shown,
                            presented,
                        });
                    }
                    Ok(Box::new(tls) as Box<dyn NodeStream>)
                }
                Ok(Err(source)) => Err(dial_error(source)),
                Err(_) => Err(ConnectError::Timeout {
                    node,
                    address: shown,
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_endpoint_prefers_an_ip_and_the_published_port() {
        let node = json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10251}}}});
        assert_eq!(
            NodeEndpoint::of(&node),
            NodeEndpoint {
                node: "n1".into(),
                address: Some("10.0.0.5".into()),
                port: 10251
            }
        );
    }

    #[test]
    fn an_unpublished_port_is_the_default_and_a_hostname_is_the_last_resort() {
        let node = json!({"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "Hostname", "address": "n1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}}}});
        let endpoint = NodeEndpoint::of(&node);
        assert_eq!(endpoint.address.as_deref(), Some("n1"));
        assert_eq!(endpoint.port, DEFAULT_KUBELET_PORT);
        assert_eq!(NodeEndpoint::of(&json!({})).address, None);
    }
}
