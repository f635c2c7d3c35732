//! The pods of a node: one worker per pod (`worker`), over a `crate::runtime::PodRuntime`.
//! The worker's decisions are pure functions (`lifecycle`), its pieces one module each:
//! images (`pull`), volumes, probes, status.
//!
//! **At most one:** a pod's containers run only from its worker; a worker ends only after its
//! containers and sandbox are gone. After a restart of the node, a worker takes over what its
//! pod still runs (`PodRuntime::adopt`); what no pod bound here accounts for is removed once
//! the node's pods are listed. Stopping the node cancels every worker and waits for them
//! (`Workers::stop`): a start in flight finishes, and is undone, before the stop returns.

mod atomic_writer;
mod lifecycle;
mod probe;
mod pull;
mod status;
mod tokens;
mod volumes;
mod worker;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::downward::Allocatable;
use crate::fence::Fence;
use crate::kubelet_events::KubeletEvents;
use crate::runtime::PodRuntime;

pub use status::{ContainerView, PodStatusView, container_status, pod_status};

/// The stdin pipes of running containers that have one (`stdin: true`), by container id.
pub type Stdins = Arc<Mutex<HashMap<String, std::process::ChildStdin>>>;

/// What every pod worker of a node shares.
pub struct Shared {
    pub stdins: Stdins,
    pub client: Client,
    pub runtime: Arc<dyn PodRuntime>,
    /// The nameserver written into pods' resolv.conf.
    pub dns: Option<Ipv4Addr>,
    pub events: KubeletEvents,
    /// What stands in for the limits containers do not set (the downward API).
    pub allocatable: Allocatable,
    /// Where this node's local-path volumes live (`crate::local_path`), when it has them.
    pub volumes_root: Option<PathBuf>,
    /// The node's fence (`crate::fence`): no container starts while it is not lowered.
    pub fence: Fence,
}

/// A short, runc-safe id for the pod with this uid: its sandbox's name. The uid's last 16
/// letters and digits: random in a v4 uuid as in the first ones, and distinct too for the
/// sequential uids of the test tier (`00000000-…-000000000001`), which share their first ones.
pub fn sandbox_id_of(uid: &str) -> String {
    let alphanumeric: Vec<char> = uid.chars().filter(char::is_ascii_alphanumeric).collect();
    let tail: String = alphanumeric[alphanumeric.len().saturating_sub(16)..]
        .iter()
        .collect();
    format!("p{tail}")
}

/// A deadline as late as the clock can represent: about thirty years from now.
pub(crate) fn far_future() -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    [30 * 365 * 24 * 3600, 24 * 3600, 3600]
        .into_iter()
        .find_map(|seconds| now.checked_add(Duration::from_secs(seconds)))
        .unwrap_or(now)
}

/// How a worker learns that the node stops, and how long its containers then get.
#[derive(Clone, Default)]
pub(crate) struct Stop {
    token: CancellationToken,
    grace_millis: Arc<AtomicU64>,
}

impl Stop {
    pub(crate) fn requested(&self) -> bool {
        self.token.is_cancelled()
    }

    pub(crate) async fn wait(&self) {
        self.token.cancelled().await
    }

    pub(crate) fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_millis.load(Ordering::SeqCst))
    }
}

/// A node's pod workers: spawned as pods arrive, stopped together.
#[derive(Default)]
pub struct Workers {
    stop: Stop,
    running: Mutex<JoinSet<()>>,
}

impl Workers {
    /// Starts the worker of a pod; once the node stops, a new worker returns at once.
    fn spawn(&self, shared: Arc<Shared>, updates: watch::Receiver<Option<Pod>>) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        // Finished workers leave their results in the set until collected.
        while running.try_join_next().is_some() {}
        running.spawn(worker::run(shared, updates, self.stop.clone()));
    }

    /// Stops every worker: each stops its containers (TERM, then KILL after `grace`) and
    /// removes its sandbox; returns once all have. A start in flight is finished first (it
    /// runs on the blocking pool, which no cancellation stops) and then undone.
    pub async fn stop(&self, grace: Duration) {
        let millis = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        self.stop.grace_millis.store(millis, Ordering::SeqCst);
        self.stop.token.cancel();
        let mut running =
            std::mem::take(&mut *self.running.lock().unwrap_or_else(|e| e.into_inner()));
        while running.join_next().await.is_some() {}
    }

    pub fn stopping(&self) -> bool {
        self.stop.requested()
    }
}

/// Stops and removes the sandboxes on this node that no pod bound here accounts for: what an
/// earlier run of the node left of pods deleted or moved while it was down. Those of pods
/// still here are their workers' (which take over what runs in them).
async fn remove_unaccounted(shared: &Shared, accounted: impl Iterator<Item = String>) {
    let accounted: std::collections::HashSet<String> = accounted.collect();
    let runtime = shared.runtime.clone();
    let swept = tokio::task::spawn_blocking(move || {
        for leftover in runtime.pods() {
            if accounted.contains(&leftover) {
                continue;
            }
            tracing::info!(pod = %leftover, "removing what no pod of this node accounts for");
            if let Err(error) = runtime.remove_sandbox(&leftover) {
                tracing::warn!(%error, pod = %leftover, "could not remove a leftover pod");
            }
        }
    })
    .await;
    if let Err(error) = swept {
        tracing::warn!(%error, "the sweep of leftover pods failed");
    }
}

/// Runs a worker for every pod bound to `node_name` until the node stops, or the task is
/// aborted: the workers are not the task's, they keep their containers until `Workers::stop`.
pub async fn run(shared: Arc<Shared>, node_name: &str, workers: &Workers) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let mut events = watcher(pods, config).default_backoff().boxed();
    let mut updates: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = workers.stop.wait() => return,
        };
        let Some(event) = event else { return };
        let (pod, present) = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, true),
            Ok(watcher::Event::Delete(pod)) => (pod, false),
            Ok(watcher::Event::InitDone) => {
                updates.retain(|_, sender| !sender.is_closed());
                // Awaited here, before any later pod gets a worker: only sandboxes that no
                // worker has are removed, and no new worker can make one meanwhile.
                remove_unaccounted(&shared, updates.keys().map(|uid| sandbox_id_of(uid))).await;
                continue;
            }
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "node watch error");
                continue;
            }
        };
        let uid = pod.uid().unwrap_or_default();
        updates.retain(|_, sender| !sender.is_closed());
        match updates.get(&uid) {
            Some(sender) => {
                let _ = sender.send(present.then_some(pod));
            }
            None if present => {
                let (sender, receiver) = watch::channel(Some(pod));
                updates.insert(uid, sender);
                workers.spawn(shared.clone(), receiver);
            }
            None => {}
        }
    }
}
