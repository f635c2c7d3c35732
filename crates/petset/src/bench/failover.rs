//! `petset bench failover`, the servers' part (the nodes' is `super::node_loss`): a real etcd (Debian's, one member on loopback)
//! and two real `petset server` processes over it sharing one CA. Each run kills the holder of
//! the controllers' Lease with SIGKILL, creates a StatefulSet through the survivor at once, and
//! times until the Lease names the survivor (take-over) and until the survivor's controllers
//! have made the set's pod (work resumed); then it starts the killed server again on its data
//! dir, so every run begins with two servers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};

use super::child::{Process, spawn};
use super::stats::{Summary, ms};

#[derive(Debug, Args)]
pub struct FailoverBenchArgs {
    /// Kills of the leading server, each timed.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Seconds a take-over (or a node's failover) may take before the run fails.
    #[arg(long, default_value_t = 120)]
    pub timeout_seconds: u64,
    /// Which part: the servers' (kill -9 of the leading server), the nodes' (kill -9 of the
    /// agent of a StatefulSet pod's node, on a runc `cluster up`), or both.
    #[arg(long, value_enum, default_value = "both")]
    pub part: FailoverPart,
    /// The nodes' image store, for the nodes' part [default: $PETSET_IMAGE_STORE, else
    /// /var/lib/petset/images]
    #[arg(long)]
    pub image_store: Option<PathBuf>,
    /// The image the moved pod runs (needs `sh`, `sleep`, `touch` and `cat`).
    #[arg(long, default_value = "busybox:1.28")]
    pub image: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailoverPart {
    Servers,
    Nodes,
    Both,
}

/// One server: its data dir, its port, and its process while it runs.
struct Server {
    dir: PathBuf,
    port: u16,
    process: Option<Process>,
}

impl Server {
    fn identity(&self) -> anyhow::Result<String> {
        let path = self.dir.join("server-identity");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string())
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_server(binary: &Path, server: &mut Server, store: &str) -> anyhow::Result<()> {
    let args = [
        "server".to_string(),
        "--data-dir".into(),
        server.dir.display().to_string(),
        "--api-listen".into(),
        format!("127.0.0.1:{}", server.port),
        "--store".into(),
        store.into(),
    ];
    server.process = Some(spawn(binary, &args, &server.dir.with_extension("log"))?);
    Ok(())
}

/// A client of `server` with the cluster's admin kubeconfig, once the server answers.
async fn client_of(server: &Server, timeout: Duration) -> anyhow::Result<kube::Client> {
    let kubeconfig = server.dir.join("kubeconfig");
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(config) = kube::config::Kubeconfig::read_from(&kubeconfig) {
            let config = kube::Config::from_custom_kubeconfig(
                config,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?;
            let client = kube::Client::try_from(config)?;
            let ready = client
                .request_text(kube::core::Request::new("").get("readyz", &Default::default())?)
                .await;
            if matches!(ready.as_deref(), Ok("ok")) {
                return Ok(client);
            }
        }
        if Instant::now() >= deadline {
            let log = std::fs::read_to_string(server.dir.with_extension("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "the server of {} did not become ready; its log ends:\n{}",
                server.dir.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn holder(client: &kube::Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    leases
        .get_opt(petset_controllers::leader::CONTROLLERS_LEASE)
        .await
        .ok()
        .flatten()
        .and_then(|lease| lease.spec?.holder_identity)
}

fn probe_set(name: &str) -> anyhow::Result<StatefulSet> {
    Ok(serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]}},
        },
    }))?)
}

pub async fn run(args: &FailoverBenchArgs) -> anyhow::Result<()> {
    if args.part != FailoverPart::Nodes {
        servers(args).await?;
    }
    if args.part != FailoverPart::Servers {
        let timeout = Duration::from_secs(args.timeout_seconds);
        let moved =
            super::node_loss::run(args.runs, args.image_store.clone(), &args.image, timeout)
                .await?;
        println!(
            "petset bench failover: {} runc nodes (cluster up, default settings), the agent of a StatefulSet pod's node killed -9",
            args.runs + 1
        );
        println!("| measure | runs | p50 | max |");
        println!("|---|---:|---:|---:|");
        println!(
            "| kill -9 of the node's agent → the replacement pod Ready on another node | {} | {} ms | {} ms |",
            moved.count,
            ms(moved.p50),
            ms(moved.max)
        );
    }
    Ok(())
}

/// The servers' part.
async fn servers(args: &FailoverBenchArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout_seconds);
    let binary = std::env::current_exe().context("finding the petset binary")?;
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let (client_port, peer_port) = (free_port()?, free_port()?);
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let etcd_args: Vec<String> = [
        "--name",
        "bench",
        "--data-dir",
        &temp.path().join("etcd").display().to_string(),
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        &format!("bench={peer_url}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _etcd = spawn(Path::new("etcd"), &etcd_args, &temp.path().join("etcd.log"))
        .context("starting Debian's etcd (apt-get install etcd-server)")?;
    let store = format!("etcd://127.0.0.1:{client_port}");
    let member = std::net::SocketAddr::from(([127, 0, 0, 1], client_port));
    let deadline = Instant::now() + timeout;
    while !crate::local_cluster::ready::etcd_health(member)
        .await
        .is_ok_and(|body| body.contains(r#""health":"true""#))
    {
        if Instant::now() >= deadline {
            bail!(
                "etcd did not become healthy (see {})",
                temp.path().join("etcd.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut servers = Vec::new();
    for name in ["a", "b"] {
        servers.push(Server {
            dir: temp.path().join(name),
            port: free_port()?,
            process: None,
        });
    }
    start_server(&binary, &mut servers[0], &store)?;
    client_of(&servers[0], timeout).await?;
    // The second server is the same cluster: the first's CA and admin token.
    let pki = servers[1].dir.join("pki");
    std::fs::create_dir_all(&pki)?;
    for file in petset_apiserver::tls::SHARED_PKI_FILES {
        std::fs::copy(servers[0].dir.join("pki").join(file), pki.join(file))?;
    }
    start_server(&binary, &mut servers[1], &store)?;
    let mut clients = [
        client_of(&servers[0], timeout).await?,
        client_of(&servers[1], timeout).await?,
    ];

    let (mut take_overs, mut resumed) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let identities = [servers[0].identity()?, servers[1].identity()?];
        let deadline = Instant::now() + timeout;
        let leader = loop {
            let current = holder(&clients[0]).await;
            if let Some(index) = identities.iter().position(|i| Some(i) == current.as_ref()) {
                break index;
            }
            if Instant::now() >= deadline {
                bail!("no server holds the controllers' lease");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let survivor = 1 - leader;
        let mut killed = servers[leader].process.take().context("the leader runs")?;
        let killed_at = Instant::now();
        killed.0.kill().context("killing the leader")?;
        let _ = killed.0.wait();
        drop(killed);

        let name = format!("probe-{run}");
        let sets: Api<StatefulSet> = Api::default_namespaced(clients[survivor].clone());
        sets.create(&PostParams::default(), &probe_set(&name)?)
            .await
            .context("creating the probe set through the survivor")?;
        let pods: Api<Pod> = Api::default_namespaced(clients[survivor].clone());
        let (mut took_over, mut made) = (None, None);
        while took_over.is_none() || made.is_none() {
            if took_over.is_none()
                && holder(&clients[survivor]).await.as_ref() == Some(&identities[survivor])
            {
                took_over = Some(killed_at.elapsed());
            }
            if made.is_none() && pods.get_opt(&format!("{name}-0")).await?.is_some() {
                made = Some(killed_at.elapsed());
            }
            if killed_at.elapsed() >= timeout {
                bail!("run {run}: the survivor did not take over within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        take_overs.extend(took_over);
        resumed.extend(made);
        // Back to two servers for the next run (the same identity, not the leader now).
        start_server(&binary, &mut servers[leader], &store)?;
        clients[leader] = client_of(&servers[leader], timeout).await?;
    }
    let (take_over, resumed) = (Summary::of(take_overs), Summary::of(resumed));
    println!("petset bench failover: two servers over one etcd member, leader killed -9");
    println!("| measure | runs | p50 | max |");
    println!("|---|---:|---:|---:|");
    println!(
        "| kill -9 of the leader → the survivor holds the controllers' Lease | {} | {} ms | {} ms |",
        take_over.count,
        ms(take_over.p50),
        ms(take_over.max)
    );
    println!(
        "| kill -9 of the leader → a set created at that moment has its pod | {} | {} ms | {} ms |",
        resumed.count,
        ms(resumed.p50),
        ms(resumed.max)
    );
    Ok(())
}
