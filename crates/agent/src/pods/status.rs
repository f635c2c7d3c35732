//! The pod's status as the kubelet writes it, built in one place for every node kind
//! (`pod_status`, `container_status`): phase, addresses, the five conditions with the
//! kubelet's reasons and messages when they are False, and the container statuses. The pod
//! worker writes it with a merge patch, and only when it changed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::lifecycle::{self, ContainerRecord};
use super::worker::{PodRun, Waiting};
use crate::node;
use crate::runtime::Readiness;

/// One container's status.
pub struct ContainerView<'a> {
    pub name: &'a str,
    pub image: Option<&'a str>,
    pub image_id: &'a str,
    /// Once the container has run.
    pub container_id: Option<String>,
    pub ready: bool,
    pub started: bool,
    pub restart_count: i32,
    pub state: Value,
    /// `Null` before the container's first restart.
    pub last_state: Value,
}

pub fn container_status(view: ContainerView<'_>) -> Value {
    let mut status = json!({
        "name": view.name,
        "image": view.image,
        "imageID": view.image_id,
        "ready": view.ready,
        "started": view.started,
        "restartCount": view.restart_count,
        "state": view.state,
    });
    if let Some(id) = view.container_id {
        status["containerID"] = json!(id);
    }
    if !view.last_state.is_null() {
        status["lastState"] = view.last_state;
    }
    status
}

/// What a pod's status says.
pub struct PodStatusView<'a> {
    pub phase: &'a str,
    pub ready: bool,
    pub initialized: bool,
    pub sandbox_ready: bool,
    pub pod_ip: Option<Ipv4Addr>,
    pub start_time: &'a str,
    pub containers: Vec<Value>,
    pub init_containers: Vec<Value>,
    /// A condition's `lastTransitionTime`, given its type and status: kept while the status
    /// stays, now when it changes.
    pub transition: &'a dyn Fn(&str, &str) -> Value,
}

fn true_or_false(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// The names of the containers whose status `pending` picks, as the kubelet lists them.
fn names(statuses: &[Value], pending: impl Fn(&Value) -> bool) -> String {
    let names: Vec<&str> = statuses
        .iter()
        .filter(|s| pending(s))
        .filter_map(|s| s["name"].as_str())
        .collect();
    format!("[{}]", names.join(" "))
}

/// The pod's `status`.
pub fn pod_status(view: PodStatusView<'_>) -> Value {
    let ready = true_or_false(view.ready);
    let initialized = true_or_false(view.initialized);
    let sandbox = true_or_false(view.sandbox_ready);
    let transition = view.transition;
    // The reasons and messages of the kubelet's conditions when they are False.
    let (ready_reason, ready_message) = if view.ready {
        (Value::Null, Value::Null)
    } else if view.phase == "Succeeded" {
        (json!("PodCompleted"), Value::Null)
    } else {
        let unready = names(&view.containers, |s| s["ready"] != json!(true));
        (
            json!("ContainersNotReady"),
            json!(format!("containers with unready status: {unready}")),
        )
    };
    let (init_reason, init_message) = if view.initialized {
        (Value::Null, Value::Null)
    } else {
        let incomplete = names(&view.init_containers, |s| {
            s.pointer("/state/terminated/exitCode") != Some(&json!(0))
        });
        (
            json!("ContainersNotInitialized"),
            json!(format!("containers with incomplete status: {incomplete}")),
        )
    };
    let mut status = json!({
        "phase": view.phase,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": view.pod_ip.map(|a| a.to_string()),
        "podIPs": view.pod_ip.map(|a| vec![json!({"ip": a.to_string()})]),
        "startTime": view.start_time,
        "conditions": [
            {"type": "PodReadyToStartContainers", "status": sandbox,
             "lastTransitionTime": transition("PodReadyToStartContainers", sandbox)},
            {"type": "Initialized", "status": initialized,
             "lastTransitionTime": transition("Initialized", initialized),
             "reason": init_reason, "message": init_message},
            {"type": "Ready", "status": ready, "lastTransitionTime": transition("Ready", ready),
             "reason": ready_reason, "message": ready_message},
            {"type": "ContainersReady", "status": ready,
             "lastTransitionTime": transition("ContainersReady", ready),
             "reason": ready_reason, "message": ready_message},
            {"type": "PodScheduled", "status": "True",
             "lastTransitionTime": transition("PodScheduled", "True")},
        ],
        "containerStatuses": view.containers,
    });
    if !view.init_containers.is_empty() {
        status["initContainerStatuses"] = json!(view.init_containers);
    }
    status
}

impl PodRun {
    fn statuses(
        &self,
        records: &BTreeMap<String, ContainerRecord>,
        specs: &[Container],
    ) -> Vec<Value> {
        specs
            .iter()
            .map(|container| {
                let record = records.get(&container.name).cloned().unwrap_or_default();
                let state = if record.fenced && !record.running {
                    let message = self.shared.fence.message();
                    json!({"waiting": {"reason": super::worker::NODE_FENCED, "message": message}})
                } else if record.state.is_null() {
                    self.default_waiting()
                } else {
                    record.state.clone()
                };
                container_status(ContainerView {
                    name: &container.name,
                    image: container.image.as_deref(),
                    image_id: &record.image_id,
                    container_id: (record.attempt > 0)
                        .then(|| self.shared.runtime.container_id(&self.id, &container.name)),
                    ready: self.ready(container, &record),
                    started: record.running && record.startup.passed,
                    restart_count: record.restart_count,
                    state,
                    last_state: record.last_state.clone(),
                })
            })
            .collect()
    }

    /// Whether a container is ready: running, its probes passed, and the runtime agreeing.
    fn ready(&self, container: &Container, record: &ContainerRecord) -> bool {
        let Some(since) = record.started.filter(|_| record.ready()) else {
            return false;
        };
        match self.shared.runtime.readiness(&self.pod, container, since) {
            Readiness::AsProbed => true,
            Readiness::Never => false,
            Readiness::NotBefore(at) => at <= tokio::time::Instant::now(),
        }
    }

    /// When the runtime next lets a running app container become ready, if it holds one back.
    pub(super) fn next_readiness(&self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        self.spec()
            .containers
            .iter()
            .filter_map(|container| {
                let record = self.containers.get(&container.name)?;
                let since = record.started.filter(|_| record.ready())?;
                match self.shared.runtime.readiness(&self.pod, container, since) {
                    Readiness::NotBefore(at) if at > now => Some(at),
                    _ => None,
                }
            })
            .min()
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

    pub(super) async fn write_status(&mut self) {
        let spec = self.spec();
        let init_specs = spec.init_containers.clone().unwrap_or_default();
        let containers = self.statuses(&self.containers, &spec.containers);
        let init = self.statuses(&self.init, &init_specs);
        let all_ready = spec.containers.iter().all(|c| {
            self.containers
                .get(&c.name)
                .is_some_and(|record| self.ready(c, record))
        });
        let phase = lifecycle::phase(&spec, &self.containers, self.init_done);
        self.patch_status(phase, all_ready, containers, init, true)
            .await;
    }

    pub(super) async fn write_waiting(&mut self, waiting: &Waiting) {
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
            container_status(ContainerView {
                name: &c.name,
                image: c.image.as_deref(),
                image_id: "",
                container_id: None,
                ready: false,
                started: false,
                restart_count: 0,
                state,
                last_state: Value::Null,
            })
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

    /// Whether the pod's Ready condition, as the API last showed it, says other than what
    /// this node wrote: the server's node lifecycle controller set it False while the node was
    /// silent. The node then writes its status again, as the kubelet's status manager
    /// reconciles the API's copy with its own.
    fn ready_overwritten(&self) -> bool {
        let ready = |conditions: Option<&Vec<Value>>| {
            conditions
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .and_then(|c| c["status"].as_str().map(str::to_string))
        };
        let ours = ready(
            self.written
                .pointer("/status/conditions")
                .and_then(Value::as_array),
        );
        let seen = self
            .pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone());
        ours.is_some() && seen.is_some() && ours != seen
    }

    async fn patch_status(
        &mut self,
        phase: &str,
        ready: bool,
        containers: Vec<Value>,
        init: Vec<Value>,
        sandbox_ready: bool,
    ) {
        let written = &self.written;
        let transition = |kind: &str, status: &str| {
            written
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|c| {
                    c.iter()
                        .find(|c| c["type"] == kind && c["status"] == status)
                })
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(node::now()))
        };
        let status = pod_status(PodStatusView {
            phase,
            ready,
            initialized: self.init_done,
            sandbox_ready,
            pod_ip: self.pod_ip,
            start_time: &self.start_time,
            containers,
            init_containers: init,
            transition: &transition,
        });
        let patch = json!({"status": status});
        if patch == self.written && !self.ready_overwritten() {
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
}
