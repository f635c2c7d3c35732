//! The real node (`petset up --node-runtime runc`): runs every pod bound to it as runc
//! containers in a namespace sandbox (see `petset_runtime::pods`), and reports their state as
//! the kubelet does.
//!
//! One task per pod owns everything about it: images, volumes, the sandbox, its containers and
//! their restarts, and its termination. **At most one:** a pod's containers run only from its
//! task, a container is removed before its name is started again, and on start the node stops
//! and removes whatever an earlier run of petset left before it runs anything (pods then start
//! again, with their restart counts kept in their status).
//!
//! What the pod's containers go through is told as the kubelet tells it: its statuses and
//! conditions, and its events (`crate::kubelet_events`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Probe, Secret,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use petset_runtime::images::{Image, ImageStore};
use petset_runtime::network::NetworkConfig;
use petset_runtime::pods::{ContainerConfig, Mount, Runtime, SandboxConfig};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::downward::{Allocatable, field_value, resource_value};
use crate::kubelet_events::{
    self as events, ContainerOf, KubeletEvents, ProbeKind, ProbeTarget, reason,
};
use crate::machine::Machine;
use crate::node::{self, Kind, NodeFacts};
use crate::probes::ProbeState;
use crate::quantity::Quantity;
use crate::start_error::{START_ERROR_EXIT_CODE, START_ERROR_REASON, runc_start_error};

/// Where the runc node keeps its state, and where images come from.
#[derive(Debug, Clone)]
pub struct Config {
    pub runtime_dir: PathBuf,
    pub image_store: PathBuf,
    /// The pod network; without one, pods share nothing but their own loopback.
    pub network: Option<NetworkConfig>,
    /// The API server's address, the one address off the bridge the service proxy relays to
    /// (the `kubernetes` Service).
    pub api_address: Option<std::net::SocketAddr>,
}

struct Shared {
    stdins: Stdins,
    client: Client,
    runtime: Arc<Runtime>,
    images: ImageStore,
    /// The nameserver written into pods' resolv.conf.
    dns: Option<std::net::Ipv4Addr>,
    events: KubeletEvents,
    /// What stands in for the limits containers do not set (the downward API).
    allocatable: Allocatable,
}

/// This machine's runc node: opened once (which checks that containers can run here), then
/// shared by its pod tasks and by the API server's logs and exec.
pub struct RuncNode {
    runtime: Arc<Runtime>,
    config: Config,
    stdins: Stdins,
}

/// The stdin pipes of running containers that have one (`stdin: true`), by container id.
type Stdins = Arc<Mutex<HashMap<String, std::process::ChildStdin>>>;

/// What `kubectl attach` connects to: a running container's output and, when it has one, its
/// stdin.
pub struct Attached {
    /// The output of the container's current run.
    pub log: PathBuf,
    /// For a `stdinOnce` container (`kubectl run -i`), the output is sent from its start, so
    /// what the container printed before the attach is not lost; otherwise only what follows.
    pub from_start: bool,
    pub stdin: Option<Box<dyn std::io::Write + Send>>,
    /// Whether the container still runs.
    pub running: Box<dyn Fn() -> bool + Send + Sync>,
}

/// Writes to a container's stdin pipe kept by the node, so later attaches reach it too.
struct SharedStdin {
    stdins: Stdins,
    key: String,
}

impl std::io::Write for SharedStdin {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut stdins = self.stdins.lock().unwrap_or_else(|e| e.into_inner());
        match stdins.get_mut(&self.key) {
            Some(pipe) => pipe.write(data),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl RuncNode {
    /// Opens the node's runtime; the error says what this machine lacks.
    pub fn open(config: &Config) -> Result<Self, String> {
        let mut runtime = Runtime::open(&config.runtime_dir).map_err(|e| e.to_string())?;
        if let Some(network) = &config.network {
            runtime = runtime
                .with_network(network.clone())
                .map_err(|e| e.to_string())?;
        }
        Ok(Self {
            runtime: Arc::new(runtime),
            config: config.clone(),
            stdins: Stdins::default(),
        })
    }

    /// Attaches to a running container of the pod with this uid; `None` when this node runs
    /// no such container. `stdin_once` hands the stdin over for good: it closes when the
    /// attach ends, as upstream's `stdinOnce`.
    pub fn attach(&self, uid: &str, container: &str, stdin_once: bool) -> Option<Attached> {
        let id = sandbox_id_of(uid);
        // A `kubectl run -i` container that ended before the attach arrived still gives its
        // output (the attach then ends at once) rather than an error and a fallback to logs.
        if self.runtime.status(&id, container).as_deref() != Some("running") && !stdin_once {
            return None;
        }
        let log = self.log_files(uid, container)?.pop()?;
        let key = format!("{id}-{container}");
        let stdin: Option<Box<dyn std::io::Write + Send>> = if stdin_once {
            let mut stdins = self.stdins.lock().unwrap_or_else(|e| e.into_inner());
            stdins
                .remove(&key)
                .map(|pipe| Box::new(pipe) as Box<dyn std::io::Write + Send>)
        } else {
            let present = self
                .stdins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&key);
            present.then(|| {
                Box::new(SharedStdin {
                    stdins: self.stdins.clone(),
                    key: key.clone(),
                }) as Box<dyn std::io::Write + Send>
            })
        };
        let runtime = self.runtime.clone();
        let container = container.to_string();
        Some(Attached {
            log,
            from_start: stdin_once,
            stdin,
            running: Box::new(move || {
                runtime.status(&id, &container).as_deref() == Some("running")
            }),
        })
    }

    /// Where pods find the cluster DNS: the bridge's address, when there is a pod network.
    pub fn dns_address(&self) -> Option<std::net::Ipv4Addr> {
        self.config.network.as_ref().map(|n| n.cidr.gateway())
    }

    /// Whether `address` is a pod's on this node's bridge, the only pod addresses petset dials.
    pub fn owns_pod_address(&self, address: std::net::IpAddr) -> bool {
        match (address, &self.config.network) {
            (std::net::IpAddr::V4(v4), Some(network)) => {
                network.cidr.contains(v4) && v4 != network.cidr.gateway()
            }
            _ => false,
        }
    }

    /// The log files of a container of the pod with this uid, oldest run first; `None` when
    /// this node has no such pod.
    pub fn log_files(&self, uid: &str, container: &str) -> Option<Vec<PathBuf>> {
        let dir = self.runtime.pod_dir(&sandbox_id_of(uid));
        if !dir.is_dir() {
            return None;
        }
        let mut runs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir.join("logs").join(container))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let path = e.path();
                        let run = path.file_stem()?.to_str()?.parse().ok()?;
                        Some((run, path))
                    })
                    .collect()
            })
            .unwrap_or_default();
        runs.sort();
        Some(runs.into_iter().map(|(_, path)| path).collect())
    }

    /// The command that runs `argv` in a running container of the pod with this uid; `None`
    /// when this node has no such container.
    pub fn exec_command(
        &self,
        uid: &str,
        container: &str,
        argv: &[String],
        tty: bool,
    ) -> Option<std::process::Command> {
        let id = sandbox_id_of(uid);
        if self.runtime.status(&id, container).as_deref() != Some("running") {
            return None;
        }
        Some(self.runtime.exec_command(&id, container, argv, tty))
    }

    /// A clean stop of the node (petset stopping): every container gets TERM, then KILL after
    /// `grace`, and every sandbox is removed, so nothing outlives petset. After a crash
    /// instead, the next start removes what was left before it runs anything.
    pub fn shutdown(&self, grace: Duration) {
        let runtime = &self.runtime;
        let containers: Vec<(String, String)> = runtime
            .pods()
            .into_iter()
            .flat_map(|pod| {
                let names: Vec<String> =
                    std::fs::read_dir(runtime.pod_dir(&pod).join("containers"))
                        .map(|d| {
                            d.filter_map(Result::ok)
                                .map(|e| e.file_name().to_string_lossy().into_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                names.into_iter().map(move |name| (pod.clone(), name))
            })
            .collect();
        for (pod, name) in &containers {
            let _ = runtime.signal(pod, name, "TERM");
        }
        let deadline = Instant::now()
            .checked_add(grace)
            .unwrap_or_else(|| far_future().into_std());
        while Instant::now() < deadline
            && containers
                .iter()
                .any(|(pod, name)| runtime.status(pod, name).as_deref() == Some("running"))
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pod in runtime.pods() {
            if let Err(error) = runtime.remove_sandbox(&pod) {
                tracing::warn!(%error, pod, "could not remove a pod on shutdown");
            }
        }
        if let Err(error) = runtime.release() {
            tracing::warn!(%error, "could not release the runtime directory");
        }
    }
}

/// Runs the node until the task is aborted.
pub async fn run(client: Client, node_name: String, node: Arc<RuncNode>) {
    let runtime = node.runtime.clone();
    let images = match ImageStore::open(&node.config.image_store) {
        Ok(images) => images,
        Err(error) => {
            tracing::error!(%error, "the runc node cannot open the image store");
            return;
        }
    };
    for leftover in runtime.pods() {
        tracing::info!(pod = %leftover, "stopping what an earlier run left");
        if let Err(error) = runtime.remove_sandbox(&leftover) {
            tracing::warn!(%error, pod = %leftover, "could not remove a leftover pod");
        }
    }
    let machine = Machine::of_this_host(&node.config.runtime_dir);
    let pod_cidr = node
        .config
        .network
        .as_ref()
        .map_or_else(|| "10.244.0.0/16".to_string(), |n| n.cidr.to_string());
    let facts = NodeFacts::of_machine(pod_cidr, &machine);
    if let Err(error) = node::register(&client, &node_name, Kind::Runc, &facts).await {
        tracing::warn!(%error, node = %node_name, "could not register the node");
    }
    let mut helpers = tokio::task::JoinSet::new();
    helpers.spawn(node::keep_lease(client.clone(), node_name.clone()));
    if node
        .config
        .network
        .as_ref()
        .is_some_and(|n| n.services.is_some())
    {
        let dialer = node.clone();
        let api = node.config.api_address;
        helpers.spawn(crate::services::run(
            client.clone(),
            Arc::new(move |address: std::net::SocketAddr| {
                dialer.owns_pod_address(address.ip()) || Some(address) == api
            }),
        ));
    }
    let shared = Arc::new(Shared {
        stdins: node.stdins.clone(),
        client: client.clone(),
        runtime,
        images,
        dns: node.dns_address(),
        events: KubeletEvents::new(client.clone(), &node_name),
        allocatable: machine.allocatable_for_pods(),
    });
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node_name}"));
    let mut events = watcher(pods, config).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    while let Some(event) = events.next().await {
        let (pod, present) = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, true),
            Ok(watcher::Event::Delete(pod)) => (pod, false),
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "runc node watch error");
                continue;
            }
        };
        let uid = pod.uid().unwrap_or_default();
        workers.retain(|_, sender| !sender.is_closed());
        // Finished pod tasks leave their results in the set until collected.
        while helpers.try_join_next().is_some() {}
        match workers.get(&uid) {
            Some(sender) => {
                let _ = sender.send(present.then_some(pod));
            }
            None if present => {
                let (sender, receiver) = watch::channel(Some(pod));
                workers.insert(uid, sender);
                helpers.spawn(pod_worker(shared.clone(), receiver));
            }
            None => {}
        }
    }
}

/// A short, runc-safe id for a pod.
/// A deadline as late as the clock can represent: about thirty years from now.
fn far_future() -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    [30 * 365 * 24 * 3600, 24 * 3600, 3600]
        .into_iter()
        .find_map(|seconds| now.checked_add(Duration::from_secs(seconds)))
        .unwrap_or(now)
}

fn sandbox_id(pod: &Pod) -> String {
    sandbox_id_of(&pod.uid().unwrap_or_default())
}

fn sandbox_id_of(uid: &str) -> String {
    let uid: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    format!("p{uid}")
}

/// What the node knows of one container of the pod.
#[derive(Debug, Clone, Default)]
struct ContainerRecord {
    restart_count: i32,
    attempt: u32,
    state: Value,
    last_state: Value,
    /// When the next restart may happen (back-off).
    restart_at: Option<Instant>,
    back_off: Duration,
    running: bool,
    started: Option<Instant>,
    image_id: String,
    startup: ProbeState,
    readiness: ProbeState,
    liveness: ProbeState,
}

struct PodRun {
    shared: Arc<Shared>,
    pod: Pod,
    id: String,
    start_time: String,
    init_done: bool,
    init: BTreeMap<String, ContainerRecord>,
    containers: BTreeMap<String, ContainerRecord>,
    images: HashMap<String, Image>,
    mounts: HashMap<String, Vec<Mount>>,
    exits: mpsc::UnboundedSender<(String, u32, Option<i32>)>,
    written: Value,
    /// The pod's address on the node's bridge, once its sandbox has one.
    pod_ip: Option<std::net::Ipv4Addr>,
    /// Images that were not in the store, by reference: the pull back-off.
    pulls: HashMap<String, PullBackOff>,
}

/// An image the node could not find, retried with a back-off as the kubelet retries pulls.
#[derive(Debug, Clone)]
struct PullBackOff {
    delay: Duration,
    until: Instant,
    error: String,
}

const MAX_BACK_OFF: Duration = Duration::from_secs(300);
const FIRST_BACK_OFF: Duration = Duration::from_secs(10);

async fn pod_worker(shared: Arc<Shared>, mut updates: watch::Receiver<Option<Pod>>) {
    let Some(pod) = updates.borrow_and_update().clone() else {
        return;
    };
    let (exits, mut exited) = mpsc::unbounded_channel();
    let restart_counts = |statuses: Option<&Vec<k8s_openapi::api::core::v1::ContainerStatus>>| {
        statuses
            .map(|s| {
                s.iter()
                    .map(|c| {
                        (
                            c.name.clone(),
                            ContainerRecord {
                                restart_count: c.restart_count,
                                // Log files of earlier runs stay; new runs follow them.
                                attempt: c.restart_count.max(0) as u32 + 1,
                                ..ContainerRecord::default()
                            },
                        )
                    })
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default()
    };
    let status = pod.status.clone().unwrap_or_default();
    let mut run = PodRun {
        id: sandbox_id(&pod),
        start_time: status
            .start_time
            .as_ref()
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(node::now),
        init_done: false,
        init: restart_counts(status.init_container_statuses.as_ref()),
        containers: restart_counts(status.container_statuses.as_ref()),
        images: HashMap::new(),
        mounts: HashMap::new(),
        exits,
        written: Value::Null,
        pod_ip: None,
        pulls: HashMap::new(),
        shared,
        pod,
    };
    let mut prepared = false;
    loop {
        if run.pod.metadata.deletion_timestamp.is_some() {
            run.terminate(&mut exited, true).await;
            return;
        }
        if !prepared {
            match run.prepare().await {
                Ok(()) => {
                    prepared = true;
                    // The address is known before any process runs, so a first process that
                    // looks itself (or its namespace) up finds it.
                    run.write_status().await;
                }
                Err(waiting) => {
                    run.write_waiting(&waiting).await;
                    // The next attempt is in 5 s, or sooner for a change of the pod other than
                    // its status (the node's own status writes come back as updates too; as
                    // the kubelet, it does not retry for those, so each state is seen).
                    let retry = tokio::time::Instant::now() + Duration::from_secs(5);
                    loop {
                        tokio::select! {
                            latest = next_pod(&mut updates) => match latest {
                                Some(pod) => {
                                    let changed = pod.spec != run.pod.spec
                                        || pod.metadata.deletion_timestamp.is_some();
                                    run.pod = pod;
                                    if changed {
                                        break;
                                    }
                                }
                                None => { run.terminate(&mut exited, false).await; return; }
                            },
                            _ = tokio::time::sleep_until(retry) => break,
                        }
                    }
                    continue;
                }
            }
        }
        run.advance().await;
        run.probe().await;
        run.write_status().await;
        let wake = run.next_restart();
        tokio::select! {
            latest = next_pod(&mut updates) => match latest {
                Some(pod) => run.pod = pod,
                None => { run.terminate(&mut exited, false).await; return; }
            },
            Some((name, attempt, code)) = exited.recv() => run.exited(&name, attempt, code),
            _ = sleep_until(wake) => {}
        }
    }
}

/// The pod's next version; `None` once it is gone from the API (or the node stops).
async fn next_pod(updates: &mut watch::Receiver<Option<Pod>>) -> Option<Pod> {
    updates.changed().await.ok()?;
    updates.borrow_and_update().clone()
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep(at.saturating_duration_since(Instant::now())).await,
        None => std::future::pending().await,
    }
}

/// Why a pod cannot start yet: the waiting reason and message of the container it concerns
/// (`None`: every container waits for it).
struct Waiting {
    reason: String,
    message: Option<String>,
    container: Option<String>,
}

impl Waiting {
    fn all(reason: &str, message: String) -> Self {
        Self {
            reason: reason.into(),
            message: Some(message),
            container: None,
        }
    }
}

impl PodRun {
    fn spec(&self) -> k8s_openapi::api::core::v1::PodSpec {
        self.pod.spec.clone().unwrap_or_default()
    }

    fn namespace(&self) -> String {
        self.pod.namespace().unwrap_or_default()
    }

    fn hostname(&self) -> String {
        let spec = self.spec();
        let name = spec.hostname.unwrap_or_else(|| self.pod.name_any());
        name.chars().take(63).collect()
    }

    /// Images, volumes and the sandbox.
    async fn prepare(&mut self) -> Result<(), Waiting> {
        let spec = self.spec();
        let init_names: Vec<String> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        for container in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let init = init_names.contains(&container.name);
            let image = self.image_of(container, init)?;
            self.images.insert(container.name.clone(), image);
        }
        let volumes = self.volumes(&spec).await?;
        for container in spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
        {
            let mut mounts = Vec::new();
            for mount in container.volume_mounts.iter().flatten() {
                let Some(source) = volumes.get(&mount.name) else {
                    return Err(Waiting {
                        reason: "CreateContainerConfigError".into(),
                        message: Some(format!("volume {:?} is not defined in the pod", mount.name)),
                        container: Some(container.name.clone()),
                    });
                };
                let source = match mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
                    Some(sub) if !sub.split('/').any(|c| c == "..") => {
                        let path = source.0.join(sub);
                        let _ = std::fs::create_dir_all(&path);
                        path
                    }
                    _ => source.0.clone(),
                };
                mounts.push(Mount {
                    source,
                    destination: mount.mount_path.clone(),
                    read_only: mount.read_only.unwrap_or(false) || volumes[&mount.name].1,
                });
            }
            self.mounts.insert(container.name.clone(), mounts);
        }
        let namespace = self.namespace();
        let hostname = self.hostname();
        let host_names = match &spec.subdomain {
            Some(sub) => format!("{hostname}.{sub}.{namespace}.svc.cluster.local\t{hostname}"),
            None => hostname.clone(),
        };
        // Without a pod network there is no cluster DNS to point at: the search path stays, so
        // names fail the way they would with an unreachable nameserver.
        let nameserver = self
            .shared
            .dns
            .map_or_else(|| "127.0.0.1".to_string(), |a| a.to_string());
        let resolv_conf = format!(
            "search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver {nameserver}\noptions ndots:5\n"
        );
        let config = SandboxConfig {
            id: self.id.clone(),
            hostname,
            host_names,
            resolv_conf,
        };
        let shared = self.shared.clone();
        self.pod_ip = tokio::task::spawn_blocking(move || shared.runtime.create_sandbox(&config))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|message| {
                Waiting::all(
                    "ContainerCreating",
                    format!("failed to create the pod sandbox: {message}"),
                )
            })?;
        Ok(())
    }

    /// The container's image from the node's store. An image that is not there is retried as
    /// the kubelet retries a pull: `ErrImagePull` at each attempt, `ImagePullBackOff` between
    /// attempts, the back-off doubling from 10 s to 5 min; so a pod starts once its image has
    /// been imported.
    fn image_of(&mut self, container: &Container, init: bool) -> Result<Image, Waiting> {
        let reference = container.image.clone().unwrap_or_default();
        let of = Some(ContainerOf {
            name: &container.name,
            init,
        });
        let now = Instant::now();
        let waiting = |reason: &str, message: String| Waiting {
            reason: reason.into(),
            message: Some(message),
            container: Some(container.name.clone()),
        };
        if let Some(back_off) = self.pulls.get(&reference)
            && now < back_off.until
        {
            let message = events::back_off_pulling(&reference);
            self.event(of, events::NORMAL, reason::BACK_OFF, message);
            let message = events::error("ImagePullBackOff");
            self.event(of, events::WARNING, reason::FAILED, message);
            return Err(waiting(
                "ImagePullBackOff",
                events::back_off_pulling_status(&reference, &back_off.error),
            ));
        }
        match self.shared.images.resolve(&reference) {
            Ok(image) => {
                self.pulls.remove(&reference);
                Ok(image)
            }
            Err(error) => {
                let error = format!(
                    "failed to pull and unpack image \"{reference}\": {error} (this node pulls from no registry; import it with petset image import)"
                );
                let message = events::failed_to_pull(&reference, &error);
                self.event(of, events::WARNING, reason::FAILED, message);
                let message = events::error("ErrImagePull");
                self.event(of, events::WARNING, reason::FAILED, message);
                let delay = self
                    .pulls
                    .get(&reference)
                    .map_or(FIRST_BACK_OFF, |b| (b.delay * 2).min(MAX_BACK_OFF));
                self.pulls.insert(
                    reference.clone(),
                    PullBackOff {
                        delay,
                        until: now + delay,
                        error: error.clone(),
                    },
                );
                Err(waiting("ErrImagePull", error))
            }
        }
    }

    /// Each volume's directory on this machine, and whether it is read-only.
    async fn volumes(
        &self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
    ) -> Result<HashMap<String, (PathBuf, bool)>, Waiting> {
        let namespace = self.namespace();
        let pod_dir = self.shared.runtime.pod_dir(&self.id);
        let mut volumes = HashMap::new();
        for volume in spec.volumes.iter().flatten() {
            let name = volume.name.clone();
            // As the kubelet's volume manager: the pod waits in ContainerCreating, and the
            // reason is a FailedMount event.
            let config_error = |message: String| {
                let message = events::failed_mount(&name, &message);
                self.event(None, events::WARNING, reason::FAILED_MOUNT, message);
                Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                    container: None,
                }
            };
            let path = if let Some(claim) = &volume.persistent_volume_claim {
                let claims: Api<PersistentVolumeClaim> =
                    Api::namespaced(self.shared.client.clone(), &namespace);
                let bound = claims
                    .get_opt(&claim.claim_name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|c| c.spec.and_then(|s| s.volume_name));
                let Some(volume_name) = bound else {
                    return Err(Waiting::all(
                        "ContainerCreating",
                        format!(
                            "persistentvolumeclaim \"{}\" is not bound",
                            claim.claim_name
                        ),
                    ));
                };
                let volumes_api: Api<PersistentVolume> = Api::all(self.shared.client.clone());
                let host_path = volumes_api
                    .get_opt(&volume_name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|v| v.spec)
                    .and_then(|s| s.host_path.map(|h| h.path).or(s.local.map(|l| l.path)));
                let Some(host_path) = host_path else {
                    return Err(config_error(format!(
                        "persistentvolume {volume_name:?} has no local path this node can mount"
                    )));
                };
                let path = PathBuf::from(host_path);
                let _ = std::fs::create_dir_all(&path);
                (path, claim.read_only.unwrap_or(false))
            } else if let Some(host) = &volume.host_path {
                let path = PathBuf::from(&host.path);
                if matches!(host.type_.as_deref(), Some("DirectoryOrCreate")) {
                    let _ = std::fs::create_dir_all(&path);
                }
                (path, false)
            } else if volume.empty_dir.is_some() {
                let path = pod_dir.join("volumes").join("empty-dir").join(&name);
                std::fs::create_dir_all(&path).map_err(|e| config_error(e.to_string()))?;
                (path, false)
            } else if let Some(source) = &volume.config_map {
                let maps: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &namespace);
                let data = match maps.get_opt(&source.name).await.ok().flatten() {
                    Some(map) => map
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect(),
                    None if source.optional == Some(true) => BTreeMap::new(),
                    None => {
                        return Err(config_error(format!(
                            "configmap \"{}\" not found",
                            source.name
                        )));
                    }
                };
                let items = source.items.clone().unwrap_or_default();
                let items: Vec<(String, String)> =
                    items.into_iter().map(|i| (i.key, i.path)).collect();
                (
                    write_files(&pod_dir, "configmap", &name, &data, &items)
                        .map_err(config_error)?,
                    true,
                )
            } else if let Some(source) = &volume.secret {
                let secret_name = source.secret_name.clone().unwrap_or_default();
                let secrets: Api<Secret> = Api::namespaced(self.shared.client.clone(), &namespace);
                let data = match secrets.get_opt(&secret_name).await.ok().flatten() {
                    Some(secret) => secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect(),
                    None if source.optional == Some(true) => BTreeMap::new(),
                    None => {
                        return Err(config_error(format!("secret \"{secret_name}\" not found")));
                    }
                };
                let items: Vec<(String, String)> = source
                    .items
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| (i.key, i.path))
                    .collect();
                (
                    write_files(&pod_dir, "secret", &name, &data, &items).map_err(config_error)?,
                    true,
                )
            } else if let Some(source) = &volume.downward_api {
                let pod = self.pod_json();
                let mut data = BTreeMap::new();
                for item in source.items.iter().flatten() {
                    let value = if let Some(field) = &item.field_ref {
                        field_value(&pod, &field.field_path)
                    } else if let Some(selector) = &item.resource_field_ref {
                        // A volume names its container; upstream's validation requires it.
                        let target = selector
                            .container_name
                            .as_deref()
                            .and_then(|n| crate::environment::find_container(spec, n))
                            .ok_or_else(|| {
                                config_error(format!(
                                    "container {:?} of item {:?} not found in the pod",
                                    selector.container_name.clone().unwrap_or_default(),
                                    item.path
                                ))
                            })?;
                        resource_value(
                            target,
                            &selector.resource,
                            selector.divisor.as_ref().map(|d| d.0.as_str()),
                            &self.shared.allocatable,
                        )
                        .map_err(config_error)?
                    } else {
                        continue;
                    };
                    data.insert(item.path.clone(), value.into_bytes());
                }
                (
                    write_files(&pod_dir, "downward-api", &name, &data, &[])
                        .map_err(config_error)?,
                    true,
                )
            } else {
                // Projected service-account tokens and the rest: an empty directory for now.
                let path = pod_dir.join("volumes").join("other").join(&name);
                std::fs::create_dir_all(&path).map_err(|e| config_error(e.to_string()))?;
                (path, true)
            };
            volumes.insert(name, path);
        }
        Ok(volumes)
    }

    /// The pod as the downward API reads it, with the address the node has given it.
    fn pod_json(&self) -> Value {
        let mut pod = serde_json::to_value(&self.pod).unwrap_or_default();
        if let Some(address) = self.pod_ip {
            pod["status"]["podIP"] = json!(address.to_string());
            pod["status"]["podIPs"] = json!([{"ip": address.to_string()}]);
        }
        pod["status"]["hostIP"] = json!("127.0.0.1");
        pod["status"]["hostIPs"] = json!([{"ip": "127.0.0.1"}]);
        pod
    }

    /// Starts what should run now: init containers one by one, then every app container.
    async fn advance(&mut self) {
        let spec = self.spec();
        if !self.init_done {
            for container in spec.init_containers.iter().flatten() {
                let record = self.init.entry(container.name.clone()).or_default().clone();
                let completed = record.state.pointer("/terminated/exitCode") == Some(&json!(0));
                if completed {
                    continue;
                }
                if !record.running && record.restart_at.is_none_or(|at| at <= Instant::now()) {
                    self.start(container, true).await;
                }
                return;
            }
            self.init_done = true;
        }
        for container in &spec.containers {
            let record = self
                .containers
                .entry(container.name.clone())
                .or_default()
                .clone();
            let due = record.restart_at.is_none_or(|at| at <= Instant::now());
            let first = record.state.is_null();
            if !record.running && (first || (record.restart_at.is_some() && due)) {
                self.start(container, false).await;
            }
        }
    }

    async fn start(&mut self, container: &Container, init: bool) {
        let Some(image) = self.images.get(&container.name).cloned() else {
            return;
        };
        let of = Some(ContainerOf {
            name: &container.name,
            init,
        });
        let reference = container.image.clone().unwrap_or_default();
        self.event(
            of,
            events::NORMAL,
            reason::PULLED,
            events::pulled(&reference),
        );
        let pod = self.pod_json();
        let spec = self.spec();
        let namespace = self.namespace();
        let hostname = self.hostname();
        let sources = crate::environment::Sources {
            client: &self.shared.client,
            namespace: &namespace,
            pod: &pod,
            spec: &spec,
            allocatable: &self.shared.allocatable,
            hostname: &hostname,
        };
        let env = match crate::environment::container_env(&sources, container, &image).await {
            Ok(env) => env,
            Err(message) => {
                self.event(of, events::WARNING, reason::FAILED, events::error(&message));
                let record = self.record(&container.name, init);
                record.state = json!({"waiting": {"reason": "CreateContainerConfigError", "message": message}});
                record.restart_at = Some(Instant::now() + Duration::from_secs(5));
                return;
            }
        };
        let args = crate::environment::command_line(container, &image, &env.kubelet);
        let env = env.process;
        let limits = container
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        let config = ContainerConfig {
            name: container.name.clone(),
            args,
            env,
            cwd: container
                .working_dir
                .clone()
                .or(image.working_dir.clone())
                .unwrap_or_else(|| "/".into()),
            mounts: self
                .mounts
                .get(&container.name)
                .cloned()
                .unwrap_or_default(),
            memory_limit_bytes: limits
                .get("memory")
                .and_then(|q| Quantity::parse(&q.0))
                .map(Quantity::value),
            cpu_limit_millis: limits
                .get("cpu")
                .and_then(|q| Quantity::parse(&q.0))
                .map(Quantity::milli_value),
            stdin: container.stdin == Some(true),
            tty: container.tty == Some(true),
            image: image.clone(),
        };
        let attempt = {
            let record = self.record(&container.name, init);
            record.attempt += 1;
            record.attempt
        };
        let shared = self.shared.clone();
        let id = self.id.clone();
        let log = self.shared.runtime.log_path(&id, &container.name, attempt);
        let exits = self.exits.clone();
        let name = container.name.clone();
        let started = tokio::task::spawn_blocking(move || {
            let mut child = shared.runtime.start(&id, &config, &log)?;
            let key = format!("{id}-{name}");
            let stdins = shared.stdins.clone();
            let lock = || stdins.lock().unwrap_or_else(|e| e.into_inner());
            match child.stdin.take() {
                Some(pipe) => lock().insert(key.clone(), pipe),
                None => lock().remove(&key),
            };
            std::thread::spawn(move || {
                let code = child.wait().ok().and_then(|s| s.code());
                stdins
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                let _ = exits.send((name, attempt, code));
            });
            Ok::<(), petset_runtime::pods::RuntimeError>(())
        })
        .await;
        let now = node::now();
        let started = started
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let events = self.shared.events.clone();
        let pod = self.pod.clone();
        let record = self.record(&container.name, init);
        record.image_id = image.id.clone();
        match started {
            Ok(()) => {
                // `runc run` creates and starts in one step, so both events come together.
                let name = &container.name;
                events.record(
                    &pod,
                    of,
                    events::NORMAL,
                    reason::CREATED,
                    events::created(name),
                );
                events.record(
                    &pod,
                    of,
                    events::NORMAL,
                    reason::STARTED,
                    events::started(name),
                );
                record.running = true;
                record.started = Some(Instant::now());
                record.restart_at = None;
                let at = Instant::now();
                record.startup = ProbeState::reset(container.startup_probe.as_ref(), at);
                record.readiness = ProbeState::reset(container.readiness_probe.as_ref(), at);
                record.liveness = ProbeState::reset(container.liveness_probe.as_ref(), at);
                record.state = json!({"running": {"startedAt": now}});
            }
            Err(error) => {
                events.record(
                    &pod,
                    of,
                    events::WARNING,
                    reason::FAILED,
                    events::error(&error),
                );
                record.state =
                    json!({"waiting": {"reason": "RunContainerError", "message": error}});
                record.restart_at = Some(Instant::now() + FIRST_BACK_OFF);
            }
        }
    }

    /// Records one of the kubelet's events about the pod or one of its containers.
    fn event(
        &self,
        container: Option<ContainerOf<'_>>,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        self.shared
            .events
            .record(&self.pod, container, type_, reason, message);
    }

    fn record(&mut self, name: &str, init: bool) -> &mut ContainerRecord {
        let records = if init {
            &mut self.init
        } else {
            &mut self.containers
        };
        records.entry(name.to_string()).or_default()
    }

    /// A container's process ended: record it and decide about a restart, as the kubelet does.
    fn exited(&mut self, name: &str, attempt: u32, code: Option<i32>) {
        let init = self
            .init
            .get(name)
            .is_some_and(|r| r.attempt == attempt && r.running);
        let policy = self
            .spec()
            .restart_policy
            .unwrap_or_else(|| "Always".into());
        let pod_text = events::pod_text(&self.pod);
        let container_id = format!("runc://{}-{name}", self.id);
        let log = self.shared.runtime.log_path(&self.id, name, attempt);
        let events = self.shared.events.clone();
        let pod = self.pod.clone();
        let of = Some(ContainerOf { name, init });
        let record = self.record(name, init);
        if record.attempt != attempt || !record.running {
            return;
        }
        let code = code.unwrap_or(137);
        let started_at = record
            .state
            .pointer("/running/startedAt")
            .cloned()
            .unwrap_or(Value::Null);
        // runc's failure to start the process (a missing binary) is the runtime's, not the
        // process's: StartError with exit code 128 and runc's message, as the kubelet has it.
        let start_error = (code == 1)
            .then(|| std::fs::read(&log).ok())
            .flatten()
            .and_then(|content| runc_start_error(&content));
        let terminated = match &start_error {
            Some(message) => {
                events.record(
                    &pod,
                    of,
                    events::WARNING,
                    reason::FAILED,
                    events::error(message),
                );
                json!({"terminated": {"exitCode": START_ERROR_EXIT_CODE,
                    "reason": START_ERROR_REASON, "message": message,
                    "startedAt": "1970-01-01T00:00:00Z", "finishedAt": node::now(),
                    "containerID": container_id}})
            }
            None => {
                let reason = if code == 0 { "Completed" } else { "Error" };
                json!({"terminated": {"exitCode": code, "reason": reason,
                    "startedAt": started_at, "finishedAt": node::now(),
                    "containerID": container_id}})
            }
        };
        let code = if start_error.is_some() {
            START_ERROR_EXIT_CODE
        } else {
            code
        };
        record.running = false;
        let restart = match policy.as_str() {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => !(init && code == 0),
        };
        if !restart {
            record.state = terminated;
            record.restart_at = None;
            return;
        }
        // Back-off doubles from 10 s to 5 min, and starts over after 10 minutes of running.
        let ran_long = record
            .started
            .is_some_and(|s| s.elapsed() > Duration::from_secs(600));
        record.back_off = if ran_long || record.back_off.is_zero() {
            FIRST_BACK_OFF
        } else {
            (record.back_off * 2).min(MAX_BACK_OFF)
        };
        record.restart_count += 1;
        record.last_state = terminated;
        record.state = json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
            "back-off {} restarting failed container={name} pod={pod_text}",
            go_duration(record.back_off))}});
        record.restart_at = Some(Instant::now() + record.back_off);
        let message = events::back_off_restarting(name, &pod);
        events.record(&pod, of, events::WARNING, reason::BACK_OFF, message);
    }

    /// When something is next due: a restart or a probe.
    fn next_restart(&self) -> Option<Instant> {
        let probes = self
            .containers
            .values()
            .filter(|r| r.running)
            .flat_map(|r| {
                [r.startup.next, r.readiness.next, r.liveness.next]
                    .into_iter()
                    .flatten()
            });
        self.init
            .values()
            .chain(self.containers.values())
            .filter_map(|r| r.restart_at)
            .chain(probes)
            .min()
    }

    /// Runs the probes that are due, as the kubelet does: the startup probe first (until it
    /// passes nothing else runs), then readiness and liveness; a container that fails its
    /// liveness or startup probe is killed, and restarts as its policy says.
    async fn probe(&mut self) {
        let spec = self.spec();
        for container in &spec.containers {
            let Some(record) = self.containers.get(&container.name).cloned() else {
                continue;
            };
            if !record.running {
                continue;
            }
            let now = Instant::now();
            let mut kill = None;
            let mut updated = record.clone();
            if let Some(probe) = &container.startup_probe
                && !record.startup.passed
            {
                if record.startup.due(now) {
                    let ok = self.run_probe(container, probe, ProbeKind::Startup).await;
                    if updated.startup.record(probe, ok, Instant::now()) {
                        kill = Some(ProbeKind::Startup);
                    }
                }
            } else {
                if let Some(probe) = &container.readiness_probe
                    && record.readiness.due(now)
                {
                    let ok = self.run_probe(container, probe, ProbeKind::Readiness).await;
                    updated.readiness.record(probe, ok, Instant::now());
                }
                if let Some(probe) = &container.liveness_probe
                    && record.liveness.due(now)
                {
                    let ok = self.run_probe(container, probe, ProbeKind::Liveness).await;
                    if updated.liveness.record(probe, ok, Instant::now()) {
                        kill = Some(ProbeKind::Liveness);
                    }
                }
            }
            if let Some(kind) = kill {
                self.event(
                    Some(ContainerOf {
                        name: &container.name,
                        init: false,
                    }),
                    events::NORMAL,
                    reason::KILLING,
                    events::failed_probe_restart(&container.name, kind),
                );
                updated.liveness.next = None;
                updated.readiness.next = None;
                updated.startup.next = None;
                let shared = self.shared.clone();
                let (id, name) = (self.id.clone(), container.name.clone());
                let _ =
                    tokio::task::spawn_blocking(move || shared.runtime.signal(&id, &name, "KILL"))
                        .await;
            }
            self.containers.insert(container.name.clone(), updated);
        }
    }

    /// One probe run: exec in the container, or a TCP connection or HTTP GET to the pod's
    /// loopback from inside its network namespace (`petset probe`, run there by `ip netns exec`;
    /// nothing outside the namespace is dialed). A failure is an `Unhealthy` event with the
    /// prober's message.
    async fn run_probe(&self, container: &Container, probe: &Probe, kind: ProbeKind) -> bool {
        let (ok, output) = self.probe_once(container, probe).await;
        if !ok {
            self.event(
                Some(ContainerOf {
                    name: &container.name,
                    init: false,
                }),
                events::WARNING,
                reason::UNHEALTHY,
                events::unhealthy(kind, &output),
            );
        }
        ok
    }

    /// Whether the probe passed, and what the prober says of a failure.
    async fn probe_once(&self, container: &Container, probe: &Probe) -> (bool, String) {
        let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        let port_of = |port: &IntOrString| match port {
            IntOrString::Int(number) => Some(*number),
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        };
        let address = self
            .pod_ip
            .map_or_else(|| "127.0.0.1".to_string(), |a| a.to_string());
        let target;
        let mut command = if let Some(exec) = &probe.exec {
            let argv = exec.command.clone().unwrap_or_default();
            target = ProbeTarget::Exec {
                command: argv.join(" "),
            };
            tokio::process::Command::from(self.shared.runtime.exec_command(
                &self.id,
                &container.name,
                &argv,
                false,
            ))
        } else {
            let Ok(petset) = std::env::current_exe() else {
                return (false, "the prober cannot find petset's own binary".into());
            };
            let mut command = tokio::process::Command::new("ip");
            command
                .args(["netns", "exec", &Runtime::netns_name(&self.id)])
                .arg(petset)
                .arg("probe");
            if let Some(get) = &probe.http_get {
                let Some(port) = port_of(&get.port) else {
                    return (false, format!("unknown port {:?}", get.port));
                };
                let path = get.path.clone().unwrap_or_else(|| "/".into());
                command.args(["http", &port.to_string(), &path]);
                target = ProbeTarget::Http {
                    url: format!("http://{address}:{port}{path}"),
                    address: format!("{address}:{port}"),
                };
            } else if let Some(tcp) = &probe.tcp_socket {
                let Some(port) = port_of(&tcp.port) else {
                    return (false, format!("unknown port {:?}", tcp.port));
                };
                command.args(["tcp", &port.to_string()]);
                target = ProbeTarget::Tcp {
                    address: format!("{address}:{port}"),
                };
            } else {
                return (true, String::new());
            }
            command
        };
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        match tokio::time::timeout(timeout, command.output()).await {
            Ok(Ok(output)) if output.status.success() => (true, String::new()),
            Ok(Ok(output)) => {
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                (false, events::probe_failure(&target, &text))
            }
            Ok(Err(error)) => (false, error.to_string()),
            Err(_) => (false, events::probe_timeout(&target)),
        }
    }

    fn statuses(
        &self,
        records: &BTreeMap<String, ContainerRecord>,
        specs: &[Container],
    ) -> Vec<Value> {
        specs
            .iter()
            .map(|container| {
                let record = records.get(&container.name).cloned().unwrap_or_default();
                let state = if record.state.is_null() {
                    self.default_waiting()
                } else {
                    record.state.clone()
                };
                let mut status = json!({
                    "name": container.name,
                    "image": container.image,
                    "imageID": record.image_id,
                    "ready": record.running && record.startup.passed && record.readiness.passed,
                    "started": record.running && record.startup.passed,
                    "restartCount": record.restart_count,
                    "state": state,
                });
                if record.attempt > 0 {
                    status["containerID"] = json!(format!("runc://{}-{}", self.id, container.name));
                }
                if !record.last_state.is_null() {
                    status["lastState"] = record.last_state.clone();
                }
                status
            })
            .collect()
    }

    /// The state of a container that has not run yet, as the kubelet's status has it:
    /// `PodInitializing` in a pod with init containers, else `ContainerCreating`.
    fn default_waiting(&self) -> Value {
        let has_init = self
            .pod
            .spec
            .as_ref()
            .is_some_and(|s| s.init_containers.as_ref().is_some_and(|i| !i.is_empty()));
        let reason = if has_init {
            "PodInitializing"
        } else {
            "ContainerCreating"
        };
        json!({"waiting": {"reason": reason}})
    }

    async fn write_status(&mut self) {
        let spec = self.spec();
        let init_specs = spec.init_containers.clone().unwrap_or_default();
        let containers = self.statuses(&self.containers, &spec.containers);
        let init = self.statuses(&self.init, &init_specs);
        let all_ready = spec.containers.iter().all(|c| {
            self.containers
                .get(&c.name)
                .is_some_and(|r| r.running && r.startup.passed && r.readiness.passed)
        });
        let terminated: Vec<i64> = spec
            .containers
            .iter()
            .filter_map(|c| {
                self.containers
                    .get(&c.name)
                    .and_then(|r| r.state.pointer("/terminated/exitCode"))
                    .and_then(Value::as_i64)
            })
            .collect();
        let phase = if terminated.len() == spec.containers.len() && !terminated.is_empty() {
            if terminated.iter().all(|c| *c == 0) {
                "Succeeded"
            } else {
                "Failed"
            }
        } else if self.init_done
            && spec
                .containers
                .iter()
                .all(|c| self.containers.get(&c.name).is_some_and(|r| r.attempt > 0))
        {
            "Running"
        } else {
            "Pending"
        };
        self.patch_status(phase, all_ready, containers, init, true)
            .await;
    }

    async fn write_waiting(&mut self, waiting: &Waiting) {
        let spec = self.spec();
        let default_state = self.default_waiting();
        let waiting_state = |c: &Container| {
            let concerned = waiting.container.as_ref().is_none_or(|n| *n == c.name);
            let state = match (&waiting.message, concerned) {
                (_, false) => default_state.clone(),
                (Some(message), true) => {
                    json!({"waiting": {"reason": waiting.reason, "message": message}})
                }
                (None, true) => json!({"waiting": {"reason": waiting.reason}}),
            };
            json!({"name": c.name, "image": c.image, "imageID": "", "ready": false,
                "started": false, "restartCount": 0, "state": state})
        };
        let containers: Vec<Value> = spec.containers.iter().map(waiting_state).collect();
        let init: Vec<Value> = spec
            .init_containers
            .iter()
            .flatten()
            .map(waiting_state)
            .collect();
        self.patch_status("Pending", false, containers, init, false)
            .await;
        if self.written.is_null() {
            self.written = json!({});
        }
    }

    async fn patch_status(
        &mut self,
        phase: &str,
        ready: bool,
        containers: Vec<Value>,
        init: Vec<Value>,
        sandbox_ready: bool,
    ) {
        let ready_text = if ready { "True" } else { "False" };
        let initialized = if self.init_done { "True" } else { "False" };
        let sandbox = if sandbox_ready { "True" } else { "False" };
        let previous = |kind: &str, status: &str| {
            self.written
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| {
                    c.iter()
                        .find(|c| c["type"] == kind && c["status"] == status)
                })
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(node::now()))
        };
        let names = |statuses: &[Value], pending: &dyn Fn(&Value) -> bool| {
            let names: Vec<&str> = statuses
                .iter()
                .filter(|s| pending(s))
                .filter_map(|s| s["name"].as_str())
                .collect();
            format!("[{}]", names.join(" "))
        };
        // The reasons and messages of the kubelet's conditions when they are False.
        let (ready_reason, ready_message) = if ready {
            (Value::Null, Value::Null)
        } else if phase == "Succeeded" {
            (json!("PodCompleted"), Value::Null)
        } else {
            let unready = names(&containers, &|s| s["ready"] != json!(true));
            (
                json!("ContainersNotReady"),
                json!(format!("containers with unready status: {unready}")),
            )
        };
        let (init_reason, init_message) = if self.init_done {
            (Value::Null, Value::Null)
        } else {
            let incomplete = names(&init, &|s| {
                s.pointer("/state/terminated/exitCode") != Some(&json!(0))
            });
            (
                json!("ContainersNotInitialized"),
                json!(format!("containers with incomplete status: {incomplete}")),
            )
        };
        let mut status = json!({
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": self.pod_ip.map(|a| a.to_string()),
            "podIPs": self.pod_ip.map(|a| vec![json!({"ip": a.to_string()})]),
            "startTime": self.start_time,
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": sandbox, "lastTransitionTime": previous("PodReadyToStartContainers", sandbox)},
                {"type": "Initialized", "status": initialized, "lastTransitionTime": previous("Initialized", initialized),
                 "reason": init_reason, "message": init_message},
                {"type": "Ready", "status": ready_text, "lastTransitionTime": previous("Ready", ready_text),
                 "reason": ready_reason, "message": ready_message},
                {"type": "ContainersReady", "status": ready_text, "lastTransitionTime": previous("ContainersReady", ready_text),
                 "reason": ready_reason, "message": ready_message},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": previous("PodScheduled", "True")},
            ],
            "containerStatuses": containers,
        });
        if !init.is_empty() {
            status["initContainerStatuses"] = json!(init);
        }
        let patch = json!({"status": status});
        if patch == self.written {
            return;
        }
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.namespace());
        match api
            .patch_status(
                &self.pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => self.written = patch,
            Err(error) => {
                tracing::debug!(%error, pod = %self.pod.name_any(), "could not write pod status")
            }
        }
    }

    /// Stops the containers (TERM, then KILL after the grace period when `graceful`), removes
    /// the sandbox and, for a pod being deleted, confirms the deletion.
    async fn terminate(
        &mut self,
        exited: &mut mpsc::UnboundedReceiver<(String, u32, Option<i32>)>,
        graceful: bool,
    ) {
        let running: Vec<String> = self
            .init
            .iter()
            .chain(self.containers.iter())
            .filter(|(_, r)| r.running)
            .map(|(n, _)| n.clone())
            .collect();
        let grace = if graceful {
            self.pod
                .metadata
                .deletion_grace_period_seconds
                .unwrap_or(30)
                .max(0) as u64
        } else {
            0
        };
        if graceful {
            // Stopping containers are not ready: the pod reads 0/N while it terminates.
            for record in self.init.values_mut().chain(self.containers.values_mut()) {
                record.readiness.passed = false;
            }
            self.write_status().await;
            for name in &running {
                let init = self.init.get(name).is_some_and(|r| r.running);
                self.event(
                    Some(ContainerOf { name, init }),
                    events::NORMAL,
                    reason::KILLING,
                    events::stopping(name),
                );
            }
        }
        let signal_all = |signal: &'static str| {
            let shared = self.shared.clone();
            let id = self.id.clone();
            let names = running.clone();
            tokio::task::spawn_blocking(move || {
                for name in names {
                    let _ = shared.runtime.signal(&id, &name, signal);
                }
            })
        };
        if !running.is_empty() {
            let _ = signal_all(if grace > 0 { "TERM" } else { "KILL" }).await;
            // The grace period is the user's number: one past what the clock can hold (near
            // i64::MAX seconds) waits as long as the clock allows instead of panicking the
            // pod's task, which would leave its containers running unsupervised.
            let deadline = tokio::time::Instant::now()
                .checked_add(Duration::from_secs(grace))
                .unwrap_or_else(far_future);
            let mut left = running.len();
            while left > 0 {
                match tokio::time::timeout_at(deadline, exited.recv()).await {
                    Ok(Some(_)) => left -= 1,
                    Ok(None) => break,
                    Err(_) => {
                        let _ = signal_all("KILL").await;
                        break;
                    }
                }
            }
        }
        let shared = self.shared.clone();
        let id = self.id.clone();
        let removed = tokio::task::spawn_blocking(move || shared.runtime.remove_sandbox(&id))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(error) = removed {
            tracing::warn!(%error, pod = %self.pod.name_any(), "could not remove the pod's sandbox");
        }
        if graceful {
            let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.namespace());
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: self.pod.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(error) = api.delete(&self.pod.name_any(), &params).await {
                tracing::debug!(%error, pod = %self.pod.name_any(), "could not confirm a deletion");
            }
        }
    }
}

/// Writes a volume's files (all keys, or the listed items) under the pod's directory.
fn write_files(
    pod_dir: &Path,
    kind: &str,
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: &[(String, String)],
) -> Result<PathBuf, String> {
    let dir = pod_dir.join("volumes").join(kind).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let files: Vec<(String, &Vec<u8>)> = if items.is_empty() {
        data.iter().map(|(k, v)| (k.clone(), v)).collect()
    } else {
        items
            .iter()
            .filter_map(|(key, path)| data.get(key).map(|v| (path.clone(), v)))
            .collect()
    };
    for (path, content) in files {
        if path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(format!("invalid path {path:?} in volume {name:?}"));
        }
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&target, content).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    Ok(dir)
}

/// A duration as Go prints one (`10s`, `2m40s`, `5m0s`), as the kubelet's back-off messages
/// show it.
fn go_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match (seconds / 3600, seconds / 60 % 60, seconds % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
