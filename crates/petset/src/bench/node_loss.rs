//! `petset bench failover`, the nodes' part: a real `petset cluster up` of runc nodes (each in
//! a network namespace of its own) with its default settings (every node fenced after 30 s
//! without a renewal, upstream's 50 s grace). Each run kills -9 the agent of the node that runs
//! a one-replica StatefulSet's pod and times until the replacement pod (a new uid) is Ready on
//! another node. A run loses a node for good, so the cluster has one node more than runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, PostParams};

use super::child::{Process, spawn_with_env};
use super::stats::Summary;

/// The set whose pod each run moves: a process that is Ready once it runs.
fn moved_set(image: &str) -> anyhow::Result<StatefulSet> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": "moved"},
        "spec": {
            "serviceName": "moved",
            "replicas": 1,
            "selector": {"matchLabels": {"app": "moved"}},
            "template": {"metadata": {"labels": {"app": "moved"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "main", "image": image,
                        "command": ["sh", "-c", "touch /tmp/ready; trap 'exit 0' TERM; while true; do sleep 1; done"],
                        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}}]}},
        },
    }))?)
}

/// The pid `cluster up` recorded for a role (a node's agent goes by the node's name).
fn recorded_pid(dir: &Path, role: &str) -> anyhow::Result<u32> {
    let path = dir.join("cluster.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let record: serde_json::Value = serde_json::from_str(&text)?;
    record["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["role"] == role)
        .and_then(|p| u32::try_from(p["pid"].as_u64()?).ok())
        .with_context(|| format!("{} records no process for {role}", path.display()))
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The cluster's admin client, once `cluster up` has written its kubeconfig (which it does
/// when every node is Ready).
async fn client_of(
    dir: &Path,
    cluster: &mut Process,
    timeout: Duration,
) -> anyhow::Result<kube::Client> {
    let kubeconfig = dir.join("kubeconfig");
    let deadline = Instant::now() + timeout;
    while !kubeconfig.exists() {
        if let Ok(Some(status)) = cluster.0.try_wait() {
            bail!(
                "cluster up exited ({status}); see {}",
                dir.join("cluster-up.log").display()
            );
        }
        if Instant::now() >= deadline {
            bail!("the cluster was not up within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(config, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Times `runs` node losses; returns the summary of loss → replacement Ready.
pub async fn run(
    runs: usize,
    image_store: Option<PathBuf>,
    image: &str,
    timeout: Duration,
) -> anyhow::Result<Summary> {
    let binary = std::env::current_exe().context("finding the petset binary")?;
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = temp.path().join("cluster");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let args = vec![
        "cluster".to_string(),
        "up".into(),
        "--nodes".into(),
        (runs + 1).to_string(),
        "--node-runtime".into(),
        "runc".into(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--api-port".into(),
        port.to_string(),
        "--name".into(),
        "bench".into(),
    ];
    std::fs::create_dir_all(&dir)?;
    // The nodes find the image store through the environment cluster up passes on.
    let env: Vec<(&str, PathBuf)> = image_store
        .into_iter()
        .map(|store| ("PETSET_IMAGE_STORE", store))
        .collect();
    let mut cluster = spawn_with_env(&binary, &args, &dir.join("cluster-up.log"), &env)?;
    let client = client_of(&dir, &mut cluster, timeout).await?;
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    sets.create(&PostParams::default(), &moved_set(image)?)
        .await
        .context("creating the moved set")?;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let mut samples = Vec::new();
    for run in 0..runs {
        let deadline = Instant::now() + timeout;
        let pod = loop {
            if let Some(pod) = pods.get_opt("moved-0").await?
                && ready(&pod)
            {
                break pod;
            }
            if Instant::now() >= deadline {
                bail!("run {run}: moved-0 was not Ready within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let uid = pod.uid().unwrap_or_default();
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .context("moved-0 has a node")?;
        let agent = recorded_pid(&dir, &node)?;
        let lost_at = Instant::now();
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &agent.to_string()])
            .status()?;
        if !killed.success() {
            bail!("run {run}: could not kill the agent of {node} ({agent})");
        }
        loop {
            if let Some(pod) = pods.get_opt("moved-0").await?
                && pod.uid().as_deref() != Some(uid.as_str())
                && ready(&pod)
            {
                samples.push(lost_at.elapsed());
                break;
            }
            if lost_at.elapsed() >= timeout {
                bail!("run {run}: moved-0 was not replaced within {timeout:?} of losing {node}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(cluster);
    Ok(Summary::of(samples))
}
