//! `petset up`: opens the data directory and the store, serves the API, and stops cleanly on
//! SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::Context;
use petset_apiserver::{serve, tls};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::UpArgs;
use crate::cluster::{Cluster, NodeSettings};
use crate::datadir::DataDir;

/// How long open requests may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = DataDir::lock(&args.data_dir)?;
    tracing::info!(data_dir = %data_dir.path().display(), store = %args.store, "starting petset");
    let store = petset_store::open(&args.store, data_dir.path())
        .await
        .context("opening the store")?;
    let compactor =
        petset_store::spawn_compactor(store.clone(), Duration::from_secs(args.compaction_interval));

    let credentials = tls::load_or_create(data_dir.path(), args.api_listen)
        .context("setting up the cluster CA and serving certificate")?;
    let mut cluster = Cluster::start(
        store,
        Some(credentials.admin_token.clone()),
        data_dir.path(),
        NodeSettings {
            runtime: args.node_runtime,
            image_store: crate::image::image_store_root(args.image_store.clone()),
            network: petset_runtime::network::NetworkConfig {
                bridge: args.bridge.clone(),
                cidr: args.pod_cidr,
                services: Some(args.service_cidr),
            },
            dns_listen: args.dns_listen,
        },
    )
    .await?;
    let state = cluster.state.clone();
    let listener = TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("listening on {}", args.api_listen))?;
    let app = petset_apiserver::router(state.clone());
    let mut server = tokio::spawn(serve::serve_tls(
        listener,
        credentials.server_config.clone(),
        app,
        state.stopping(),
        SHUTDOWN_GRACE,
    ));
    let kubeconfig = tls::write_kubeconfig(data_dir.path(), &credentials, args.api_listen)
        .context("writing the kubeconfig")?;
    tracing::info!(
        address = %args.api_listen,
        kubeconfig = %kubeconfig.display(),
        "API server listening; ready"
    );

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
        ended = &mut server => {
            compactor.abort();
            cluster.stop();
            return match ended {
                Ok(()) => Err(anyhow::anyhow!("the API server stopped unexpectedly")),
                Err(error) => Err(error).context("the API server task failed"),
            };
        }
    }
    state.begin_shutdown();
    if let Err(error) = server.await {
        tracing::warn!(%error, "the API server task failed while stopping");
    }
    cluster.stop();
    compactor.abort();
    tracing::info!("petset stopped");
    Ok(())
}
