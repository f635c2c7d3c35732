//! Join tokens: `K10<CA hash>::<id>.<secret>`, k3s's secure form with a kubeadm bootstrap
//! token as the credential, and the CA hash an agent pins before it sends anything.
//!
//! The hash is the SHA-256 of the DER of the cluster CA certificate (not of the PEM text, as
//! k3s does for a single CA), so re-encoding the PEM never changes it.

use std::fmt;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::{PkiError, random};

/// k3s's marker of the secure token form.
const PREFIX: &str = "K10";
/// Hex characters of a SHA-256 digest.
const CA_HASH_LENGTH: usize = 64;
const ID_LENGTH: usize = 6;
const SECRET_LENGTH: usize = 16;

/// Lowercase hex SHA-256 of the DER of the first certificate in `ca_pem`.
pub fn ca_hash(ca_pem: &str) -> Result<String, PkiError> {
    let der = CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .next()
        .ok_or_else(|| PkiError::Certificate {
            what: "cluster CA",
            detail: "no certificate in the PEM text".into(),
        })?
        .map_err(|error| PkiError::Certificate {
            what: "cluster CA",
            detail: error.to_string(),
        })?;
    Ok(ca_hash_der(der.as_ref()))
}

/// Lowercase hex SHA-256 of a CA certificate's DER.
pub fn ca_hash_der(der: &[u8]) -> String {
    random::hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// A kubeadm-style bootstrap token, `<id>.<secret>`: the id is public (it names the Secret
/// that holds the token), the secret is the credential.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl BootstrapToken {
    /// A new token from the system's random source.
    pub fn generate() -> Result<Self, PkiError> {
        Ok(Self {
            id: random::lower_alphanumeric(ID_LENGTH)?,
            secret: random::lower_alphanumeric(SECRET_LENGTH)?,
        })
    }

    /// `[a-z0-9]{6}.[a-z0-9]{16}`, or `invalid token format`.
    pub fn parse(text: &str) -> Result<Self, PkiError> {
        let (id, secret) = text.split_once('.').ok_or(PkiError::TokenFormat)?;
        if !is_token_part(id, ID_LENGTH) || !is_token_part(secret, SECRET_LENGTH) {
            return Err(PkiError::TokenFormat);
        }
        Ok(Self {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// Whether `id` could name a bootstrap token (`[a-z0-9]{6}`).
    pub fn is_id(id: &str) -> bool {
        is_token_part(id, ID_LENGTH)
    }
}

fn is_token_part(text: &str, length: usize) -> bool {
    text.len() == length
        && text
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
}

impl fmt::Display for BootstrapToken {
    /// The whole credential, `<id>.<secret>`: for the header and the token file only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    /// Never the secret: tokens end up in logs through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.<redacted>)", self.id)
    }
}

/// What an agent is given to join: the CA it must find (its hash) and its credential.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct JoinToken {
    /// `None` for the short form, which pins nothing.
    pub ca_hash: Option<String>,
    pub credential: BootstrapToken,
}

impl JoinToken {
    /// The full form for `ca_pem`.
    pub fn pinned(ca_pem: &str, credential: BootstrapToken) -> Result<Self, PkiError> {
        Ok(Self {
            ca_hash: Some(ca_hash(ca_pem)?),
            credential,
        })
    }

    /// Reads `K10<hash>::<id>.<secret>`. The short form (`<id>.<secret>` alone) is refused
    /// unless `allow_unpinned`; then a warning says the first connection can be intercepted.
    pub fn parse(text: &str, allow_unpinned: bool) -> Result<Self, PkiError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PkiError::EmptyToken);
        }
        let Some(rest) = text.strip_prefix(PREFIX) else {
            let credential = BootstrapToken::parse(text)?;
            if !allow_unpinned {
                return Err(PkiError::Unpinned);
            }
            tracing::warn!(
                "the join token carries no CA hash: the server's CA is trusted on first \
                 contact, so that connection may be vulnerable to a man-in-the-middle attack; \
                 use the full token from the server's node-token file"
            );
            return Ok(Self {
                ca_hash: None,
                credential,
            });
        };
        let (hash, credential) = rest.split_once("::").ok_or(PkiError::TokenFormat)?;
        if hash.len() != CA_HASH_LENGTH {
            return Err(PkiError::CaHashLength);
        }
        if !hash.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(PkiError::TokenFormat);
        }
        Ok(Self {
            ca_hash: Some(hash.to_ascii_lowercase()),
            credential: BootstrapToken::parse(credential)?,
        })
    }
}

impl fmt::Display for JoinToken {
    /// The form it was read in: `K10<hash>::<id>.<secret>`, or `<id>.<secret>` unpinned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ca_hash {
            Some(hash) => write!(f, "{PREFIX}{hash}::{}", self.credential),
            None => write!(f, "{}", self.credential),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).expect("certificate").pem()
    }

    #[test]
    fn the_full_form_round_trips() {
        let text = format!("K10{HASH}::abcdef.0123456789abcdef");
        let token = JoinToken::parse(&text, false).expect("parsed");
        assert_eq!(token.ca_hash.as_deref(), Some(HASH));
        assert_eq!(token.credential.id, "abcdef");
        assert_eq!(token.credential.secret, "0123456789abcdef");
        assert_eq!(token.to_string(), text);
        // Surrounding whitespace (a token file's newline) does not matter.
        assert_eq!(
            JoinToken::parse(&format!("{text}\n"), false).expect("parsed"),
            token
        );
    }

    #[test]
    fn a_generated_token_round_trips_and_never_shows_its_secret_in_debug() {
        let credential = BootstrapToken::generate().expect("random");
        assert_eq!(
            BootstrapToken::parse(&credential.to_string()).expect("parsed"),
            credential
        );
        let token = JoinToken::pinned(&ca_pem(), credential.clone()).expect("pinned");
        assert_eq!(
            JoinToken::parse(&token.to_string(), false).expect("parsed"),
            token
        );
        assert!(!format!("{token:?}").contains(&credential.secret));
    }

    #[test]
    fn every_malformed_token_is_refused_with_k3s_words() {
        let refusals = [
            ("", "token must not be empty"),
            (
                "K10abc::abcdef.0123456789abcdef",
                "invalid token CA hash length",
            ),
            (
                &format!("K10{HASH}0::abcdef.0123456789abcdef"),
                "invalid token CA hash length",
            ),
            (
                &format!("K10{}::abcdef.0123456789abcdef", "g".repeat(64)),
                "invalid token format",
            ),
            (
                &format!("K10{HASH}::abcdef:0123456789abcdef"),
                "invalid token format",
            ),
            (
                &format!("K10{HASH}::ABCDEF.0123456789abcdef"),
                "invalid token format",
            ),
            (
                &format!("K10{HASH}::abcde.0123456789abcdef"),
                "invalid token format",
            ),
            (
                &format!("K10{HASH}::abcdef.0123456789abcde"),
                "invalid token format",
            ),
            (&format!("K10{HASH}::"), "invalid token format"),
            (&format!("K10{HASH}"), "invalid token format"),
            ("server:password", "invalid token format"),
        ];
        for (text, message) in refusals {
            let error = JoinToken::parse(text, true).expect_err(text);
            assert_eq!(error.to_string(), message, "{text}");
        }
    }

    #[test]
    fn the_short_form_is_refused_unless_asked_for() {
        let error = JoinToken::parse("abcdef.0123456789abcdef", false).expect_err("refused");
        assert!(matches!(error, PkiError::Unpinned), "{error}");
        assert!(
            error.to_string().contains("--insecure-skip-ca-pin"),
            "{error}"
        );
        let token = JoinToken::parse("abcdef.0123456789abcdef", true).expect("allowed");
        assert_eq!(token.ca_hash, None);
        assert_eq!(token.to_string(), "abcdef.0123456789abcdef");
    }

    #[test]
    fn the_ca_hash_is_of_the_der_so_re_encoding_keeps_it() {
        let pem = ca_pem();
        let hash = ca_hash(&pem).expect("hash");
        assert_eq!(hash.len(), 64);
        assert!(
            hash.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // CRLF line ends and trailing text are a different file but the same certificate.
        let re_encoded = format!("{}\r\n# comment\r\n", pem.replace('\n', "\r\n"));
        assert_eq!(ca_hash(&re_encoded).expect("hash"), hash);
        assert_ne!(ca_hash(&ca_pem()).expect("hash"), hash);
        // A bundle is pinned by its first certificate.
        assert_eq!(ca_hash(&format!("{pem}{}", ca_pem())).expect("hash"), hash);
        assert!(ca_hash("not a certificate").is_err());
    }
}
