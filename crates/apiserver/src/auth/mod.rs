//! Who is asking and what they may do: authentication (the admin token, client certificates of
//! the cluster CA) and authorization (`system:masters` may do anything; a node's certificate
//! gets upstream's Node authorizer and NodeRestriction rules, then RBAC; anyone else RBAC,
//! over the default policy of `bootstrap_policy.rs` and whatever has been bound since).
//! Every request a handler sees carries the [`UserInfo`] it was let in as.

mod authn;
mod authz;
pub mod bootstrap_policy;
pub mod escalation;
mod impersonation;
mod node;
pub mod rbac;
#[cfg(test)]
mod rbac_cluster_tests;
mod references;
mod request_info;
pub mod requester;
pub mod service_accounts;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod token_tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use petset_api::ApiError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

use authn::Presented;
pub(crate) use authn::same_secret;
pub use authn::{ADMIN_USER, AUTHENTICATED_GROUP, MASTERS_GROUP};
pub use node::NODES_GROUP;
pub use rbac::{Decision, RbacIndex};
pub use request_info::RequestInfo;

use crate::{ApiState, handlers, response};

/// The authenticated user of a request (upstream's `user.Info`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    /// A ServiceAccount's uid; empty for users petset knows only by name.
    pub uid: String,
    pub groups: Vec<String>,
    /// What else the authenticator vouches for (a token's pod, its credential id).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    pub fn new(name: &str, groups: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Self::default()
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The identity of in-process clients (controllers, the node of `petset up`), which reach the
/// API without the network: upstream's loopback client, `system:apiserver` in `system:masters`.
pub fn loopback_user() -> UserInfo {
    UserInfo::new("system:apiserver", &[MASTERS_GROUP, AUTHENTICATED_GROUP])
}

/// The identity an in-process client is authorized as ([`crate::router_as`]); the network's
/// requests never carry it, since only that layer inserts it.
#[derive(Debug, Clone)]
pub struct InProcessUser(pub UserInfo);

/// The controllers' identity (upstream's kube-controller-manager without per-controller
/// service-account credentials), for the in-process controllers.
pub fn controller_manager_user() -> UserInfo {
    UserInfo::new("system:kube-controller-manager", &[AUTHENTICATED_GROUP])
}

/// The identity of a node's agent (its client certificate's subject).
pub fn node_user(node: &str) -> UserInfo {
    UserInfo::new(
        &format!("system:node:{node}"),
        &[NODES_GROUP, AUTHENTICATED_GROUP],
    )
}

/// Requests no one needs to authenticate for (upstream's `system:public-info-viewer`).
const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

/// The user of requests that carry no credential on a public path.
fn anonymous() -> UserInfo {
    UserInfo::new("system:anonymous", &["system:unauthenticated"])
}

/// The first certificate a TLS client presented, already verified against the cluster CA by
/// the handshake; the TLS edge attaches it to every request of that connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate(Arc<[u8]>);

impl ClientCertificate {
    pub fn from_der(der: Vec<u8>) -> Self {
        Self(der.into())
    }

    /// The first certificate of a PEM text.
    pub fn from_pem(pem: &str) -> Option<Self> {
        let first = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()?
            .ok()?;
        Some(Self::from_der(first.to_vec()))
    }

    pub fn der(&self) -> &[u8] {
        &self.0
    }
}

/// The network's gate: authenticates (401 when no credential is valid), authorizes (403 with
/// upstream's text) and hands the request on with its [`UserInfo`].
pub(crate) async fn guard(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = match request.extensions().get::<InProcessUser>() {
        Some(InProcessUser(user)) => Presented::User(user.clone()),
        None => authn::authenticate(
            request.extensions().get::<ClientCertificate>(),
            request.headers(),
            state.admin_token.as_deref(),
        ),
    };
    let mut user = match presented {
        Presented::User(user) => Some(user),
        Presented::BearerToken(token) => {
            match service_accounts::authenticate(&state, &token).await {
                Ok(user) => Some(user),
                Err(refused) => {
                    tracing::debug!(%refused, "a bearer token authenticates no one");
                    None
                }
            }
        }
        Presented::Nothing => None,
    };
    let mut request = if PUBLIC_PATHS.contains(&request.uri().path()) {
        request
    } else {
        let Some(real) = user.take() else {
            return response::error(&ApiError::unauthorized());
        };
        if !real.in_group(MASTERS_GROUP) && !state.rbac.is_loaded() {
            // Before the watch cache's first list the index would refuse everything.
            if let Err(error) = crate::watch_cache::load_rbac_now(&state.store, &state.rbac).await {
                return response::error(&crate::registry::store_error(error));
            }
        }
        let authorize = |user: &UserInfo, info: &RequestInfo, facts: &authz::Facts| {
            authz::authorize(&state.rbac, user, info, facts)
        };
        let acting = match impersonation::apply(real, request.headers_mut(), authorize) {
            Ok(acting) => acting,
            Err(refusal) => return response::error(&refusal),
        };
        let info = RequestInfo::parse(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        let (request, facts) = match gather_facts(&state, &acting, &info, request).await {
            Ok(gathered) => gathered,
            Err(error) => return response::error(&error),
        };
        if let Err(refusal) = authz::authorize(&state.rbac, &acting, &info, &facts) {
            tracing::debug!(user = %acting.name, verb = %info.verb, path = %info.path, "forbidden");
            return response::error(&refusal);
        }
        user = Some(acting);
        request
    };
    let user = user.unwrap_or_else(anonymous);
    request.extensions_mut().insert(user.clone());
    requester::acting_as(user, next.run(request)).await
}

/// Reads what the rules for this request need to see beyond its URL: the object it sends (its
/// body, put back for the handler) and the object it writes as stored.
async fn gather_facts(
    state: &ApiState,
    user: &UserInfo,
    info: &RequestInfo,
    request: Request,
) -> Result<(Request, authz::Facts), ApiError> {
    let needs = authz::needs(user, info);
    let mut facts = authz::Facts::default();
    let request = if needs.sent {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, handlers::MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::too_large())?;
        facts.sent = serde_json::from_slice::<Value>(&bytes).ok();
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    if needs.stored {
        facts.stored = stored_object(state, info).await;
    }
    if needs.pods_here
        && let Some(node) = node::identity(user)
    {
        facts.pods_here = pods_bound_to(state, node, &info.namespace).await?;
    }
    Ok((request, facts))
}

/// The pods of `namespace` bound to `node` (compared here, not through a selector, so no
/// node name can read as more than one term).
async fn pods_bound_to(
    state: &ApiState,
    node: &str,
    namespace: &str,
) -> Result<Vec<Value>, ApiError> {
    let Some(pods) = petset_api::resources::find("", "v1", "pods") else {
        return Ok(Vec::new());
    };
    let scope = crate::registry::Scope {
        resource: pods,
        namespace: Some(namespace),
    };
    let everything = crate::registry::Filters::default();
    let page = state
        .registry
        .list(scope, &everything, None, None, None)
        .await?;
    Ok(page
        .items
        .into_iter()
        .filter(|pod| pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
        .collect())
}

/// The stored object a request names, if petset serves its kind and it exists.
async fn stored_object(state: &ApiState, info: &RequestInfo) -> Option<Value> {
    let resource = petset_api::resources::find(&info.api_group, &info.api_version, &info.resource)?;
    let scope = crate::registry::Scope {
        resource,
        namespace: (!info.namespace.is_empty()).then_some(info.namespace.as_str()),
    };
    state.registry.get(scope, &info.name).await.ok()
}

/// The whole authorizer's answer for `user` doing `info` (a SelfSubjectAccessReview or
/// SubjectAccessReview): what the guard would decide (`system:masters`, the Node authorizer,
/// RBAC), without an object to look at; the reason is RBAC's.
pub fn decide(state: &ApiState, user: &UserInfo, info: &RequestInfo) -> Decision {
    let allowed = authz::authorize(&state.rbac, user, info, &authz::Facts::default()).is_ok();
    let reason = if user.in_group(MASTERS_GROUP) {
        String::new()
    } else {
        state.rbac.authorize(user, info).reason
    };
    Decision { allowed, reason }
}

/// A SelfSubjectRulesReview's status: what RBAC lets `user` do in `namespace`, `incomplete`
/// with the errors when a binding names a role that is not there.
pub fn rules_review(state: &ApiState, user: &UserInfo, namespace: &str) -> Value {
    let (resource_rules, non_resource_rules) = state.rbac.rules_for(user, namespace);
    let (_, errors) = state.rbac.policy_rules_for(user, namespace);
    let mut status = serde_json::json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = serde_json::json!(errors.join(", "));
    }
    status
}

/// Who a bearer token (the admin token or a service-account token) authenticates, for a
/// TokenReview.
pub async fn authenticate_token(state: &ApiState, token: &str) -> Option<UserInfo> {
    let mut headers = axum::http::HeaderMap::new();
    let value = axum::http::HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    headers.insert(axum::http::header::AUTHORIZATION, value);
    match authn::authenticate(None, &headers, state.admin_token.as_deref()) {
        Presented::User(user) => Some(user),
        Presented::BearerToken(token) => service_accounts::authenticate(state, &token).await.ok(),
        Presented::Nothing => None,
    }
}
