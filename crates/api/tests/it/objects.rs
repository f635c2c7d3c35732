//! Defaults, validation and printing of objects whose fields hold anything: every kind in the
//! catalogue, from a template with the fields the kinds read, some of them replaced.

use petset_api::kinds::pod::pod_status;
use petset_api::resources::RESOURCES;
use petset_api::{shape, table, time, validate};
use proptest::prelude::*;
use serde_json::{Value, json};

/// One object with the fields every served kind reads (pods, sets, services, claims, volumes,
/// config maps, secrets, endpoints, events, storage classes, nodes).
fn template() -> Value {
    let container = json!({
        "name": "app", "image": "busybox", "command": ["sleep", "1"], "args": ["x"],
        "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}],
        "env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"cpu": "1"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
        "livenessProbe": {"tcpSocket": {"port": 80}}, "startupProbe": {"httpGet": {"port": "http", "path": "/"}},
        "imagePullPolicy": "IfNotPresent", "securityContext": {"runAsUser": 0}
    });
    let pod_spec = json!({
        "containers": [container.clone()], "initContainers": [container],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "c", "configMap": {"name": "c", "items": [{"key": "a", "path": "a"}]}}],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "nodeName": "n",
        "hostname": "web-0", "subdomain": "web", "dnsPolicy": "ClusterFirst",
        "tolerations": [{"key": "k", "operator": "Exists"}]
    });
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "web-0", "namespace": "default", "generateName": "web-",
            "labels": {"app": "web"}, "annotations": {"a": "b"}, "finalizers": ["f"],
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u", "controller": true}],
            "deletionTimestamp": "2025-01-01T00:00:00Z", "creationTimestamp": "2025-01-01T00:00:00Z"
        },
        "spec": {
            "replicas": 1, "serviceName": "web", "minReadySeconds": 0, "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": pod_spec.clone()},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": 1}},
            "podManagementPolicy": "OrderedReady", "ordinals": {"start": 0},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Delete"},
            "containers": pod_spec["containers"].clone(), "volumes": pod_spec["volumes"].clone(),
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP", "name": "http", "nodePort": 30000}],
            "clusterIP": "None", "clusterIPs": ["None"], "type": "ClusterIP", "sessionAffinity": "None",
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "local-path", "volumeName": "pv", "volumeMode": "Filesystem",
            "capacity": {"storage": "1Gi"}, "hostPath": {"path": "/tmp"}, "local": {"path": "/tmp"},
            "claimRef": {"namespace": "default", "name": "data", "uid": "u"},
            "persistentVolumeReclaimPolicy": "Delete", "podCIDR": "10.0.0.0/24", "unschedulable": false,
            "finalizers": ["kubernetes"]
        },
        "status": {"phase": "Running", "podIP": "10.0.0.2", "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}],
                   "replicas": 1, "readyReplicas": 1, "capacity": {"storage": "1Gi"}},
        "data": {"a": "b"}, "stringData": {"a": "b"}, "binaryData": {"a": "YQ=="}, "type": "Opaque",
        "subsets": [{"addresses": [{"ip": "10.0.0.1", "targetRef": {"kind": "Pod", "name": "web-0"}}], "ports": [{"port": 80}]}],
        "addressType": "IPv4", "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}],
        "involvedObject": {"kind": "Pod", "name": "web-0"}, "reason": "Started", "message": "m",
        "count": 1, "firstTimestamp": "2025-01-01T00:00:00Z", "lastTimestamp": "2025-01-01T00:00:00Z",
        "provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
        "revision": 1, "holderIdentity": "n", "renewTime": "2025-01-01T00:00:00.000000Z"
    })
}

/// Every JSON pointer into `value`, containers and leaves alike.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match value {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    };
    for (token, child) in children {
        let path = format!("{at}/{token}");
        out.push(path.clone());
        pointers(child, path, out);
    }
}

/// The template as one kind, with some of its fields replaced by arbitrary values.
fn object() -> impl Strategy<Value = (usize, Value)> {
    let mut paths = Vec::new();
    pointers(&template(), String::new(), &mut paths);
    (
        0..RESOURCES.len(),
        prop::collection::vec((prop::sample::select(paths), crate::json::value()), 0..6),
    )
        .prop_map(|(resource, replacements)| {
            let mut object = template();
            object["kind"] = json!(RESOURCES[resource].kind);
            object["apiVersion"] = json!(RESOURCES[resource].api_version());
            for (path, value) in replacements {
                if let Some(slot) = object.pointer_mut(&path) {
                    *slot = value;
                }
            }
            (resource, object)
        })
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn defaults_validation_and_printing_never_panic((resource, object) in object()) {
        let resource = &RESOURCES[resource];
        let mut defaulted = object.clone();
        resource.strategy.defaults(&mut defaulted);
        validate::create(resource, &defaulted);
        let mut old = template();
        resource.strategy.defaults(&mut old);
        validate::update(resource, &old, &defaulted);
        validate::update(resource, &defaulted, &old);
        let _ = shape::unknown_fields(resource, &object);
        table::cells(resource, &defaulted, jiff::Timestamp::UNIX_EPOCH);
        pod_status(&defaulted);
    }

    #[test]
    fn any_json_value_as_any_kind_never_panics(resource in 0..RESOURCES.len(), value in crate::json::value()) {
        let resource = &RESOURCES[resource];
        let mut defaulted = value.clone();
        resource.strategy.defaults(&mut defaulted);
        validate::create(resource, &defaulted);
        validate::update(resource, &value, &defaulted);
        let _ = shape::unknown_fields(resource, &value);
        table::cells(resource, &defaulted, jiff::Timestamp::UNIX_EPOCH);
    }

    #[test]
    fn timestamps_and_durations_never_panic(text in "\\PC{0,40}", seconds in any::<i64>()) {
        let _ = time::parse(&text);
        time::human_duration(seconds);
        time::age(Some(&text), jiff::Timestamp::UNIX_EPOCH);
    }
}
