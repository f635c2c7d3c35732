//! Building HTTP responses: JSON bodies, `Status` errors, tables and partial metadata, with the
//! headers the real API server sends.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use jiff::Timestamp;
use petset_api::resources::ResourceType;
use petset_api::{ApiError, table};
use serde_json::{Value, json};

/// `Cache-Control` on every answer: the kubectl dispatcher caches `/version` otherwise.
pub const NO_CACHE: &str = "no-cache, private";

pub fn json(status: StatusCode, value: &Value) -> Response {
    json_with_type(status, value, "application/json")
}

/// Marks an answer that is one whole API value (an object, a list, a Status, discovery), the
/// only kind of answer a protobuf client may get re-encoded (`protobuf::encode::negotiate`);
/// watch streams, logs and proxied bodies never carry it.
#[derive(Clone, Copy, Debug)]
pub struct WholeValue;

pub fn json_with_type(status: StatusCode, value: &Value, content_type: &str) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.extensions_mut().insert(WholeValue);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    response
}

pub fn error(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(status, &error.to_status())
}

/// The `Status` a successful delete answers with, for kinds that do not return the object.
pub fn delete_success(resource: &ResourceType, object: &Value) -> Value {
    let mut details = json!({
        "name": object.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
        "kind": resource.plural,
        "uid": object.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
    });
    if !resource.group.is_empty() {
        details["group"] = json!(resource.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// How the client wants objects rendered, from its Accept header and query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rendering {
    Object,
    Table {
        include: IncludeObject,
        now: Timestamp,
    },
    PartialMetadata,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl Rendering {
    /// `now` is what a Table's AGE cells count from.
    pub fn negotiate(accept: &str, include_object: Option<&str>, now: Timestamp) -> Self {
        for part in accept.split(',') {
            let params: Vec<&str> = part.split(';').map(str::trim).collect();
            let in_meta = params.contains(&"g=meta.k8s.io");
            if params.contains(&"as=Table") && in_meta {
                let include = match include_object {
                    Some("None") => IncludeObject::None,
                    Some("Object") => IncludeObject::Object,
                    _ => IncludeObject::Metadata,
                };
                return Self::Table { include, now };
            }
            if in_meta
                && (params.contains(&"as=PartialObjectMetadata")
                    || params.contains(&"as=PartialObjectMetadataList"))
            {
                return Self::PartialMetadata;
            }
        }
        Self::Object
    }
}

pub fn partial_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

fn row(resource: &ResourceType, object: &Value, include: IncludeObject, now: Timestamp) -> Value {
    let mut row = json!({"cells": table::cells(resource, object, now)});
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => row["object"] = partial_metadata(object),
        IncludeObject::Object => row["object"] = object.clone(),
    }
    row
}

/// A Table of objects; `with_columns` false leaves out the column definitions (watch events
/// after the first).
pub fn table(
    resource: &ResourceType,
    objects: &[Value],
    list_meta: Value,
    include: IncludeObject,
    with_columns: bool,
    now: Timestamp,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| row(resource, object, include, now))
        .collect();
    let mut table = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [],
        "rows": rows,
    });
    if with_columns {
        table["columnDefinitions"] = table::column_definitions(resource);
    }
    table
}

/// Renders one object as the client asked.
pub fn render_object(resource: &ResourceType, object: &Value, rendering: Rendering) -> Value {
    match rendering {
        Rendering::Object => object.clone(),
        Rendering::PartialMetadata => partial_metadata(object),
        Rendering::Table { include, now } => {
            let meta = json!({"resourceVersion": object.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null)});
            table(
                resource,
                std::slice::from_ref(object),
                meta,
                include,
                true,
                now,
            )
        }
    }
}

/// Renders a list as the client asked.
pub fn render_list(
    resource: &ResourceType,
    items: Vec<Value>,
    list_meta: Value,
    rendering: Rendering,
) -> Value {
    match rendering {
        Rendering::Object => {
            let items: Vec<Value> = items.into_iter().map(strip_type_meta).collect();
            json!({
                "kind": format!("{}List", resource.kind),
                "apiVersion": resource.api_version(),
                "metadata": list_meta,
                "items": items,
            })
        }
        Rendering::PartialMetadata => {
            let items: Vec<Value> = items.iter().map(partial_metadata).collect();
            json!({
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": list_meta,
                "items": items,
            })
        }
        Rendering::Table { include, now } => table(resource, &items, list_meta, include, true, now),
    }
}

/// Upstream list items carry no kind or apiVersion.
fn strip_type_meta(mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.remove("kind");
        map.remove("apiVersion");
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_tables() {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        let now = Timestamp::now();
        assert_eq!(
            Rendering::negotiate(accept, None, now),
            Rendering::Table {
                include: IncludeObject::Metadata,
                now,
            }
        );
        assert_eq!(
            Rendering::negotiate("application/json", None, now),
            Rendering::Object
        );
    }
}
