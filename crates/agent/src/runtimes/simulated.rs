//! Pods as bookkeeping, like kwok's: a sandbox is an entry with an address from the node's pod
//! CIDR (nothing ever dials it), a container is an entry whose exit comes only when the node
//! ends it (or at once, with code 0, for an init container). No process runs, no directory is
//! made, nothing is dialed; the worker skips volumes, environment and probes for it
//! (`WorkerNeeds`).
//!
//! Knobs (the acceptance suites use them; a real node ignores them):
//! - pod annotation `simulation.petset.dev/ready: "false"`: Running but not Ready (patched onto
//!   a live pod it makes it NotReady; removing it makes it Ready again);
//! - an image tagged `never-ready`: never Ready;
//! - pod annotation `simulation.petset.dev/ready-after-ms: "N"`: Ready N ms after its
//!   containers started.
//!
//! A pod whose `restartPolicy` is `Never` or `OnFailure` (a Job's, a Helm hook's) runs to
//! completion, as kwok's default stages finish such pods: each app container exits 0
//! (terminated, reason Completed) `COMPLETION` after it started, and the pod Succeeds.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use petset_runtime::images::Image;
use petset_runtime::network::Cidr;
use petset_runtime::pods::{ContainerConfig, RuntimeError, SandboxConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::runtime::{PodRuntime, Readiness, StartedContainer, WorkerNeeds};

const READY_ANNOTATION: &str = "simulation.petset.dev/ready";
const READY_AFTER_ANNOTATION: &str = "simulation.petset.dev/ready-after-ms";
const NEVER_READY_TAG: &str = ":never-ready";
/// How long a simulated container takes to stop after TERM (its grace period is at least a
/// second whenever TERM is sent: a zero grace period is a KILL).
const TERMINATION: Duration = Duration::from_millis(1000);
/// Terminations end at least this far apart, on this node and across the machine's simulated
/// nodes (`MACHINE_SCHEDULE`): pods deleted together do not vanish in the same instant
/// (kubectl's delete-wait, pod after pod, races a pod that vanishes just as it starts waiting
/// for it and is re-created at once).
const TERMINATION_SPACING: Duration = Duration::from_millis(250);
/// How many pods' termination instants are remembered (one per pod being deleted).
const SCHEDULE_BOUND: usize = 1024;

/// How long a container of a pod that does not restart it "runs" before it exits 0.
const COMPLETION: Duration = Duration::from_millis(1000);

/// Where the simulated node says its files are; nothing is ever made there.
const NO_DIRECTORY: &str = "/nonexistent/petset-simulated";

/// Pod IPs handed out, by sandbox id.
struct Addresses {
    by_pod: HashMap<String, Ipv4Addr>,
    next: u32,
    network: u32,
    /// How many addresses the range has past its network address and the bridge's.
    usable: u32,
}

impl Addresses {
    fn new(cidr: &Cidr) -> Self {
        let size = 1u64 << (32 - u32::from(cidr.prefix().min(32)));
        Self {
            by_pod: HashMap::new(),
            next: 0,
            network: u32::from(cidr.network()),
            // The network address, the bridge's first address and the broadcast are not pods'.
            usable: size.saturating_sub(3).clamp(1, u64::from(u32::MAX)) as u32,
        }
    }

    /// The pod's address: the one it has, else `previous` (what its status said before a
    /// restart of petset), else the next of the range.
    fn for_pod(&mut self, pod: &str, previous: Option<Ipv4Addr>) -> Ipv4Addr {
        if let Some(ip) = self.by_pod.get(pod) {
            return *ip;
        }
        let ip = previous.unwrap_or_else(|| {
            // From the range's third address on, skipping the network, the bridge's first
            // address and the broadcast.
            let offset = 2 + self.next % self.usable;
            self.next = self.next.wrapping_add(1);
            Ipv4Addr::from(self.network.wrapping_add(offset))
        });
        self.by_pod.insert(pod.to_string(), ip);
        ip
    }

    fn release(&mut self, pod: &str) {
        self.by_pod.remove(pod);
    }
}

/// When each terminating pod's containers stop: one instant per pod, spaced apart.
#[derive(Default)]
struct Schedule {
    next_free: Option<Instant>,
    by_pod: Vec<(String, Instant)>,
    /// Whether the machine's other simulated nodes are kept apart too (`MACHINE_SCHEDULE`);
    /// the node's own tests keep to this schedule alone.
    machine_wide: bool,
}

impl Schedule {
    fn stop_at(&mut self, pod: &str, now: Instant) -> Instant {
        if let Some((_, at)) = self.by_pod.iter().find(|(p, _)| p == pod) {
            return *at;
        }
        let at = (now + TERMINATION).max(self.next_free.unwrap_or(now));
        let at = if self.machine_wide {
            spaced_machine_wide(at, now)
        } else {
            at
        };
        self.next_free = Some(at + TERMINATION_SPACING);
        self.by_pod.push((pod.to_string(), at));
        if self.by_pod.len() > SCHEDULE_BOUND {
            self.by_pod.remove(0);
        }
        at
    }

    fn forget(&mut self, pod: &str) {
        self.by_pod.retain(|(p, _)| p != pod);
    }
}

/// Where the simulated nodes of this machine keep the end of the latest termination they
/// scheduled (`CLOCK_MONOTONIC` nanoseconds): nodes are processes of their own (`cluster up`),
/// and two pods of two nodes deleted together must not end in one instant either.
const MACHINE_SCHEDULE: &str = "/run/petset/simulated-terminations";

/// `at`, moved later when another simulated node of this machine ends a termination within
/// `TERMINATION_SPACING` of it; `at` itself when the shared schedule cannot be had.
fn spaced_machine_wide(at: Instant, now: Instant) -> Instant {
    let wanted = crate::watchdog::monotonic_now() + at.saturating_duration_since(now);
    match take_machine_slot(wanted) {
        Ok(slot) => at + slot.saturating_sub(wanted),
        Err(error) => {
            tracing::debug!(%error, "the machine's termination schedule is not available");
            at
        }
    }
}

/// The first slot at or after `wanted` that keeps `TERMINATION_SPACING` from the last one
/// taken on this machine, taken under the schedule file's lock.
fn take_machine_slot(wanted: Duration) -> std::io::Result<Duration> {
    use std::io::{Read, Seek, Write};
    let path = std::path::Path::new(MACHINE_SCHEDULE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.lock()?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let next_free = text
        .trim()
        .parse::<u64>()
        .map(Duration::from_nanos)
        .unwrap_or_default();
    let slot = wanted.max(next_free);
    let next = u64::try_from((slot + TERMINATION_SPACING).as_nanos()).unwrap_or(u64::MAX);
    file.set_len(0)?;
    file.seek(std::io::SeekFrom::Start(0))?;
    file.write_all(next.to_string().as_bytes())?;
    Ok(slot)
}

/// An end a container was told: when, and with which exit code.
type Ending = (Instant, Option<i32>);

/// A sandbox's running containers, each with the sender of its ending.
type Containers = HashMap<String, mpsc::UnboundedSender<Ending>>;

/// The simulated node's pods.
pub struct SimulatedRuntime {
    addresses: Mutex<Addresses>,
    schedule: Mutex<Schedule>,
    sandboxes: Mutex<HashMap<String, Containers>>,
}

impl SimulatedRuntime {
    /// A runtime handing out addresses from `pod_cidr`.
    pub fn new(pod_cidr: &Cidr) -> Self {
        Self {
            addresses: Mutex::new(Addresses::new(pod_cidr)),
            schedule: Mutex::new(Schedule {
                machine_wide: true,
                ..Schedule::default()
            }),
            sandboxes: Mutex::new(HashMap::new()),
        }
    }

    /// A plain container of `busybox` named `name`, for tests that start one.
    #[cfg(test)]
    pub(crate) fn container_for_tests(&self, name: &str) -> ContainerConfig {
        ContainerConfig {
            name: name.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: "/".into(),
            mounts: Vec::new(),
            memory_limit_bytes: None,
            cpu_limit_millis: None,
            stdin: false,
            tty: false,
            image: self.image("busybox").expect("image"),
        }
    }

    fn sandboxes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Containers>> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A container entry whose exit future resolves at the earliest ending it is told (or at
    /// once, as killed, when its sandbox goes).
    fn started(&self, pod: &str, name: &str) -> StartedContainer {
        let (ending, mut endings) = mpsc::unbounded_channel::<Ending>();
        self.sandboxes()
            .entry(pod.to_string())
            .or_default()
            .insert(name.to_string(), ending);
        let exit = async move {
            let mut due: Option<Ending> = None;
            loop {
                let wait = async {
                    match due {
                        Some((at, _)) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    told = endings.recv() => match told {
                        Some(end) if due.is_none_or(|(at, _)| end.0 < at) => due = Some(end),
                        Some(_) => {}
                        None => return None,
                    },
                    () = wait => return due.and_then(|(_, code)| code),
                }
            }
        };
        StartedContainer {
            stdin: None,
            exit: Box::pin(exit),
        }
    }
}

/// Whether the image reference carries the `never-ready` tag.
fn never_ready(pod: &Pod) -> bool {
    pod.spec.as_ref().is_some_and(|s| {
        s.containers.iter().any(|c| {
            c.image
                .as_deref()
                .is_some_and(|i| i.ends_with(NEVER_READY_TAG))
        })
    })
}

impl PodRuntime for SimulatedRuntime {
    fn image(&self, reference: &str) -> Result<Image, String> {
        // Every image is "present": nothing of it is ever read.
        Ok(Image {
            name: reference.to_string(),
            id: format!("simulated://{reference}"),
            rootfs: PathBuf::from(NO_DIRECTORY),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            user: None,
        })
    }

    fn create_sandbox(&self, config: &SandboxConfig) -> Result<Option<Ipv4Addr>, RuntimeError> {
        self.create_sandbox_keeping(config, None)
    }

    fn create_sandbox_keeping(
        &self,
        config: &SandboxConfig,
        previous: Option<Ipv4Addr>,
    ) -> Result<Option<Ipv4Addr>, RuntimeError> {
        self.sandboxes().entry(config.id.clone()).or_default();
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Some(addresses.for_pod(&config.id, previous)))
    }

    fn start(
        &self,
        pod: &str,
        config: &ContainerConfig,
        _log: &Path,
    ) -> Result<StartedContainer, RuntimeError> {
        Ok(self.started(pod, &config.name))
    }

    fn start_init(
        &self,
        pod: &str,
        config: &ContainerConfig,
        _log: &Path,
    ) -> Result<StartedContainer, RuntimeError> {
        // An init container completes as soon as it starts.
        let started = self.started(pod, &config.name);
        if let Some(ending) = self.sandboxes().get(pod).and_then(|c| c.get(&config.name)) {
            let _ = ending.send((Instant::now(), Some(0)));
        }
        Ok(started)
    }

    fn signal(&self, pod: &str, container: &str, signal: &str) -> Result<(), RuntimeError> {
        let now = Instant::now();
        let ending = match signal {
            "KILL" => (now, None),
            // Nothing runs, so there is nothing to stop; the node still takes a moment, as a
            // real one does (kubectl's delete-wait relies on seeing the pod go).
            _ => {
                let mut schedule = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
                (schedule.stop_at(pod, now), Some(0))
            }
        };
        if let Some(sender) = self.sandboxes().get(pod).and_then(|c| c.get(container)) {
            let _ = sender.send(ending);
        }
        Ok(())
    }

    fn kill_all(&self, pod: &str) -> Result<(), RuntimeError> {
        // Nothing runs: the entries end as killed, as a real node's containers would.
        let now = Instant::now();
        if let Some(containers) = self.sandboxes().get(pod) {
            for ending in containers.values() {
                let _ = ending.send((now, None));
            }
        }
        Ok(())
    }

    fn remove_sandbox(&self, pod: &str) -> Result<(), RuntimeError> {
        // Dropping the senders ends what still "runs".
        self.sandboxes().remove(pod);
        self.schedule
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forget(pod);
        self.addresses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .release(pod);
        Ok(())
    }

    fn pods(&self) -> Vec<String> {
        self.sandboxes().keys().cloned().collect()
    }

    fn pod_dir(&self, pod: &str) -> PathBuf {
        PathBuf::from(NO_DIRECTORY).join(pod)
    }

    fn log_path(&self, pod: &str, container: &str, attempt: u32) -> PathBuf {
        self.pod_dir(pod)
            .join("logs")
            .join(container)
            .join(format!("{attempt}.log"))
    }

    fn needs(&self) -> WorkerNeeds {
        // As kwok: no volumes, no environment (a missing ConfigMap does not hold a pod back),
        // no probes, no kubelet events, and one status write when the pod runs. The
        // simulated node stays as cheap per pod as it was before it ran through the worker.
        WorkerNeeds {
            volumes: false,
            environment: false,
            probes: false,
            status_before_start: false,
            events: false,
        }
    }

    fn app_container_started(&self, pod: &Pod, id: &str, container: &str) {
        let policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref());
        if matches!(policy, Some("Never" | "OnFailure"))
            && let Some(ending) = self.sandboxes().get(id).and_then(|c| c.get(container))
        {
            let _ = ending.send((Instant::now() + COMPLETION, Some(0)));
        }
    }

    fn readiness(&self, pod: &Pod, _container: &Container, since: Instant) -> Readiness {
        let annotations = pod.annotations();
        if annotations.get(READY_ANNOTATION).map(String::as_str) == Some("false")
            || never_ready(pod)
        {
            return Readiness::Never;
        }
        let delay = annotations
            .get(READY_AFTER_ANNOTATION)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|d| *d > 0)
            .map(Duration::from_millis);
        match delay.and_then(|d| since.checked_add(d)) {
            Some(at) => Readiness::NotBefore(at),
            None if delay.is_some() => Readiness::Never,
            None => Readiness::AsProbed,
        }
    }

    fn container_id(&self, pod: &str, container: &str) -> String {
        format!("simulated://{pod}/{container}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn bookkeeping_addresses_come_from_the_pod_cidr() {
        let cidr = Cidr::from_str("10.213.7.0/30").expect("cidr");
        let mut addresses = Addresses::new(&cidr);
        assert_eq!(addresses.for_pod("a", None), Ipv4Addr::new(10, 213, 7, 2));
        assert_eq!(addresses.for_pod("a", None), Ipv4Addr::new(10, 213, 7, 2));
        // A /30 has one address for pods; it is handed out again rather than leaving it.
        assert_eq!(addresses.for_pod("b", None), Ipv4Addr::new(10, 213, 7, 2));
        let kept = Ipv4Addr::new(10, 213, 7, 9);
        assert_eq!(addresses.for_pod("c", Some(kept)), kept);
        let mut wide = Addresses::new(&Cidr::from_str("10.244.0.0/16").expect("cidr"));
        assert_eq!(wide.for_pod("a", None), Ipv4Addr::new(10, 244, 0, 2));
        assert_eq!(wide.for_pod("b", None), Ipv4Addr::new(10, 244, 0, 3));
    }

    #[test]
    fn terminations_are_spaced_apart_and_one_per_pod() {
        let mut schedule = Schedule::default();
        let now = Instant::now();
        let first = schedule.stop_at("a", now);
        assert_eq!(first, now + TERMINATION);
        assert_eq!(schedule.stop_at("a", now), first, "each container of a pod");
        assert_eq!(schedule.stop_at("b", now), first + TERMINATION_SPACING);
        schedule.forget("a");
        assert_eq!(
            schedule.stop_at("a", now),
            first + TERMINATION_SPACING * 2,
            "a pod forgotten is scheduled anew"
        );
    }

    #[tokio::test]
    async fn containers_run_until_ended_and_init_containers_complete_at_once() {
        let runtime = SimulatedRuntime::new(&Cidr::from_str("10.213.7.0/24").expect("cidr"));
        let config = |name: &str| runtime.container_for_tests(name);
        let log = Path::new(NO_DIRECTORY);
        let init = runtime
            .start_init("p1", &config("init"), log)
            .expect("init");
        assert_eq!(init.exit.await, Some(0));
        let mut app = runtime.start("p1", &config("app"), log).expect("app");
        let still_running = tokio::time::timeout(Duration::from_millis(50), &mut app.exit).await;
        assert!(still_running.is_err(), "an app container runs on");
        runtime.signal("p1", "app", "KILL").expect("kill");
        assert_eq!(app.exit.await, None, "killed");
        assert!(!Path::new(NO_DIRECTORY).exists(), "no directory is made");
    }
}
