//! The Kubernetes API over HTTPS: discovery, OpenAPI, the REST verbs with watch, patch and
//! server-side printing, and the in-process controllers that are part of the API's contract
//! (garbage collection, namespace lifecycle).
//!
//! This crate is the only writer to the store; everything else (controllers, the node agent,
//! DNS) reaches cluster state through the API it serves.

// API errors carry their Status details by value: they are the cold path, and boxing them
// would only move the allocation.
#![allow(clippy::result_large_err)]

pub mod auth;
pub mod clock;
#[cfg(test)]
mod data_safety_tests;
mod discovery;
mod eviction;
#[cfg(test)]
mod eviction_tests;
mod gc;
#[cfg(test)]
mod gc_tests;
mod handlers;
mod health;
#[cfg(test)]
mod input_properties_tests;
mod ipalloc;
pub mod join;
#[cfg(test)]
mod networking_tests;
pub mod nodes;
#[cfg(test)]
mod old_versions_tests;
mod openapi;
mod protobuf;
pub mod proxy;
#[cfg(test)]
mod python_client_tests;
pub mod registry;
#[cfg(test)]
mod registry_semantics_tests;
mod response;
mod reviews;
mod scale;
pub mod serve;
#[cfg(test)]
mod server_side_apply_tests;
#[cfg(test)]
mod service_account_admission_tests;
#[cfg(any(test, feature = "test-cluster"))]
pub mod test_cluster;
pub mod tls;
mod token_request;
mod watch;
mod watch_cache;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::middleware;
use petset_pki::service_account_token::SigningKey;
use petset_store::Store;

pub use gc::spawn_controllers;
pub use registry::Registry;

/// What every request handler shares.
#[derive(Clone)]
pub struct ApiState {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    watch_cache: Arc<watch_cache::WatchCache>,
    serving: Arc<AtomicBool>,
    /// Flips to true when the server stops: open watches end.
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// The bearer token every API request must carry; `None` serves without authentication
    /// (in-process tests).
    admin_token: Option<Arc<str>>,
    /// How the pods' streams and proxies reach their nodes.
    nodes: nodes::Nodes,
    /// How agents join (`with_join`); `None` answers the join routes 404.
    join: Option<Arc<join::JoinConfig>>,
    /// Signs and checks service-account tokens: the data dir's key (`with_service_account_key`),
    /// else one made for this process (in-process tests); `None` only if the system's random
    /// source failed.
    service_account_key: Option<Arc<SigningKey>>,
    /// The RBAC authorizer's index, fed by the watch cache.
    rbac: Arc<auth::RbacIndex>,
}

impl ApiState {
    pub fn new(store: Arc<dyn Store>, admin_token: Option<String>) -> Self {
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let rbac = Arc::new(auth::RbacIndex::new());
        Self {
            registry: Arc::new(Registry::new(store.clone()).with_rbac(rbac.clone())),
            rbac,
            watch_cache: Arc::new(watch_cache::WatchCache::new()),
            store,
            serving: Arc::new(AtomicBool::new(true)),
            shutdown: Arc::new(shutdown),
            admin_token: admin_token.map(Arc::from),
            nodes: nodes::Nodes::default(),
            join: None,
            service_account_key: SigningKey::generate_pkcs8()
                .and_then(|document| SigningKey::from_pkcs8(&document))
                .ok()
                .map(Arc::new),
        }
    }

    /// Signs and checks service-account tokens with `key` (the data dir's, shared by every
    /// server of the cluster).
    pub fn with_service_account_key(mut self, key: Arc<SigningKey>) -> Self {
        self.service_account_key = Some(key);
        self
    }

    /// Hands out ClusterIPs from `network` (address, prefix length); before `bootstrap`.
    pub fn with_service_network(mut self, network: (std::net::Ipv4Addr, u8)) -> Self {
        self.registry = Arc::new(self.registry.rebuilt().with_service_network(network));
        self
    }

    /// Stamps objects with `clock`'s time and `uids`' ids (the test tier's fixed ones);
    /// before `bootstrap`.
    pub fn with_clock(mut self, clock: Arc<dyn clock::Clock>, uids: Arc<dyn clock::Uids>) -> Self {
        self.registry = Arc::new(self.registry.rebuilt().with_clock(clock, uids));
        self
    }

    /// Reaches nodes (and through them their pods) as `nodes` allows; before serving.
    pub fn with_nodes(mut self, nodes: nodes::Nodes) -> Self {
        self.nodes = nodes;
        self
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The RBAC authorizer (for the access and rules reviews).
    pub fn rbac(&self) -> &Arc<auth::RbacIndex> {
        &self.rbac
    }

    /// Starts feeding the watch cache (and the RBAC index) from the store; until then (and
    /// whenever it restarts) watches are served from the store directly.
    pub fn spawn_watch_cache(&self) -> tokio::task::JoinHandle<()> {
        watch_cache::spawn(
            self.watch_cache.clone(),
            self.store.clone(),
            self.rbac.clone(),
        )
    }

    /// Marks the server as shutting down: `/readyz` fails so clients move away, and open
    /// watches end so in-flight requests can finish.
    pub fn begin_shutdown(&self) {
        self.serving.store(false, Ordering::SeqCst);
        self.shutdown.send_replace(true);
    }

    /// Fires when shutdown begins.
    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn is_serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }
}

/// The whole HTTP API as one router.
pub fn router(state: ApiState) -> Router {
    // Outside the guard, so a refusal answers in protobuf too when the client asks for it.
    let authenticated = health::routes()
        .fallback(handlers::handle)
        .layer(middleware::from_fn_with_state(state.clone(), auth::guard))
        .layer(middleware::from_fn(protobuf::encode::negotiate));
    // The join authenticates its own way (a bootstrap token), outside the API's layer.
    join::routes().merge(authenticated).with_state(state)
}

/// The API for in-process clients (controllers, the node agent in the same process): the same
/// router without the network's authentication, since nothing outside the process reaches it;
/// its requests carry the loopback user.
pub fn internal_router(state: ApiState) -> Router {
    internal_router_as(state, auth::loopback_user())
}

/// [`internal_router`] for an in-process client with an identity of its own (the controllers
/// as `system:kube-controller-manager`): trusted as the loopback is, and named as `user`.
pub fn internal_router_as(state: ApiState, user: auth::UserInfo) -> Router {
    health::routes()
        .fallback(handlers::handle)
        .layer(axum::Extension(user))
        .with_state(state)
}

/// The network's router for an in-process client that is authorized as `user` (the node of
/// `petset up`, as `system:node:<name>`, under the same Node authorizer as a remote agent):
/// authentication is skipped (the process vouches for it), authorization is not.
pub fn router_as(state: ApiState, user: auth::UserInfo) -> Router {
    router(state).layer(axum::Extension(auth::InProcessUser(user)))
}
