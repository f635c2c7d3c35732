//! Field defaults, per kind, as upstream's defaulters and admission apply them (they are visible
//! in `-o yaml` and part of StatefulSet revision bytes, so they must match).

use serde_json::{Map, Value, json};

/// Fills in the defaults of an object of `kind` about to be stored.
pub fn apply(kind: &str, object: &mut Value) {
    match kind {
        "Pod" => {
            if let Some(spec) = object.get_mut("spec") {
                pod_spec(spec);
                pod_admission(spec);
            }
        }
        "StatefulSet" => statefulset(object),
        "Service" => {
            if let Some(spec) = object.get_mut("spec") {
                service_spec(spec);
            }
        }
        "PersistentVolumeClaim" => {
            if let Some(spec) = object.get_mut("spec") {
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        "PersistentVolume" => {
            if let Some(spec) = object.get_mut("spec") {
                set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        "Namespace" => {
            set_default(object, "spec", json!({"finalizers": ["kubernetes"]}));
        }
        "StorageClass" => {
            set_default(object, "reclaimPolicy", json!("Delete"));
            set_default(object, "volumeBindingMode", json!("Immediate"));
        }
        "Secret" => set_default(object, "type", json!("Opaque")),
        "Endpoints" => {
            for subset in array_mut(object, "subsets") {
                for port in array_mut(subset, "ports") {
                    set_default(port, "protocol", json!("TCP"));
                }
            }
        }
        "EndpointSlice" => {
            for port in array_mut(object, "ports") {
                set_default(port, "protocol", json!("TCP"));
            }
        }
        _ => {}
    }
}

fn set_default(object: &mut Value, field: &str, value: Value) {
    if let Value::Object(map) = object {
        let slot = map.entry(field.to_string()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

fn array_mut<'a>(object: &'a mut Value, field: &str) -> impl Iterator<Item = &'a mut Value> {
    object
        .get_mut(field)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

fn statefulset(object: &mut Value) {
    let Some(spec) = object.get_mut("spec") else {
        return;
    };
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy_was_empty = spec
        .pointer("/updateStrategy/type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if strategy_was_empty {
        set_default(spec, "updateStrategy", json!({}));
        // Only an object takes a type: indexing anything else would panic on a user's input.
        if let Some(strategy) = spec.get_mut("updateStrategy").filter(|s| s.is_object()) {
            strategy["type"] = json!("RollingUpdate");
            set_default(strategy, "rollingUpdate", json!({}));
        }
    }
    if let Some(rolling) = spec.pointer_mut("/updateStrategy/rollingUpdate")
        && spec_type_is_rolling(rolling)
    {
        set_default(rolling, "partition", json!(0));
    }
    set_default(spec, "persistentVolumeClaimRetentionPolicy", json!({}));
    if let Some(policy) = spec.get_mut("persistentVolumeClaimRetentionPolicy") {
        set_default(policy, "whenDeleted", json!("Retain"));
        set_default(policy, "whenScaled", json!("Retain"));
    }
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "minReadySeconds", json!(0));
    if let Some(template_spec) = spec.pointer_mut("/template/spec") {
        pod_spec(template_spec);
    }
    for claim in array_mut(spec, "volumeClaimTemplates") {
        set_default(claim, "apiVersion", json!("v1"));
        set_default(claim, "kind", json!("PersistentVolumeClaim"));
        if let Some(claim_spec) = claim.get_mut("spec") {
            set_default(claim_spec, "volumeMode", json!("Filesystem"));
        }
        set_default(claim, "status", json!({"phase": "Pending"}));
    }
}

/// `rollingUpdate` is only defaulted as an object; anything else is left for validation.
fn spec_type_is_rolling(rolling: &Value) -> bool {
    rolling.is_object()
}

/// The defaults every pod spec gets, in pods and in templates.
pub fn pod_spec(spec: &mut Value) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    for field in ["initContainers", "containers"] {
        for container in array_mut(spec, field) {
            container_defaults(container);
        }
    }
    for volume in array_mut(spec, "volumes") {
        volume_defaults(volume);
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
            let present = tolerations
                .iter()
                .any(|t| t.get("key").and_then(Value::as_str) == Some(taint));
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

fn container_defaults(container: &mut Value) {
    let image = container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    set_default(container, "imagePullPolicy", json!(pull_policy(&image)));
    set_default(
        container,
        "terminationMessagePath",
        json!("/dev/termination-log"),
    );
    set_default(container, "terminationMessagePolicy", json!("File"));
    set_default(container, "resources", json!({}));
    for port in array_mut(container, "ports") {
        set_default(port, "protocol", json!("TCP"));
    }
    for env in array_mut(container, "env") {
        if let Some(source) = env.get_mut("valueFrom") {
            selector_defaults(source);
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = container.get_mut(probe) {
            set_default(probe, "timeoutSeconds", json!(1));
            set_default(probe, "periodSeconds", json!(10));
            set_default(probe, "successThreshold", json!(1));
            set_default(probe, "failureThreshold", json!(3));
            if let Some(http) = probe.get_mut("httpGet") {
                set_default(http, "path", json!("/"));
                set_default(http, "scheme", json!("HTTP"));
            }
        }
    }
}

/// `Always` for `:latest` or an untagged image, otherwise `IfNotPresent`.
pub fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// A downward-API selector (an env var's `valueFrom` or a volume item): `fieldRef` names
/// `apiVersion: v1` unless it says otherwise, and `resourceFieldRef` shows its divisor, as
/// upstream's wire form does.
fn selector_defaults(source: &mut Value) {
    if let Some(field) = source.get_mut("fieldRef") {
        set_default(field, "apiVersion", json!("v1"));
    }
    if let Some(resource) = source.get_mut("resourceFieldRef") {
        set_default(resource, "divisor", json!("0"));
    }
}

fn volume_defaults(volume: &mut Value) {
    for source in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(source) = volume.get_mut(source) {
            set_default(source, "defaultMode", json!(420));
        }
    }
    if let Some(downward) = volume.get_mut("downwardAPI") {
        for item in array_mut(downward, "items") {
            selector_defaults(item);
        }
    }
    if let Some(projected) = volume.get_mut("projected") {
        for source in array_mut(projected, "sources") {
            if let Some(downward) = source.get_mut("downwardAPI") {
                for item in array_mut(downward, "items") {
                    selector_defaults(item);
                }
            }
        }
    }
    if let Some(host_path) = volume.get_mut("hostPath") {
        set_default(host_path, "type", json!(""));
    }
}

fn service_spec(spec: &mut Value) {
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
    set_default(spec, "ipFamilies", json!(["IPv4"]));
    for port in array_mut(spec, "ports") {
        set_default(port, "protocol", json!("TCP"));
        if let Some(number) = port.get("port").cloned() {
            set_default(port, "targetPort", number);
        }
    }
}

/// An empty object, for callers that need one to start from.
pub fn empty() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statefulset_defaults_match_upstream() {
        let mut sts = json!({"spec": {"serviceName": "nginx", "selector": {},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx-slim:0.8",
                "ports": [{"containerPort": 80}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}});
        apply("StatefulSet", &mut sts);
        let spec = &sts["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"],
            "Retain"
        );
        let container = &spec["template"]["spec"]["containers"][0];
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(container["ports"][0]["protocol"], "TCP");
        assert_eq!(
            spec["volumeClaimTemplates"][0]["kind"],
            "PersistentVolumeClaim"
        );
        assert!(spec["template"]["spec"].get("serviceAccountName").is_none());
    }

    #[test]
    fn explicit_rolling_update_without_parameters_gets_no_partition() {
        let mut sts = json!({"spec": {"updateStrategy": {"type": "RollingUpdate"}}});
        apply("StatefulSet", &mut sts);
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate"})
        );
    }

    #[test]
    fn downward_selectors_get_upstreams_defaults() {
        let mut spec = json!({
            "containers": [{"name": "c", "image": "busybox:1.28", "env": [
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
                {"name": "OLD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}
            ]}],
            "volumes": [{"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}
            ]}}]
        });
        pod_spec(&mut spec);
        let env = &spec["containers"][0]["env"];
        assert_eq!(env[0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(env[1]["valueFrom"]["resourceFieldRef"]["divisor"], "0");
        assert_eq!(env[2]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(
            spec["volumes"][0]["downwardAPI"]["items"][0]["fieldRef"]["apiVersion"],
            "v1"
        );
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(
            pull_policy("registry.k8s.io/nginx-slim:0.8"),
            "IfNotPresent"
        );
    }
}
