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
        let state = match network.services {
            Some(services) => ApiState::new(store, admin_token)
                .with_service_network((services.network(), services.prefix())),
            None => ApiState::new(store, admin_token),
        };
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
        let mut runc = None;
        match node {
            Some(NodeRuntime::Simulated) => {
                let node = petset_agent::node_name();
                tracing::info!(%node, "running a simulated node");
                reconcilers.spawn(petset_agent::simulated::run(
                    client.clone(),
                    node,
                    network.cidr,
                ));
            }
            Some(NodeRuntime::None) => {
                tracing::info!("running without a node; pods stay Pending");
            }
            Some(NodeRuntime::Runc) | None => {
                let config = petset_agent::runc::Config {
                    runtime_dir: data_dir.join("node"),
                    image_store: image_store.clone(),
                    network: Some(network.clone()),
                    api_address,
                    volumes: Some(data_dir.join("volumes")),
                };
                let opened = if is_root() {
                    petset_agent::runc::RuncNode::open(&config).map(Arc::new)
                } else {
                    Err("real containers need root".to_string())
                };
                match (opened, node) {
                    (Ok(runc_node), _) => {
                        let name = petset_agent::node_name();
                        tracing::info!(node = %name, images = %image_store.display(), bridge = %network.bridge, pod_cidr = %network.cidr, "running a node with runc");
                        reconcilers.spawn(petset_agent::runc::run(
                            client.clone(),
                            name,
                            runc_node.clone(),
                        ));
                        state.set_node_logs(Arc::new(NodeStreams(runc_node.clone())));
                        state.set_node_exec(Arc::new(NodeStreams(runc_node.clone())));
                        state.set_pod_dialer(Arc::new(PodsOnTheBridge {
                            node: runc_node.clone(),
                            name: petset_agent::node_name(),
                        }));
                        runc = Some(runc_node);
                    }
                    (Err(reason), Some(_)) => {
                        anyhow::bail!("--node-runtime runc cannot run here: {reason}")
                    }
                    (Err(reason), None) => {
                        tracing::warn!(%reason, "no node: pods stay Pending (use --node-runtime simulated for a node without containers)");
                    }
                }
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
        })
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

/// The proxy dials a pod only when this process's runc node runs it and its address is on
/// the node's bridge.
struct PodsOnTheBridge {
    node: Arc<petset_agent::runc::RuncNode>,
    name: String,
}

impl petset_apiserver::proxy::PodDialer for PodsOnTheBridge {
    fn may_dial(&self, pod: &serde_json::Value, address: std::net::IpAddr) -> Result<(), String> {
        let pod_name = pod
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let node = pod
            .pointer("/spec/nodeName")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        if node != self.name {
            return Err(format!(
                "pod {pod_name} does not run on this machine's runc node (its node is {node:?}), so petset does not dial it"
            ));
        }
        if !self.node.owns_pod_address(address) {
            return Err(format!(
                "address {address} of pod {pod_name} is not on petset's pod bridge, so petset does not dial it"
            ));
        }
        Ok(())
    }
}

/// `pods/log` and `pods/exec` with the runc node in this process.
struct NodeStreams(Arc<petset_agent::runc::RuncNode>);

impl petset_apiserver::logs::NodeLogs for NodeStreams {
    fn log_files(&self, pod: &serde_json::Value, container: &str) -> Option<Vec<PathBuf>> {
        let uid = pod.pointer("/metadata/uid")?.as_str()?;
        self.0.log_files(uid, container)
    }
}

impl petset_apiserver::NodeExec for NodeStreams {
    fn command(
        &self,
        pod: &serde_json::Value,
        container: &str,
        argv: &[String],
        tty: bool,
    ) -> Option<tokio::process::Command> {
        let uid = pod.pointer("/metadata/uid")?.as_str()?;
        self.0
            .exec_command(uid, container, argv, tty)
            .map(tokio::process::Command::from)
    }

    fn attach(
        &self,
        pod: &serde_json::Value,
        container: &str,
        stdin_once: bool,
    ) -> Option<petset_apiserver::Attachment> {
        let uid = pod.pointer("/metadata/uid")?.as_str()?;
        let attached = self.0.attach(uid, container, stdin_once)?;
        Some(petset_apiserver::Attachment {
            log: attached.log,
            from_start: attached.from_start,
            stdin: attached.stdin,
            running: attached.running,
        })
    }
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
