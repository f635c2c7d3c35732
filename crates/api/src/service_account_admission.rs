//! What upstream's ServiceAccount admission plugin does to a new pod once its ServiceAccount
//! has been looked up (the registry does the looking up, `Admission::ServiceAccount`): unless
//! the pod or its account opt out, every container and init container mounts a projected
//! volume `kube-api-access-<suffix>` with a bound token, the cluster CA and the namespace at
//! the path in-cluster clients read them from.

use serde_json::{Value, json};

/// Where in-cluster clients read the token, `ca.crt` and `namespace`.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The prefix of the token volume's name; a volume with it already is taken as the token's.
pub const VOLUME_PREFIX: &str = "kube-api-access-";

/// The ConfigMap with the cluster CA that every namespace has (root-ca-cert-publisher).
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// The key of the CA bundle in [`ROOT_CA_CONFIG_MAP`].
pub const ROOT_CA_KEY: &str = "ca.crt";

/// The token lifetime the volume asks for: one hour and seven seconds, the value upstream's
/// API server recognises as "written by the admission" and may extend.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// The annotation that marks a mirror pod, whose spec admission never changes.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Whether a pod is a mirror pod (a static pod's reflection), which admission leaves alone.
pub fn is_mirror_pod(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|annotations| annotations.contains_key(MIRROR_POD_ANNOTATION))
}

/// The pod's ServiceAccount name (after defaulting, `default` unless it names another).
pub fn service_account_name(pod: &Value) -> &str {
    pod.pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .unwrap_or("default")
}

/// Whether the token is mounted: the pod's `automountServiceAccountToken` wins, then the
/// account's; both unset means yes.
pub fn should_automount(pod: &Value, account: Option<&Value>) -> bool {
    pod.pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            account
                .and_then(|a| a.get("automountServiceAccountToken"))
                .and_then(Value::as_bool)
        })
        .unwrap_or(true)
}

/// The token volume's projected source, exactly as upstream writes it.
pub fn token_volume_source() -> Value {
    json!({
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": ROOT_CA_KEY, "path": ROOT_CA_KEY}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ]
    })
}

/// Mounts the token volume read-only at [`TOKEN_MOUNT_PATH`] in every container and init
/// container that mounts nothing there, and adds the volume (named with `suffix`, five
/// characters of the `generateName` alphabet) when one of them needs it and the pod has no
/// `kube-api-access-` volume already (whose name the mounts then use).
pub fn mount_token(spec: &mut Value, suffix: &str) {
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|volume| volume.get("name").and_then(Value::as_str))
        .find(|name| name.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let has_volume = existing.is_some();
    let volume_name = existing.unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let mounted = mounts.iter().any(|mount| {
                mount.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH)
            });
            if !mounted {
                mounts.push(
                    json!({"name": volume_name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH}),
                );
                needs_volume = true;
            }
        }
    }
    if has_volume || !needs_volume {
        return;
    }
    if let Some(map) = spec.as_object_mut() {
        let volumes = map.entry("volumes").or_insert_with(|| json!([]));
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(json!({"name": volume_name, "projected": token_volume_source()}));
        }
    }
}

/// Upstream's refusal of a pod whose ServiceAccount does not exist, after `pods "NAME" is
/// forbidden: `.
pub fn missing_account_reason(namespace: &str, account: &str) -> String {
    format!(
        "error looking up service account {namespace}/{account}: serviceaccount {account:?} not found"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Value {
        json!({
            "initContainers": [{"name": "init", "image": "i"}],
            "containers": [{"name": "app", "image": "i"}, {"name": "side", "image": "i",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        })
    }

    #[test]
    fn every_container_mounts_the_projected_token_volume() {
        let mut spec = spec();
        mount_token(&mut spec, "x2b4z");
        let mount = json!({"name": "kube-api-access-x2b4z", "readOnly": true,
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(spec["containers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(
            spec["containers"][1]["volumeMounts"][1], mount,
            "after its own mounts"
        );
        assert_eq!(
            spec["volumes"],
            json!([{"name": "kube-api-access-x2b4z", "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]}}])
        );
    }

    #[test]
    fn a_container_that_mounts_something_at_the_path_keeps_its_own() {
        let mut spec = json!({"containers": [{"name": "app", "image": "i", "volumeMounts": [
            {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}],
            "volumes": [{"name": "mine", "emptyDir": {}}]});
        let before = spec.clone();
        mount_token(&mut spec, "abcde");
        assert_eq!(
            spec, before,
            "no container needs the volume, so none is added"
        );
    }

    #[test]
    fn an_existing_token_volume_is_reused_by_name() {
        let mut spec = json!({"containers": [{"name": "app", "image": "i"}],
            "volumes": [{"name": "kube-api-access-old12", "projected": {"sources": []}}]});
        mount_token(&mut spec, "new34");
        assert_eq!(
            spec["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-old12"
        );
        assert_eq!(spec["volumes"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn the_pods_choice_wins_over_the_accounts_and_both_unset_mounts() {
        let pod = |automount: Value| json!({"spec": {"automountServiceAccountToken": automount}});
        let account = |automount: bool| json!({"automountServiceAccountToken": automount});
        assert!(should_automount(&pod(Value::Null), None));
        assert!(should_automount(&pod(Value::Null), Some(&json!({}))));
        assert!(!should_automount(&pod(Value::Null), Some(&account(false))));
        assert!(!should_automount(&pod(json!(false)), Some(&account(true))));
        assert!(should_automount(&pod(json!(true)), Some(&account(false))));
    }

    #[test]
    fn odd_specs_are_left_without_a_panic() {
        for mut spec in [
            json!(null),
            json!(5),
            json!({"containers": 5}),
            json!({"containers": [1, {"volumeMounts": 3}]}),
            json!({"containers": [{}], "volumes": "x"}),
        ] {
            mount_token(&mut spec, "abcde");
        }
    }

    #[test]
    fn mirror_pods_and_account_names() {
        let mirror = json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}});
        assert!(is_mirror_pod(&mirror));
        assert!(!is_mirror_pod(&json!({})));
        assert_eq!(service_account_name(&json!({})), "default");
        assert_eq!(
            service_account_name(&json!({"spec": {"serviceAccountName": "builder"}})),
            "builder"
        );
        assert_eq!(
            missing_account_reason("team", "builder"),
            r#"error looking up service account team/builder: serviceaccount "builder" not found"#
        );
    }
}
