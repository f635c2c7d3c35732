//! Protobuf round trips of networking.k8s.io, discovery.k8s.io, policy; Service and Namespace statuses: built in `k8s-pb`'s structs, encoded by prost, decoded by
//! petset, compared with the JSON form (see `round_trip_tests`).

use k8s_pb::api::core::v1 as core;
use k8s_pb::api::discovery::v1 as discovery;
use k8s_pb::api::networking::v1 as networking;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use serde_json::{Value, json};

use super::round_trip_tests::{
    assert_round_trip, map, named_port, object_meta, object_meta_json, port, s, selector,
    selector_json, strings, time,
};

/// The decoded JSON is the object's JSON form, and k8s-openapi's type `T` of the kind reads
/// that form whole (every name in it is one upstream's JSON knows).
fn assert_round_trips_as<T, M>(api_version: &str, kind: &str, object: &M, expected: Value)
where
    T: k8s_openapi::serde::de::DeserializeOwned + k8s_openapi::serde::Serialize,
    M: prost::Message + Default + PartialEq + std::fmt::Debug,
{
    assert_round_trip(api_version, kind, object, expected.clone());
    let typed: T = serde_json::from_value(expected.clone())
        .unwrap_or_else(|e| panic!("k8s-openapi reads the {kind}: {e}"));
    let mut known = serde_json::to_value(typed).expect("serializes");
    if let Some(known) = known.as_object_mut() {
        known.remove("apiVersion");
        known.remove("kind");
    }
    assert_eq!(
        known, expected,
        "{kind}: k8s-openapi's reading (left) and the JSON (right)"
    );
}

/// A metav1.Condition with every field set, and its JSON.
fn condition(kind: &str) -> meta::Condition {
    meta::Condition {
        r#type: s(kind),
        status: s("True"),
        observed_generation: Some(3),
        last_transition_time: time(1_700_000_000),
        reason: s("Settled"),
        message: s("all good"),
    }
}

fn condition_json(kind: &str) -> Value {
    json!({"type": kind, "status": "True", "observedGeneration": 3,
        "lastTransitionTime": "2023-11-14T22:13:20Z", "reason": "Settled", "message": "all good"})
}

fn service_backend(name: &str, port: networking::ServiceBackendPort) -> networking::IngressBackend {
    networking::IngressBackend {
        service: Some(networking::IngressServiceBackend {
            name: s(name),
            port: Some(port),
        }),
        resource: None,
    }
}

#[test]
fn an_ingress_carries_its_rules_backends_and_load_balancer() {
    let ingress = networking::Ingress {
        metadata: Some(object_meta()),
        spec: Some(networking::IngressSpec {
            // A pointer: the empty class name is a value.
            ingress_class_name: s(""),
            default_backend: Some(networking::IngressBackend {
                service: None,
                resource: Some(core::TypedLocalObjectReference {
                    api_group: s("storage.example.com"),
                    kind: s("Bucket"),
                    name: s("static"),
                }),
            }),
            tls: vec![networking::IngressTls {
                hosts: strings(&["web.example.com", "*.example.com"]),
                secret_name: s("web-tls"),
            }],
            rules: vec![
                networking::IngressRule {
                    host: s("web.example.com"),
                    ingress_rule_value: Some(networking::IngressRuleValue {
                        http: Some(networking::HttpIngressRuleValue {
                            paths: vec![
                                networking::HttpIngressPath {
                                    path: s("/api"),
                                    path_type: s("Prefix"),
                                    backend: Some(service_backend(
                                        "api",
                                        networking::ServiceBackendPort {
                                            name: None,
                                            number: Some(8080),
                                        },
                                    )),
                                },
                                networking::HttpIngressPath {
                                    path: None,
                                    path_type: s("ImplementationSpecific"),
                                    backend: Some(service_backend(
                                        "web",
                                        networking::ServiceBackendPort {
                                            name: s("http"),
                                            number: None,
                                        },
                                    )),
                                },
                            ],
                        }),
                    }),
                },
                // A host without an `http` value: the inlined IngressRuleValue is empty.
                networking::IngressRule {
                    host: s("bare.example.com"),
                    ingress_rule_value: Some(networking::IngressRuleValue::default()),
                },
            ],
        }),
        status: Some(networking::IngressStatus {
            load_balancer: Some(networking::IngressLoadBalancerStatus {
                ingress: vec![
                    networking::IngressLoadBalancerIngress {
                        ip: s("127.0.0.1"),
                        hostname: s("lb.example.com"),
                        ports: vec![networking::IngressPortStatus {
                            port: Some(443),
                            protocol: s("TCP"),
                            error: s(""),
                        }],
                    },
                    networking::IngressLoadBalancerIngress {
                        ip: s("127.0.0.2"),
                        hostname: None,
                        ports: vec![networking::IngressPortStatus {
                            port: Some(80),
                            protocol: s("UDP"),
                            error: s("PortUnavailable"),
                        }],
                    },
                ],
            }),
        }),
    };
    assert_round_trips_as::<k8s_openapi::api::networking::v1::Ingress, _>(
        "networking.k8s.io/v1",
        "Ingress",
        &ingress,
        json!({
            "metadata": object_meta_json(),
            "spec": {
                "ingressClassName": "",
                "defaultBackend": {"resource": {"apiGroup": "storage.example.com",
                    "kind": "Bucket", "name": "static"}},
                "tls": [{"hosts": ["web.example.com", "*.example.com"], "secretName": "web-tls"}],
                "rules": [
                    {"host": "web.example.com", "http": {"paths": [
                        {"path": "/api", "pathType": "Prefix",
                            "backend": {"service": {"name": "api", "port": {"number": 8080}}}},
                        {"pathType": "ImplementationSpecific",
                            "backend": {"service": {"name": "web", "port": {"name": "http"}}}}
                    ]}},
                    {"host": "bare.example.com"}
                ]
            },
            "status": {"loadBalancer": {"ingress": [
                {"ip": "127.0.0.1", "hostname": "lb.example.com",
                    "ports": [{"port": 443, "protocol": "TCP", "error": ""}]},
                {"ip": "127.0.0.2",
                    "ports": [{"port": 80, "protocol": "UDP", "error": "PortUnavailable"}]}
            ]}}
        }),
    );
}

#[test]
fn an_ingress_class_carries_its_parameters_reference() {
    let class = networking::IngressClass {
        metadata: Some(meta::ObjectMeta {
            name: s("external"),
            annotations: map(&[("ingressclass.kubernetes.io/is-default-class", "true")]),
            ..Default::default()
        }),
        spec: Some(networking::IngressClassSpec {
            controller: s("example.com/ingress"),
            parameters: Some(networking::IngressClassParametersReference {
                a_pi_group: s("k8s.example.com"),
                kind: s("IngressParameters"),
                name: s("external-lb"),
                scope: s("Namespace"),
                // A pointer: the empty namespace is a value.
                namespace: s(""),
            }),
        }),
    };
    assert_round_trips_as::<k8s_openapi::api::networking::v1::IngressClass, _>(
        "networking.k8s.io/v1",
        "IngressClass",
        &class,
        json!({
            "metadata": {"name": "external",
                "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
            "spec": {"controller": "example.com/ingress", "parameters": {
                "apiGroup": "k8s.example.com", "kind": "IngressParameters",
                "name": "external-lb", "scope": "Namespace", "namespace": ""}}
        }),
    );
}

#[test]
fn a_network_policy_carries_its_ingress_and_egress_rules() {
    let peers = || {
        vec![
            networking::NetworkPolicyPeer {
                pod_selector: selector("app", "client"),
                namespace_selector: selector("team", "a"),
                ip_block: None,
            },
            networking::NetworkPolicyPeer {
                pod_selector: None,
                namespace_selector: None,
                ip_block: Some(networking::IpBlock {
                    cidr: s("10.0.0.0/8"),
                    except: strings(&["10.1.0.0/16", "10.2.0.0/16"]),
                }),
            },
        ]
    };
    let peers_json = json!([
        {"podSelector": selector_json("app", "client"),
            "namespaceSelector": selector_json("team", "a")},
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.0.0/16"]}}
    ]);
    let policy = networking::NetworkPolicy {
        metadata: Some(object_meta()),
        spec: Some(networking::NetworkPolicySpec {
            pod_selector: selector("app", "db"),
            ingress: vec![networking::NetworkPolicyIngressRule {
                ports: vec![
                    networking::NetworkPolicyPort {
                        protocol: s("TCP"),
                        port: port(5432),
                        end_port: Some(5440),
                    },
                    networking::NetworkPolicyPort {
                        // Pointers: the empty protocol and the zero end port are values.
                        protocol: s(""),
                        port: named_port("metrics"),
                        end_port: Some(0),
                    },
                ],
                from: peers(),
            }],
            egress: vec![networking::NetworkPolicyEgressRule {
                ports: vec![networking::NetworkPolicyPort {
                    protocol: s("UDP"),
                    port: port(53),
                    end_port: None,
                }],
                to: peers(),
            }],
            policy_types: strings(&["Ingress", "Egress"]),
        }),
    };
    assert_round_trips_as::<k8s_openapi::api::networking::v1::NetworkPolicy, _>(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        &policy,
        json!({
            "metadata": object_meta_json(),
            "spec": {
                "podSelector": selector_json("app", "db"),
                "ingress": [{
                    "ports": [
                        {"protocol": "TCP", "port": 5432, "endPort": 5440},
                        {"protocol": "", "port": "metrics", "endPort": 0}
                    ],
                    "from": peers_json.clone()
                }],
                "egress": [{"ports": [{"protocol": "UDP", "port": 53}], "to": peers_json}],
                "policyTypes": ["Ingress", "Egress"]
            }
        }),
    );
}

#[test]
fn an_endpoint_slice_carries_its_endpoints_and_ports() {
    let slice = discovery::EndpointSlice {
        metadata: Some(object_meta()),
        address_type: s("IPv4"),
        endpoints: vec![
            discovery::Endpoint {
                addresses: strings(&["10.42.0.7"]),
                conditions: Some(discovery::EndpointConditions {
                    ready: Some(true),
                    // Pointers: false is a value, not an unknown condition.
                    serving: Some(false),
                    terminating: Some(true),
                }),
                hostname: s("web-0"),
                target_ref: Some(core::ObjectReference {
                    kind: s("Pod"),
                    namespace: s("default"),
                    name: s("web-0"),
                    uid: s("5f0c9a3e-0000-4000-8000-000000000003"),
                    api_version: s("v1"),
                    resource_version: s("7"),
                    field_path: s("spec.containers{main}"),
                }),
                deprecated_topology: map(&[("kubernetes.io/hostname", "node-1")]),
                node_name: s("node-1"),
                zone: s("zone-a"),
                hints: Some(discovery::EndpointHints {
                    for_zones: vec![discovery::ForZone { name: s("zone-a") }],
                    for_nodes: vec![discovery::ForNode { name: s("node-1") }],
                }),
            },
            discovery::Endpoint {
                addresses: strings(&["10.42.0.8", "10.42.0.9"]),
                conditions: Some(discovery::EndpointConditions::default()),
                hostname: s(""),
                ..Default::default()
            },
        ],
        ports: vec![
            discovery::EndpointPort {
                name: s("http"),
                protocol: s("TCP"),
                port: Some(8080),
                app_protocol: s("kubernetes.io/h2c"),
            },
            discovery::EndpointPort {
                name: s(""),
                protocol: s("UDP"),
                port: Some(0),
                app_protocol: None,
            },
        ],
    };
    assert_round_trips_as::<k8s_openapi::api::discovery::v1::EndpointSlice, _>(
        "discovery.k8s.io/v1",
        "EndpointSlice",
        &slice,
        json!({
            "metadata": object_meta_json(),
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": ["10.42.0.7"],
                    "conditions": {"ready": true, "serving": false, "terminating": true},
                    "hostname": "web-0",
                    "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0",
                        "uid": "5f0c9a3e-0000-4000-8000-000000000003", "apiVersion": "v1",
                        "resourceVersion": "7", "fieldPath": "spec.containers{main}"},
                    "deprecatedTopology": {"kubernetes.io/hostname": "node-1"},
                    "nodeName": "node-1",
                    "zone": "zone-a",
                    "hints": {"forZones": [{"name": "zone-a"}], "forNodes": [{"name": "node-1"}]}
                },
                {"addresses": ["10.42.0.8", "10.42.0.9"], "conditions": {}, "hostname": ""}
            ],
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 8080,
                    "appProtocol": "kubernetes.io/h2c"},
                {"name": "", "protocol": "UDP", "port": 0}
            ]
        }),
    );
}

#[test]
fn a_pod_disruption_budget_carries_its_spec_and_whole_status() {
    let budget = policy::PodDisruptionBudget {
        metadata: Some(object_meta()),
        spec: Some(policy::PodDisruptionBudgetSpec {
            min_available: named_port("50%"),
            selector: selector("app", "web"),
            // A pointer: zero unavailable pods is a value.
            max_unavailable: port(0),
            unhealthy_pod_eviction_policy: s("AlwaysAllow"),
        }),
        status: Some(policy::PodDisruptionBudgetStatus {
            observed_generation: Some(3),
            disrupted_pods: [
                ("web-0".to_string(), time(1_700_000_000).unwrap_or_default()),
                ("web-1".to_string(), time(1_700_000_100).unwrap_or_default()),
            ]
            .into(),
            disruptions_allowed: Some(1),
            current_healthy: Some(3),
            desired_healthy: Some(2),
            expected_pods: Some(4),
            conditions: vec![condition("DisruptionAllowed")],
        }),
    };
    assert_round_trips_as::<k8s_openapi::api::policy::v1::PodDisruptionBudget, _>(
        "policy/v1",
        "PodDisruptionBudget",
        &budget,
        json!({
            "metadata": object_meta_json(),
            "spec": {"minAvailable": "50%", "selector": selector_json("app", "web"),
                "maxUnavailable": 0, "unhealthyPodEvictionPolicy": "AlwaysAllow"},
            "status": {
                "observedGeneration": 3,
                "disruptedPods": {"web-0": "2023-11-14T22:13:20Z", "web-1": "2023-11-14T22:15:00Z"},
                "disruptionsAllowed": 1,
                "currentHealthy": 3,
                "desiredHealthy": 2,
                "expectedPods": 4,
                "conditions": [condition_json("DisruptionAllowed")]
            }
        }),
    );
}

#[test]
fn a_service_carries_every_spec_field_and_its_load_balancer_status() {
    let service = core::Service {
        metadata: Some(object_meta()),
        spec: Some(core::ServiceSpec {
            ports: vec![
                core::ServicePort {
                    name: s("https"),
                    protocol: s("TCP"),
                    app_protocol: s("kubernetes.io/h2c"),
                    port: Some(443),
                    target_port: named_port("https"),
                    node_port: Some(30443),
                },
                core::ServicePort {
                    name: s("dns"),
                    protocol: s("UDP"),
                    // A pointer: the empty app protocol is a value.
                    app_protocol: s(""),
                    port: Some(53),
                    target_port: port(5353),
                    node_port: Some(30053),
                },
            ],
            selector: map(&[("app", "web")]),
            cluster_ip: s("10.96.0.10"),
            cluster_ips: strings(&["10.96.0.10", "fd00::10"]),
            r#type: s("LoadBalancer"),
            external_ips: strings(&["192.0.2.10"]),
            session_affinity: s("ClientIP"),
            load_balancer_ip: s("192.0.2.20"),
            load_balancer_source_ranges: strings(&["192.0.2.0/24"]),
            external_name: s("web.example.com"),
            external_traffic_policy: s("Local"),
            health_check_node_port: Some(32000),
            publish_not_ready_addresses: Some(true),
            session_affinity_config: Some(core::SessionAffinityConfig {
                client_ip: Some(core::ClientIpConfig {
                    // A pointer: a zero timeout is a value.
                    timeout_seconds: Some(0),
                }),
            }),
            ip_families: strings(&["IPv4", "IPv6"]),
            ip_family_policy: s("PreferDualStack"),
            // A pointer: false is a value (the default is true).
            allocate_load_balancer_node_ports: Some(false),
            load_balancer_class: s("example.com/lb"),
            internal_traffic_policy: s("Local"),
            traffic_distribution: s("PreferClose"),
        }),
        status: Some(core::ServiceStatus {
            load_balancer: Some(core::LoadBalancerStatus {
                ingress: vec![
                    core::LoadBalancerIngress {
                        ip: s("192.0.2.20"),
                        hostname: s("lb.example.com"),
                        ip_mode: s("Proxy"),
                        ports: vec![core::PortStatus {
                            port: Some(443),
                            protocol: s("TCP"),
                            error: s(""),
                        }],
                    },
                    core::LoadBalancerIngress {
                        ip: s("192.0.2.21"),
                        hostname: None,
                        ip_mode: s(""),
                        ports: vec![core::PortStatus {
                            port: Some(53),
                            protocol: s("UDP"),
                            error: s("PortUnavailable"),
                        }],
                    },
                ],
            }),
            conditions: vec![condition("LoadBalancerReady")],
        }),
    };
    assert_round_trips_as::<k8s_openapi::api::core::v1::Service, _>(
        "v1",
        "Service",
        &service,
        json!({
            "metadata": object_meta_json(),
            "spec": {
                "ports": [
                    {"name": "https", "protocol": "TCP", "appProtocol": "kubernetes.io/h2c",
                        "port": 443, "targetPort": "https", "nodePort": 30443},
                    {"name": "dns", "protocol": "UDP", "appProtocol": "", "port": 53,
                        "targetPort": 5353, "nodePort": 30053}
                ],
                "selector": {"app": "web"},
                "clusterIP": "10.96.0.10",
                "clusterIPs": ["10.96.0.10", "fd00::10"],
                "type": "LoadBalancer",
                "externalIPs": ["192.0.2.10"],
                "sessionAffinity": "ClientIP",
                "loadBalancerIP": "192.0.2.20",
                "loadBalancerSourceRanges": ["192.0.2.0/24"],
                "externalName": "web.example.com",
                "externalTrafficPolicy": "Local",
                "healthCheckNodePort": 32000,
                "publishNotReadyAddresses": true,
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}},
                "ipFamilies": ["IPv4", "IPv6"],
                "ipFamilyPolicy": "PreferDualStack",
                "allocateLoadBalancerNodePorts": false,
                "loadBalancerClass": "example.com/lb",
                "internalTrafficPolicy": "Local",
                "trafficDistribution": "PreferClose"
            },
            "status": {
                "loadBalancer": {"ingress": [
                    {"ip": "192.0.2.20", "hostname": "lb.example.com", "ipMode": "Proxy",
                        "ports": [{"port": 443, "protocol": "TCP", "error": ""}]},
                    {"ip": "192.0.2.21", "ipMode": "",
                        "ports": [{"port": 53, "protocol": "UDP", "error": "PortUnavailable"}]}
                ]},
                "conditions": [condition_json("LoadBalancerReady")]
            }
        }),
    );
}

#[test]
fn a_namespace_carries_its_phase_and_conditions() {
    let namespace = core::Namespace {
        metadata: Some(meta::ObjectMeta {
            name: s("team-a"),
            labels: map(&[("kubernetes.io/metadata.name", "team-a")]),
            ..Default::default()
        }),
        spec: Some(core::NamespaceSpec {
            finalizers: strings(&["kubernetes"]),
        }),
        status: Some(core::NamespaceStatus {
            phase: s("Terminating"),
            conditions: vec![
                core::NamespaceCondition {
                    r#type: s("NamespaceDeletionContentFailure"),
                    status: s("False"),
                    last_transition_time: time(1_700_000_100),
                    reason: s("ContentDeleted"),
                    message: s("All content successfully deleted"),
                },
                core::NamespaceCondition {
                    r#type: s("NamespaceContentRemaining"),
                    status: s("True"),
                    // Go sends a zero time as an empty message.
                    last_transition_time: Some(meta::Time::default()),
                    reason: s("SomeResourcesRemain"),
                    message: s("Some resources are remaining: pods. has 1 resource instances"),
                },
            ],
        }),
    };
    assert_round_trips_as::<k8s_openapi::api::core::v1::Namespace, _>(
        "v1",
        "Namespace",
        &namespace,
        json!({
            "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {
                "phase": "Terminating",
                "conditions": [
                    {"type": "NamespaceDeletionContentFailure", "status": "False",
                        "lastTransitionTime": "2023-11-14T22:15:00Z", "reason": "ContentDeleted",
                        "message": "All content successfully deleted"},
                    {"type": "NamespaceContentRemaining", "status": "True",
                        "reason": "SomeResourcesRemain",
                        "message": "Some resources are remaining: pods. has 1 resource instances"}
                ]
            }
        }),
    );
}
