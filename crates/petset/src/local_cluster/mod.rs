//! `petset cluster up`: a server and N agents on this machine, as kind and k3d make one with
//! Docker; each runc agent in a network namespace of its own on a bridge this command makes,
//! simulated agents on loopback addresses of their own. It stays in the foreground and, when
//! stopped, stops the agents, then the server, then removes everything it made.
//! `petset cluster down` removes what a crashed one left.
//!
//! - `args.rs`: the command line and what it refuses;
//! - `layout.rs`: the names, addresses and command lines (pure);
//! - `netns.rs`: the nodes' network in the host namespace;
//! - `children.rs`: starting and stopping the processes;
//! - `ready.rs`: waiting for the server and the nodes;
//! - `record.rs`: `DIR/cluster.json` (what was made, written before making it) and the lock.

mod args;
mod children;
mod layout;
mod netns;
pub(crate) mod ready;
mod record;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::signal::unix::{Signal, SignalKind, signal};

use children::{ClusterProcess, Launch, STOP_GRACE};
use layout::{Layout, node_dir, server_dir, server_dir_of};
use record::{ClusterLock, Record};

pub use args::{ClusterAction, ClusterArgs, ClusterDownArgs, ClusterUpArgs, NodeRuntime};

/// `petset cluster up`: removes what a previous run of DIR left, makes the nodes' network,
/// starts the server and the agents, and runs until a signal or a death among them; then
/// stops them all and removes what it made.
pub async fn run(args: ClusterUpArgs) -> anyhow::Result<()> {
    args::check_machine(&args)?;
    let dir = open_dir(&args.data_dir)?;
    let _lock = ClusterLock::take(&dir)?;
    let binary = match &args.role_binary {
        Some(binary) => binary.clone(),
        None => std::env::current_exe().context("finding the petset binary")?,
    };
    let previous = remove_leftovers(&dir).await?;
    let mut signals = Signals::install()?;

    // A restarted cluster keeps its names and addresses (its Nodes keep theirs).
    let previous = previous.filter(|layout| layout.runtime == args.node_runtime);
    let id = match &previous {
        Some(layout) => layout.id.clone(),
        None => fresh_id(args.node_runtime)?,
    };
    let layout = Layout {
        id,
        name: args.name.clone(),
        runtime: args.node_runtime,
        nodes: args.nodes,
        api_port: args.api_port,
        servers: args.servers,
        subnet: previous.and_then(|p| p.subnet),
    };
    let mut record = Record {
        layout,
        processes: Vec::new(),
    };
    match args.node_runtime {
        NodeRuntime::Runc => {
            let made = netns::NodesNetwork::pick_and_make(record.layout.clone(), |layout| {
                Record {
                    layout: layout.clone(),
                    processes: Vec::new(),
                }
                .write(&dir)
            });
            // A network that could not be made was removed again: nothing is left to record.
            let made = made.inspect_err(|_| {
                let _ = Record::remove(&dir);
            })?;
            record.layout = made.layout().clone();
        }
        NodeRuntime::Simulated => {
            record.layout.subnet = None;
            record.write(&dir)?;
        }
    }

    let mut processes = Vec::new();
    let started = tokio::select! {
        started = start(&dir, &binary, &mut record, &mut processes, args.fence_deadline) => started,
        received = signals.recv() => Err(anyhow::anyhow!("{received} received while starting")),
    };
    let outcome = match started {
        Ok(()) => {
            print_summary(&dir, &record.layout);
            let survives = Survives {
                server: record.layout.servers > 1,
                node: record.layout.nodes > 1,
            };
            foreground(&mut processes, &mut signals, survives).await
        }
        Err(error) => Err(error),
    };
    stop(&mut processes).await;
    remove_pods_left(&dir, &record.layout).await;
    match remove_made(&record.layout).await {
        Ok(()) => {
            Record::remove(&dir)?;
            tracing::info!("the local cluster stopped; everything it made is removed");
            outcome
        }
        // The record stays, so that `cluster down` can try again.
        Err(error) => {
            tracing::error!(
                "{error:#}; `petset cluster down --data-dir {}` tries again",
                dir.display()
            );
            outcome.and(Err(error))
        }
    }
}

/// `petset cluster down`: what `cluster up` does when it stops, for a DIR whose `cluster up`
/// died without doing it.
pub async fn down(args: ClusterDownArgs) -> anyhow::Result<()> {
    if !args.data_dir.is_dir() {
        bail!("{} is not a directory", args.data_dir.display());
    }
    let dir = open_dir(&args.data_dir)?;
    let _lock = ClusterLock::take(&dir)?;
    match remove_leftovers(&dir).await? {
        Some(layout) => println!(
            "removed what the cluster {} ({} {} nodes) of {} left",
            layout.name,
            layout.nodes,
            layout.runtime.flag(),
            dir.display()
        ),
        None => println!(
            "{} records no cluster: nothing to remove",
            Record::path(&dir).display()
        ),
    }
    Ok(())
}

fn open_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))
}

/// An id no link or namespace on this machine carries yet.
fn fresh_id(runtime: NodeRuntime) -> anyhow::Result<String> {
    for _ in 0..16 {
        let id = netns::random_id()?;
        if runtime == NodeRuntime::Simulated || !netns::id_in_use(&id)? {
            return Ok(id);
        }
    }
    bail!("could not find an unused cluster id")
}

/// Stops and removes what a previous `cluster up` of `dir` left (it recorded it in
/// `cluster.json`); returns that cluster's layout, whose id and subnet the next one reuses.
async fn remove_leftovers(dir: &Path) -> anyhow::Result<Option<Layout>> {
    let Some(previous) = Record::read(dir)? else {
        return Ok(None);
    };
    tracing::info!(
        record = %Record::path(dir).display(),
        "a previous cluster up of this directory did not finish; removing what it left"
    );
    if previous.layout.runtime == NodeRuntime::Runc && !crate::cluster::is_root() {
        bail!(
            "{} records a runc cluster; removing its network needs root",
            Record::path(dir).display()
        );
    }
    // The nodes before the servers before the etcd, as a clean stop does.
    for stage in 0..=2 {
        futures::future::join_all(
            previous
                .processes
                .iter()
                .filter(|p| stop_stage(&p.role) == stage)
                .map(|p| children::stop_recorded(p, STOP_GRACE)),
        )
        .await;
    }
    remove_pods_left(dir, &previous.layout).await;
    remove_made(&previous.layout).await?;
    Record::remove(dir)?;
    Ok(Some(previous.layout))
}

/// Removes what the nodes' agents left of their pods once they are stopped: the sandboxes (pod
/// namespaces, mounts, cgroups) of a node whose agent died (a lost node, killed -9 or fenced,
/// has no one to remove them); a node stopped cleanly left none.
async fn remove_pods_left(dir: &Path, layout: &Layout) {
    if layout.runtime != NodeRuntime::Runc {
        return;
    }
    let roots: Vec<PathBuf> = layout
        .all_nodes()
        .map(|node| crate::node_role::runtime_dir(&node_dir(dir, node.index)))
        .filter(|root| root.join("pods").is_dir())
        .collect();
    let removed = tokio::task::spawn_blocking(move || {
        for root in roots {
            let runtime = match petset_runtime::pods::Runtime::open(&root) {
                Ok(runtime) => runtime,
                Err(error) => {
                    tracing::warn!(%error, root = %root.display(), "could not open a node's runtime to remove its pods");
                    continue;
                }
            };
            for pod in runtime.pods() {
                tracing::info!(pod, root = %root.display(), "removing a pod a stopped node left");
                if let Err(error) = runtime.remove_sandbox(&pod) {
                    tracing::warn!(%error, pod, "could not remove a pod a node left");
                }
            }
            if let Err(error) = runtime.release() {
                tracing::warn!(%error, root = %root.display(), "could not release a node's runtime");
            }
        }
    })
    .await;
    if let Err(error) = removed {
        tracing::warn!(%error, "removing the pods the nodes left failed");
    }
}

/// Removes the nodes' network of a runc layout (a simulated one makes none).
async fn remove_made(layout: &Layout) -> anyhow::Result<()> {
    if layout.runtime != NodeRuntime::Runc {
        return Ok(());
    }
    let layout = layout.clone();
    tokio::task::spawn_blocking(move || netns::remove(&layout))
        .await
        .context("removing the nodes' network")?
}

const SERVER_ROLE: &str = "server";

/// Server i's role in `cluster.json` (the first is `server`); `:` never occurs in a node name.
fn server_role(index: u32) -> String {
    match index {
        0 | 1 => SERVER_ROLE.to_string(),
        _ => format!("{SERVER_ROLE}:{index}"),
    }
}

fn etcd_role(index: u32) -> String {
    format!("etcd:{index}")
}

/// When a role stops: the agents first, then the servers, then the etcd under them.
fn stop_stage(role: &str) -> u8 {
    if role.starts_with("etcd:") {
        2
    } else if role == SERVER_ROLE || role.starts_with("server:") {
        1
    } else {
        0
    }
}

/// A further server's data dir starts with the first's CA and admin token, so that the
/// servers are one cluster (one kubeconfig, one join token).
fn share_pki(dir: &Path, server_dir: &Path) -> anyhow::Result<()> {
    let from = server_dir_of(dir, 1).join("pki");
    let to = server_dir.join("pki");
    std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
    for file in petset_apiserver::tls::SHARED_PKI_FILES {
        std::fs::copy(from.join(file), to.join(file)).with_context(|| {
            format!("copying {} to {}", from.join(file).display(), to.display())
        })?;
    }
    Ok(())
}

/// Starts the server, waits for it, starts the agents and waits until every node is Ready;
/// every process started is in `processes` (and in `cluster.json`) as soon as it runs.
async fn start(
    dir: &Path,
    binary: &Path,
    record: &mut Record,
    processes: &mut Vec<ClusterProcess>,
    fence_deadline: u64,
) -> anyhow::Result<()> {
    let layout = record.layout.clone();
    let program = binary.display().to_string();
    // Several servers share an etcd of as many members, started (and healthy) first.
    if layout.servers > 1 {
        for index in 1..=layout.servers {
            let log = layout::etcd_dir(dir, index).with_extension("log");
            if let Some(parent) = log.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let etcd = children::spawn(Launch {
                role: &etcd_role(index),
                argv: layout.etcd_args(dir, index),
                namespace: None,
                log: &log,
            })?;
            tracing::info!(pid = etcd.pid(), log = %log.display(), "etcd member started");
            record.processes.push(etcd.recorded());
            processes.push(etcd);
            record.write(dir)?;
        }
        let clients: Vec<std::net::SocketAddr> = (1..=layout.servers)
            .map(|i| (std::net::Ipv4Addr::LOCALHOST, layout.etcd_ports(i).0).into())
            .collect();
        ready::etcd_healthy(&clients, processes, ready::SERVER_TIMEOUT).await?;
    }
    let mut client = None;
    for index in 1..=layout.servers {
        let server_dir = layout::server_dir_of(dir, index);
        if index > 1 {
            share_pki(dir, &server_dir)?;
        }
        let server_log = server_dir.join("server.log");
        let server = children::spawn(Launch {
            role: &server_role(index),
            argv: std::iter::once(program.clone())
                .chain(layout.server_args(dir, index))
                .collect(),
            namespace: None,
            log: &server_log,
        })?;
        tracing::info!(pid = server.pid(), log = %server_log.display(), "server started");
        record.processes.push(server.recorded());
        processes.push(server);
        record.write(dir)?;

        if index == 1 {
            ready::file_written(&layout::token_file(dir), processes, ready::SERVER_TIMEOUT).await?;
        }
        let server_kubeconfig = server_dir.join("kubeconfig");
        ready::file_written(&server_kubeconfig, processes, ready::SERVER_TIMEOUT).await?;
        let server_client = ready::client(&server_kubeconfig).await?;
        let api =
            std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, layout.server_port(index)));
        ready::api_ready(&server_client, api, processes, ready::SERVER_TIMEOUT).await?;
        client.get_or_insert(server_client);
    }
    let client = client.context("a local cluster has a server")?;
    let server_kubeconfig = server_dir(dir).join("kubeconfig");

    for node in layout.all_nodes() {
        let log = node_dir(dir, node.index).join("agent.log");
        let agent = children::spawn(Launch {
            role: &node.name,
            argv: std::iter::once(program.clone())
                .chain(layout.agent_args(dir, &node))
                .chain(
                    (fence_deadline > 0)
                        .then(|| ["--fence-deadline".to_string(), fence_deadline.to_string()])
                        .into_iter()
                        .flatten(),
                )
                .collect(),
            namespace: node.namespace.as_deref(),
            log: &log,
        })?;
        tracing::info!(node = %node.name, address = %node.address, pid = agent.pid(), "agent started");
        record.processes.push(agent.recorded());
        processes.push(agent);
        record.write(dir)?;
    }
    let names: Vec<String> = layout.all_nodes().map(|n| n.name).collect();
    ready::nodes_ready(&client, &names, processes, ready::NODES_TIMEOUT).await?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::copy(&server_kubeconfig, &kubeconfig)
        .with_context(|| format!("writing {}", kubeconfig.display()))?;
    Ok(())
}

fn print_summary(dir: &Path, layout: &Layout) {
    let network = match (layout.bridge(), layout.subnet) {
        (Some(bridge), Some(subnet)) => format!(" on bridge {bridge} ({subnet})"),
        _ => String::new(),
    };
    println!(
        "local cluster {:?}: {} {} nodes Ready{network}",
        layout.name,
        layout.nodes,
        layout.runtime.flag()
    );
    for index in 1..=layout.servers {
        println!(
            "  server    https://127.0.0.1:{}  log {}",
            layout.server_port(index),
            server_dir_of(dir, index).join("server.log").display()
        );
    }
    if layout.servers > 1 {
        for index in 1..=layout.servers {
            println!(
                "  etcd e{index}   http://127.0.0.1:{}  log {}",
                layout.etcd_ports(index).0,
                layout::etcd_dir(dir, index).with_extension("log").display()
            );
        }
    }
    for node in layout.all_nodes() {
        let namespace = node
            .namespace
            .map(|n| format!("  netns {n}"))
            .unwrap_or_default();
        println!(
            "  {}  {}{namespace}  log {}",
            node.name,
            node.address,
            node_dir(dir, node.index).join("agent.log").display()
        );
    }
    println!(
        "To use it: export KUBECONFIG={}",
        dir.join("kubeconfig").display()
    );
    println!("Ctrl-C stops the cluster and removes what was made for it.");
}

/// Which losses the cluster carries on after.
#[derive(Debug, Clone, Copy)]
struct Survives {
    /// A server or etcd member (there are several).
    server: bool,
    /// A node's agent (there are several: its pods move, or wait for it, as docs/failover.md
    /// tells; a user tries exactly that with a kill of an agent).
    node: bool,
}

impl Survives {
    fn loss_of(self, role: &str) -> bool {
        match stop_stage(role) {
            0 => self.node,
            _ => self.server,
        }
    }
}

/// Runs until a signal comes or a process of the cluster exits, which stops everything,
/// unless the cluster has several of its kind (servers and their etcd members, or nodes): the
/// others carry on without it (that is what several are for), and the loss is logged.
async fn foreground(
    processes: &mut [ClusterProcess],
    signals: &mut Signals,
    survives: Survives,
) -> anyhow::Result<()> {
    let mut lost = vec![false; processes.len()];
    loop {
        let died = {
            let waits: Vec<_> = processes
                .iter_mut()
                .enumerate()
                .filter(|(index, _)| !lost[*index])
                .map(|(index, process)| Box::pin(async move { (index, process.wait().await) }))
                .collect();
            if waits.is_empty() {
                return Err(anyhow::anyhow!("every process of the cluster has exited"));
            }
            tokio::select! {
                received = signals.recv() => {
                    tracing::info!("{received} received; stopping the cluster");
                    None
                }
                ((index, status), _, _) = futures::future::select_all(waits) => Some((index, status)),
            }
        };
        let Some((index, status)) = died else {
            return Ok(());
        };
        let error = processes[index].died(status);
        if survives.loss_of(&processes[index].role) {
            tracing::error!("{error:#}; the rest of the cluster carries on");
            lost[index] = true;
            continue;
        }
        tracing::error!("{error:#}; stopping the cluster");
        return Err(error);
    }
}

/// Stops the agents, then the servers, then the etcd under them.
async fn stop(processes: &mut [ClusterProcess]) {
    // Started in the opposite order, so each stage is a run at the front of the list.
    processes.sort_by_key(|p| std::cmp::Reverse(stop_stage(&p.role)));
    for stage in 0..=2 {
        let start = processes
            .iter()
            .position(|p| stop_stage(&p.role) == stage)
            .unwrap_or(processes.len());
        let end = start
            + processes[start..]
                .iter()
                .take_while(|p| stop_stage(&p.role) == stage)
                .count();
        children::stop_all(&mut processes[start..end], STOP_GRACE).await;
    }
}

/// SIGINT, SIGTERM and SIGHUP (the terminal `cluster up` runs in went away), installed before
/// anything is made so that none of them kills the command halfway.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hangup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}
