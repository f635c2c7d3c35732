//! HorizontalPodAutoscalers at autoscaling/v1, refused as at v2 (`hpa`): kubectl 1.32's
//! `autoscale` tries v2, then v1 on any error, and prints the second answer, so both versions
//! must give the reason. Not the preferred version: v2 is listed first.

use crate::kinds::hpa;
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::Printing;

pub type Typed = k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["hpa"],
    printing: Printing {
        columns: hpa::COLUMNS,
        cells: hpa::cells,
    },
    strategy: &hpa::AutoscalerStrategy,
    protobuf: Some(hpa::AUTOSCALER),
    ..entry(
        "autoscaling",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        round_trip::<Typed>,
    )
};
