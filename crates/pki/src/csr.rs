//! Certificates for nodes, from their own keys: the agent makes a P-256 key and a certificate
//! signing request; the server checks the request's self-signature (the agent holds the key)
//! and signs a certificate for that public key whose subject and names are the server's
//! decision, never the request's.

use std::net::IpAddr;

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::PkiError;

/// The group every node's client certificate carries (the Node authorizer's).
pub const NODES_GROUP: &str = "system:nodes";

/// The user a node's certificates name: `system:node:<name>`.
pub fn node_user(node_name: &str) -> String {
    format!("system:node:{node_name}")
}

/// A private key and a request to certify it, as PEM.
pub struct KeyAndRequest {
    pub key_pem: String,
    pub request_pem: String,
}

/// A new P-256 key and a request for it, asking for `node_user(node_name)` (the server
/// ignores what is asked and decides).
pub fn new_node_request(node_name: &str) -> Result<KeyAndRequest, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, node_user(node_name));
    let request = params.serialize_request(&key)?;
    Ok(KeyAndRequest {
        key_pem: key.serialize_pem(),
        request_pem: request.pem()?,
    })
}

/// A CA that signs: its certificate (PEM, as served at `/cacerts`) and its key.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl CertificateAuthority {
    /// From the CA's certificate and key PEM (as `DIR/pki/ca.crt` and `ca.key` hold them).
    pub fn from_pems(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|error| PkiError::Key {
            what: "cluster CA",
            detail: error.to_string(),
        })?;
        let issuer =
            Issuer::from_ca_cert_pem(cert_pem, key).map_err(|error| PkiError::Certificate {
                what: "cluster CA",
                detail: error.to_string(),
            })?;
        Ok(Self {
            issuer,
            pem: cert_pem.to_string(),
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A node's client certificate for the key of `request_pem`: `CN=system:node:<name>`,
    /// `O=system:nodes`, client authentication only.
    pub fn sign_node_client(&self, request_pem: &str, node_name: &str) -> Result<String, PkiError> {
        let public_key = requested_key(request_pem, "client")?;
        let mut params = node_params(node_name, Vec::new())?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, public_key)
    }

    /// A node's serving certificate for the key of `request_pem`: `CN=system:node:<name>`,
    /// `O=system:nodes`, names = the node name, its IPs and 127.0.0.1, server authentication
    /// only.
    pub fn sign_node_serving(
        &self,
        request_pem: &str,
        node_name: &str,
        node_ips: &[IpAddr],
    ) -> Result<String, PkiError> {
        let public_key = requested_key(request_pem, "serving")?;
        let mut names = vec![SanType::DnsName(node_name.try_into()?)];
        let loopback = IpAddr::from([127, 0, 0, 1]);
        for ip in node_ips.iter().chain(std::iter::once(&loopback)) {
            if !names.contains(&SanType::IpAddress(*ip)) {
                names.push(SanType::IpAddress(*ip));
            }
        }
        let mut params = node_params(node_name, names)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, public_key)
    }

    fn sign(
        &self,
        params: CertificateParams,
        public_key: rcgen::PublicKey,
    ) -> Result<String, PkiError> {
        let request = CertificateSigningRequestParams { params, public_key };
        Ok(request.signed_by(&self.issuer)?.pem())
    }
}

/// The request's public key, once its signature proves the sender holds the private key.
fn requested_key(request_pem: &str, what: &'static str) -> Result<rcgen::PublicKey, PkiError> {
    // rcgen's parser verifies the self-signature (x509-parser's `verify`, enabled with rcgen's
    // `ring` feature) and refuses a forged one; the unit tests hold it to that.
    CertificateSigningRequestParams::from_pem(request_pem)
        .map(|request| request.public_key)
        .map_err(|error| PkiError::Request {
            what,
            detail: error.to_string(),
        })
}

fn node_params(node_name: &str, names: Vec<SanType>) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = names;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, NODES_GROUP);
    params
        .distinguished_name
        .push(DnType::CommonName, node_user(node_name));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    Ok(params)
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;
    use crate::subject::{Subject, subject};

    pub(crate) fn test_ca() -> CertificateAuthority {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "test-ca");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).expect("certificate").pem();
        CertificateAuthority::from_pems(&pem, &key.serialize_pem()).expect("CA")
    }

    fn parsed(der: &[u8]) -> x509_parser::certificate::X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der)
            .expect("a certificate")
            .1
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Usages {
        ClientOnly,
        ServerOnly,
        Other,
    }

    /// What the certificate's extended key usage allows.
    fn usages(certificate: &x509_parser::certificate::X509Certificate<'_>) -> Usages {
        let usage = certificate
            .extended_key_usage()
            .expect("one at most")
            .expect("present")
            .value;
        match (usage.client_auth, usage.server_auth, usage.any) {
            (true, false, false) => Usages::ClientOnly,
            (false, true, false) => Usages::ServerOnly,
            _ => Usages::Other,
        }
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .expect("certificate")
            .to_vec()
    }

    #[test]
    fn the_client_certificate_names_the_servers_choice_not_the_requests() {
        let ca = test_ca();
        // The request asks to be an administrator; the server decides it is node-a.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut asked = CertificateParams::new(vec!["evil.example".to_string()]).expect("params");
        asked.distinguished_name.push(DnType::CommonName, "admin");
        asked
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        let request = asked
            .serialize_request(&key)
            .expect("request")
            .pem()
            .expect("pem");
        let certificate = ca.sign_node_client(&request, "node-a").expect("signed");
        assert_eq!(
            subject(&der(&certificate)),
            Some(Subject {
                common_name: Some("system:node:node-a".into()),
                organizations: vec!["system:nodes".into()],
            })
        );
        let der = der(&certificate);
        let parsed = parsed(&der);
        assert!(
            parsed
                .subject_alternative_name()
                .expect("one at most")
                .is_none()
        );
        assert_eq!(usages(&parsed), Usages::ClientOnly);
    }

    #[test]
    fn the_serving_certificate_names_the_node_its_ips_and_loopback() {
        let ca = test_ca();
        let request = new_node_request("node-a").expect("request");
        let ips: Vec<IpAddr> = vec![
            "10.0.0.5".parse().expect("ip"),
            "127.0.0.1".parse().expect("ip"),
        ];
        let certificate = ca
            .sign_node_serving(&request.request_pem, "node-a", &ips)
            .expect("signed");
        let der = der(&certificate);
        let parsed = parsed(&der);
        let names: Vec<String> = parsed
            .subject_alternative_name()
            .expect("one at most")
            .expect("present")
            .value
            .general_names
            .iter()
            .map(ToString::to_string)
            .collect();
        // x509-parser prints addresses as their octets in hex: 10.0.0.5 and 127.0.0.1.
        assert_eq!(
            names,
            [
                "DNSName(node-a)",
                "IPAddress(0a:00:00:05)",
                "IPAddress(7f:00:00:01)"
            ]
        );
        assert_eq!(usages(&parsed), Usages::ServerOnly);
        assert_eq!(
            crate::common_name(&der).as_deref(),
            Some("system:node:node-a")
        );
        for name in ["node-a", "10.0.0.5", "127.0.0.1"] {
            crate::tls::verify_serving_certificate(ca.pem(), &certificate, name).expect(name);
        }
        assert!(crate::tls::verify_serving_certificate(ca.pem(), &certificate, "node-b").is_err());
    }

    #[test]
    fn the_certificate_certifies_the_requesters_key_and_chains_to_the_ca() {
        let ca = test_ca();
        let request = new_node_request("node-a").expect("request");
        let certificate = ca
            .sign_node_client(&request.request_pem, "node-a")
            .expect("signed");
        let key = KeyPair::from_pem(&request.key_pem).expect("key");
        let der = der(&certificate);
        let certified = parsed(&der).public_key().subject_public_key.data.to_vec();
        assert_eq!(certified, key.public_key_raw());
        // The key pair is consistent (rustls checks it) and the certificate chains to the CA.
        crate::tls::client_config(ca.pem(), Some((&certificate, &request.key_pem)))
            .expect("a usable client identity");
        crate::tls::verify_client_certificate(ca.pem(), &certificate).expect("chains to the CA");
        // Not to another CA, and a client certificate does not serve.
        let error = crate::tls::verify_client_certificate(test_ca().pem(), &certificate)
            .expect_err("another CA");
        assert!(matches!(error, PkiError::Untrusted { .. }), "{error}");
        let error = crate::tls::verify_serving_certificate(ca.pem(), &certificate, "node-a")
            .expect_err("not for serving");
        assert!(matches!(error, PkiError::Untrusted { .. }), "{error}");
    }

    #[test]
    fn a_request_with_a_forged_signature_is_refused() {
        let ca = test_ca();
        let request = new_node_request("node-a").expect("request");
        let mut request_der = rustls::pki_types::CertificateSigningRequestDer::from_pem_slice(
            request.request_pem.as_bytes(),
        )
        .expect("der")
        .as_ref()
        .to_vec();
        // The signature is the last element: flipping its last byte breaks it and nothing else.
        if let Some(last) = request_der.last_mut() {
            *last ^= 0x01;
        }
        let forged = pem_text("CERTIFICATE REQUEST", &request_der);
        let error = ca.sign_node_client(&forged, "node-a").expect_err("refused");
        assert!(
            matches!(error, PkiError::Request { what: "client", .. }),
            "{error}"
        );
        // A request signed by another key than the one it carries is forged as well.
        let other = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let swapped = swap_public_key(&request_der, &other);
        let error = ca
            .sign_node_serving(&pem_text("CERTIFICATE REQUEST", &swapped), "node-a", &[])
            .expect_err("refused");
        assert!(
            matches!(
                error,
                PkiError::Request {
                    what: "serving",
                    ..
                }
            ),
            "{error}"
        );
        assert!(ca.sign_node_client("garbage", "node-a").is_err());
    }

    fn pem_text(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .filter_map(|chunk| std::str::from_utf8(chunk).ok())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// `request_der` with its public key replaced by `other`'s (two P-256 points have the same
    /// length), keeping the original signature.
    fn swap_public_key(request_der: &[u8], other: &KeyPair) -> Vec<u8> {
        // The SubjectPublicKeyInfo's BIT STRING: tag, length 66, no unused bits, then the
        // uncompressed point (0x04 and 64 bytes), which is what `public_key_raw` gives.
        const POINT_START: [u8; 4] = [0x03, 0x42, 0x00, 0x04];
        let raw = other.public_key_raw();
        let offset = request_der
            .windows(POINT_START.len())
            .position(|window| window == POINT_START)
            .expect("a P-256 public key in the request")
            + 3;
        let mut out = request_der.to_vec();
        out[offset..offset + raw.len()].copy_from_slice(raw);
        out
    }
}
