//! Protobuf message layouts of the kinds clients send as protobuf (kubectl's imperative
//! `create` commands, `kubectl debug`, client-go's typed clients); field numbers are upstream's
//! `generated.proto`. Only data: the decoder is the API server's (`protobuf.rs`), and each
//! kind's layout is in its catalogue entry. A field a layout lacks is refused when it carries a
//! value, so a layout lists every field of its message (or names it `Kind::Ignored`).
//! The core/v1 pod tree, shared by every kind with a pod template, is in `pod`, `container`
//! and `volume`.

pub mod container;
pub mod pod;
pub mod volume;

/// What a field holds.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    String,
    /// Bytes, rendered base64 as JSON does.
    Bytes,
    Int,
    /// A pointer int (`*int64`): zero is a value, not an absent field.
    OptionalInt,
    Bool,
    /// A pointer bool (`*bool`): false is a value, not an absent field.
    OptionalBool,
    /// A pointer string (`*string`): the empty string is a value, not an absent field.
    OptionalString,
    Message(&'static [Field]),
    /// A message embedded in Go with `json:",inline"` (a Volume's `VolumeSource`, a Probe's
    /// `ProbeHandler`): its own field on the wire, its fields merged into the parent in JSON.
    Inline(&'static [Field]),
    StringMap,
    BytesMap,
    IntOrString,
    Time,
    /// metav1.MicroTime (events, leases): a Time whose nanoseconds JSON keeps to the microsecond.
    MicroTime,
    /// resource.Quantity: a message `{string = 1}` that JSON renders as the bare string.
    Quantity,
    /// A map of Quantities (`ResourceList`: requests, limits, overhead).
    QuantityMap,
    /// A map of Times (a PodDisruptionBudget's `disruptedPods`).
    TimeMap,
    /// metav1.FieldsV1: a message `{raw = 1}` whose bytes are JSON, rendered as that JSON.
    RawJson,
    /// A field the layout knows and deliberately does not decode (its value is not kept).
    Ignored,
}

/// One field of a message.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub number: u64,
    pub name: &'static str,
    pub kind: Kind,
    pub repeated: bool,
}

/// A singular field.
pub const fn f(number: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: false,
    }
}

/// A repeated field.
pub const fn many(number: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: true,
    }
}

/// metav1.DeleteOptions, which `kubectl delete` and `drain` may send as protobuf.
pub const DELETE_OPTIONS: &[Field] = &[
    f(1, "gracePeriodSeconds", Kind::OptionalInt),
    f(
        2,
        "preconditions",
        Kind::Message(&[
            f(1, "uid", Kind::String),
            f(2, "resourceVersion", Kind::String),
        ]),
    ),
    f(3, "orphanDependents", Kind::Bool),
    f(4, "propagationPolicy", Kind::String),
    many(5, "dryRun", Kind::String),
];

/// policy/v1 Eviction: the pod's metadata and the options of the delete it asks for.
pub const EVICTION: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "deleteOptions", Kind::Message(DELETE_OPTIONS)),
];

/// metav1.OwnerReference.
pub const OWNER_REFERENCE: &[Field] = &[
    f(5, "apiVersion", Kind::String),
    f(1, "kind", Kind::String),
    f(3, "name", Kind::String),
    f(4, "uid", Kind::String),
    f(6, "controller", Kind::OptionalBool),
    f(7, "blockOwnerDeletion", Kind::OptionalBool),
];

/// metav1.ManagedFieldsEntry.
pub const MANAGED_FIELDS_ENTRY: &[Field] = &[
    f(1, "manager", Kind::String),
    f(2, "operation", Kind::String),
    f(3, "apiVersion", Kind::String),
    f(4, "time", Kind::Time),
    f(6, "fieldsType", Kind::String),
    f(7, "fieldsV1", Kind::RawJson),
    f(8, "subresource", Kind::String),
];

/// metav1.ObjectMeta (Go's marshaller sends `selfLink` and the zero timestamps on every object).
pub const OBJECT_META: &[Field] = &[
    f(1, "name", Kind::String),
    f(2, "generateName", Kind::String),
    f(3, "namespace", Kind::String),
    f(4, "selfLink", Kind::String),
    f(5, "uid", Kind::String),
    f(6, "resourceVersion", Kind::String),
    f(7, "generation", Kind::Int),
    f(8, "creationTimestamp", Kind::Time),
    f(9, "deletionTimestamp", Kind::Time),
    f(10, "deletionGracePeriodSeconds", Kind::OptionalInt),
    f(11, "labels", Kind::StringMap),
    f(12, "annotations", Kind::StringMap),
    many(13, "ownerReferences", Kind::Message(OWNER_REFERENCE)),
    many(14, "finalizers", Kind::String),
    many(17, "managedFields", Kind::Message(MANAGED_FIELDS_ENTRY)),
];

/// metav1.LabelSelectorRequirement.
pub const LABEL_SELECTOR_REQUIREMENT: &[Field] = &[
    f(1, "key", Kind::String),
    f(2, "operator", Kind::String),
    many(3, "values", Kind::String),
];

/// metav1.LabelSelector.
pub const LABEL_SELECTOR: &[Field] = &[
    f(1, "matchLabels", Kind::StringMap),
    many(
        2,
        "matchExpressions",
        Kind::Message(LABEL_SELECTOR_REQUIREMENT),
    ),
];

/// core/v1 ObjectReference (an Event's `involvedObject`, an address's `targetRef`).
pub const OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Kind::String),
    f(2, "namespace", Kind::String),
    f(3, "name", Kind::String),
    f(4, "uid", Kind::String),
    f(5, "apiVersion", Kind::String),
    f(6, "resourceVersion", Kind::String),
    f(7, "fieldPath", Kind::String),
];

/// metav1.Condition, the condition shape of the newer kinds' statuses.
pub const CONDITION: &[Field] = &[
    f(1, "type", Kind::String),
    f(2, "status", Kind::String),
    f(3, "observedGeneration", Kind::Int),
    f(4, "lastTransitionTime", Kind::Time),
    f(5, "reason", Kind::String),
    f(6, "message", Kind::String),
];
