//! The reconcilers that turn desired state into actions, all working through the Kubernetes
//! API with `kube::Client` (in process or over the network, unchanged): the StatefulSet
//! controller, Endpoints and EndpointSlices, the `local-path` volume provisioner, storage
//! protection, the scheduler, node lifecycle (heartbeats, taints and taint eviction), the
//! fenced failover of a lost node's StatefulSet pods, every namespace's `default`
//! ServiceAccount and `kube-root-ca.crt` ConfigMap, and the rules of aggregated ClusterRoles.

pub mod clusterroleaggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
mod disruption;
pub mod endpoints;
pub mod job;
pub mod leader;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod nodeloss;
mod owners;
pub mod pdb;
pub mod protection;
pub mod replicaset;
pub mod rootcacertpublisher;
pub mod scheduler;
pub mod serviceaccounts;
pub mod statefulset;
mod taints;
pub mod volumes;

// The shared informer machinery, under the paths the controllers have always used.
pub use petset_informer::{cache, errors, events, guarded, queue, runner};

use std::path::PathBuf;

use kube::Client;
pub use nodelifecycle::NodeLifecycleConfig;
pub use nodeloss::NodeLossConfig;
use tokio::task::JoinSet;

/// Starts every controller, node lifecycle with upstream's timings and node loss with its
/// defaults (`NodeLossConfig`); they stop when the returned set is dropped or aborted.
/// No cluster CA is published (`kube-root-ca.crt`).
pub fn spawn_all(client: Client, volumes_dir: PathBuf) -> JoinSet<()> {
    spawn_all_with(client, volumes_dir, NodeLifecycleConfig::default(), None)
}

/// [`spawn_all`], with the node lifecycle controller's settings given, and the cluster CA's
/// PEM that every namespace's `kube-root-ca.crt` carries (none: no root CA publisher, for
/// tests of the other controllers).
pub fn spawn_all_with(
    client: Client,
    volumes_dir: PathBuf,
    node_lifecycle: NodeLifecycleConfig,
    cluster_ca: Option<String>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    tasks.spawn(statefulset::run(client.clone()));
    tasks.spawn(replicaset::run_replica_sets(client.clone()));
    tasks.spawn(replicaset::run_replication_controllers(client.clone()));
    tasks.spawn(deployment::run(client.clone()));
    tasks.spawn(job::run(client.clone()));
    tasks.spawn(cronjob::run(client.clone()));
    tasks.spawn(volumes::run(client.clone(), volumes_dir));
    tasks.spawn(endpoints::run(client.clone()));
    tasks.spawn(protection::run(client.clone()));
    tasks.spawn(nodelifecycle::run(client.clone(), node_lifecycle));
    tasks.spawn(nodeloss::run(client.clone(), NodeLossConfig::default()));
    tasks.spawn(serviceaccounts::run(client.clone()));
    if let Some(ca_pem) = cluster_ca {
        tasks.spawn(rootcacertpublisher::run(client.clone(), ca_pem));
    }
    tasks.spawn(clusterroleaggregation::run(client.clone()));
    tasks.spawn(pdb::run(client.clone()));
    tasks.spawn(daemonset::run(client.clone()));
    tasks.spawn(scheduler::run(client));
    tasks
}
