//! `POST …/serviceaccounts/NAME/token`: a TokenRequest (authentication.k8s.io/v1) answered
//! with a bound token, as upstream's TokenRequest REST storage does (`kubectl create token`,
//! and the node for a pod's projected token). The token names the ServiceAccount by name and
//! uid, and the pod it is bound to, if any, so it stops working when either is gone
//! ([`crate::auth::service_accounts`]).

use jiff::Timestamp;
use petset_api::ApiError;
use petset_api::error::Cause;
use petset_pki::service_account_token::{Bound, Claims};
use serde_json::{Value, json};

use crate::ApiState;
use crate::auth::service_accounts::API_AUDIENCES;
use crate::registry::Scope;

/// A token's life when the request names none (upstream's `SetDefaults_TokenRequestSpec`).
const DEFAULT_SECONDS: i64 = 60 * 60;
const MIN_SECONDS: i64 = 10 * 60;
const MAX_SECONDS: i64 = 1 << 32;
/// What the ServiceAccount admission writes into a pod's projected token source; a pod-bound
/// request for exactly this long gets a token good for a year, whose `warnafter` is this
/// (upstream's `WarnOnlyBoundTokenExpirationSeconds`, for clients that never reload a token).
pub const WARN_ONLY_SECONDS: i64 = 60 * 60 + 7;
const EXTENDED_SECONDS: i64 = 365 * 24 * 60 * 60;

fn core(plural: &str) -> Result<&'static petset_api::resources::ResourceType, ApiError> {
    petset_api::resources::find("", "v1", plural).ok_or_else(ApiError::no_route)
}

/// Reads a TokenRequest body (JSON, or protobuf as typed clients send it).
fn decode(body: &[u8]) -> Result<Value, ApiError> {
    if body.starts_with(b"k8s\0") {
        return crate::protobuf::decode_request_options(body, "TokenRequest");
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "TokenRequest in version \"v1\" cannot be handled as a TokenRequest: {e}"
        ))
    })
}

fn invalid(name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid("TokenRequest", "authentication.k8s.io", name, causes)
}

/// Issues a token for ServiceAccount `name` of `namespace` and answers the TokenRequest
/// with it (201).
pub async fn serve(
    state: &ApiState,
    namespace: &str,
    name: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let request = decode(body)?;
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_SECONDS,
        Some(value) => value.as_i64().ok_or_else(|| {
            invalid(
                name,
                vec![Cause::invalid(
                    "spec.expirationSeconds",
                    value,
                    "must be an integer",
                )],
            )
        })?,
    };
    if seconds < MIN_SECONDS {
        return Err(invalid(
            name,
            vec![Cause::invalid(
                "spec.expirationSeconds",
                &json!(seconds),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    if seconds > MAX_SECONDS {
        return Err(invalid(
            name,
            vec![Cause::invalid(
                "spec.expirationSeconds",
                &json!(seconds),
                "may not specify a duration larger than 2^32 seconds",
            )],
        ));
    }
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => API_AUDIENCES.iter().map(|a| a.to_string()).collect(),
    };
    let accounts = core("serviceaccounts")?;
    let account = state
        .registry
        .get(
            Scope {
                resource: accounts,
                namespace: Some(namespace),
            },
            name,
        )
        .await?;
    let pod = match spec.get("boundObjectRef").filter(|r| !r.is_null()) {
        Some(reference) => Some(bound_pod(state, namespace, name, reference).await?),
        None => None,
    };
    let key = state
        .service_account_key
        .as_ref()
        .ok_or_else(|| ApiError::service_unavailable("no key signs service-account tokens"))?;
    let now = state.registry.timestamp();
    let extended = pod.is_some()
        && seconds == WARN_ONLY_SECONDS
        && audiences
            .iter()
            .all(|a| API_AUDIENCES.contains(&a.as_str()));
    let mut claims = Claims::new(
        namespace,
        Bound {
            name: name.to_string(),
            uid: uid_of(&account),
        },
        pod,
        audiences.clone(),
        now.as_second(),
        if extended { EXTENDED_SECONDS } else { seconds },
        uuid::Uuid::new_v4().to_string(),
    );
    if extended {
        claims.kubernetes.warnafter = Some(now.as_second().saturating_add(seconds));
    }
    let token = key
        .issue(&claims)
        .map_err(|e| ApiError::internal(format!("signing the token: {e}")))?;
    let expires = Timestamp::from_second(now.as_second().saturating_add(seconds))
        .map_err(|e| ApiError::internal(format!("the token's expiry: {e}")))?;
    let mut answered_spec = spec;
    answered_spec["audiences"] = json!(audiences);
    answered_spec["expirationSeconds"] = json!(seconds);
    if answered_spec.get("boundObjectRef").is_none() {
        answered_spec["boundObjectRef"] = Value::Null;
    }
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": null},
        "spec": answered_spec,
        "status": {
            "token": token,
            "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
    }))
}

fn uid_of(object: &Value) -> String {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The pod a request binds its token to, checked as upstream: it runs as this
/// ServiceAccount and, when the reference names a uid, is that very pod.
async fn bound_pod(
    state: &ApiState,
    namespace: &str,
    account: &str,
    reference: &Value,
) -> Result<Bound, ApiError> {
    let text = |field: &str| {
        reference
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (kind, api_version) = (text("kind"), text("apiVersion"));
    if kind != "Pod" || !matches!(api_version, "v1" | "") {
        let kind = if api_version.is_empty() {
            format!(", Kind={kind}")
        } else {
            format!("{api_version}, Kind={kind}")
        };
        return Err(ApiError::bad_request(format!(
            "cannot bind token to object of type {kind}"
        )));
    }
    let pods = core("pods")?;
    let pod = state
        .registry
        .get(
            Scope {
                resource: pods,
                namespace: Some(namespace),
            },
            text("name"),
        )
        .await?;
    let runs_as = pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("default");
    if runs_as != account {
        return Err(ApiError::bad_request(format!(
            "cannot bind token for serviceaccount {account:?} to pod running with different serviceaccount name."
        )));
    }
    let uid = uid_of(&pod);
    let asked = text("uid");
    if !asked.is_empty() && asked != uid {
        return Err(ApiError::conflict_because(
            pods,
            text("name"),
            &format!(
                "the UID in the bound object reference ({asked}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    Ok(Bound {
        name: text("name").to_string(),
        uid,
    })
}
