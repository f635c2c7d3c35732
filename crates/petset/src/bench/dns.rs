//! `petset bench dns`: how soon a new pod's name resolves after its address is written, how many
//! queries per second the cluster DNS answers, and (as root) how long the pod network takes to
//! give one sandbox its address.
//!
//! The first two run on the simulated node (addresses are bookkeeping, nothing is dialed; the
//! DNS listens on loopback), so they measure the API → watch → cache → answer path alone.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::net::UdpSocket;

use crate::bench::stats::Summary;
use crate::cli::{DnsBenchArgs, NodeRuntime};
use crate::cluster::{Cluster, NodeSettings};

const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: DnsBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let store = petset_store::open(&petset_store::StoreSpec::Memory, temp.path())
        .await
        .context("opening the store")?;
    let listen = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").context("finding a free port")?;
        probe.local_addr()?
    };
    let mut cluster = Cluster::start(
        store,
        None,
        temp.path(),
        NodeSettings {
            runtime: Some(NodeRuntime::Simulated),
            image_store: temp.path().join("images"),
            network: crate::cluster::bench_network(),
            dns_listen: Some(listen),
            api_address: None,
        },
    )
    .await?;
    let outcome = measure(&cluster, &args, listen).await;
    cluster.stop().await;
    let (resolved, queries) = outcome?;
    println!(
        "petset bench dns: {} pods one at a time (simulated node), {} clients querying for {} s",
        args.pods, args.clients, args.query_seconds
    );
    println!(
        "| pod address written → name resolves | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
        resolved.count,
        ms(resolved.p50),
        ms(resolved.p99),
        ms(resolved.max)
    );
    println!("| queries answered per second | {queries:.0} |");
    match network_setup(args.pods) {
        Ok(Some(setup)) => println!(
            "| pod network setup (veth, address, route) | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            setup.count,
            ms(setup.p50),
            ms(setup.p99),
            ms(setup.max)
        ),
        Ok(None) => println!("| pod network setup | skipped: needs root |"),
        Err(error) => println!("| pod network setup | failed: {error} |"),
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn query(name: &str) -> anyhow::Result<Vec<u8>> {
    let mut message = Message::query();
    message.add_query(Query::query(Name::from_str(name)?, RecordType::A));
    Ok(message.to_vec()?)
}

/// The A records of one answer.
fn addresses(answer: &[u8]) -> Vec<String> {
    Message::from_vec(answer)
        .map(|m| {
            m.answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn ask(socket: &UdpSocket, request: &[u8]) -> Option<Vec<u8>> {
    socket.send(request).await.ok()?;
    let mut buffer = vec![0u8; 1500];
    let length = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buffer))
        .await
        .ok()?
        .ok()?;
    buffer.truncate(length);
    Some(buffer)
}

async fn measure(
    cluster: &Cluster,
    args: &DnsBenchArgs,
    dns: SocketAddr,
) -> anyhow::Result<(Summary, f64)> {
    crate::bench::wait_for_ready_node(&cluster.client, TIMEOUT).await?;
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "bench"},
                "spec": {"clusterIP": "None", "selector": {"app": "bench"},
                    "ports": [{"name": "web", "port": 80}]},
            }))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    socket.connect(dns).await?;
    let mut resolved = Vec::new();
    let mut names = Vec::new();
    for index in 0..args.pods {
        let name = format!("pod-{index}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "bench"}},
            "spec": {"hostname": name, "subdomain": "bench",
                "containers": [{"name": "main", "image": "busybox:1.28"}]},
        }))?;
        let watch = WatchParams::default().fields(&format!("metadata.name={name}"));
        let mut events = pods.watch(&watch, "0").await?.boxed();
        pods.create(&PostParams::default(), &pod).await?;
        let deadline = Instant::now() + TIMEOUT;
        let address = loop {
            let event = tokio::time::timeout_at(deadline.into(), events.next())
                .await
                .with_context(|| format!("{name} never got an address"))?;
            if let Some(Ok(WatchEvent::Modified(pod))) = event
                && let Some(ip) = pod.status.and_then(|s| s.pod_ip)
            {
                break ip;
            }
        };
        let written = Instant::now();
        let full = format!("{name}.bench.default.svc.cluster.local.");
        let request = query(&full)?;
        loop {
            if let Some(answer) = ask(&socket, &request).await
                && addresses(&answer).contains(&address)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("{full} never resolved to {address}");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        resolved.push(written.elapsed());
        names.push(full);
    }

    let stop = Instant::now() + Duration::from_secs(args.query_seconds);
    let mut clients = tokio::task::JoinSet::new();
    for client in 0..args.clients.max(1) {
        let requests: Vec<Vec<u8>> = names.iter().filter_map(|n| query(n).ok()).collect();
        clients.spawn(async move {
            let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
                return 0u64;
            };
            if socket.connect(dns).await.is_err() || requests.is_empty() {
                return 0;
            }
            let mut answered = 0u64;
            let mut next = client;
            while Instant::now() < stop {
                next = (next + 1) % requests.len();
                if ask(&socket, &requests[next]).await.is_some() {
                    answered += 1;
                }
            }
            answered
        });
    }
    let mut answered = 0;
    while let Some(count) = clients.join_next().await {
        answered += count.unwrap_or(0);
    }
    Ok((
        Summary::of(resolved),
        answered as f64 / args.query_seconds.max(1) as f64,
    ))
}

/// The pod network alone: a bridge of the benchmark's own, then per sandbox a veth pair, an
/// address and a route (what the runc node does for each pod), timed; `None` without root.
/// (Without iproute2 it fails, saying so.)
fn network_setup(count: usize) -> anyhow::Result<Option<Summary>> {
    use petset_runtime::network::Network;
    use petset_runtime::pods::Runtime;
    if !crate::cluster::is_root() {
        return Ok(None);
    }
    let network = Network::open(crate::cluster::bench_network())?;
    let run = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let mut samples = Vec::new();
    let mut failure = None;
    for index in 0..count {
        let id = format!("bench{}x{index}", std::process::id());
        let netns = Runtime::netns_name(&id);
        if !run(&["netns", "add", &netns]) {
            failure = Some(format!("ip netns add {netns} failed"));
            break;
        }
        let begin = Instant::now();
        let attached = network.attach(&id, &netns);
        samples.push(begin.elapsed());
        run(&["netns", "delete", &netns]);
        network.release(&id);
        if let Err(error) = attached {
            failure = Some(error.to_string());
            break;
        }
    }
    network.close()?;
    match failure {
        Some(failure) => bail!(failure),
        None => Ok(Some(Summary::of(samples))),
    }
}
