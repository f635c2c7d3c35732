//! VolumeBinding, as upstream's plugin: every claim the pod mounts exists and is not being
//! deleted; an `Immediate` claim is Bound (so the node never starts a pod whose volume does
//! not exist yet) and its volume's node affinity admits the node; a `WaitForFirstConsumer`
//! claim is given the chosen node (`volume.kubernetes.io/selected-node`) and the pod is bound
//! once the provisioner has bound the claim there.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, PodSpec};
use kube::ResourceExt;

use super::filters::{Rejection, Verdict, selects};
use super::snapshot::NodeInfo;
use super::{ClusterObjects, SELECTED_NODE};

/// A claim the pod mounts, as the VolumeBinding plugin sorts it.
pub enum PodClaim {
    Bound(Arc<PersistentVolumeClaim>),
    /// Unbound, of a `WaitForFirstConsumer` class: bound once a node is chosen.
    Delayed(Arc<PersistentVolumeClaim>),
}

impl PodClaim {
    pub fn delayed(&self) -> Option<&PersistentVolumeClaim> {
        match self {
            PodClaim::Delayed(claim) => Some(claim),
            PodClaim::Bound(_) => None,
        }
    }
}

pub fn claim_names(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s: &PodSpec| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

pub fn selected_node(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.annotations().get(SELECTED_NODE).map(String::as_str)
}

/// The pod's claims, or why they keep it from every node (the plugin's PreFilter).
pub fn pod_claims(pod: &Pod, objects: &impl ClusterObjects) -> Result<Vec<PodClaim>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut seen = HashSet::new();
    let mut claims = Vec::new();
    for name in claim_names(pod).filter(|n| seen.insert(*n)) {
        let Some(claim) = objects.claim(&namespace, name) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if bound {
            claims.push(PodClaim::Bound(claim));
        } else if waits_for_first_consumer(&claim, objects) {
            claims.push(PodClaim::Delayed(claim));
        } else {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
    }
    Ok(claims)
}

fn waits_for_first_consumer(claim: &PersistentVolumeClaim, objects: &impl ClusterObjects) -> bool {
    let class = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .and_then(|name| objects.class(name));
    class.and_then(|c| c.volume_binding_mode.clone()).as_deref() == Some("WaitForFirstConsumer")
}

/// The plugin's Filter: every claim can be used on `node`.
pub fn volume_binding(
    node: &NodeInfo,
    claims: &[PodClaim],
    objects: &impl ClusterObjects,
) -> Verdict {
    for claim in claims {
        match claim {
            PodClaim::Bound(claim) => {
                let volume = claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .and_then(|name| objects.volume(name));
                let Some(volume) = volume else {
                    return Err(Rejection::unresolvable(
                        "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
                    ));
                };
                if !volume_admits(&volume, node) {
                    return Err(Rejection::unresolvable(
                        "node(s) had volume node affinity conflict",
                    ));
                }
            }
            PodClaim::Delayed(claim) => {
                if selected_node(claim).is_some_and(|n| n != node.name) {
                    return Err(Rejection::unresolvable(
                        "node(s) didn't find available persistent volumes to bind",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Whether a volume's required node affinity admits `node` (none admits every node).
fn volume_admits(volume: &PersistentVolume, node: &NodeInfo) -> bool {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|selector| selects(selector, node))
}
