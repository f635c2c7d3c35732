//! The reconcilers that turn desired state into actions, all working through the Kubernetes
//! API with `kube::Client` (in process or over the network, unchanged): the StatefulSet
//! controller, Endpoints and EndpointSlices, the `local-path` volume provisioner, storage
//! protection, and the scheduler.

pub mod endpoints;
pub mod leader;
pub mod nodeipam;
pub mod protection;
pub mod scheduler;
pub mod statefulset;
pub mod volumes;

// The shared informer machinery, under the paths the controllers have always used.
pub use petset_informer::{cache, errors, events, guarded, queue, runner};

use std::path::PathBuf;

use kube::Client;
use tokio::task::JoinSet;

/// Starts every controller; they stop when the returned set is dropped or aborted.
pub fn spawn_all(client: Client, volumes_dir: PathBuf) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    tasks.spawn(statefulset::run(client.clone()));
    tasks.spawn(volumes::run(client.clone(), volumes_dir));
    tasks.spawn(endpoints::run(client.clone()));
    tasks.spawn(protection::run(client.clone()));
    tasks.spawn(scheduler::run(client));
    tasks
}
