//! Node passwords: each agent makes its own once (16 random bytes, hex) and the server keeps
//! only a salted PBKDF2-HMAC-SHA256 hash of it, stored as
//! `pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>`.

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::{PkiError, random};

const SCHEME: &str = "pbkdf2-sha256";
const ITERATIONS: u32 = 100_000;
const SALT_LENGTH: usize = 16;
const HASH_LENGTH: usize = 32;
/// The most iterations a stored hash may ask for: a damaged or hostile Secret must not make
/// a join spin for minutes.
const MAX_ITERATIONS: u32 = 10_000_000;

/// A new node password: 16 random bytes, hex (k3s's `ensureNodePassword`).
pub fn new_node_password() -> Result<String, PkiError> {
    Ok(random::hex(&random::bytes(16)?))
}

/// The stored form of `password`'s hash, with a new random salt.
pub fn hash_password(password: &str) -> Result<String, PkiError> {
    let salt = random::bytes(SALT_LENGTH)?;
    let hash = derive(
        password,
        &salt,
        NonZeroU32::new(ITERATIONS).ok_or(PkiError::PasswordHash)?,
    );
    Ok(format!(
        "{SCHEME}${ITERATIONS}${}${}",
        STANDARD.encode(&salt),
        STANDARD.encode(hash)
    ))
}

/// Whether `password` is the one `stored` was made from (compared in constant time).
pub fn verify_password(password: &str, stored: &str) -> Result<bool, PkiError> {
    let mut parts = stored.trim().split('$');
    let (Some(SCHEME), Some(iterations), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(PkiError::PasswordHash);
    };
    let iterations = iterations
        .parse::<u32>()
        .ok()
        .filter(|count| *count <= MAX_ITERATIONS)
        .and_then(NonZeroU32::new)
        .ok_or(PkiError::PasswordHash)?;
    let salt = STANDARD.decode(salt).map_err(|_| PkiError::PasswordHash)?;
    let hash = STANDARD.decode(hash).map_err(|_| PkiError::PasswordHash)?;
    Ok(ring::pbkdf2::verify(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok())
}

fn derive(password: &str, salt: &[u8], iterations: NonZeroU32) -> [u8; HASH_LENGTH] {
    let mut out = [0u8; HASH_LENGTH];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_matches_its_hash_and_no_other() {
        let password = new_node_password().expect("random");
        assert_eq!(password.len(), 32);
        let stored = hash_password(&password).expect("hash");
        assert!(stored.starts_with("pbkdf2-sha256$100000$"), "{stored}");
        assert!(!stored.contains(&password));
        assert!(verify_password(&password, &stored).expect("well formed"));
        assert!(!verify_password("other", &stored).expect("well formed"));
        // The salt is new each time.
        assert_ne!(hash_password(&password).expect("hash"), stored);
    }

    #[test]
    fn damaged_hashes_are_errors_not_matches() {
        for stored in [
            "",
            "plain",
            "scrypt$1$a$b",
            "pbkdf2-sha256$0$AAAA$AAAA",
            "pbkdf2-sha256$99999999999$AAAA$AAAA",
            "pbkdf2-sha256$1000$!!$AAAA",
            "pbkdf2-sha256$1000$AAAA$AAAA$extra",
        ] {
            assert!(verify_password("x", stored).is_err(), "{stored}");
        }
    }
}
