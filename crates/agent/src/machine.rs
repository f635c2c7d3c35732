//! This machine's resources as a kubelet reports them on its Node: capacity from the machine
//! (CPUs, `/proc/meminfo`, the data directory's filesystem) and allocatable after upstream's
//! default hard eviction thresholds (`memory.available<100Mi`, `nodefs.available<10%`).

use std::path::Path;

use serde_json::{Value, json};

use crate::downward::Allocatable;
use crate::quantity::{Quantity, format_bytes};

/// Pods per node, upstream's default `maxPods`.
pub const MAX_PODS: u32 = 110;
const MEMORY_EVICTION_BYTES: u64 = 100 << 20;
/// Upstream keeps the percentage as a float32.
const NODEFS_EVICTION_FRACTION: f32 = 0.1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub cpus: u32,
    pub memory_bytes: u64,
    /// The filesystem of the node's data; `None` when it could not be measured.
    pub ephemeral_storage_bytes: Option<u64>,
}

impl Machine {
    /// Measures this machine; `data_dir` is where pods' writable layers and volumes live.
    pub fn of_this_host(data_dir: &Path) -> Self {
        let cpus = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| cpus_in_cpuinfo(&text))
            .or_else(|| {
                std::thread::available_parallelism()
                    .ok()
                    .map(|n| n.get() as u32)
            })
            .unwrap_or(1);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| mem_total_bytes(&text))
            .unwrap_or(0);
        Self {
            cpus,
            memory_bytes,
            ephemeral_storage_bytes: filesystem_bytes(data_dir),
        }
    }

    pub fn allocatable_memory(&self) -> u64 {
        self.memory_bytes.saturating_sub(MEMORY_EVICTION_BYTES)
    }

    pub fn allocatable_storage(&self) -> Option<u64> {
        self.ephemeral_storage_bytes.map(|bytes| {
            let reserved = (bytes as f64 * f64::from(NODEFS_EVICTION_FRACTION)) as u64;
            bytes.saturating_sub(reserved)
        })
    }

    /// The Node's `status.capacity`.
    pub fn capacity(&self) -> Value {
        self.resources(self.memory_bytes, self.ephemeral_storage_bytes)
    }

    /// The Node's `status.allocatable`.
    pub fn allocatable(&self) -> Value {
        self.resources(self.allocatable_memory(), self.allocatable_storage())
    }

    /// What stands in for a limit a container does not set (the downward API).
    pub fn allocatable_for_pods(&self) -> Allocatable {
        Allocatable {
            cpu: Some(Quantity::from_units(i64::from(self.cpus))),
            memory: Some(Quantity::from_units(self.allocatable_memory() as i64)),
            ephemeral_storage: self
                .allocatable_storage()
                .map(|bytes| Quantity::from_units(bytes as i64)),
        }
    }

    fn resources(&self, memory: u64, storage: Option<u64>) -> Value {
        let mut resources = json!({
            "cpu": self.cpus.to_string(),
            "memory": format_bytes(memory),
            "pods": MAX_PODS.to_string(),
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
        });
        if let Some(storage) = storage {
            resources["ephemeral-storage"] = json!(format_bytes(storage));
        }
        resources
    }
}

/// The CPUs `/proc/cpuinfo` lists (one `processor` line each).
fn cpus_in_cpuinfo(text: &str) -> Option<u32> {
    let count = text
        .lines()
        .filter(|line| {
            line.split(':')
                .next()
                .is_some_and(|key| key.trim() == "processor")
        })
        .count();
    (count > 0).then_some(count as u32)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total_bytes(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let number: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => number.checked_mul(1024),
        None => Some(number),
        Some(_) => None,
    }
}

/// The size of the filesystem holding `path`, from coreutils' `stat -f` (statfs without a
/// crate): fundamental block size times total blocks.
fn filesystem_bytes(path: &Path) -> Option<u64> {
    // The data directory may not exist yet; its closest existing ancestor is on the same
    // filesystem as it will be.
    let existing = path.ancestors().find(|p| p.exists())?;
    let output = std::process::Command::new("stat")
        .args(["-f", "-c", "%S %b"])
        .arg(existing)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    statfs_bytes(&String::from_utf8_lossy(&output.stdout))
}

fn statfs_bytes(text: &str) -> Option<u64> {
    let mut words = text.split_whitespace();
    let block: u64 = words.next()?.parse().ok()?;
    let blocks: u64 = words.next()?.parse().ok()?;
    block.checked_mul(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_give_cpus_and_memory() {
        let cpuinfo = "processor\t: 0\nmodel name\t: x\n\nprocessor\t: 1\nmodel name\t: x\n";
        assert_eq!(cpus_in_cpuinfo(cpuinfo), Some(2));
        assert_eq!(cpus_in_cpuinfo("Processor : ARMv7"), None);
        let meminfo = "MemTotal:       16331512 kB\nMemFree:         1234 kB\n";
        assert_eq!(mem_total_bytes(meminfo), Some(16_331_512 * 1024));
        assert_eq!(mem_total_bytes("MemFree: 1 kB"), None);
        assert_eq!(statfs_bytes("4096 262144\n"), Some(1 << 30));
        assert_eq!(statfs_bytes("x"), None);
    }

    #[test]
    fn allocatable_is_capacity_less_the_eviction_thresholds() {
        let machine = Machine {
            cpus: 2,
            memory_bytes: 16_331_512 * 1024,
            ephemeral_storage_bytes: Some(100 << 30),
        };
        let capacity = machine.capacity();
        assert_eq!(capacity["cpu"], "2");
        assert_eq!(capacity["memory"], "16331512Ki");
        assert_eq!(capacity["ephemeral-storage"], "100Gi");
        assert_eq!(capacity["pods"], "110");
        let allocatable = machine.allocatable();
        assert_eq!(allocatable["memory"], "16229112Ki");
        assert_eq!(allocatable["cpu"], "2");
        // 10% as upstream's float32 percentage computes it.
        assert_eq!(allocatable["ephemeral-storage"], "96636764000");
        let for_pods = machine.allocatable_for_pods();
        assert_eq!(for_pods.cpu.map(Quantity::value), Some(2));
        assert_eq!(
            for_pods.memory.map(Quantity::value),
            Some(16_229_112 * 1024)
        );
    }

    #[test]
    fn this_machine_measures() {
        let machine = Machine::of_this_host(&std::env::temp_dir().join("petset-no-such-dir"));
        assert!(machine.cpus >= 1);
        assert!(machine.memory_bytes > 0);
        assert!(machine.ephemeral_storage_bytes.is_some_and(|b| b > 0));
    }
}
