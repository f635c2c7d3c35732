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

use petset_agent::kubelet::{Kubelet, NodeRuntime as KubeletRuntime};

use crate::cli::NodeRuntime;

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
    api_controllers: JoinHandle<()>,
    reconcilers: JoinSet<()>,
    /// The runc node's configuration, when this process runs one.
    runc: Option<Arc<petset_agent::runc::RuncNode>>,
    /// This process's node and its node API, when it runs one.
    kubelet: Option<(String, Kubelet)>,
}

/// The node this process runs, opened before the API state (which reaches it).
enum LocalNode {
    None,
    Simulated,
    Runc(Arc<petset_agent::runc::RuncNode>),
}

impl LocalNode {
    fn open(
        runtime: Option<NodeRuntime>,
        data_dir: &Path,
        image_store: &Path,
        network: &petset_runtime::network::NetworkConfig,
        api_address: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Self> {
        match runtime {
            Some(NodeRuntime::Simulated) => Ok(Self::Simulated),
            Some(NodeRuntime::None) => {
                tracing::info!("running without a node; pods stay Pending");
                Ok(Self::None)
            }
            Some(NodeRuntime::Runc) | None => {
                let config = petset_agent::runc::Config {
                    runtime_dir: data_dir.join("node"),
                    image_store: image_store.to_path_buf(),
                    network: Some(network.clone()),
                    api_address,
                    volumes: Some(data_dir.join("volumes")),
                };
                let opened = if is_root() {
                    petset_agent::runc::RuncNode::open(&config).map(Arc::new)
                } else {
                    Err("real containers need root".to_string())
                };
                match (opened, runtime) {
                    (Ok(node), _) => Ok(Self::Runc(node)),
                    (Err(reason), Some(_)) => {
                        anyhow::bail!("--node-runtime runc cannot run here: {reason}")
                    }
                    (Err(reason), None) => {
                        tracing::warn!(%reason, "no node: pods stay Pending (use --node-runtime simulated for a node without containers)");
                        Ok(Self::None)
                    }
                }
            }
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
            runtime: node,
            image_store,
            network,
            dns_listen,
            api_address,
        } = settings;
        let local = LocalNode::open(node, data_dir, &image_store, &network, api_address)?;
        let node_name = petset_agent::node_name();
        // The API reaches this process's node (and through it, for the proxy, its pods) through
        // a pipe to its node API.
        let (kubelet, pod_feed) = match &local {
            LocalNode::None => (None, None),
            LocalNode::Simulated => {
                let (kubelet, _) = Kubelet::new(&node_name, KubeletRuntime::Simulated);
                (Some(kubelet), None)
            }
            LocalNode::Runc(runc_node) => {
                let (kubelet, feed) =
                    Kubelet::new(&node_name, KubeletRuntime::Runc(runc_node.clone()));
                (Some(kubelet), Some(feed))
            }
        };
        let nodes = petset_apiserver::nodes::Nodes {
            connector: kubelet.as_ref().map(|kubelet| {
                Arc::new(petset_apiserver::nodes::InProcess::new(
                    node_name.clone(),
                    kubelet.in_process_router(),
                )) as Arc<dyn petset_apiserver::nodes::NodeConnector>
            }),
        };
        let state = match network.services {
            Some(services) => ApiState::new(store, admin_token)
                .with_service_network((services.network(), services.prefix())),
            None => ApiState::new(store, admin_token),
        }
        .with_nodes(nodes);
        state
            .registry()
            .bootstrap()
            .await
            .context("creating the built-in namespaces")?;
        let watch_cache = state.spawn_watch_cache();
        let api_controllers = petset_apiserver::spawn_controllers(&state);
        let client = kube::Client::new(petset_apiserver::internal_router(state.clone()), "default");
        let mut reconcilers =
            petset_controllers::spawn_all(client.clone(), data_dir.join("volumes"));
        if let Some(feed) = pod_feed {
            reconcilers.spawn(feed.run(client.clone()));
        }
        let mut runc = None;
        match local {
            LocalNode::None => {}
            LocalNode::Simulated => {
                tracing::info!(node = %node_name, "running a simulated node");
                reconcilers.spawn(petset_agent::simulated::run(
                    client.clone(),
                    node_name.clone(),
                    network.cidr,
                ));
            }
            LocalNode::Runc(runc_node) => {
                tracing::info!(node = %node_name, images = %image_store.display(), bridge = %network.bridge, pod_cidr = %network.cidr, "running a node with runc");
                reconcilers.spawn(petset_agent::runc::run(
                    client.clone(),
                    node_name.clone(),
                    runc_node.clone(),
                ));
                runc = Some(runc_node);
            }
        }
        let dns_listen = dns_listen.or_else(|| {
            runc.as_ref()
                .and_then(|node| node.dns_address())
                .map(|address| std::net::SocketAddr::from((address, 53)))
        });
        if let Some(listen) = dns_listen {
            let config = petset_dns::DnsConfig {
                listen,
                domain: "cluster.local".into(),
                pod_network: runc
                    .is_some()
                    .then(|| (network.cidr.network(), network.cidr.prefix())),
            };
            if let Err(error) = petset_dns::serve(&client, &config, &mut reconcilers).await {
                // Nothing of the node may outlive a start that failed: its bridge and mount.
                reconcilers.abort_all();
                if let Some(node) = &runc {
                    node.shutdown(std::time::Duration::ZERO).await;
                }
                return Err(error).context("starting the cluster DNS");
            }
        }
        Ok(Self {
            state,
            client,
            watch_cache,
            api_controllers,
            reconcilers,
            runc,
            kubelet: kubelet.map(|kubelet| (node_name, kubelet)),
        })
    }

    /// The name of this process's node, when it runs one.
    pub fn node_name(&self) -> Option<&str> {
        self.kubelet.as_ref().map(|(name, _)| name.as_str())
    }

    /// Serves this process's node API over HTTPS on `listener` and publishes where on its Node
    /// (`status.addresses`, `status.daemonEndpoints`); both stop with the cluster.
    pub fn serve_kubelet(
        &mut self,
        listener: tokio::net::TcpListener,
        tls: Arc<petset_agent::kubelet::server::TlsConfig>,
    ) -> anyhow::Result<std::net::SocketAddr> {
        let Some((name, kubelet)) = &self.kubelet else {
            anyhow::bail!("this process runs no node, so it serves no node API");
        };
        let address = listener.local_addr().context("the node API's address")?;
        self.reconcilers
            .spawn(petset_agent::kubelet::server::serve_tls(
                listener,
                tls,
                kubelet.router(),
            ));
        self.reconcilers
            .spawn(petset_agent::node::publish_kubelet_endpoint(
                self.client.clone(),
                name.clone(),
                address.ip(),
                address.port(),
            ));
        Ok(address)
    }

    /// Stops everything started here; the HTTP server, if any, is the caller's.
    pub async fn stop(&mut self) {
        self.state.begin_shutdown();
        self.reconcilers.abort_all();
        self.api_controllers.abort();
        self.watch_cache.abort();
        // A clean stop stops the pods' containers too: nothing of petset outlives it. (After a
        // crash, the next start removes what is left before it runs anything.)
        if let Some(node) = &self.runc {
            node.shutdown(std::time::Duration::from_secs(5)).await;
        }
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
