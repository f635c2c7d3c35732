//! The cluster inside one process: the API state over a store, the watch cache, the API's own
//! controllers (garbage collector, namespaces), the reconcilers and, optionally, the node. Used
//! by `petset up` and by the benchmarks, so both measure and run the same thing.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use petset_apiserver::ApiState;
use petset_store::Store;
use tokio::task::{JoinHandle, JoinSet};

use crate::cli::NodeRuntime;
use crate::node_role::{NodeOptions, OpenedNode, RunningNode};

/// What this process's node is, and what it serves besides the API.
pub struct NodeSettings {
    /// `None`: runc when this machine can run containers, else no node.
    pub runtime: Option<NodeRuntime>,
    pub image_store: PathBuf,
    pub network: petset_runtime::network::NetworkConfig,
    /// Where the cluster DNS answers; by default on the runc node's bridge, port 53.
    pub dns_listen: Option<std::net::SocketAddr>,
    /// Where the API serves, which the `kubernetes` Service's ClusterIP relays to.
    pub api_address: Option<std::net::SocketAddr>,
}

pub struct Cluster {
    pub state: ApiState,
    /// A client of the API in this process (no socket, no credentials).
    pub client: kube::Client,
    watch_cache: JoinHandle<()>,
    reconcilers: JoinSet<()>,
    /// This process's node, when it runs one.
    node: Option<RunningNode>,
}

/// How the API server reaches nodes: this process's own through a pipe, every other one over
/// TLS at the address its Node publishes (when the server has credentials for that).
struct LocalOrRemote {
    local: Option<petset_apiserver::nodes::InProcess>,
    local_name: Option<String>,
    remote: Option<petset_apiserver::nodes::Tls>,
}

impl petset_apiserver::nodes::NodeConnector for LocalOrRemote {
    fn connect<'a>(
        &'a self,
        endpoint: &'a petset_apiserver::nodes::NodeEndpoint,
    ) -> futures::future::BoxFuture<
        'a,
        Result<
            Box<dyn petset_apiserver::nodes::connector::NodeStream>,
            petset_apiserver::nodes::connector::ConnectError,
        >,
    > {
        match (&self.local, &self.remote) {
            (Some(local), _) if self.local_name.as_deref() == Some(endpoint.node.as_str()) => {
                local.connect(endpoint)
            }
            (_, Some(remote)) => remote.connect(endpoint),
            (Some(local), None) => local.connect(endpoint),
            (None, None) => Box::pin(async move {
                Err(
                    petset_apiserver::nodes::connector::ConnectError::NotReachable {
                        node: endpoint.node.clone(),
                    },
                )
            }),
        }
    }
}

impl Cluster {
    pub async fn start(
        store: Arc<dyn Store>,
        admin_token: Option<String>,
        data_dir: &Path,
        settings: NodeSettings,
    ) -> anyhow::Result<Self> {
        let NodeSettings {
            runtime,
            image_store,
            network,
            dns_listen,
            api_address,
        } = settings;
        let opened = OpenedNode::open(NodeOptions {
            name: petset_agent::node_name(),
            runtime,
            runtime_dir: crate::node_role::runtime_dir(data_dir),
            image_store,
            network: network.clone(),
            cluster_cidr: None,
            dns_listen,
            api_addresses: api_address.into_iter().collect(),
            volumes: data_dir.join("volumes"),
            pod_routes: false,
            fence: None,
            ingress_listen: None,
        })?;
        // Its API has no TLS, but its pods get their token volumes as anywhere else, whose
        // `kube-root-ca.crt` needs a CA to publish: one made in the data directory.
        let first_service_ip = network
            .services
            .map(|services| std::net::Ipv4Addr::from(u32::from(services.network()) + 1))
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let credentials = petset_apiserver::tls::load_or_create(
            data_dir,
            std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)),
            first_service_ip.into(),
        )
        .context("making the cluster CA")?;
        Self::start_with(
            store,
            admin_token,
            ControlPlane {
                services: network.services,
                cluster_cidr: None,
                volumes: data_dir.join("volumes"),
                remote_nodes: None,
                election: None,
                elected_compaction: None,
                node_lifecycle: Default::default(),
                cluster_ca: Some(credentials.ca_pem),
                service_account_key: None,
            },
            opened,
        )
        .await
    }

    /// The control plane of `plane` over `store`, with this process's node `opened` if any.
    pub async fn start_with(
        store: Arc<dyn Store>,
        admin_token: Option<String>,
        plane: ControlPlane,
        opened: Option<OpenedNode>,
    ) -> anyhow::Result<Self> {
        let nodes = petset_apiserver::nodes::Nodes {
            connector: (opened.is_some() || plane.remote_nodes.is_some()).then(|| {
                Arc::new(LocalOrRemote {
                    local: opened.as_ref().map(OpenedNode::in_process_connector),
                    local_name: opened.as_ref().map(|node| node.name().to_string()),
                    remote: plane.remote_nodes,
                }) as Arc<dyn petset_apiserver::nodes::NodeConnector>
            }),
        };
        let compacted = store.clone();
        let state = match plane.services {
            Some(services) => ApiState::new(store, admin_token)
                .with_service_network((services.network(), services.prefix())),
            None => ApiState::new(store, admin_token),
        }
        .with_nodes(nodes);
        let state = match plane.service_account_key {
            Some(key) => state.with_service_account_key(key),
            None => state,
        };
        state
            .registry()
            .bootstrap()
            .await
            .context("creating the built-in namespaces")?;
        let watch_cache = state.spawn_watch_cache();
        // The controllers are named as upstream's controller manager (and trusted as the
        // loopback is); this process's node is authorized as any node's agent is.
        let client = kube::Client::new(
            petset_apiserver::internal_router_as(
                state.clone(),
                petset_apiserver::auth::controller_manager_user(),
            ),
            "default",
        );
        let singletons = {
            let (state, client) = (state.clone(), client.clone());
            let (volumes, cluster_cidr) = (plane.volumes.clone(), plane.cluster_cidr);
            let node_lifecycle = plane.node_lifecycle.clone();
            let cluster_ca = plane.cluster_ca.clone();
            let (store, compaction) = (compacted, plane.elected_compaction);
            move || {
                let mut tasks = petset_controllers::spawn_all_with(
                    client.clone(),
                    volumes.clone(),
                    node_lifecycle.clone(),
                    cluster_ca.clone(),
                );
                if let Some(cluster_cidr) = cluster_cidr {
                    tasks.spawn(petset_controllers::nodeipam::run(
                        client.clone(),
                        (cluster_cidr.network(), cluster_cidr.prefix()),
                    ));
                }
                if let Some(interval) = compaction {
                    let compactor =
                        AbortOnDrop(petset_store::spawn_compactor(store.clone(), interval));
                    tasks.spawn(async move {
                        let mut compactor = compactor;
                        let _ = (&mut compactor.0).await;
                    });
                }
                let api_controllers = AbortOnDrop(petset_apiserver::spawn_controllers(&state));
                tasks.spawn(async move {
                    let mut api_controllers = api_controllers;
                    let _ = (&mut api_controllers.0).await;
                });
                tasks
            }
        };
        // What must run once in the cluster runs here, or, with several servers, wherever
        // the election says (this server's node runs regardless).
        let mut reconcilers = match plane.election {
            None => singletons(),
            Some(config) => {
                let mut tasks = JoinSet::new();
                tasks.spawn(petset_controllers::leader::run_elected(
                    client.clone(),
                    config,
                    singletons,
                ));
                tasks
            }
        };
        let node = match opened {
            Some(opened) => {
                let node_client = node_client(&state, opened.name());
                match opened.start(node_client, &mut reconcilers).await {
                    Ok(node) => Some(node),
                    Err(error) => {
                        reconcilers.abort_all();
                        watch_cache.abort();
                        return Err(error);
                    }
                }
            }
            None => None,
        };
        Ok(Self {
            state,
            client,
            watch_cache,
            reconcilers,
            node,
        })
    }

    /// Starts `opened` as this process's node after the control plane (`petset server
    /// --node-runtime`: the node's pod range comes from node IPAM, so it can only be opened
    /// once the API runs). The API server reaches it over TLS, as any joined node.
    pub async fn attach_node(&mut self, opened: OpenedNode) -> anyhow::Result<()> {
        anyhow::ensure!(self.node.is_none(), "this process runs a node already");
        let client = node_client(&self.state, opened.name());
        self.node = Some(opened.start(client, &mut self.reconcilers).await?);
        Ok(())
    }

    /// The name of this process's node, when it runs one.
    pub fn node_name(&self) -> Option<&str> {
        self.node.as_ref().map(|node| node.name.as_str())
    }

    /// Serves this process's node API over HTTPS on `listener` and publishes where on its Node
    /// (`status.addresses`, `status.daemonEndpoints`); both stop with the cluster.
    pub fn serve_kubelet(
        &mut self,
        listener: tokio::net::TcpListener,
        tls: Arc<petset_agent::kubelet::server::TlsConfig>,
    ) -> anyhow::Result<std::net::SocketAddr> {
        let Some(node) = &self.node else {
            anyhow::bail!("this process runs no node, so it serves no node API");
        };
        node.serve_node_api(&self.client, listener, tls, &mut self.reconcilers)
    }

    /// Stops everything started here; the HTTP server, if any, is the caller's.
    pub async fn stop(&mut self) {
        self.state.begin_shutdown();
        self.reconcilers.abort_all();
        while self.reconcilers.join_next().await.is_some() {}
        self.watch_cache.abort();
        if let Some(node) = &self.node {
            node.stop().await;
        }
    }
}

/// What the control plane is configured with beyond its store.
pub struct ControlPlane {
    /// Where ClusterIPs come from.
    pub services: Option<petset_runtime::network::Cidr>,
    /// Where Nodes' pod networks come from, a /24 each (`None`: nodes bring their own).
    pub cluster_cidr: Option<petset_runtime::network::Cidr>,
    /// Where the `local-path` provisioner puts volumes on their nodes.
    pub volumes: PathBuf,
    /// How to reach nodes on other machines (the API server's client TLS), if at all.
    pub remote_nodes: Option<petset_apiserver::nodes::Tls>,
    /// With an election: the store's compaction runs on the leader only, at this interval.
    pub elected_compaction: Option<std::time::Duration>,
    /// How silent nodes are judged (`--node-monitor-grace-period`).
    pub node_lifecycle: petset_controllers::NodeLifecycleConfig,
    /// With several servers over one store: the Lease the controllers run under.
    pub election: Option<petset_controllers::leader::ElectionConfig>,
    /// The cluster CA's PEM, published in every namespace as `kube-root-ca.crt` (none: no
    /// such ConfigMap, and pods with a token volume wait for it).
    pub cluster_ca: Option<String>,
    /// The data dir's service-account signing key (`None`: one made for this process).
    pub service_account_key: Option<Arc<petset_pki::service_account_token::SigningKey>>,
}

/// The client of this process's node `name`: authorized as `system:node:<name>`, as a remote
/// agent with its certificate is.
fn node_client(state: &ApiState, name: &str) -> kube::Client {
    kube::Client::new(
        petset_apiserver::router_as(state.clone(), petset_apiserver::auth::node_user(name)),
        "default",
    )
}

/// A task aborted when this is dropped (a JoinSet aborts its own tasks, not what they spawned).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// The pod network of the benchmarks' nodes: a bridge of their own, so a benchmark never takes
/// a running petset's (it is refused while that one's pod CIDR is in use).
pub fn bench_network() -> petset_runtime::network::NetworkConfig {
    petset_runtime::network::NetworkConfig {
        bridge: "petset-bench".into(),
        cidr: petset_runtime::network::Cidr::from_str("10.244.0.0/16")
            .unwrap_or_else(|_| unreachable!("a valid CIDR literal")),
        services: None,
    }
}
