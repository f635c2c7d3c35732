//! How an agent joins, k3s-style, with trust from the first byte: `GET /cacerts` hands out the
//! cluster CA without authentication (the agent checks it against the hash its token pins),
//! and `POST /v1-petset/join`, authenticated by a bootstrap token, signs the agent's own keys
//! as node `system:node:<name>` once its node password holds the name.
//!
//! Both routes sit outside the API's authentication layer: the join checks its token itself.

mod passwords;
#[cfg(test)]
mod tests;
pub mod tokens;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use petset_api::ApiError;
use petset_pki::CertificateAuthority;
use petset_pki::wire::{self, ClusterNetwork, JoinRequest, JoinResponse};

pub use passwords::secret_name as node_password_secret_name;
pub use tokens::{InitialTokenError, ensure_initial_token};

use crate::{ApiState, response};

/// What a server needs to let agents join: the CA that signs their certificates, and the
/// networks it tells them about.
pub struct JoinConfig {
    pub ca: CertificateAuthority,
    /// The pod network nodes get their `/24`s from (`--cluster-cidr`).
    pub cluster_cidr: String,
    /// The ClusterIP network.
    pub service_cidr: String,
}

/// The join's routes, for the public part of the router (no authentication layer).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(wire::CACERTS_PATH, get(cacerts))
        .route(wire::JOIN_PATH, post(join))
}

/// The CA bundle, in plain text, to anyone: it is public, and the token's pin is what makes
/// it trusted.
async fn cacerts(State(state): State<ApiState>) -> Response {
    let Some(config) = state.join.as_deref() else {
        return response::error(&ApiError::no_route());
    };
    let mut answer = config.ca.pem().to_string().into_response();
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

/// What the node password check says when another agent holds the name. k3s's hint, with the
/// agent's file named as the agent knows it (the agent puts its own path in its message).
fn password_rejected(node: &str) -> ApiError {
    ApiError::forbidden(format!(
        "Node password rejected, duplicate hostname or contents of the agent's node-password \
         file may not match server node-passwd entry (Secret kube-system/{}), try enabling a \
         unique node name with the --node-name flag",
        passwords::secret_name(node)
    ))
}

async fn join(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(config) = state.join.clone() else {
        return response::error(&ApiError::no_route());
    };
    match admit(&state, &config, &headers, &body).await {
        Ok(answer) => response::json(
            StatusCode::OK,
            &serde_json::to_value(answer).unwrap_or_default(),
        ),
        Err(refusal) => {
            // Every refusal is logged with what the server knows; never the token's secret.
            tracing::warn!(
                node = refusal.node.as_deref().unwrap_or("<unknown>"),
                token_id = refusal.token_id.as_deref().unwrap_or("<none>"),
                reason = %refusal.reason,
                "join refused"
            );
            response::error(&refusal.error)
        }
    }
}

/// A refused join: what the agent is told, and what the server log says.
struct Refusal {
    error: ApiError,
    reason: String,
    node: Option<String>,
    token_id: Option<String>,
}

impl Refusal {
    fn new(error: ApiError, reason: impl Into<String>) -> Self {
        Self {
            error,
            reason: reason.into(),
            node: None,
            token_id: None,
        }
    }

    fn with(mut self, node: Option<&str>, token_id: Option<&str>) -> Self {
        self.node = node.map(str::to_string);
        self.token_id = token_id.map(str::to_string);
        self
    }
}

/// The join's checks in order: token (401), request (400), node password (403); only then
/// are certificates handed out. A failed check changes nothing.
async fn admit(
    state: &ApiState,
    config: &JoinConfig,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<JoinResponse, Refusal> {
    let request = serde_json::from_slice::<JoinRequest>(body);
    let node = request
        .as_ref()
        .ok()
        .map(|request| request.node_name.as_str());
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    let token = match tokens::authenticate(state, authorization).await {
        Ok(Ok(token)) => token,
        Ok(Err((id, refused))) => {
            return Err(
                Refusal::new(ApiError::unauthorized(), refused.reason()).with(node, id.as_deref())
            );
        }
        Err(error) => {
            let reason = error.message.clone();
            return Err(Refusal::new(error, reason).with(node, None));
        }
    };
    let refuse = |error: ApiError, reason: String| {
        Refusal::new(error, reason).with(node, Some(token.id.as_str()))
    };
    let request = request.as_ref().map_err(|error| {
        let why = format!("the join request is not valid: {error}");
        refuse(ApiError::bad_request(why.clone()), why)
    })?;
    let mut problems = petset_api::names::dns1123_subdomain(&request.node_name);
    // The name also names its password Secret, which must stay a valid object name.
    let longest = 253 - passwords::secret_name("").len();
    if problems.is_empty() && request.node_name.len() > longest {
        problems.push(format!("must be no more than {longest} characters"));
    }
    if !problems.is_empty() {
        let why = format!(
            "invalid node name {:?}: {}",
            request.node_name,
            problems.join(", ")
        );
        return Err(refuse(ApiError::bad_request(why.clone()), why));
    }
    let node_ips = node_ips(&request.node_ips)
        .map_err(|why| refuse(ApiError::bad_request(why.clone()), why))?;
    if request.node_password.is_empty() {
        let why = "the join request has no node password".to_string();
        return Err(refuse(ApiError::bad_request(why.clone()), why));
    }
    let signed = config
        .ca
        .sign_node_client(&request.client_csr, &request.node_name)
        .and_then(|client| {
            let serving =
                config
                    .ca
                    .sign_node_serving(&request.serving_csr, &request.node_name, &node_ips)?;
            Ok((client, serving))
        });
    let (client_certificate, serving_certificate) = signed
        .map_err(|error| refuse(ApiError::bad_request(error.to_string()), error.to_string()))?;
    match passwords::check(state, &request.node_name, &request.node_password).await {
        Ok(passwords::Verdict::Accepted) => {}
        Ok(passwords::Verdict::Rejected) => {
            return Err(refuse(
                password_rejected(&request.node_name),
                "the node password does not match the one that holds the name".into(),
            ));
        }
        Err(error) => {
            let reason = error.message.clone();
            return Err(refuse(error, reason));
        }
    }
    tracing::info!(node = %request.node_name, token_id = %token.id, "node joined");
    Ok(JoinResponse {
        ca_certificate: config.ca.pem().to_string(),
        client_certificate,
        serving_certificate,
        network: ClusterNetwork {
            cluster_cidr: config.cluster_cidr.clone(),
            service_cidr: config.service_cidr.clone(),
            cluster_domain: wire::CLUSTER_DOMAIN.to_string(),
        },
    })
}

/// The node's addresses: each an IP, none unspecified, multicast or repeated.
fn node_ips(texts: &[String]) -> Result<Vec<IpAddr>, String> {
    let mut ips = Vec::with_capacity(texts.len());
    for text in texts {
        let ip: IpAddr = text
            .parse()
            .map_err(|_| format!("invalid node IP {text:?}: not an IP address"))?;
        if ip.is_unspecified() || ip.is_multicast() {
            return Err(format!(
                "invalid node IP {text:?}: must be a unicast address"
            ));
        }
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    Ok(ips)
}

impl ApiState {
    /// Lets agents join with bootstrap tokens, signing their certificates with `config.ca`;
    /// without it the join routes answer 404.
    pub fn with_join(mut self, config: JoinConfig) -> Self {
        self.join = Some(Arc::new(config));
        self
    }
}
