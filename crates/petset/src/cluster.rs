//! The cluster inside one process: the API state over a store, the watch cache, the API's own
//! controllers (garbage collector, namespaces), the reconcilers and, optionally, the node. Used
//! by `petset up` and by the benchmarks, so both measure and run the same thing.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use petset_apiserver::ApiState;
use petset_store::Store;
use tokio::task::{JoinHandle, JoinSet};

use crate::cli::NodeRuntime;

pub struct Cluster {
    pub state: ApiState,
    /// A client of the API in this process (no socket, no credentials).
    pub client: kube::Client,
    watch_cache: JoinHandle<()>,
    api_controllers: JoinHandle<()>,
    reconcilers: JoinSet<()>,
}

impl Cluster {
    pub async fn start(
        store: Arc<dyn Store>,
        admin_token: Option<String>,
        data_dir: &Path,
        node: Option<NodeRuntime>,
    ) -> anyhow::Result<Self> {
        let state = ApiState::new(store, admin_token);
        state
            .registry()
            .bootstrap()
            .await
            .context("creating the built-in namespaces")?;
        let watch_cache = state.spawn_watch_cache();
        let api_controllers = petset_apiserver::spawn_controllers(&state);
        let client = kube::Client::new(petset_apiserver::internal_router(state.clone()), "default");
        let mut reconcilers =
            petset_controllers::spawn_all(client.clone(), data_dir.join("volumes"));
        match node {
            Some(NodeRuntime::Simulated) => {
                let node = petset_agent::node_name();
                tracing::info!(%node, "running a simulated node");
                reconcilers.spawn(petset_agent::simulated::run(client.clone(), node));
            }
            Some(NodeRuntime::Runc) | None => {
                tracing::info!("the runc node agent is not built yet; pods stay Pending");
            }
        }
        Ok(Self {
            state,
            client,
            watch_cache,
            api_controllers,
            reconcilers,
        })
    }

    /// Stops everything started here; the HTTP server, if any, is the caller's.
    pub fn stop(&mut self) {
        self.state.begin_shutdown();
        self.reconcilers.abort_all();
        self.api_controllers.abort();
        self.watch_cache.abort();
    }
}
