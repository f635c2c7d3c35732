//! Who is asking: a client certificate of the cluster CA, the admin bearer token, or another
//! bearer token (a service-account token, checked in [`super::service_accounts`]), tried in
//! upstream's order (its union authenticator puts x509 before bearer tokens, and the first
//! that succeeds wins), each adding `system:authenticated` as upstream's group adder does.

use axum::http::{HeaderMap, header};

use super::{ClientCertificate, UserInfo};
use petset_pki::subject::subject;

/// The admin token's user and group: kubeadm's admin name in the group RBAC never restricts.
pub const ADMIN_USER: &str = "kubernetes-admin";
pub const MASTERS_GROUP: &str = "system:masters";
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// What a request's credentials say before anything is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// A certificate of the cluster CA or the admin token: the user is known already.
    User(UserInfo),
    /// A bearer token that is not the admin token: a service-account token, if anything, to be
    /// checked against the signing key and the objects it names.
    BearerToken(String),
    /// No valid credential (401).
    Nothing,
}

/// Who a request comes from, as far as its credentials tell without the API. `admin_token`
/// `None` serves without a token: a request with no certificate and no service-account token
/// is the admin (the in-process tests' servers).
pub fn authenticate(
    certificate: Option<&ClientCertificate>,
    headers: &HeaderMap,
    admin_token: Option<&str>,
) -> Presented {
    if let Some(user) = certificate.and_then(certificate_user) {
        return Presented::User(user);
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match (presented, admin_token) {
        (Some(token), Some(expected)) if same_secret(token, expected) => Presented::User(admin()),
        (Some(token), None) if !looks_like_a_jwt(token) => Presented::User(admin()),
        (Some(token), _) => Presented::BearerToken(token.to_string()),
        (None, None) => Presented::User(admin()),
        (None, Some(_)) => Presented::Nothing,
    }
}

/// Three base64url parts joined by dots, as every JWT is.
fn looks_like_a_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

fn admin() -> UserInfo {
    UserInfo::new(ADMIN_USER, &[MASTERS_GROUP, AUTHENTICATED_GROUP])
}

/// Upstream's `CommonNameUserConversion`: the subject's common name is the user, its
/// organizations the groups; a certificate without a common name authenticates no one.
fn certificate_user(certificate: &ClientCertificate) -> Option<UserInfo> {
    let subject = subject(certificate.der())?;
    let name = subject.common_name.filter(|name| !name.is_empty())?;
    let mut groups = subject.organizations;
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_string());
    }
    Some(UserInfo {
        name,
        groups,
        ..UserInfo::default()
    })
}

/// Whether a presented secret is the expected one, in time that does not depend on where they
/// differ (only on the expected length), so a token cannot be guessed byte by byte.
pub(crate) fn same_secret(presented: &str, expected: &str) -> bool {
    let (presented, expected) = (presented.as_bytes(), expected.as_bytes());
    let mut difference = u8::from(presented.len() != expected.len());
    for (index, byte) in expected.iter().enumerate() {
        difference |= byte ^ presented.get(index).copied().unwrap_or(!byte);
    }
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const TOKEN: &str = "abc123";

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Bearer {token}")).expect("header");
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    fn user_of(presented: Presented) -> UserInfo {
        match presented {
            Presented::User(user) => user,
            other => panic!("not a user: {other:?}"),
        }
    }

    fn node_certificate() -> ClientCertificate {
        let dir = tempfile::tempdir().expect("temp dir");
        let (pem, _) = crate::auth::tests::issue_node_certificate(dir.path(), "n1");
        ClientCertificate::from_pem(&pem).expect("one certificate")
    }

    #[test]
    fn only_the_same_secret_is_the_same() {
        assert!(same_secret("abc123", "abc123"));
        assert!(!same_secret("abc124", "abc123"));
        assert!(!same_secret("abc12", "abc123"));
        assert!(!same_secret("abc1234", "abc123"));
        assert!(!same_secret("", "abc123"));
    }

    #[test]
    fn the_admin_token_is_kubernetes_admin_in_system_masters() {
        let user = user_of(authenticate(None, &bearer(TOKEN), Some(TOKEN)));
        assert_eq!(user.name, "kubernetes-admin");
        assert_eq!(user.groups, vec!["system:masters", "system:authenticated"]);
        assert_eq!(
            authenticate(None, &bearer("wrong"), Some(TOKEN)),
            Presented::BearerToken("wrong".into())
        );
        assert_eq!(
            authenticate(None, &HeaderMap::new(), Some(TOKEN)),
            Presented::Nothing
        );
    }

    #[test]
    fn without_an_admin_token_only_a_jwt_is_not_the_admin() {
        assert_eq!(
            user_of(authenticate(None, &HeaderMap::new(), None)).name,
            ADMIN_USER
        );
        assert_eq!(
            user_of(authenticate(None, &bearer("any"), None)).name,
            ADMIN_USER
        );
        assert_eq!(
            authenticate(None, &bearer("a.b.c"), None),
            Presented::BearerToken("a.b.c".into())
        );
    }

    #[test]
    fn a_certificate_is_its_common_name_in_its_organizations() {
        let certificate = node_certificate();
        let user = user_of(authenticate(
            Some(&certificate),
            &HeaderMap::new(),
            Some(TOKEN),
        ));
        assert_eq!(user.name, "system:node:n1");
        assert_eq!(user.groups, vec!["system:nodes", "system:authenticated"]);
    }

    #[test]
    fn with_both_the_certificate_is_tried_first_as_upstream() {
        let certificate = node_certificate();
        let user = user_of(authenticate(
            Some(&certificate),
            &bearer(TOKEN),
            Some(TOKEN),
        ));
        assert_eq!(user.name, "system:node:n1");
    }

    #[test]
    fn a_certificate_without_a_common_name_falls_through_to_the_token() {
        let certificate = ClientCertificate::from_der(b"not a certificate".to_vec());
        assert_eq!(
            authenticate(Some(&certificate), &HeaderMap::new(), Some(TOKEN)),
            Presented::Nothing
        );
        let user = user_of(authenticate(
            Some(&certificate),
            &bearer(TOKEN),
            Some(TOKEN),
        ));
        assert_eq!(user.name, "kubernetes-admin");
    }
}
