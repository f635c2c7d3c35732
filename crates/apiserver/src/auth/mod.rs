//! Who is asking and what they may do: authentication (the admin token, client certificates of
//! the cluster CA) and authorization (`system:masters` may do anything; a node's certificate
//! gets upstream's Node authorizer and NodeRestriction rules, then RBAC; anyone else RBAC,
//! over the default policy of `bootstrap_policy.rs` and whatever has been bound since).
//! Every request a handler sees carries the [`UserInfo`] it was let in as.

mod authn;
mod authz;
pub mod bootstrap_policy;
pub mod escalation;
mod node;
pub mod rbac;
#[cfg(test)]
mod rbac_cluster_tests;
mod references;
mod request_info;
pub mod requester;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use petset_api::ApiError;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde_json::Value;

pub(crate) use authn::same_secret;
pub use authn::{ADMIN_USER, AUTHENTICATED_GROUP, MASTERS_GROUP};
pub use node::NODES_GROUP;
pub use rbac::{Decision, RbacIndex};
pub use request_info::RequestInfo;

use crate::{ApiState, handlers, response};

/// The authenticated user of a request (upstream's `user.Info`, without uid and extra).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn new(name: &str, groups: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
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
pub(crate) async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let user = authn::authenticate(
        request.extensions().get::<ClientCertificate>(),
        request.headers(),
        state.admin_token.as_deref(),
    );
    let mut request = if PUBLIC_PATHS.contains(&request.uri().path()) {
        request
    } else {
        let Some(user) = &user else {
            return response::error(&ApiError::unauthorized());
        };
        let info = RequestInfo::parse(
            request.method(),
            request.uri().path(),
            request.uri().query(),
        );
        let (request, facts) = match gather_facts(&state, user, &info, request).await {
            Ok(gathered) => gathered,
            Err(error) => return response::error(&error),
        };
        if !user.in_group(MASTERS_GROUP) && !state.rbac.is_loaded() {
            // Before the watch cache's first list the index would refuse everything.
            if let Err(error) = crate::watch_cache::load_rbac_now(&state.store, &state.rbac).await {
                return response::error(&crate::registry::store_error(error));
            }
        }
        if let Err(refusal) = authz::authorize(&state.rbac, user, &info, &facts) {
            tracing::debug!(user = %user.name, verb = %info.verb, path = %info.path, "forbidden");
            return response::error(&refusal);
        }
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
