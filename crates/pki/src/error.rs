//! Why trust material could not be read, made or checked.

/// One error type for the crate: each variant says what was wrong with which input.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// k3s's text for an empty token.
    #[error("token must not be empty")]
    EmptyToken,
    /// k3s's text: the part between `K10` and `::` is not 64 characters.
    #[error("invalid token CA hash length")]
    CaHashLength,
    /// k3s's text: the credential is not `<id>.<secret>` (or the hash is not hex).
    #[error("invalid token format")]
    TokenFormat,
    /// A short token (no CA pin) where the caller did not allow one.
    #[error(
        "the token carries no CA hash, so the server's identity cannot be checked; use the full K10 token from the server's DIR/node-token, or pass --insecure-skip-ca-pin to trust the first answer"
    )]
    Unpinned,
    /// A PEM input that holds no certificate, or a damaged one.
    #[error("{what}: no usable certificate: {detail}")]
    Certificate { what: &'static str, detail: String },
    /// A PEM private key that cannot be read.
    #[error("{what}: not a usable private key: {detail}")]
    Key { what: &'static str, detail: String },
    /// A certificate signing request that is damaged, or whose signature does not prove
    /// possession of its key.
    #[error("the {what} certificate signing request is not usable: {detail}")]
    Request { what: &'static str, detail: String },
    /// A certificate that does not chain to the CA, or is not valid for its use.
    #[error("the {what} is not trusted: {detail}")]
    Untrusted { what: &'static str, detail: String },
    /// A stored password hash that is not `pbkdf2-sha256$<iterations>$<salt>$<hash>`.
    #[error("the stored node password hash is damaged")]
    PasswordHash,
    /// The system's random source failed.
    #[error("the system random source failed")]
    Random,
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("verifying client certificates: {0}")]
    Verifier(String),
}
