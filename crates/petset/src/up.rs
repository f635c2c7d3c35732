//! `petset up`: opens the data directory and the store, serves the API, and stops cleanly on
//! SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::Context;
use petset_apiserver::{ApiState, serve, tls};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::{NodeRuntime, UpArgs};
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
    let state = ApiState::new(store, Some(credentials.admin_token.clone()));
    state
        .registry()
        .bootstrap()
        .await
        .context("creating the built-in namespaces")?;
    let watch_cache = state.spawn_watch_cache();
    let controllers = petset_apiserver::spawn_controllers(&state);
    // Controllers and the node reach the API through kube::Client, in process.
    let client = kube::Client::new(petset_apiserver::internal_router(state.clone()), "default");
    let mut reconcilers =
        petset_controllers::spawn_all(client.clone(), data_dir.path().join("volumes"));
    match args.node_runtime {
        Some(NodeRuntime::Simulated) => {
            let node = petset_agent::node_name();
            tracing::info!(%node, "running a simulated node");
            reconcilers.spawn(petset_agent::simulated::run(client.clone(), node));
        }
        Some(NodeRuntime::Runc) | None => {
            tracing::info!("the runc node agent is not built yet; pods stay Pending");
        }
    }
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
            controllers.abort();
            watch_cache.abort();
            reconcilers.abort_all();
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
    reconcilers.abort_all();
    controllers.abort();
    watch_cache.abort();
    compactor.abort();
    tracing::info!("petset stopped");
    Ok(())
}
