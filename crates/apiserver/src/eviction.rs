//! `POST pods/NAME/eviction`, as upstream's `pkg/registry/core/pod/storage/eviction.go`: a pod
//! goes only if its PodDisruptionBudget allows one more disruption, spent in the budget's
//! status (a guarded write, retried on conflict) before the pod is deleted. Terminal, pending
//! and terminating pods go without asking (`canIgnorePDB`); a pod that is not ready goes
//! without spending the budget when the budget is healthy or its `unhealthyPodEvictionPolicy`
//! is `AlwaysAllow`. Before the delete the pod gets `DisruptionTarget=True`
//! (`EvictionByEvictionAPI`). The decisions are `petset_api::disruption`'s.

use axum::http::StatusCode;
use axum::response::Response;
use petset_api::disruption::{self, Refusal};
use petset_api::resources::{self, ResourceType};
use petset_api::{ApiError, Cause};
use serde_json::{Value, json};

use crate::ApiState;
use crate::registry::{DeleteOptions, Filters, Scope};
use crate::response;

/// Upstream's `EvictionsRetry`: how often a conflicting write is tried again.
const RETRIES: usize = 20;
const MORE_THAN_ONE: &str = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

fn budgets_type() -> Result<&'static ResourceType, ApiError> {
    resources::RESOURCES
        .iter()
        .find(|r| r.is("policy", "poddisruptionbudgets"))
        .ok_or_else(|| ApiError::internal("PodDisruptionBudgets are not served"))
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn success() -> Response {
    response::json(
        StatusCode::CREATED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    )
}

/// Upstream's `createTooManyRequestsError` and the 429 of `checkAndDecrement`.
fn too_many_requests(cause: String) -> ApiError {
    ApiError::too_many_requests(
        disruption::WOULD_VIOLATE,
        vec![Cause {
            reason: "DisruptionBudget",
            field: String::new(),
            message: cause,
        }],
    )
}

fn refusal(budgets: &ResourceType, name: &str, refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::NotProcessed(cause) | Refusal::Exhausted(cause) => too_many_requests(cause),
        Refusal::Forbidden(why) => ApiError::forbidden_on(budgets, name, why),
    }
}

/// Serves the eviction of `name` in `pods` (the pods' scope) with the Eviction `body`.
pub async fn evict(
    state: &ApiState,
    pods: Scope<'_>,
    name: &str,
    eviction: &Value,
    query_dry_run: bool,
) -> Result<Response, ApiError> {
    if let Some(named) = eviction
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        && named != name
    {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let mut original = eviction
        .get("deleteOptions")
        .filter(|o| !o.is_null())
        .map(DeleteOptions::from_json)
        .unwrap_or_default();
    original.dry_run |= query_dry_run;
    let registry = &state.registry;
    let pinned_by_caller = original.precondition_resource_version.is_some();

    // Pods that need no budget: deleted at once, pinned to the version looked at.
    let mut pod = Value::Null;
    for attempt in 0..RETRIES {
        pod = registry.get(pods, name).await?;
        if !disruption::evicts_freely(&pod) {
            break;
        }
        let mut options = original.clone();
        if !pinned_by_caller {
            options.precondition_resource_version =
                Some(text(&pod, "/metadata/resourceVersion").to_string());
        }
        match mark_and_delete(state, pods, name, options).await {
            Err(error) if error.code == 409 && !pinned_by_caller && attempt + 1 < RETRIES => {
                continue;
            }
            Err(error) => return Err(error),
            Ok(()) => return Ok(success()),
        }
    }
    let mut options = original.clone();
    if !pinned_by_caller {
        options.precondition_resource_version =
            Some(text(&pod, "/metadata/resourceVersion").to_string());
    }

    let budgets = budgets_type()?;
    let namespace = text(&pod, "/metadata/namespace").to_string();
    let scope = Scope {
        resource: budgets,
        namespace: Some(&namespace),
    };
    let matching: Vec<Value> = registry
        .list(scope, &Filters::default(), None, None, None)
        .await?
        .items
        .into_iter()
        .filter(|budget| disruption::selects(budget, &pod))
        .collect();
    if matching.len() > 1 {
        return Ok(response::json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": MORE_THAN_ONE, "code": 500}),
        ));
    }
    let mut spared_unhealthy = false;
    let mut budget_name = String::new();
    if let Some(first) = matching.into_iter().next() {
        budget_name = text(&first, "/metadata/name").to_string();
        if !disruption::pod_ready(&pod) && disruption::unhealthy_evicts_freely(&first) {
            spared_unhealthy = true;
        } else {
            spend(state, scope, first, name, options.dry_run).await?;
        }
    }
    let pinned_here = spared_unhealthy && !pinned_by_caller;
    match mark_and_delete(state, pods, name, options).await {
        Err(error) if error.code == 409 && pinned_here => Err(too_many_requests(format!(
            "The disruption budget {budget_name} is still being processed by the server."
        ))),
        Err(error) => Err(error),
        Ok(()) => Ok(success()),
    }
}

/// `checkAndDecrement` in upstream's retry on conflict: the budget is read again after a
/// lost race.
async fn spend(
    state: &ApiState,
    scope: Scope<'_>,
    mut budget: Value,
    pod: &str,
    dry_run: bool,
) -> Result<(), ApiError> {
    let name = text(&budget, "/metadata/name").to_string();
    for attempt in 0..RETRIES {
        if attempt > 0 {
            budget = state.registry.get(scope, &name).await?;
        }
        let status = disruption::spend(&budget, pod, &state.registry.now(), dry_run)
            .map_err(|why| refusal(scope.resource, &name, why))?;
        if dry_run {
            return Ok(());
        }
        let mut updated = budget.clone();
        updated["status"] = status;
        match state
            .registry
            .update(scope, &name, Some("status"), updated, false)
            .await
        {
            Ok(_) => return Ok(()),
            Err(error) if error.code == 409 => continue,
            Err(error) => return Err(error),
        }
    }
    Err(ApiError::timeout(format!(
        "couldn't update PodDisruptionBudget {name:?} due to conflicts"
    )))
}

/// Upstream's `addConditionAndDeletePod`: unless a dry run, the pod's status gets
/// `DisruptionTarget=True` (its preconditions checked against the latest pod), then the pod
/// is deleted with the options (a resourceVersion precondition moved to the version the
/// condition made).
async fn mark_and_delete(
    state: &ApiState,
    pods: Scope<'_>,
    name: &str,
    mut options: DeleteOptions,
) -> Result<(), ApiError> {
    let registry = &state.registry;
    if !options.dry_run {
        let latest = registry.get(pods, name).await?;
        if let Some(uid) = &options.precondition_uid
            && !uid.is_empty()
            && text(&latest, "/metadata/uid") != uid
        {
            return Err(ApiError::conflict_because(
                pods.resource,
                name,
                &format!(
                    "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                    text(&latest, "/metadata/uid")
                ),
            ));
        }
        if let Some(rv) = &options.precondition_resource_version
            && !rv.is_empty()
            && text(&latest, "/metadata/resourceVersion") != rv
        {
            return Err(ApiError::conflict_because(
                pods.resource,
                name,
                &format!(
                    "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                    text(&latest, "/metadata/resourceVersion")
                ),
            ));
        }
        let mut marked = latest.clone();
        let now = registry.now();
        let mut conditions = petset_api::json::items(&latest, "/status/conditions").to_vec();
        let condition = json!({"type": "DisruptionTarget", "status": "True",
            "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"});
        match conditions
            .iter_mut()
            .find(|c| text(c, "/type") == "DisruptionTarget")
        {
            Some(existing) => {
                if text(existing, "/status") != "True" {
                    existing["lastTransitionTime"] = json!(now);
                }
                for field in ["status", "reason", "message"] {
                    existing[field] = condition[field].clone();
                }
            }
            None => {
                let mut condition = condition;
                condition["lastTransitionTime"] = json!(now);
                conditions.push(condition);
            }
        }
        if !marked.get("status").is_some_and(Value::is_object) {
            marked["status"] = json!({});
        }
        marked["status"]["conditions"] = Value::Array(conditions);
        let written = registry
            .update(pods, name, Some("status"), marked, false)
            .await?;
        if options.precondition_resource_version.is_some() {
            options.precondition_resource_version =
                Some(text(&written, "/metadata/resourceVersion").to_string());
        }
    }
    registry.delete(pods, name, &options).await?;
    Ok(())
}
