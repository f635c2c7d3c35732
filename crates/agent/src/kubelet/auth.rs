//! Who may use the node API: the API server only. Over the network it presents a client
//! certificate of the cluster CA whose subject is `kube-apiserver-kubelet-client` (kubeadm's
//! name for it); the TLS layer has checked the chain before a request arrives (`server.rs`).
//! A request with no certificate is 401, any other identity 403, before anything runs.
//! Bearer tokens are not read: the node cannot review them, so they count as no credential.

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use petset_pki::common_name;

use super::Refusal;

/// The identity of the API server's kubelet-client certificate.
pub const API_SERVER_IDENTITY: &str = "kube-apiserver-kubelet-client";

/// Who is on the other end of a connection, as the server found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// The API server of this process, through a pipe.
    InProcess,
    /// A client certificate chained to the cluster CA, by its subject's common name.
    Certificate(String),
    /// No client certificate.
    Anonymous,
}

impl Peer {
    /// The peer of a TLS session, from the first certificate it presented (already verified).
    pub fn of_certificates(certificates: Option<&[rustls::pki_types::CertificateDer<'_>]>) -> Self {
        match certificates.and_then(|c| c.first()) {
            Some(certificate) => Self::Certificate(common_name(certificate).unwrap_or_default()),
            None => Self::Anonymous,
        }
    }
}

/// Lets a request through only when it comes from the API server.
pub(crate) async fn require_api_server(request: Request, next: Next) -> Response {
    match request.extensions().get::<Peer>() {
        Some(Peer::InProcess) => next.run(request).await,
        Some(Peer::Certificate(name)) if name == API_SERVER_IDENTITY => next.run(request).await,
        Some(Peer::Certificate(name)) => forbidden(name, request.method()).into_response(),
        Some(Peer::Anonymous) | None => {
            Refusal::new(StatusCode::UNAUTHORIZED, "Unauthorized").into_response()
        }
    }
}

/// Upstream's refusal: every stream path is the `proxy` subresource of `nodes`, its verb from
/// the method.
fn forbidden(user: &str, method: &Method) -> Refusal {
    let verb = match *method {
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    };
    Refusal::new(
        StatusCode::FORBIDDEN,
        format!("Forbidden (user={user}, verb={verb}, resource=nodes, subresource=proxy)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_identities_are_forbidden_in_upstreams_words() {
        assert_eq!(
            forbidden("system:node:x", &Method::POST).message,
            "Forbidden (user=system:node:x, verb=create, resource=nodes, subresource=proxy)"
        );
    }
}
