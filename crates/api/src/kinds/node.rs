//! Nodes (core/v1), registered by their agents.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::json::{items, text};
use crate::kinds::Strategy;
use crate::patch::MergeKeys;
use crate::resources::{ResourceType, entry, status};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, or_none};

pub type Typed = k8s_openapi::api::core::v1::Node;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["no"],
    subresources: &[status("", "v1", "Node")],
    printing: Printing {
        columns: COLUMNS,
        cells: node_cells,
    },
    strategy: &NodeStrategy,
    ..entry("", "Node", "nodes", "node", false, round_trip::<Typed>)
};

const COLUMNS: &[Column] = &[
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
];

pub struct NodeStrategy;

impl Strategy for NodeStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn selectable_field(&self, path: &str) -> bool {
        path == "spec.unschedulable"
    }

    /// A node's addresses merge by their type.
    fn merge_keys(&self) -> MergeKeys {
        &[(&["status", "addresses"], "type")]
    }
}

fn node_cells(node: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::strategic_merge;

    #[test]
    fn addresses_merge_by_type() {
        let node = json!({"status": {"addresses": [
            {"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n"}]}});
        let patch =
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}});
        let merged = strategic_merge(NodeStrategy.merge_keys(), &node, &patch).expect("applies");
        assert_eq!(
            merged["status"]["addresses"],
            json!([{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n"}])
        );
    }
}
