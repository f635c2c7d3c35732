//! How the API server reaches nodes. The node API (`connector.rs`, `relay.rs`, `location.rs`)
//! is the only way `pods/log`, `exec`, `attach` and `portforward` reach one; `pods/proxy` and
//! `services/proxy` still dial pod addresses directly, as upstream does, but only those the
//! [`PodDialer`](crate::proxy::PodDialer) allows.

pub mod connector;
mod location;
pub mod relay;

use std::sync::Arc;

pub use connector::{InProcess, NodeConnector, NodeEndpoint, Tls};
pub(crate) use location::Stream;

/// What the API server may reach of the nodes, given at construction.
#[derive(Clone, Default)]
pub struct Nodes {
    /// Opens connections to node APIs; `None`: no node is reachable (pods' streams get 503).
    pub connector: Option<Arc<dyn NodeConnector>>,
    /// Which pod addresses the proxy subresources may dial; `None`: none.
    pub pod_dialer: Option<Arc<dyn crate::proxy::PodDialer>>,
}
