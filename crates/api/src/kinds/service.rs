//! Services (core/v1): upstream's `pkg/registry/core/service/strategy.go` and the Service
//! parts of the defaulters, validation and printers. ClusterIPs are allocated by the registry
//! (admission `ClusterIp`), which needs the cluster's state.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::{array_mut, default_status, set_default};
use crate::error::Cause;
use crate::json::{count, items, text};
use crate::kinds::{Admission, NameRule, Strategy};
use crate::names;
use crate::patch::MergeKeys;
use crate::proto::{CONDITION, Field, Kind, OBJECT_META, f, many};
use crate::resources::{PROXY_VERBS, ResourceType, Subresource, entry, status};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, or_none};

pub type Typed = k8s_openapi::api::core::v1::Service;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["svc"],
    categories: &["all"],
    subresources: &[
        status("", "v1", "Service"),
        Subresource {
            name: "proxy",
            group: "",
            version: "v1",
            kind: "ServiceProxyOptions",
            verbs: PROXY_VERBS,
        },
    ],
    printing: Printing {
        columns: COLUMNS,
        cells: service_cells,
    },
    strategy: &ServiceStrategy,
    protobuf: Some(SERVICE),
    ..entry(
        "",
        "Service",
        "services",
        "service",
        true,
        round_trip::<Typed>,
    )
};

/// The protobuf layout kubectl's imperative `create` sends (upstream's `generated.proto`).
/// `appProtocol` is a Go pointer.
const SERVICE_PORT: &[Field] = &[
    f(1, "name", Kind::String),
    f(2, "protocol", Kind::String),
    f(3, "port", Kind::Int),
    f(4, "targetPort", Kind::IntOrString),
    f(5, "nodePort", Kind::Int),
    f(6, "appProtocol", Kind::OptionalString),
];

/// core/v1 ServiceSpec. The fields added since dual-stack (`ipFamilyPolicy`,
/// `allocateLoadBalancerNodePorts`, `loadBalancerClass`, `internalTrafficPolicy`,
/// `trafficDistribution`) are Go pointers, so their zero (e.g. `false`) is a value.
const SERVICE_SPEC: &[Field] = &[
    many(1, "ports", Kind::Message(SERVICE_PORT)),
    f(2, "selector", Kind::StringMap),
    f(3, "clusterIP", Kind::String),
    f(4, "type", Kind::String),
    many(5, "externalIPs", Kind::String),
    f(7, "sessionAffinity", Kind::String),
    f(8, "loadBalancerIP", Kind::String),
    many(9, "loadBalancerSourceRanges", Kind::String),
    f(10, "externalName", Kind::String),
    f(11, "externalTrafficPolicy", Kind::String),
    f(12, "healthCheckNodePort", Kind::Int),
    f(13, "publishNotReadyAddresses", Kind::Bool),
    f(
        14,
        "sessionAffinityConfig",
        Kind::Message(&[f(
            1,
            "clientIP",
            Kind::Message(&[f(1, "timeoutSeconds", Kind::OptionalInt)]),
        )]),
    ),
    f(17, "ipFamilyPolicy", Kind::OptionalString),
    many(18, "clusterIPs", Kind::String),
    many(19, "ipFamilies", Kind::String),
    f(20, "allocateLoadBalancerNodePorts", Kind::OptionalBool),
    f(21, "loadBalancerClass", Kind::OptionalString),
    f(22, "internalTrafficPolicy", Kind::OptionalString),
    f(23, "trafficDistribution", Kind::OptionalString),
];

/// core/v1 PortStatus (a load balancer point's port; `error` is a pointer).
const PORT_STATUS: &[Field] = &[
    f(1, "port", Kind::Int),
    f(2, "protocol", Kind::String),
    f(3, "error", Kind::OptionalString),
];

/// core/v1 ServiceStatus: the load balancer's points (`ipMode` a pointer) and metav1 conditions.
const SERVICE_STATUS: &[Field] = &[
    f(
        1,
        "loadBalancer",
        Kind::Message(&[many(
            1,
            "ingress",
            Kind::Message(&[
                f(1, "ip", Kind::String),
                f(2, "hostname", Kind::String),
                f(3, "ipMode", Kind::OptionalString),
                many(4, "ports", Kind::Message(PORT_STATUS)),
            ]),
        )]),
    ),
    many(2, "conditions", Kind::Message(CONDITION)),
];

const SERVICE: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "spec", Kind::Message(SERVICE_SPEC)),
    f(3, "status", Kind::Message(SERVICE_STATUS)),
];

const COLUMNS: &[Column] = &[
    NAME,
    col("Type", "string", 0),
    col("Cluster-IP", "string", 0),
    col("External-IP", "string", 0),
    col("Port(s)", "string", 0),
    AGE,
    col("Selector", "string", 1),
];

pub struct ServiceStrategy;

impl Strategy for ServiceStrategy {
    /// A new object's first status, as upstream answers a create: upstream resets a new Service's status to an empty `ServiceStatus`, whose load balancer is not omitted.
    fn prepare_for_create(&self, object: &mut Value) {
        crate::kinds::set_status(object, json!({"loadBalancer": {}}));
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn name_rule(&self) -> NameRule {
        names::dns1123_label
    }

    /// Upstream always answers a status (`{"loadBalancer": {}}` at the least).
    fn defaults(&self, service: &mut Value) {
        if let Some(spec) = service.get_mut("spec") {
            service_spec(spec);
        }
        default_status(service, json!({"loadBalancer": {}}));
    }

    fn validate(&self, service: &Value) -> Vec<Cause> {
        validate_service(service)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        let mut causes = validate_service(new);
        let old_ip = old.pointer("/spec/clusterIP");
        let new_ip = new.pointer("/spec/clusterIP");
        if new_ip.is_some() && old_ip != new_ip {
            causes.push(Cause::invalid(
                "spec.clusterIPs[0]",
                new_ip.unwrap_or(&Value::Null),
                "may not change once set",
            ));
        }
        causes
    }

    fn admission(&self) -> &'static [Admission] {
        &[Admission::ClusterIp]
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn merge_keys(&self) -> MergeKeys {
        MERGE_KEYS
    }
}

/// A Service's ports merge by port number (a container's, by containerPort, are everyone's).
pub const MERGE_KEYS: MergeKeys = &[(&["spec", "ports"], "port")];

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

fn validate_service(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let empty = json!({});
    let spec = object.get("spec").unwrap_or(&empty);
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let service_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        service_type,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        causes.push(Cause::not_supported(
            "spec.type",
            &json!(service_type),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ports = spec.get("ports").and_then(Value::as_array);
    if ports.is_none_or(Vec::is_empty) && !headless && service_type != "ExternalName" {
        causes.push(Cause::required("spec.ports", ""));
    }
    let many = ports.is_some_and(|p| p.len() > 1);
    for (index, port) in ports.into_iter().flatten().enumerate() {
        let field = format!("spec.ports[{index}]");
        match port.get("port").and_then(Value::as_i64) {
            None => causes.push(Cause::required(format!("{field}.port"), "")),
            Some(n) if !(1..=65535).contains(&n) => causes.push(Cause::invalid(
                format!("{field}.port"),
                &json!(n),
                "must be between 1 and 65535, inclusive",
            )),
            Some(_) => {}
        }
        if many
            && port
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("{field}.name"), ""));
        }
    }
    causes
}

fn service_cells(object: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let service_type = text(object, "/spec/type");
    let external = match service_type {
        "ExternalName" => text(object, "/spec/externalName").to_string(),
        "LoadBalancer" => {
            let ips: Vec<&str> = items(object, "/status/loadBalancer/ingress")
                .iter()
                .map(|i| text(i, "/ip"))
                .collect();
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            }
        }
        _ => {
            let ips: Vec<&str> = items(object, "/spec/externalIPs")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            or_none(&ips.join(","))
        }
    };
    let ports: Vec<String> = items(object, "/spec/ports")
        .iter()
        .map(|port| {
            let protocol = text(port, "/protocol");
            match port.get("nodePort").and_then(Value::as_i64) {
                Some(node_port) => format!("{}:{node_port}/{protocol}", count(port, "/port")),
                None => format!("{}/{protocol}", count(port, "/port")),
            }
        })
        .collect();
    let selector: Vec<String> = object
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    vec![
        name,
        json!(service_type),
        json!(or_none(text(object, "/spec/clusterIP"))),
        json!(external),
        json!(or_none(&ports.join(","))),
        age,
        json!(or_none(&selector.join(","))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_always_has_a_status() {
        let mut service = json!({"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}});
        ServiceStrategy.defaults(&mut service);
        assert_eq!(service["status"], json!({"loadBalancer": {}}));
        let mut balanced =
            json!({"spec": {}, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}});
        ServiceStrategy.defaults(&mut balanced);
        assert_eq!(
            balanced["status"]["loadBalancer"]["ingress"][0]["ip"],
            "1.2.3.4"
        );
    }

    #[test]
    fn service_row_matches_kubectl() {
        let row = crate::table::cells(
            &RESOURCE,
            &json!({"metadata": {"name": "nginx"}, "spec": {"type": "ClusterIP",
                "clusterIP": "None", "ports": [{"port": 80, "protocol": "TCP"}],
                "selector": {"app": "nginx"}}}),
            Timestamp::now(),
        );
        assert_eq!(row[2], "None");
        assert_eq!(row[3], "<none>");
        assert_eq!(row[4], "80/TCP");
        assert_eq!(row[6], "app=nginx");
    }
}
