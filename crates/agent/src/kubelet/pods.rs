//! The pods bound to this node, as the node API sees them: a watch-fed cache (upstream's
//! kubelet answers from its pod manager the same way), so a stream request never asks the API.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

/// How long a request waits for a pod its cache has not seen yet: the API server found the pod
/// bound to this node before relaying, so the watch delivers it within moments.
const CATCH_UP: Duration = Duration::from_secs(2);

pub(crate) struct PodCache {
    store: reflector::Store<Pod>,
}

/// Fills the node API's pod cache from the API; run it once a client exists.
pub struct PodFeed {
    node: String,
    writer: reflector::store::Writer<Pod>,
}

impl PodCache {
    pub fn new(node: &str) -> (Self, PodFeed) {
        let (store, writer) = reflector::store();
        let feed = PodFeed {
            node: node.to_string(),
            writer,
        };
        (Self { store }, feed)
    }

    /// The pod `namespace/name` (with `uid`, only that instance of it); `None` when it is not
    /// bound to this node.
    pub async fn find(&self, namespace: &str, name: &str, uid: Option<&str>) -> Option<Arc<Pod>> {
        let key = ObjectRef::new(name).within(namespace);
        let matches =
            |pod: &Arc<Pod>| uid.is_none_or(|uid| pod.metadata.uid.as_deref() == Some(uid));
        let deadline = tokio::time::Instant::now() + CATCH_UP;
        loop {
            if let Some(pod) = self.store.get(&key).filter(matches) {
                return Some(pod);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl PodFeed {
    /// Watches the pods bound to this node until the task is aborted.
    pub async fn run(self, client: Client) {
        let pods: Api<Pod> = Api::all(client);
        let config = watcher::Config::default().fields(&format!("spec.nodeName={}", self.node));
        watcher(pods, config)
            .default_backoff()
            .reflect(self.writer)
            .for_each(|event| async move {
                if let Err(error) = event {
                    tracing::debug!(%error, "node API pod watch error");
                }
            })
            .await;
    }
}
