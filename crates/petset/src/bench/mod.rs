//! `petset bench …`: measurements whose figures go into BENCHMARKS.md.

mod api;
mod api_auth;
mod child;
mod dns;
pub mod failover;
mod join;
mod node_loss;
pub mod nodes;
mod pods;
mod statefulset;
mod stats;
mod store;

use crate::cli::{BenchArgs, BenchTarget};

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        BenchTarget::Store(args) => store::run(args).await,
        BenchTarget::Api(args) => api::run(args).await,
        BenchTarget::Statefulset(args) => statefulset::run(args).await,
        BenchTarget::Pods(args) => pods::run(args).await,
        BenchTarget::Dns(args) => dns::run(args).await,
        BenchTarget::Nodes(args) => nodes::run(&args).await,
        BenchTarget::Failover(args) => failover::run(&args).await,
    }
}

/// Waits until a node is Ready: the node registers as the cluster starts, and a pod created
/// before then waits for the scheduler's next look, which is not what benchmarks measure.
async fn wait_for_ready_node(
    client: &kube::Client,
    timeout: std::time::Duration,
) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let nodes: kube::Api<Node> = kube::Api::all(client.clone());
    let deadline = std::time::Instant::now() + timeout;
    while !nodes
        .list(&Default::default())
        .await?
        .items
        .iter()
        .any(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the node never became Ready");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(())
}
