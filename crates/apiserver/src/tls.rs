//! Security by default: a cluster CA and an admin token made on first start and kept in the
//! data directory, a serving certificate signed by that CA on every start, and the kubeconfig
//! that lets kubectl in with nothing else.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use petset_pki::service_account_token::SigningKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;

/// Why the security material could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a usable key or certificate: {detail}")]
    Damaged { path: PathBuf, detail: String },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("{0}")]
    Pki(#[from] petset_pki::PkiError),
    #[error("the service-account signing key: {0}")]
    ServiceAccountKey(#[from] petset_pki::service_account_token::KeyFileError),
}

/// The cluster's credentials, as loaded or made.
pub struct Credentials {
    pub ca_pem: String,
    pub admin_token: String,
    pub server_config: ServingTls,
    /// Signs and checks service-account tokens (`DIR/pki/sa.key`).
    pub service_account_key: Arc<SigningKey>,
}

/// The files of `DIR/pki` every server of a cluster must share: the CA (which signs every
/// certificate), the admin token, and the key of service-account tokens (so a token any
/// server issued is good at every other).
pub const SHARED_PKI_FILES: &[&str] = &["ca.crt", "ca.key", "admin.token", SERVICE_ACCOUNT_KEY];

/// `DIR/pki`'s service-account signing key (PKCS#8 PEM, owner-only).
pub const SERVICE_ACCOUNT_KEY: &str = "sa.key";

const CA_COMMON_NAME: &str = "petset-ca";

/// The CA's parameters; rebuilt identically on every start so that a stored CA key can sign
/// without parsing the stored certificate.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    Ok(params)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a secret file readable by its owner only, atomically.
fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    petset_pki::files::write_private(path, contents).map_err(io(path))
}

fn read_or_make(
    path: &Path,
    make: impl FnOnce() -> Result<String, TlsError>,
) -> Result<String, TlsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let text = make()?;
            write_private(path, &text)?;
            Ok(text)
        }
        Err(error) => Err(io(path)(error)),
    }
}

/// The cluster CA of `DIR/pki` (made on first start): what it signs with, and its certificate.
struct ClusterCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    cert_path: PathBuf,
}

impl ClusterCa {
    fn load_or_create(pki: &Path) -> Result<Self, TlsError> {
        std::fs::create_dir_all(pki).map_err(io(pki))?;
        let key_path = pki.join("ca.key");
        let key_pem = read_or_make(&key_path, || Ok(KeyPair::generate()?.serialize_pem()))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Damaged {
            path: key_path.clone(),
            detail: e.to_string(),
        })?;
        let cert_path = pki.join("ca.crt");
        let pem = read_or_make(&cert_path, || Ok(ca_params()?.self_signed(&key)?.pem()))?;
        Ok(Self {
            issuer: Issuer::new(ca_params()?, key),
            pem,
            cert_path,
        })
    }

    fn der(&self) -> Result<CertificateDer<'static>, TlsError> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).map_err(|e| TlsError::Damaged {
            path: self.cert_path.clone(),
            detail: e.to_string(),
        })
    }

    /// Verifies client certificates against this CA, and lets clients without one connect
    /// (the server then answers them by its own rules).
    fn optional_client_verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()?)?;
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))
    }

    /// A new key and its certificate for `common_name` (and `organization`), signed by the CA.
    fn issue(
        &self,
        names: Vec<String>,
        common_name: &str,
        organizations: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(rcgen::Certificate, KeyPair), TlsError> {
        let mut params = CertificateParams::new(names)?;
        let mut name = DistinguishedName::new();
        for organization in organizations {
            name.push(DnType::OrganizationName, *organization);
        }
        name.push(DnType::CommonName, common_name);
        params.distinguished_name = name;
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok((certificate, key))
    }
}

fn private_key(key: &KeyPair, what: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::try_from(key.serialize_der()).map_err(|detail| TlsError::Damaged {
        path: what.to_path_buf(),
        detail: detail.to_string(),
    })
}

/// Loads the CA and token from `DIR/pki`, making them on first start, and signs a serving
/// certificate for the listen address.
pub fn load_or_create(
    data_dir: &Path,
    listen: SocketAddr,
    service_ip: std::net::IpAddr,
) -> Result<Credentials, TlsError> {
    let pki = data_dir.join("pki");
    let ca = ClusterCa::load_or_create(&pki)?;
    let ca_pem = ca.pem.clone();
    let token_path = pki.join("admin.token");
    let admin_token = read_or_make(&token_path, || {
        Ok(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ))
    })?
    .trim()
    .to_string();
    let service_account_key = Arc::new(SigningKey::load_or_create(&pki.join(SERVICE_ACCOUNT_KEY))?);

    let mut names = vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        // The `kubernetes` Service's ClusterIP: pods reach the API there.
        service_ip.to_string(),
    ];
    let listen_ip = listen.ip();
    if !listen_ip.is_unspecified() && !names.contains(&listen_ip.to_string()) {
        names.push(listen_ip.to_string());
    }
    let (serving_cert, serving_key) = ca.issue(
        names,
        "kube-apiserver",
        &[],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let chain = vec![serving_cert.der().clone(), ca.der()?];
    let key = private_key(&serving_key, &pki.join("serving key"))?;
    // Nodes authenticate with client certificates of the cluster CA; kubectl with the token
    // presents none, so a certificate is verified when given but not required.
    let client_ca = ca.optional_client_verifier()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(AnyClientCertificate {
            client_ca: client_ca.clone(),
        }))
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Credentials {
        ca_pem,
        admin_token,
        server_config: ServingTls {
            config: Arc::new(config),
            client_ca,
        },
        service_account_key,
    })
}

/// The API's TLS: the server's configuration, and the cluster CA that client certificates
/// must chain to. The handshake takes any client certificate (proving its key, see
/// [`AnyClientCertificate`]); [`ServingTls::trusted`] then decides, at the TLS edge, whether
/// authentication may read it, so a certificate of another CA is a 401, as kube-apiserver
/// answers it, and not a failed handshake.
#[derive(Clone)]
pub struct ServingTls {
    config: Arc<rustls::ServerConfig>,
    client_ca: Arc<dyn ClientCertVerifier>,
}

impl ServingTls {
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// Whether `chain` (leaf first) chains to the cluster CA and is valid now for a client.
    pub fn trusted(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some((leaf, intermediates)) = chain.split_first() else {
            return false;
        };
        self.client_ca
            .verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now())
            .is_ok()
    }
}

/// Requests a client certificate and checks that the client holds its key, whoever signed
/// it (Go's `tls.RequestClientCert`, as kube-apiserver serves); whether it is trusted is
/// [`ServingTls::trusted`]'s to say.
#[derive(Debug)]
struct AnyClientCertificate {
    client_ca: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.client_ca.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.client_ca.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.client_ca.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.client_ca.supported_verify_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The cluster CA of `DIR/pki` (made on first start) as the signer of joining nodes'
/// certificates.
pub fn certificate_authority(
    data_dir: &Path,
) -> Result<petset_pki::CertificateAuthority, TlsError> {
    let pki = data_dir.join("pki");
    let ca = ClusterCa::load_or_create(&pki)?;
    let key_path = pki.join("ca.key");
    let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
    Ok(petset_pki::CertificateAuthority::from_pems(
        &ca.pem, &key_pem,
    )?)
}

/// The identity the API server presents to nodes (kubeadm's name and group for it).
pub const KUBELET_CLIENT_COMMON_NAME: &str = "kube-apiserver-kubelet-client";
const KUBELET_CLIENT_ORGANIZATION: &str = "kubeadm:cluster-admins";

/// Where the API server's client certificate for the node API is kept, as kubeadm names it:
/// `DIR/pki/apiserver-kubelet-client.crt` and `.key` (owner-only).
pub fn kubelet_client_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let pki = data_dir.join("pki");
    (
        pki.join("apiserver-kubelet-client.crt"),
        pki.join("apiserver-kubelet-client.key"),
    )
}

/// A client certificate for `common_name` signed by the cluster CA, as PEM (certificate, key).
/// The API server's own is [`write_kubelet_client`]; tests make others with it.
pub fn issue_client_certificate(
    data_dir: &Path,
    common_name: &str,
    organization: Option<&str>,
) -> Result<(String, String), TlsError> {
    let organizations: Vec<&str> = organization.into_iter().collect();
    issue_user_certificate(data_dir, common_name, &organizations)
}

/// A client certificate for user `name` in `groups` (its organizations, as upstream's x509
/// authenticator reads them) signed by the cluster CA, as PEM (certificate, key).
pub fn issue_user_certificate(
    data_dir: &Path,
    name: &str,
    groups: &[&str],
) -> Result<(String, String), TlsError> {
    let ca = ClusterCa::load_or_create(&data_dir.join("pki"))?;
    let (certificate, key) = ca.issue(
        Vec::new(),
        name,
        groups,
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    Ok((certificate.pem(), key.serialize_pem()))
}

/// A kubeconfig for `user` with its client certificate and key (PEM), for the cluster at
/// `server` whose CA is `ca_pem` (`petset kubeconfig --user`).
pub fn user_kubeconfig(
    server: &str,
    ca_pem: &str,
    user: &str,
    cert_pem: &str,
    key_pem: &str,
) -> String {
    let credential = format!(
        "    client-certificate-data: {}\n    client-key-data: {}\n",
        base64_of(cert_pem),
        base64_of(key_pem)
    );
    kubeconfig(
        server,
        ca_pem,
        &format!("{user:?}"),
        &format!("{:?}", format!("{user}@petset")),
        &credential,
    )
}

/// Signs the API server's client certificate for the node API (every start, as the serving
/// certificate) and writes it to [`kubelet_client_paths`].
pub fn write_kubelet_client(data_dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert_pem, key_pem) = issue_client_certificate(
        data_dir,
        KUBELET_CLIENT_COMMON_NAME,
        Some(KUBELET_CLIENT_ORGANIZATION),
    )?;
    let (cert_path, key_path) = kubelet_client_paths(data_dir);
    write_private(&key_path, &key_pem)?;
    write_private(&cert_path, &cert_pem)?;
    Ok((cert_path, key_path))
}

/// The node API's TLS: a serving certificate for the node's name and address signed by the
/// cluster CA (`system:node:<name>`, as a kubelet's), and client certificates verified against
/// that CA. Clients without one still connect: the node answers them 401.
pub fn kubelet_server_config(
    data_dir: &Path,
    node_name: &str,
    address: IpAddr,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let pki = data_dir.join("pki");
    let ca = ClusterCa::load_or_create(&pki)?;
    let mut names = vec![node_name.to_string(), address.to_string()];
    if !address.is_loopback() {
        names.push("127.0.0.1".to_string());
    }
    let (certificate, key) = ca.issue(
        names,
        &format!("system:node:{node_name}"),
        &["system:nodes"],
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    Ok(petset_pki::tls::node_server_config(
        &ca.pem,
        &certificate.pem(),
        &key.serialize_pem(),
    )?)
}

/// How the API server dials a node API over the network: the node's certificate must chain to
/// `ca_pem`; with `identity` (certificate and key PEM) it presents that client certificate.
pub fn kubelet_client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    Ok(petset_pki::tls::client_config(ca_pem, identity)?)
}

fn base64_of(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
}

/// A kubeconfig of one cluster (`petset`, at `server`, trusting `ca_pem`), one user and one
/// context (`namespace: default`); `credential` is the user's lines, indented under `user:`.
fn kubeconfig(server: &str, ca_pem: &str, user: &str, context: &str, credential: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: petset
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {user}
  user:
{credential}contexts:
- name: {context}
  context:
    cluster: petset
    user: {user}
    namespace: default
current-context: {context}
",
        ca = base64_of(ca_pem),
    )
}

/// The address clients should dial for a listen address (loopback for "any").
pub fn client_address(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
    } else {
        listen
    }
}

/// Writes `DIR/kubeconfig`: the cluster's CA, the server address and the admin token.
pub fn write_kubeconfig(
    data_dir: &Path,
    credentials: &Credentials,
    listen: SocketAddr,
) -> Result<PathBuf, TlsError> {
    let server = format!("https://{}", client_address(listen));
    let credential = format!("    token: {}\n", credentials.admin_token);
    let config = kubeconfig(&server, &credentials.ca_pem, "admin", "petset", &credential);
    let path = data_dir.join("kubeconfig");
    write_private(&path, &config)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    const KUBERNETES_IP: std::net::IpAddr =
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 96, 0, 1));
    use super::*;

    #[test]
    fn credentials_survive_a_restart_and_the_kubeconfig_names_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let listen: SocketAddr = "127.0.0.1:6443".parse().expect("address");
        let first = load_or_create(dir.path(), listen, KUBERNETES_IP).expect("first start");
        let second = load_or_create(dir.path(), listen, KUBERNETES_IP).expect("second start");
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(first.admin_token, second.admin_token);
        let path = write_kubeconfig(dir.path(), &second, listen).expect("kubeconfig");
        let text = std::fs::read_to_string(path).expect("readable");
        assert!(text.contains("server: https://127.0.0.1:6443"));
        assert!(text.contains(&second.admin_token));
    }

    #[test]
    fn a_damaged_key_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("pki")).expect("pki dir");
        std::fs::write(dir.path().join("pki/ca.key"), "garbage").expect("write");
        let listen: SocketAddr = "127.0.0.1:6443".parse().expect("address");
        let error = load_or_create(dir.path(), listen, KUBERNETES_IP)
            .err()
            .expect("refused");
        assert!(error.to_string().contains("ca.key"), "{error}");
    }
}
