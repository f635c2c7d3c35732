//! How the API server reaches nodes. The node API (`connector.rs`, `relay.rs`, `location.rs`)
//! is the only way `pods/log`, `exec`, `attach`, `portforward`, `proxy` and `services/proxy`
//! reach a pod: the API server dials no pod address itself (upstream's does, for the proxy),
//! so it needs no route into any node's pod network.

pub mod connector;
#[cfg(test)]
pub(crate) mod fake;
mod location;
pub mod relay;

use std::sync::Arc;

pub use connector::{InProcess, NodeConnector, NodeEndpoint, Tls};
pub(crate) use location::{Stream, node_of, proxy_location};

/// What the API server may reach of the nodes, given at construction.
#[derive(Clone, Default)]
pub struct Nodes {
    /// Opens connections to node APIs; `None`: no node is reachable (pods' streams and
    /// proxies get 503).
    pub connector: Option<Arc<dyn NodeConnector>>,
}
