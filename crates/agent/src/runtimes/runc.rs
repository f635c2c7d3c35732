//! Pods as runc containers (`petset_runtime::pods`), images from the node's image store.
//! Probes over the network run as `petset probe` inside the pod's network namespace (`ip netns
//! exec`), so nothing outside the pod is dialed.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use petset_runtime::images::{Image, ImageStore};
use petset_runtime::pods::{ContainerConfig, Runtime, RuntimeError, SandboxConfig};

use crate::runtime::{Adopted, PodRuntime, ProbeCheck, StartedContainer};

/// A started container, and its end as a future: waiting for it blocks (on `runc run`, or on
/// its shim's lock), so a thread of its own waits for each container.
fn waited(mut child: petset_runtime::pods::RunningContainer) -> StartedContainer {
    let stdin = child.stdin.take();
    let (exited, exit) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let code = child.wait().ok().flatten();
        let _ = exited.send(code);
    });
    StartedContainer {
        stdin,
        exit: Box::pin(async move { exit.await.ok().flatten() }),
    }
}

pub struct RuncRuntime {
    runtime: Arc<Runtime>,
    images: ImageStore,
    /// petset's own binary, whose `probe` runs the TCP and HTTP probes: found once, at the
    /// node's start, so that a binary replaced on disk while the node runs (an upgrade) is
    /// still found at its path (the running one's would read "… (deleted)").
    petset: Option<std::path::PathBuf>,
}

impl RuncRuntime {
    pub fn new(runtime: Arc<Runtime>, images: ImageStore, petset: Option<PathBuf>) -> Self {
        Self {
            runtime,
            images,
            petset,
        }
    }
}

impl PodRuntime for RuncRuntime {
    fn image(&self, reference: &str) -> Result<Image, String> {
        self.images.resolve(reference).map_err(|e| e.to_string())
    }

    fn create_sandbox(&self, config: &SandboxConfig) -> Result<Option<Ipv4Addr>, RuntimeError> {
        self.runtime.create_sandbox(config)
    }

    fn start(
        &self,
        pod: &str,
        config: &ContainerConfig,
        log: &Path,
    ) -> Result<StartedContainer, RuntimeError> {
        let child = self.runtime.start(pod, config, log)?;
        Ok(waited(child))
    }

    fn adopt(&self, pod: &str, container: &str) -> Option<Adopted> {
        let (child, log) = self.runtime.adopt(pod, container)?;
        // The run's number is its log file's name (`log_path`).
        let attempt = log.file_stem()?.to_str()?.parse().ok()?;
        Some(Adopted {
            started: waited(child),
            attempt,
        })
    }

    fn signal(&self, pod: &str, container: &str, signal: &str) -> Result<(), RuntimeError> {
        self.runtime.signal(pod, container, signal)
    }

    fn kill_all(&self, pod: &str) -> Result<(), RuntimeError> {
        // Every container the pod has made (its directory is there from before its start);
        // one that is not running makes `runc kill` fail, which is no error here.
        let containers = self.runtime.pod_dir(pod).join("containers");
        let names = std::fs::read_dir(&containers)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for name in names {
            let _ = self.runtime.signal(pod, &name, "KILL");
        }
        Ok(())
    }

    fn remove_sandbox(&self, pod: &str) -> Result<(), RuntimeError> {
        self.runtime.remove_sandbox(pod)
    }

    fn pods(&self) -> Vec<String> {
        self.runtime.pods()
    }

    fn pod_dir(&self, pod: &str) -> PathBuf {
        self.runtime.pod_dir(pod)
    }

    fn log_path(&self, pod: &str, container: &str, attempt: u32) -> PathBuf {
        self.runtime.log_path(pod, container, attempt)
    }

    fn probe_command(
        &self,
        pod: &str,
        container: &str,
        check: &ProbeCheck,
    ) -> Result<std::process::Command, String> {
        let (protocol, port, path) = match check {
            ProbeCheck::Exec(argv) => {
                return Ok(self.runtime.exec_command(pod, container, argv, false));
            }
            ProbeCheck::Tcp(port) => ("tcp", port, None),
            ProbeCheck::Http { port, path } => ("http", port, Some(path)),
        };
        // The TCP and HTTP probers are petset's own `probe` subcommand.
        let petset = self
            .petset
            .clone()
            .ok_or_else(|| "the prober cannot find petset's own binary".to_string())?;
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", &Runtime::netns_name(pod)])
            .arg(petset)
            .args(["probe", protocol, &port.to_string()])
            .args(path);
        Ok(command)
    }
}
