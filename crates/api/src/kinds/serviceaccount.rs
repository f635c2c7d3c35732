//! ServiceAccounts (core/v1): stored only, for now.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::json::items;
use crate::proto::{Field, Kind, OBJECT_META, f, many};
use crate::resources::{ResourceType, entry};
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
