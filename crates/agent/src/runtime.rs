//! The seam between the pod worker (`crate::pods`) and what runs containers: the worker decides
//! what runs when, a `PodRuntime` carries it out. The runc node's runtime is
//! `crate::runtimes::runc`, the simulated node's `crate::runtimes::simulated`; tests use fakes
//! of their own. The hooks with defaults (`needs`, `readiness`, `start_init`, …) are where a
//! runtime without real containers differs; the defaults are the runc node's behaviour.
//!
//! Every method blocks (processes, mounts, files): the worker calls them on tokio's blocking
//! pool, and waits for each call to return before it acts again, so a call in flight when the
//! node stops is finished, and then undone, by the worker that made it.

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use k8s_openapi::api::core::v1::{Container, Pod};
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

/// A container an earlier run of the node started and left running, taken over.
pub struct Adopted {
    pub started: StartedContainer,
    /// The number of its run (its log file's).
    pub attempt: u32,
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

/// What the worker does for a runtime's pods around its calls. A runtime without real
/// containers (the simulated node, like kwok) skips what would touch the machine or resolve
/// what no process reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerNeeds {
    /// Make each volume's directory and files (claims, emptyDir, configMap, secret…); without
    /// them containers get no mounts.
    pub volumes: bool,
    /// Resolve each container's environment and command line (a missing ConfigMap key is
    /// `CreateContainerConfigError`); without it containers start with none.
    pub environment: bool,
    /// Run the containers' probes; without them every probe counts as passed.
    pub probes: bool,
    /// Write the pod's status once its sandbox has an address, before any container starts
    /// (so a first process that looks itself up finds it); without it the first status write
    /// is the one after the starts.
    pub status_before_start: bool,
    /// Record the kubelet's events (Pulled, Created, Started, Killing…) about its pods.
    pub events: bool,
}

impl WorkerNeeds {
    /// Everything, for containers that really run.
    pub const ALL: Self = Self {
        volumes: true,
        environment: true,
        probes: true,
        status_before_start: true,
        events: true,
    };
}

/// Whether a running container that passes its probes is ready, as the runtime has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// As its probes say.
    AsProbed,
    /// Never, whatever its probes say.
    Never,
    /// Not before this instant.
    NotBefore(tokio::time::Instant),
}

/// What runs a node's pods. Pods are named by their sandbox id (`crate::pods::sandbox_id_of`).
pub trait PodRuntime: Send + Sync + 'static {
    /// The image a container names, from the node's store; the error says why it is not there.
    fn image(&self, reference: &str) -> Result<Image, String>;

    /// Makes the pod's sandbox (a no-op when it exists) and returns its address, if it has one.
    fn create_sandbox(&self, config: &SandboxConfig) -> Result<Option<Ipv4Addr>, RuntimeError>;

    /// As `create_sandbox`, for a pod whose status already names `previous` as its address (a
    /// worker after a restart of petset). A runtime whose addresses are bookkeeping keeps it;
    /// a real network hands out what its bridge has.
    fn create_sandbox_keeping(
        &self,
        config: &SandboxConfig,
        previous: Option<Ipv4Addr>,
    ) -> Result<Option<Ipv4Addr>, RuntimeError> {
        let _ = previous;
        self.create_sandbox(config)
    }

    /// Starts a container of the pod, returning once its process runs; its output goes to
    /// `log`. A container of the same name is removed first.
    fn start(
        &self,
        pod: &str,
        config: &ContainerConfig,
        log: &Path,
    ) -> Result<StartedContainer, RuntimeError>;

    /// As `start`, for an init container (which must run to completion before the app
    /// containers start).
    fn start_init(
        &self,
        pod: &str,
        config: &ContainerConfig,
        log: &Path,
    ) -> Result<StartedContainer, RuntimeError> {
        self.start(pod, config, log)
    }

    /// A container of the pod that an earlier run of the node started and that is kept still
    /// (it may have ended since: its exit then comes at once), to take over instead of starting
    /// it again; `None` when there is none. The default has none: containers end with the node.
    fn adopt(&self, pod: &str, container: &str) -> Option<Adopted> {
        let _ = (pod, container);
        None
    }

    /// Sends `signal` (`TERM`, `KILL`) to a container's main process.
    fn signal(&self, pod: &str, container: &str, signal: &str) -> Result<(), RuntimeError>;

    /// Kills (SIGKILL) every container of the pod at once, leaving them and the sandbox for
    /// the pod's worker to remove: the node's fence (`crate::fence`) when it rises.
    fn kill_all(&self, pod: &str) -> Result<(), RuntimeError>;

    /// Removes every container of the pod (killing what still runs) and its sandbox.
    fn remove_sandbox(&self, pod: &str) -> Result<(), RuntimeError>;

    /// The pods that have a sandbox here, running or not.
    fn pods(&self) -> Vec<String>;

    /// The pod's own directory (its volumes that live with the pod: emptyDir, configMap…).
    fn pod_dir(&self, pod: &str) -> PathBuf;

    /// The log file of one run (`attempt`) of a container.
    fn log_path(&self, pod: &str, container: &str, attempt: u32) -> PathBuf;

    /// The command that runs a probe of a running container; its exit status is the result,
    /// its output the prober's message. The default runs none (the probe fails with the
    /// error): for runtimes whose `needs` say the worker runs no probes.
    fn probe_command(
        &self,
        pod: &str,
        container: &str,
        check: &ProbeCheck,
    ) -> Result<std::process::Command, String> {
        let _ = (pod, container, check);
        Err("this node runs no probes".to_string())
    }

    /// What the worker does around this runtime's calls.
    fn needs(&self) -> WorkerNeeds {
        WorkerNeeds::ALL
    }

    /// Whether a running app container of `pod`, running since `since`, may be ready. Pure:
    /// the worker asks at every status it builds, so a change of the pod takes effect at once.
    fn readiness(
        &self,
        pod: &Pod,
        container: &Container,
        since: tokio::time::Instant,
    ) -> Readiness {
        let _ = (pod, container, since);
        Readiness::AsProbed
    }

    /// Told when an app container of `pod` (sandbox `id`) has started: a runtime that runs
    /// nothing may end it here as its process would (the simulated node completes the
    /// containers of pods that do not restart them, as kwok's default stages do).
    fn app_container_started(&self, pod: &Pod, id: &str, container: &str) {
        let _ = (pod, id, container);
    }

    /// The `containerID` the pod's status gives a container of the pod.
    fn container_id(&self, pod: &str, container: &str) -> String {
        format!("runc://{pod}-{container}")
    }
}
