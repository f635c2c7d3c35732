//! `petset bench statefulset`: the whole cluster in process on the simulated node, timing how
//! long StatefulSets take to become Ready: (a) Parallel with many replicas and a claim template,
//! (b) OrderedReady, (c) a rolling update of (b); then a Deployment: (d) its replicas to
//! Available, (e) a rolling update of them (an image change) to complete.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::cli::{NodeRuntime, StatefulSetBenchArgs};
use crate::cluster::{Cluster, NodeSettings};

pub async fn run(args: StatefulSetBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let store = petset_store::open(&args.store, temp.path())
        .await
        .context("opening the store")?;
    let mut cluster = Cluster::start(
        store,
        None,
        temp.path(),
        NodeSettings {
            runtime: Some(NodeRuntime::Simulated),
            image_store: temp.path().join("images"),
            network: crate::cluster::bench_network(),
            dns_listen: None,
            api_address: None,
        },
    )
    .await?;
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    for namespace in ["bench-parallel", "bench-ordered", "bench-deployment"] {
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": namespace}}))?,
            )
            .await?;
    }
    let parallel_sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "bench-parallel");
    let sets: Api<StatefulSet> = Api::namespaced(cluster.client.clone(), "bench-ordered");
    println!(
        "petset bench statefulset: store {}, simulated node",
        args.store
    );

    let parallel = args.parallel_replicas;
    let took = create_and_wait(&parallel_sets, "parallel", parallel, "Parallel", true).await?;
    println!(
        "(a) Parallel, {parallel} replicas with a claim each: all Ready in {:.2}s ({:.0} pods/s)",
        took.as_secs_f64(),
        parallel as f64 / took.as_secs_f64()
    );
    let ordered = args.ordered_replicas;
    let took = create_and_wait(&sets, "ordered", ordered, "OrderedReady", false).await?;
    println!(
        "(b) OrderedReady, {ordered} replicas: all Ready in {:.2}s ({:.0} pods/s)",
        took.as_secs_f64(),
        ordered as f64 / took.as_secs_f64()
    );
    let started = Instant::now();
    let patched = sets
        .patch(
            "ordered",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "registry.k8s.io/nginx-slim:0.7"}]}}}})),
        )
        .await?;
    let generation = patched.metadata.generation.unwrap_or(0);
    wait_until(&sets, "ordered", ordered, Some(generation), args.timeout()).await?;
    let took = started.elapsed();
    println!(
        "(c) rolling update of (b): all {ordered} replaced and Ready in {:.2}s ({:.0} pods/s)",
        took.as_secs_f64(),
        ordered as f64 / took.as_secs_f64()
    );
    deployment_phases(&cluster, args.deployment_replicas, args.timeout()).await?;
    cluster.stop().await;
    Ok(())
}

async fn create_and_wait(
    sets: &Api<StatefulSet>,
    name: &str,
    replicas: i32,
    policy: &str,
    claims: bool,
) -> anyhow::Result<Duration> {
    let mut set = json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                // Pods go at once when deleted: the benchmark measures the controller.
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "web", "image": "registry.k8s.io/nginx-slim:0.8"}]}},
        }
    });
    if claims {
        set["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]);
    }
    let started = Instant::now();
    sets.create(&PostParams::default(), &serde_json::from_value(set)?)
        .await?;
    wait_until(sets, name, replicas, None, Duration::from_secs(600)).await?;
    Ok(started.elapsed())
}

/// Polls the set's status until `replicas` pods are Ready (and, after an update to
/// `generation`, all of them updated).
async fn wait_until(
    sets: &Api<StatefulSet>,
    name: &str,
    replicas: i32,
    generation: Option<i64>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let set = sets.get(name).await?;
        let status = set.status.unwrap_or_default();
        let ready = status.ready_replicas.unwrap_or(0) == replicas && status.replicas == replicas;
        let rolled = generation.is_none_or(|generation| {
            status.observed_generation.unwrap_or(0) >= generation
                && status.updated_replicas.unwrap_or(0) == replicas
                && status.current_revision == status.update_revision
        });
        if ready && rolled {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{name}: not done within {timeout:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (d) a Deployment of `replicas` to Available, (e) its rolling update to complete.
async fn deployment_phases(
    cluster: &Cluster,
    replicas: i32,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "bench-deployment");
    let deployment = json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "web", "image": "registry.k8s.io/nginx-slim:0.8"}]}},
        }
    });
    let started = Instant::now();
    let created = deployments
        .create(&PostParams::default(), &serde_json::from_value(deployment)?)
        .await?;
    rolled_out(
        &deployments,
        replicas,
        created.metadata.generation.unwrap_or(1),
        timeout,
    )
    .await?;
    let took = started.elapsed();
    println!(
        "(d) Deployment, {replicas} replicas: Available in {:.2}s ({:.0} pods/s)",
        took.as_secs_f64(),
        f64::from(replicas) / took.as_secs_f64()
    );
    let started = Instant::now();
    let patched = deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "registry.k8s.io/nginx-slim:0.7"}]}}}})),
        )
        .await?;
    rolled_out(
        &deployments,
        replicas,
        patched.metadata.generation.unwrap_or(0),
        timeout,
    )
    .await?;
    let took = started.elapsed();
    println!(
        "(e) rolling update of (d) (25% surge, 25% unavailable): all {replicas} replaced and Available in {:.2}s ({:.0} pods/s)",
        took.as_secs_f64(),
        f64::from(replicas) / took.as_secs_f64()
    );
    Ok(())
}

/// Polls until the deployment has observed `generation` and every replica is updated and
/// available, with no old one left (what `kubectl rollout status` waits for).
async fn rolled_out(
    deployments: &Api<Deployment>,
    replicas: i32,
    generation: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let status = deployments.get("web").await?.status.unwrap_or_default();
        if status.observed_generation.unwrap_or(0) >= generation
            && status.updated_replicas == Some(replicas)
            && status.replicas == Some(replicas)
            && status.available_replicas == Some(replicas)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("deployment web: not rolled out within {timeout:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
