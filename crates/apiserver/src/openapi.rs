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
use petset_api::ApiError;
use petset_api::resources::group_versions;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
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
        let paths: Map<String, Value> = group_versions()
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
        group_versions()
            .iter()
            .map(|(group, version)| (gv_path(group, version), document(group, version)))
            .collect()
    })
}

macro_rules! schemas_of_each_kind {
    ($($kind:ident),* $(,)?) => {
        /// Schema names of the kinds one group version serves, registered into a generator
        /// (each kind's `Typed` struct from its catalogue entry).
        fn register(
            generator: &mut SchemaGenerator,
            group: &str,
            version: &str,
        ) -> Vec<(String, &'static str)> {
            let mut kinds = Vec::new();
            $({
                use petset_api::kinds::$kind::{RESOURCE, Typed};
                if RESOURCE.group == group && RESOURCE.version == version {
                    generator.subschema_for::<Typed>();
                    kinds.push((<Typed as JsonSchema>::schema_name().into_owned(), RESOURCE.kind));
                }
            })*
            kinds
        }
    };
}

petset_api::served_kinds!(schemas_of_each_kind);

fn document(group: &str, version: &str) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let kinds = register(&mut generator, group, version);
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
    fn every_served_kind_has_a_schema_and_a_list_path() {
        let docs = documents();
        for resource in petset_api::resources::RESOURCES {
            let key = gv_path(resource.group, resource.version);
            let document = docs.get(&key).expect("a document per group version");
            let described = document["components"]["schemas"]
                .as_object()
                .expect("schemas")
                .values()
                .any(|schema| {
                    schema["x-kubernetes-group-version-kind"][0]["kind"] == resource.kind
                });
            assert!(described, "{key} {}", resource.kind);
        }
    }

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
