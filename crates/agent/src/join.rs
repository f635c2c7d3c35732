//! Joining a server, k3s-style, with trust from the first byte: the agent fetches the server's
//! CA from `/cacerts`, checks it against the hash its token pins, fetches it again trusting
//! only that CA (so the server's certificate chains to it), and only then sends its token,
//! its node password and requests for its own keys. What it gets back is its identity,
//! persisted in `DIR/pki` and reused on later starts (still checked against `/cacerts`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, Request, Uri, header};
use petset_pki::wire::{self, ClusterNetwork, JoinResponse};
use petset_pki::{JoinToken, PkiError};

#[cfg(test)]
#[path = "join_tests.rs"]
mod tests;

/// How long each request to the server may take (k3s's client timeout).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The agent's password file in its data directory.
const PASSWORD_FILE: &str = "node-password";

/// What a join needs.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    /// The server, `https://IP:PORT`.
    pub server: String,
    /// `K10<CA hash>::<id>.<secret>` (or `<id>.<secret>` with `allow_unpinned`).
    pub token: String,
    pub node_name: String,
    pub node_ips: Vec<IpAddr>,
    pub data_dir: PathBuf,
    /// Accepts a token without a CA pin (`--insecure-skip-ca-pin`): the first answer's CA is
    /// trusted, so that connection can be intercepted.
    pub allow_unpinned: bool,
}

/// Why an agent could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("Invalid server url, failed to parse: {0}")]
    BadUrl(String),
    #[error("only https:// URLs are supported, invalid scheme: {0}")]
    NotHttps(String),
    #[error("{0}")]
    Token(PkiError),
    #[error("cannot reach the server at {server}: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("token CA hash does not match the Cluster CA certificate hash: {token} != {server}")]
    CaMismatch { token: String, server: String },
    #[error(
        "CA cert validation failed: the server at {server} does not prove it holds the CA it serves: {detail}"
    )]
    CaNotProven { server: String, detail: String },
    #[error("the server refused the join token: {0}")]
    TokenRefused(String),
    #[error(
        "Node password rejected, duplicate hostname or contents of '{}' may not match server node-passwd entry, try enabling a unique node name with the --node-name flag",
        .0.display()
    )]
    PasswordRejected(PathBuf),
    #[error("the server refused the join ({code}): {message}")]
    Refused { code: u16, message: String },
    #[error("the server's join answer is not usable: {0}")]
    BadAnswer(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Pki(#[from] PkiError),
    #[error("building a client of {server}: {detail}")]
    Client { server: String, detail: String },
}

/// Where a joined agent keeps what makes it a node.
#[derive(Clone, Debug)]
pub struct IdentityFiles {
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub network: PathBuf,
}

impl IdentityFiles {
    /// `DIR/pki/{ca.crt,node-client.crt,node-client.key,node-serving.crt,node-serving.key}` and
    /// `DIR/pki/cluster.json`.
    pub fn in_dir(data_dir: &Path) -> Self {
        let pki = data_dir.join("pki");
        Self {
            ca: pki.join("ca.crt"),
            client_cert: pki.join("node-client.crt"),
            client_key: pki.join("node-client.key"),
            serving_cert: pki.join("node-serving.crt"),
            serving_key: pki.join("node-serving.key"),
            network: pki.join("cluster.json"),
        }
    }
}

/// A joined node (the networks the server told it about are kept in `DIR/pki/cluster.json`):
/// its certificates (client: `system:node:<name>` for the API; serving: the
/// node API's) and the cluster CA they chain to.
#[derive(Clone)]
pub struct Identity {
    pub ca_pem: String,
    pub files: IdentityFiles,
    pub network: ClusterNetwork,
    node_api_tls: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("files", &self.files)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A client of `server` as this node: mTLS with the node's client certificate, trusting
    /// only the cluster CA.
    pub fn client(&self, server: &str) -> Result<kube::Client, JoinError> {
        let mut config = pinned_config(&https_uri(server)?, &self.ca_pem, server)?;
        // No read timeout: the node's watches are quiet for as long as nothing changes, and a
        // read timeout cuts them every REQUEST_TIMEOUT (each cut puts the watcher into its
        // back-off, so a pod bound here waited up to its 30 s to be seen). The server ends
        // every watch itself (`timeoutSeconds`), and the node's own requests that must end
        // (its Lease) carry timeouts of their own.
        config.read_timeout = None;
        config.auth_info.client_certificate = Some(self.files.client_cert.display().to_string());
        config.auth_info.client_key = Some(self.files.client_key.display().to_string());
        config.default_namespace = "default".into();
        client_of(config, server)
    }

    /// The node API's TLS (for `kubelet::server::serve_tls`): the serving certificate, client
    /// certificates verified against the cluster CA.
    pub fn node_api_tls(&self) -> Arc<rustls::ServerConfig> {
        self.node_api_tls.clone()
    }

    /// The identity in `files`, when every file is there and readable; `None` when any is
    /// missing (never joined, or an interrupted join).
    fn load(files: IdentityFiles) -> Result<Option<Self>, JoinError> {
        let read = |path: &Path| match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(JoinError::Io {
                path: path.to_path_buf(),
                source,
            }),
        };
        let (Some(ca_pem), Some(_), Some(_), Some(serving_cert), Some(serving_key), Some(network)) = (
            read(&files.ca)?,
            read(&files.client_cert)?,
            read(&files.client_key)?,
            read(&files.serving_cert)?,
            read(&files.serving_key)?,
            read(&files.network)?,
        ) else {
            return Ok(None);
        };
        let network: ClusterNetwork = serde_json::from_str(&network).map_err(|error| {
            JoinError::BadAnswer(format!("{}: {error}", files.network.display()))
        })?;
        let node_api_tls =
            petset_pki::tls::node_server_config(&ca_pem, &serving_cert, &serving_key)?;
        Ok(Some(Self {
            ca_pem,
            files,
            network,
            node_api_tls,
        }))
    }
}

/// Joins the server (or, with a stored identity for the CA the server still serves, reuses
/// it) and returns this node's identity.
pub async fn join(request: JoinRequest) -> Result<Identity, JoinError> {
    let uri = https_uri(&request.server)?;
    let token =
        JoinToken::parse(&request.token, request.allow_unpinned).map_err(JoinError::Token)?;
    let ca_pem = trusted_ca(&uri, &request.server, token.ca_hash.as_deref()).await?;
    let server_hash = petset_pki::ca_hash(&ca_pem)?;
    let files = IdentityFiles::in_dir(&request.data_dir);
    if let Some(identity) = Identity::load(files.clone())?
        && petset_pki::ca_hash(&identity.ca_pem).ok().as_deref() == Some(server_hash.as_str())
    {
        tracing::info!(node = %request.node_name, "reusing this node's stored identity");
        return Ok(identity);
    }
    let password = node_password(&request.data_dir)?;
    let client_key = petset_pki::new_node_request(&request.node_name)?;
    let serving_key = petset_pki::new_node_request(&request.node_name)?;
    let body = wire::JoinRequest {
        node_name: request.node_name.clone(),
        node_password: password,
        node_ips: request.node_ips.iter().map(ToString::to_string).collect(),
        client_csr: client_key.request_pem.clone(),
        serving_csr: serving_key.request_pem.clone(),
    };
    let answer = post_join(&uri, &request, &ca_pem, &token, &body).await?;
    if petset_pki::ca_hash(&answer.ca_certificate)? != server_hash {
        return Err(JoinError::BadAnswer(
            "the join answered another CA than /cacerts serves".into(),
        ));
    }
    // Checked before anything is written: the certificates must be for these keys, chain to
    // the CA and be fit for their use.
    petset_pki::tls::client_config(
        &answer.ca_certificate,
        Some((&answer.client_certificate, &client_key.key_pem)),
    )?;
    petset_pki::tls::verify_client_certificate(&answer.ca_certificate, &answer.client_certificate)?;
    petset_pki::tls::node_server_config(
        &answer.ca_certificate,
        &answer.serving_certificate,
        &serving_key.key_pem,
    )?;
    petset_pki::tls::verify_serving_certificate(
        &answer.ca_certificate,
        &answer.serving_certificate,
        &request.node_name,
    )?;
    persist(
        &files,
        &answer.ca_certificate,
        &answer.client_certificate,
        &client_key.key_pem,
        &answer.serving_certificate,
        &serving_key.key_pem,
        &answer.network,
    )?;
    tracing::info!(node = %request.node_name, "joined the cluster");
    Identity::load(files)?
        .ok_or_else(|| JoinError::BadAnswer("the stored identity vanished".into()))
}

#[allow(clippy::too_many_arguments)]
fn persist(
    files: &IdentityFiles,
    ca: &str,
    client_cert: &str,
    client_key: &str,
    serving_cert: &str,
    serving_key: &str,
    network: &ClusterNetwork,
) -> Result<(), JoinError> {
    let network = serde_json::to_string_pretty(network).unwrap_or_default();
    if let Some(pki) = files.ca.parent() {
        std::fs::create_dir_all(pki).map_err(|source| JoinError::Io {
            path: pki.to_path_buf(),
            source,
        })?;
    }
    // The network file is written last: its presence marks a complete identity.
    for (path, contents) in [
        (&files.ca, ca),
        (&files.client_key, client_key),
        (&files.client_cert, client_cert),
        (&files.serving_key, serving_key),
        (&files.serving_cert, serving_cert),
        (&files.network, network.as_str()),
    ] {
        petset_pki::files::write_private(path, contents).map_err(|source| JoinError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

/// This agent's node password, `DIR/node-password`: made once (16 random bytes, hex) and
/// reused, so the name it joined under stays its own.
fn node_password(data_dir: &Path) -> Result<String, JoinError> {
    let path = data_dir.join(PASSWORD_FILE);
    let io = |source| JoinError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io(error)),
    }
    std::fs::create_dir_all(data_dir).map_err(|source| JoinError::Io {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let password = petset_pki::password::new_node_password()?;
    petset_pki::files::write_private(&path, &format!("{password}\n")).map_err(io)?;
    Ok(password)
}

fn https_uri(server: &str) -> Result<Uri, JoinError> {
    let uri: Uri = server
        .trim_end_matches('/')
        .parse()
        .map_err(|_| JoinError::BadUrl(server.to_string()))?;
    match uri.scheme_str() {
        Some("https") if uri.authority().is_some() => Ok(uri),
        Some("https") | None => Err(JoinError::BadUrl(server.to_string())),
        Some(_) => Err(JoinError::NotHttps(server.to_string())),
    }
}

/// The server's CA, once it hashes to `pin` (unpinned: whatever it is) and the server has
/// proven its certificate chains to it.
async fn trusted_ca(uri: &Uri, server: &str, pin: Option<&str>) -> Result<String, JoinError> {
    let mut unverified = kube::Config::new(uri.clone());
    unverified.accept_invalid_certs = true;
    with_timeouts(&mut unverified);
    let offered = get_cacerts(client_of(unverified, server)?, server).await?;
    let offered_hash = petset_pki::ca_hash(&offered)
        .map_err(|error| JoinError::BadAnswer(format!("/cacerts: {error}")))?;
    match pin {
        Some(pin) if pin != offered_hash => {
            return Err(JoinError::CaMismatch {
                token: pin.to_string(),
                server: offered_hash,
            });
        }
        Some(_) => {}
        // The token's parser has warned already; this names what was trusted.
        None => tracing::info!(
            server,
            ca_hash = %offered_hash,
            "trusting the CA the server offered (the token pins none)"
        ),
    }
    // The same request again, trusting only what was offered: the server must hold it.
    let proven = get_cacerts(
        client_of(pinned_config(uri, &offered, server)?, server)?,
        server,
    )
    .await
    .map_err(|error| JoinError::CaNotProven {
        server: server.to_string(),
        detail: error.to_string(),
    })?;
    if petset_pki::ca_hash(&proven).ok().as_deref() != Some(offered_hash.as_str()) {
        return Err(JoinError::CaNotProven {
            server: server.to_string(),
            detail: "it served another CA the second time".into(),
        });
    }
    Ok(offered)
}

async fn get_cacerts(client: kube::Client, server: &str) -> Result<String, JoinError> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(wire::CACERTS_PATH)
        .body(Vec::new())
        .map_err(|error| JoinError::BadUrl(format!("{server}: {error}")))?;
    match tokio::time::timeout(REQUEST_TIMEOUT, client.request_text(request)).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(kube::Error::Api(status))) => Err(JoinError::Refused {
            code: status.code,
            message: format!("{}: {}", wire::CACERTS_PATH, status.message),
        }),
        Ok(Err(error)) => Err(unreachable(server, &error)),
        Err(_) => Err(timed_out(server)),
    }
}

async fn post_join(
    uri: &Uri,
    request: &JoinRequest,
    ca_pem: &str,
    token: &JoinToken,
    body: &wire::JoinRequest,
) -> Result<JoinResponse, JoinError> {
    let client = client_of(
        pinned_config(uri, ca_pem, &request.server)?,
        &request.server,
    )?;
    let body = serde_json::to_vec(body).map_err(|error| JoinError::BadAnswer(error.to_string()))?;
    let http = Request::builder()
        .method(Method::POST)
        .uri(wire::JOIN_PATH)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", token.credential),
        )
        .body(body)
        .map_err(|error| JoinError::BadUrl(format!("{}: {error}", request.server)))?;
    match tokio::time::timeout(REQUEST_TIMEOUT, client.request::<JoinResponse>(http)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(kube::Error::Api(status))) => Err(match status.code {
            401 => JoinError::TokenRefused(status.message),
            403 => JoinError::PasswordRejected(request.data_dir.join(PASSWORD_FILE)),
            code => JoinError::Refused {
                code,
                message: status.message,
            },
        }),
        Ok(Err(kube::Error::SerdeError(error))) => Err(JoinError::BadAnswer(error.to_string())),
        Ok(Err(error)) => Err(unreachable(&request.server, &error)),
        Err(_) => Err(timed_out(&request.server)),
    }
}

/// A kube config for `uri` that trusts only `ca_pem`.
fn pinned_config(uri: &Uri, ca_pem: &str, server: &str) -> Result<kube::Config, JoinError> {
    let roots =
        petset_pki::tls::certificates(ca_pem, "cluster CA").map_err(|error| JoinError::Client {
            server: server.to_string(),
            detail: error.to_string(),
        })?;
    let mut config = kube::Config::new(uri.clone());
    config.root_cert = Some(roots.into_iter().map(|der| der.to_vec()).collect());
    with_timeouts(&mut config);
    Ok(config)
}

fn with_timeouts(config: &mut kube::Config) {
    config.connect_timeout = Some(REQUEST_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
}

fn client_of(config: kube::Config, server: &str) -> Result<kube::Client, JoinError> {
    kube::Client::try_from(config).map_err(|error| JoinError::Client {
        server: server.to_string(),
        detail: error.to_string(),
    })
}

fn unreachable(server: &str, error: &kube::Error) -> JoinError {
    // The chain of sources names the actual cause (refused, TLS, DNS).
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail = format!("{detail}: {cause}");
        source = cause.source();
    }
    JoinError::Unreachable {
        server: server.to_string(),
        detail,
    }
}

fn timed_out(server: &str) -> JoinError {
    JoinError::Unreachable {
        server: server.to_string(),
        detail: format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
    }
}
