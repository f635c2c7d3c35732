//! The `DisruptionTarget` pod condition, which upstream's controllers add before they delete a
//! pod for a reason of their own (taint eviction, preemption, PodGC), so the pod's last status
//! says why it went. Shared by the node lifecycle and node loss controllers.

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Whether the pod has `DisruptionTarget=True` with `reason` already.
pub fn marked(pod: &Pod, reason: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.type_ == "DisruptionTarget"
                    && c.status == "True"
                    && c.reason.as_deref() == Some(reason)
            })
        })
}

/// Adds `DisruptionTarget=True` with `reason` and `message` to the pod's status, as of now,
/// unless it has it; answers the pod as written (`None`: it had it).
pub async fn mark(
    pods: &Api<Pod>,
    pod: &Pod,
    reason: &str,
    message: &str,
) -> Result<Option<Pod>, kube::Error> {
    if marked(pod, reason) {
        return Ok(None);
    }
    let patch = json!({"status": {"conditions": [{
        "type": "DisruptionTarget", "status": "True", "reason": reason, "message": message,
        "lastTransitionTime": petset_api::time::format(jiff::Timestamp::now())}]}});
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await
    .map(Some)
}
