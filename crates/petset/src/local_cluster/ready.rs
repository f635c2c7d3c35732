//! Waiting for the cluster: the server's join token and kubeconfig, its `/readyz`, and every
//! node Ready, each while watching that the processes it waits for still run.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Node;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::children::ClusterProcess;

/// How long the server may take to write its files and answer `/readyz`.
pub(crate) const SERVER_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the nodes may take to join and become Ready (runc nodes set up their pod network
/// and sweep what a crash left first; on a busy 2-core machine that takes a while).
pub(crate) const NODES_TIMEOUT: Duration = Duration::from_secs(300);

const POLL: Duration = Duration::from_millis(250);

/// Fails when any of `processes` has exited.
fn all_running(processes: &mut [ClusterProcess]) -> anyhow::Result<()> {
    for process in processes.iter_mut() {
        if let Some(status) = process.exited() {
            return Err(process.died(status));
        }
    }
    Ok(())
}

/// The contents of the file at `path` once it exists and is not empty.
pub(crate) async fn file_written(
    path: &Path,
    processes: &mut [ClusterProcess],
    timeout: Duration,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return Ok(text);
        }
        all_running(processes)?;
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{} was not written within {} s",
                path.display(),
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A client for the API server, from the kubeconfig it wrote.
pub(crate) async fn client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let config = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("using {}", kubeconfig.display()))?;
    kube::Client::try_from(config).context("making an API client")
}

/// Waits until `/readyz` answers `ok` on `address`.
pub(crate) async fn api_ready(
    client: &kube::Client,
    address: std::net::SocketAddr,
    processes: &mut [ClusterProcess],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // The server writes its kubeconfig a moment before it listens; asking before that
        // would only make the client log connection errors.
        let last = match tokio::net::TcpStream::connect(address).await {
            Err(error) => format!("connecting to {address}: {error}"),
            Ok(_) => {
                let request = kube::core::Request::new("").get("readyz", &Default::default())?;
                match client.request_text(request).await {
                    Ok(text) if text.trim() == "ok" => return Ok(()),
                    Ok(text) => text,
                    Err(error) => error.to_string(),
                }
            }
        };
        all_running(processes)?;
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the API server was not ready within {} s ({last})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until every etcd member answers `/health` with `"health":"true"` (it has a
/// leader, so the servers' first writes find a quorum).
pub(crate) async fn etcd_healthy(
    members: &[std::net::SocketAddr],
    processes: &mut [ClusterProcess],
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    for member in members {
        loop {
            let last = match etcd_health(*member).await {
                Ok(body) if body.contains(r#""health":"true""#) => break,
                Ok(body) => body,
                Err(error) => error.to_string(),
            };
            all_running(processes)?;
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "etcd at {member} was not healthy within {} s ({last})",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

/// One `GET /health` of an etcd member, over plain HTTP on loopback; the body.
pub(crate) async fn etcd_health(member: std::net::SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(member).await?;
        stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: etcd\r\n\r\n")
            .await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&answer).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

/// Whether a Node's `Ready` condition is `True`.
fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Waits until every node in `names` is registered and Ready, as `kubectl get nodes` shows.
pub(crate) async fn nodes_ready(
    client: &kube::Client,
    names: &[String],
    processes: &mut [ClusterProcess],
    timeout: Duration,
) -> anyhow::Result<()> {
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let waiting: Vec<&str> = match nodes.list(&Default::default()).await {
            Ok(list) => names
                .iter()
                .filter(|name| {
                    !list
                        .items
                        .iter()
                        .any(|n| n.metadata.name.as_ref() == Some(*name) && is_ready(n))
                })
                .map(String::as_str)
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "listing nodes");
                names.iter().map(String::as_str).collect()
            }
        };
        if waiting.is_empty() {
            return Ok(());
        }
        all_running(processes)?;
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "not Ready within {} s: {} (see their agent.log)",
                timeout.as_secs(),
                waiting.join(", ")
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_true_ready_condition_makes_a_node_ready() {
        let node = |conditions: serde_json::Value| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n"},
                "status": {"conditions": conditions},
            }))
            .expect("a node")
        };
        assert!(is_ready(&node(serde_json::json!([
            {"type": "MemoryPressure", "status": "False"},
            {"type": "Ready", "status": "True"},
        ]))));
        assert!(!is_ready(&node(serde_json::json!([
            {"type": "Ready", "status": "Unknown"},
        ]))));
        assert!(!is_ready(&node(serde_json::json!([]))));
    }
}
