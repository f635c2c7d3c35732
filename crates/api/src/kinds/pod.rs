//! Pods (core/v1): upstream's `pkg/registry/core/pod/strategy.go` and the pod parts of the
//! defaulters, validation and printers.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::{self, set_default};
use crate::error::Cause;
use crate::json::{count, items, text};
use crate::kinds::{Admission, Strategy, set_status};
use crate::resources::{CONNECT_VERBS, PROXY_VERBS, ResourceType, Subresource, entry, status};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, or_none};
use crate::{time, validate};

pub type Typed = k8s_openapi::api::core::v1::Pod;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["po"],
    categories: &["all"],
    subresources: SUBRESOURCES,
    printing: Printing {
        columns: COLUMNS,
        cells: pod_cells,
    },
    strategy: &PodStrategy,
    // `kubectl debug --copy-to` and `debug node/…` create their pod as protobuf.
    protobuf: Some(crate::proto::pod::POD),
    ..entry("", "Pod", "pods", "pod", true, round_trip::<Typed>)
};

const SUBRESOURCES: &[Subresource] = &[
    status("", "v1", "Pod"),
    Subresource {
        name: "log",
        group: "",
        version: "v1",
        kind: "Pod",
        verbs: &["get"],
    },
    Subresource {
        name: "exec",
        group: "",
        version: "v1",
        kind: "PodExecOptions",
        verbs: CONNECT_VERBS,
    },
    Subresource {
        name: "attach",
        group: "",
        version: "v1",
        kind: "PodAttachOptions",
        verbs: CONNECT_VERBS,
    },
    Subresource {
        name: "portforward",
        group: "",
        version: "v1",
        kind: "PodPortForwardOptions",
        verbs: CONNECT_VERBS,
    },
    Subresource {
        name: "proxy",
        group: "",
        version: "v1",
        kind: "PodProxyOptions",
        verbs: PROXY_VERBS,
    },
    // Served so that `kubectl debug` gets a clear refusal (the handler's) rather than a 404
    // it reads as "ephemeral containers are disabled for this cluster".
    Subresource {
        name: "ephemeralcontainers",
        group: "",
        version: "v1",
        kind: "Pod",
        verbs: &["get", "patch", "update"],
    },
    // Upstream lists both: `kubectl drain` evicts only when discovery shows `pods/eviction`
    // (else it deletes).
    Subresource {
        name: "binding",
        group: "",
        version: "v1",
        kind: "Binding",
        verbs: &["create"],
    },
    Subresource {
        name: "eviction",
        group: "policy",
        version: "v1",
        kind: "Eviction",
        verbs: &["create"],
    },
];

const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", 0),
    col("Status", "string", 0),
    col("Restarts", "string", 0),
    AGE,
    col("IP", "string", 1),
    col("Node", "string", 1),
    col("Nominated Node", "string", 1),
    col("Readiness Gates", "string", 1),
];

pub struct PodStrategy;

impl Strategy for PodStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    /// A pod starts Pending, with the QoS class of its containers' resources.
    fn prepare_for_create(&self, pod: &mut Value) {
        let qos = qos_class(pod);
        set_status(pod, json!({"phase": "Pending", "qosClass": qos}));
    }

    fn defaults(&self, pod: &mut Value) {
        if let Some(spec) = pod.get_mut("spec") {
            defaults::pod_spec(spec);
            pod_admission(spec);
        }
    }

    fn validate(&self, pod: &Value) -> Vec<Cause> {
        pod.get("spec")
            .map(|spec| validate::pod_spec(spec, "spec"))
            .unwrap_or_else(|| vec![Cause::required("spec.containers", "")])
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        causes.extend(pod_update(old, new));
        causes
    }

    /// Pods bound to a node are deleted gracefully: the node confirms. Unbound and finished
    /// pods go at once.
    fn grace_period(&self, pod: &Value, requested: Option<i64>) -> i64 {
        let terminal = matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        if !is_bound(pod) || terminal {
            return 0;
        }
        requested
            .or_else(|| {
                pod.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30)
            .max(0)
    }

    /// A terminating pod on a node waits for that node, even with no finalizers left.
    fn kept_without_finalizers(&self, pod: &Value) -> bool {
        is_bound(pod)
            && pod
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|g| g > 0)
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn admission(&self) -> &'static [Admission] {
        &[Admission::ServiceAccount]
    }

    fn selectable_field(&self, path: &str) -> bool {
        matches!(
            path,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        )
    }
}

fn is_bound(pod: &Value) -> bool {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
}

/// Upstream's QoS class from the containers' requests and limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for container in &containers {
        let requests = container
            .pointer("/resources/requests")
            .and_then(Value::as_object);
        let limits = container
            .pointer("/resources/limits")
            .and_then(Value::as_object);
        if requests.is_some_and(|r| !r.is_empty()) || limits.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for resource in ["cpu", "memory"] {
            let limit = limits.and_then(|l| l.get(resource));
            let request = requests.and_then(|r| r.get(resource)).or(limit);
            if limit.is_none() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// What admission adds to pods (not to templates): the service account, scheduling fields and
/// the default not-ready/unreachable tolerations.
fn pod_admission(spec: &mut Value) {
    set_default(spec, "serviceAccountName", json!("default"));
    if let Some(account) = spec.get("serviceAccountName").cloned() {
        set_default(spec, "serviceAccount", account);
    }
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    set_default(spec, "priority", json!(0));
    let tolerations = spec
        .as_object_mut()
        .map(|map| map.entry("tolerations").or_insert_with(|| json!([])));
    if let Some(Value::Array(tolerations)) = tolerations {
        for taint in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        ] {
            // Upstream's DefaultTolerationSeconds: a toleration of this key (or of every key)
            // for NoExecute (or for every effect) already covers the taint.
            let present = tolerations.iter().any(|t| {
                let field = |name| t.get(name).and_then(Value::as_str).unwrap_or_default();
                (field("key") == taint || field("key").is_empty())
                    && (field("effect") == "NoExecute" || field("effect").is_empty())
            });
            if !present {
                tolerations.push(json!({
                    "key": taint,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300
                }));
            }
        }
    }
}

fn pod_update(old: &Value, new: &Value) -> Vec<Cause> {
    // Upstream lets an update change container images, activeDeadlineSeconds, tolerations
    // (additions) and terminationGracePeriodSeconds; the rest of the spec is fixed.
    let unbound = old.pointer("/spec/nodeName").is_none_or(Value::is_null);
    validate::spec_immutable_except(
        old,
        new,
        |spec| {
            for list in ["containers", "initContainers"] {
                if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
                    for container in containers {
                        if let Value::Object(map) = container {
                            map.remove("image");
                        }
                    }
                }
            }
            if let Value::Object(map) = spec {
                for field in [
                    "activeDeadlineSeconds",
                    "tolerations",
                    "terminationGracePeriodSeconds",
                    "schedulingGates",
                ] {
                    map.remove(field);
                }
                // Binding sets the node once.
                if unbound {
                    map.remove("nodeName");
                }
            }
        },
        "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
    )
}

/// The pod STATUS cell, following upstream's `printPod`.
pub fn pod_status(pod: &Value) -> String {
    let mut reason = text(pod, "/status/phase").to_string();
    if !text(pod, "/status/reason").is_empty() {
        reason = text(pod, "/status/reason").to_string();
    }
    let init_statuses = items(pod, "/status/initContainerStatuses");
    let init_total = items(pod, "/spec/initContainers").len();
    let mut initializing = false;
    for (index, status) in init_statuses.iter().enumerate() {
        if let Some(terminated) = status.pointer("/state/terminated")
            && count(terminated, "/exitCode") == 0
        {
            continue;
        }
        initializing = true;
        if let Some(terminated) = status.pointer("/state/terminated") {
            reason = if !text(terminated, "/reason").is_empty() {
                format!("Init:{}", text(terminated, "/reason"))
            } else if count(terminated, "/signal") != 0 {
                format!("Init:Signal:{}", count(terminated, "/signal"))
            } else {
                format!("Init:ExitCode:{}", count(terminated, "/exitCode"))
            };
        } else if !text(status, "/state/waiting/reason").is_empty()
            && text(status, "/state/waiting/reason") != "PodInitializing"
        {
            reason = format!("Init:{}", text(status, "/state/waiting/reason"));
        } else {
            reason = format!("Init:{index}/{init_total}");
        }
        break;
    }
    if !initializing {
        let mut has_running = false;
        for status in items(pod, "/status/containerStatuses").iter().rev() {
            if !text(status, "/state/waiting/reason").is_empty() {
                reason = text(status, "/state/waiting/reason").to_string();
            } else if let Some(terminated) = status.pointer("/state/terminated") {
                reason = if !text(terminated, "/reason").is_empty() {
                    text(terminated, "/reason").to_string()
                } else if count(terminated, "/signal") != 0 {
                    format!("Signal:{}", count(terminated, "/signal"))
                } else {
                    format!("ExitCode:{}", count(terminated, "/exitCode"))
                };
            } else if status.get("ready").and_then(Value::as_bool) == Some(true)
                && status.pointer("/state/running").is_some()
            {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = items(pod, "/status/conditions")
                .iter()
                .any(|c| text(c, "/type") == "Ready" && text(c, "/status") == "True");
            reason = if ready { "Running" } else { "NotReady" }.to_string();
        }
    }
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        reason = if text(pod, "/status/reason") == "NodeLost" {
            "Unknown".to_string()
        } else {
            "Terminating".to_string()
        };
    }
    reason
}

fn pod_cells(pod: &Value, name: Value, age: Value, now: Timestamp) -> Vec<Value> {
    let statuses = items(pod, "/status/containerStatuses");
    let total = items(pod, "/spec/containers").len();
    let ready = statuses
        .iter()
        .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let mut restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    for status in statuses {
        restarts += count(status, "/restartCount");
        if let Some(finished) = status
            .pointer("/lastState/terminated/finishedAt")
            .and_then(Value::as_str)
            .and_then(time::parse)
            && last_restart.is_none_or(|t| finished > t)
        {
            last_restart = Some(finished);
        }
    }
    let restarts = match last_restart {
        Some(at) if restarts > 0 => format!(
            "{restarts} ({} ago)",
            time::human_duration(now.as_second() - at.as_second())
        ),
        _ => restarts.to_string(),
    };
    let gates = items(pod, "/spec/readinessGates");
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = items(pod, "/status/conditions");
        let passed = gates
            .iter()
            .filter(|gate| {
                conditions.iter().any(|c| {
                    text(c, "/type") == text(gate, "/conditionType") && text(c, "/status") == "True"
                })
            })
            .count();
        format!("{passed}/{}", gates.len())
    };
    vec![
        name,
        json!(format!("{ready}/{total}")),
        json!(pod_status(pod)),
        json!(restarts),
        age,
        json!(or_none(text(pod, "/status/podIP"))),
        json!(or_none(text(pod, "/spec/nodeName"))),
        json!(or_none(text(pod, "/status/nominatedNodeName"))),
        json!(gates_cell),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_status_cell() {
        let mut pod = json!({"status": {"phase": "Pending", "containerStatuses": [
            {"ready": false, "state": {"waiting": {"reason": "ContainerCreating"}}}]}});
        assert_eq!(pod_status(&pod), "ContainerCreating");
        pod["status"] = json!({"phase": "Running", "containerStatuses": [
            {"ready": true, "state": {"running": {}}}]});
        assert_eq!(pod_status(&pod), "Running");
        pod["metadata"] = json!({"deletionTimestamp": "2026-01-01T00:00:00Z"});
        assert_eq!(pod_status(&pod), "Terminating");
    }

    #[test]
    fn qos_follows_requests_and_limits() {
        let with = |resources: Value| json!({"spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]}});
        assert_eq!(qos_class(&with(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&with(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&with(json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
    }

    fn admitted_tolerations(tolerations: Value) -> Vec<(String, String, Option<i64>)> {
        let mut spec =
            json!({"containers": [{"name": "c", "image": "i"}], "tolerations": tolerations});
        pod_admission(&mut spec);
        items(&spec, "/tolerations")
            .iter()
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or_default().to_string(),
                    t["effect"].as_str().unwrap_or_default().to_string(),
                    t["tolerationSeconds"].as_i64(),
                )
            })
            .collect()
    }

    #[test]
    fn default_toleration_seconds_unless_the_pod_already_tolerates_the_taint() {
        let defaults = |extra: Vec<(&str, &str, Option<i64>)>| {
            let mut all: Vec<(String, String, Option<i64>)> = extra
                .into_iter()
                .map(|(k, e, s)| (k.to_string(), e.to_string(), s))
                .collect();
            for key in [
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
            ] {
                all.push((key.to_string(), "NoExecute".to_string(), Some(300)));
            }
            all
        };
        assert_eq!(admitted_tolerations(json!([])), defaults(vec![]));
        // A NoSchedule toleration of the key does not cover the NoExecute taint.
        assert_eq!(
            admitted_tolerations(json!([{"key": "node.kubernetes.io/unreachable",
                "operator": "Exists", "effect": "NoSchedule"}])),
            defaults(vec![("node.kubernetes.io/unreachable", "NoSchedule", None)])
        );
        // The pod's own seconds stay; only the other taint gets the default.
        assert_eq!(
            admitted_tolerations(json!([{"key": "node.kubernetes.io/unreachable",
                "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}])),
            vec![
                (
                    "node.kubernetes.io/unreachable".to_string(),
                    "NoExecute".to_string(),
                    Some(1)
                ),
                (
                    "node.kubernetes.io/not-ready".to_string(),
                    "NoExecute".to_string(),
                    Some(300)
                ),
            ]
        );
        // Tolerating everything (no key, no effect) tolerates both.
        assert_eq!(
            admitted_tolerations(json!([{"operator": "Exists"}])),
            vec![(String::new(), String::new(), None)]
        );
    }

    #[test]
    fn only_bound_unfinished_pods_wait_for_their_node() {
        let mut pod = json!({"spec": {"terminationGracePeriodSeconds": 5}});
        assert_eq!(PodStrategy.grace_period(&pod, None), 0);
        pod["spec"]["nodeName"] = json!("node-1");
        assert_eq!(PodStrategy.grace_period(&pod, None), 5);
        assert_eq!(PodStrategy.grace_period(&pod, Some(1)), 1);
        pod["status"] = json!({"phase": "Succeeded"});
        assert_eq!(PodStrategy.grace_period(&pod, None), 0);
    }
}
