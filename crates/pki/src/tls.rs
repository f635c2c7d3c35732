//! TLS configurations from PEM material: a node API's server side and a client that trusts
//! only the cluster CA, optionally presenting a client certificate.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::PkiError;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM text, in order; an error when there is none or one is damaged.
pub fn certificates(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let damaged = |detail: String| PkiError::Certificate { what, detail };
    let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| damaged(error.to_string()))?;
    if certificates.is_empty() {
        return Err(damaged("no certificate in the PEM text".into()));
    }
    Ok(certificates)
}

/// The private key of a PEM text.
pub fn private_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|error| PkiError::Key {
        what,
        detail: error.to_string(),
    })
}

/// Roots holding every certificate of `ca_pem`.
pub fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates(ca_pem, "cluster CA")? {
        roots.add(certificate)?;
    }
    Ok(roots)
}

/// A node API's TLS: it presents `cert_pem` (followed by the CA, so clients see the chain) and
/// verifies client certificates against the CA. Clients without one still connect (the node
/// answers them 401); HTTP/1.1 only, as the node API streams by upgrade.
pub fn node_server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)?),
        provider(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(|error| PkiError::Verifier(error.to_string()))?;
    let mut chain = certificates(cert_pem, "node serving certificate")?;
    chain.extend(certificates(ca_pem, "cluster CA")?);
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private_key(key_pem, "node serving key")?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client that trusts only `ca_pem` and, with `identity` (certificate and key PEM), presents
/// that client certificate; HTTP/1.1.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?);
    let mut config = match identity {
        Some((cert_pem, key_pem)) => builder.with_client_auth_cert(
            certificates(cert_pem, "client certificate")?,
            private_key(key_pem, "client key")?,
        )?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks that the client certificate `cert_pem` chains to `ca_pem` and is valid now for
/// client authentication (what a server verifying it would decide).
pub fn verify_client_certificate(ca_pem: &str, cert_pem: &str) -> Result<(), PkiError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)?),
        provider(),
    )
    .build()
    .map_err(|error| PkiError::Verifier(error.to_string()))?;
    verify_chain(cert_pem, "client certificate", |leaf, intermediates| {
        verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map(drop)
            .map_err(|error| error.to_string())
    })
}

/// Checks that the serving certificate `cert_pem` chains to `ca_pem` and is valid now for a
/// server called `name` (a DNS name or an IP).
pub fn verify_serving_certificate(
    ca_pem: &str,
    cert_pem: &str,
    name: &str,
) -> Result<(), PkiError> {
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)?),
        provider(),
    )
    .build()
    .map_err(|error| PkiError::Verifier(error.to_string()))?;
    verify_chain(cert_pem, "serving certificate", |leaf, intermediates| {
        let server_name =
            ServerName::try_from(name.to_string()).map_err(|error| format!("{name:?}: {error}"))?;
        verifier
            .verify_server_cert(leaf, intermediates, &server_name, &[], UnixTime::now())
            .map(drop)
            .map_err(|error| error.to_string())
    })
}

/// Runs `check` on the leaf and the rest of `cert_pem`'s chain.
fn verify_chain(
    cert_pem: &str,
    what: &'static str,
    check: impl FnOnce(&CertificateDer<'static>, &[CertificateDer<'static>]) -> Result<(), String>,
) -> Result<(), PkiError> {
    let chain = certificates(cert_pem, what)?;
    // `certificates` refuses an empty chain, so there is a leaf.
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(PkiError::Untrusted {
            what,
            detail: "no certificate".into(),
        });
    };
    check(leaf, intermediates).map_err(|detail| PkiError::Untrusted { what, detail })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_material_is_named() {
        let error = node_server_config("nothing", "nothing", "nothing").expect_err("refused");
        assert!(error.to_string().contains("cluster CA"), "{error}");
        let error = client_config("nothing", None).expect_err("refused");
        assert!(error.to_string().contains("cluster CA"), "{error}");
    }
}
