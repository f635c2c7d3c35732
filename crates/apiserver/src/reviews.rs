//! The reviews a client creates to ask the API server about identities and access, answered
//! at once and never stored (upstream's selfsubjectreview, tokenreview and the
//! authorization REST storages): `kubectl auth whoami` (SelfSubjectReview), `kubectl auth
//! can-i` (SelfSubjectAccessReview, and SelfSubjectRulesReview for `--list`), and the
//! TokenReview, SubjectAccessReview and LocalSubjectAccessReview webhooks and operators use.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use petset_api::ApiError;
use petset_api::resources::ResourceType;
use serde_json::{Value, json};

use crate::auth::{RequestInfo, UserInfo};
use crate::{ApiState, response};

/// Answers a review: only `POST` to the collection, with the review in the body.
pub async fn serve(
    state: &ApiState,
    method: &Method,
    user: &UserInfo,
    resource: &'static ResourceType,
    namespace: Option<&str>,
    named: bool,
    body: &[u8],
) -> Result<Response, ApiError> {
    if *method != Method::POST || named {
        return Err(ApiError::method_not_allowed(method.as_str()));
    }
    let mut review = if body.starts_with(b"k8s\0") {
        crate::protobuf::decode(body, resource)?
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| {
            ApiError::bad_request(format!(
                "{kind} in version \"v1\" cannot be handled as a {kind}: {e}",
                kind = resource.kind
            ))
        })?
    };
    if !review.is_object() {
        return Err(ApiError::bad_request(format!(
            "a {} must be an object",
            resource.kind
        )));
    }
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match resource.plural {
        "selfsubjectreviews" => json!({"userInfo": user_info(user)}),
        "tokenreviews" => token_review(state, &spec).await,
        "selfsubjectaccessreviews" => access_review(state, user, &spec)?,
        "subjectaccessreviews" => access_review(state, &subject_of(&spec)?, &spec)?,
        "localsubjectaccessreviews" => {
            let asked = spec
                .pointer("/resourceAttributes/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if Some(asked) != namespace {
                return Err(ApiError::invalid(
                    resource.kind,
                    resource.group,
                    "",
                    vec![petset_api::error::Cause::invalid(
                        "spec.resourceAttributes.namespace",
                        &json!(asked),
                        &format!(
                            "must match metadata.namespace {:?}",
                            namespace.unwrap_or_default()
                        ),
                    )],
                ));
            }
            access_review(state, &subject_of(&spec)?, &spec)?
        }
        "selfsubjectrulesreviews" => {
            let namespace = spec
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            crate::auth::rules_review(state, user, namespace)
        }
        _ => return Err(ApiError::no_route()),
    };
    review["kind"] = json!(resource.kind);
    review["apiVersion"] = json!(resource.api_version());
    let metadata = review
        .get("metadata")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    review["metadata"] = metadata;
    review["metadata"]["creationTimestamp"] = Value::Null;
    review["status"] = status;
    Ok(response::json(StatusCode::CREATED, &review))
}

/// A user as reviews show it (`authentication.k8s.io/v1` UserInfo).
fn user_info(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// The user a SubjectAccessReview asks about.
fn subject_of(spec: &Value) -> Result<UserInfo, ApiError> {
    let text = |field: &str| spec.get(field).and_then(Value::as_str).unwrap_or_default();
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if text("user").is_empty() && groups.is_empty() {
        return Err(ApiError::invalid(
            "SubjectAccessReview",
            "authorization.k8s.io",
            "",
            vec![petset_api::error::Cause::invalid(
                "spec.user",
                &json!(""),
                "at least one of user or group must be specified",
            )],
        ));
    }
    let mut user = UserInfo {
        name: text("user").to_string(),
        uid: text("uid").to_string(),
        groups,
        ..UserInfo::default()
    };
    if let Some(extra) = spec.get("extra").and_then(Value::as_object) {
        for (key, values) in extra {
            let values = values.as_array().into_iter().flatten();
            user.extra.insert(
                key.clone(),
                values
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            );
        }
    }
    Ok(user)
}

/// A text field of a review's attributes ("" when absent).
fn text_of(attributes: &Value, field: &str) -> String {
    attributes
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Whether `user` may do what the review's attributes describe.
fn access_review(state: &ApiState, user: &UserInfo, spec: &Value) -> Result<Value, ApiError> {
    let info = if let Some(attributes) = spec.get("resourceAttributes").filter(|a| a.is_object()) {
        let text = |field: &str| text_of(attributes, field);
        RequestInfo {
            verb: text("verb"),
            is_resource_request: true,
            path: String::new(),
            api_group: text("group"),
            api_version: text("version"),
            namespace: text("namespace"),
            resource: text("resource"),
            subresource: text("subresource"),
            name: text("name"),
        }
    } else if let Some(attributes) = spec.get("nonResourceAttributes").filter(|a| a.is_object()) {
        let text = |field: &str| text_of(attributes, field);
        RequestInfo {
            verb: text("verb"),
            path: text("path"),
            ..RequestInfo::default()
        }
    } else {
        return Err(ApiError::invalid(
            "SelfSubjectAccessReview",
            "authorization.k8s.io",
            "",
            vec![petset_api::error::Cause::required(
                "spec.resourceAttributes",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        ));
    };
    let decision = crate::auth::decide(state, user, &info);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    Ok(status)
}

/// Whether a token authenticates, and as whom (a TokenReview).
async fn token_review(state: &ApiState, spec: &Value) -> Value {
    let token = spec
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match crate::auth::authenticate_token(state, token).await {
        Some(user) => json!({
            "authenticated": true,
            "user": user_info(&user),
            "audiences": spec.get("audiences").filter(|a| a.as_array().is_some_and(|l| !l.is_empty()))
                .cloned()
                .unwrap_or_else(|| json!(crate::auth::service_accounts::API_AUDIENCES)),
        }),
        None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
    }
}
