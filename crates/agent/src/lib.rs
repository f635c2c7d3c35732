//! The node: registers a Node and runs the pods the scheduler binds to it. Today the node is
//! simulated (pods are marked Running and Ready without processes); the runc runtime follows.

pub mod simulated;

/// This machine's name, as a node name: the kernel's hostname, lowercased.
pub fn node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_lowercase())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "petset-node".to_string())
}
