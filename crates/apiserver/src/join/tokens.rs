//! Bootstrap tokens as upstream stores them: Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token`, data `token-id`, `token-secret`, optional `expiration`
//! (RFC 3339), `usage-bootstrap-authentication: "true"` and `description`.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use petset_api::ApiError;
use petset_api::resources::{self, ResourceType};
use petset_pki::{BootstrapToken, JoinToken, PkiError};
use serde_json::{Map, Value, json};

use crate::ApiState;
use crate::registry::Scope;

/// Where bootstrap tokens live.
pub const NAMESPACE: &str = "kube-system";
/// Upstream's Secret type for them.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The file `petset server` writes the initial token to, in its data directory.
pub const NODE_TOKEN_FILE: &str = "node-token";
const INITIAL_DESCRIPTION: &str = "petset server's initial join token";

/// The Secret name of the token with `id`.
pub fn secret_name(id: &str) -> String {
    format!("bootstrap-token-{id}")
}

/// The Secret that holds `token`: it authenticates joins until `expiration` (never without).
pub fn secret(token: &BootstrapToken, expiration: Option<Timestamp>, description: &str) -> Value {
    let mut data = Map::new();
    let mut put = |key: &str, value: &str| {
        data.insert(key.into(), json!(STANDARD.encode(value)));
    };
    put("token-id", &token.id);
    put("token-secret", &token.secret);
    put("usage-bootstrap-authentication", "true");
    if !description.is_empty() {
        put("description", description);
    }
    if let Some(expiration) = expiration {
        put("expiration", &petset_api::time::format(expiration));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name(&token.id), "namespace": NAMESPACE},
        "type": SECRET_TYPE,
        "data": data,
    })
}

/// A text value of a Secret's `data` (base64) or `stringData`.
pub fn data_text(secret: &Value, key: &str) -> Option<String> {
    if let Some(encoded) = secret
        .pointer(&format!("/data/{key}"))
        .and_then(Value::as_str)
    {
        let bytes = STANDARD.decode(encoded).ok()?;
        return String::from_utf8(bytes).ok();
    }
    secret
        .pointer(&format!("/stringData/{key}"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Why a presented token does not authenticate (logged on the server, never sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Missing,
    Malformed,
    Unknown,
    Revoked,
    WrongSecret,
    NotForAuthentication,
    Expired,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "no bearer token",
            Self::Malformed => "the token is not <id>.<secret>",
            Self::Unknown => "no bootstrap token has this id",
            Self::Revoked => "the token's Secret is being deleted",
            Self::WrongSecret => "the token's secret does not match",
            Self::NotForAuthentication => "the token is not usable for authentication",
            Self::Expired => "the token has expired",
        }
    }
}

fn secrets_type() -> Result<&'static ResourceType, ApiError> {
    resources::find("", "v1", "secrets")
        .ok_or_else(|| ApiError::internal("secrets are not a served kind"))
}

/// Where bootstrap tokens and node passwords are kept: Secrets in `kube-system`.
pub fn system_scope() -> Result<Scope<'static>, ApiError> {
    Ok(Scope {
        resource: secrets_type()?,
        namespace: Some(NAMESPACE),
    })
}

/// Checks a presented `Authorization` value against the stored tokens, as upstream's
/// bootstrap authenticator does: the Secret exists and is not being deleted, has the type,
/// the same secret (compared in constant time), the authentication usage, and has not
/// expired by the registry's clock.
pub(crate) async fn authenticate(
    state: &ApiState,
    authorization: Option<&str>,
) -> Result<Result<BootstrapToken, (Option<String>, Refused)>, ApiError> {
    let Some(presented) = authorization.and_then(|value| value.strip_prefix("Bearer ")) else {
        return Ok(Err((None, Refused::Missing)));
    };
    let Ok(token) = BootstrapToken::parse(presented.trim()) else {
        return Ok(Err((None, Refused::Malformed)));
    };
    let id = Some(token.id.clone());
    let stored = match state
        .registry()
        .get(system_scope()?, &secret_name(&token.id))
        .await
    {
        Ok(stored) => stored,
        Err(error) if error.code == 404 => return Ok(Err((id, Refused::Unknown))),
        Err(error) => return Err(error),
    };
    let refusal = if stored.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        Some(Refused::Unknown)
    } else if stored.pointer("/metadata/deletionTimestamp").is_some() {
        Some(Refused::Revoked)
    } else if !data_text(&stored, "token-secret")
        .is_some_and(|expected| crate::auth::same_secret(&token.secret, &expected))
        || data_text(&stored, "token-id").as_deref() != Some(token.id.as_str())
    {
        Some(Refused::WrongSecret)
    } else if data_text(&stored, "usage-bootstrap-authentication").as_deref() != Some("true") {
        Some(Refused::NotForAuthentication)
    } else if expired(&stored, state.registry().timestamp()) {
        Some(Refused::Expired)
    } else {
        None
    };
    Ok(match refusal {
        Some(refused) => Err((id, refused)),
        None => Ok(token),
    })
}

/// Whether the Secret's `expiration` is past `now`; a damaged one counts as expired, as
/// upstream treats it.
pub fn expired(secret: &Value, now: Timestamp) -> bool {
    match data_text(secret, "expiration") {
        None => false,
        Some(text) => text.parse::<Timestamp>().map_or(true, |at| at <= now),
    }
}

/// The time token listings count from.
pub fn now() -> Timestamp {
    Timestamp::now()
}

/// When a token made now with `ttl` expires; `None` for a zero `ttl` (never).
pub fn expiration_after(ttl: std::time::Duration) -> Option<Timestamp> {
    if ttl.is_zero() {
        return None;
    }
    let ttl = jiff::SignedDuration::try_from(ttl).ok()?;
    Timestamp::now().checked_add(ttl).ok()
}

/// One line of `petset token list`, as `kubeadm token list` shows a token (the id only,
/// never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub id: String,
    /// The time left (`23h`), `<forever>`, or `<invalid>` once expired.
    pub ttl: String,
    /// RFC 3339, or `<never>`.
    pub expires: String,
    /// `<none>` when there is none.
    pub description: String,
}

/// The rows of the bootstrap token Secrets among `secrets` at `now`, by id.
pub fn token_rows(secrets: &[Value], now: Timestamp) -> Vec<TokenRow> {
    let mut rows: Vec<TokenRow> = secrets
        .iter()
        .filter(|secret| secret.get("type").and_then(Value::as_str) == Some(SECRET_TYPE))
        .filter_map(|secret| {
            let id = data_text(secret, "token-id")?;
            let expiration = data_text(secret, "expiration");
            let (ttl, expires) = match expiration.as_deref().map(str::parse::<Timestamp>) {
                None => ("<forever>".to_string(), "<never>".to_string()),
                Some(Ok(at)) => (short_human_duration(now, at), petset_api::time::format(at)),
                Some(Err(_)) => ("<invalid>".to_string(), expiration.unwrap_or_default()),
            };
            let description = data_text(secret, "description")
                .filter(|text| !text.is_empty())
                .unwrap_or_else(|| "<none>".to_string());
            Some(TokenRow {
                id,
                ttl,
                expires,
                description,
            })
        })
        .collect();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    rows
}

/// The time from `now` to `at` as upstream's `ShortHumanDuration` writes it: `<invalid>` when
/// more than a second past, then seconds, minutes, hours (below 48), days, years.
fn short_human_duration(now: Timestamp, at: Timestamp) -> String {
    let seconds = at.as_second() - now.as_second();
    match seconds {
        ..-1 => "<invalid>".to_string(),
        -1..=0 => "0s".to_string(),
        1..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..172_800 => format!("{}h", seconds / 3600),
        172_800..31_536_000 => format!("{}d", seconds / 86_400),
        _ => format!("{}y", seconds / 31_536_000),
    }
}

/// Why the initial token could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InitialTokenError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the initial join token: {0}")]
    Pki(#[from] PkiError),
    #[error("storing the initial join token: {0}")]
    Api(#[from] ApiError),
}

/// The server's join token: on first start a bootstrap token that never expires, written in
/// full (`K10<hash>::<id>.<secret>`) to `DIR/node-token` (owner-only); on later starts the
/// file's token while its Secret still holds it for this CA, else a new one.
pub async fn ensure_initial_token(
    state: &ApiState,
    data_dir: &Path,
    ca_pem: &str,
) -> Result<String, InitialTokenError> {
    let path = data_dir.join(NODE_TOKEN_FILE);
    let pin = petset_pki::ca_hash(ca_pem)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if let Ok(token) = JoinToken::parse(&text, false)
                && token.ca_hash.as_deref() == Some(pin.as_str())
                && still_stored(state, &token.credential).await?
            {
                return Ok(token.to_string());
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(InitialTokenError::Io { path, source }),
    }
    let credential = BootstrapToken::generate()?;
    state
        .registry()
        .create(
            system_scope()?,
            secret(&credential, None, INITIAL_DESCRIPTION),
            false,
        )
        .await?;
    let token = JoinToken::pinned(ca_pem, credential)?.to_string();
    petset_pki::files::write_private(&path, &format!("{token}\n"))
        .map_err(|source| InitialTokenError::Io { path, source })?;
    Ok(token)
}

/// Whether `token`'s Secret exists and still holds its secret.
async fn still_stored(state: &ApiState, token: &BootstrapToken) -> Result<bool, ApiError> {
    match state
        .registry()
        .get(system_scope()?, &secret_name(&token.id))
        .await
    {
        Ok(stored) => Ok(stored.pointer("/metadata/deletionTimestamp").is_none()
            && data_text(&stored, "token-secret").as_deref() == Some(token.secret.as_str())),
        Err(error) if error.code == 404 => Ok(false),
        Err(error) => Err(error),
    }
}
