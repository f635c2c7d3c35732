//! Which of a pod's claims hold data on a lost node: claims bound to a volume whose required
//! node affinity admits that node alone (`kubernetes.io/hostname In [node]`, as petset's and
//! rancher's local-path provisioners pin their volumes). Such a claim cannot follow its pod to
//! another node; any other claim can, and is left as it is.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;

use super::decisions::HOSTNAME_LABEL;

/// A claim bound to a volume pinned to a lost node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalClaim {
    pub claim: String,
    pub uid: String,
    pub volume: String,
    /// The lost node's name.
    pub node: String,
}

/// The one hostname every term of the volume's required node affinity pins it to, if there is
/// one: each term (they are alternatives) must require `kubernetes.io/hostname In [h]` with the
/// single value `h`, the same in all. A volume without a required affinity, or one that admits
/// several hosts, is reachable elsewhere as far as this controller can tell.
pub fn pinned_hostname(volume: &PersistentVolume) -> Option<&str> {
    let terms = &volume
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    let mut pinned: Option<&str> = None;
    for term in terms {
        let host = term.match_expressions.iter().flatten().find_map(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            match values {
                [only] if e.key == HOSTNAME_LABEL && e.operator == "In" => Some(only.as_str()),
                _ => None,
            }
        })?;
        match pinned {
            Some(earlier) if earlier != host => return None,
            _ => pinned = Some(host),
        }
    }
    pinned
}

/// The names of the claims a pod mounts, each once.
pub fn claim_names(pod: &Pod) -> Vec<&str> {
    let mut names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// What the claims and volumes look like, from caches or from the API.
pub trait Storage {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>>;
}

/// The pod's claims bound to a volume pinned to one of the lost nodes; `lost` maps each lost
/// node's hostname (`decisions::hostname_of`) to its name.
pub fn local_claims(
    pod: &Pod,
    storage: &impl Storage,
    lost: &HashMap<String, String>,
) -> Vec<LocalClaim> {
    let namespace = pod.namespace().unwrap_or_default();
    claim_names(pod)
        .into_iter()
        .filter_map(|name| {
            let claim = storage.claim(&namespace, name)?;
            let local = local_claim(&claim, storage, lost)?;
            Some(local)
        })
        .collect()
}

/// The claim as a [`LocalClaim`] when it is bound to a volume pinned to a lost node.
pub fn local_claim(
    claim: &PersistentVolumeClaim,
    storage: &impl Storage,
    lost: &HashMap<String, String>,
) -> Option<LocalClaim> {
    let uid = claim.uid()?;
    let volume_name = claim.spec.as_ref()?.volume_name.clone()?;
    let volume = storage.volume(&volume_name)?;
    // Bound both ways: a volume that names another claim holds none of this one's data.
    let bound_to = volume
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref());
    if bound_to.is_some_and(|bound| bound != uid) {
        return None;
    }
    let node = lost.get(pinned_hostname(&volume)?)?;
    Some(LocalClaim {
        claim: claim.name_any(),
        uid,
        volume: volume_name,
        node: node.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn volume(affinity: Value, claim_uid: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pvc-c1"},
            "spec": {"nodeAffinity": affinity,
                     "claimRef": {"namespace": "default", "name": "www-web-0", "uid": claim_uid}}
        }))
        .expect("volume")
    }

    fn hosts(values: Value) -> Value {
        json!({"key": HOSTNAME_LABEL, "operator": "In", "values": values})
    }

    fn pinned(terms: Value) -> Value {
        json!({"required": {"nodeSelectorTerms": terms}})
    }

    #[test]
    fn a_volume_is_local_only_when_every_term_pins_the_same_single_host() {
        let one = pinned(json!([{"matchExpressions": [hosts(json!(["node-a"]))]}]));
        assert_eq!(pinned_hostname(&volume(one, "c1")), Some("node-a"));
        let narrowed = pinned(json!([{"matchExpressions": [
            {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["z1"]},
            hosts(json!(["node-a"]))]}]));
        assert_eq!(pinned_hostname(&volume(narrowed, "c1")), Some("node-a"));
        let same_twice = pinned(json!([
            {"matchExpressions": [hosts(json!(["node-a"]))]},
            {"matchExpressions": [hosts(json!(["node-a"]))]}]));
        assert_eq!(pinned_hostname(&volume(same_twice, "c1")), Some("node-a"));
        for reachable in [
            pinned(json!([{"matchExpressions": [hosts(json!(["node-a", "node-b"]))]}])),
            pinned(json!([
                {"matchExpressions": [hosts(json!(["node-a"]))]},
                {"matchExpressions": [hosts(json!(["node-b"]))]}])),
            pinned(json!([{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "NotIn", "values": ["node-a"]}]}])),
            pinned(json!([{"matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["z1"]}]}])),
            pinned(json!([])),
            Value::Null,
        ] {
            assert_eq!(
                pinned_hostname(&volume(reachable.clone(), "c1")),
                None,
                "{reachable}"
            );
        }
    }

    struct Objects {
        claims: Vec<PersistentVolumeClaim>,
        volumes: Vec<PersistentVolume>,
    }

    impl Storage for Objects {
        fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
            self.claims
                .iter()
                .find(|c| c.name_any() == name && c.namespace().as_deref() == Some(namespace))
                .cloned()
                .map(Arc::new)
        }
        fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
            self.volumes
                .iter()
                .find(|v| v.name_any() == name)
                .cloned()
                .map(Arc::new)
        }
    }

    fn claim(name: &str, uid: &str, volume: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": uid},
            "spec": {"volumeName": volume}
        }))
        .expect("claim")
    }

    fn pod(claims: &[&str]) -> Pod {
        let volumes: Vec<Value> = claims
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"name": format!("v{i}"), "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c"}], "volumes": volumes}
        }))
        .expect("pod")
    }

    fn on_a() -> Value {
        pinned(json!([{"matchExpressions": [hosts(json!(["host-a"]))]}]))
    }

    #[test]
    fn a_pods_claims_are_local_when_bound_both_ways_to_a_volume_on_a_lost_node() {
        let mut elsewhere = volume(
            pinned(json!([{"matchExpressions": [hosts(json!(["host-b"]))]}])),
            "c2",
        );
        elsewhere.metadata.name = Some("pvc-c2".into());
        let mut stolen = volume(on_a(), "someone-else");
        stolen.metadata.name = Some("pvc-c3".into());
        let objects = Objects {
            claims: vec![
                claim("www-web-0", "c1", Some("pvc-c1")),
                claim("logs-web-0", "c2", Some("pvc-c2")),
                claim("odd-web-0", "c3", Some("pvc-c3")),
                claim("pending-web-0", "c4", None),
            ],
            volumes: vec![volume(on_a(), "c1"), elsewhere, stolen],
        };
        let lost: HashMap<String, String> = [("host-a".to_string(), "node-a".to_string())].into();
        let pod = pod(&[
            "www-web-0",
            "logs-web-0",
            "odd-web-0",
            "pending-web-0",
            "missing",
            "www-web-0",
        ]);
        assert_eq!(
            local_claims(&pod, &objects, &lost),
            vec![LocalClaim {
                claim: "www-web-0".into(),
                uid: "c1".into(),
                volume: "pvc-c1".into(),
                node: "node-a".into(),
            }]
        );
        assert_eq!(local_claims(&pod, &objects, &HashMap::new()), Vec::new());
    }
}
