//! `{statefulsets,deployments,replicasets,replicationcontrollers}/{name}/scale`: the
//! `autoscaling/v1` Scale view of an object's replicas. `status.selector` is the selector as a
//! string: a structured (apps/v1) selector's, or a ReplicationController's map of labels.

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use petset_api::kinds::replicationcontroller;
use petset_api::patch::{self, PatchType};
use petset_api::selector::LabelSelector;
use petset_api::{ApiError, Cause};
use serde_json::{Value, json};

use crate::ApiState;
use crate::handlers::Query;
use crate::registry::{Manager, Scope};
use crate::response;

/// The Scale object for an object with replicas.
fn scale_of(object: &Value) -> Value {
    let selector = object.pointer("/spec/selector");
    let structured = selector
        .is_some_and(|s| s.get("matchLabels").is_some() || s.get("matchExpressions").is_some());
    let selector = if structured {
        selector.and_then(|s| LabelSelector::from_structured(s).ok())
    } else {
        replicationcontroller::map_selector(selector)
    }
    .map(|s| s.to_string())
    .unwrap_or_default();
    let meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
            "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

fn replicas_of(scale: &Value, name: &str) -> Result<i64, ApiError> {
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            name,
            vec![Cause::invalid(
                "spec.replicas",
                &json!(replicas),
                "must be greater than or equal to 0",
            )],
        ));
    }
    Ok(replicas)
}

pub async fn serve(
    state: &ApiState,
    method: &Method,
    headers: &HeaderMap,
    query: &Query,
    scope: Scope<'_>,
    name: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let current = state.registry.get(scope, name).await?;
    let (replicas, expected_rv) = match *method {
        Method::GET => return Ok(response::json(StatusCode::OK, &scale_of(&current))),
        Method::PUT => {
            let scale: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid Scale: {e}")))?;
            let rv = scale
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|rv| !rv.is_empty())
                .map(str::to_string);
            (replicas_of(&scale, name)?, rv)
        }
        Method::PATCH => {
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let patch_type = PatchType::from_content_type(content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
            let document: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let scaled = patch::apply(patch_type, &[], &scale_of(&current), &document)
                .map_err(|e| ApiError::unprocessable(e.to_string()))?;
            // As upstream, a patch is retried against newer versions unless the patch itself pins
            // a resourceVersion; pinning the version read here would turn every concurrent status
            // write by the controller into a spurious 409.
            let rv = document
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|rv| !rv.is_empty())
                .map(str::to_string);
            (replicas_of(&scaled, name)?, rv)
        }
        _ => return Err(ApiError::method_not_allowed(method.as_str())),
    };
    let mut change = json!({"spec": {"replicas": replicas}});
    if let Some(rv) = expected_rv {
        change["metadata"] = json!({"resourceVersion": rv});
    }
    let manager = crate::handlers::field_manager_name(query, headers);
    let (updated, _) = state
        .registry
        .patch(
            scope,
            name,
            None,
            PatchType::Merge,
            &change,
            Manager::named(manager.as_deref()).at(Some("scale")),
            false,
            query.get("dryRun") == Some("All"),
        )
        .await?;
    Ok(response::json(StatusCode::OK, &scale_of(&updated)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_cluster::TestCluster;

    #[tokio::test]
    async fn a_scale_patch_follows_newer_versions_unless_it_pins_one() {
        let cluster = TestCluster::start().await;
        let sets = "/apis/apps/v1/namespaces/default/statefulsets";
        let (code, created) = cluster
            .send(
                "POST",
                sets,
                "application/json",
                json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
            "spec": {"serviceName": "nginx", "replicas": 1,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}}),
            )
            .await;
        assert_eq!(code, 201, "{created}");
        let read_version = created["metadata"]["resourceVersion"].clone();
        // The controller writes status after our read.
        let (code, _) = cluster
            .send(
                "PATCH",
                &format!("{sets}/web/status"),
                "application/merge-patch+json",
                json!({"status": {"replicas": 1}}),
            )
            .await;
        assert_eq!(code, 200);

        let merge = "application/merge-patch+json";
        let (code, scaled) = cluster
            .send(
                "PATCH",
                &format!("{sets}/web/scale"),
                merge,
                json!({"spec": {"replicas": 3}}),
            )
            .await;
        assert_eq!(
            (code, scaled["spec"]["replicas"].clone()),
            (200, json!(3)),
            "{scaled}"
        );
        let (code, refused) = cluster
            .send(
                "PATCH",
                &format!("{sets}/web/scale"),
                merge,
                json!({"metadata": {"resourceVersion": read_version}, "spec": {"replicas": 5}}),
            )
            .await;
        assert_eq!(
            (code, refused["reason"].clone()),
            (409, json!("Conflict")),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn deployments_replica_sets_and_controllers_scale_with_their_selectors() {
        let cluster = TestCluster::start().await;
        let template = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}});
        for (path, kind, api_version, selector, expected) in [
            (
                "/apis/apps/v1/namespaces/default/deployments",
                "Deployment",
                "apps/v1",
                json!({"matchLabels": {"app": "web"}}),
                "app=web",
            ),
            (
                "/apis/apps/v1/namespaces/default/replicasets",
                "ReplicaSet",
                "apps/v1",
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}),
                "app in (web)",
            ),
            (
                "/api/v1/namespaces/default/replicationcontrollers",
                "ReplicationController",
                "v1",
                json!({"app": "web"}),
                "app=web",
            ),
        ] {
            let (code, created) = cluster
                .json(
                    "POST",
                    path,
                    json!({"apiVersion": api_version, "kind": kind,
                    "metadata": {"name": "web"},
                    "spec": {"replicas": 2, "selector": selector, "template": template}}),
                )
                .await;
            assert_eq!(code, 201, "{created}");
            let (code, scaled) = cluster
                .send(
                    "PATCH",
                    &format!("{path}/web/scale"),
                    "application/merge-patch+json",
                    json!({"spec": {"replicas": 4}}),
                )
                .await;
            assert_eq!(code, 200, "{scaled}");
            assert_eq!(scaled["spec"]["replicas"], 4, "{kind}");
            assert_eq!(scaled["status"]["selector"], expected, "{kind}");
            let (_, stored) = cluster
                .json("GET", &format!("{path}/web"), json!(null))
                .await;
            assert_eq!(stored["spec"]["replicas"], 4, "{kind}");
            assert_eq!(stored["metadata"]["generation"], 2, "{kind}");
        }
    }
}
