//! The node: registers a Node and runs the pods the scheduler binds to it, as real containers
//! (`runc`) or simulated (pods are marked Running and Ready without processes).

pub mod downward;
pub mod environment;
pub mod expansion;
pub mod fence;
pub mod ingress;
pub mod join;
pub mod kubelet;
pub mod kubelet_events;
pub mod local_path;
pub mod machine;
pub mod node;
pub mod pods;
pub mod probes;
// Quantities are API machinery (the scheduler reads them too); the node keeps its old path.
pub use petset_api::quantity;
pub mod routes;
pub mod runc;
pub mod runtime;
pub mod runtimes;
pub mod services;
pub mod simulated;
pub mod start_error;
#[cfg(test)]
mod testing;
pub mod watchdog;

/// This machine's name, as a node name: the kernel's hostname, lowercased.
pub fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_lowercase())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "petset-node".to_string())
}
