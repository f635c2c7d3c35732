//! `petset bench nodes`, the scheduling part: the cluster in process without a node of its
//! own, N simulated nodes registered as an agent registers them (the Node with its
//! allocatable, Ready, and its Lease renewed), and M plain pods created at once. Only the
//! scheduler is measured, so the nodes run no pods: no pod worker marks them Running. Timed
//! from the first create until every pod has `spec.nodeName` (seen on a watch), with each
//! pod's create → bound latency.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use petset_agent::node::{Kind, NodeFacts};
use petset_store::StoreSpec;
use serde_json::json;

use crate::bench::stats::{Summary, ms};
use crate::cli::NodeRuntime;
use crate::cluster::{Cluster, NodeSettings};

const NAMESPACE: &str = "bench-nodes";

#[derive(Debug, clap::Args)]
pub struct NodesBenchArgs {
    /// Simulated nodes registered.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Pods created, all at once (each requests 10m CPU and 16Mi).
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// The store behind the API, as for `petset up --store`.
    #[arg(long, default_value = "embedded")]
    pub store: StoreSpec,
    /// Pod creations in flight at once.
    #[arg(long, default_value_t = 64)]
    pub creators: usize,
    /// Seconds until every pod must be bound.
    #[arg(long, default_value_t = 600)]
    pub timeout_seconds: u64,
    /// Real `petset agent` processes (simulated nodes) joined to a real `petset server`, one
    /// at a time, for the join → Ready figure; 0 skips it.
    #[arg(long, default_value_t = 10)]
    pub join_agents: usize,
}

impl NodesBenchArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_seconds)
    }
}

pub async fn run(args: &NodesBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let store = petset_store::open(&args.store, temp.path())
        .await
        .context("opening the store")?;
    let mut cluster = Cluster::start(
        store,
        None,
        temp.path(),
        NodeSettings {
            runtime: Some(NodeRuntime::None),
            image_store: temp.path().join("images"),
            network: crate::cluster::bench_network(),
            dns_listen: None,
            api_address: None,
        },
    )
    .await?;
    let mut leases = tokio::task::JoinSet::new();
    let outcome = measure(&cluster.client, args, &mut leases).await;
    leases.abort_all();
    cluster.stop().await;
    let figures = outcome?;
    println!(
        "petset bench nodes: scheduling {} pods over {} simulated nodes, store {}",
        args.pods, args.nodes, args.store
    );
    println!("| nodes | pods | created/s | bound/s | create → bound p50 | p99 | max |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let per_second = |took: Duration| args.pods as f64 / took.as_secs_f64();
    println!(
        "| {} | {} | {:.0} | {:.0} | {} ms | {} ms | {} ms |",
        args.nodes,
        args.pods,
        per_second(figures.created),
        per_second(figures.bound),
        ms(figures.latency.p50),
        ms(figures.latency.p99),
        ms(figures.latency.max),
    );
    let spread = figures.per_node.values();
    println!(
        "pods per node: {} to {}",
        spread.clone().min().unwrap_or(&0),
        spread.max().unwrap_or(&0)
    );
    if args.join_agents > 0 {
        super::join::run(args.join_agents, args.timeout()).await?;
    }
    Ok(())
}

struct Figures {
    /// From the first create until the last create answered.
    created: Duration,
    /// From the first create until the last pod was seen bound.
    bound: Duration,
    latency: Summary,
    per_node: HashMap<String, usize>,
}

/// Registers the nodes as agents do, each renewing its Lease in `leases`.
async fn register_nodes(
    client: &kube::Client,
    count: usize,
    leases: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<()> {
    for index in 0..count {
        let name = format!("sim-{index:03}");
        // A /24 of 10.42.0.0/16 per node, as the server allocates them.
        let facts = NodeFacts::simulated(format!("10.42.{}.0/24", index % 256));
        petset_agent::node::register(client, &name, Kind::Simulated, &facts)
            .await
            .with_context(|| format!("registering {name}"))?;
        leases.spawn(petset_agent::node::keep_lease(client.clone(), name));
    }
    Ok(())
}

async fn measure(
    client: &kube::Client,
    args: &NodesBenchArgs,
    leases: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<Figures> {
    if args.pods == 0 {
        bail!("--pods must be at least 1");
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await?;
    register_nodes(client, args.nodes, leases).await?;
    crate::bench::wait_for_ready_node(client, args.timeout()).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let mut events = pods.watch(&WatchParams::default(), "0").await?.boxed();
    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let creating = {
        let (pods, created_at, creators) = (pods.clone(), created_at.clone(), args.creators.max(1));
        let total = args.pods;
        tokio::spawn(async move {
            futures::stream::iter(0..total)
                .map(|index| create_pod(&pods, index, &created_at))
                .buffer_unordered(creators)
                .try_collect::<Vec<()>>()
                .await
                .map(|_| started.elapsed())
        })
    };
    let deadline = Instant::now() + args.timeout();
    let mut latencies = Vec::with_capacity(args.pods);
    let mut per_node: HashMap<String, usize> = HashMap::new();
    let mut bound_pods = std::collections::HashSet::new();
    while bound_pods.len() < args.pods {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = match tokio::time::timeout(left, events.try_next()).await {
            Ok(event) => event?,
            Err(_) => bail!(
                "{} of {} pods bound within {:?}",
                bound_pods.len(),
                args.pods,
                args.timeout()
            ),
        };
        let Some(event) = event else {
            bail!("the pod watch ended");
        };
        let (WatchEvent::Added(pod) | WatchEvent::Modified(pod)) = event else {
            continue;
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        if bound_pods.insert(pod.name_any()) {
            let created = created_at
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&pod.name_any())
                .copied();
            latencies.push(created.map_or(Duration::ZERO, |at| at.elapsed()));
            *per_node.entry(node).or_default() += 1;
        }
    }
    let bound = started.elapsed();
    let created = creating.await.context("the creating task")??;
    Ok(Figures {
        created,
        bound,
        latency: Summary::of(latencies),
        per_node,
    })
}

async fn create_pod(
    pods: &Api<Pod>,
    index: usize,
    created_at: &Mutex<HashMap<String, Instant>>,
) -> anyhow::Result<()> {
    let name = format!("bench-{index:05}");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "main", "image": "registry.k8s.io/pause:3.9",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    }))?;
    created_at
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.clone(), Instant::now());
    pods.create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("creating {name}"))?;
    Ok(())
}
