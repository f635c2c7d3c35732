//! `petset bench pods`: the runc node for real. One pod at a time, the time from the pod's
//! creation until its container runs (the image already unpacked in the store), and from its
//! deletion until its processes are gone and the pod with them.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::bench::stats::Summary;
use crate::cli::{NodeRuntime, PodsBenchArgs};
use crate::cluster::{Cluster, NodeSettings};

pub async fn run(args: PodsBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let store = petset_store::open(&petset_store::StoreSpec::Memory, temp.path())
        .await
        .context("opening the store")?;
    let image_store = crate::image::image_store_root(args.image_store.clone());
    let mut cluster = Cluster::start(
        store,
        None,
        temp.path(),
        NodeSettings {
            runtime: Some(NodeRuntime::Runc),
            image_store: image_store.clone(),
            network: crate::cluster::bench_network(),
            dns_listen: None,
            api_address: None,
        },
    )
    .await?;
    let outcome = measure(&cluster, &args).await;
    cluster.stop().await;
    let (started, stopped) = outcome?;
    println!(
        "petset bench pods: {} pods one at a time, image {} from {}",
        args.pods,
        args.image,
        image_store.display()
    );
    for (what, summary) in [
        ("created → container running", started),
        ("deleted → processes gone", stopped),
    ] {
        println!(
            "| {what} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            summary.count,
            ms(summary.p50),
            ms(summary.p99),
            ms(summary.max)
        );
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

async fn measure(cluster: &Cluster, args: &PodsBenchArgs) -> anyhow::Result<(Summary, Summary)> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), "default");
    crate::bench::wait_for_ready_node(&cluster.client, args.timeout()).await?;
    let mut started = Vec::new();
    let mut stopped = Vec::new();
    for index in 0..args.pods {
        let name = format!("bench-{index}");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 5, "containers": [{
                "name": "main", "image": args.image,
                // Stops at once on TERM: the deletion measures the node, not a grace period.
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]}]},
        }))?;
        let watch = WatchParams::default().fields(&format!("metadata.name={name}"));
        let mut events = pods.watch(&watch, "0").await?.boxed();
        let begin = Instant::now();
        pods.create(&PostParams::default(), &pod).await?;
        wait_for(&mut events, args.timeout(), |event| match event {
            WatchEvent::Modified(pod) => running(pod),
            _ => false,
        })
        .await
        .with_context(|| format!("{name} never ran"))?;
        started.push(begin.elapsed());
        // A shell that has not yet set its trap ignores SIGTERM as PID 1, and the deletion
        // would then wait out the grace period: give it a moment to start.
        tokio::time::sleep(Duration::from_millis(200)).await;

        let begin = Instant::now();
        pods.delete(&name, &DeleteParams::default()).await?;
        wait_for(
            &mut events,
            args.timeout(),
            |event| matches!(event, WatchEvent::Deleted(pod) if pod.name_any() == name),
        )
        .await
        .with_context(|| format!("{name} was never removed"))?;
        stopped.push(begin.elapsed());
    }
    Ok((Summary::of(started), Summary::of(stopped)))
}

fn running(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|c| {
            c.iter()
                .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
}

async fn wait_for<S>(
    events: &mut S,
    timeout: Duration,
    done: impl Fn(&WatchEvent<Pod>) -> bool,
) -> anyhow::Result<()>
where
    S: futures::Stream<Item = Result<WatchEvent<Pod>, kube::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(Ok(event))) if done(&event) => return Ok(()),
            Ok(Some(Ok(WatchEvent::Error(status)))) => bail!("watch error: {}", status.message),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(error))) => return Err(error.into()),
            Ok(None) => bail!("the watch ended"),
            Err(_) => bail!("timed out after {timeout:?}"),
        }
    }
}
