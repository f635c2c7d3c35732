//! The reviews (authentication.k8s.io/v1 and authorization.k8s.io/v1): kinds a client only
//! ever creates, which the API server answers at once from its authenticator and authorizer
//! and never stores (`kubectl auth whoami`, `kubectl auth can-i`, webhooks' TokenReviews and
//! SubjectAccessReviews). Each is a module of its own, as every served kind is; the protobuf
//! layouts are upstream's `generated.proto`, since kubectl sends these that way.

use crate::proto::{Field, Kind, OBJECT_META, f, many};
use crate::resources::{CREATE_ONLY, ResourceType, entry};
use crate::table::{NAME, Printing};

const fn review(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    round_trip: crate::shape::RoundTrip,
    protobuf: &'static [Field],
) -> ResourceType {
    ResourceType {
        verbs: CREATE_ONLY,
        protobuf: Some(protobuf),
        printing: Printing {
            columns: &[NAME],
            cells: |_, name, _, _| vec![name],
        },
        ..entry(group, kind, plural, singular, namespaced, round_trip)
    }
}

const AUTHENTICATION: &str = "authentication.k8s.io";
const AUTHORIZATION: &str = "authorization.k8s.io";

const RESOURCE_ATTRIBUTES: &[Field] = &[
    f(1, "namespace", Kind::String),
    f(2, "verb", Kind::String),
    f(3, "group", Kind::String),
    f(4, "version", Kind::String),
    f(5, "resource", Kind::String),
    f(6, "subresource", Kind::String),
    f(7, "name", Kind::String),
];

const NON_RESOURCE_ATTRIBUTES: &[Field] = &[f(1, "path", Kind::String), f(2, "verb", Kind::String)];

const SELF_ACCESS_SPEC: &[Field] = &[
    f(1, "resourceAttributes", Kind::Message(RESOURCE_ATTRIBUTES)),
    f(
        2,
        "nonResourceAttributes",
        Kind::Message(NON_RESOURCE_ATTRIBUTES),
    ),
];

const ACCESS_SPEC: &[Field] = &[
    f(1, "resourceAttributes", Kind::Message(RESOURCE_ATTRIBUTES)),
    f(
        2,
        "nonResourceAttributes",
        Kind::Message(NON_RESOURCE_ATTRIBUTES),
    ),
    f(3, "user", Kind::String),
    many(4, "groups", Kind::String),
    f(6, "uid", Kind::String),
];

const fn with_spec(spec: &'static [Field]) -> [Field; 2] {
    [
        f(1, "metadata", Kind::Message(OBJECT_META)),
        f(2, "spec", Kind::Message(spec)),
    ]
}

const SELF_ACCESS_REVIEW: &[Field] = &with_spec(SELF_ACCESS_SPEC);
const ACCESS_REVIEW: &[Field] = &with_spec(ACCESS_SPEC);
const RULES_REVIEW: &[Field] = &with_spec(&[f(1, "namespace", Kind::String)]);
const TOKEN_REVIEW: &[Field] = &with_spec(&[
    f(1, "token", Kind::String),
    many(2, "audiences", Kind::String),
]);
const SELF_SUBJECT_REVIEW: &[Field] = &[f(1, "metadata", Kind::Message(OBJECT_META))];

pub mod selfsubjectreview {
    use crate::shape::round_trip;

    pub type Typed = k8s_openapi::api::authentication::v1::SelfSubjectReview;

    pub const RESOURCE: crate::resources::ResourceType = super::review(
        super::AUTHENTICATION,
        "SelfSubjectReview",
        "selfsubjectreviews",
        "selfsubjectreview",
        false,
        round_trip::<Typed>,
        super::SELF_SUBJECT_REVIEW,
    );
}

pub mod tokenreview {
    use crate::shape::round_trip;

    pub type Typed = k8s_openapi::api::authentication::v1::TokenReview;

    pub const RESOURCE: crate::resources::ResourceType = super::review(
        super::AUTHENTICATION,
        "TokenReview",
        "tokenreviews",
        "tokenreview",
        false,
        round_trip::<Typed>,
        super::TOKEN_REVIEW,
    );
}

pub mod selfsubjectaccessreview {
    use crate::shape::round_trip;

    pub type Typed = k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;

    pub const RESOURCE: crate::resources::ResourceType = super::review(
        super::AUTHORIZATION,
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        false,
        round_trip::<Typed>,
        super::SELF_ACCESS_REVIEW,
    );
}

pub mod selfsubjectrulesreview {
    use crate::shape::round_trip;

    pub type Typed = k8s_openapi::api::authorization::v1::SelfSubjectRulesReview;

    pub const RESOURCE: crate::resources::ResourceType = super::review(
        super::AUTHORIZATION,
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        false,
        round_trip::<Typed>,
        super::RULES_REVIEW,
    );
}

pub mod subjectaccessreview {
    use crate::shape::round_trip;

    pub type Typed = k8s_openapi::api::authorization::v1::SubjectAccessReview;

    pub const RESOURCE: crate::resources::ResourceType = super::review(
        super::AUTHORIZATION,
        "SubjectAccessReview",
        "subjectaccessreviews",
        "subjectaccessreview",
        false,
        round_trip::<Typed>,
        super::ACCESS_REVIEW,
    );
}

pub mod localsubjectaccessreview {
    use crate::shape::round_trip;

    pub type Typed = k8s_openapi::api::authorization::v1::LocalSubjectAccessReview;

    pub const RESOURCE: crate::resources::ResourceType = super::review(
        super::AUTHORIZATION,
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        "localsubjectaccessreview",
        true,
        round_trip::<Typed>,
        super::ACCESS_REVIEW,
    );
}
