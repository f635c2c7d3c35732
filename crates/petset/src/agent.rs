//! `petset agent`: a node that joins a server. It proves the server holds the CA its token
//! pins before it sends anything secret, gets its own identity (`system:node:<name>`) and
//! node API certificate, registers its Node, waits for its pod range from the server, and then
//! runs pods, the node API, local volumes, the service proxy and the DNS, as `petset up`'s
//! node does, through the API over mTLS.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use petset_agent::join::{JoinRequest, join};
use petset_runtime::network::{Cidr, NetworkConfig};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::cli::{AgentArgs, AgentRuntime, NodeRuntime};
use crate::datadir::DataDir;
use crate::failover::Failover;
use crate::node_role::{FenceOptions, NodeOptions, OpenedNode};

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let data_dir = DataDir::lock(&args.data_dir)?;
    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.trim().to_string(),
        (None, Some(file)) => read_token(file)?,
        (None, None) => anyhow::bail!("give the join token with --token or --token-file"),
    };
    if let Some(seconds) = args.fence_deadline {
        petset_agent::fence::check_deadline(std::time::Duration::from_secs(seconds))
            .map_err(|e| anyhow::anyhow!("--fence-deadline {seconds}: {e}"))?;
    }
    let name = args
        .node_name
        .clone()
        .unwrap_or_else(petset_agent::node_name);
    let servers = args
        .server
        .iter()
        .map(|server| api_address(server))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if servers.is_empty() {
        anyhow::bail!("give the server to join with --server");
    }
    // Everything the agent sends its servers goes through one loopback relay that fails
    // over between them; TLS stays end to end.
    let failover = Failover::start(servers.clone())
        .await
        .context("listening for the agent's server relay on loopback")?;
    let server = format!("https://{}", failover.address);
    tracing::info!(servers = ?args.server, node = %name, "joining");
    let joined = join(JoinRequest {
        server: server.clone(),
        token,
        node_name: name.clone(),
        node_ips: vec![args.node_ip],
        data_dir: data_dir.path().to_path_buf(),
        allow_unpinned: args.insecure_skip_ca_pin,
    })
    .await
    .context("joining the server")?;
    let network = &joined.network;
    let cluster_cidr = match args.cluster_cidr {
        Some(cidr) => cidr,
        None => network.cluster_cidr.parse().map_err(|e: String| {
            anyhow::anyhow!(
                "the server's cluster CIDR {:?} is not usable here: {e}",
                network.cluster_cidr
            )
        })?,
    };
    let service_cidr = match args.service_cidr {
        Some(cidr) => cidr,
        None => network.service_cidr.parse().map_err(|e: String| {
            anyhow::anyhow!(
                "the server's service CIDR {:?} is not usable here: {e}",
                network.service_cidr
            )
        })?,
    };
    let client = joined
        .client(&server)
        .context("making the API client from the node's identity")?;
    let kind = match args.node_runtime {
        AgentRuntime::Runc => petset_agent::node::Kind::Runc,
        AgentRuntime::Simulated => petset_agent::node::Kind::Simulated,
    };
    let pod_cidr: Cidr = petset_agent::node::await_pod_cidr(&client, &name, kind)
        .await
        .context("registering the node")?
        .parse()
        .map_err(|e: String| {
            anyhow::anyhow!("the server gave this node a pod range petset cannot use: {e}")
        })?;
    tracing::info!(node = %name, %pod_cidr, "the node has its pod range");
    let options = NodeOptions {
        name: name.clone(),
        runtime: Some(match args.node_runtime {
            AgentRuntime::Runc => NodeRuntime::Runc,
            AgentRuntime::Simulated => NodeRuntime::Simulated,
        }),
        runtime_dir: crate::node_role::runtime_dir(data_dir.path()),
        image_store: crate::image::image_store_root(args.image_store.clone()),
        network: NetworkConfig {
            bridge: args.bridge.clone(),
            cidr: pod_cidr,
            services: Some(service_cidr),
        },
        cluster_cidr: Some(cluster_cidr),
        dns_listen: None,
        api_addresses: servers.clone(),
        volumes: args.local_path_dir.clone(),
        pod_routes: args.pod_routes,
        fence: args.fence_deadline.map(|seconds| FenceOptions {
            deadline: std::time::Duration::from_secs(seconds),
            data_dir: data_dir.path().to_path_buf(),
        }),
        // Agents authenticate as their node, which may not write Ingress status.
        ingress_listen: None,
    };
    let Some(opened) = OpenedNode::open(options)? else {
        anyhow::bail!("this agent has no node to run");
    };
    let mut tasks = JoinSet::new();
    let node = opened.start(client.clone(), &mut tasks).await?;
    let listener = match TcpListener::bind((args.node_ip, args.kubelet_port)).await {
        Ok(listener) => listener,
        Err(error) => {
            tasks.abort_all();
            node.stop().await;
            return Err(error).with_context(|| {
                format!(
                    "listening for the node API on {}:{}",
                    args.node_ip, args.kubelet_port
                )
            });
        }
    };
    let serving = node.serve_node_api(&client, listener, joined.node_api_tls(), &mut tasks)?;
    tracing::info!(node = %name, node_api = %serving, "node ready");

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received; stopping the node"),
        _ = interrupt.recv() => tracing::info!("SIGINT received; stopping the node"),
    }
    tasks.abort_all();
    node.stop().await;
    tracing::info!(node = %name, "node stopped");
    Ok(())
}

fn read_token(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the join token from {}", file.display()))?;
    text.lines()
        .next()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .with_context(|| format!("{} holds no join token", file.display()))
}

/// The server's address, which the node's `kubernetes` Service relays to: `https://IP:PORT`
/// (an address, not a name: the service proxy dials only addresses it was given).
fn api_address(server: &str) -> anyhow::Result<SocketAddr> {
    let rest = server
        .strip_prefix("https://")
        .with_context(|| format!("only https:// URLs are supported, invalid scheme: {server}"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if let Ok(address) = authority.parse::<SocketAddr>() {
        return Ok(address);
    }
    authority
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 443))
        .with_context(|| format!("--server {server}: want https://IP:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_url_names_an_address() {
        assert_eq!(
            api_address("https://10.250.0.1:6443").expect("an https URL"),
            "10.250.0.1:6443".parse().expect("an address")
        );
        assert_eq!(
            api_address("https://[::1]:6443/").expect("an https URL"),
            "[::1]:6443".parse().expect("an address")
        );
        assert_eq!(
            api_address("https://127.0.0.1").expect("an https URL"),
            "127.0.0.1:443".parse().expect("an address")
        );
        let error = api_address("http://127.0.0.1:6443")
            .expect_err("http is refused")
            .to_string();
        assert!(
            error.contains("only https:// URLs are supported"),
            "{error}"
        );
        assert!(api_address("https://server.example:6443").is_err());
    }
}
