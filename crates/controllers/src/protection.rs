//! Storage-object-in-use protection, as upstream's pvc-protection and pv-protection
//! controllers: a claim that is deleted while a pod still uses it stays (`Terminating`, data
//! intact) until no pod uses it, and a volume stays while it is bound. The API server adds the
//! finalizers on create; this controller adds them to objects that lack them (made before) and
//! removes them once the object is no longer in use. `claim_step` and `volume_step` decide;
//! the async code reads, confirms with the API before letting a claim go, and writes.

use petset_informer::finalizers::{add_finalizer, remove_finalizer};
use std::borrow::Borrow;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};

use crate::cache::{Cache, Cached};
use crate::queue::Queue;

pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// What one reconcile looks at.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    Claim {
        namespace: String,
        name: String,
    },
    Volume(String),
    /// Everything: after a watch started over, when deletions may have been missed.
    All,
}

/// Runs both controllers until the task is aborted.
pub async fn run(client: Client) {
    let (queue, mut keys) = Queue::<Key>::new();
    let mut helpers = tokio::task::JoinSet::new();
    let claims = follow(
        &mut helpers,
        &client,
        &queue,
        |claim: &PersistentVolumeClaim| vec![claim_key(claim)],
    );
    let volumes = follow(
        &mut helpers,
        &client,
        &queue,
        |volume: &PersistentVolume| vec![Key::Volume(volume.name_any())],
    );
    // A pod that changes or goes may free the claims it names.
    let pods = follow(&mut helpers, &client, &queue, |pod: &Pod| {
        let namespace = pod.namespace().unwrap_or_default();
        claim_names(pod)
            .map(|name| Key::Claim {
                namespace: namespace.clone(),
                name: name.to_string(),
            })
            .collect()
    });
    claims.ready().await;
    volumes.ready().await;
    pods.ready().await;
    let views = Views {
        claims,
        volumes,
        pods,
    };
    while let Some(key) = keys.recv().await {
        queue.taken(&key);
        let keys = match &key {
            Key::All => views.every_key(),
            one => vec![one.clone()],
        };
        for one in keys {
            if let Err(error) = reconcile(&client, &views, &one).await {
                tracing::debug!(%error, ?one, "storage protection sync failed; retrying");
                queue.add_after(one, std::time::Duration::from_millis(500));
            }
        }
    }
}

/// A cache of every `K`, queueing the keys `keys` names for each change (and everything after
/// a relist).
fn follow<K: Cached>(
    helpers: &mut tokio::task::JoinSet<()>,
    client: &Client,
    queue: &std::sync::Arc<Queue<Key>>,
    keys: fn(&K) -> Vec<Key>,
) -> Cache<K> {
    Cache::follow_into(helpers, client, queue, keys, Key::All)
}

struct Views {
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    pods: Cache<Pod>,
}

impl Views {
    fn every_key(&self) -> Vec<Key> {
        let claims = self.claims.store().state();
        let volumes = self.volumes.store().state();
        claims
            .iter()
            .map(|c| claim_key(c))
            .chain(volumes.iter().map(|v| Key::Volume(v.name_any())))
            .collect()
    }
}

fn claim_key(claim: &PersistentVolumeClaim) -> Key {
    Key::Claim {
        namespace: claim.namespace().unwrap_or_default(),
        name: claim.name_any(),
    }
}

/// The claims a pod mounts.
fn claim_names(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

/// A pod uses a claim it mounts from the moment it is bound to a node until it is gone or has
/// finished: pending (starting), running and terminating pods all count. A pod that waits for a
/// node does not, as upstream: the scheduler never binds a pod to a claim being deleted, and
/// counting it would deadlock a StatefulSet whose pod was re-created onto the old claim (the
/// claim must go so the controller can make a new one).
fn uses(pod: &Pod, claim: &str) -> bool {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let finished = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    scheduled && !finished && claim_names(pod).any(|name| name == claim)
}

/// What protection does for one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Nothing,
    /// It lacks its finalizer (made before the API server added them).
    Protect,
    /// It is deleted and no longer in use: its finalizer goes. For a claim this lets its data
    /// go, so the cache's word that no pod uses it is confirmed with the API first.
    LetGo,
}

/// What a claim needs, given the pods of its namespace.
pub fn claim_step(claim: &PersistentVolumeClaim, pods: &[impl Borrow<Pod>]) -> Step {
    let protected = has(claim.finalizers(), PVC_PROTECTION);
    if claim.metadata.deletion_timestamp.is_none() {
        return if protected {
            Step::Nothing
        } else {
            Step::Protect
        };
    }
    let name = claim.name_any();
    if !protected || pods.iter().any(|p| uses(p.borrow(), &name)) {
        return Step::Nothing;
    }
    Step::LetGo
}

/// What a volume needs: it is kept while Bound.
pub fn volume_step(volume: &PersistentVolume) -> Step {
    let protected = has(volume.finalizers(), PV_PROTECTION);
    if volume.metadata.deletion_timestamp.is_none() {
        return if protected {
            Step::Nothing
        } else {
            Step::Protect
        };
    }
    let bound = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if protected && !bound {
        Step::LetGo
    } else {
        Step::Nothing
    }
}

async fn reconcile(client: &Client, views: &Views, key: &Key) -> Result<(), kube::Error> {
    match key {
        Key::Claim { namespace, name } => {
            let Some(claim) = views
                .claims
                .store()
                .get(&ObjectRef::new(name).within(namespace))
            else {
                return Ok(());
            };
            let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
            match claim_step(&claim, &views.pods.in_namespace(namespace)) {
                Step::Nothing => Ok(()),
                Step::Protect => add_finalizer(&api, claim.as_ref(), PVC_PROTECTION).await,
                Step::LetGo => {
                    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
                    let live = pods.list(&ListParams::default()).await?.items;
                    if claim_step(&claim, &live) != Step::LetGo {
                        return Ok(());
                    }
                    tracing::info!(
                        namespace,
                        claim = name,
                        "claim no longer in use; letting it go"
                    );
                    remove_finalizer(&api, claim.as_ref(), PVC_PROTECTION).await
                }
            }
        }
        Key::Volume(name) => {
            let Some(volume) = views.volumes.store().get(&ObjectRef::new(name)) else {
                return Ok(());
            };
            let api: Api<PersistentVolume> = Api::all(client.clone());
            match volume_step(&volume) {
                Step::Nothing => Ok(()),
                Step::Protect => add_finalizer(&api, volume.as_ref(), PV_PROTECTION).await,
                Step::LetGo => remove_finalizer(&api, volume.as_ref(), PV_PROTECTION).await,
            }
        }
        Key::All => Ok(()),
    }
}

fn has(finalizers: &[String], finalizer: &str) -> bool {
    finalizers.iter().any(|f| f == finalizer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(phase: &str, claim: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}], "nodeName": "node-1",
                     "volumes": [{"name": "www", "persistentVolumeClaim": {"claimName": claim}}]},
            "status": {"phase": phase}
        }))
        .expect("pod")
    }

    fn deleted<K: kube::Resource>(mut object: K) -> K {
        object.meta_mut().deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        object
    }

    fn claim(finalizers: &[&str]) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "www-web-0", "namespace": "default", "finalizers": finalizers},
        }))
        .expect("claim")
    }

    fn volume(finalizers: &[&str], phase: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pvc-1", "finalizers": finalizers},
            "status": {"phase": phase},
        }))
        .expect("volume")
    }

    #[test]
    fn a_claim_made_without_its_finalizer_gets_it() {
        let no_pods: [Pod; 0] = [];
        assert_eq!(claim_step(&claim(&[]), &no_pods), Step::Protect);
        assert_eq!(
            claim_step(&claim(&[PVC_PROTECTION]), &no_pods),
            Step::Nothing
        );
    }

    #[test]
    fn a_deleted_claim_is_let_go_only_once_no_pod_uses_it() {
        let protected = deleted(claim(&[PVC_PROTECTION]));
        let running = [pod("Running", "www-web-0")];
        assert_eq!(claim_step(&protected, &running), Step::Nothing);
        let finished = [pod("Succeeded", "www-web-0"), pod("Running", "other")];
        assert_eq!(claim_step(&protected, &finished), Step::LetGo);
        let unprotected = deleted(claim(&["example.com/other"]));
        assert_eq!(claim_step(&unprotected, &finished), Step::Nothing);
    }

    #[test]
    fn a_deleted_volume_is_let_go_once_it_is_no_longer_bound() {
        assert_eq!(volume_step(&volume(&[], "Bound")), Step::Protect);
        assert_eq!(
            volume_step(&deleted(volume(&[PV_PROTECTION], "Bound"))),
            Step::Nothing
        );
        assert_eq!(
            volume_step(&deleted(volume(&[PV_PROTECTION], "Released"))),
            Step::LetGo
        );
    }

    #[test]
    fn scheduled_pods_use_their_claims_until_they_finish() {
        for phase in ["Pending", "Running", ""] {
            assert!(uses(&pod(phase, "www-web-0"), "www-web-0"), "{phase}");
        }
        assert!(!uses(&pod("Running", "www-web-0"), "www-web-1"));
        for phase in ["Succeeded", "Failed"] {
            assert!(!uses(&pod(phase, "www-web-0"), "www-web-0"), "{phase}");
        }
        let mut waiting = pod("Pending", "www-web-0");
        waiting.spec.as_mut().expect("spec").node_name = None;
        assert!(!uses(&waiting, "www-web-0"), "a pod not on a node yet");
    }
}
