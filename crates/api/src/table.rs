//! Server-side printing: the columns `kubectl get` shows for each type, as upstream's printers
//! define them (kubernetes `pkg/printers/internalversion/printers.go`).

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::resources::ResourceType;
use crate::time;

/// One column: name, type and priority (1 = only with `-o wide`).
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub priority: u8,
    pub description: &'static str,
}

const fn col(name: &'static str, kind: &'static str, priority: u8) -> Column {
    Column {
        name,
        kind,
        priority,
        description: "",
    }
}

const NAME: Column = Column {
    name: "Name",
    kind: "string",
    priority: 0,
    description: "Name must be unique within a namespace.",
};
const AGE: Column = Column {
    name: "Age",
    kind: "string",
    priority: 0,
    description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
};

/// The columns of a type.
pub fn columns(resource: &ResourceType) -> Vec<Column> {
    match (resource.group, resource.plural) {
        ("", "pods") => vec![
            NAME,
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "string", 0),
            AGE,
            col("IP", "string", 1),
            col("Node", "string", 1),
            col("Nominated Node", "string", 1),
            col("Readiness Gates", "string", 1),
        ],
        ("apps", "statefulsets") => vec![
            NAME,
            col("Ready", "string", 0),
            AGE,
            col("Containers", "string", 1),
            col("Images", "string", 1),
        ],
        ("", "services") => vec![
            NAME,
            col("Type", "string", 0),
            col("Cluster-IP", "string", 0),
            col("External-IP", "string", 0),
            col("Port(s)", "string", 0),
            AGE,
            col("Selector", "string", 1),
        ],
        ("", "endpoints") => vec![NAME, col("Endpoints", "string", 0), AGE],
        ("discovery.k8s.io", "endpointslices") => vec![
            NAME,
            col("AddressType", "string", 0),
            col("Ports", "string", 0),
            col("Endpoints", "string", 0),
            AGE,
        ],
        ("", "persistentvolumeclaims") => vec![
            NAME,
            col("Status", "string", 0),
            col("Volume", "string", 0),
            col("Capacity", "string", 0),
            col("Access Modes", "string", 0),
            col("StorageClass", "string", 0),
            col("VolumeAttributesClass", "string", 0),
            AGE,
            col("VolumeMode", "string", 1),
        ],
        ("", "persistentvolumes") => vec![
            NAME,
            col("Capacity", "string", 0),
            col("Access Modes", "string", 0),
            col("Reclaim Policy", "string", 0),
            col("Status", "string", 0),
            col("Claim", "string", 0),
            col("StorageClass", "string", 0),
            col("VolumeAttributesClass", "string", 0),
            col("Reason", "string", 0),
            AGE,
            col("VolumeMode", "string", 1),
        ],
        ("storage.k8s.io", "storageclasses") => vec![
            NAME,
            col("Provisioner", "string", 0),
            col("ReclaimPolicy", "string", 0),
            col("VolumeBindingMode", "string", 0),
            col("AllowVolumeExpansion", "string", 0),
            AGE,
        ],
        ("", "configmaps") => vec![NAME, col("Data", "string", 0), AGE],
        ("", "secrets") => vec![
            NAME,
            col("Type", "string", 0),
            col("Data", "string", 0),
            AGE,
        ],
        ("", "serviceaccounts") => vec![NAME, col("Secrets", "string", 0), AGE],
        ("apps", "controllerrevisions") => vec![
            NAME,
            col("Controller", "string", 0),
            col("Revision", "integer", 0),
            AGE,
        ],
        ("", "namespaces") => vec![NAME, col("Status", "string", 0), AGE],
        ("", "nodes") => vec![
            NAME,
            col("Status", "string", 0),
            col("Roles", "string", 0),
            AGE,
            col("Version", "string", 0),
            col("Internal-IP", "string", 1),
            col("External-IP", "string", 1),
            col("OS-Image", "string", 1),
            col("Kernel-Version", "string", 1),
            col("Container-Runtime", "string", 1),
        ],
        ("", "events") => vec![
            col("Last Seen", "string", 0),
            col("Type", "string", 0),
            col("Reason", "string", 0),
            col("Object", "string", 0),
            col("Subobject", "string", 1),
            col("Source", "string", 1),
            col("Message", "string", 0),
            col("First Seen", "string", 1),
            col("Count", "string", 1),
            col("Name", "string", 1),
        ],
        ("coordination.k8s.io", "leases") => vec![NAME, col("Holder", "string", 0), AGE],
        _ => vec![NAME, AGE],
    }
}

/// The column definitions as the Table object carries them.
pub fn column_definitions(resource: &ResourceType) -> Value {
    Value::Array(
        columns(resource)
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.kind,
                    "format": if c.name == "Name" { "name" } else { "" },
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn or_none(value: &str) -> String {
    if value.is_empty() {
        "<none>".to_string()
    } else {
        value.to_string()
    }
}

fn items<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn count(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// The cells of one row.
pub fn cells(resource: &ResourceType, object: &Value, now: Timestamp) -> Vec<Value> {
    let name = json!(text(object, "/metadata/name"));
    let age = json!(time::age(
        object
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
        now
    ));
    match (resource.group, resource.plural) {
        ("", "pods") => pod_cells(object, name, age, now),
        ("apps", "statefulsets") => {
            let (containers, images) =
                containers_and_images(items(object, "/spec/template/spec/containers"));
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    count(object, "/status/readyReplicas"),
                    count(object, "/spec/replicas")
                )),
                age,
                json!(containers),
                json!(images),
            ]
        }
        ("", "services") => service_cells(object, name, age),
        ("", "endpoints") => vec![name, json!(endpoints_summary(object)), age],
        ("discovery.k8s.io", "endpointslices") => {
            let ports: Vec<String> = items(object, "/ports")
                .iter()
                .filter_map(|p| p.get("port").and_then(Value::as_i64))
                .map(|p| p.to_string())
                .collect();
            let addresses: Vec<String> = items(object, "/endpoints")
                .iter()
                .flat_map(|e| items(e, "/addresses").iter())
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            vec![
                name,
                json!(text(object, "/addressType")),
                json!(if ports.is_empty() {
                    "<unset>".to_string()
                } else {
                    ports.join(",")
                }),
                json!(if addresses.is_empty() {
                    "<unset>".to_string()
                } else {
                    truncated_list(&addresses)
                }),
                age,
            ]
        }
        ("", "persistentvolumeclaims") => {
            let phase = if object.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else {
                text(object, "/status/phase")
            };
            let bound = text(object, "/status/phase") == "Bound";
            vec![
                name,
                json!(phase),
                json!(text(object, "/spec/volumeName")),
                json!(if bound {
                    text(object, "/status/capacity/storage")
                } else {
                    ""
                }),
                json!(if bound {
                    access_modes(items(object, "/status/accessModes"))
                } else {
                    String::new()
                }),
                json!(text(object, "/spec/storageClassName")),
                json!(unset(text(object, "/spec/volumeAttributesClassName"))),
                age,
                json!(text(object, "/spec/volumeMode")),
            ]
        }
        ("", "persistentvolumes") => {
            let claim = if object.pointer("/spec/claimRef").is_some() {
                format!(
                    "{}/{}",
                    text(object, "/spec/claimRef/namespace"),
                    text(object, "/spec/claimRef/name")
                )
            } else {
                String::new()
            };
            let phase = if object.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else {
                text(object, "/status/phase")
            };
            vec![
                name,
                json!(text(object, "/spec/capacity/storage")),
                json!(access_modes(items(object, "/spec/accessModes"))),
                json!(text(object, "/spec/persistentVolumeReclaimPolicy")),
                json!(phase),
                json!(claim),
                json!(text(object, "/spec/storageClassName")),
                json!(unset(text(object, "/spec/volumeAttributesClassName"))),
                json!(text(object, "/status/reason")),
                age,
                json!(text(object, "/spec/volumeMode")),
            ]
        }
        ("storage.k8s.io", "storageclasses") => {
            let is_default = text(
                object,
                "/metadata/annotations/storageclass.kubernetes.io~1is-default-class",
            ) == "true";
            let shown = if is_default {
                format!("{} (default)", text(object, "/metadata/name"))
            } else {
                text(object, "/metadata/name").to_string()
            };
            vec![
                json!(shown),
                json!(text(object, "/provisioner")),
                json!(text(object, "/reclaimPolicy")),
                json!(text(object, "/volumeBindingMode")),
                json!(
                    object
                        .get("allowVolumeExpansion")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string()
                ),
                age,
            ]
        }
        ("", "configmaps") => {
            let keys = map_len(object, "/data") + map_len(object, "/binaryData");
            vec![name, json!(keys), age]
        }
        ("", "secrets") => vec![
            name,
            json!(text(object, "/type")),
            json!(map_len(object, "/data")),
            age,
        ],
        ("", "serviceaccounts") => vec![name, json!(items(object, "/secrets").len()), age],
        ("apps", "controllerrevisions") => {
            let controller = items(object, "/metadata/ownerReferences")
                .iter()
                .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
                .map(|owner| {
                    let api_version = text(owner, "/apiVersion");
                    let group = api_version
                        .split_once('/')
                        .map(|(g, _)| g)
                        .unwrap_or_default();
                    let kind = text(owner, "/kind").to_lowercase();
                    let kind = if group.is_empty() {
                        kind
                    } else {
                        format!("{kind}.{group}")
                    };
                    format!("{kind}/{}", text(owner, "/name"))
                })
                .unwrap_or_else(|| "<none>".to_string());
            vec![
                name,
                json!(controller),
                json!(count(object, "/revision")),
                age,
            ]
        }
        ("", "namespaces") => vec![name, json!(text(object, "/status/phase")), age],
        ("", "nodes") => node_cells(object, name, age),
        ("", "events") => event_cells(object, now),
        ("coordination.k8s.io", "leases") => {
            vec![name, json!(text(object, "/spec/holderIdentity")), age]
        }
        _ => vec![name, age],
    }
}

fn unset(value: &str) -> &str {
    if value.is_empty() { "<unset>" } else { value }
}

fn map_len(object: &Value, pointer: &str) -> usize {
    object
        .pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}

fn access_modes(modes: &[Value]) -> String {
    let mut short = Vec::new();
    for (long, abbreviation) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if modes.iter().any(|m| m.as_str() == Some(long)) {
            short.push(abbreviation);
        }
    }
    short.join(",")
}

fn containers_and_images(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// Upstream shows at most three entries and "+ N more...".
fn truncated_list(entries: &[String]) -> String {
    if entries.len() <= 3 {
        entries.join(",")
    } else {
        format!("{} + {} more...", entries[..3].join(","), entries.len() - 3)
    }
}

fn endpoints_summary(object: &Value) -> String {
    let mut entries = Vec::new();
    for subset in items(object, "/subsets") {
        let ports = items(subset, "/ports");
        for address in items(subset, "/addresses") {
            let ip = text(address, "/ip");
            if ports.is_empty() {
                entries.push(ip.to_string());
            }
            for port in ports {
                entries.push(format!("{ip}:{}", count(port, "/port")));
            }
        }
    }
    if entries.is_empty() {
        "<none>".to_string()
    } else {
        truncated_list(&entries)
    }
}

fn service_cells(object: &Value, name: Value, age: Value) -> Vec<Value> {
    let service_type = text(object, "/spec/type");
    let external = match service_type {
        "ExternalName" => text(object, "/spec/externalName").to_string(),
        "LoadBalancer" => {
            let ips: Vec<&str> = items(object, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| text(i, "/ip"))
                .collect();
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            }
        }
        _ => {
            let ips: Vec<&str> = items(object, "/spec/externalIPs")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            or_none(&ips.join(","))
        }
    };
    let ports: Vec<String> = items(object, "/spec/ports")
        .iter()
        .map(|port| {
            let protocol = text(port, "/protocol");
            match port.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) => format!("{}:{node_port}/{protocol}", count(port, "/port")),
                None => format!("{}/{protocol}", count(port, "/port")),
            }
        })
        .collect();
    let selector: Vec<String> = object
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    vec![
        name,
        json!(service_type),
        json!(or_none(text(object, "/spec/clusterIP"))),
        json!(external),
        json!(or_none(&ports.join(","))),
        age,
        json!(or_none(&selector.join(","))),
    ]
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

fn node_cells(node: &Value, name: Value, age: Value) -> Vec<Value> {
    let ready = items(node, "/status/conditions")
        .iter()
        .find(|c| text(c, "/type") == "Ready")
        .map(|c| match text(c, "/status") {
            "True" => "Ready",
            _ => "NotReady",
        })
        .unwrap_or("Unknown");
    let mut status = ready.to_string();
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let address = |kind: &str| {
        items(node, "/status/addresses")
            .iter()
            .find(|a| text(a, "/type") == kind)
            .map(|a| text(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".to_string())
    };
    vec![
        name,
        json!(status),
        json!(or_none(&roles.join(","))),
        age,
        json!(text(node, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(text(node, "/status/nodeInfo/osImage")),
        json!(text(node, "/status/nodeInfo/kernelVersion")),
        json!(text(node, "/status/nodeInfo/containerRuntimeVersion")),
    ]
}

fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first = [
        "/firstTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| event.pointer(p).and_then(Value::as_str));
    let last = ["/lastTimestamp", "/series/lastObservedTime", "/eventTime"]
        .iter()
        .find_map(|p| event.pointer(p).and_then(Value::as_str))
        .or(first);
    let count_cell = event.get("count").and_then(Value::as_i64).unwrap_or(1);
    let object = format!(
        "{}/{}",
        text(event, "/involvedObject/kind").to_lowercase(),
        text(event, "/involvedObject/name")
    );
    let source = if !text(event, "/source/component").is_empty() {
        let host = text(event, "/source/host");
        if host.is_empty() {
            text(event, "/source/component").to_string()
        } else {
            format!("{}, {host}", text(event, "/source/component"))
        }
    } else {
        text(event, "/reportingComponent").to_string()
    };
    let last_seen = if count_cell > 1 {
        format!(
            "{} (x{count_cell} over {})",
            time::age(last, now),
            time::age(first, now)
        )
    } else {
        time::age(last, now)
    };
    vec![
        json!(last_seen),
        json!(text(event, "/type")),
        json!(text(event, "/reason")),
        json!(object),
        json!(text(event, "/involvedObject/fieldPath")),
        json!(source),
        json!(text(event, "/message").trim()),
        json!(time::age(first, now)),
        json!(count_cell),
        json!(text(event, "/metadata/name")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn every_row_has_as_many_cells_as_columns() {
        let now = Timestamp::now();
        for resource in crate::resources::RESOURCES {
            let row = cells(resource, &json!({"metadata": {"name": "x"}}), now);
            assert_eq!(row.len(), columns(resource).len(), "{}", resource.plural);
        }
    }

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
    fn service_row_matches_kubectl() {
        let svc = find("", "v1", "services").expect("served");
        let row = cells(
            svc,
            &json!({"metadata": {"name": "nginx"}, "spec": {"type": "ClusterIP",
                "clusterIP": "None", "ports": [{"port": 80, "protocol": "TCP"}],
                "selector": {"app": "nginx"}}}),
            Timestamp::now(),
        );
        assert_eq!(row[2], "None");
        assert_eq!(row[3], "<none>");
        assert_eq!(row[4], "80/TCP");
        assert_eq!(row[6], "app=nginx");
    }
}
