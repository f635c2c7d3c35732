//! Ingresses (networking.k8s.io/v1): upstream's `pkg/registry/networking/ingress/strategy.go`,
//! the Ingress rules of `pkg/apis/networking/validation` and `printIngress`. An Ingress
//! without a class gets the default IngressClass at admission (`Admission::DefaultIngressClass`,
//! upstream's DefaultIngressClass plugin), carried out by the registry.

use std::net::IpAddr;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::default_status;
use crate::error::Cause;
use crate::json::{items, text};
use crate::kinds::networking::{self, go_invalid, go_slice, object_reference};
use crate::kinds::{Admission, Strategy};
use crate::names;
use crate::proto::{Field, Kind, OBJECT_META, f, many};
use crate::resources::{ResourceType, entry, status};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, or_none};

pub type Typed = k8s_openapi::api::networking::v1::Ingress;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["ing"],
    subresources: &[status(networking::GROUP, "v1", "Ingress")],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &IngressStrategy,
    protobuf: Some(INGRESS),
    ..entry(
        networking::GROUP,
        "Ingress",
        "ingresses",
        "ingress",
        true,
        round_trip::<Typed>,
    )
};

/// networking/v1 IngressBackend: a Service's port (by name or number), or a
/// TypedLocalObjectReference to some other resource.
const INGRESS_BACKEND: &[Field] = &[
    f(
        4,
        "service",
        Kind::Message(&[
            f(1, "name", Kind::String),
            f(
                2,
                "port",
                Kind::Message(&[f(1, "name", Kind::String), f(2, "number", Kind::Int)]),
            ),
        ]),
    ),
    f(
        3,
        "resource",
        Kind::Message(&[
            f(1, "apiGroup", Kind::OptionalString),
            f(2, "kind", Kind::String),
            f(3, "name", Kind::String),
        ]),
    ),
];

/// networking/v1 HTTPIngressPath (`pathType` is a pointer in Go).
const HTTP_INGRESS_PATH: &[Field] = &[
    f(1, "path", Kind::String),
    f(3, "pathType", Kind::OptionalString),
    f(2, "backend", Kind::Message(INGRESS_BACKEND)),
];

/// networking/v1 IngressRule: the host, and the IngressRuleValue Go inlines beside it.
const INGRESS_RULE: &[Field] = &[
    f(1, "host", Kind::String),
    f(
        2,
        "ingressRuleValue",
        Kind::Inline(&[f(
            1,
            "http",
            Kind::Message(&[many(1, "paths", Kind::Message(HTTP_INGRESS_PATH))]),
        )]),
    ),
];

const INGRESS_SPEC: &[Field] = &[
    f(4, "ingressClassName", Kind::OptionalString),
    f(1, "defaultBackend", Kind::Message(INGRESS_BACKEND)),
    many(
        2,
        "tls",
        Kind::Message(&[
            many(1, "hosts", Kind::String),
            f(2, "secretName", Kind::String),
        ]),
    ),
    many(3, "rules", Kind::Message(INGRESS_RULE)),
];

/// networking/v1 IngressPortStatus (its `error` is a pointer).
const INGRESS_PORT_STATUS: &[Field] = &[
    f(1, "port", Kind::Int),
    f(2, "protocol", Kind::String),
    f(3, "error", Kind::OptionalString),
];

/// networking/v1 IngressStatus: the load balancer's points (no `ipMode`, unlike a Service's).
const INGRESS_STATUS: &[Field] = &[f(
    1,
    "loadBalancer",
    Kind::Message(&[many(
        1,
        "ingress",
        Kind::Message(&[
            f(1, "ip", Kind::String),
            f(2, "hostname", Kind::String),
            many(4, "ports", Kind::Message(INGRESS_PORT_STATUS)),
        ]),
    )]),
)];

/// The protobuf layout of an Ingress (client-go's typed clients send protobuf).
const INGRESS: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "spec", Kind::Message(INGRESS_SPEC)),
    f(3, "status", Kind::Message(INGRESS_STATUS)),
];

/// The deprecated annotation that named a class before `spec.ingressClassName`.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

const COLUMNS: &[Column] = &[
    NAME,
    Column {
        description: "The name of the IngressClass resource that should be used for additional configuration",
        ..col("Class", "string", 0)
    },
    Column {
        description: "Hosts that incoming requests are matched against before the ingress rule",
        ..col("Hosts", "string", 0)
    },
    Column {
        description: "Address is a list containing ingress points for the load-balancer",
        ..col("Address", "string", 0)
    },
    Column {
        description: "Ports of TLS configurations that open",
        ..col("Ports", "string", 0)
    },
    AGE,
];

/// Upstream clips the address column to this many bytes (outside `-o wide`).
const ADDRESS_WIDTH: usize = 16;

fn cells(ingress: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let ports = if items(ingress, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        name,
        json!(or_none(text(ingress, "/spec/ingressClassName"))),
        json!(hosts(items(ingress, "/spec/rules"))),
        json!(address(ingress)),
        json!(ports),
        age,
    ]
}

/// Upstream's `formatHosts`: the first three hosts, `*` when no rule names one. A rule after
/// the third host means more, and the count of the rest is of rules, not of hosts.
fn hosts(rules: &[Value]) -> String {
    let mut shown: Vec<&str> = Vec::new();
    let mut more = false;
    for rule in rules {
        more |= shown.len() == 3;
        let host = text(rule, "/host");
        if !more && !host.is_empty() {
            shown.push(host);
        }
    }
    match (shown.is_empty(), more) {
        (true, _) => "*".to_string(),
        (false, true) => format!("{} + {} more...", shown.join(","), rules.len() - 3),
        (false, false) => shown.join(","),
    }
}

/// The load balancer's IPs (else hostnames), sorted and without repeats, as upstream's
/// `ingressLoadBalancerStatusStringer`.
fn address(ingress: &Value) -> String {
    let mut points: Vec<&str> = items(ingress, "/status/loadBalancer/ingress")
        .iter()
        .map(|point| match text(point, "/ip") {
            "" => text(point, "/hostname"),
            ip => ip,
        })
        .filter(|point| !point.is_empty())
        .collect();
    points.sort_unstable();
    points.dedup();
    let joined = points.join(",");
    if joined.len() > ADDRESS_WIDTH {
        let cut = (0..=ADDRESS_WIDTH - 3)
            .rev()
            .find(|&at| joined.is_char_boundary(at))
            .unwrap_or(0);
        format!("{}...", &joined[..cut])
    } else {
        joined
    }
}

pub struct IngressStrategy;

impl Strategy for IngressStrategy {
    /// A new Ingress's first status, as upstream answers a create: an empty load balancer.
    fn prepare_for_create(&self, object: &mut Value) {
        crate::kinds::set_status(object, json!({"loadBalancer": {}}));
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    /// Upstream always answers a status (`{"loadBalancer": {}}` at the least).
    fn defaults(&self, ingress: &mut Value) {
        default_status(ingress, json!({"loadBalancer": {}}));
    }

    /// Upstream's `ValidateIngressCreate`: the spec, and a class annotation that agrees with
    /// `ingressClassName` when both are given.
    fn validate(&self, ingress: &Value) -> Vec<Cause> {
        let mut causes = validate_spec(ingress);
        let annotation = ingress
            .pointer("/metadata/annotations")
            .and_then(|annotations| annotations.get(CLASS_ANNOTATION))
            .and_then(Value::as_str);
        let class = ingress
            .pointer("/spec/ingressClassName")
            .and_then(Value::as_str);
        if let (Some(annotation), Some(class)) = (annotation, class)
            && annotation != class
        {
            causes.push(Cause::invalid(
                format!("annotations.{CLASS_ANNOTATION}"),
                &json!(annotation),
                "must match `ingressClassName` when both are specified",
            ));
        }
        causes
    }

    /// Upstream's `ValidateIngressUpdate` (the spec) and, as `/status` writes come this way
    /// too, `ValidateIngressStatusUpdate` (the load balancer's points).
    fn validate_update(&self, _old: &Value, new: &Value) -> Vec<Cause> {
        let mut causes = validate_spec(new);
        causes.extend(validate_load_balancer(new));
        causes
    }

    fn admission(&self) -> &'static [Admission] {
        &[Admission::DefaultIngressClass]
    }
}

/// Upstream's `ValidateIngressSpec`.
fn validate_spec(ingress: &Value) -> Vec<Cause> {
    let empty = json!({});
    let spec = ingress.get("spec").unwrap_or(&empty);
    let mut causes = Vec::new();
    let rules = items(spec, "/rules");
    let default_backend = spec.get("defaultBackend").filter(|b| !b.is_null());
    if rules.is_empty() && default_backend.is_none() {
        causes.push(go_invalid(
            "spec",
            &go_slice(
                "networking.IngressRule",
                spec.get("rules").filter(|r| !r.is_null()),
            ),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(backend) = default_backend {
        causes.extend(validate_backend(backend, "spec.defaultBackend"));
    }
    for (index, rule) in rules.iter().enumerate() {
        causes.extend(validate_rule(rule, &format!("spec.rules[{index}]")));
    }
    for (index, tls) in items(spec, "/tls").iter().enumerate() {
        let field = format!("spec.tls[{index}]");
        for (host_index, host) in items(tls, "/hosts").iter().enumerate() {
            let host = host.as_str().unwrap_or_default();
            causes.extend(host_problems(host).iter().map(|problem| {
                Cause::invalid(
                    format!("{field}.hosts[{host_index}]"),
                    &json!(host),
                    problem,
                )
            }));
        }
        let secret = text(tls, "/secretName");
        if !secret.is_empty() {
            causes.extend(names::dns1123_subdomain(secret).iter().map(|problem| {
                Cause::invalid(format!("{field}.secretName"), &json!(secret), problem)
            }));
        }
    }
    if let Some(class) = spec.get("ingressClassName").and_then(Value::as_str) {
        causes.extend(
            names::dns1123_subdomain(class)
                .iter()
                .map(|problem| Cause::invalid("spec.ingressClassName", &json!(class), problem)),
        );
    }
    causes
}

/// Each point of `status.loadBalancer.ingress` is a valid IP and a DNS name that is not one.
fn validate_load_balancer(ingress: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (index, point) in items(ingress, "/status/loadBalancer/ingress")
        .iter()
        .enumerate()
    {
        let field = format!("status.loadBalancer.ingress[{index}]");
        let ip = text(point, "/ip");
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            causes.push(Cause::invalid(
                format!("{field}.ip"),
                &json!(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
        let hostname = text(point, "/hostname");
        if !hostname.is_empty() {
            causes.extend(names::dns1123_subdomain(hostname).iter().map(|problem| {
                Cause::invalid(format!("{field}.hostname"), &json!(hostname), problem)
            }));
            if hostname.parse::<IpAddr>().is_ok() {
                causes.push(Cause::invalid(
                    format!("{field}.hostname"),
                    &json!(hostname),
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
    causes
}

/// A host is a DNS subdomain, or a wildcard one when it holds a `*`.
fn host_problems(host: &str) -> Vec<String> {
    if host.contains('*') {
        names::wildcard_dns1123_subdomain(host)
    } else {
        names::dns1123_subdomain(host)
    }
}

fn validate_rule(rule: &Value, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let host = text(rule, "/host");
    if !host.is_empty() {
        if host.parse::<IpAddr>().is_ok() {
            causes.push(Cause::invalid(
                format!("{field}.host"),
                &json!(host),
                "must be a DNS name, not an IP address",
            ));
        }
        causes.extend(
            host_problems(host)
                .iter()
                .map(|problem| Cause::invalid(format!("{field}.host"), &json!(host), problem)),
        );
    }
    if let Some(http) = rule.get("http").filter(|h| !h.is_null()) {
        let paths = items(http, "/paths");
        if paths.is_empty() {
            causes.push(Cause::required(format!("{field}.http.paths"), ""));
        }
        for (index, path) in paths.iter().enumerate() {
            causes.extend(validate_path(path, &format!("{field}.http.paths[{index}]")));
        }
    }
    causes
}

/// Sequences an Exact or Prefix path may not hold, and endings it may not have.
const INVALID_PATH_SEQUENCES: [&str; 5] = ["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: [&str; 2] = ["/..", "/."];

/// Upstream's `validateHTTPIngressPath`.
fn validate_path(path: &Value, field: &str) -> Vec<Cause> {
    let Some(path_type) = path.get("pathType").filter(|t| !t.is_null()) else {
        return vec![Cause::required(
            format!("{field}.pathType"),
            "pathType must be specified",
        )];
    };
    let mut causes = Vec::new();
    let text_path = text(path, "/path");
    let not_absolute = || {
        Cause::invalid(
            format!("{field}.path"),
            &json!(text_path),
            "must be an absolute path",
        )
    };
    match path_type.as_str() {
        Some("Exact" | "Prefix") => {
            if !text_path.starts_with('/') {
                causes.push(not_absolute());
            }
            for sequence in INVALID_PATH_SEQUENCES {
                if text_path.contains(sequence) {
                    causes.push(Cause::invalid(
                        format!("{field}.path"),
                        &json!(text_path),
                        &format!("must not contain '{sequence}'"),
                    ));
                }
            }
            for suffix in INVALID_PATH_SUFFIXES {
                if text_path.ends_with(suffix) {
                    causes.push(Cause::invalid(
                        format!("{field}.path"),
                        &json!(text_path),
                        &format!("cannot end with '{suffix}'"),
                    ));
                }
            }
        }
        Some("ImplementationSpecific") => {
            if !text_path.is_empty() && !text_path.starts_with('/') {
                causes.push(not_absolute());
            }
        }
        _ => causes.push(Cause::not_supported(
            format!("{field}.pathType"),
            path_type,
            &["Exact", "ImplementationSpecific", "Prefix"],
        )),
    }
    let empty = json!({});
    causes.extend(validate_backend(
        path.get("backend").unwrap_or(&empty),
        &format!("{field}.backend"),
    ));
    causes
}

/// Upstream's `validateIngressBackend`: exactly one of a service (with a port by exactly one
/// of name and number) and a resource.
fn validate_backend(backend: &Value, field: &str) -> Vec<Cause> {
    let service = backend.get("service").filter(|s| !s.is_null());
    let resource = backend.get("resource").filter(|r| !r.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => vec![Cause::invalid(
            field,
            &json!(""),
            "cannot set both resource and service backends",
        )],
        (None, Some(resource)) => object_reference(resource, &format!("{field}.resource"), false),
        (Some(service), None) => validate_service_backend(service, field),
        (None, None) => vec![Cause::invalid(
            field,
            &json!(""),
            "resource or service backend is required",
        )],
    }
}

fn validate_service_backend(service: &Value, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = text(service, "/name");
    if name.is_empty() {
        causes.push(Cause::required(format!("{field}.service.name"), ""));
    } else {
        causes.extend(
            names::dns1035_label(name).iter().map(|problem| {
                Cause::invalid(format!("{field}.service.name"), &json!(name), problem)
            }),
        );
    }
    let port_name = text(service, "/port/name");
    let port_number = service
        .pointer("/port/number")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    match (port_name.is_empty(), port_number == 0) {
        (false, false) => causes.push(Cause::invalid(
            field,
            &json!(""),
            "cannot set both port name & port number",
        )),
        (false, true) => causes.extend(networking::port_name(
            port_name,
            &format!("{field}.service.port.name"),
        )),
        (true, false) => causes.extend(networking::port_number(
            port_number,
            &format!("{field}.service.port.number"),
        )),
        (true, true) => causes.push(Cause::required(field, "port name or number is required")),
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(spec: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": spec})
    }

    fn path(path: &str, path_type: &str) -> Value {
        json!({"path": path, "pathType": path_type,
            "backend": {"service": {"name": "web", "port": {"number": 80}}}})
    }

    fn rule(paths: Vec<Value>) -> Value {
        json!({"host": "example.com", "http": {"paths": paths}})
    }

    /// The messages of the causes, each after its field, as `kubectl` prints them.
    fn problems(object: &Value) -> Vec<String> {
        IngressStrategy
            .validate(object)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn a_well_formed_ingress_is_valid() {
        let object = ingress(json!({
            "ingressClassName": "petset",
            "defaultBackend": {"service": {"name": "fallback", "port": {"name": "http"}}},
            "rules": [
                rule(vec![path("/jenkins", "Prefix"), path("/exact", "Exact"),
                    path("", "ImplementationSpecific")]),
                {"host": "*.example.com", "http": {"paths": [path("/", "Prefix")]}},
                {"http": {"paths": [{"path": "/r", "pathType": "Prefix",
                    "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}}}]}}
            ],
            "tls": [{"hosts": ["example.com", "*.example.com"], "secretName": "tls"}]
        }));
        assert_eq!(problems(&object), Vec::<String>::new());
    }

    #[test]
    fn an_ingress_needs_a_rule_or_a_default_backend() {
        assert_eq!(
            problems(&ingress(json!({}))),
            [
                "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"
            ]
        );
        assert_eq!(
            problems(&ingress(json!({"rules": []}))),
            [
                "spec: Invalid value: []networking.IngressRule{}: either `defaultBackend` or `rules` must be specified"
            ]
        );
    }

    #[test]
    fn paths_need_a_known_type_and_exact_or_prefix_paths_an_absolute_clean_path() {
        let at = "spec.rules[0].http.paths[0]";
        let one = |p: Value| problems(&ingress(json!({"rules": [rule(vec![p])]})));
        assert_eq!(
            one(
                json!({"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}})
            ),
            [format!(
                "{at}.pathType: Required value: pathType must be specified"
            )]
        );
        assert_eq!(
            one(path("/", "Regex")),
            [format!(
                "{at}.pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""
            )]
        );
        assert_eq!(
            one(path("jenkins", "Prefix")),
            [format!(
                "{at}.path: Invalid value: \"jenkins\": must be an absolute path"
            )]
        );
        assert_eq!(
            one(path("jenkins", "ImplementationSpecific")),
            [format!(
                "{at}.path: Invalid value: \"jenkins\": must be an absolute path"
            )]
        );
        assert_eq!(
            one(path("/a//b/..", "Exact")),
            [
                format!("{at}.path: Invalid value: \"/a//b/..\": must not contain '//'"),
                format!("{at}.path: Invalid value: \"/a//b/..\": cannot end with '/..'"),
            ]
        );
        assert_eq!(
            one(json!({"path": "/", "pathType": "Prefix", "http": {}})),
            [format!(
                "{at}.backend: Invalid value: \"\": resource or service backend is required"
            )]
        );
        assert_eq!(
            problems(&ingress(
                json!({"rules": [{"host": "a.com", "http": {"paths": []}}]})
            )),
            ["spec.rules[0].http.paths: Required value"]
        );
    }

    #[test]
    fn a_backend_is_one_service_with_one_port_or_one_resource() {
        let backend = |b: Value| problems(&ingress(json!({"defaultBackend": b})));
        let at = "spec.defaultBackend";
        assert_eq!(
            backend(json!({"service": {"name": "web", "port": {"number": 80}},
                "resource": {"kind": "Bucket", "name": "b"}})),
            [format!(
                "{at}: Invalid value: \"\": cannot set both resource and service backends"
            )]
        );
        assert_eq!(
            backend(json!({"service": {"name": "web", "port": {"name": "http", "number": 80}}})),
            [format!(
                "{at}: Invalid value: \"\": cannot set both port name & port number"
            )]
        );
        assert_eq!(
            backend(json!({"service": {"name": "web", "port": {}}})),
            [format!(
                "{at}: Required value: port name or number is required"
            )]
        );
        assert_eq!(
            backend(json!({"service": {"port": {"number": 70000}}})),
            [
                format!("{at}.service.name: Required value"),
                format!(
                    "{at}.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive"
                ),
            ]
        );
        assert_eq!(
            backend(json!({"service": {"name": "1web", "port": {"number": 80}}})),
            [format!(
                "{at}.service.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            )]
        );
        assert_eq!(
            backend(json!({"resource": {"name": "b"}})),
            [format!("{at}.resource.kind: Required value")]
        );
    }

    #[test]
    fn hosts_are_dns_names_or_wildcards_never_addresses() {
        let host = |h: &str| {
            problems(&ingress(
                json!({"rules": [{"host": h, "http": {"paths": [path("/", "Prefix")]}}]}),
            ))
        };
        assert_eq!(
            host("10.0.0.1"),
            [
                "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"
            ]
        );
        assert_eq!(
            host("*.*.example.com"),
            [
                "spec.rules[0].host: Invalid value: \"*.*.example.com\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(host("Example.com").len(), 1);
        let tls = problems(&ingress(
            json!({"defaultBackend": {"service": {"name": "w", "port": {"number": 1}}},
            "tls": [{"hosts": ["ok.com", "-bad"], "secretName": "Bad"}]}),
        ));
        assert_eq!(tls.len(), 2);
        assert!(tls[0].starts_with(
            "spec.tls[0].hosts[1]: Invalid value: \"-bad\": a lowercase RFC 1123 subdomain"
        ));
        assert!(tls[1].starts_with(
            "spec.tls[0].secretName: Invalid value: \"Bad\": a lowercase RFC 1123 subdomain"
        ));
    }

    #[test]
    fn the_class_is_a_dns_subdomain_and_the_old_annotation_must_agree_on_create() {
        let backend = json!({"service": {"name": "w", "port": {"number": 1}}});
        let bad_class = ingress(json!({"defaultBackend": backend, "ingressClassName": "Petset"}));
        assert_eq!(problems(&bad_class).len(), 1);
        assert!(
            problems(&bad_class)[0].starts_with("spec.ingressClassName: Invalid value: \"Petset\"")
        );
        let mut disagreeing =
            ingress(json!({"defaultBackend": backend, "ingressClassName": "petset"}));
        disagreeing["metadata"]["annotations"] = json!({CLASS_ANNOTATION: "nginx"});
        assert_eq!(
            problems(&disagreeing),
            [
                "annotations.kubernetes.io/ingress.class: Invalid value: \"nginx\": must match `ingressClassName` when both are specified"
            ]
        );
        assert!(
            IngressStrategy
                .validate_update(&disagreeing, &disagreeing)
                .is_empty()
        );
    }

    #[test]
    fn load_balancer_points_are_addresses_and_dns_names() {
        let mut object =
            ingress(json!({"defaultBackend": {"service": {"name": "w", "port": {"number": 1}}}}));
        object["status"] = json!({"loadBalancer": {"ingress": [
            {"ip": "127.0.0.1", "hostname": "node-a"}, {"ip": "127.0.0"}, {"hostname": "10.0.0.1"}]}});
        let causes: Vec<String> = IngressStrategy
            .validate_update(&object, &object)
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        assert_eq!(
            causes,
            [
                "status.loadBalancer.ingress[1].ip: Invalid value: \"127.0.0\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "status.loadBalancer.ingress[2].hostname: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
            ]
        );
    }

    #[test]
    fn rows_show_class_hosts_address_and_ports_as_upstream() {
        let object = json!({
            "metadata": {"name": "web"},
            "spec": {"rules": [{"host": "a.com"}, {"host": "b.com"}, {}, {"host": "c.com"}, {"host": "d.com"}],
                "tls": [{"hosts": ["a.com"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}, {"hostname": "node-a.example"}, {"ip": "127.0.0.1"}]}}
        });
        let row = cells(&object, json!("web"), json!("1m"), Timestamp::now());
        assert_eq!(
            row,
            [
                json!("web"),
                json!("<none>"),
                json!("a.com,b.com,c.com + 2 more..."),
                json!("127.0.0.1,nod..."),
                json!("80, 443"),
                json!("1m")
            ]
        );
        let plain = json!({"metadata": {"name": "w"}, "spec": {"ingressClassName": "petset",
            "rules": [{"http": {}}, {"host": "a.com"}]}});
        let row = cells(&plain, json!("w"), json!("1s"), Timestamp::now());
        assert_eq!(
            row[1..5],
            [json!("petset"), json!("a.com"), json!(""), json!("80")]
        );
        assert_eq!(hosts(&[]), "*");
    }
}
