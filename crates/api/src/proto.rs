//! Protobuf message layouts of the kinds kubectl's imperative `create` commands send as
//! protobuf (field numbers are upstream's `generated.proto`). Only data: the decoder is the
//! API server's (`protobuf.rs`), and each kind's layout is in its catalogue entry.

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
    Message(&'static [Field]),
    StringMap,
    BytesMap,
    IntOrString,
    Time,
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
    f(6, "controller", Kind::Bool),
    f(7, "blockOwnerDeletion", Kind::Bool),
];

/// metav1.ObjectMeta.
pub const OBJECT_META: &[Field] = &[
    f(1, "name", Kind::String),
    f(2, "generateName", Kind::String),
    f(3, "namespace", Kind::String),
    f(5, "uid", Kind::String),
    f(6, "resourceVersion", Kind::String),
    f(7, "generation", Kind::Int),
    f(8, "creationTimestamp", Kind::Time),
    f(11, "labels", Kind::StringMap),
    f(12, "annotations", Kind::StringMap),
    many(13, "ownerReferences", Kind::Message(OWNER_REFERENCE)),
    many(14, "finalizers", Kind::String),
];
