//! Who may use the node API: the API server only. Over the network it presents a client
//! certificate of the cluster CA whose subject is `kube-apiserver-kubelet-client` (kubeadm's
//! name for it); the TLS layer has checked the chain before a request arrives (`server.rs`).
//! A request with no certificate is 401, any other identity 403, before anything runs.
//! Bearer tokens are not read: the node cannot review them, so they count as no credential.

use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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

/// The subject common name of a DER certificate (X.509: `Certificate` → `tbsCertificate` →
/// `subject`, the first `CN` attribute); `None` when it has none or is not well formed.
pub fn common_name(certificate: &[u8]) -> Option<String> {
    let (certificate, _) = Der::read(certificate, SEQUENCE)?;
    let (tbs, _) = Der::read(certificate, SEQUENCE)?;
    let mut rest = tbs;
    // An explicit version ([0]) comes first when present.
    if rest.first() == Some(&0xa0) {
        rest = Der::read(rest, 0xa0)?.1;
    }
    let (_serial, rest) = Der::read(rest, INTEGER)?;
    let (_signature, rest) = Der::read(rest, SEQUENCE)?;
    let (_issuer, rest) = Der::read(rest, SEQUENCE)?;
    let (_validity, rest) = Der::read(rest, SEQUENCE)?;
    let (mut subject, _) = Der::read(rest, SEQUENCE)?;
    while !subject.is_empty() {
        let (set, after) = Der::read(subject, SET)?;
        subject = after;
        let mut attributes = set;
        while !attributes.is_empty() {
            let (attribute, after) = Der::read(attributes, SEQUENCE)?;
            attributes = after;
            let (oid, value) = Der::read(attribute, OID)?;
            if oid == COMMON_NAME {
                let tag = *value.first()?;
                let (text, _) = Der::read(value, tag)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
/// 2.5.4.3 (id-at-commonName).
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// A minimal DER reader: one tag-length-value at a time.
struct Der;

impl Der {
    /// The contents of the element at the start of `input` if it has `tag`, and what follows.
    fn read(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        if *input.first()? != tag {
            return None;
        }
        let first = *input.get(1)?;
        let (length, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return None;
            }
            let bytes = input.get(2..2 + count)?;
            let length = bytes
                .iter()
                .fold(0usize, |length, byte| (length << 8) | usize::from(*byte));
            (length, 2 + count)
        };
        let end = header.checked_add(length)?;
        Some((input.get(header..end)?, input.get(end..)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(common_name: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().expect("key");
        params
            .self_signed(&key)
            .expect("certificate")
            .der()
            .to_vec()
    }

    #[test]
    fn the_common_name_is_read_from_the_subject() {
        assert_eq!(
            common_name(&certificate(API_SERVER_IDENTITY)).as_deref(),
            Some(API_SERVER_IDENTITY)
        );
        assert_eq!(
            common_name(&certificate("system:node:x")).as_deref(),
            Some("system:node:x")
        );
    }

    #[test]
    fn damaged_certificates_have_no_name() {
        let whole = certificate("someone");
        for cut in [0, 1, 2, 10, whole.len() / 2] {
            assert_eq!(common_name(&whole[..cut]), None, "cut at {cut}");
        }
        assert_eq!(common_name(b"\x30\x84\xff\xff\xff\xff"), None);
    }

    #[test]
    fn other_identities_are_forbidden_in_upstreams_words() {
        assert_eq!(
            forbidden("system:node:x", &Method::POST).message,
            "Forbidden (user=system:node:x, verb=create, resource=nodes, subresource=proxy)"
        );
    }
}
