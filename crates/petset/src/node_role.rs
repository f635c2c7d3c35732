//! A node, whichever process runs it: opened before anything reaches it (its runtime and its
//! node API's router, which an API server in the same process relays to through a pipe), then
//! started with a client of the API (in process for `petset up`, over mTLS for `petset agent`):
//! it registers its Node, keeps its Lease, runs the pods bound to it, and serves the cluster
//! DNS on its bridge.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use petset_agent::fence::Fence;
use petset_agent::kubelet::{Kubelet, NodeRuntime as KubeletRuntime, PodFeed};
use petset_agent::runc::RuncNode;
use petset_agent::watchdog::{Launcher, Outcome, Paths};
use petset_runtime::network::{Cidr, NetworkConfig};
use tokio::task::JoinSet;

use crate::cli::NodeRuntime;

/// What a node is made of.
pub struct NodeOptions {
    pub name: String,
    /// `None`: runc when this machine can run containers, else no node.
    pub runtime: Option<NodeRuntime>,
    /// Where the runtime keeps its state (pods, runc's root, logs).
    pub runtime_dir: PathBuf,
    pub image_store: PathBuf,
    pub network: NetworkConfig,
    /// The whole cluster's pod networks, when they are more than this node's (`petset agent`):
    /// the service proxy relays to pods in it, and the DNS waits for pods from it.
    pub cluster_cidr: Option<Cidr>,
    /// Where the cluster DNS answers; by default on the runc node's bridge, port 53.
    pub dns_listen: Option<std::net::SocketAddr>,
    /// Where the API serves, which the `kubernetes` Service's ClusterIP relays to.
    pub api_addresses: Vec<std::net::SocketAddr>,
    /// Where `local-path` volumes are made (`DIR/volumes` for `petset up`).
    pub volumes: PathBuf,
    /// Routes to other nodes' pod networks, and forwarding in this node's namespace.
    pub pod_routes: bool,
    /// Kill every container when the Lease has not been renewed for this long
    /// (`petset_agent::fence`); `None`: the node never fences itself.
    pub fence: Option<FenceOptions>,
    /// Where a runc node's ingress proxy serves (`petset_agent::ingress`); `None`: nowhere.
    pub ingress_listen: Option<std::net::SocketAddr>,
}

/// A node's self-fence.
pub struct FenceOptions {
    pub deadline: std::time::Duration,
    /// The node's data directory: the fence keeps its heartbeat, and a runc node's watchdog
    /// its lock, log and marker, in `DIR/fence` (`fence_dir`).
    pub data_dir: PathBuf,
}

/// The runtime a node was opened with.
enum Runtime {
    Simulated,
    Runc(Arc<RuncNode>),
}

/// A node opened but not yet started.
pub struct OpenedNode {
    options: NodeOptions,
    runtime: Runtime,
    kubelet: Kubelet,
    feed: PodFeed,
    /// A fenced runc node's watchdog, started with the node.
    watchdog: Option<Launcher>,
}

/// A started node: what stopping it must stop.
pub struct RunningNode {
    pub name: String,
    pub kubelet: Kubelet,
    runc: Option<Arc<RuncNode>>,
    /// Its watchdog, if any, is told to exit once the containers are stopped.
    fence: Fence,
}

impl OpenedNode {
    /// Opens the node `options` describe; `Ok(None)` when there is to be no node (asked
    /// for, or runc unavailable without being asked for).
    pub fn open(options: NodeOptions) -> anyhow::Result<Option<Self>> {
        let mut watchdog = None;
        let runtime = match options.runtime {
            Some(NodeRuntime::Simulated) => Runtime::Simulated,
            Some(NodeRuntime::None) => {
                tracing::info!("running without a node; pods stay Pending");
                return Ok(None);
            }
            Some(NodeRuntime::Runc) | None => {
                // Made before the runtime opens (its bridge and mounts), so that a failure
                // here leaves nothing to undo.
                if let Some(fence) = &options.fence {
                    watchdog = Some(watchdog_launcher(&fence.data_dir, &options.runtime_dir)?);
                }
                let config = petset_agent::runc::Config {
                    runtime_dir: options.runtime_dir.clone(),
                    image_store: options.image_store.clone(),
                    network: Some(options.network.clone()),
                    api_addresses: options.api_addresses.clone(),
                    ingress_listen: options.ingress_listen,
                    volumes: Some(options.volumes.clone()),
                    // petset's own binary keeps each container (`container-shim`), so a
                    // restart of this process takes its containers over.
                    shim: std::env::current_exe().ok(),
                };
                let opened = if crate::cluster::is_root() {
                    RuncNode::open(&config).map(Arc::new)
                } else {
                    Err("real containers need root".to_string())
                };
                match (opened, options.runtime) {
                    (Ok(node), _) => Runtime::Runc(node),
                    (Err(reason), Some(_)) => {
                        anyhow::bail!("--node-runtime runc cannot run here: {reason}")
                    }
                    (Err(reason), None) => {
                        tracing::warn!(%reason, "no node: pods stay Pending (use --node-runtime simulated for a node without containers)");
                        return Ok(None);
                    }
                }
            }
        };
        let kubelet_runtime = match &runtime {
            Runtime::Simulated => KubeletRuntime::Simulated,
            Runtime::Runc(node) => KubeletRuntime::Runc(node.clone()),
        };
        let (kubelet, feed) = Kubelet::new(&options.name, kubelet_runtime);
        Ok(Some(Self {
            options,
            runtime,
            kubelet,
            feed,
            watchdog,
        }))
    }

    pub fn name(&self) -> &str {
        &self.options.name
    }

    /// The node API for an API server in this process: a pipe to this node's router.
    pub fn in_process_connector(&self) -> petset_apiserver::nodes::InProcess {
        petset_apiserver::nodes::InProcess::new(
            self.options.name.clone(),
            self.kubelet.in_process_router(),
        )
    }

    /// Starts the node's tasks in `tasks` with `client`; on an error nothing of the node is
    /// left running (its bridge and mounts are removed).
    pub async fn start(
        self,
        client: kube::Client,
        tasks: &mut JoinSet<()>,
    ) -> anyhow::Result<RunningNode> {
        let Self {
            options,
            runtime,
            kubelet,
            feed,
            watchdog,
        } = self;
        let name = options.name.clone();
        let network = &options.network;
        let mut fence = match &options.fence {
            None => Fence::off(),
            Some(fence) => Fence::new(fence.deadline).map_err(|e| anyhow::anyhow!("{e}"))?,
        };
        let runc = match runtime {
            Runtime::Simulated => {
                // Its pods are bookkeeping in this process's memory: they die with it, so its
                // fence covers the agent's death without a watchdog.
                fence = fence.with_pods_that_die_with_the_agent();
                tracing::info!(node = %name, pod_cidr = %network.cidr, "running a simulated node");
                tasks.spawn(petset_agent::simulated::run_fenced(
                    client.clone(),
                    name.clone(),
                    network.cidr,
                    fence.clone(),
                ));
                None
            }
            Runtime::Runc(node) => {
                // runc containers outlive this process: a watchdog of their own outside it,
                // started before anything of the node runs.
                if let Some(launcher) = watchdog {
                    fence = fence.with_watchdog(launcher);
                    fence.start_watchdog();
                }
                // Only real containers have streams to look pods up for.
                tasks.spawn(feed.run(client.clone()));
                tracing::info!(node = %name, images = %options.image_store.display(), bridge = %network.bridge, pod_cidr = %network.cidr, "running a node with runc");
                tasks.spawn(petset_agent::runc::run_fenced(
                    client.clone(),
                    name.clone(),
                    node.clone(),
                    fence.clone(),
                ));
                if options.pod_routes {
                    // host-gw: this node's namespace is its own, so it may forward and route.
                    tasks.spawn(petset_agent::routes::run(
                        client.clone(),
                        name.clone(),
                        network.cidr,
                        true,
                        node.pod_networks().clone(),
                    ));
                }
                Some(node)
            }
        };
        let running = RunningNode {
            name,
            kubelet,
            runc,
            fence,
        };
        let dns_listen = options.dns_listen.or_else(|| {
            running
                .runc
                .as_ref()
                .and_then(|node| node.dns_address())
                .map(|address| std::net::SocketAddr::from((address, 53)))
        });
        if let Some(listen) = dns_listen {
            let pods = options.cluster_cidr.unwrap_or(network.cidr);
            let config = petset_dns::DnsConfig {
                listen,
                domain: "cluster.local".into(),
                pod_network: running
                    .runc
                    .is_some()
                    .then(|| (pods.network(), pods.prefix())),
            };
            if let Err(error) = petset_dns::serve(&client, &config, tasks).await {
                // Nothing of the node may outlive a start that failed: its bridge and mount.
                tasks.abort_all();
                running.stop_now().await;
                return Err(error).context("starting the cluster DNS");
            }
        }
        Ok(running)
    }
}

impl RunningNode {
    /// Serves the node API over HTTPS on `listener` and publishes where on the Node
    /// (`status.addresses`, `status.daemonEndpoints`); both run in `tasks`.
    pub fn serve_node_api(
        &self,
        client: &kube::Client,
        listener: tokio::net::TcpListener,
        tls: Arc<petset_agent::kubelet::server::TlsConfig>,
        tasks: &mut JoinSet<()>,
    ) -> anyhow::Result<std::net::SocketAddr> {
        let address = listener.local_addr().context("the node API's address")?;
        tasks.spawn(petset_agent::kubelet::server::serve_tls(
            listener,
            tls,
            self.kubelet.router(),
        ));
        tasks.spawn(petset_agent::node::publish_kubelet_endpoint(
            client.clone(),
            self.name.clone(),
            address.ip(),
            address.port(),
        ));
        Ok(address)
    }

    /// Stops the pods' containers (a clean stop leaves nothing of petset running; after a
    /// crash, the next start removes what is left before it runs anything).
    pub async fn stop(&self) {
        if let Some(node) = &self.runc {
            node.shutdown(std::time::Duration::from_secs(5)).await;
        }
        self.fence.stop_watchdog();
    }

    async fn stop_now(&self) {
        if let Some(node) = &self.runc {
            node.shutdown(std::time::Duration::ZERO).await;
        }
        self.fence.stop_watchdog();
    }
}

/// Where a node in a data directory keeps its fence's files (`petset_agent::watchdog::Paths`).
pub fn fence_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("fence")
}

/// The launcher of this node's fence watchdog: this binary's `fence-watchdog`, with absolute
/// paths (it runs from `/`, so that it pins no directory of the agent's).
fn watchdog_launcher(data_dir: &Path, runtime_dir: &Path) -> anyhow::Result<Launcher> {
    let program =
        std::env::current_exe().context("finding petset's own binary for the fence watchdog")?;
    let absolute = |path: &Path| {
        std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
    };
    let data_dir = absolute(data_dir)?;
    let runtime_root = absolute(runtime_dir)?;
    let paths = Paths::new(fence_dir(&data_dir), runtime_root.clone());
    let args = vec![
        "fence-watchdog".into(),
        "--data-dir".into(),
        data_dir.into_os_string(),
        "--runtime-root".into(),
        runtime_root.into_os_string(),
    ];
    Ok(Launcher::new(paths, program, args))
}

/// `petset fence-watchdog`: watches the node's heartbeat until its agent stops cleanly or the
/// deadline passes (see `petset_agent::watchdog`). Exits 0 at once when another watchdog
/// watches the node.
pub fn run_fence_watchdog(args: &crate::cli::FenceWatchdogArgs) -> anyhow::Result<()> {
    let paths = Paths::new(fence_dir(&args.data_dir), args.runtime_root.clone());
    match petset_agent::watchdog::run(&paths)? {
        Outcome::AnotherRuns | Outcome::Stopped | Outcome::Fenced(_) => Ok(()),
    }
}

/// The runtime directory of a node in a data directory.
pub fn runtime_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("node")
}

#[cfg(test)]
mod tests {
    /// The node's half of the fenced failover and the servers' half agree: on the annotation
    /// a fenced node carries, on the margin the servers leave after its deadline, and on how
    /// long a returning node waits for deletes the servers may still make.
    #[test]
    fn the_node_and_the_servers_agree_on_the_fence() {
        use petset_controllers::nodeloss;
        assert_eq!(
            petset_agent::node::FENCE_DEADLINE_ANNOTATION,
            nodeloss::FENCE_DEADLINE_ANNOTATION
        );
        assert_eq!(
            petset_agent::fence::STOP_ALLOWANCE,
            nodeloss::STOP_ALLOWANCE
        );
        assert!(petset_agent::fence::RETURN_SETTLE > nodeloss::decisions::CONFIRMATION_LIFETIME);
    }
}
