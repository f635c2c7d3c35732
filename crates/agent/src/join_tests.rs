//! Joins against the real API router served over TLS on 127.0.0.1.

use std::os::unix::fs::PermissionsExt;

use petset_apiserver::join::{JoinConfig, tokens};
use petset_apiserver::registry::DeleteOptions;
use petset_apiserver::test_cluster::TestCluster;
use petset_pki::BootstrapToken;

use super::*;

/// A server that lets agents join, serving HTTPS until dropped.
struct Server {
    cluster: TestCluster,
    url: String,
    ca_pem: String,
    token: BootstrapToken,
    stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        Self::start_serving(None).await
    }

    /// With `impostor`, the server's TLS certificate is signed by a CA of that directory,
    /// not by the CA it serves at `/cacerts` (someone relaying another server's CA).
    async fn start_serving(impostor: Option<&Path>) -> Self {
        let cluster = TestCluster::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listener");
        let address = listener.local_addr().expect("address");
        let credentials = petset_apiserver::tls::load_or_create(
            impostor.unwrap_or(dir.path()),
            address,
            "10.96.0.1".parse().expect("ip"),
        )
        .expect("credentials");
        let state = cluster.state.clone().with_join(JoinConfig {
            ca: petset_apiserver::tls::certificate_authority(dir.path()).expect("CA"),
            cluster_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.96.0.0/12".into(),
        });
        let token = BootstrapToken::generate().expect("token");
        state
            .registry()
            .create(scope(), tokens::secret(&token, None, "test"), false)
            .await
            .expect("token stored");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(petset_apiserver::serve::serve_tls(
            listener,
            credentials.server_config,
            petset_apiserver::router(state),
            stopped,
            Duration::from_secs(1),
        ));
        Self {
            cluster,
            url: format!("https://{address}"),
            ca_pem: std::fs::read_to_string(dir.path().join("pki/ca.crt")).expect("CA"),
            token,
            stop,
            _dir: dir,
        }
    }

    fn full_token(&self) -> String {
        JoinToken::pinned(&self.ca_pem, self.token.clone())
            .expect("pinned")
            .to_string()
    }

    fn request(&self, node: &str, data_dir: &Path) -> JoinRequest {
        JoinRequest {
            server: self.url.clone(),
            token: self.full_token(),
            node_name: node.into(),
            node_ips: vec!["127.0.0.1".parse().expect("ip")],
            data_dir: data_dir.to_path_buf(),
            allow_unpinned: false,
        }
    }

    async fn password_secret(&self, node: &str) -> Option<serde_json::Value> {
        self.cluster
            .state
            .registry()
            .get(
                scope(),
                &petset_apiserver::join::node_password_secret_name(node),
            )
            .await
            .ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

fn scope() -> petset_apiserver::registry::Scope<'static> {
    tokens::system_scope().expect("secrets are served")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn an_agent_joins_keeps_its_identity_and_reuses_it_without_the_token() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let identity = join(server.request("node-a", dir.path()))
        .await
        .expect("joined");
    assert_eq!(identity.ca_pem, server.ca_pem);
    assert_eq!(identity.network.cluster_cidr, "10.42.0.0/16");
    let files = IdentityFiles::in_dir(dir.path());
    for key in [&files.client_key, &files.serving_key] {
        assert_eq!(mode(key), 0o600, "{}", key.display());
    }
    assert_eq!(mode(&dir.path().join("node-password")), 0o600);
    let client_cert = std::fs::read_to_string(&files.client_cert).expect("client certificate");
    let der = petset_pki::tls::certificates(&client_cert, "test").expect("certificate");
    assert_eq!(
        petset_pki::subject(&der[0]),
        Some(petset_pki::Subject {
            common_name: Some("system:node:node-a".into()),
            organizations: vec!["system:nodes".into()],
        })
    );
    // The node's client reaches the API over TLS, trusting only the cluster CA.
    identity
        .client(&server.url)
        .expect("client")
        .apiserver_version()
        .await
        .expect("the API answers the node");
    assert!(server.password_secret("node-a").await.is_some());

    // Revoking the token does not matter to a node that has joined: it does not join again.
    server
        .cluster
        .state
        .registry()
        .delete(
            scope(),
            &tokens::secret_name(&server.token.id),
            &DeleteOptions::default(),
        )
        .await
        .map(drop)
        .expect("revoked");
    let again = join(server.request("node-a", dir.path()))
        .await
        .expect("reused");
    assert_eq!(
        std::fs::read_to_string(&files.client_cert).expect("client certificate"),
        client_cert
    );
    assert_eq!(again.ca_pem, identity.ca_pem);
}

#[tokio::test]
async fn a_token_pinning_another_ca_sends_nothing() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let other = "0".repeat(64);
    let mut request = server.request("node-a", dir.path());
    request.token = format!("K10{other}::{}", server.token);
    let error = join(request).await.expect_err("refused");
    let expected = format!(
        "token CA hash does not match the Cluster CA certificate hash: {other} != {}",
        petset_pki::ca_hash(&server.ca_pem).expect("hash")
    );
    assert_eq!(error.to_string(), expected);
    // Nothing was sent and nothing was made.
    assert!(server.password_secret("node-a").await.is_none());
    assert!(!dir.path().join("node-password").exists());
    assert!(!IdentityFiles::in_dir(dir.path()).client_cert.exists());
}

#[tokio::test]
async fn a_server_whose_certificate_is_not_of_the_pinned_ca_gets_nothing() {
    let other = tempfile::tempdir().expect("temp dir");
    let server = Server::start_serving(Some(other.path())).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // The token pins the CA the server serves, but the server cannot prove it holds it.
    let error = join(server.request("node-a", dir.path()))
        .await
        .expect_err("refused");
    assert!(matches!(error, JoinError::CaNotProven { .. }), "{error}");
    assert!(server.password_secret("node-a").await.is_none());
    assert!(!dir.path().join("node-password").exists());
}

#[tokio::test]
async fn a_wrong_token_is_refused_by_the_server() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut request = server.request("node-a", dir.path());
    let wrong = BootstrapToken {
        id: server.token.id.clone(),
        secret: "0000000000000000".into(),
    };
    request.token = JoinToken::pinned(&server.ca_pem, wrong)
        .expect("pinned")
        .to_string();
    let error = join(request).await.expect_err("refused");
    assert!(matches!(error, JoinError::TokenRefused(_)), "{error}");
    assert_eq!(
        error.to_string(),
        "the server refused the join token: Unauthorized"
    );
    assert!(!IdentityFiles::in_dir(dir.path()).client_cert.exists());
}

#[tokio::test]
async fn a_second_agent_cannot_take_a_joined_nodes_name() {
    let server = Server::start().await;
    let first = tempfile::tempdir().expect("temp dir");
    join(server.request("node-a", first.path()))
        .await
        .expect("joined");
    let before = server.password_secret("node-a").await.expect("stored");

    let second = tempfile::tempdir().expect("temp dir");
    let error = join(server.request("node-a", second.path()))
        .await
        .expect_err("refused");
    let password_file = second.path().join("node-password");
    assert_eq!(
        error.to_string(),
        format!(
            "Node password rejected, duplicate hostname or contents of '{}' may not match server node-passwd entry, try enabling a unique node name with the --node-name flag",
            password_file.display()
        )
    );
    assert_eq!(server.password_secret("node-a").await, Some(before));
    assert!(!IdentityFiles::in_dir(second.path()).client_cert.exists());
}

#[tokio::test]
async fn only_https_and_pinned_tokens_are_accepted_unless_asked() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut request = server.request("node-a", dir.path());
    request.server = server.url.replace("https://", "http://");
    let error = join(request).await.expect_err("refused");
    assert_eq!(
        error.to_string(),
        format!(
            "only https:// URLs are supported, invalid scheme: {}",
            server.url.replace("https://", "http://")
        )
    );

    let mut request = server.request("node-a", dir.path());
    request.token = server.token.to_string();
    let error = join(request.clone()).await.expect_err("refused");
    assert!(
        matches!(error, JoinError::Token(PkiError::Unpinned)),
        "{error}"
    );
    request.allow_unpinned = true;
    join(request)
        .await
        .expect("joined, trusting the first answer");
}
