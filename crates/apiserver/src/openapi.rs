//! OpenAPI documents.
//!
//! - `/openapi/v2` is an empty protobuf document: kubectl finds no schema for a kind there and
//!   leaves validation to the server.
//! - `/openapi/v3` lists one document per served group version, holding the component schemas
//!   of its kinds (from k8s-openapi's schemas, which are upstream's), so `kubectl explain` works.
//!   The documents describe no patch operations: kubectl then takes patch metadata from its
//!   compiled-in types, which match the server's merge keys exactly.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use k8s_openapi::api::{apps, coordination, core, discovery, events, storage};
use petset_api::ApiError;
use petset_api::resources::GROUP_VERSIONS;
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::response::{self, NO_CACHE};

pub fn v2() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/com.github.proto-openapi.spec.v2.v1.0+protobuf"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    response
}

/// `api/v1` or `apis/apps/v1`: the key of a group version in the v3 index.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Changes whenever the served schemas may have: kubectl caches documents by this URL.
const SCHEMA_HASH: &str = concat!("petset-", env!("CARGO_PKG_VERSION"), "-k8s-1.33");

pub fn v3(path: &[&str]) -> Result<Response, ApiError> {
    if path.is_empty() {
        let paths: Map<String, Value> = GROUP_VERSIONS
            .iter()
            .map(|(group, version)| {
                let key = gv_path(group, version);
                let url = format!("/openapi/v3/{key}?hash={SCHEMA_HASH}");
                (key, json!({"serverRelativeURL": url}))
            })
            .collect();
        return Ok(response::json(StatusCode::OK, &json!({"paths": paths})));
    }
    let key = path.join("/");
    let documents = documents();
    let document = documents.get(&key).ok_or_else(ApiError::no_route)?;
    Ok(response::json(StatusCode::OK, document))
}

/// The v3 documents, built once.
fn documents() -> &'static BTreeMap<String, Value> {
    static DOCUMENTS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        GROUP_VERSIONS
            .iter()
            .map(|(group, version)| (gv_path(group, version), document(group, version)))
            .collect()
    })
}

/// Schema names of the kinds one group version serves, registered into a generator.
fn register(generator: &mut SchemaGenerator, group: &str) -> Vec<(String, &'static str)> {
    fn add<T: schemars::JsonSchema>(
        generator: &mut SchemaGenerator,
        kinds: &mut Vec<(String, &'static str)>,
        kind: &'static str,
    ) {
        generator.subschema_for::<T>();
        kinds.push((T::schema_name().into_owned(), kind));
    }
    let mut kinds = Vec::new();
    let g = generator;
    match group {
        "" => {
            add::<core::v1::Namespace>(g, &mut kinds, "Namespace");
            add::<core::v1::Pod>(g, &mut kinds, "Pod");
            add::<core::v1::Service>(g, &mut kinds, "Service");
            add::<core::v1::Endpoints>(g, &mut kinds, "Endpoints");
            add::<core::v1::ConfigMap>(g, &mut kinds, "ConfigMap");
            add::<core::v1::Secret>(g, &mut kinds, "Secret");
            add::<core::v1::ServiceAccount>(g, &mut kinds, "ServiceAccount");
            add::<core::v1::Event>(g, &mut kinds, "Event");
            add::<core::v1::Node>(g, &mut kinds, "Node");
            add::<core::v1::PersistentVolumeClaim>(g, &mut kinds, "PersistentVolumeClaim");
            add::<core::v1::PersistentVolume>(g, &mut kinds, "PersistentVolume");
        }
        "apps" => {
            add::<apps::v1::StatefulSet>(g, &mut kinds, "StatefulSet");
            add::<apps::v1::ControllerRevision>(g, &mut kinds, "ControllerRevision");
        }
        "storage.k8s.io" => add::<storage::v1::StorageClass>(g, &mut kinds, "StorageClass"),
        "discovery.k8s.io" => {
            add::<discovery::v1::EndpointSlice>(g, &mut kinds, "EndpointSlice");
        }
        "coordination.k8s.io" => add::<coordination::v1::Lease>(g, &mut kinds, "Lease"),
        "events.k8s.io" => add::<events::v1::Event>(g, &mut kinds, "Event"),
        _ => {}
    }
    kinds
}

fn document(group: &str, version: &str) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let kinds = register(&mut generator, group);
    let mut schemas = generator.take_definitions(true);
    let mut paths = Map::new();
    for (name, kind) in kinds {
        let gvk = json!({"group": group, "version": version, "kind": kind});
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk]));
        }
        // `kubectl explain` finds a resource's kind through its list path. Only `get` is
        // described: with no `patch` operation kubectl neither expects `fieldValidation` here
        // nor takes patch metadata from these schemas.
        if let Some(resource) = petset_api::resources::RESOURCES
            .iter()
            .find(|r| r.group == group && r.version == version && r.kind == kind)
        {
            let prefix = format!("/{}", gv_path(group, version));
            let list_path = if resource.namespaced {
                format!("{prefix}/namespaces/{{namespace}}/{}", resource.plural)
            } else {
                format!("{prefix}/{}", resource.plural)
            };
            paths.insert(
                list_path,
                json!({"get": {
                    "x-kubernetes-group-version-kind": gvk,
                    "responses": {"200": {"description": "OK"}},
                }}),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": super::discovery::GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statefulset_schema_is_found_by_its_group_version_kind() {
        let docs = documents();
        let apps = docs.get("apis/apps/v1").expect("apps/v1 document");
        let schema = &apps["components"]["schemas"]["io.k8s.api.apps.v1.StatefulSet"];
        assert_eq!(
            schema["x-kubernetes-group-version-kind"][0]["kind"],
            "StatefulSet"
        );
        let spec = &apps["components"]["schemas"]["io.k8s.api.apps.v1.StatefulSetSpec"];
        assert!(spec["properties"]["replicas"]["description"].is_string());
    }
}
