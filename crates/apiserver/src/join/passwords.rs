//! Node passwords: a node name belongs to the first agent that joins with it. The server keeps
//! a hash of that agent's password in the immutable Secret
//! `kube-system/<node>.node-password.petset` (k3s's layout); a later join under the name must
//! bring the same password. Deleting that Secret frees the name.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use petset_api::ApiError;
use serde_json::{Value, json};

use super::tokens::{data_text, system_scope};
use crate::ApiState;

/// The Secret type of node password hashes.
pub const SECRET_TYPE: &str = "petset.dev/node-password";

/// The Secret name of `node`'s password hash.
pub fn secret_name(node: &str) -> String {
    format!("{node}.node-password.petset")
}

/// What the check found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The name is new (its hash is now stored) or the password matches the stored hash.
    Accepted,
    /// Another password holds the name.
    Rejected,
}

/// Checks `password` for `node`, storing its hash on first use.
pub(crate) async fn check(
    state: &ApiState,
    node: &str,
    password: &str,
) -> Result<Verdict, ApiError> {
    let scope = system_scope()?;
    let name = secret_name(node);
    // Two tries: a join racing another one for a new name finds the winner's hash.
    for _ in 0..2 {
        match state.registry().get(scope, &name).await {
            Ok(stored) => return matches(&stored, password).await,
            Err(error) if error.code != 404 => return Err(error),
            Err(_) => {}
        }
        let hash = hash(password).await?;
        let secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": super::tokens::NAMESPACE},
            "type": SECRET_TYPE,
            "immutable": true,
            "data": {"hash": STANDARD.encode(hash)},
        });
        match state.registry().create(scope, secret, false).await {
            Ok(_) => return Ok(Verdict::Accepted),
            Err(error) if error.code == 409 => continue,
            Err(error) => return Err(error),
        }
    }
    Err(ApiError::internal(format!(
        "the node password Secret {name} changed while it was checked"
    )))
}

async fn matches(stored: &Value, password: &str) -> Result<Verdict, ApiError> {
    let Some(hash) = data_text(stored, "hash") else {
        return Err(ApiError::internal(
            "the stored node password Secret has no hash",
        ));
    };
    let password = password.to_string();
    // PBKDF2's 100,000 rounds are CPU work: off the request threads.
    let verified = tokio::task::spawn_blocking(move || {
        petset_pki::password::verify_password(&password, &hash)
    })
    .await
    .map_err(|error| ApiError::internal(error.to_string()))?
    .map_err(|error| ApiError::internal(error.to_string()))?;
    Ok(if verified {
        Verdict::Accepted
    } else {
        Verdict::Rejected
    })
}

async fn hash(password: &str) -> Result<String, ApiError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || petset_pki::password::hash_password(&password))
        .await
        .map_err(|error| ApiError::internal(error.to_string()))?
        .map_err(|error| ApiError::internal(error.to_string()))
}
