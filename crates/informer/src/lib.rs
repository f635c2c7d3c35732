//! What every component that watches the Kubernetes API shares, as upstream's client-go
//! (informers, work queues, event recorder, leader election) and kube-runtime do: the
//! controllers, the node agent and the cluster DNS all build on it, and none of them needs
//! another's crate for it.
//!
//! - [`cache`]: watch-fed caches that know the newest resourceVersion they applied;
//! - [`queue`]: a de-duplicating work queue of object keys;
//! - [`runner`]: the reconcile loop over a queue, with its retry policy;
//! - [`events`]: the correlating event recorder;
//! - [`errors`]: telling API errors apart, and the tolerant create;
//! - [`guarded`]: deletes that name the uid they mean;
//! - [`finalizers`]: adding and removing one finalizer, guarded by resourceVersion;
//! - [`leader`]: Lease-based leader election (`coordination.k8s.io/v1`).

pub mod cache;
pub mod errors;
pub mod events;
pub mod finalizers;
pub mod guarded;
pub mod leader;
pub mod queue;
pub mod runner;
