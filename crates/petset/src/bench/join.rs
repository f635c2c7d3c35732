//! `petset bench nodes`' join figure: a real `petset server` process, and real `petset agent`
//! processes (simulated nodes on their own loopback addresses) started one at a time, each
//! timed from its start until its Node is Ready: the whole join (CA check, token, CSRs), the
//! registration, the pod range and the first status.

use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;

use super::child::spawn;
use super::stats::{Summary, ms};

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Joins `agents` simulated nodes one after another and prints the join-to-Ready figures.
pub async fn run(agents: usize, timeout: Duration) -> anyhow::Result<()> {
    let binary = std::env::current_exe().context("finding the petset binary")?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let server_dir = dir.path().join("server");
    let _server = spawn(
        &binary,
        &[
            "server".into(),
            "--data-dir".into(),
            server_dir.display().to_string(),
            "--api-listen".into(),
            format!("127.0.0.1:{port}"),
            "--store".into(),
            "memory".into(),
        ],
        &dir.path().join("server.log"),
    )?;
    let kubeconfig = server_dir.join("kubeconfig");
    let token_file = server_dir.join("node-token");
    let deadline = Instant::now() + timeout;
    while !(kubeconfig.exists() && token_file.exists()) {
        anyhow::ensure!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig)?,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let mut running = Vec::new();
    let mut samples = Vec::new();
    for index in 0..agents {
        let name = format!("bench-join-{index}");
        let address = format!("127.0.1.{}", 10 + index % 240);
        let node_dir = dir.path().join(&name);
        let started = Instant::now();
        running.push(spawn(
            &binary,
            &[
                "agent".into(),
                "--server".into(),
                format!("https://127.0.0.1:{port}"),
                "--token-file".into(),
                token_file.display().to_string(),
                "--data-dir".into(),
                node_dir.display().to_string(),
                "--node-name".into(),
                name.clone(),
                "--node-ip".into(),
                address,
                "--node-runtime".into(),
                "simulated".into(),
                "--kubelet-port".into(),
                "10250".into(),
            ],
            &dir.path().join(format!("{name}.log")),
        )?);
        loop {
            if let Ok(node) = nodes.get(&name).await
                && is_ready(&node)
            {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < timeout,
                "node {name} did not become Ready (see {})",
                dir.path().join(format!("{name}.log")).display()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(started.elapsed());
    }
    let summary = Summary::of(samples);
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| agent start → Node Ready (join, register, pod range), {} agents one at a time, p50 / max | {} ms / {} ms |",
        summary.count,
        ms(summary.p50),
        ms(summary.max)
    );
    Ok(())
}
