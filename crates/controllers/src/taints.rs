//! Writing a Node's taints, which two controllers share (node lifecycle's `not-ready` and
//! `unreachable`, node loss's `petset.dev/fenced`): each writes the whole list it computed
//! from the Node as read, so the write carries that resourceVersion, and a Node changed
//! meanwhile (the other controller's taint, a heartbeat) fails with a conflict instead of
//! losing that change; the writer looks again at its next pass.

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Sets the node's taints to `taints` if it is still as read; answers the Node as written.
pub async fn write(nodes: &Api<Node>, node: &Node, taints: &[Taint]) -> Result<Node, kube::Error> {
    let patch = json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "spec": {"taints": taints},
    });
    nodes
        .patch(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
}
