//! core/v1 Pod, PodTemplateSpec, PodSpec and PodStatus (upstream's
//! `k8s.io/api/core/v1/generated.proto`), with the scheduling messages of a spec (affinity,
//! tolerations, topology spread, DNS). Every kind with a pod template reuses `POD_TEMPLATE_SPEC`.
//! Go pointers are the `Optional` kinds.

use super::container::{
    CONTAINER, EPHEMERAL_CONTAINER, POD_SECURITY_CONTEXT, RESOURCE_REQUIREMENTS,
};
use super::volume::{LOCAL_OBJECT_REFERENCE, VOLUME};
use super::{Field, Kind, LABEL_SELECTOR, OBJECT_META, f, many};

const NODE_SELECTOR_REQUIREMENT: &[Field] = &[
    f(1, "key", Kind::String),
    f(2, "operator", Kind::String),
    many(3, "values", Kind::String),
];

const NODE_SELECTOR_TERM: &[Field] = &[
    many(
        1,
        "matchExpressions",
        Kind::Message(NODE_SELECTOR_REQUIREMENT),
    ),
    many(2, "matchFields", Kind::Message(NODE_SELECTOR_REQUIREMENT)),
];

/// NodeSelector: terms ORed (a node affinity's required part).
const NODE_SELECTOR: &[Field] = &[many(
    1,
    "nodeSelectorTerms",
    Kind::Message(NODE_SELECTOR_TERM),
)];

const NODE_AFFINITY: &[Field] = &[
    f(
        1,
        "requiredDuringSchedulingIgnoredDuringExecution",
        Kind::Message(NODE_SELECTOR),
    ),
    many(
        2,
        "preferredDuringSchedulingIgnoredDuringExecution",
        Kind::Message(&[
            f(1, "weight", Kind::Int),
            f(2, "preference", Kind::Message(NODE_SELECTOR_TERM)),
        ]),
    ),
];

const POD_AFFINITY_TERM: &[Field] = &[
    f(1, "labelSelector", Kind::Message(LABEL_SELECTOR)),
    many(2, "namespaces", Kind::String),
    f(3, "topologyKey", Kind::String),
    f(4, "namespaceSelector", Kind::Message(LABEL_SELECTOR)),
    many(5, "matchLabelKeys", Kind::String),
    many(6, "mismatchLabelKeys", Kind::String),
];

/// PodAffinity and PodAntiAffinity, laid out alike.
const POD_AFFINITY: &[Field] = &[
    many(
        1,
        "requiredDuringSchedulingIgnoredDuringExecution",
        Kind::Message(POD_AFFINITY_TERM),
    ),
    many(
        2,
        "preferredDuringSchedulingIgnoredDuringExecution",
        Kind::Message(&[
            f(1, "weight", Kind::Int),
            f(2, "podAffinityTerm", Kind::Message(POD_AFFINITY_TERM)),
        ]),
    ),
];

const AFFINITY: &[Field] = &[
    f(1, "nodeAffinity", Kind::Message(NODE_AFFINITY)),
    f(2, "podAffinity", Kind::Message(POD_AFFINITY)),
    f(3, "podAntiAffinity", Kind::Message(POD_AFFINITY)),
];

const TOLERATION: &[Field] = &[
    f(1, "key", Kind::String),
    f(2, "operator", Kind::String),
    f(3, "value", Kind::String),
    f(4, "effect", Kind::String),
    f(5, "tolerationSeconds", Kind::OptionalInt),
];

const HOST_ALIAS: &[Field] = &[f(1, "ip", Kind::String), many(2, "hostnames", Kind::String)];

const POD_DNS_CONFIG: &[Field] = &[
    many(1, "nameservers", Kind::String),
    many(2, "searches", Kind::String),
    many(
        3,
        "options",
        Kind::Message(&[
            f(1, "name", Kind::String),
            f(2, "value", Kind::OptionalString),
        ]),
    ),
];

const TOPOLOGY_SPREAD_CONSTRAINT: &[Field] = &[
    f(1, "maxSkew", Kind::Int),
    f(2, "topologyKey", Kind::String),
    f(3, "whenUnsatisfiable", Kind::String),
    f(4, "labelSelector", Kind::Message(LABEL_SELECTOR)),
    f(5, "minDomains", Kind::OptionalInt),
    f(6, "nodeAffinityPolicy", Kind::OptionalString),
    f(7, "nodeTaintsPolicy", Kind::OptionalString),
    many(8, "matchLabelKeys", Kind::String),
];

const POD_RESOURCE_CLAIM: &[Field] = &[
    f(1, "name", Kind::String),
    f(3, "resourceClaimName", Kind::OptionalString),
    f(4, "resourceClaimTemplateName", Kind::OptionalString),
];

/// A message of one string, `name` (scheduling gates, os).
const NAME_ONLY: &[Field] = &[f(1, "name", Kind::String)];

/// PodSpec.
pub const POD_SPEC: &[Field] = &[
    many(1, "volumes", Kind::Message(VOLUME)),
    many(2, "containers", Kind::Message(CONTAINER)),
    f(3, "restartPolicy", Kind::String),
    f(4, "terminationGracePeriodSeconds", Kind::OptionalInt),
    f(5, "activeDeadlineSeconds", Kind::OptionalInt),
    f(6, "dnsPolicy", Kind::String),
    f(7, "nodeSelector", Kind::StringMap),
    f(8, "serviceAccountName", Kind::String),
    f(9, "serviceAccount", Kind::String),
    f(10, "nodeName", Kind::String),
    f(11, "hostNetwork", Kind::Bool),
    f(12, "hostPID", Kind::Bool),
    f(13, "hostIPC", Kind::Bool),
    f(14, "securityContext", Kind::Message(POD_SECURITY_CONTEXT)),
    many(
        15,
        "imagePullSecrets",
        Kind::Message(LOCAL_OBJECT_REFERENCE),
    ),
    f(16, "hostname", Kind::String),
    f(17, "subdomain", Kind::String),
    f(18, "affinity", Kind::Message(AFFINITY)),
    f(19, "schedulerName", Kind::String),
    many(20, "initContainers", Kind::Message(CONTAINER)),
    f(21, "automountServiceAccountToken", Kind::OptionalBool),
    many(22, "tolerations", Kind::Message(TOLERATION)),
    many(23, "hostAliases", Kind::Message(HOST_ALIAS)),
    f(24, "priorityClassName", Kind::String),
    f(25, "priority", Kind::OptionalInt),
    f(26, "dnsConfig", Kind::Message(POD_DNS_CONFIG)),
    f(27, "shareProcessNamespace", Kind::OptionalBool),
    many(
        28,
        "readinessGates",
        Kind::Message(&[f(1, "conditionType", Kind::String)]),
    ),
    f(29, "runtimeClassName", Kind::OptionalString),
    f(30, "enableServiceLinks", Kind::OptionalBool),
    f(31, "preemptionPolicy", Kind::OptionalString),
    f(32, "overhead", Kind::QuantityMap),
    many(
        33,
        "topologySpreadConstraints",
        Kind::Message(TOPOLOGY_SPREAD_CONSTRAINT),
    ),
    many(
        34,
        "ephemeralContainers",
        Kind::Message(EPHEMERAL_CONTAINER),
    ),
    f(35, "setHostnameAsFQDN", Kind::OptionalBool),
    f(36, "os", Kind::Message(NAME_ONLY)),
    f(37, "hostUsers", Kind::OptionalBool),
    many(38, "schedulingGates", Kind::Message(NAME_ONLY)),
    many(39, "resourceClaims", Kind::Message(POD_RESOURCE_CLAIM)),
    f(40, "resources", Kind::Message(RESOURCE_REQUIREMENTS)),
    f(41, "hostnameOverride", Kind::OptionalString),
];

/// PodTemplateSpec: a template's metadata and spec (Jobs, CronJobs, the workload kinds).
pub const POD_TEMPLATE_SPEC: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "spec", Kind::Message(POD_SPEC)),
];

const POD_CONDITION: &[Field] = &[
    f(1, "type", Kind::String),
    f(2, "status", Kind::String),
    f(3, "lastProbeTime", Kind::Time),
    f(4, "lastTransitionTime", Kind::Time),
    f(5, "reason", Kind::String),
    f(6, "message", Kind::String),
    f(7, "observedGeneration", Kind::Int),
];

const CONTAINER_STATE: &[Field] = &[
    f(
        1,
        "waiting",
        Kind::Message(&[f(1, "reason", Kind::String), f(2, "message", Kind::String)]),
    ),
    f(
        2,
        "running",
        Kind::Message(&[f(1, "startedAt", Kind::Time)]),
    ),
    f(
        3,
        "terminated",
        Kind::Message(&[
            f(1, "exitCode", Kind::Int),
            f(2, "signal", Kind::Int),
            f(3, "reason", Kind::String),
            f(4, "message", Kind::String),
            f(5, "startedAt", Kind::Time),
            f(6, "finishedAt", Kind::Time),
            f(7, "containerID", Kind::String),
        ]),
    ),
];

const VOLUME_MOUNT_STATUS: &[Field] = &[
    f(1, "name", Kind::String),
    f(2, "mountPath", Kind::String),
    f(3, "readOnly", Kind::Bool),
    f(4, "recursiveReadOnly", Kind::OptionalString),
];

const CONTAINER_USER: &[Field] = &[f(
    1,
    "linux",
    Kind::Message(&[
        f(1, "uid", Kind::Int),
        f(2, "gid", Kind::Int),
        many(3, "supplementalGroups", Kind::Int),
    ]),
)];

const RESOURCE_STATUS: &[Field] = &[
    f(1, "name", Kind::String),
    many(
        2,
        "resources",
        Kind::Message(&[
            f(1, "resourceID", Kind::String),
            f(2, "health", Kind::String),
        ]),
    ),
];

const CONTAINER_STATUS: &[Field] = &[
    f(1, "name", Kind::String),
    f(2, "state", Kind::Message(CONTAINER_STATE)),
    f(3, "lastState", Kind::Message(CONTAINER_STATE)),
    f(4, "ready", Kind::Bool),
    f(5, "restartCount", Kind::Int),
    f(6, "image", Kind::String),
    f(7, "imageID", Kind::String),
    f(8, "containerID", Kind::String),
    f(9, "started", Kind::OptionalBool),
    f(10, "allocatedResources", Kind::QuantityMap),
    f(11, "resources", Kind::Message(RESOURCE_REQUIREMENTS)),
    many(12, "volumeMounts", Kind::Message(VOLUME_MOUNT_STATUS)),
    f(13, "user", Kind::Message(CONTAINER_USER)),
    many(
        14,
        "allocatedResourcesStatus",
        Kind::Message(RESOURCE_STATUS),
    ),
    f(15, "stopSignal", Kind::OptionalString),
];

const IP_ONLY: &[Field] = &[f(1, "ip", Kind::String)];

/// PodStatus.
pub const POD_STATUS: &[Field] = &[
    f(1, "phase", Kind::String),
    many(2, "conditions", Kind::Message(POD_CONDITION)),
    f(3, "message", Kind::String),
    f(4, "reason", Kind::String),
    f(5, "hostIP", Kind::String),
    f(6, "podIP", Kind::String),
    f(7, "startTime", Kind::Time),
    many(8, "containerStatuses", Kind::Message(CONTAINER_STATUS)),
    f(9, "qosClass", Kind::String),
    many(10, "initContainerStatuses", Kind::Message(CONTAINER_STATUS)),
    f(11, "nominatedNodeName", Kind::String),
    many(12, "podIPs", Kind::Message(IP_ONLY)),
    many(
        13,
        "ephemeralContainerStatuses",
        Kind::Message(CONTAINER_STATUS),
    ),
    f(14, "resize", Kind::String),
    many(
        15,
        "resourceClaimStatuses",
        Kind::Message(&[
            f(1, "name", Kind::String),
            f(2, "resourceClaimName", Kind::OptionalString),
        ]),
    ),
    many(16, "hostIPs", Kind::Message(IP_ONLY)),
    f(17, "observedGeneration", Kind::Int),
    f(
        18,
        "extendedResourceClaimStatus",
        Kind::Message(&[
            many(
                1,
                "requestMappings",
                Kind::Message(&[
                    f(1, "containerName", Kind::String),
                    f(2, "resourceName", Kind::String),
                    f(3, "requestName", Kind::String),
                ]),
            ),
            f(2, "resourceClaimName", Kind::String),
        ]),
    ),
    f(19, "allocatedResources", Kind::QuantityMap),
    f(20, "resources", Kind::Message(RESOURCE_REQUIREMENTS)),
];

/// Pod.
pub const POD: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "spec", Kind::Message(POD_SPEC)),
    f(3, "status", Kind::Message(POD_STATUS)),
];
