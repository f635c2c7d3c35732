//! core/v1 volumes and what mounts them (upstream's `k8s.io/api/core/v1/generated.proto`):
//! `Volume` with the sources petset's nodes serve or a pod commonly names, `VolumeMount`,
//! `VolumeDevice`, and the claim template of an ephemeral volume. Go pointers (`*int32`,
//! `*bool`, `*string`) are the `Optional` kinds: their zero is a value.

use super::container::{OBJECT_FIELD_SELECTOR, RESOURCE_FIELD_SELECTOR};
use super::{Field, Kind, LABEL_SELECTOR, OBJECT_META, f, many};

/// LocalObjectReference, also inlined (`name`) in the selectors and projections.
pub const LOCAL_OBJECT_REFERENCE: &[Field] = &[f(1, "name", Kind::String)];

/// KeyToPath: one key of a ConfigMap or Secret as a file.
const KEY_TO_PATH: &[Field] = &[
    f(1, "key", Kind::String),
    f(2, "path", Kind::String),
    f(3, "mode", Kind::OptionalInt),
];

const HOST_PATH: &[Field] = &[
    f(1, "path", Kind::String),
    f(2, "type", Kind::OptionalString),
];

const EMPTY_DIR: &[Field] = &[
    f(1, "medium", Kind::String),
    f(2, "sizeLimit", Kind::Quantity),
];

const SECRET: &[Field] = &[
    f(1, "secretName", Kind::String),
    many(2, "items", Kind::Message(KEY_TO_PATH)),
    f(3, "defaultMode", Kind::OptionalInt),
    f(4, "optional", Kind::OptionalBool),
];

const NFS: &[Field] = &[
    f(1, "server", Kind::String),
    f(2, "path", Kind::String),
    f(3, "readOnly", Kind::Bool),
];

const PERSISTENT_VOLUME_CLAIM: &[Field] = &[
    f(1, "claimName", Kind::String),
    f(2, "readOnly", Kind::Bool),
];

const DOWNWARD_API_VOLUME_FILE: &[Field] = &[
    f(1, "path", Kind::String),
    f(2, "fieldRef", Kind::Message(OBJECT_FIELD_SELECTOR)),
    f(
        3,
        "resourceFieldRef",
        Kind::Message(RESOURCE_FIELD_SELECTOR),
    ),
    f(4, "mode", Kind::OptionalInt),
];

const DOWNWARD_API: &[Field] = &[
    many(1, "items", Kind::Message(DOWNWARD_API_VOLUME_FILE)),
    f(2, "defaultMode", Kind::OptionalInt),
];

const CONFIG_MAP: &[Field] = &[
    f(
        1,
        "localObjectReference",
        Kind::Inline(LOCAL_OBJECT_REFERENCE),
    ),
    many(2, "items", Kind::Message(KEY_TO_PATH)),
    f(3, "defaultMode", Kind::OptionalInt),
    f(4, "optional", Kind::OptionalBool),
];

/// A ConfigMap's or a Secret's projection (field 3 was never used).
const OBJECT_PROJECTION: &[Field] = &[
    f(
        1,
        "localObjectReference",
        Kind::Inline(LOCAL_OBJECT_REFERENCE),
    ),
    many(2, "items", Kind::Message(KEY_TO_PATH)),
    f(4, "optional", Kind::OptionalBool),
];

const SERVICE_ACCOUNT_TOKEN_PROJECTION: &[Field] = &[
    f(1, "audience", Kind::String),
    f(2, "expirationSeconds", Kind::OptionalInt),
    f(3, "path", Kind::String),
];

const CLUSTER_TRUST_BUNDLE_PROJECTION: &[Field] = &[
    f(1, "name", Kind::OptionalString),
    f(2, "signerName", Kind::OptionalString),
    f(3, "labelSelector", Kind::Message(LABEL_SELECTOR)),
    f(4, "path", Kind::String),
    f(5, "optional", Kind::OptionalBool),
];

const VOLUME_PROJECTION: &[Field] = &[
    f(1, "secret", Kind::Message(OBJECT_PROJECTION)),
    f(
        2,
        "downwardAPI",
        Kind::Message(&[many(1, "items", Kind::Message(DOWNWARD_API_VOLUME_FILE))]),
    ),
    f(3, "configMap", Kind::Message(OBJECT_PROJECTION)),
    f(
        4,
        "serviceAccountToken",
        Kind::Message(SERVICE_ACCOUNT_TOKEN_PROJECTION),
    ),
    f(
        5,
        "clusterTrustBundle",
        Kind::Message(CLUSTER_TRUST_BUNDLE_PROJECTION),
    ),
];

const PROJECTED: &[Field] = &[
    many(1, "sources", Kind::Message(VOLUME_PROJECTION)),
    f(2, "defaultMode", Kind::OptionalInt),
];

const CSI: &[Field] = &[
    f(1, "driver", Kind::String),
    f(2, "readOnly", Kind::OptionalBool),
    f(3, "fsType", Kind::OptionalString),
    f(4, "volumeAttributes", Kind::StringMap),
    f(
        5,
        "nodePublishSecretRef",
        Kind::Message(LOCAL_OBJECT_REFERENCE),
    ),
];

const TYPED_LOCAL_OBJECT_REFERENCE: &[Field] = &[
    f(1, "apiGroup", Kind::OptionalString),
    f(2, "kind", Kind::String),
    f(3, "name", Kind::String),
];

const TYPED_OBJECT_REFERENCE: &[Field] = &[
    f(1, "apiGroup", Kind::OptionalString),
    f(2, "kind", Kind::String),
    f(3, "name", Kind::String),
    f(4, "namespace", Kind::OptionalString),
];

/// PersistentVolumeClaimSpec, as an ephemeral volume's claim template (and a StatefulSet's
/// `volumeClaimTemplates`) carries it.
pub const PERSISTENT_VOLUME_CLAIM_SPEC: &[Field] = &[
    many(1, "accessModes", Kind::String),
    f(
        2,
        "resources",
        Kind::Message(&[
            f(1, "limits", Kind::QuantityMap),
            f(2, "requests", Kind::QuantityMap),
        ]),
    ),
    f(3, "volumeName", Kind::String),
    f(4, "selector", Kind::Message(LABEL_SELECTOR)),
    f(5, "storageClassName", Kind::OptionalString),
    f(6, "volumeMode", Kind::OptionalString),
    f(7, "dataSource", Kind::Message(TYPED_LOCAL_OBJECT_REFERENCE)),
    f(8, "dataSourceRef", Kind::Message(TYPED_OBJECT_REFERENCE)),
    f(9, "volumeAttributesClassName", Kind::OptionalString),
];

const EPHEMERAL: &[Field] = &[f(
    1,
    "volumeClaimTemplate",
    Kind::Message(&[
        f(1, "metadata", Kind::Message(OBJECT_META)),
        f(2, "spec", Kind::Message(PERSISTENT_VOLUME_CLAIM_SPEC)),
    ]),
)];

const IMAGE: &[Field] = &[
    f(1, "reference", Kind::String),
    f(2, "pullPolicy", Kind::String),
];

/// VolumeSource, inlined in a Volume. The cloud and legacy in-tree sources (gcePersistentDisk,
/// awsElasticBlockStore, iscsi, rbd, …) are not laid out: a pod naming one is refused with
/// the field's number rather than stored without its source.
const VOLUME_SOURCE: &[Field] = &[
    f(1, "hostPath", Kind::Message(HOST_PATH)),
    f(2, "emptyDir", Kind::Message(EMPTY_DIR)),
    f(6, "secret", Kind::Message(SECRET)),
    f(7, "nfs", Kind::Message(NFS)),
    f(
        10,
        "persistentVolumeClaim",
        Kind::Message(PERSISTENT_VOLUME_CLAIM),
    ),
    f(16, "downwardAPI", Kind::Message(DOWNWARD_API)),
    f(19, "configMap", Kind::Message(CONFIG_MAP)),
    f(26, "projected", Kind::Message(PROJECTED)),
    f(28, "csi", Kind::Message(CSI)),
    f(29, "ephemeral", Kind::Message(EPHEMERAL)),
    f(30, "image", Kind::Message(IMAGE)),
];

/// Volume: a name and its inlined source.
pub const VOLUME: &[Field] = &[
    f(1, "name", Kind::String),
    f(2, "volumeSource", Kind::Inline(VOLUME_SOURCE)),
];

/// VolumeMount.
pub const VOLUME_MOUNT: &[Field] = &[
    f(1, "name", Kind::String),
    f(2, "readOnly", Kind::Bool),
    f(3, "mountPath", Kind::String),
    f(4, "subPath", Kind::String),
    f(5, "mountPropagation", Kind::OptionalString),
    f(6, "subPathExpr", Kind::String),
    f(7, "recursiveReadOnly", Kind::OptionalString),
];

/// VolumeDevice: a raw block volume in a container.
pub const VOLUME_DEVICE: &[Field] = &[f(1, "name", Kind::String), f(2, "devicePath", Kind::String)];
