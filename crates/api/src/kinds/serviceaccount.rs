//! ServiceAccounts (core/v1), and their `token` subresource (a TokenRequest, served by the API
//! server, which holds the signing key).

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::json::items;
use crate::proto::{Field, Kind, OBJECT_META, f, many};
use crate::resources::{ResourceType, Subresource, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col};

pub type Typed = k8s_openapi::api::core::v1::ServiceAccount;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["sa"],
    printing: Printing {
        columns: &[NAME, col("Secrets", "string", 0), AGE] as &[Column],
        cells,
    },
    protobuf: Some(SERVICE_ACCOUNT),
    subresources: &[Subresource {
        name: "token",
        group: "authentication.k8s.io",
        version: "v1",
        kind: "TokenRequest",
        verbs: &["create"],
    }],
    ..entry(
        "",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        round_trip::<Typed>,
    )
};

/// The protobuf layout kubectl's imperative `create` sends (upstream's `generated.proto`).
const NAME_ONLY: &[Field] = &[f(1, "name", Kind::String)];

const SERVICE_ACCOUNT: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    many(3, "imagePullSecrets", Kind::Message(NAME_ONLY)),
    f(4, "automountServiceAccountToken", Kind::Bool),
];

fn cells(account: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    vec![name, json!(items(account, "/secrets").len()), age]
}

/// A TokenRequest's protobuf layout (k8s.io/api/authentication/v1 `generated.proto`), for
/// clients that send it that way.
pub const TOKEN_REQUEST: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "spec", Kind::Message(TOKEN_REQUEST_SPEC)),
];

const TOKEN_REQUEST_SPEC: &[Field] = &[
    many(1, "audiences", Kind::String),
    f(4, "expirationSeconds", Kind::OptionalInt),
    f(3, "boundObjectRef", Kind::Message(BOUND_OBJECT_REFERENCE)),
];

const BOUND_OBJECT_REFERENCE: &[Field] = &[
    f(1, "kind", Kind::String),
    f(2, "apiVersion", Kind::String),
    f(3, "name", Kind::String),
    f(4, "uid", Kind::String),
];
