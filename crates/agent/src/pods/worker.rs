//! One pod's worker: it owns everything about the pod on this node (images, volumes, the
//! sandbox, its containers and their restarts, probes, status, termination) and acts on what
//! `super::lifecycle` decides.
//!
//! Cancellation: the worker looks at the node's stop before each step that creates something
//! (the sandbox, each start) and between steps; a step in flight is never abandoned, so what
//! it made is undone by the termination that follows.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodSpec, Probe};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Preconditions};
use petset_runtime::images::Image;
use petset_runtime::pods::{ContainerConfig, Mount, SandboxConfig};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::lifecycle::{self, ContainerRecord, FIRST_BACK_OFF};
use super::pull::PullBackOff;
use super::{Shared, Stop, far_future, sandbox_id_of};
use crate::kubelet_events::{self as events, ContainerOf, reason};
use crate::node;
use crate::probes::ProbeState;
use crate::quantity::Quantity;
use crate::start_error::{START_ERROR_EXIT_CODE, START_ERROR_REASON, runc_start_error};

/// The waiting reason and event reason of a container the node's fence holds back.
pub(super) const NODE_FENCED: &str = "NodeFenced";

/// A container's end: its name, the run it ended, and its exit code.
type Exited = (String, u32, Option<i32>);

pub(super) struct PodRun {
    pub(super) shared: Arc<Shared>,
    pub(super) pod: Pod,
    pub(super) id: String,
    pub(super) start_time: String,
    pub(super) init_done: bool,
    pub(super) init: BTreeMap<String, ContainerRecord>,
    pub(super) containers: BTreeMap<String, ContainerRecord>,
    pub(super) images: HashMap<String, Image>,
    pub(super) mounts: HashMap<String, Vec<Mount>>,
    exits: mpsc::UnboundedSender<Exited>,
    pub(super) written: Value,
    /// The pod's address on the node's bridge, once its sandbox has one.
    pub(super) pod_ip: Option<std::net::Ipv4Addr>,
    /// Images that were not in the store, by reference: the pull back-off.
    pub(super) pulls: HashMap<String, PullBackOff>,
    stop: Stop,
    /// Whether this pod's `NodeFenced` event was recorded since the fence last rose.
    fenced_told: bool,
    /// Whether the worker looked for containers an earlier run of the node left (`adopt`).
    adopted: bool,
    /// Whether the pod is to be read afresh from the API before anything starts: after the
    /// fence held it back (`still_here`).
    read_again: bool,
    /// When to try `still_here` again after the API could not answer.
    read_again_at: Option<Instant>,
    /// Whether the API no longer has this pod (deleted, or another of its name): nothing starts
    /// and the worker ends.
    gone: bool,
    /// Where the tokens of the pod's projected volumes stand (renewed while the pod runs).
    tokens: super::volumes::Tokens,
}

/// Why a pod cannot start yet: the waiting reason and message of the container it concerns
/// (`None`: every container waits for it).
pub(super) struct Waiting {
    pub(super) reason: String,
    pub(super) message: Option<String>,
    pub(super) container: Option<String>,
}

impl Waiting {
    pub(super) fn all(reason: &str, message: String) -> Self {
        Self {
            reason: reason.into(),
            message: Some(message),
            container: None,
        }
    }
}

/// The kubelet's events of one worker; none for a runtime whose `needs` say so.
struct PodEvents(Option<crate::kubelet_events::KubeletEvents>);

impl PodEvents {
    fn record(
        &self,
        pod: &Pod,
        container: Option<ContainerOf<'_>>,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        if let Some(events) = &self.0 {
            events.record(pod, container, type_, reason, message);
        }
    }
}

/// What ends a worker.
enum End {
    /// The pod is being deleted: stop gracefully and confirm the deletion.
    Deleted,
    /// The pod is gone from the API: stop at once.
    Gone,
    /// The node stops: stop within the node's grace period.
    NodeStops,
}

/// The next version of the pod.
enum Update {
    Pod(Box<Pod>),
    Gone,
    /// The node's watch ended (its task was aborted): the node is stopping.
    Closed,
}

async fn next_pod(updates: &mut watch::Receiver<Option<Pod>>) -> Update {
    if updates.changed().await.is_err() {
        return Update::Closed;
    }
    match updates.borrow_and_update().clone() {
        Some(pod) => Update::Pod(Box::new(pod)),
        None => Update::Gone,
    }
}

/// The instant of the monotonic clock that stands for a wall-clock time (now, for one past).
fn instant_of(at: jiff::Timestamp) -> Instant {
    let wait = Duration::try_from(at.duration_since(jiff::Timestamp::now())).unwrap_or_default();
    Instant::now().checked_add(wait).unwrap_or_else(far_future)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn records_of(statuses: Option<&Vec<ContainerStatus>>) -> BTreeMap<String, ContainerRecord> {
    statuses
        .iter()
        .flat_map(|s| s.iter())
        .map(|c| (c.name.clone(), ContainerRecord::resumed(c.restart_count)))
        .collect()
}

/// Runs one pod until it ends (deleted, gone, or the node stops), then stops its containers
/// and removes its sandbox.
pub(super) async fn run(
    shared: Arc<Shared>,
    mut updates: watch::Receiver<Option<Pod>>,
    stop: Stop,
) {
    if stop.requested() {
        return;
    }
    let Some(pod) = updates.borrow_and_update().clone() else {
        return;
    };
    let (exits, mut exited) = mpsc::unbounded_channel();
    let status = pod.status.clone().unwrap_or_default();
    let mut run = PodRun {
        id: sandbox_id_of(&pod.uid().unwrap_or_default()),
        start_time: status
            .start_time
            .as_ref()
            .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(node::now),
        init_done: false,
        init: records_of(status.init_container_statuses.as_ref()),
        containers: records_of(status.container_statuses.as_ref()),
        images: HashMap::new(),
        mounts: HashMap::new(),
        exits,
        written: Value::Null,
        pod_ip: None,
        pulls: HashMap::new(),
        shared,
        pod,
        stop,
        fenced_told: false,
        adopted: false,
        read_again: false,
        read_again_at: None,
        gone: false,
        tokens: Default::default(),
    };
    let end = run.lifecycle(&mut updates, &mut exited).await;
    run.terminate(&mut exited, end).await;
}

impl PodRun {
    /// Prepares the pod and runs its containers until something ends the worker.
    async fn lifecycle(
        &mut self,
        updates: &mut watch::Receiver<Option<Pod>>,
        exited: &mut mpsc::UnboundedReceiver<Exited>,
    ) -> End {
        let mut prepared = false;
        loop {
            if self.stop.requested() {
                return End::NodeStops;
            }
            if self.pod.metadata.deletion_timestamp.is_some() {
                // A pod deleted while the node was down: what it still runs is taken over
                // first, so that it stops within its grace period as any other.
                if !prepared {
                    self.adopt().await;
                }
                return End::Deleted;
            }
            if !prepared {
                match self.prepare().await {
                    Ok(()) => {
                        prepared = true;
                        self.adopt().await;
                        // The address is known before any process runs, so a first process
                        // that looks itself (or its namespace) up finds it.
                        if self.shared.runtime.needs().status_before_start {
                            self.write_status().await;
                        }
                    }
                    Err(_) if self.stop.requested() => return End::NodeStops,
                    Err(waiting) => {
                        self.write_waiting(&waiting).await;
                        if let Some(end) = self.wait_to_prepare_again(updates).await {
                            return end;
                        }
                    }
                }
                continue;
            }
            if self
                .tokens
                .values()
                .any(|t| t.is_due(jiff::Timestamp::now()))
            {
                self.tokens = self.refresh_tokens(&self.tokens).await;
            }
            let held = self.advance().await;
            if self.gone {
                return End::Gone;
            }
            if self.shared.runtime.needs().probes {
                self.probe().await;
            }
            self.write_status().await;
            // Starts held back by the fence wait for it, not for their (past) restart times.
            let now = Instant::now();
            let wake = lifecycle::next_wake(&self.init, &self.containers)
                .filter(|at| !held || *at > now)
                .into_iter()
                .chain(self.next_readiness())
                .chain(self.read_again_at)
                .chain(self.tokens.values().map(|t| instant_of(t.due())).min())
                .min();
            let fence = self.shared.fence.clone();
            tokio::select! {
                update = next_pod(updates) => match update {
                    Update::Pod(pod) => self.pod = *pod,
                    Update::Gone => return End::Gone,
                    Update::Closed => return self.node_stops().await,
                },
                Some((name, attempt, code)) = exited.recv() => self.exited(&name, attempt, code),
                () = sleep_until(wake) => {}
                () = fence.lowered(), if held => {}
                () = self.stop.wait() => return End::NodeStops,
            }
        }
    }

    /// After a failed preparation: the next attempt is in 5 s, or sooner for a change of the
    /// pod other than its status (the node's own status writes come back as updates too; as
    /// the kubelet, it does not retry for those, so each state is seen).
    async fn wait_to_prepare_again(
        &mut self,
        updates: &mut watch::Receiver<Option<Pod>>,
    ) -> Option<End> {
        let retry = Instant::now() + Duration::from_secs(5);
        loop {
            tokio::select! {
                update = next_pod(updates) => match update {
                    Update::Pod(pod) => {
                        let changed = pod.spec != self.pod.spec
                            || pod.metadata.deletion_timestamp.is_some();
                        self.pod = *pod;
                        if changed {
                            return None;
                        }
                    }
                    Update::Gone => return Some(End::Gone),
                    Update::Closed => return Some(self.node_stops().await),
                },
                () = tokio::time::sleep_until(retry) => return None,
                () = self.stop.wait() => return Some(End::NodeStops),
            }
        }
    }

    /// The node's watch is gone: its containers keep running until the node's stop says how
    /// long they get.
    async fn node_stops(&self) -> End {
        self.stop.wait().await;
        End::NodeStops
    }

    pub(super) fn spec(&self) -> PodSpec {
        self.pod.spec.clone().unwrap_or_default()
    }

    pub(super) fn namespace(&self) -> String {
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
        for container in spec.init_containers.iter().flatten() {
            let image = self.image_of(container, true)?;
            self.images.insert(container.name.clone(), image);
        }
        for container in &spec.containers {
            let image = self.image_of(container, false)?;
            self.images.insert(container.name.clone(), image);
        }
        if self.shared.runtime.needs().volumes {
            let (volumes, tokens) = self.volumes(&spec).await?;
            self.tokens = tokens;
            for container in spec
                .init_containers
                .iter()
                .flatten()
                .chain(spec.containers.iter())
            {
                let mounts = super::volumes::mounts(container, &volumes)?;
                self.mounts.insert(container.name.clone(), mounts);
            }
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
        if self.stop.requested() {
            return Err(Waiting::all(
                "ContainerCreating",
                "the node is stopping".into(),
            ));
        }
        let previous = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        let runtime = self.shared.runtime.clone();
        self.pod_ip =
            tokio::task::spawn_blocking(move || runtime.create_sandbox_keeping(&config, previous))
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

    /// After a restart of the node: takes over the containers of this pod that an earlier run
    /// started and that are kept still (the same processes), with what the pod's status says
    /// of them (state, readiness, restart count, last state), so that neither the processes
    /// nor the pod's status see the restart, as a restarted kubelet leaves them. One that ended
    /// meanwhile reports its exit at once and restarts as any other would (its restart shows);
    /// one of another image than the pod's now is left for its start, which replaces it.
    async fn adopt(&mut self) {
        if std::mem::replace(&mut self.adopted, true) {
            return;
        }
        let spec = self.spec();
        let names: Vec<(String, bool)> = spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), true))
            .chain(spec.containers.iter().map(|c| (c.name.clone(), false)))
            .collect();
        let runtime = self.shared.runtime.clone();
        let id = self.id.clone();
        let adopted = tokio::task::spawn_blocking(move || {
            names
                .into_iter()
                .filter_map(|(name, init)| {
                    let adopted = runtime.adopt(&id, &name)?;
                    Some((name, init, adopted))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        if adopted.is_empty() {
            return;
        }
        let status = self.pod.status.clone().unwrap_or_default();
        // The sandbox lived on, and with it what its init containers did.
        for previous in status.init_container_statuses.iter().flatten() {
            let done = previous
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0);
            if done {
                let state = serde_json::to_value(&previous.state).unwrap_or_default();
                self.record(&previous.name, true).state = state;
            }
        }
        let needs = self.shared.runtime.needs();
        for (name, init, adopted) in adopted {
            let statuses = if init {
                status.init_container_statuses.as_ref()
            } else {
                status.container_statuses.as_ref()
            };
            let previous = statuses
                .into_iter()
                .flatten()
                .find(|s| s.name == name)
                .cloned();
            // Before its images are resolved (a pod being deleted), the status's word is taken.
            let image_id = match self.images.get(&name) {
                Some(image) => image.id.clone(),
                None => previous
                    .as_ref()
                    .map(|p| p.image_id.clone())
                    .unwrap_or_default(),
            };
            if previous.as_ref().is_some_and(|p| p.image_id != image_id) {
                continue;
            }
            let containers = if init {
                spec.init_containers.as_deref().unwrap_or_default()
            } else {
                &spec.containers
            };
            let Some(container) = containers.iter().find(|c| c.name == name) else {
                continue;
            };
            let at = Instant::now();
            let runs = |probe: &Option<Probe>| probe.is_some() && needs.probes;
            let (startup_probe, readiness_probe, liveness_probe) = (
                runs(&container.startup_probe),
                runs(&container.readiness_probe),
                runs(&container.liveness_probe),
            );
            let record = self.record(&name, init);
            record.attempt = adopted.attempt;
            record.running = true;
            record.started = Some(at);
            record.restart_at = None;
            record.image_id = image_id;
            let running = previous
                .as_ref()
                .and_then(|p| p.state.as_ref())
                .filter(|s| s.running.is_some())
                .and_then(|s| serde_json::to_value(s).ok());
            record.state =
                running.unwrap_or_else(|| json!({"running": {"startedAt": node::now()}}));
            record.last_state = previous
                .as_ref()
                .and_then(|p| p.last_state.as_ref())
                .and_then(|s| serde_json::to_value(s).ok())
                .filter(|s| s.as_object().is_some_and(|o| !o.is_empty()))
                .unwrap_or(Value::Null);
            // Probes start over (their periods from now), from where the status had them:
            // a container that was ready stays ready until its probe says otherwise.
            let probe_of = |runs: bool| runs.then(Probe::default);
            record.startup = ProbeState::reset(probe_of(startup_probe).as_ref(), at);
            record.readiness = ProbeState::reset(probe_of(readiness_probe).as_ref(), at);
            record.liveness = ProbeState::reset(probe_of(liveness_probe).as_ref(), at);
            record.startup.passed |= previous.as_ref().and_then(|p| p.started) == Some(true);
            record.readiness.passed |= previous.as_ref().is_some_and(|p| p.ready);
            tracing::info!(pod = %self.pod.name_any(), container = %name, "took over a running container");
            self.watch_exit(&name, adopted.attempt, adopted.started);
        }
    }

    /// The pod as the downward API reads it, with the address the node has given it.
    pub(super) fn pod_json(&self) -> Value {
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
    /// While the node's fence is not lowered, starts nothing; returns whether it held a start
    /// back (the worker then waits for the fence).
    async fn advance(&mut self) -> bool {
        let spec = self.spec();
        let plan = lifecycle::starts(
            &spec,
            &self.init,
            &self.containers,
            self.init_done,
            Instant::now(),
        );
        self.init_done = plan.init_done;
        let fence = self.shared.fence.state();
        if !fence.may_start() {
            if fence == crate::fence::State::Raised {
                self.mark_fenced(&spec);
            }
            self.read_again = true;
            return !plan.start.is_empty();
        }
        if self.read_again && !plan.start.is_empty() && !self.still_here().await {
            return false;
        }
        self.fenced_told = false;
        for record in self.init.values_mut().chain(self.containers.values_mut()) {
            record.fenced = false;
        }
        for next in plan.start {
            if self.stop.requested() {
                return false;
            }
            let containers = if next.init {
                spec.init_containers.as_deref().unwrap_or_default()
            } else {
                &spec.containers
            };
            if let Some(container) = containers.iter().find(|c| c.name == next.name)
                && !self.start(container, next.init).await
            {
                // The fence rose while this pod was starting (resolving an environment can
                // take the API's time): what is left waits for it.
                return true;
            }
        }
        false
    }

    /// After the fence held this pod back: whether the pod is still this node's, read from
    /// the API (not from the node's watch, which may not have caught up with a failover of the
    /// servers while the node was fenced or down). A pod deleted or moved meanwhile starts
    /// nothing more (`gone`; its worker ends). `false` too while the API cannot say.
    async fn still_here(&mut self) -> bool {
        let api: Api<Pod> = Api::namespaced(self.shared.client.clone(), &self.namespace());
        match api.get_opt(&self.pod.name_any()).await {
            Ok(Some(pod)) if pod.uid() == self.pod.uid() => {
                self.read_again_at = None;
                let here = pod.metadata.deletion_timestamp.is_none();
                self.pod = pod;
                self.read_again = !here;
                here
            }
            Ok(_) => {
                self.gone = true;
                false
            }
            Err(error) => {
                tracing::debug!(%error, pod = %self.pod.name_any(), "could not read the pod again after the fence");
                self.read_again_at = Some(Instant::now() + Duration::from_secs(1));
                false
            }
        }
    }

    /// While the fence is raised: every container that would start (now, or once its back-off
    /// is over) waits `NodeFenced`, and the pod gets a Warning event, once per raise. The event
    /// is recorded even on a node whose runtime records none: it is rare, and it is the one
    /// word on the pod of why it does not run.
    fn mark_fenced(&mut self, spec: &PodSpec) {
        let message = self.shared.fence.message();
        let would_start = lifecycle::starts(
            spec,
            &self.init,
            &self.containers,
            self.init_done,
            far_future(),
        );
        for next in &would_start.start {
            self.record(&next.name, next.init).fenced = true;
        }
        if !self.fenced_told && !would_start.start.is_empty() {
            self.fenced_told = true;
            let recorder = &self.shared.events;
            recorder.record(&self.pod, None, events::WARNING, NODE_FENCED, message);
        }
    }

    /// Starts a container; `false` when the node's fence held it back (it rose after the
    /// worker's `advance` looked), `true` otherwise, started or not.
    async fn start(&mut self, container: &Container, init: bool) -> bool {
        let Some(image) = self.images.get(&container.name).cloned() else {
            return true;
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
        let needs = self.shared.runtime.needs();
        let (env, args) = if needs.environment {
            let Some(env) = self.environment(container, &image, init).await else {
                return true;
            };
            let args = crate::environment::command_line(container, &image, &env.kubelet);
            (env, args)
        } else {
            Default::default()
        };
        let limits = container
            .resources
            .as_ref()
            .and_then(|r| r.limits.clone())
            .unwrap_or_default();
        let config = ContainerConfig {
            name: container.name.clone(),
            args,
            env: env.process,
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
        if !self.shared.fence.state().may_start() {
            return false;
        }
        let attempt = {
            let record = self.record(&container.name, init);
            record.attempt += 1;
            record.attempt
        };
        let runtime = self.shared.runtime.clone();
        let id = self.id.clone();
        let log = runtime.log_path(&id, &container.name, attempt);
        let fence = self.shared.fence.clone();
        let started = tokio::task::spawn_blocking(move || {
            let started = if init {
                runtime.start_init(&id, &config, &log)
            } else {
                runtime.start(&id, &config, &log)
            };
            // The fence rose while this start was in flight, perhaps after its kills: the
            // container is killed here instead (its exit is then seen as any other).
            if started.is_ok() && !fence.state().may_start() {
                let _ = runtime.signal(&id, &config.name, "KILL");
            }
            started
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        let now = node::now();
        let events = self.events();
        let pod = self.pod.clone();
        let started = started.map(|started| self.watch_exit(&container.name, attempt, started));
        if started.is_ok() && !init {
            self.shared
                .runtime
                .app_container_started(&self.pod, &self.id, &container.name);
        }
        let record = self.record(&container.name, init);
        record.image_id = image.id.clone();
        match started {
            Ok(()) => {
                // `runc run` creates and starts in one step, so both events come together.
                let name = &container.name;
                let created = events::created(name);
                events.record(&pod, of, events::NORMAL, reason::CREATED, created);
                let started = events::started(name);
                events.record(&pod, of, events::NORMAL, reason::STARTED, started);
                record.running = true;
                let at = Instant::now();
                record.started = Some(at);
                record.restart_at = None;
                // Probes the runtime does not run count as passed, as no probe does.
                fn probed(probe: &Option<Probe>, runs: bool) -> Option<&Probe> {
                    probe.as_ref().filter(|_| runs)
                }
                record.startup =
                    ProbeState::reset(probed(&container.startup_probe, needs.probes), at);
                record.readiness =
                    ProbeState::reset(probed(&container.readiness_probe, needs.probes), at);
                record.liveness =
                    ProbeState::reset(probed(&container.liveness_probe, needs.probes), at);
                record.state = json!({"running": {"startedAt": now}});
            }
            Err(error) => {
                let message = events::error(&error);
                events.record(&pod, of, events::WARNING, reason::FAILED, message);
                record.state =
                    json!({"waiting": {"reason": "RunContainerError", "message": error}});
                record.restart_at = Some(Instant::now() + FIRST_BACK_OFF);
            }
        }
        true
    }

    /// A container's environment, resolved from the pod and the API; `None` (and the
    /// container waits in `CreateContainerConfigError`) when a source is missing.
    async fn environment(
        &mut self,
        container: &Container,
        image: &Image,
        init: bool,
    ) -> Option<crate::environment::ContainerEnv> {
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
        match crate::environment::container_env(&sources, container, image).await {
            Ok(env) => Some(env),
            Err(message) => {
                let of = Some(ContainerOf {
                    name: &container.name,
                    init,
                });
                self.event(of, events::WARNING, reason::FAILED, events::error(&message));
                let record = self.record(&container.name, init);
                record.state = json!({"waiting": {"reason": "CreateContainerConfigError", "message": message}});
                record.restart_at = Some(Instant::now() + Duration::from_secs(5));
                None
            }
        }
    }

    /// Keeps a started container's stdin for `attach`, and reports its exit to the worker.
    fn watch_exit(&self, name: &str, attempt: u32, started: crate::runtime::StartedContainer) {
        let key = format!("{}-{name}", self.id);
        let stdins = self.shared.stdins.clone();
        {
            let mut pipes = stdins.lock().unwrap_or_else(|e| e.into_inner());
            match started.stdin {
                Some(pipe) => pipes.insert(key.clone(), pipe),
                None => pipes.remove(&key),
            };
        }
        let exits = self.exits.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let code = started.exit.await;
            stdins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            let _ = exits.send((name, attempt, code));
        });
    }

    /// Records one of the kubelet's events about the pod or one of its containers.
    pub(super) fn event(
        &self,
        container: Option<ContainerOf<'_>>,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        self.events()
            .record(&self.pod, container, type_, reason, message);
    }

    /// Where the worker records its events: the kubelet's, unless the runtime records none.
    fn events(&self) -> PodEvents {
        PodEvents(
            self.shared
                .runtime
                .needs()
                .events
                .then(|| self.shared.events.clone()),
        )
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
        let container_id = self.shared.runtime.container_id(&self.id, name);
        let log = self.shared.runtime.log_path(&self.id, name, attempt);
        let events = self.events();
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
                let text = events::error(message);
                events.record(&pod, of, events::WARNING, reason::FAILED, text);
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
        if !lifecycle::restarts(&policy, init, code) {
            record.state = terminated;
            record.restart_at = None;
            return;
        }
        let now = Instant::now();
        record.back_off = lifecycle::next_back_off(record.back_off, record.started, now);
        record.restart_count += 1;
        record.last_state = terminated;
        record.state = json!({"waiting": {"reason": "CrashLoopBackOff", "message": format!(
            "back-off {} restarting failed container={name} pod={pod_text}",
            lifecycle::go_duration(record.back_off))}});
        record.restart_at = Some(now + record.back_off);
        let message = events::back_off_restarting(name, &pod);
        events.record(&pod, of, events::WARNING, reason::BACK_OFF, message);
    }

    /// Stops the containers (TERM, then KILL after the grace period) and removes the sandbox;
    /// for a pod being deleted, it then confirms the deletion.
    async fn terminate(&mut self, exited: &mut mpsc::UnboundedReceiver<Exited>, end: End) {
        let running: Vec<String> = self
            .init
            .iter()
            .chain(self.containers.iter())
            .filter(|(_, r)| r.running)
            .map(|(n, _)| n.clone())
            .collect();
        let grace = match end {
            End::Deleted => Duration::from_secs(
                u64::try_from(
                    self.pod
                        .metadata
                        .deletion_grace_period_seconds
                        .unwrap_or(30),
                )
                .unwrap_or(0),
            ),
            End::Gone => Duration::ZERO,
            End::NodeStops => self.stop.grace(),
        };
        if matches!(end, End::Deleted) {
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
        if !running.is_empty() {
            let signal = if grace.is_zero() { "KILL" } else { "TERM" };
            self.signal_all(&running, signal).await;
            // The grace period is the user's number: one past what the clock can hold (near
            // i64::MAX seconds) waits as long as the clock allows instead of panicking the
            // pod's worker, which would leave its containers running unsupervised.
            let mut deadline = Instant::now().checked_add(grace).unwrap_or_else(far_future);
            let mut left = running.len();
            let mut node_stops = matches!(end, End::NodeStops);
            while left > 0 {
                tokio::select! {
                    exit = tokio::time::timeout_at(deadline, exited.recv()) => match exit {
                        Ok(Some(_)) => left -= 1,
                        Ok(None) => break,
                        Err(_) => {
                            self.signal_all(&running, "KILL").await;
                            break;
                        }
                    },
                    // A node that stops while a pod terminates cuts the pod's grace period
                    // to its own: the stop of petset never waits for a pod's long one.
                    () = self.stop.wait(), if !node_stops => {
                        node_stops = true;
                        let cut = Instant::now().checked_add(self.stop.grace());
                        deadline = cut.map_or(deadline, |cut| cut.min(deadline));
                    }
                }
            }
        }
        let runtime = self.shared.runtime.clone();
        let id = self.id.clone();
        let removed = tokio::task::spawn_blocking(move || runtime.remove_sandbox(&id))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(error) = removed {
            tracing::warn!(%error, pod = %self.pod.name_any(), "could not remove the pod's sandbox");
        }
        if matches!(end, End::Deleted) {
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

    pub(super) async fn signal_all(&self, names: &[String], signal: &'static str) {
        let runtime = self.shared.runtime.clone();
        let id = self.id.clone();
        let names = names.to_vec();
        let _ = tokio::task::spawn_blocking(move || {
            for name in names {
                let _ = runtime.signal(&id, &name, signal);
            }
        })
        .await;
    }
}
