//! The command line. `petset up`'s flags are a contract that tests and users rely on.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use petset_runtime::network::Cidr;
use petset_store::StoreSpec;

#[derive(Debug, Parser)]
#[command(
    name = "petset",
    version,
    about = "Stateful workloads on the Kubernetes API, in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the cluster in the foreground: API server, controllers and this machine's node.
    Up(UpArgs),
    /// Run a server: the API, the controllers and the store; agents join it (`petset agent`).
    Server(ServerArgs),
    /// Run a node that joins a server: runtime, node API, volumes, service proxy and DNS.
    Agent(AgentArgs),
    /// Manage the bootstrap tokens agents join with.
    Token(crate::token::TokenArgs),
    /// Print a kubeconfig for another user (a client certificate of the cluster CA), to try
    /// RBAC: `petset kubeconfig --user jane --group developers`.
    Kubeconfig(crate::kubeconfig::KubeconfigArgs),
    /// Inside a pod: connect as in-cluster clients do (the mounted ServiceAccount token), say
    /// who that is and list the pods of its namespace, or print the API's refusal.
    InCluster,
    /// Measure a part of petset and print the figures as Markdown table rows.
    Bench(BenchArgs),
    /// Manage this machine's image store (node-wide; it outlives any data dir).
    Image(ImageArgs),
    /// A local multi-node cluster: a server and N nodes on this machine.
    Cluster(crate::local_cluster::ClusterArgs),
    /// One TCP or HTTP probe to the loopback (the runc node runs it inside a pod's namespace).
    #[command(hide = true)]
    Probe(ProbeArgs),
    /// The fence watchdog of a runc node, outside its agent: kills the node's containers when
    /// the agent's heartbeat is as old as its fence deadline (`petset agent --fence-deadline`
    /// starts it).
    #[command(hide = true)]
    FenceWatchdog(FenceWatchdogArgs),
}

#[derive(Debug, Args)]
pub struct FenceWatchdogArgs {
    /// The agent's data directory: the heartbeat, lock, log and marker are in DIR/fence.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// The node's runtime root (DIR/node): `runc/` is runc's `--root`, `pods/<id>/` its pods.
    #[arg(long)]
    pub runtime_root: PathBuf,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// `tcp` or `http`.
    pub kind: String,
    pub port: u16,
    /// The HTTP path.
    pub path: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// The image store [default: $PETSET_IMAGE_STORE, else /var/lib/petset/images]
    #[arg(long, global = true)]
    pub image_store: Option<PathBuf>,
    #[command(subcommand)]
    pub action: ImageAction,
}

#[derive(Debug, Subcommand)]
pub enum ImageAction {
    /// Import a `docker save` archive or an OCI image layout (a tar, gzipped or not, or a directory).
    Import {
        file: PathBuf,
        /// Name the image (instead of the names in the archive); may be repeated.
        #[arg(long = "name")]
        names: Vec<String>,
    },
    /// List the images: name, id and unpacked size.
    Ls,
    /// Remove an image name; its files go with its last name.
    Rm { names: Vec<String> },
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the cluster keeps its state (store, certificates, kubeconfig, volumes).
    #[arg(long, default_value = "./petset-data")]
    pub data_dir: PathBuf,
    /// Address the Kubernetes API listens on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub api_listen: SocketAddr,
    /// `embedded` (durable, in the data dir), `memory` (lost on exit), or `etcd://HOST:PORT[,…]`.
    #[arg(long, default_value = "embedded")]
    pub store: StoreSpec,
    /// How this machine's node runs pods: real containers (`runc`), bookkeeping only
    /// (`simulated`), or no node at all (`none`). Default: `runc` when running as root with runc
    /// on PATH; otherwise no node, and the log says what is missing.
    #[arg(long, value_enum)]
    pub node_runtime: Option<NodeRuntime>,
    /// The node-wide image store [default: $PETSET_IMAGE_STORE, else /var/lib/petset/images]
    #[arg(long)]
    pub image_store: Option<PathBuf>,
    /// The runc node's pod network: pods get addresses from it, the bridge holds its first.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub pod_cidr: Cidr,
    /// Where ClusterIPs come from; the `kubernetes` Service gets the first address. With a runc
    /// node the range is made local to this machine, so Services answer on their ClusterIP.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: Cidr,
    /// The Linux bridge of the runc node's pod network (one per petset on a machine).
    #[arg(long, default_value = "petset0")]
    pub bridge: String,
    /// Where the cluster DNS answers (UDP and TCP) [default: port 53 on the bridge's address
    /// with a runc node, else nowhere]
    #[arg(long)]
    pub dns_listen: Option<SocketAddr>,
    /// The port this machine's node serves the node API on (the kubelet's HTTPS paths, which
    /// the API server relays logs, exec, attach and port-forward to), on loopback; 0 takes
    /// any free port [default: 10250, or any free port when that one is taken]
    #[arg(long)]
    pub kubelet_port: Option<u16>,
    /// Where the ingress proxy serves HTTP for the Ingresses of class `petset`, or `off`
    /// [default: 127.0.0.1:80 with a runc node, else off]
    #[arg(long)]
    pub ingress_listen: Option<IngressListen>,
    /// Seconds between compactions of store history. A watch can resume from the last 4096
    /// changes, or from as far back as the last compaction kept; older ones get 410 Gone.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub compaction_interval: u64,
}

/// `--ingress-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressListen {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for IngressListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "off" {
            return Ok(Self::Off);
        }
        text.parse()
            .map(Self::At)
            .map_err(|_| format!("{text:?} is neither an address (HOST:PORT) nor `off`"))
    }
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Where the server keeps its state (store, certificates, kubeconfig, join token).
    #[arg(long, default_value = "./petset-data")]
    pub data_dir: PathBuf,
    /// Address the Kubernetes API listens on; `0.0.0.0:6443` for every address.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub api_listen: SocketAddr,
    /// The address agents and pods reach the API at (the `kubernetes` Service's endpoint and
    /// a name in the serving certificate) [default: the listen address, or 127.0.0.1 when it
    /// listens on every address]
    #[arg(long)]
    pub advertise_address: Option<std::net::IpAddr>,
    /// `embedded` (durable, in the data dir), `memory` (lost on exit), or `etcd://HOST:PORT[,…]`.
    #[arg(long, default_value = "embedded")]
    pub store: StoreSpec,
    /// Where nodes' pod networks come from: each Node gets a /24 of it as `spec.podCIDR`.
    #[arg(long, default_value = "10.42.0.0/16")]
    pub cluster_cidr: Cidr,
    /// Where ClusterIPs come from; the `kubernetes` Service gets the first address.
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: Cidr,
    /// The directory on every node that `local-path` volumes are made in: the agents'
    /// `--local-path-dir`, which has the same default.
    #[arg(long, default_value = "/var/lib/petset/volumes")]
    pub local_path_dir: PathBuf,
    /// Seconds between compactions of store history.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub compaction_interval: u64,
    /// Seconds a node may go without renewing its Lease before it is marked Unknown and
    /// tainted unreachable (kube-controller-manager's flag; a fenced agent's
    /// `--fence-deadline` must stay 10 s below it).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub node_monitor_grace_period: u64,
    /// Run a node in the server's process too: real containers, bookkeeping only, or none.
    /// Its pod range comes from `--cluster-cidr` like any agent's, and its node API serves on
    /// the advertised address.
    #[arg(long, value_enum, default_value = "none")]
    pub node_runtime: NodeRuntime,
    /// The server's own node's name [default: this machine's hostname]
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node-wide image store of the server's own node [default: $PETSET_IMAGE_STORE, else
    /// /var/lib/petset/images]
    #[arg(long)]
    pub image_store: Option<PathBuf>,
    /// The Linux bridge of the server's own node's pod network.
    #[arg(long, default_value = "petset0")]
    pub bridge: String,
    /// The port of the server's own node API [default: 10250]
    #[arg(long)]
    pub kubelet_port: Option<u16>,
    /// Routes to the other nodes' pod networks from the server's own node (as the agents'
    /// `--pod-routes`).
    #[arg(long)]
    pub pod_routes: bool,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The server to join, `https://IP:PORT`; several, comma-separated (or the flag given
    /// again), for a cluster of several servers: the agent fails over between them.
    #[arg(long, required = true, value_delimiter = ',')]
    pub server: Vec<String>,
    /// The join token (`petset token create` on the server, or the server's DIR/node-token);
    /// it pins the cluster CA, so nothing secret is sent to a server that cannot prove it.
    #[arg(long, required_unless_present = "token_file")]
    pub token: Option<String>,
    /// A file holding the join token (its first line), instead of `--token`.
    #[arg(long, conflicts_with = "token")]
    pub token_file: Option<PathBuf>,
    /// Join with a token that pins no CA (`id.secret`); the first connection can then be
    /// intercepted.
    #[arg(long)]
    pub insecure_skip_ca_pin: bool,
    /// Where the node keeps its state (identity, runtime, logs).
    #[arg(long, default_value = "./petset-node")]
    pub data_dir: PathBuf,
    /// The Node's name [default: this machine's hostname]
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address the server and the other nodes reach this node at; its node API listens
    /// there.
    #[arg(long)]
    pub node_ip: std::net::IpAddr,
    /// How this node runs pods: real containers or bookkeeping only.
    #[arg(long, value_enum, default_value = "runc")]
    pub node_runtime: AgentRuntime,
    /// The node-wide image store [default: $PETSET_IMAGE_STORE, else /var/lib/petset/images]
    #[arg(long)]
    pub image_store: Option<PathBuf>,
    /// The Linux bridge of this node's pod network.
    #[arg(long, default_value = "petset0")]
    pub bridge: String,
    /// The port of the node API (kubelet's HTTPS paths) on `--node-ip`.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// The directory `local-path` volumes are made in: the server's `--local-path-dir`.
    #[arg(long, default_value = "/var/lib/petset/volumes")]
    pub local_path_dir: PathBuf,
    /// Every node's pod network is in it [default: the server's `--cluster-cidr`, which the
    /// join tells]
    #[arg(long)]
    pub cluster_cidr: Option<Cidr>,
    /// Made local to this node so its service proxy answers on every ClusterIP [default: the
    /// server's `--service-cidr`, which the join tells]
    #[arg(long)]
    pub service_cidr: Option<Cidr>,
    /// Fence this node: when it has not renewed its Lease for this many seconds (at most 40,
    /// leaving 10 of the servers' 50 s grace), kill every container and start none until it
    /// can; a watchdog outside the agent kills them too if the agent is killed or hangs. Off
    /// by default: it also stops every pod when the whole control plane is down.
    #[arg(long, value_name = "SECONDS")]
    pub fence_deadline: Option<u64>,
    /// Route the other nodes' pod networks via their addresses (flannel's host-gw) and turn
    /// on IPv4 forwarding in this node's network namespace, so pods reach pods of other
    /// nodes. Only on a machine (or namespace) that is the node's alone.
    #[arg(long)]
    pub pod_routes: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AgentRuntime {
    Runc,
    Simulated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NodeRuntime {
    Runc,
    Simulated,
    /// A control plane without a node: pods stay Pending.
    None,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub target: BenchTarget,
}

#[derive(Debug, Subcommand)]
pub enum BenchTarget {
    /// Durable write throughput and latency, and watch delivery latency, of one store backend.
    Store(StoreBenchArgs),
    /// The API server in process: create throughput, get/list latency, watch delivery.
    Api(ApiBenchArgs),
    /// StatefulSets on the simulated node: time until Ready, and a rolling update.
    Statefulset(StatefulSetBenchArgs),
    /// Real containers (root, runc): pod created → container running, deleted → processes gone.
    Pods(PodsBenchArgs),
    /// The cluster DNS: pod address → name resolves, queries per second; and, as root, the
    /// pod network's per-pod setup time.
    Dns(DnsBenchArgs),
    /// Many simulated nodes: pods bound per second by the scheduler, create → bound latency.
    Nodes(crate::bench::nodes::NodesBenchArgs),
    /// Several servers over etcd: how long until another server's controllers take over
    /// after the leader's kill -9 (needs Debian's etcd).
    Failover(crate::bench::failover::FailoverBenchArgs),
}

#[derive(Debug, Args)]
pub struct DnsBenchArgs {
    /// Pods created one at a time (each is timed until its name resolves).
    #[arg(long, default_value_t = 50)]
    pub pods: usize,
    /// Seconds of back-to-back queries for the throughput figure.
    #[arg(long, default_value_t = 3)]
    pub query_seconds: u64,
    /// Clients querying at once for the throughput figure.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
}

#[derive(Debug, Args)]
pub struct PodsBenchArgs {
    /// Pods created and deleted, one at a time.
    #[arg(long, default_value_t = 50)]
    pub pods: usize,
    /// The image the pods run; it must be in the image store and have `sh` and `sleep`.
    #[arg(long, default_value = "busybox:1.28")]
    pub image: String,
    /// The image store [default: $PETSET_IMAGE_STORE, else /var/lib/petset/images]
    #[arg(long)]
    pub image_store: Option<PathBuf>,
    /// Seconds any one pod may take to start or stop.
    #[arg(long, default_value_t = 60)]
    pub timeout_seconds: u64,
}

impl PodsBenchArgs {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_seconds)
    }
}

#[derive(Debug, Args)]
pub struct StatefulSetBenchArgs {
    /// The store behind the API, as for `petset up --store`.
    #[arg(long, default_value = "embedded")]
    pub store: StoreSpec,
    /// Replicas of the Parallel set (each with one claim).
    #[arg(long, default_value_t = 1_000)]
    pub parallel_replicas: i32,
    /// Replicas of the OrderedReady set (then rolled to a new image).
    #[arg(long, default_value_t = 100)]
    pub ordered_replicas: i32,
    /// Replicas of the Deployment (made Available, then rolled to a new image).
    #[arg(long, default_value_t = 1_000)]
    pub deployment_replicas: i32,
    /// Seconds any one phase may take.
    #[arg(long, default_value_t = 600)]
    pub timeout_seconds: u64,
}

impl StatefulSetBenchArgs {
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_seconds)
    }
}

#[derive(Debug, Args)]
pub struct ApiBenchArgs {
    /// The store behind the API, as for `petset up --store`.
    #[arg(long, default_value = "embedded")]
    pub store: StoreSpec,
    /// Pods created (and then listed).
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Concurrent clients creating pods.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Single-pod GETs measured.
    #[arg(long, default_value_t = 2_000)]
    pub gets: usize,
    /// Full lists measured (each of every pod).
    #[arg(long, default_value_t = 20)]
    pub lists: usize,
    /// Concurrent watchers that each receive every event of the watch run.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Updates in the watch run.
    #[arg(long, default_value_t = 1_000)]
    pub watch_events: usize,
}

#[derive(Debug, Args)]
pub struct StoreBenchArgs {
    /// The backend to measure, as for `petset up --store`.
    #[arg(long, default_value = "embedded")]
    pub store: StoreSpec,
    /// Directory for the embedded store's file (default: a fresh temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Concurrent writer counts to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    pub writers: Vec<usize>,
    /// Seconds each writer run lasts.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Watchers that each receive every event of the watch run.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Writes in the watch run.
    #[arg(long, default_value_t = 2000)]
    pub watch_events: usize,
    /// Bytes in each written value.
    #[arg(long, default_value_t = 1024)]
    pub value_bytes: usize,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn up_has_the_documented_defaults() {
        let cli = Cli::parse_from(["petset", "up"]);
        let Command::Up(args) = cli.command else {
            panic!("not up")
        };
        assert_eq!(args.data_dir, PathBuf::from("./petset-data"));
        assert_eq!(args.api_listen.to_string(), "127.0.0.1:6443");
        assert_eq!(args.store, StoreSpec::Embedded);
        assert_eq!(args.node_runtime, None);
    }

    #[test]
    fn the_fence_watchdog_is_a_hidden_subcommand() {
        let cli = Cli::parse_from([
            "petset",
            "fence-watchdog",
            "--data-dir",
            "/var/lib/node",
            "--runtime-root",
            "/var/lib/node/node",
        ]);
        let Command::FenceWatchdog(args) = cli.command else {
            panic!("not fence-watchdog")
        };
        assert_eq!(args.data_dir, PathBuf::from("/var/lib/node"));
        assert_eq!(args.runtime_root, PathBuf::from("/var/lib/node/node"));
        let help = Cli::command().render_help().to_string();
        assert!(!help.contains("fence-watchdog"), "{help}");
    }

    #[test]
    fn up_accepts_an_etcd_store_and_a_node_runtime() {
        let cli = Cli::parse_from([
            "petset",
            "up",
            "--store",
            "etcd://127.0.0.1:2379",
            "--node-runtime",
            "simulated",
        ]);
        let Command::Up(args) = cli.command else {
            panic!("not up")
        };
        assert!(matches!(args.store, StoreSpec::Etcd { .. }));
        assert_eq!(args.node_runtime, Some(NodeRuntime::Simulated));
        assert!(Cli::try_parse_from(["petset", "up", "--store", "sqlite"]).is_err());
    }
}
