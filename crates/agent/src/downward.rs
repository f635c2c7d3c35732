//! The downward API: a pod's fields (`fieldRef`) and a container's resources
//! (`resourceFieldRef`) as the kubelet gives them to env vars and downward-API volumes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use serde_json::Value;

use crate::quantity::Quantity;

/// A pod field (`metadata.name`, `metadata.labels['app']`, `status.podIP`, …). A whole label or
/// annotation map is one `key="value"` per line, sorted, as in a downward-API volume.
pub fn field_value(pod: &Value, path: &str) -> String {
    for map in ["labels", "annotations"] {
        let maps = pod.pointer(&format!("/metadata/{map}"));
        if path == format!("metadata.{map}") {
            return maps
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
        }
        if let Some(key) = path
            .strip_prefix(&format!("metadata.{map}['"))
            .and_then(|k| k.strip_suffix("']"))
        {
            return maps
                .and_then(|m| m.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
        }
    }
    // The lists are given as the kubelet joins them: comma-separated addresses.
    for (list, field) in [("status.podIPs", "podIPs"), ("status.hostIPs", "hostIPs")] {
        if path == list {
            return pod
                .pointer(&format!("/status/{field}"))
                .and_then(Value::as_array)
                .map(|ips| {
                    ips.iter()
                        .filter_map(|ip| ip.get("ip").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
        }
    }
    let known = [
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "spec.nodeName",
        "spec.serviceAccountName",
        "status.podIP",
        "status.hostIP",
    ];
    if !known.contains(&path) {
        return String::new();
    }
    pod.pointer(&format!("/{}", path.replace('.', "/")))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// What the node offers pods, which stands in for a limit a container does not set.
#[derive(Debug, Clone, Default)]
pub struct Allocatable {
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
    pub ephemeral_storage: Option<Quantity>,
}

/// A container's resource as the downward API gives it (`limits.memory` with divisor `1Mi`
/// is the limit in MiB, rounded up). A limit the container does not set is the node's
/// allocatable amount; a request it does not set is its limit when it sets one (as the API
/// defaults it), else 0.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    allocatable: &Allocatable,
) -> Result<String, String> {
    let divisor = match divisor.map(str::trim).filter(|d| !d.is_empty()) {
        None => Quantity::from_units(1),
        Some(text) => {
            let parsed = Quantity::parse(text)
                .ok_or_else(|| format!("invalid divisor {text:?} for resource {resource:?}"))?;
            if parsed.is_zero() {
                Quantity::from_units(1)
            } else {
                parsed
            }
        }
    };
    let resources = container.resources.clone().unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    let requests = resources.requests.unwrap_or_default();
    let read = |map: &BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
                name: &str| { map.get(name).and_then(|q| Quantity::parse(&q.0)) };
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {resource}"))?;
    let node_amount = match name {
        "cpu" => allocatable.cpu,
        "memory" => allocatable.memory,
        "ephemeral-storage" => allocatable.ephemeral_storage,
        _ => return Err(format!("unsupported container resource : {resource}")),
    };
    let amount = match kind {
        "limits" => read(&limits, name).or(node_amount),
        "requests" => read(&requests, name).or_else(|| read(&limits, name)),
        _ => return Err(format!("unsupported container resource : {resource}")),
    }
    .unwrap_or(Quantity::from_units(0));
    // CPU divides in millicores, the others in whole units; both round up.
    let value = if name == "cpu" {
        let divisor_millis = divisor.milli_value();
        if divisor_millis == 0 {
            return Err(format!("invalid divisor for resource {resource:?}"));
        }
        let millis = amount.milli_value();
        Quantity::from_units(millis).ceil_div(Quantity::from_units(divisor_millis))
    } else {
        Quantity::from_units(amount.value()).ceil_div(Quantity::from_units(divisor.value()))
    };
    value
        .map(|v| v.to_string())
        .ok_or_else(|| format!("invalid divisor for resource {resource:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn downward_fields_come_from_the_pod() {
        let pod = json!({"metadata": {"name": "web-0", "namespace": "default",
            "labels": {"app": "nginx", "tier": "web"}}, "spec": {"nodeName": "n1"},
            "status": {"podIPs": [{"ip": "10.244.0.2"}, {"ip": "fd00::2"}]}});
        assert_eq!(field_value(&pod, "metadata.name"), "web-0");
        assert_eq!(field_value(&pod, "spec.nodeName"), "n1");
        assert_eq!(field_value(&pod, "metadata.labels['app']"), "nginx");
        assert_eq!(
            field_value(&pod, "metadata.labels"),
            "app=\"nginx\"\ntier=\"web\""
        );
        assert_eq!(field_value(&pod, "status.podIP"), "");
        assert_eq!(field_value(&pod, "status.podIPs"), "10.244.0.2,fd00::2");
        assert_eq!(field_value(&pod, "metadata.generation"), "");
    }

    fn container(resources: Value) -> Container {
        serde_json::from_value(json!({"name": "c", "resources": resources})).expect("container")
    }

    fn node() -> Allocatable {
        Allocatable {
            cpu: Quantity::parse("2"),
            memory: Quantity::parse("4Gi"),
            ephemeral_storage: Quantity::parse("10Gi"),
        }
    }

    #[test]
    fn limits_and_requests_with_divisors() {
        let c = container(json!({"limits": {"cpu": "500m", "memory": "128Mi",
            "ephemeral-storage": "1Gi"}, "requests": {"cpu": "250m", "memory": "64Mi"}}));
        let value = |resource: &str, divisor: Option<&str>| {
            resource_value(&c, resource, divisor, &node()).expect(resource)
        };
        assert_eq!(value("limits.cpu", None), "1");
        assert_eq!(value("limits.cpu", Some("1m")), "500");
        assert_eq!(value("requests.cpu", Some("1m")), "250");
        assert_eq!(value("requests.cpu", Some("0")), "1");
        assert_eq!(value("limits.memory", None), "134217728");
        assert_eq!(value("limits.memory", Some("1Mi")), "128");
        assert_eq!(value("limits.memory", Some("1M")), "135");
        assert_eq!(value("requests.memory", Some("1Mi")), "64");
        assert_eq!(value("limits.ephemeral-storage", Some("1Mi")), "1024");
        // No ephemeral-storage request: it is the limit, as the API defaults it.
        assert_eq!(value("requests.ephemeral-storage", Some("1Gi")), "1");
    }

    #[test]
    fn unset_limits_are_the_nodes_allocatable_and_unset_requests_zero() {
        let c = container(json!({}));
        let value = |resource: &str, divisor| {
            resource_value(&c, resource, divisor, &node()).expect("value")
        };
        assert_eq!(value("limits.cpu", None), "2");
        assert_eq!(value("limits.cpu", Some("1m")), "2000");
        assert_eq!(value("limits.memory", Some("1Mi")), "4096");
        assert_eq!(value("limits.ephemeral-storage", Some("1Gi")), "10");
        assert_eq!(value("requests.cpu", None), "0");
        assert_eq!(value("requests.memory", None), "0");
    }

    #[test]
    fn unknown_resources_and_bad_divisors_are_errors() {
        let c = container(json!({}));
        assert_eq!(
            resource_value(&c, "limits.gpu", None, &node()),
            Err("unsupported container resource : limits.gpu".into())
        );
        assert!(resource_value(&c, "limits.memory", Some("lots"), &node()).is_err());
        assert!(resource_value(&c, "memory", None, &node()).is_err());
        assert!(resource_value(&c, "limits.cpu", Some("1n"), &node()).is_ok());
    }
}
