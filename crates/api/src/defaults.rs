//! Field defaults as upstream's defaulters and admission apply them (they are visible in
//! `-o yaml` and part of StatefulSet revision bytes, so they must match): the parts kinds share
//! (pod specs, in pods and templates). Each kind's own defaults are in its strategy (`kinds/`).

use serde_json::{Map, Value, json};

pub(crate) fn set_default(object: &mut Value, field: &str, value: Value) {
    if let Value::Object(map) = object {
        let slot = map.entry(field.to_string()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

/// The status fields Go's encoder always writes (those without `omitempty`), so that an object
/// no controller has written a status for yet answers them as upstream does (clients read
/// `status.replicas` of a StatefulSet created a moment ago). `always` is a map of fields to
/// their zero values; fields already set are kept.
pub(crate) fn default_status(object: &mut Value, always: Value) {
    set_default(object, "status", Value::Object(Map::new()));
    if let (Some(status), Value::Object(fields)) = (object.get_mut("status"), always) {
        for (field, zero) in fields {
            set_default(status, &field, zero);
        }
    }
}

pub(crate) fn array_mut<'a>(
    object: &'a mut Value,
    field: &str,
) -> impl Iterator<Item = &'a mut Value> {
    object
        .get_mut(field)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
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
            // Upstream's default lifetime of a projected token: one hour.
            if let Some(token) = source.get_mut("serviceAccountToken") {
                set_default(token, "expirationSeconds", json!(3600));
            }
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

/// An empty object, for callers that need one to start from.
pub fn empty() -> Value {
    Value::Object(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_projected_token_lasts_an_hour_unless_it_says_otherwise() {
        let mut spec = json!({"containers": [{"name": "c", "image": "i"}],
        "volumes": [{"name": "t", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token"}},
            {"serviceAccountToken": {"path": "long", "expirationSeconds": 7200}}
        ]}}]});
        pod_spec(&mut spec);
        let sources = &spec["volumes"][0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3600);
        assert_eq!(sources[1]["serviceAccountToken"]["expirationSeconds"], 7200);
        assert_eq!(spec["volumes"][0]["projected"]["defaultMode"], 420);
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
