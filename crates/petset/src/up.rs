//! `petset up`: opens the data directory and the store, serves the API, and stops cleanly on
//! SIGINT or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use petset_apiserver::ApiState;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;

use crate::cli::UpArgs;
use crate::datadir::DataDir;

/// How often store history is compacted; the window kept is the same length (kube-apiserver's
/// default for etcd).
const COMPACTION_INTERVAL: Duration = Duration::from_secs(300);
/// How long open requests may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let data_dir = DataDir::lock(&args.data_dir)?;
    tracing::info!(data_dir = %data_dir.path().display(), store = %args.store, "starting petset");
    if let Some(runtime) = args.node_runtime {
        tracing::info!(
            ?runtime,
            "node runtime chosen; the node agent is not built yet"
        );
    }
    let store = petset_store::open(&args.store, data_dir.path())
        .await
        .context("opening the store")?;
    let compactor = petset_store::spawn_compactor(store.clone(), COMPACTION_INTERVAL);

    let state = ApiState::new(store);
    let listener = TcpListener::bind(args.api_listen)
        .await
        .with_context(|| format!("listening on {}", args.api_listen))?;
    let app = petset_apiserver::router(state.clone());
    let stop = Arc::new(Notify::new());
    let stopped = stop.clone();
    let mut server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stopped.notified().await })
            .into_future(),
    );
    tracing::info!(address = %args.api_listen, "API server listening; ready");

    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
        ended = &mut server => {
            compactor.abort();
            return match ended {
                Ok(Ok(())) => Err(anyhow::anyhow!("the API server stopped unexpectedly")),
                Ok(Err(error)) => Err(error).context("serving the API"),
                Err(error) => Err(error).context("the API server task failed"),
            };
        }
    }
    state.begin_shutdown();
    stop.notify_one();
    if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
        tracing::warn!(grace = ?SHUTDOWN_GRACE, "requests still open after the grace period; closing them");
    }
    compactor.abort();
    tracing::info!("petset stopped");
    Ok(())
}
