//! Round trips that do not trust petset's layouts: objects are built in `k8s-pb`'s structs
//! (prost bindings generated from upstream's `generated.proto`), encoded by prost in the
//! `k8s\0` envelope as kubectl sends them, decoded by petset, and compared with JSON written
//! by hand (and, for the fields k8s-openapi's v1.33 knows, with k8s-openapi's own reading of
//! that JSON, which drops any name it does not know).

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::decode;

pub(super) fn s(text: &str) -> Option<String> {
    Some(text.to_string())
}

pub(super) fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

pub(super) fn quantity(text: &str) -> Quantity {
    Quantity { string: s(text) }
}

pub(super) fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), quantity(v)))
        .collect()
}

pub(super) fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn time(seconds: i64) -> Option<meta::Time> {
    Some(meta::Time {
        seconds: Some(seconds),
        nanos: None,
    })
}

pub(super) fn port(number: i32) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(0),
        int_val: Some(number),
        str_val: None,
    })
}

pub(super) fn named_port(name: &str) -> Option<IntOrString> {
    Some(IntOrString {
        r#type: Some(1),
        int_val: None,
        str_val: s(name),
    })
}

pub(super) fn local(name: &str) -> Option<core::LocalObjectReference> {
    Some(core::LocalObjectReference { name: s(name) })
}

pub(super) fn selector(key: &str, value: &str) -> Option<meta::LabelSelector> {
    Some(meta::LabelSelector {
        match_labels: map(&[(key, value)]),
        match_expressions: vec![meta::LabelSelectorRequirement {
            key: s("tier"),
            operator: s("In"),
            values: strings(&["db", "cache"]),
        }],
    })
}

pub(super) fn selector_json(key: &str, value: &str) -> Value {
    json!({"matchLabels": {key: value},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db", "cache"]}]})
}

/// The body kubectl sends: `k8s\0` and a runtime.Unknown around the encoded object.
pub(super) fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(raw),
        content_encoding: s(""),
        content_type: s(""),
    };
    [b"k8s\0".as_slice(), &unknown.encode_to_vec()].concat()
}

/// The round trip every kind's test makes: `object` (built in k8s-pb's struct of the kind
/// `api_version`/`kind`) in kubectl's envelope decodes to `expected`, the object's JSON form
/// without `apiVersion` and `kind` (which the check adds).
pub(super) fn assert_round_trip<M>(api_version: &str, kind: &str, object: &M, expected: Value)
where
    M: Message + Default + PartialEq + std::fmt::Debug,
{
    let resource = petset_api::resources::find_kind(api_version, kind)
        .unwrap_or_else(|| panic!("{api_version} {kind} is served"));
    let decoded = decode(
        &envelope(api_version, kind, object.encode_to_vec()),
        resource,
    )
    .unwrap_or_else(|e| panic!("{kind} decodes: {e:?}"));
    let mut expected = expected;
    expected["apiVersion"] = json!(api_version);
    expected["kind"] = json!(kind);
    assert_eq!(
        decoded, expected,
        "{kind}: decoded (left) and its JSON form (right)"
    );

    // And back: the JSON form as petset answers a protobuf client, which k8s-pb's struct
    // must read whole (a field it does not know would be dropped there, and missed below).
    let answered =
        super::encode::body(&expected).unwrap_or_else(|e| panic!("{kind} encodes: {e:?}"));
    let inner = answered.strip_prefix(b"k8s\0").expect("the k8s envelope");
    let unknown = Unknown::decode(inner).expect("a runtime.Unknown");
    let type_meta = unknown.type_meta.clone().unwrap_or_default();
    assert_eq!(
        (type_meta.api_version.as_deref(), type_meta.kind.as_deref()),
        (Some(api_version), Some(kind))
    );
    let read = M::decode(unknown.raw.unwrap_or_default().as_slice())
        .unwrap_or_else(|e| panic!("k8s-pb reads petset's {kind}: {e}"));
    let again = decode(&envelope(api_version, kind, read.encode_to_vec()), resource)
        .unwrap_or_else(|e| panic!("{kind} decodes again: {e:?}"));
    assert_eq!(
        again, expected,
        "{kind}: encoded and read back (left), its JSON form (right)"
    );
}

pub(super) fn decode_pod(pod: &core::Pod) -> Result<Value, petset_api::ApiError> {
    let pods = petset_api::resources::find("", "v1", "pods").expect("pods are served");
    decode(&envelope("v1", "Pod", pod.encode_to_vec()), pods)
}

/// k8s-openapi's reading of `object` written back: a name it does not know is gone.
pub(super) fn through_k8s_openapi(object: &Value) -> Value {
    let typed: k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(object.clone()).expect("k8s-openapi reads the pod");
    serde_json::to_value(typed).expect("serializes")
}

pub(super) fn probe(handler: core::ProbeHandler) -> Option<core::Probe> {
    Some(core::Probe {
        handler: Some(handler),
        initial_delay_seconds: Some(1),
        timeout_seconds: Some(2),
        period_seconds: Some(3),
        success_threshold: Some(4),
        failure_threshold: Some(5),
        termination_grace_period_seconds: Some(6),
    })
}

pub(super) fn probe_json(handler: Value) -> Value {
    let mut probe = json!({"initialDelaySeconds": 1, "timeoutSeconds": 2, "periodSeconds": 3,
        "successThreshold": 4, "failureThreshold": 5, "terminationGracePeriodSeconds": 6});
    probe
        .as_object_mut()
        .expect("object")
        .extend(handler.as_object().expect("object").clone());
    probe
}

pub(super) fn http_get() -> Option<core::HttpGetAction> {
    Some(core::HttpGetAction {
        path: s("/healthz"),
        port: port(8080),
        host: s("127.0.0.1"),
        scheme: s("HTTPS"),
        http_headers: vec![core::HttpHeader {
            name: s("X-Probe"),
            value: s("yes"),
        }],
    })
}

pub(super) fn http_get_json() -> Value {
    json!({"path": "/healthz", "port": 8080, "host": "127.0.0.1", "scheme": "HTTPS",
        "httpHeaders": [{"name": "X-Probe", "value": "yes"}]})
}

pub(super) fn exec() -> Option<core::ExecAction> {
    Some(core::ExecAction {
        command: strings(&["cat", "/tmp/ready"]),
    })
}

/// A container with every field petset lays out (Container and EphemeralContainerCommon
/// have the same fields; `container_json` is its JSON).
pub(super) trait Rich {
    fn rich(name: &str) -> Self;
}

macro_rules! rich_container {
    ($type:ty) => {
        impl Rich for $type {
            fn rich(name: &str) -> Self {
                Self {
                    name: s(name),
                    image: s("busybox:1.36"),
                    command: strings(&["sh", "-c"]),
                    args: strings(&["sleep 3600"]),
                    working_dir: s("/work"),
                    ports: vec![core::ContainerPort {
                        name: s("http"),
                        host_port: Some(8443),
                        container_port: Some(8080),
                        protocol: s("TCP"),
                        host_ip: s("127.0.0.1"),
                    }],
                    env_from: vec![
                        core::EnvFromSource {
                            prefix: s("CM_"),
                            config_map_ref: Some(core::ConfigMapEnvSource {
                                local_object_reference: local("settings"),
                                optional: Some(false),
                            }),
                            secret_ref: None,
                        },
                        core::EnvFromSource {
                            prefix: None,
                            config_map_ref: None,
                            secret_ref: Some(core::SecretEnvSource {
                                local_object_reference: local("credentials"),
                                optional: Some(true),
                            }),
                        },
                    ],
                    env: vec![
                        core::EnvVar {
                            name: s("PLAIN"),
                            value: s("1"),
                            value_from: None,
                        },
                        core::EnvVar {
                            name: s("POD_NAME"),
                            value: None,
                            value_from: Some(core::EnvVarSource {
                                field_ref: Some(core::ObjectFieldSelector {
                                    api_version: s("v1"),
                                    field_path: s("metadata.name"),
                                }),
                                resource_field_ref: Some(core::ResourceFieldSelector {
                                    container_name: s("main"),
                                    resource: s("limits.memory"),
                                    divisor: Some(quantity("1Mi")),
                                }),
                                config_map_key_ref: Some(core::ConfigMapKeySelector {
                                    local_object_reference: local("settings"),
                                    key: s("level"),
                                    optional: Some(false),
                                }),
                                secret_key_ref: Some(core::SecretKeySelector {
                                    local_object_reference: local("credentials"),
                                    key: s("password"),
                                    optional: Some(true),
                                }),
                                file_key_ref: None,
                            }),
                        },
                    ],
                    resources: Some(core::ResourceRequirements {
                        limits: quantities(&[("cpu", "500m"), ("memory", "1Gi")]),
                        requests: quantities(&[("cpu", "100m")]),
                        claims: vec![core::ResourceClaim {
                            name: s("gpu"),
                            request: s("one"),
                        }],
                    }),
                    resize_policy: vec![core::ContainerResizePolicy {
                        resource_name: s("cpu"),
                        restart_policy: s("NotRequired"),
                    }],
                    restart_policy: s("Always"),
                    restart_policy_rules: vec![],
                    volume_mounts: vec![core::VolumeMount {
                        name: s("data"),
                        read_only: Some(true),
                        recursive_read_only: s("Disabled"),
                        mount_path: s("/data"),
                        sub_path: s("sub"),
                        mount_propagation: s("HostToContainer"),
                        sub_path_expr: s("$(POD_NAME)"),
                    }],
                    volume_devices: vec![core::VolumeDevice {
                        name: s("block"),
                        device_path: s("/dev/xvda"),
                    }],
                    liveness_probe: probe(core::ProbeHandler {
                        exec: exec(),
                        ..Default::default()
                    }),
                    readiness_probe: probe(core::ProbeHandler {
                        http_get: http_get(),
                        ..Default::default()
                    }),
                    startup_probe: probe(core::ProbeHandler {
                        grpc: Some(core::GrpcAction {
                            port: Some(9090),
                            service: s(""),
                        }),
                        tcp_socket: Some(core::TcpSocketAction {
                            port: named_port("http"),
                            host: s("localhost"),
                        }),
                        ..Default::default()
                    }),
                    lifecycle: Some(core::Lifecycle {
                        post_start: Some(core::LifecycleHandler {
                            exec: exec(),
                            sleep: Some(core::SleepAction { seconds: Some(5) }),
                            ..Default::default()
                        }),
                        pre_stop: Some(core::LifecycleHandler {
                            http_get: http_get(),
                            tcp_socket: Some(core::TcpSocketAction {
                                port: port(81),
                                host: None,
                            }),
                            ..Default::default()
                        }),
                        stop_signal: s("SIGUSR1"),
                    }),
                    termination_message_path: s("/dev/termination-log"),
                    termination_message_policy: s("FallbackToLogsOnError"),
                    image_pull_policy: s("IfNotPresent"),
                    security_context: Some(core::SecurityContext {
                        capabilities: Some(core::Capabilities {
                            add: strings(&["NET_ADMIN"]),
                            drop: strings(&["ALL"]),
                        }),
                        privileged: Some(false),
                        se_linux_options: Some(core::SeLinuxOptions {
                            user: s("system_u"),
                            role: s("system_r"),
                            r#type: s("container_t"),
                            level: s("s0:c1,c2"),
                        }),
                        windows_options: Some(core::WindowsSecurityContextOptions {
                            gmsa_credential_spec_name: s("spec"),
                            gmsa_credential_spec: s("{}"),
                            run_as_user_name: s("ContainerUser"),
                            host_process: Some(false),
                        }),
                        run_as_user: Some(0),
                        run_as_group: Some(1000),
                        run_as_non_root: Some(true),
                        read_only_root_filesystem: Some(true),
                        allow_privilege_escalation: Some(false),
                        proc_mount: s("Default"),
                        seccomp_profile: Some(core::SeccompProfile {
                            r#type: s("Localhost"),
                            localhost_profile: s("profiles/audit.json"),
                        }),
                        app_armor_profile: Some(core::AppArmorProfile {
                            r#type: s("RuntimeDefault"),
                            localhost_profile: None,
                        }),
                    }),
                    stdin: Some(true),
                    stdin_once: Some(false),
                    tty: Some(true),
                }
            }
        }
    };
}

rich_container!(core::Container);
rich_container!(core::EphemeralContainerCommon);

pub(super) fn container_json(name: &str) -> Value {
    json!({
        "name": name,
        "image": "busybox:1.36",
        "command": ["sh", "-c"],
        "args": ["sleep 3600"],
        "workingDir": "/work",
        "ports": [{"name": "http", "hostPort": 8443, "containerPort": 8080, "protocol": "TCP",
            "hostIP": "127.0.0.1"}],
        "envFrom": [
            {"prefix": "CM_", "configMapRef": {"name": "settings", "optional": false}},
            {"secretRef": {"name": "credentials", "optional": true}}
        ],
        "env": [
            {"name": "PLAIN", "value": "1"},
            {"name": "POD_NAME", "valueFrom": {
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"},
                "resourceFieldRef": {"containerName": "main", "resource": "limits.memory",
                    "divisor": "1Mi"},
                "configMapKeyRef": {"name": "settings", "key": "level", "optional": false},
                "secretKeyRef": {"name": "credentials", "key": "password", "optional": true}
            }}
        ],
        "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "100m"},
            "claims": [{"name": "gpu", "request": "one"}]},
        "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}],
        "restartPolicy": "Always",
        "volumeMounts": [{"name": "data", "readOnly": true, "recursiveReadOnly": "Disabled",
            "mountPath": "/data", "subPath": "sub", "mountPropagation": "HostToContainer",
            "subPathExpr": "$(POD_NAME)"}],
        "volumeDevices": [{"name": "block", "devicePath": "/dev/xvda"}],
        "livenessProbe": probe_json(json!({"exec": {"command": ["cat", "/tmp/ready"]}})),
        "readinessProbe": probe_json(json!({"httpGet": http_get_json()})),
        "startupProbe": probe_json(json!({"grpc": {"port": 9090, "service": ""},
            "tcpSocket": {"port": "http", "host": "localhost"}})),
        "lifecycle": {
            "postStart": {"exec": {"command": ["cat", "/tmp/ready"]}, "sleep": {"seconds": 5}},
            "preStop": {"httpGet": http_get_json(), "tcpSocket": {"port": 81}},
            "stopSignal": "SIGUSR1"
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]},
            "privileged": false,
            "seLinuxOptions": {"user": "system_u", "role": "system_r", "type": "container_t",
                "level": "s0:c1,c2"},
            "windowsOptions": {"gmsaCredentialSpecName": "spec", "gmsaCredentialSpec": "{}",
                "runAsUserName": "ContainerUser", "hostProcess": false},
            "runAsUser": 0,
            "runAsGroup": 1000,
            "runAsNonRoot": true,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "procMount": "Default",
            "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/audit.json"},
            "appArmorProfile": {"type": "RuntimeDefault"}
        },
        "stdin": true,
        "tty": true
    })
}

pub(super) fn volume(name: &str, source: core::VolumeSource) -> core::Volume {
    core::Volume {
        name: s(name),
        volume_source: Some(source),
    }
}

pub(super) fn key_to_path(key: &str, mode: Option<i32>) -> core::KeyToPath {
    core::KeyToPath {
        key: s(key),
        path: s(key),
        mode,
    }
}

pub(super) fn volumes() -> Vec<core::Volume> {
    use core::VolumeSource as Source;
    let downward_files = vec![
        core::DownwardAPIVolumeFile {
            path: s("labels"),
            field_ref: Some(core::ObjectFieldSelector {
                api_version: s("v1"),
                field_path: s("metadata.labels"),
            }),
            resource_field_ref: None,
            mode: Some(0o644),
        },
        core::DownwardAPIVolumeFile {
            path: s("cpu"),
            field_ref: None,
            resource_field_ref: Some(core::ResourceFieldSelector {
                container_name: s("main"),
                resource: s("requests.cpu"),
                // Go always sends the divisor; unset it is "0".
                divisor: Some(quantity("0")),
            }),
            mode: None,
        },
    ];
    vec![
        volume(
            "host",
            Source {
                host_path: Some(core::HostPathVolumeSource {
                    path: s("/var/log"),
                    // A pointer: the empty type is kept.
                    r#type: s(""),
                }),
                ..Default::default()
            },
        ),
        volume(
            "scratch",
            Source {
                empty_dir: Some(core::EmptyDirVolumeSource {
                    medium: s("Memory"),
                    size_limit: Some(quantity("64Mi")),
                }),
                ..Default::default()
            },
        ),
        volume(
            "empty",
            Source {
                empty_dir: Some(core::EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        ),
        volume(
            "credentials",
            Source {
                secret: Some(core::SecretVolumeSource {
                    secret_name: s("credentials"),
                    items: vec![key_to_path("password", Some(0o400))],
                    default_mode: Some(0o440),
                    optional: Some(false),
                }),
                ..Default::default()
            },
        ),
        volume(
            "shared",
            Source {
                nfs: Some(core::NfsVolumeSource {
                    server: s("10.0.0.2"),
                    path: s("/exports"),
                    read_only: Some(true),
                }),
                ..Default::default()
            },
        ),
        volume(
            "data",
            Source {
                persistent_volume_claim: Some(core::PersistentVolumeClaimVolumeSource {
                    claim_name: s("data-web-0"),
                    read_only: Some(true),
                }),
                ..Default::default()
            },
        ),
        volume(
            "podinfo",
            Source {
                downward_api: Some(core::DownwardAPIVolumeSource {
                    items: downward_files.clone(),
                    default_mode: Some(0o600),
                }),
                ..Default::default()
            },
        ),
        volume(
            "settings",
            Source {
                config_map: Some(core::ConfigMapVolumeSource {
                    local_object_reference: local("settings"),
                    items: vec![key_to_path("level", None)],
                    default_mode: Some(0),
                    optional: Some(true),
                }),
                ..Default::default()
            },
        ),
        volume(
            "kube-api-access-abcde",
            Source {
                projected: Some(core::ProjectedVolumeSource {
                    sources: vec![
                        core::VolumeProjection {
                            service_account_token: Some(core::ServiceAccountTokenProjection {
                                audience: s("vault"),
                                expiration_seconds: Some(3607),
                                path: s("token"),
                            }),
                            ..Default::default()
                        },
                        core::VolumeProjection {
                            config_map: Some(core::ConfigMapProjection {
                                local_object_reference: local("kube-root-ca.crt"),
                                items: vec![key_to_path("ca.crt", None)],
                                optional: Some(false),
                            }),
                            ..Default::default()
                        },
                        core::VolumeProjection {
                            downward_api: Some(core::DownwardAPIProjection {
                                items: downward_files,
                            }),
                            ..Default::default()
                        },
                        core::VolumeProjection {
                            secret: Some(core::SecretProjection {
                                local_object_reference: local("credentials"),
                                items: vec![],
                                optional: Some(true),
                            }),
                            ..Default::default()
                        },
                        core::VolumeProjection {
                            cluster_trust_bundle: Some(core::ClusterTrustBundleProjection {
                                name: None,
                                signer_name: s("example.com/signer"),
                                label_selector: selector("bundle", "yes"),
                                optional: Some(false),
                                path: s("bundle.pem"),
                            }),
                            ..Default::default()
                        },
                    ],
                    default_mode: Some(0o644),
                }),
                ..Default::default()
            },
        ),
        volume(
            "csi",
            Source {
                csi: Some(core::CSIVolumeSource {
                    driver: s("csi.example.com"),
                    read_only: Some(false),
                    fs_type: s("ext4"),
                    volume_attributes: map(&[("size", "small")]),
                    node_publish_secret_ref: local("csi-secret"),
                }),
                ..Default::default()
            },
        ),
        volume(
            "ephemeral",
            Source {
                ephemeral: Some(core::EphemeralVolumeSource {
                    volume_claim_template: Some(core::PersistentVolumeClaimTemplate {
                        metadata: Some(meta::ObjectMeta {
                            labels: map(&[("claim", "scratch")]),
                            ..Default::default()
                        }),
                        spec: Some(core::PersistentVolumeClaimSpec {
                            access_modes: strings(&["ReadWriteOnce"]),
                            selector: selector("disk", "ssd"),
                            resources: Some(core::VolumeResourceRequirements {
                                limits: quantities(&[("storage", "2Gi")]),
                                requests: quantities(&[("storage", "1Gi")]),
                            }),
                            volume_name: s("pv-1"),
                            storage_class_name: s(""),
                            volume_mode: s("Filesystem"),
                            data_source: Some(core::TypedLocalObjectReference {
                                api_group: s("snapshot.storage.k8s.io"),
                                kind: s("VolumeSnapshot"),
                                name: s("snap"),
                            }),
                            data_source_ref: Some(core::TypedObjectReference {
                                api_group: None,
                                kind: s("PersistentVolumeClaim"),
                                name: s("origin"),
                                namespace: s("other"),
                            }),
                            volume_attributes_class_name: s("gold"),
                        }),
                    }),
                }),
                ..Default::default()
            },
        ),
        volume(
            "tools",
            Source {
                image: Some(core::ImageVolumeSource {
                    reference: s("quay.io/tools:1"),
                    pull_policy: s("IfNotPresent"),
                }),
                ..Default::default()
            },
        ),
    ]
}

pub(super) fn volumes_json() -> Value {
    let downward_files = json!([
        {"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"},
            "mode": 0o644},
        {"path": "cpu", "resourceFieldRef": {"containerName": "main", "resource": "requests.cpu",
            "divisor": "0"}}
    ]);
    json!([
        {"name": "host", "hostPath": {"path": "/var/log", "type": ""}},
        {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
        {"name": "empty", "emptyDir": {}},
        {"name": "credentials", "secret": {"secretName": "credentials",
            "items": [{"key": "password", "path": "password", "mode": 0o400}],
            "defaultMode": 0o440, "optional": false}},
        {"name": "shared", "nfs": {"server": "10.0.0.2", "path": "/exports", "readOnly": true}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0", "readOnly": true}},
        {"name": "podinfo", "downwardAPI": {"items": downward_files, "defaultMode": 0o600}},
        {"name": "settings", "configMap": {"name": "settings",
            "items": [{"key": "level", "path": "level"}], "defaultMode": 0, "optional": true}},
        {"name": "kube-api-access-abcde", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3607,
                "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt",
                "items": [{"key": "ca.crt", "path": "ca.crt"}], "optional": false}},
            {"downwardAPI": {"items": downward_files}},
            {"secret": {"name": "credentials", "optional": true}},
            {"clusterTrustBundle": {"signerName": "example.com/signer",
                "labelSelector": selector_json("bundle", "yes"), "optional": false,
                "path": "bundle.pem"}}
        ], "defaultMode": 0o644}},
        {"name": "csi", "csi": {"driver": "csi.example.com", "readOnly": false,
            "fsType": "ext4", "volumeAttributes": {"size": "small"},
            "nodePublishSecretRef": {"name": "csi-secret"}}},
        {"name": "ephemeral", "ephemeral": {"volumeClaimTemplate": {
            "metadata": {"labels": {"claim": "scratch"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "selector": selector_json("disk", "ssd"),
                "resources": {"limits": {"storage": "2Gi"}, "requests": {"storage": "1Gi"}},
                "volumeName": "pv-1", "storageClassName": "", "volumeMode": "Filesystem",
                "dataSource": {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot",
                    "name": "snap"},
                "dataSourceRef": {"kind": "PersistentVolumeClaim", "name": "origin",
                    "namespace": "other"},
                "volumeAttributesClassName": "gold"}}}},
        {"name": "tools", "image": {"reference": "quay.io/tools:1",
            "pullPolicy": "IfNotPresent"}}
    ])
}

pub(super) fn pod_affinity_term() -> core::PodAffinityTerm {
    core::PodAffinityTerm {
        label_selector: selector("app", "web"),
        namespaces: strings(&["default"]),
        topology_key: s("kubernetes.io/hostname"),
        namespace_selector: selector("team", "a"),
        match_label_keys: strings(&["pod-template-hash"]),
        mismatch_label_keys: strings(&["tenant"]),
    }
}

pub(super) fn pod_affinity_term_json() -> Value {
    json!({"labelSelector": selector_json("app", "web"), "namespaces": ["default"],
        "topologyKey": "kubernetes.io/hostname", "namespaceSelector": selector_json("team", "a"),
        "matchLabelKeys": ["pod-template-hash"], "mismatchLabelKeys": ["tenant"]})
}

pub(super) fn weighted_pod_affinity_term() -> core::WeightedPodAffinityTerm {
    core::WeightedPodAffinityTerm {
        weight: Some(50),
        pod_affinity_term: Some(pod_affinity_term()),
    }
}

pub(super) fn pod_affinity_json() -> Value {
    json!({"requiredDuringSchedulingIgnoredDuringExecution": [pod_affinity_term_json()],
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": pod_affinity_term_json()}]})
}

pub(super) fn node_selector_term() -> core::NodeSelectorTerm {
    let requirement = |key: &str| core::NodeSelectorRequirement {
        key: s(key),
        operator: s("In"),
        values: strings(&["a", "b"]),
    };
    core::NodeSelectorTerm {
        match_expressions: vec![requirement("zone")],
        match_fields: vec![requirement("metadata.name")],
    }
}

pub(super) fn node_selector_term_json() -> Value {
    json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}],
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]})
}

pub(super) fn pod_security_context() -> core::PodSecurityContext {
    core::PodSecurityContext {
        se_linux_options: Some(core::SeLinuxOptions {
            level: s("s0"),
            ..Default::default()
        }),
        windows_options: Some(core::WindowsSecurityContextOptions {
            host_process: Some(true),
            ..Default::default()
        }),
        run_as_user: Some(1000),
        run_as_group: Some(0),
        run_as_non_root: Some(false),
        supplemental_groups: vec![0, 2000],
        supplemental_groups_policy: s("Strict"),
        fs_group: Some(2000),
        sysctls: vec![core::Sysctl {
            name: s("net.core.somaxconn"),
            value: s("1024"),
        }],
        fs_group_change_policy: s("OnRootMismatch"),
        seccomp_profile: Some(core::SeccompProfile {
            r#type: s("RuntimeDefault"),
            localhost_profile: None,
        }),
        app_armor_profile: Some(core::AppArmorProfile {
            r#type: s("Localhost"),
            localhost_profile: s("k8s-apparmor"),
        }),
        se_linux_change_policy: s("MountOption"),
    }
}

pub(super) fn pod_spec() -> core::PodSpec {
    core::PodSpec {
        volumes: volumes(),
        init_containers: vec![core::Container::rich("init")],
        containers: vec![
            core::Container::rich("main"),
            core::Container {
                name: s("sidecar"),
                image: s("nginx"),
                // Go sends every non-pointer field, set or not.
                working_dir: s(""),
                stdin: Some(false),
                resources: Some(core::ResourceRequirements::default()),
                ..Default::default()
            },
        ],
        ephemeral_containers: vec![core::EphemeralContainer {
            ephemeral_container_common: Some(core::EphemeralContainerCommon::rich("debugger")),
            target_container_name: s("main"),
        }],
        restart_policy: s("OnFailure"),
        termination_grace_period_seconds: Some(0),
        active_deadline_seconds: Some(600),
        dns_policy: s("ClusterFirstWithHostNet"),
        node_selector: map(&[("disktype", "ssd")]),
        service_account_name: s("builder"),
        service_account: s("builder-legacy"),
        automount_service_account_token: Some(false),
        node_name: s("node-1"),
        host_network: Some(true),
        host_pid: Some(false),
        host_ipc: Some(true),
        share_process_namespace: Some(true),
        security_context: Some(pod_security_context()),
        image_pull_secrets: vec![core::LocalObjectReference {
            name: s("registry"),
        }],
        hostname: s("web-0"),
        subdomain: s("web"),
        affinity: Some(core::Affinity {
            node_affinity: Some(core::NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(core::NodeSelector {
                    node_selector_terms: vec![node_selector_term()],
                }),
                preferred_during_scheduling_ignored_during_execution: vec![
                    core::PreferredSchedulingTerm {
                        weight: Some(10),
                        preference: Some(node_selector_term()),
                    },
                ],
            }),
            pod_affinity: Some(core::PodAffinity {
                required_during_scheduling_ignored_during_execution: vec![pod_affinity_term()],
                preferred_during_scheduling_ignored_during_execution: vec![
                    weighted_pod_affinity_term(),
                ],
            }),
            pod_anti_affinity: Some(core::PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: vec![pod_affinity_term()],
                preferred_during_scheduling_ignored_during_execution: vec![
                    weighted_pod_affinity_term(),
                ],
            }),
        }),
        scheduler_name: s("default-scheduler"),
        tolerations: vec![
            core::Toleration {
                key: s("node.kubernetes.io/not-ready"),
                operator: s("Exists"),
                value: s(""),
                effect: s("NoExecute"),
                toleration_seconds: Some(0),
            },
            core::Toleration {
                key: s("dedicated"),
                operator: s("Equal"),
                value: s("db"),
                effect: s("NoSchedule"),
                toleration_seconds: None,
            },
        ],
        host_aliases: vec![core::HostAlias {
            ip: s("10.0.0.9"),
            hostnames: strings(&["db.local", "db"]),
        }],
        priority_class_name: s("high"),
        priority: Some(0),
        dns_config: Some(core::PodDnsConfig {
            nameservers: strings(&["10.0.0.10"]),
            searches: strings(&["svc.cluster.local"]),
            options: vec![
                core::PodDnsConfigOption {
                    name: s("ndots"),
                    value: s("2"),
                },
                core::PodDnsConfigOption {
                    name: s("edns0"),
                    value: None,
                },
            ],
        }),
        readiness_gates: vec![core::PodReadinessGate {
            condition_type: s("example.com/ready"),
        }],
        runtime_class_name: s("runc"),
        enable_service_links: Some(false),
        preemption_policy: s("Never"),
        overhead: quantities(&[("cpu", "250m"), ("memory", "120Mi")]),
        topology_spread_constraints: vec![core::TopologySpreadConstraint {
            max_skew: Some(1),
            topology_key: s("zone"),
            when_unsatisfiable: s("DoNotSchedule"),
            label_selector: selector("app", "web"),
            min_domains: Some(2),
            node_affinity_policy: s("Honor"),
            node_taints_policy: s("Ignore"),
            match_label_keys: strings(&["pod-template-hash"]),
        }],
        set_hostname_as_fqdn: Some(true),
        os: Some(core::PodOs { name: s("linux") }),
        host_users: Some(false),
        scheduling_gates: vec![core::PodSchedulingGate { name: s("quota") }],
        resource_claims: vec![
            core::PodResourceClaim {
                name: s("gpu"),
                resource_claim_name: s("gpu-claim"),
                resource_claim_template_name: None,
            },
            core::PodResourceClaim {
                name: s("fpga"),
                resource_claim_name: None,
                resource_claim_template_name: s("fpga-template"),
            },
        ],
        resources: Some(core::ResourceRequirements {
            limits: quantities(&[("memory", "2Gi")]),
            requests: quantities(&[("cpu", "1")]),
            claims: vec![],
        }),
        hostname_override: None,
        workload_ref: None,
    }
}

pub(super) fn pod_security_context_json() -> Value {
    json!({
        "seLinuxOptions": {"level": "s0"},
        "windowsOptions": {"hostProcess": true},
        "runAsUser": 1000,
        "runAsGroup": 0,
        "runAsNonRoot": false,
        "supplementalGroups": [0, 2000],
        "supplementalGroupsPolicy": "Strict",
        "fsGroup": 2000,
        "sysctls": [{"name": "net.core.somaxconn", "value": "1024"}],
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
        "appArmorProfile": {"type": "Localhost", "localhostProfile": "k8s-apparmor"},
        "seLinuxChangePolicy": "MountOption"
    })
}

pub(super) fn affinity_json() -> Value {
    json!({
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [node_selector_term_json()]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "preference": node_selector_term_json()}]
        },
        "podAffinity": pod_affinity_json(),
        "podAntiAffinity": pod_affinity_json()
    })
}

pub(super) fn pod_spec_json() -> Value {
    let mut debugger = container_json("debugger");
    debugger["targetContainerName"] = json!("main");
    let mut spec = json!({
        "volumes": volumes_json(),
        "initContainers": [container_json("init")],
        "containers": [container_json("main"), {"name": "sidecar", "image": "nginx",
            "resources": {}}],
        "ephemeralContainers": [debugger],
        "restartPolicy": "OnFailure",
        "terminationGracePeriodSeconds": 0,
        "activeDeadlineSeconds": 600,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "nodeSelector": {"disktype": "ssd"},
        "serviceAccountName": "builder",
        "serviceAccount": "builder-legacy",
        "automountServiceAccountToken": false,
        "nodeName": "node-1",
        "hostNetwork": true,
        "hostIPC": true,
        "shareProcessNamespace": true,
        "securityContext": pod_security_context_json(),
        "imagePullSecrets": [{"name": "registry"}]
    });
    let scheduling = json!({
        "hostname": "web-0",
        "subdomain": "web",
        "affinity": affinity_json(),
        "schedulerName": "default-scheduler",
        "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 0},
            {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}
        ],
        "hostAliases": [{"ip": "10.0.0.9", "hostnames": ["db.local", "db"]}],
        "priorityClassName": "high",
        "priority": 0,
        "dnsConfig": {"nameservers": ["10.0.0.10"], "searches": ["svc.cluster.local"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]},
        "readinessGates": [{"conditionType": "example.com/ready"}],
        "runtimeClassName": "runc",
        "enableServiceLinks": false,
        "preemptionPolicy": "Never",
        "overhead": {"cpu": "250m", "memory": "120Mi"},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector_json("app", "web"),
            "minDomains": 2, "nodeAffinityPolicy": "Honor", "nodeTaintsPolicy": "Ignore",
            "matchLabelKeys": ["pod-template-hash"]}],
        "setHostnameAsFQDN": true,
        "os": {"name": "linux"},
        "hostUsers": false,
        "schedulingGates": [{"name": "quota"}],
        "resourceClaims": [{"name": "gpu", "resourceClaimName": "gpu-claim"},
            {"name": "fpga", "resourceClaimTemplateName": "fpga-template"}],
        "resources": {"limits": {"memory": "2Gi"}, "requests": {"cpu": "1"}}
    });
    spec.as_object_mut()
        .expect("object")
        .extend(scheduling.as_object().expect("object").clone());
    spec
}

pub(super) fn object_meta() -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s("web-0"),
        generate_name: s("web-"),
        namespace: s("default"),
        self_link: s(""),
        uid: s("5f0c9a3e-0000-4000-8000-000000000001"),
        resource_version: s("42"),
        generation: Some(3),
        creation_timestamp: time(1_700_000_000),
        deletion_timestamp: time(1_700_000_100),
        deletion_grace_period_seconds: Some(0),
        labels: map(&[("app", "web"), ("empty", "")]),
        annotations: map(&[("note", "kept")]),
        owner_references: vec![meta::OwnerReference {
            api_version: s("apps/v1"),
            kind: s("StatefulSet"),
            name: s("web"),
            uid: s("5f0c9a3e-0000-4000-8000-000000000002"),
            controller: Some(true),
            block_owner_deletion: Some(false),
        }],
        finalizers: strings(&["example.com/keep"]),
        managed_fields: vec![meta::ManagedFieldsEntry {
            manager: s("kubectl"),
            operation: s("Update"),
            api_version: s("v1"),
            time: time(1_700_000_000),
            fields_type: s("FieldsV1"),
            fields_v1: Some(meta::FieldsV1 {
                raw: Some(br#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}"#.to_vec()),
            }),
            subresource: s("status"),
        }],
    }
}

pub(super) fn object_meta_json() -> Value {
    json!({
        "name": "web-0",
        "generateName": "web-",
        "namespace": "default",
        "uid": "5f0c9a3e-0000-4000-8000-000000000001",
        "resourceVersion": "42",
        "generation": 3,
        "creationTimestamp": "2023-11-14T22:13:20Z",
        "deletionTimestamp": "2023-11-14T22:15:00Z",
        "deletionGracePeriodSeconds": 0,
        "labels": {"app": "web", "empty": ""},
        "annotations": {"note": "kept"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
            "uid": "5f0c9a3e-0000-4000-8000-000000000002", "controller": true,
            "blockOwnerDeletion": false}],
        "finalizers": ["example.com/keep"],
        "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
            "time": "2023-11-14T22:13:20Z", "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
            "subresource": "status"}]
    })
}

pub(super) fn container_status(name: &str) -> core::ContainerStatus {
    core::ContainerStatus {
        name: s(name),
        state: Some(core::ContainerState {
            running: Some(core::ContainerStateRunning {
                started_at: time(1_700_000_000),
            }),
            ..Default::default()
        }),
        last_state: Some(core::ContainerState {
            waiting: Some(core::ContainerStateWaiting {
                reason: s("CrashLoopBackOff"),
                message: s("back-off"),
            }),
            terminated: Some(core::ContainerStateTerminated {
                exit_code: Some(137),
                signal: Some(9),
                reason: s("OOMKilled"),
                message: s("killed"),
                started_at: time(1_700_000_000),
                finished_at: time(1_700_000_100),
                container_id: s("containerd://abc"),
            }),
            running: None,
        }),
        ready: Some(true),
        restart_count: Some(3),
        image: s("busybox:1.36"),
        image_id: s("docker.io/library/busybox@sha256:00"),
        container_id: s("containerd://def"),
        started: Some(false),
        allocated_resources: quantities(&[("cpu", "100m")]),
        resources: Some(core::ResourceRequirements {
            limits: quantities(&[("cpu", "500m")]),
            ..Default::default()
        }),
        volume_mounts: vec![core::VolumeMountStatus {
            name: s("data"),
            mount_path: s("/data"),
            read_only: Some(true),
            recursive_read_only: s("Disabled"),
        }],
        user: Some(core::ContainerUser {
            linux: Some(core::LinuxContainerUser {
                uid: Some(1000),
                gid: Some(3000),
                supplemental_groups: vec![0, 4000],
            }),
        }),
        allocated_resources_status: vec![core::ResourceStatus {
            name: s("claim:gpu"),
            resources: vec![core::ResourceHealth {
                resource_id: s("gpu-0"),
                health: s("Healthy"),
            }],
        }],
        stop_signal: s("SIGTERM"),
    }
}

pub(super) fn container_status_json(name: &str) -> Value {
    json!({
        "name": name,
        "state": {"running": {"startedAt": "2023-11-14T22:13:20Z"}},
        "lastState": {
            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off"},
            "terminated": {"exitCode": 137, "signal": 9, "reason": "OOMKilled",
                "message": "killed", "startedAt": "2023-11-14T22:13:20Z",
                "finishedAt": "2023-11-14T22:15:00Z", "containerID": "containerd://abc"}
        },
        "ready": true,
        "restartCount": 3,
        "image": "busybox:1.36",
        "imageID": "docker.io/library/busybox@sha256:00",
        "containerID": "containerd://def",
        "started": false,
        "allocatedResources": {"cpu": "100m"},
        "resources": {"limits": {"cpu": "500m"}},
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true,
            "recursiveReadOnly": "Disabled"}],
        "user": {"linux": {"uid": 1000, "gid": 3000, "supplementalGroups": [0, 4000]}},
        "allocatedResourcesStatus": [{"name": "claim:gpu",
            "resources": [{"resourceID": "gpu-0", "health": "Healthy"}]}],
        "stopSignal": "SIGTERM"
    })
}

pub(super) fn pod_status() -> core::PodStatus {
    core::PodStatus {
        observed_generation: Some(3),
        phase: s("Running"),
        conditions: vec![core::PodCondition {
            r#type: s("Ready"),
            observed_generation: Some(3),
            status: s("True"),
            // Go sends a zero time as an empty message.
            last_probe_time: Some(meta::Time::default()),
            last_transition_time: time(1_700_000_100),
            reason: s("PodReady"),
            message: s("all ready"),
        }],
        message: s("running"),
        reason: s("Started"),
        nominated_node_name: s("node-2"),
        host_ip: s("127.0.0.2"),
        host_ips: vec![core::HostIp { ip: s("127.0.0.2") }],
        pod_ip: s("10.42.0.7"),
        pod_ips: vec![
            core::PodIp { ip: s("10.42.0.7") },
            core::PodIp { ip: s("fd00::7") },
        ],
        start_time: time(1_700_000_000),
        init_container_statuses: vec![container_status("init")],
        container_statuses: vec![container_status("main")],
        qos_class: s("Burstable"),
        ephemeral_container_statuses: vec![container_status("debugger")],
        resize: s("InProgress"),
        resource_claim_statuses: vec![core::PodResourceClaimStatus {
            name: s("gpu"),
            resource_claim_name: s("gpu-claim"),
        }],
        extended_resource_claim_status: None,
        allocated_resources: BTreeMap::new(),
        resources: None,
    }
}

pub(super) fn pod_status_json() -> Value {
    json!({
        "observedGeneration": 3,
        "phase": "Running",
        "conditions": [{"type": "Ready", "observedGeneration": 3, "status": "True",
            "lastTransitionTime": "2023-11-14T22:15:00Z", "reason": "PodReady",
            "message": "all ready"}],
        "message": "running",
        "reason": "Started",
        "nominatedNodeName": "node-2",
        "hostIP": "127.0.0.2",
        "hostIPs": [{"ip": "127.0.0.2"}],
        "podIP": "10.42.0.7",
        "podIPs": [{"ip": "10.42.0.7"}, {"ip": "fd00::7"}],
        "startTime": "2023-11-14T22:13:20Z",
        "initContainerStatuses": [container_status_json("init")],
        "containerStatuses": [container_status_json("main")],
        "qosClass": "Burstable",
        "ephemeralContainerStatuses": [container_status_json("debugger")],
        "resize": "InProgress",
        "resourceClaimStatuses": [{"name": "gpu", "resourceClaimName": "gpu-claim"}]
    })
}

#[test]
fn a_pod_with_every_laid_out_field_decodes_to_its_json() {
    let pod = core::Pod {
        metadata: Some(object_meta()),
        spec: Some(pod_spec()),
        status: Some(pod_status()),
    };
    let decoded = decode_pod(&pod).expect("decodes");
    let expected = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": object_meta_json(),
        "spec": pod_spec_json(),
        "status": pod_status_json(),
    });
    assert_eq!(
        decoded,
        expected,
        "decoded:\n{}",
        serde_json::to_string_pretty(&decoded).unwrap_or_default()
    );
    // Every name is one upstream's JSON has: k8s-openapi keeps the whole object.
    assert_eq!(through_k8s_openapi(&decoded), decoded);
    // And the same pod answers a protobuf client whole.
    assert_round_trip(
        "v1",
        "Pod",
        &pod,
        json!({"metadata": object_meta_json(), "spec": pod_spec_json(),
            "status": pod_status_json()}),
    );
}

/// The fields newer than the v1.33 k8s-openapi reads (hostnameOverride, restartPolicyRules,
/// fileKeyRef, the pod-level status resources), checked against the JSON alone.
#[test]
fn the_newest_pod_fields_decode_too() {
    let container = core::Container {
        name: s("main"),
        restart_policy: s("Never"),
        restart_policy_rules: vec![core::ContainerRestartRule {
            action: s("Restart"),
            exit_codes: Some(core::ContainerRestartRuleOnExitCodes {
                operator: s("In"),
                values: vec![42, 0],
            }),
        }],
        env: vec![core::EnvVar {
            name: s("FROM_FILE"),
            value: None,
            value_from: Some(core::EnvVarSource {
                file_key_ref: Some(core::FileKeySelector {
                    volume_name: s("config"),
                    path: s("env"),
                    key: s("LEVEL"),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        }],
        ..Default::default()
    };
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("new"),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![container],
            hostname_override: s(""),
            ..Default::default()
        }),
        status: Some(core::PodStatus {
            allocated_resources: quantities(&[("cpu", "2")]),
            resources: Some(core::ResourceRequirements {
                requests: quantities(&[("memory", "0")]),
                ..Default::default()
            }),
            extended_resource_claim_status: Some(core::PodExtendedResourceClaimStatus {
                request_mappings: vec![core::ContainerExtendedResourceRequest {
                    container_name: s("main"),
                    resource_name: s("example.com/gpu"),
                    request_name: s("r0"),
                }],
                resource_claim_name: s("main-extended"),
            }),
            ..Default::default()
        }),
    };
    let decoded = decode_pod(&pod).expect("decodes");
    assert_eq!(
        decoded,
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "new"},
            "spec": {
                "containers": [{"name": "main", "restartPolicy": "Never",
                    "restartPolicyRules": [{"action": "Restart",
                        "exitCodes": {"operator": "In", "values": [42, 0]}}],
                    "env": [{"name": "FROM_FILE", "valueFrom": {"fileKeyRef": {
                        "volumeName": "config", "path": "env", "key": "LEVEL",
                        "optional": false}}}]}],
                "hostnameOverride": ""
            },
            "status": {
                "allocatedResources": {"cpu": "2"},
                "resources": {"requests": {"memory": "0"}},
                "extendedResourceClaimStatus": {"requestMappings": [{"containerName": "main",
                    "resourceName": "example.com/gpu", "requestName": "r0"}],
                    "resourceClaimName": "main-extended"}
            }
        })
    );
}

/// A field petset does not lay out is refused with its number and place, not dropped; one
/// that holds nothing (as Go sends every unset non-pointer field) is skipped.
#[test]
fn an_unknown_field_with_a_value_is_a_bad_request_naming_it() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("legacy"),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("main"),
                ..Default::default()
            }],
            volumes: vec![volume(
                "disk",
                core::VolumeSource {
                    gce_persistent_disk: Some(core::GcePersistentDiskVolumeSource {
                        pd_name: s("disk-1"),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )],
            ..Default::default()
        }),
        status: None,
    };
    let error = decode_pod(&pod).expect_err("a GCE disk is not laid out");
    assert_eq!(error.code, 400);
    assert!(
        error.message.contains("field number 3 of spec.volumes[0]"),
        "{}",
        error.message
    );

    // The same field, present but empty, carries nothing: skipped.
    let mut empty = pod.clone();
    empty.spec.as_mut().expect("spec").volumes[0]
        .volume_source
        .as_mut()
        .expect("source")
        .gce_persistent_disk = Some(core::GcePersistentDiskVolumeSource {
        pd_name: s(""),
        partition: Some(0),
        read_only: Some(false),
        ..Default::default()
    });
    let decoded = decode_pod(&empty).expect("an empty unknown field decodes");
    assert_eq!(decoded["spec"]["volumes"], json!([{"name": "disk"}]));

    // An unknown field at the top of the object, appended to a valid body.
    let mut raw = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("x"),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    raw.extend([0xa0, 0x06, 0x01]); // field 100, varint 1
    let pods = petset_api::resources::find("", "v1", "pods").expect("pods are served");
    let error = decode(&envelope("v1", "Pod", raw), pods).expect_err("field 100 is unknown");
    assert_eq!(error.code, 400);
    assert!(
        error.message.contains("field number 100 of the object"),
        "{}",
        error.message
    );
}

/// A Job's pod template is the same layout: `kubectl create job` and `--from=cronjob/…`.
#[test]
fn a_job_and_a_cron_job_carry_the_whole_pod_template() {
    use k8s_pb::api::batch::v1 as batch;
    let template = core::PodTemplateSpec {
        metadata: Some(meta::ObjectMeta {
            labels: map(&[("app", "backup")]),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            volumes: volumes(),
            containers: vec![core::Container::rich("main")],
            restart_policy: s("Never"),
            ..Default::default()
        }),
    };
    let job_spec = batch::JobSpec {
        parallelism: Some(2),
        completions: Some(4),
        active_deadline_seconds: Some(100),
        pod_failure_policy: Some(batch::PodFailurePolicy {
            rules: vec![batch::PodFailurePolicyRule {
                action: s("FailJob"),
                on_exit_codes: Some(batch::PodFailurePolicyOnExitCodesRequirement {
                    container_name: s("main"),
                    operator: s("In"),
                    values: vec![1, 2],
                }),
                on_pod_conditions: vec![batch::PodFailurePolicyOnPodConditionsPattern {
                    r#type: s("DisruptionTarget"),
                    status: s("True"),
                }],
            }],
        }),
        success_policy: Some(batch::SuccessPolicy {
            rules: vec![batch::SuccessPolicyRule {
                succeeded_indexes: s("0-2"),
                succeeded_count: Some(1),
            }],
        }),
        backoff_limit: Some(0),
        backoff_limit_per_index: Some(1),
        max_failed_indexes: Some(2),
        selector: selector("app", "backup"),
        manual_selector: Some(false),
        template: Some(template),
        ttl_seconds_after_finished: Some(0),
        completion_mode: s("Indexed"),
        suspend: Some(true),
        pod_replacement_policy: s("Failed"),
        managed_by: s("kueue.x-k8s.io/multikueue"),
    };
    let job_spec_json = json!({
        "parallelism": 2, "completions": 4, "activeDeadlineSeconds": 100,
        "podFailurePolicy": {"rules": [{"action": "FailJob",
            "onExitCodes": {"containerName": "main", "operator": "In", "values": [1, 2]},
            "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]},
        "successPolicy": {"rules": [{"succeededIndexes": "0-2", "succeededCount": 1}]},
        "backoffLimit": 0, "backoffLimitPerIndex": 1, "maxFailedIndexes": 2,
        "selector": selector_json("app", "backup"), "manualSelector": false,
        "template": {"metadata": {"labels": {"app": "backup"}}, "spec": {
            "volumes": volumes_json(), "containers": [container_json("main")],
            "restartPolicy": "Never"}},
        "ttlSecondsAfterFinished": 0, "completionMode": "Indexed", "suspend": true,
        "podReplacementPolicy": "Failed", "managedBy": "kueue.x-k8s.io/multikueue"
    });
    let job = batch::Job {
        metadata: Some(meta::ObjectMeta {
            name: s("backup"),
            ..Default::default()
        }),
        spec: Some(job_spec.clone()),
        status: Some(batch::JobStatus::default()),
    };
    assert_round_trip(
        "batch/v1",
        "Job",
        &job,
        json!({"metadata": {"name": "backup"}, "spec": job_spec_json.clone()}),
    );

    let cron_job = batch::CronJob {
        metadata: Some(meta::ObjectMeta {
            name: s("nightly"),
            ..Default::default()
        }),
        spec: Some(batch::CronJobSpec {
            schedule: s("0 3 * * *"),
            time_zone: s("Etc/UTC"),
            starting_deadline_seconds: Some(0),
            concurrency_policy: s("Forbid"),
            suspend: Some(false),
            job_template: Some(batch::JobTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    annotations: map(&[("team", "ops")]),
                    ..Default::default()
                }),
                spec: Some(job_spec),
            }),
            successful_jobs_history_limit: Some(0),
            failed_jobs_history_limit: Some(5),
        }),
        status: None,
    };
    let cron_jobs =
        petset_api::resources::find("batch", "v1", "cronjobs").expect("cronjobs are served");
    let decoded = decode(
        &envelope("batch/v1", "CronJob", cron_job.encode_to_vec()),
        cron_jobs,
    )
    .expect("cron job");
    assert_eq!(
        decoded,
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "timeZone": "Etc/UTC",
                "startingDeadlineSeconds": 0, "concurrencyPolicy": "Forbid", "suspend": false,
                "jobTemplate": {"metadata": {"annotations": {"team": "ops"}},
                    "spec": job_spec_json},
                "successfulJobsHistoryLimit": 0, "failedJobsHistoryLimit": 5}})
    );
}
