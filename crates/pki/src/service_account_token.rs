//! Bound service-account tokens as kube-apiserver issues them: JSON Web Tokens (RFC 7519)
//! signed with ES256 (ECDSA P-256 and SHA-256, RFC 7518 §3.4), whose claims name the issuer,
//! the audiences, the subject `system:serviceaccount:NS:NAME`, the times (`iat`, `nbf`, `exp`)
//! and, under `kubernetes.io`, the namespace, the ServiceAccount and the pod the token is bound
//! to. This module only makes and checks tokens; that the ServiceAccount (and the pod) still
//! exist with the uids a token names is the API server's to check.
//!
//! The signing key is a PKCS#8 document kept in the data dir (`sa.key`, beside the CA), made
//! once; several servers share it as they share the CA. Its key id (`kid` in every token's
//! header) is, as upstream's, the unpadded base64url SHA-256 of its public key's DER
//! SubjectPublicKeyInfo, so a verifier with several keys can tell which signed a token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};

/// The issuer and default audience of petset's tokens, as a kube-apiserver started with
/// `--service-account-issuer https://kubernetes.default.svc.cluster.local` (kubeadm's).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// The DER prefix of a P-256 public key's SubjectPublicKeyInfo (id-ecPublicKey, prime256v1,
/// then the BIT STRING of the 65-byte uncompressed point).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Why a token is refused (each is a 401 at the edge, with upstream's "invalid bearer token").
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("the token is not a signed JWT")]
    Malformed,
    #[error("the token is signed with {0:?}, not ES256")]
    Algorithm(String),
    #[error("the token was signed by another key")]
    UnknownKey,
    #[error("the token's signature does not match its contents")]
    Signature,
    #[error("the token was issued by {0:?}")]
    Issuer(String),
    #[error("the token is for none of the audiences this server accepts")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the signing key is not usable: {0}")]
    Key(String),
    #[error("the claims cannot be written: {0}")]
    Claims(String),
}

/// Why the key file could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {error}")]
    Damaged {
        path: std::path::PathBuf,
        error: TokenError,
    },
    #[error(transparent)]
    Generate(#[from] TokenError),
}

/// An object a token is bound to, or its ServiceAccount: name and uid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: Bound,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Bound>,
    /// When a token issued for longer than asked (a pod's 3607-second token, extended as
    /// upstream does) should have been refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// A token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: Vec<String>,
    pub sub: String,
    /// Seconds since the epoch.
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

impl Claims {
    /// The claims of a token for ServiceAccount `account` of `namespace`, valid from `now` for
    /// `seconds`, for `audiences` (the issuer when none), bound to `pod` if given.
    pub fn new(
        namespace: &str,
        account: Bound,
        pod: Option<Bound>,
        audiences: Vec<String>,
        now: i64,
        seconds: i64,
        jti: String,
    ) -> Self {
        let aud = if audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            audiences
        };
        Self {
            iss: ISSUER.to_string(),
            aud,
            sub: format!("system:serviceaccount:{namespace}:{}", account.name),
            exp: now.saturating_add(seconds),
            iat: now,
            nbf: now,
            jti,
            kubernetes: KubernetesClaims {
                namespace: namespace.to_string(),
                serviceaccount: account,
                pod,
                warnafter: None,
            },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    kid: String,
}

/// The key that signs (and checks) service-account tokens.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new key's PKCS#8 document, to be kept (`from_pkcs8` reads it back).
    pub fn generate_pkcs8() -> Result<Vec<u8>, TokenError> {
        let document =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(document.as_ref().to_vec())
    }

    pub fn from_pkcs8(document: &[u8]) -> Result<Self, TokenError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            document,
            &SystemRandom::new(),
        )
        .map_err(|e| TokenError::Key(e.to_string()))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &spki));
        Ok(Self { pair, kid })
    }

    /// A key document as PEM (`PRIVATE KEY`), as `DIR/pki/sa.key` holds it.
    pub fn pkcs8_pem(document: &[u8]) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(document);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// The key of a PEM document written by [`Self::pkcs8_pem`] (or by openssl).
    pub fn from_pem(pem: &str) -> Result<Self, TokenError> {
        use rustls::pki_types::PrivatePkcs8KeyDer;
        use rustls::pki_types::pem::PemObject;
        let document = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Self::from_pkcs8(document.secret_pkcs8_der())
    }

    /// The key kept at `path`, made and written (owner-only) on first use.
    pub fn load_or_create(path: &std::path::Path) -> Result<Self, KeyFileError> {
        let pem = match std::fs::read_to_string(path) {
            Ok(pem) => pem,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let pem = Self::pkcs8_pem(&Self::generate_pkcs8()?);
                crate::files::write_private(path, &pem).map_err(|source| KeyFileError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                pem
            }
            Err(source) => {
                return Err(KeyFileError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Self::from_pem(&pem).map_err(|error| KeyFileError::Damaged {
            path: path.to_path_buf(),
            error,
        })
    }

    /// The key id every token it signs names.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed token with these claims.
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        let header = Header {
            alg: "ES256".into(),
            kid: self.kid.clone(),
        };
        let signed = format!("{}.{}", encoded(&header)?, encoded(claims)?);
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .map_err(|e| TokenError::Key(e.to_string()))?;
        Ok(format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The claims of `token` when this key signed it, it is valid at `now` (seconds since the
    /// epoch) and it names one of `audiences`; otherwise why not.
    pub fn verify(&self, token: &str, now: i64, audiences: &[&str]) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenError::Malformed)
        };
        let header: Header =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if header.alg != "ES256" {
            return Err(TokenError::Algorithm(header.alg));
        }
        if header.kid != self.kid {
            return Err(TokenError::UnknownKey);
        }
        let signed_len = token.len() - signature.len() - 1;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref())
            .verify(&token.as_bytes()[..signed_len], &decode(signature)?)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&decode(payload)?).map_err(|_| TokenError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(TokenError::Issuer(claims.iss));
        }
        if !claims.aud.iter().any(|a| audiences.contains(&a.as_str())) {
            return Err(TokenError::Audience);
        }
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

/// A JWT part: the value's JSON, base64url without padding.
fn encoded<T: Serialize>(value: &T) -> Result<String, TokenError> {
    let json = serde_json::to_vec(value).map_err(|e| TokenError::Claims(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000;

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().expect("generate")).expect("key")
    }

    fn claims(seconds: i64) -> Claims {
        Claims::new(
            "go-demo-3",
            Bound {
                name: "default".into(),
                uid: "sa-uid".into(),
            },
            Some(Bound {
                name: "db-0".into(),
                uid: "pod-uid".into(),
            }),
            Vec::new(),
            NOW,
            seconds,
            "jti-1".into(),
        )
    }

    #[test]
    fn a_token_reads_back_with_upstreams_claims() {
        let key = key();
        let token = key.issue(&claims(3600)).expect("issue");
        let read = key.verify(&token, NOW + 10, &[ISSUER]).expect("verify");
        assert_eq!(read, claims(3600));
        assert_eq!(read.sub, "system:serviceaccount:go-demo-3:default");
        assert_eq!(read.aud, [ISSUER]);
        let payload = token.split('.').nth(1).expect("payload");
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64"))
                .expect("json");
        assert_eq!(json["kubernetes.io"]["serviceaccount"]["uid"], "sa-uid");
        assert_eq!(json["kubernetes.io"]["pod"]["name"], "db-0");
        let header = token.split('.').next().expect("header");
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64")).expect("json");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key.kid());
    }

    #[test]
    fn tampered_foreign_expired_early_and_misaddressed_tokens_are_refused() {
        let key = key();
        let token = key.issue(&claims(3600)).expect("issue");
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut forged = claims(3600);
        forged.sub = "system:serviceaccount:kube-system:admin".into();
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        assert_eq!(
            key.verify(&parts.join("."), NOW, &[ISSUER]),
            Err(TokenError::Signature)
        );
        let other =
            SigningKey::from_pkcs8(&SigningKey::generate_pkcs8().expect("gen")).expect("other key");
        assert_eq!(
            other.verify(&token, NOW, &[ISSUER]),
            Err(TokenError::UnknownKey)
        );
        assert_eq!(
            key.verify(&token, NOW + 3600, &[ISSUER]),
            Err(TokenError::Expired)
        );
        assert_eq!(
            key.verify(&token, NOW - 1, &[ISSUER]),
            Err(TokenError::NotYetValid)
        );
        assert_eq!(
            key.verify(&token, NOW, &["vault"]),
            Err(TokenError::Audience)
        );
        for malformed in ["", "a.b", "a.b.c.d", "!!.??.**"] {
            assert_eq!(
                key.verify(malformed, NOW, &[ISSUER]),
                Err(TokenError::Malformed),
                "{malformed:?}"
            );
        }
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":""}"#),
            parts[1]
        );
        assert_eq!(
            key.verify(&none, NOW, &[ISSUER]),
            Err(TokenError::Algorithm("none".into()))
        );
    }

    #[test]
    fn the_key_file_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sa.key");
        let first = SigningKey::load_or_create(&path).expect("made");
        let again = SigningKey::load_or_create(&path).expect("read");
        assert_eq!(first.kid(), again.kid());
        std::fs::write(&path, "damaged").expect("write");
        assert!(matches!(
            SigningKey::load_or_create(&path),
            Err(KeyFileError::Damaged { .. })
        ));
    }

    #[test]
    fn a_key_read_back_signs_tokens_the_first_accepts() {
        let document = SigningKey::generate_pkcs8().expect("generate");
        let (first, again) = (
            SigningKey::from_pkcs8(&document).expect("key"),
            SigningKey::from_pkcs8(&document).expect("key again"),
        );
        assert_eq!(first.kid(), again.kid());
        let token = again.issue(&claims(60)).expect("issue");
        assert!(first.verify(&token, NOW, &[ISSUER]).is_ok());
        assert!(matches!(
            SigningKey::from_pkcs8(b"not a key"),
            Err(TokenError::Key(_))
        ));
    }
}
