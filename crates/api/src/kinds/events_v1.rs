//! Events (events.k8s.io/v1). Upstream serves one resource in two shapes; petset stores each
//! apart (`store_prefix`), in its own shape.

use crate::kinds::{NameRule, Strategy};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::validate;

pub type Typed = k8s_openapi::api::events::v1::Event;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["ev"],
    strategy: &EventStrategy,
    ..entry(
        "events.k8s.io",
        "Event",
        "events",
        "event",
        true,
        round_trip::<Typed>,
    )
};

pub struct EventStrategy;

impl Strategy for EventStrategy {
    fn name_rule(&self) -> NameRule {
        validate::any_name
    }
}
