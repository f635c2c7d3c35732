//! core/v1 containers (upstream's `k8s.io/api/core/v1/generated.proto`): `Container`,
//! `EphemeralContainer` and what they hold (ports, environment, resources, probes, lifecycle
//! hooks, security contexts), and the pod's own `PodSecurityContext`, which shares their
//! SELinux, seccomp and AppArmor messages. Go pointers are the `Optional` kinds.

use super::volume::{LOCAL_OBJECT_REFERENCE, VOLUME_DEVICE, VOLUME_MOUNT};
use super::{Field, Kind, f, many};

/// ObjectFieldSelector (`fieldRef`).
pub const OBJECT_FIELD_SELECTOR: &[Field] = &[
    f(1, "apiVersion", Kind::String),
    f(2, "fieldPath", Kind::String),
];

/// ResourceFieldSelector (`resourceFieldRef`); Go always sends the divisor, "0" when unset.
pub const RESOURCE_FIELD_SELECTOR: &[Field] = &[
    f(1, "containerName", Kind::String),
    f(2, "resource", Kind::String),
    f(3, "divisor", Kind::Quantity),
];

/// A ConfigMap's or a Secret's key (`configMapKeyRef`, `secretKeyRef`).
const KEY_SELECTOR: &[Field] = &[
    f(
        1,
        "localObjectReference",
        Kind::Inline(LOCAL_OBJECT_REFERENCE),
    ),
    f(2, "key", Kind::String),
    f(3, "optional", Kind::OptionalBool),
];

const FILE_KEY_SELECTOR: &[Field] = &[
    f(1, "volumeName", Kind::String),
    f(2, "path", Kind::String),
    f(3, "key", Kind::String),
    f(4, "optional", Kind::OptionalBool),
];

const ENV_VAR_SOURCE: &[Field] = &[
    f(1, "fieldRef", Kind::Message(OBJECT_FIELD_SELECTOR)),
    f(
        2,
        "resourceFieldRef",
        Kind::Message(RESOURCE_FIELD_SELECTOR),
    ),
    f(3, "configMapKeyRef", Kind::Message(KEY_SELECTOR)),
    f(4, "secretKeyRef", Kind::Message(KEY_SELECTOR)),
    f(5, "fileKeyRef", Kind::Message(FILE_KEY_SELECTOR)),
];

/// EnvVar.
pub const ENV_VAR: &[Field] = &[
    f(1, "name", Kind::String),
    f(2, "value", Kind::String),
    f(3, "valueFrom", Kind::Message(ENV_VAR_SOURCE)),
];

/// A whole ConfigMap or Secret as environment (`configMapRef`, `secretRef`).
const ENV_SOURCE: &[Field] = &[
    f(
        1,
        "localObjectReference",
        Kind::Inline(LOCAL_OBJECT_REFERENCE),
    ),
    f(2, "optional", Kind::OptionalBool),
];

const ENV_FROM_SOURCE: &[Field] = &[
    f(1, "prefix", Kind::String),
    f(2, "configMapRef", Kind::Message(ENV_SOURCE)),
    f(3, "secretRef", Kind::Message(ENV_SOURCE)),
];

const CONTAINER_PORT: &[Field] = &[
    f(1, "name", Kind::String),
    f(2, "hostPort", Kind::Int),
    f(3, "containerPort", Kind::Int),
    f(4, "protocol", Kind::String),
    f(5, "hostIP", Kind::String),
];

/// ResourceRequirements: limits and requests as Quantity maps, and the claims used.
pub const RESOURCE_REQUIREMENTS: &[Field] = &[
    f(1, "limits", Kind::QuantityMap),
    f(2, "requests", Kind::QuantityMap),
    many(
        3,
        "claims",
        Kind::Message(&[f(1, "name", Kind::String), f(2, "request", Kind::String)]),
    ),
];

const CONTAINER_RESIZE_POLICY: &[Field] = &[
    f(1, "resourceName", Kind::String),
    f(2, "restartPolicy", Kind::String),
];

const CONTAINER_RESTART_RULE: &[Field] = &[
    f(1, "action", Kind::String),
    f(
        2,
        "exitCodes",
        Kind::Message(&[f(1, "operator", Kind::String), many(2, "values", Kind::Int)]),
    ),
];

const EXEC_ACTION: &[Field] = &[many(1, "command", Kind::String)];

const HTTP_GET_ACTION: &[Field] = &[
    f(1, "path", Kind::String),
    f(2, "port", Kind::IntOrString),
    f(3, "host", Kind::String),
    f(4, "scheme", Kind::String),
    many(
        5,
        "httpHeaders",
        Kind::Message(&[f(1, "name", Kind::String), f(2, "value", Kind::String)]),
    ),
];

const TCP_SOCKET_ACTION: &[Field] = &[f(1, "port", Kind::IntOrString), f(2, "host", Kind::String)];

const GRPC_ACTION: &[Field] = &[
    f(1, "port", Kind::Int),
    f(2, "service", Kind::OptionalString),
];

/// ProbeHandler, inlined in a Probe.
const PROBE_HANDLER: &[Field] = &[
    f(1, "exec", Kind::Message(EXEC_ACTION)),
    f(2, "httpGet", Kind::Message(HTTP_GET_ACTION)),
    f(3, "tcpSocket", Kind::Message(TCP_SOCKET_ACTION)),
    f(4, "grpc", Kind::Message(GRPC_ACTION)),
];

const PROBE: &[Field] = &[
    f(1, "handler", Kind::Inline(PROBE_HANDLER)),
    f(2, "initialDelaySeconds", Kind::Int),
    f(3, "timeoutSeconds", Kind::Int),
    f(4, "periodSeconds", Kind::Int),
    f(5, "successThreshold", Kind::Int),
    f(6, "failureThreshold", Kind::Int),
    f(7, "terminationGracePeriodSeconds", Kind::OptionalInt),
];

/// LifecycleHandler: a postStart or preStop hook.
const LIFECYCLE_HANDLER: &[Field] = &[
    f(1, "exec", Kind::Message(EXEC_ACTION)),
    f(2, "httpGet", Kind::Message(HTTP_GET_ACTION)),
    f(3, "tcpSocket", Kind::Message(TCP_SOCKET_ACTION)),
    f(4, "sleep", Kind::Message(&[f(1, "seconds", Kind::Int)])),
];

const LIFECYCLE: &[Field] = &[
    f(1, "postStart", Kind::Message(LIFECYCLE_HANDLER)),
    f(2, "preStop", Kind::Message(LIFECYCLE_HANDLER)),
    f(3, "stopSignal", Kind::OptionalString),
];

const SE_LINUX_OPTIONS: &[Field] = &[
    f(1, "user", Kind::String),
    f(2, "role", Kind::String),
    f(3, "type", Kind::String),
    f(4, "level", Kind::String),
];

const WINDOWS_SECURITY_CONTEXT_OPTIONS: &[Field] = &[
    f(1, "gmsaCredentialSpecName", Kind::OptionalString),
    f(2, "gmsaCredentialSpec", Kind::OptionalString),
    f(3, "runAsUserName", Kind::OptionalString),
    f(4, "hostProcess", Kind::OptionalBool),
];

/// SeccompProfile and AppArmorProfile, laid out alike.
const SECURITY_PROFILE: &[Field] = &[
    f(1, "type", Kind::String),
    f(2, "localhostProfile", Kind::OptionalString),
];

const SECURITY_CONTEXT: &[Field] = &[
    f(
        1,
        "capabilities",
        Kind::Message(&[many(1, "add", Kind::String), many(2, "drop", Kind::String)]),
    ),
    f(2, "privileged", Kind::OptionalBool),
    f(3, "seLinuxOptions", Kind::Message(SE_LINUX_OPTIONS)),
    f(4, "runAsUser", Kind::OptionalInt),
    f(5, "runAsNonRoot", Kind::OptionalBool),
    f(6, "readOnlyRootFilesystem", Kind::OptionalBool),
    f(7, "allowPrivilegeEscalation", Kind::OptionalBool),
    f(8, "runAsGroup", Kind::OptionalInt),
    f(9, "procMount", Kind::OptionalString),
    f(
        10,
        "windowsOptions",
        Kind::Message(WINDOWS_SECURITY_CONTEXT_OPTIONS),
    ),
    f(11, "seccompProfile", Kind::Message(SECURITY_PROFILE)),
    f(12, "appArmorProfile", Kind::Message(SECURITY_PROFILE)),
];

/// PodSecurityContext.
pub const POD_SECURITY_CONTEXT: &[Field] = &[
    f(1, "seLinuxOptions", Kind::Message(SE_LINUX_OPTIONS)),
    f(2, "runAsUser", Kind::OptionalInt),
    f(3, "runAsNonRoot", Kind::OptionalBool),
    many(4, "supplementalGroups", Kind::Int),
    f(5, "fsGroup", Kind::OptionalInt),
    f(6, "runAsGroup", Kind::OptionalInt),
    many(
        7,
        "sysctls",
        Kind::Message(&[f(1, "name", Kind::String), f(2, "value", Kind::String)]),
    ),
    f(
        8,
        "windowsOptions",
        Kind::Message(WINDOWS_SECURITY_CONTEXT_OPTIONS),
    ),
    f(9, "fsGroupChangePolicy", Kind::OptionalString),
    f(10, "seccompProfile", Kind::Message(SECURITY_PROFILE)),
    f(11, "appArmorProfile", Kind::Message(SECURITY_PROFILE)),
    f(12, "supplementalGroupsPolicy", Kind::OptionalString),
    f(13, "seLinuxChangePolicy", Kind::OptionalString),
];

/// Container. EphemeralContainerCommon numbers its fields alike.
pub const CONTAINER: &[Field] = &[
    f(1, "name", Kind::String),
    f(2, "image", Kind::String),
    many(3, "command", Kind::String),
    many(4, "args", Kind::String),
    f(5, "workingDir", Kind::String),
    many(6, "ports", Kind::Message(CONTAINER_PORT)),
    many(7, "env", Kind::Message(ENV_VAR)),
    f(8, "resources", Kind::Message(RESOURCE_REQUIREMENTS)),
    many(9, "volumeMounts", Kind::Message(VOLUME_MOUNT)),
    f(10, "livenessProbe", Kind::Message(PROBE)),
    f(11, "readinessProbe", Kind::Message(PROBE)),
    f(12, "lifecycle", Kind::Message(LIFECYCLE)),
    f(13, "terminationMessagePath", Kind::String),
    f(14, "imagePullPolicy", Kind::String),
    f(15, "securityContext", Kind::Message(SECURITY_CONTEXT)),
    f(16, "stdin", Kind::Bool),
    f(17, "stdinOnce", Kind::Bool),
    f(18, "tty", Kind::Bool),
    many(19, "envFrom", Kind::Message(ENV_FROM_SOURCE)),
    f(20, "terminationMessagePolicy", Kind::String),
    many(21, "volumeDevices", Kind::Message(VOLUME_DEVICE)),
    f(22, "startupProbe", Kind::Message(PROBE)),
    many(23, "resizePolicy", Kind::Message(CONTAINER_RESIZE_POLICY)),
    f(24, "restartPolicy", Kind::OptionalString),
    many(
        25,
        "restartPolicyRules",
        Kind::Message(CONTAINER_RESTART_RULE),
    ),
];

/// EphemeralContainer: the container's fields inlined, and the container it targets.
pub const EPHEMERAL_CONTAINER: &[Field] = &[
    f(1, "ephemeralContainerCommon", Kind::Inline(CONTAINER)),
    f(2, "targetContainerName", Kind::String),
];
