//! ServiceAccounts (core/v1): stored only, for now.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, items};

pub type Typed = k8s_openapi::api::core::v1::ServiceAccount;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["sa"],
    printing: Printing {
        columns: &[NAME, col("Secrets", "string", 0), AGE] as &[Column],
        cells,
    },
    ..entry(
        "",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        round_trip::<Typed>,
    )
};

fn cells(account: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    vec![name, json!(items(account, "/secrets").len()), age]
}
