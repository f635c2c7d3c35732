//! What a user asks of `petset cluster`, and what is refused before anything is made.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};

use super::layout::{MAX_NODES, MAX_SERVERS};

#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub action: ClusterAction,
}

#[derive(Debug, Subcommand)]
pub enum ClusterAction {
    /// Run a server and N nodes on this machine, in the foreground (Ctrl-C stops them all and
    /// removes what was made for them).
    Up(ClusterUpArgs),
    /// Stop what a `cluster up` of DIR left running and remove what it made (after a crash).
    Down(ClusterDownArgs),
}

#[derive(Debug, Args)]
pub struct ClusterUpArgs {
    /// How many nodes (1 to 50).
    #[arg(long)]
    pub nodes: u32,
    /// How the nodes run pods: real containers, each node in a network namespace of its own
    /// (`runc`, needs root), or bookkeeping only (`simulated`).
    #[arg(long, value_enum, default_value = "runc")]
    pub node_runtime: NodeRuntime,
    /// Where the cluster keeps everything: `server/`, `nodes/n<i>/`, `kubeconfig`, `cluster.json`.
    #[arg(long, default_value = "./petset-cluster")]
    pub data_dir: PathBuf,
    /// The port of the Kubernetes API (on 127.0.0.1, and with runc on the nodes' bridge).
    #[arg(long, default_value_t = 6443)]
    pub api_port: u16,
    /// How many servers (1 to 5): one on the embedded store, or several over a Debian
    /// `etcd` of as many members on loopback ports (`api-port + 1000` on), server i on
    /// `api-port + i - 1`.
    #[arg(long, default_value_t = 1)]
    pub servers: u32,
    /// Every node fences itself (`petset agent --fence-deadline`): a node that has not renewed
    /// its Lease for this many seconds has its containers killed, and the servers then move
    /// its StatefulSet pods to other nodes (docs/failover.md). 0: no fence, and lost nodes'
    /// pods wait for them as upstream's do.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub fence_deadline: u64,
    /// The cluster's name: node i is `<name>-n<i>`.
    #[arg(long, default_value = "petset")]
    pub name: String,
    /// The program run as `server …` and `agent …` [default: this petset]; tests give a
    /// stand-in.
    #[arg(long, hide = true)]
    pub role_binary: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ClusterDownArgs {
    /// The data dir of the `cluster up` whose leftovers to remove.
    #[arg(long, default_value = "./petset-cluster")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NodeRuntime {
    Runc,
    Simulated,
}

impl NodeRuntime {
    /// The value of the agent's `--node-runtime`.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            NodeRuntime::Runc => "runc",
            NodeRuntime::Simulated => "simulated",
        }
    }

    pub(crate) fn from_flag(flag: &str) -> anyhow::Result<Self> {
        match flag {
            "runc" => Ok(NodeRuntime::Runc),
            "simulated" => Ok(NodeRuntime::Simulated),
            other => bail!("unknown node runtime {other:?}"),
        }
    }
}
/// Refuses what cannot work, before anything is made.
pub(crate) fn check_machine(args: &ClusterUpArgs) -> anyhow::Result<()> {
    if !(1..=MAX_NODES).contains(&args.nodes) {
        bail!(
            "--nodes {}: a local cluster has 1 to {MAX_NODES} nodes",
            args.nodes
        );
    }
    if args.fence_deadline > 0 {
        petset_agent::fence::check_deadline(std::time::Duration::from_secs(args.fence_deadline))
            .map_err(|e| anyhow::anyhow!("--fence-deadline {}: {e}", args.fence_deadline))?;
    }
    if !(1..=MAX_SERVERS).contains(&args.servers) {
        bail!(
            "--servers {}: a local cluster has 1 to {MAX_SERVERS} servers",
            args.servers
        );
    }
    if args.servers > 1 && !on_path("etcd") {
        bail!(
            "--servers {}: several servers share an etcd; install Debian's etcd-server",
            args.servers
        );
    }
    if args.api_port == 0 {
        bail!("--api-port 0: the nodes need to know the port; choose one");
    }
    if args.name.is_empty()
        || args.name.len() > 50
        || !args
            .name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || args.name.starts_with('-')
    {
        bail!(
            "--name {:?}: node names are `<name>-n<i>`, so the name must be 1 to 50 lowercase letters, digits or '-', starting with a letter or digit",
            args.name
        );
    }
    let mut tools = vec!["setpriv"];
    if args.node_runtime == NodeRuntime::Runc {
        if !crate::cluster::is_root() {
            bail!(
                "--node-runtime runc needs root (it makes a bridge and a network namespace per node); run it as root or pass --node-runtime simulated"
            );
        }
        tools.extend(["ip", "nsenter", "runc"]);
    }
    for tool in tools {
        if !on_path(tool) {
            bail!(
                "`{tool}` is not on PATH (a local cluster uses util-linux's setpriv and nsenter, iproute2's ip, and runc for runc nodes)"
            );
        }
    }
    // The server would fail on a taken port only once it is started, in its own log.
    let listen = match args.node_runtime {
        NodeRuntime::Runc => std::net::Ipv4Addr::UNSPECIFIED,
        NodeRuntime::Simulated => std::net::Ipv4Addr::LOCALHOST,
    };
    if args.servers > 1 {
        for offset in 0..2 * args.servers {
            let port = u32::from(args.api_port) + 1000 + offset;
            let port = u16::try_from(port).unwrap_or(u16::MAX);
            if let Err(error) = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)) {
                bail!(
                    "--api-port {}: the etcd members need 127.0.0.1:{port}, which is taken ({error}); pass another port",
                    args.api_port
                );
            }
        }
    }
    for offset in 0..args.servers {
        let port = u16::try_from(u32::from(args.api_port) + offset).unwrap_or(u16::MAX);
        if let Err(error) = std::net::TcpListener::bind((listen, port)) {
            bail!(
                "--api-port {}: cannot listen on {listen}:{port} ({error}); pass another port",
                args.api_port
            );
        }
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
