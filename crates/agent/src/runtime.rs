//! The seam between the pod worker (`crate::pods`) and what runs containers: the worker decides
//! what runs when, a `PodRuntime` carries it out. The runc node's runtime is
//! `crate::runtimes::runc`; tests use fakes of their own.
//!
//! Every method blocks (processes, mounts, files): the worker calls them on tokio's blocking
//! pool, and waits for each call to return before it acts again, so a call in flight when the
//! node stops is finished, and then undone, by the worker that made it.

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use petset_runtime::images::Image;
use petset_runtime::pods::{ContainerConfig, RuntimeError, SandboxConfig};

/// The end of a started container: its exit code (`None` when killed by a signal) once it
/// exits.
pub type Exit = Pin<Box<dyn Future<Output = Option<i32>> + Send>>;

/// A container the runtime started.
pub struct StartedContainer {
    /// Its stdin, when it was started with one (`stdin: true`).
    pub stdin: Option<std::process::ChildStdin>,
    pub exit: Exit,
}

/// What a probe checks, as the runtime runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeCheck {
    /// A command run in the container.
    Exec(Vec<String>),
    /// A TCP connection to this port of the pod.
    Tcp(i32),
    /// An HTTP GET of this path on this port of the pod.
    Http { port: i32, path: String },
}

/// What runs a node's pods. Pods are named by their sandbox id (`crate::pods::sandbox_id_of`).
pub trait PodRuntime: Send + Sync + 'static {
    /// The image a container names, from the node's store; the error says why it is not there.
    fn image(&self, reference: &str) -> Result<Image, String>;

    /// Makes the pod's sandbox (a no-op when it exists) and returns its address, if it has one.
    fn create_sandbox(&self, config: &SandboxConfig) -> Result<Option<Ipv4Addr>, RuntimeError>;

    /// Starts a container of the pod, returning once its process runs; its output goes to
    /// `log`. A container of the same name is removed first.
    fn start(
        &self,
        pod: &str,
        config: &ContainerConfig,
        log: &Path,
    ) -> Result<StartedContainer, RuntimeError>;

    /// Sends `signal` (`TERM`, `KILL`) to a container's main process.
    fn signal(&self, pod: &str, container: &str, signal: &str) -> Result<(), RuntimeError>;

    /// Removes every container of the pod (killing what still runs) and its sandbox.
    fn remove_sandbox(&self, pod: &str) -> Result<(), RuntimeError>;

    /// The pods that have a sandbox here, running or not.
    fn pods(&self) -> Vec<String>;

    /// The pod's own directory (its volumes that live with the pod: emptyDir, configMap…).
    fn pod_dir(&self, pod: &str) -> PathBuf;

    /// The log file of one run (`attempt`) of a container.
    fn log_path(&self, pod: &str, container: &str, attempt: u32) -> PathBuf;

    /// The command that runs a probe of a running container; its exit status is the result,
    /// its output the prober's message.
    fn probe_command(
        &self,
        pod: &str,
        container: &str,
        check: &ProbeCheck,
    ) -> Result<std::process::Command, String>;
}
