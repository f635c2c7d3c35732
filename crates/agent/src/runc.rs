//! The real node (`petset up --node-runtime runc`): runs every pod bound to it as runc
//! containers in a namespace sandbox (see `petset_runtime::pods`), with one worker per pod
//! (`crate::pods`) over `crate::runtimes::runc`, and reports their state as the kubelet does.
//!
//! **At most one:** a pod's containers run only from its worker, and a container is removed
//! before its name is started again. Containers are kept by shims of their own
//! (`petset_runtime::shim`), so they outlive a crash or a kill -9 of petset: on start, each
//! pod's worker takes over the containers of its pod that still run (same processes, restart
//! counts, addresses and readiness, as a restarted kubelet does), and once the node's pods are
//! listed, the sandboxes of pods no longer bound here are stopped and removed
//! (`crate::pods::run`). A clean stop (`RuncNode::shutdown`) cancels the workers and waits for
//! them before it sweeps, so no container starts after the sweep.
//!
//! What the pod's containers go through is told as the kubelet tells it: its statuses and
//! conditions, and its events (`crate::kubelet_events`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use petset_runtime::images::ImageStore;
use petset_runtime::network::NetworkConfig;
use petset_runtime::pods::Runtime;

use crate::fence::Fence;
use crate::kubelet_events::KubeletEvents;
use crate::machine::Machine;
use crate::node::{self, Kind, NodeFacts};
use crate::pods::{Shared, Workers, sandbox_id_of};
use crate::routes::PodNetworks;
use crate::runtimes::runc::RuncRuntime;

pub use crate::pods::Stdins;

/// Where the runc node keeps its state, and where images come from.
#[derive(Debug, Clone)]
pub struct Config {
    pub runtime_dir: PathBuf,
    pub image_store: PathBuf,
    /// The pod network; without one, pods share nothing but their own loopback.
    pub network: Option<NetworkConfig>,
    /// The API servers' addresses, the only ones off the bridge the service proxy relays to
    /// (the `kubernetes` Service).
    pub api_addresses: Vec<std::net::SocketAddr>,
    /// Where the ingress proxy serves (`crate::ingress`); `None`: nowhere.
    pub ingress_listen: Option<std::net::SocketAddr>,
    /// The root of this node's local-path volumes (`DIR/volumes`), which `crate::local_path`
    /// keeps in step with the PersistentVolumes bound to this node.
    pub volumes: Option<PathBuf>,
    /// The program whose `container-shim` keeps each container (petset's own binary), so
    /// containers outlive this process and its next start takes them over; `None`: they end
    /// with it.
    pub shim: Option<PathBuf>,
}

impl Config {
    /// petset's own binary (for its `probe`): the shim's program, else this process's, as
    /// found now.
    fn petset_binary(&self) -> Option<PathBuf> {
        self.shim.clone().or_else(|| std::env::current_exe().ok())
    }
}

/// This machine's runc node: opened once (which checks that containers can run here), then
/// shared by its pod tasks and by the API server's logs and exec.
pub struct RuncNode {
    runtime: Arc<Runtime>,
    config: Config,
    stdins: Stdins,
    workers: Workers,
    /// The pod networks its service proxy dials; `crate::routes::run` adds the routed ones.
    pod_networks: PodNetworks,
}

/// What `kubectl attach` connects to: a running container's output and, when it has one, its
/// stdin.
pub struct Attached {
    /// The output of the container's current run.
    pub log: PathBuf,
    /// For a `stdinOnce` container (`kubectl run -i`), the output is sent from its start, so
    /// what the container printed before the attach is not lost; otherwise only what follows.
    pub from_start: bool,
    pub stdin: Option<Box<dyn std::io::Write + Send>>,
    /// Whether the container still runs.
    pub running: Box<dyn Fn() -> bool + Send + Sync>,
}

/// Writes to a container's stdin pipe kept by the node, so later attaches reach it too.
struct SharedStdin {
    stdins: Stdins,
    key: String,
}

impl std::io::Write for SharedStdin {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut stdins = self.stdins.lock().unwrap_or_else(|e| e.into_inner());
        match stdins.get_mut(&self.key) {
            Some(pipe) => pipe.write(data),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl RuncNode {
    /// Opens the node's runtime; the error says what this machine lacks.
    pub fn open(config: &Config) -> Result<Self, String> {
        let mut runtime = Runtime::open(&config.runtime_dir).map_err(|e| e.to_string())?;
        if let Some(shim) = &config.shim {
            runtime = runtime.with_shim(shim.clone());
        }
        if let Some(network) = &config.network {
            runtime = runtime
                .with_network(network.clone())
                .map_err(|e| e.to_string())?;
        }
        Ok(Self {
            runtime: Arc::new(runtime),
            config: config.clone(),
            stdins: Stdins::default(),
            workers: Workers::default(),
            pod_networks: PodNetworks::of_this_node(config.network.as_ref().map(|n| n.cidr)),
        })
    }

    /// Attaches to a running container of the pod with this uid; `None` when this node runs
    /// no such container. `stdin_once` hands the stdin over for good: it closes when the
    /// attach ends, as upstream's `stdinOnce`.
    pub fn attach(&self, uid: &str, container: &str, stdin_once: bool) -> Option<Attached> {
        let id = sandbox_id_of(uid);
        // A `kubectl run -i` container that ended before the attach arrived still gives its
        // output (the attach then ends at once) rather than an error and a fallback to logs.
        if self.runtime.status(&id, container).as_deref() != Some("running") && !stdin_once {
            return None;
        }
        let log = self.log_files(uid, container)?.pop()?;
        let key = format!("{id}-{container}");
        let stdin: Option<Box<dyn std::io::Write + Send>> = if stdin_once {
            let mut stdins = self.stdins.lock().unwrap_or_else(|e| e.into_inner());
            stdins
                .remove(&key)
                .map(|pipe| Box::new(pipe) as Box<dyn std::io::Write + Send>)
        } else {
            let present = self
                .stdins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&key);
            present.then(|| {
                Box::new(SharedStdin {
                    stdins: self.stdins.clone(),
                    key: key.clone(),
                }) as Box<dyn std::io::Write + Send>
            })
        };
        let runtime = self.runtime.clone();
        let container = container.to_string();
        Some(Attached {
            log,
            from_start: stdin_once,
            stdin,
            running: Box::new(move || {
                runtime.status(&id, &container).as_deref() == Some("running")
            }),
        })
    }

    /// The pod networks this node reaches, to hand to `crate::routes::run`.
    pub fn pod_networks(&self) -> &PodNetworks {
        &self.pod_networks
    }

    /// Where pods find the cluster DNS: the bridge's address, when there is a pod network.
    pub fn dns_address(&self) -> Option<std::net::Ipv4Addr> {
        self.config.network.as_ref().map(|n| n.cidr.gateway())
    }

    /// Whether `address` is a pod's on this node's bridge, the only pod addresses petset dials.
    pub fn owns_pod_address(&self, address: std::net::IpAddr) -> bool {
        match (address, &self.config.network) {
            (std::net::IpAddr::V4(v4), Some(network)) => {
                network.cidr.contains(v4) && v4 != network.cidr.gateway()
            }
            _ => false,
        }
    }

    /// The log files of a container of the pod with this uid, oldest run first; `None` when
    /// this node has no such pod.
    pub fn log_files(&self, uid: &str, container: &str) -> Option<Vec<PathBuf>> {
        let dir = self.runtime.pod_dir(&sandbox_id_of(uid));
        if !dir.is_dir() {
            return None;
        }
        let mut runs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir.join("logs").join(container))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let path = e.path();
                        let run = path.file_stem()?.to_str()?.parse().ok()?;
                        Some((run, path))
                    })
                    .collect()
            })
            .unwrap_or_default();
        runs.sort();
        Some(runs.into_iter().map(|(_, path)| path).collect())
    }

    /// The command that runs `argv` in a running container of the pod with this uid; `None`
    /// when this node has no such container.
    pub fn exec_command(
        &self,
        uid: &str,
        container: &str,
        argv: &[String],
        tty: bool,
    ) -> Option<std::process::Command> {
        let id = sandbox_id_of(uid);
        if self.runtime.status(&id, container).as_deref() != Some("running") {
            return None;
        }
        Some(self.runtime.exec_command(&id, container, argv, tty))
    }

    /// A clean stop of the node (petset stopping): every pod worker stops its containers
    /// (TERM, then KILL after `grace`) and removes its sandbox, and what is left after them is
    /// removed, so nothing outlives petset. After a crash instead, the next start removes what
    /// was left before it runs anything.
    pub async fn shutdown(&self, grace: Duration) {
        self.workers.stop(grace).await;
        let runtime = self.runtime.clone();
        let swept = tokio::task::spawn_blocking(move || {
            for pod in runtime.pods() {
                if let Err(error) = runtime.remove_sandbox(&pod) {
                    tracing::warn!(%error, pod, "could not remove a pod on shutdown");
                }
            }
            if let Err(error) = runtime.release() {
                tracing::warn!(%error, "could not release the runtime directory");
            }
        })
        .await;
        if let Err(error) = swept {
            tracing::warn!(%error, "the shutdown sweep failed");
        }
    }
}

/// Runs the node until the task is aborted; its pod workers run until `RuncNode::shutdown`.
/// Its fence is off (`Fence::off`); `run_fenced` gives it one.
pub async fn run(client: Client, node_name: String, node: Arc<RuncNode>) {
    run_fenced(client, node_name, node, Fence::off()).await
}

/// As `run`, with `fence` (`crate::fence`): when the node cannot renew its Lease for the
/// fence's deadline, every container is killed and none starts until a renewal succeeds.
pub async fn run_fenced(client: Client, node_name: String, node: Arc<RuncNode>, fence: Fence) {
    let images = match ImageStore::open(&node.config.image_store) {
        Ok(images) => images,
        Err(error) => {
            tracing::error!(%error, "the runc node cannot open the image store");
            return;
        }
    };
    // What an earlier run left is not swept here: each pod's worker takes over the containers
    // it still has (`crate::pods`), and the sandboxes of pods no longer bound here are removed
    // once the node's pods are listed.
    if node.workers.stopping() {
        return;
    }
    let machine = Machine::of_this_host(&node.config.runtime_dir);
    let pod_cidr = node
        .config
        .network
        .as_ref()
        .map_or_else(|| "10.244.0.0/16".to_string(), |n| n.cidr.to_string());
    let facts = NodeFacts::of_machine(pod_cidr, &machine);
    if let Err(error) = node::register(&client, &node_name, Kind::Runc, &facts).await {
        tracing::warn!(%error, node = %node_name, "could not register the node");
    }
    let mut helpers = tokio::task::JoinSet::new();
    helpers.spawn(node::keep_fenced_lease(
        client.clone(),
        node_name.clone(),
        fence.clone(),
    ));
    if node
        .config
        .network
        .as_ref()
        .is_some_and(|n| n.services.is_some())
    {
        helpers.spawn(crate::services::run(
            client.clone(),
            node.pod_networks.clone(),
            node.config.api_addresses.clone(),
        ));
    }
    if let Some(listen) = node.config.ingress_listen {
        helpers.spawn(crate::ingress::run(
            client.clone(),
            listen,
            node.pod_networks.clone(),
        ));
    }
    if let Some(root) = node.config.volumes.clone() {
        let disk = crate::local_path::Disk::Host(root);
        helpers.spawn(crate::local_path::run(
            client.clone(),
            node_name.clone(),
            disk,
        ));
    }
    let runtime: Arc<dyn crate::runtime::PodRuntime> = Arc::new(RuncRuntime::new(
        node.runtime.clone(),
        images,
        node.config.petset_binary(),
    ));
    // The watchdog is the node's task, not a helper of the API: it runs whatever the API does.
    helpers.spawn(fence.clone().watch(runtime.clone()));
    let shared = Arc::new(Shared {
        stdins: node.stdins.clone(),
        client: client.clone(),
        runtime,
        dns: node.dns_address(),
        events: KubeletEvents::new(client, &node_name),
        allocatable: machine.allocatable_for_pods(),
        volumes_root: node.config.volumes.clone(),
        fence,
    });
    crate::pods::run(shared, &node_name, &node.workers).await;
}
