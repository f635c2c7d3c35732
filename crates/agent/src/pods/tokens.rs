//! A pod's service-account tokens, as the kubelet's token manager gets them: a TokenRequest
//! bound to the pod, through the node's own client, and a new one once the token is older
//! than 80 % of its lifetime or than 24 hours (`requires_refresh`).

use jiff::{SignedDuration, Timestamp};
use kube::Client;
use serde_json::{Value, json};

/// Beyond this age a token is renewed whatever its lifetime (the kubelet's `maxTTL`).
const MAX_AGE: SignedDuration = SignedDuration::from_hours(24);

/// The lifetime a projected token asks for when its source names none (upstream's default).
pub(super) const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// A token the API server issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IssuedToken {
    pub(super) token: String,
    /// When its lifetime began: the expiry less the lifetime the server granted.
    pub(super) issued: Timestamp,
    pub(super) expires: Timestamp,
}

/// Where a projected volume's tokens stand: issued (the one to be renewed first), or to be
/// requested again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenState {
    Issued {
        issued: Timestamp,
        expires: Timestamp,
    },
    RetryAt(Timestamp),
}

impl TokenState {
    /// Whether the volume's tokens are to be requested again at `now`.
    pub(super) fn is_due(self, now: Timestamp) -> bool {
        match self {
            Self::Issued { issued, expires } => requires_refresh(issued, expires, now),
            Self::RetryAt(at) => now >= at,
        }
    }

    /// When that is.
    pub(super) fn due(self) -> Timestamp {
        match self {
            Self::Issued { issued, expires } => refresh_at(issued, expires),
            Self::RetryAt(at) => at,
        }
    }

    /// Of two tokens of a volume, the one renewed first.
    pub(super) fn earlier(self, other: Self) -> Self {
        if other.due() < self.due() {
            other
        } else {
            self
        }
    }
}

/// What a token is requested for: the pod it is bound to and its account.
pub(super) struct TokenFor<'a> {
    pub(super) namespace: &'a str,
    pub(super) service_account: &'a str,
    pub(super) pod_name: &'a str,
    pub(super) pod_uid: &'a str,
}

/// Whether a token issued at `issued` that expires at `expires` is to be renewed at `now`:
/// past 80 % of its lifetime, or older than 24 hours.
pub fn requires_refresh(issued: Timestamp, expires: Timestamp, now: Timestamp) -> bool {
    now >= refresh_at(issued, expires)
}

/// When a token is to be renewed (see [`requires_refresh`]).
pub fn refresh_at(issued: Timestamp, expires: Timestamp) -> Timestamp {
    let lifetime = expires.duration_since(issued);
    let by_lifetime = expires.checked_sub(lifetime / 5).unwrap_or(expires);
    let by_age = issued.checked_add(MAX_AGE).unwrap_or(Timestamp::MAX);
    by_lifetime.min(by_age)
}

/// `POST /api/v1/namespaces/NS/serviceaccounts/SA/token`: a token for `audience` (none: the
/// API's own audiences) that lasts `expiration_seconds`, bound to the pod. The error is worded
/// for the pod's FailedMount event.
pub(super) async fn request(
    client: &Client,
    target: &TokenFor<'_>,
    audience: Option<&str>,
    expiration_seconds: i64,
) -> Result<IssuedToken, String> {
    let audiences: Vec<&str> = audience.filter(|a| !a.is_empty()).into_iter().collect();
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": audiences,
            "expirationSeconds": expiration_seconds,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
                "name": target.pod_name, "uid": target.pod_uid},
        },
    });
    let path = format!(
        "/api/v1/namespaces/{}/serviceaccounts/{}/token",
        target.namespace, target.service_account
    );
    let request = axum::http::Request::post(path)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .body(body.to_string().into_bytes())
        .map_err(|e| format!("failed to fetch token: {e}"))?;
    let answer: Value = client.request(request).await.map_err(|error| {
        let why = match error {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        };
        format!("failed to fetch token: {why}")
    })?;
    issued_from(&answer, Timestamp::now()).map_err(|why| format!("failed to fetch token: {why}"))
}

/// The token, expiry and start of lifetime a TokenRequest answer gives (`now` when it names
/// no lifetime).
fn issued_from(answer: &Value, now: Timestamp) -> Result<IssuedToken, String> {
    let token = answer
        .pointer("/status/token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the answer has no status.token")?;
    let expires: Timestamp = answer
        .pointer("/status/expirationTimestamp")
        .and_then(Value::as_str)
        .ok_or("the answer has no status.expirationTimestamp")?
        .parse()
        .map_err(|e| format!("status.expirationTimestamp: {e}"))?;
    let issued = answer
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .and_then(|seconds| expires.checked_sub(SignedDuration::from_secs(seconds)).ok())
        .unwrap_or(now);
    Ok(IssuedToken {
        token: token.to_string(),
        issued,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    #[test]
    fn a_token_is_renewed_past_80_percent_of_its_lifetime() {
        let issued = at("2026-01-01T00:00:00Z");
        let expires = at("2026-01-01T01:00:00Z");
        assert!(!requires_refresh(
            issued,
            expires,
            at("2026-01-01T00:47:59Z")
        ));
        assert!(requires_refresh(
            issued,
            expires,
            at("2026-01-01T00:48:00Z")
        ));
        assert!(requires_refresh(
            issued,
            expires,
            at("2026-01-01T02:00:00Z")
        ));
        assert_eq!(refresh_at(issued, expires), at("2026-01-01T00:48:00Z"));
    }

    #[test]
    fn a_long_lived_token_is_renewed_after_a_day() {
        let issued = at("2026-01-01T00:00:00Z");
        let expires = at("2027-01-01T00:00:00Z");
        assert!(!requires_refresh(
            issued,
            expires,
            at("2026-01-01T23:59:59Z")
        ));
        assert!(requires_refresh(
            issued,
            expires,
            at("2026-01-02T00:00:00Z")
        ));
    }

    #[test]
    fn a_volume_is_due_at_its_first_tokens_renewal_or_its_retry() {
        let first = TokenState::Issued {
            issued: at("2026-01-01T00:00:00Z"),
            expires: at("2026-01-01T01:00:00Z"),
        };
        let later = TokenState::Issued {
            issued: at("2026-01-01T00:00:00Z"),
            expires: at("2026-01-01T02:00:00Z"),
        };
        assert_eq!(first.earlier(later), first);
        assert_eq!(later.earlier(first), first);
        assert!(!first.is_due(at("2026-01-01T00:30:00Z")));
        assert!(first.is_due(at("2026-01-01T00:48:00Z")));
        let retry = TokenState::RetryAt(at("2026-01-01T00:00:10Z"));
        assert!(!retry.is_due(at("2026-01-01T00:00:09Z")));
        assert!(retry.is_due(at("2026-01-01T00:00:10Z")));
        assert_eq!(retry.due(), at("2026-01-01T00:00:10Z"));
    }

    #[test]
    fn an_answer_gives_token_expiry_and_the_granted_lifetime() {
        let answer = json!({"spec": {"expirationSeconds": 7200},
            "status": {"token": "t0k", "expirationTimestamp": "2026-01-01T02:00:00Z"}});
        let now = at("2026-01-01T00:00:05Z");
        assert_eq!(
            issued_from(&answer, now),
            Ok(IssuedToken {
                token: "t0k".into(),
                issued: at("2026-01-01T00:00:00Z"),
                expires: at("2026-01-01T02:00:00Z"),
            })
        );
        let no_spec =
            json!({"status": {"token": "t", "expirationTimestamp": "2026-01-01T01:00:00Z"}});
        assert_eq!(issued_from(&no_spec, now).map(|t| t.issued), Ok(now));
        assert!(issued_from(&json!({"status": {}}), now).is_err());
        assert!(issued_from(&json!(5), now).is_err());
    }
}
