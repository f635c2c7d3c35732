//! The join through the public router, on the in-process tier.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use petset_pki::wire::{JoinRequest, JoinResponse};
use petset_pki::{BootstrapToken, JoinToken, KeyAndRequest, new_node_request};
use serde_json::{Value, json};

use super::*;
use crate::registry::DeleteOptions;
use crate::test_cluster::{TestCluster, answer};

struct Harness {
    cluster: TestCluster,
    state: ApiState,
    token: BootstrapToken,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A cluster that lets agents join, with one bootstrap token (expiring at `expiration`).
    async fn start_with(expiration: Option<&str>) -> Self {
        let cluster = TestCluster::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = crate::tls::certificate_authority(dir.path()).expect("CA");
        let state = cluster.state.clone().with_join(JoinConfig {
            ca,
            cluster_cidr: "10.42.0.0/16".into(),
            service_cidr: "10.96.0.0/12".into(),
        });
        let token = BootstrapToken::generate().expect("token");
        let expiration = expiration.map(|text| text.parse().expect("timestamp"));
        state
            .registry()
            .create(
                tokens::system_scope().expect("scope"),
                tokens::secret(&token, expiration, "test"),
                false,
            )
            .await
            .expect("token stored");
        Self {
            cluster,
            state,
            token,
            _dir: dir,
        }
    }

    async fn start() -> Self {
        Self::start_with(None).await
    }

    async fn send(&self, authorization: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let mut request =
            Request::post(wire::JOIN_PATH).header(header::CONTENT_TYPE, "application/json");
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let request = request.body(Body::from(body.to_string())).expect("request");
        let (status, bytes) = answer(crate::router(self.state.clone()), request).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn join(&self, body: &Value) -> (StatusCode, Value) {
        self.send(Some(&format!("Bearer {}", self.token)), body)
            .await
    }

    /// Deletes the Secret of the token with `id`.
    async fn revoke(&self, id: &str) {
        self.state
            .registry()
            .delete(
                tokens::system_scope().expect("scope"),
                &tokens::secret_name(id),
                &DeleteOptions::default(),
            )
            .await
            .map(drop)
            .expect("revoked");
    }

    async fn password_secret(&self, node: &str) -> Option<Value> {
        self.state
            .registry()
            .get(
                tokens::system_scope().expect("scope"),
                &passwords::secret_name(node),
            )
            .await
            .ok()
    }
}

fn request(node: &str, password: &str) -> (Value, KeyAndRequest, KeyAndRequest) {
    let client = new_node_request(node).expect("client request");
    let serving = new_node_request(node).expect("serving request");
    let body = JoinRequest {
        node_name: node.into(),
        node_password: password.into(),
        node_ips: vec!["10.0.0.5".into()],
        client_csr: client.request_pem.clone(),
        serving_csr: serving.request_pem.clone(),
    };
    (serde_json::to_value(body).expect("json"), client, serving)
}

fn subject_of(pem: &str) -> petset_pki::Subject {
    let der = petset_pki::tls::certificates(pem, "test").expect("certificate");
    petset_pki::subject(&der[0]).expect("subject")
}

#[tokio::test]
async fn a_join_returns_certificates_naming_the_node() {
    let harness = Harness::start().await;
    let (body, client, _) = request("node-a", "secret-a");
    let (status, answer) = harness.join(&body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let answer: JoinResponse = serde_json::from_value(answer).expect("a join response");
    assert_eq!(answer.network.cluster_cidr, "10.42.0.0/16");
    assert_eq!(answer.network.service_cidr, "10.96.0.0/12");
    assert_eq!(answer.network.cluster_domain, "cluster.local");
    let expected = petset_pki::Subject {
        common_name: Some("system:node:node-a".into()),
        organizations: vec!["system:nodes".into()],
    };
    assert_eq!(subject_of(&answer.client_certificate), expected);
    assert_eq!(subject_of(&answer.serving_certificate), expected);
    // The client certificate is for the agent's own key and chains to the CA it was given.
    petset_pki::tls::client_config(
        &answer.ca_certificate,
        Some((&answer.client_certificate, &client.key_pem)),
    )
    .expect("a usable identity");
    // The name is now held by the agent's password, in an immutable Secret.
    let secret = harness.password_secret("node-a").await.expect("stored");
    assert_eq!(secret["immutable"], json!(true));
    let hash = tokens::data_text(&secret, "hash").expect("hash");
    assert!(hash.starts_with("pbkdf2-sha256$100000$"), "{hash}");
    // The same agent joins again (a restart that lost its certificates).
    let (body, _, _) = request("node-a", "secret-a");
    assert_eq!(harness.join(&body).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_missing_malformed_unknown_or_wrong_token_is_401() {
    let harness = Harness::start().await;
    let (body, _, _) = request("node-a", "secret-a");
    let wrong_secret = format!("Bearer {}.0000000000000000", harness.token.id);
    for authorization in [
        None,
        Some("Basic bm9kZTpwYXNzd29yZA=="),
        Some("Bearer not-a-token"),
        Some("Bearer zzzzzz.0123456789abcdef"),
        Some(wrong_secret.as_str()),
    ] {
        let (status, answer) = harness.send(authorization, &body).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{authorization:?}: {answer}"
        );
        assert_eq!(answer["kind"], "Status");
        assert_eq!(answer["reason"], "Unauthorized");
    }
    assert!(harness.password_secret("node-a").await.is_none());
}

#[tokio::test]
async fn an_expired_token_is_401() {
    // The test clock starts at 2026-01-01T00:00:00Z.
    let harness = Harness::start_with(Some("2026-01-01T01:00:00Z")).await;
    let (body, _, _) = request("node-a", "secret-a");
    assert_eq!(harness.join(&body).await.0, StatusCode::OK);
    harness.cluster.advance(2 * 3600);
    let (body, _, _) = request("node-b", "secret-b");
    let (status, answer) = harness.join(&body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(harness.password_secret("node-b").await.is_none());
}

#[tokio::test]
async fn a_revoked_token_is_401() {
    let harness = Harness::start().await;
    harness.revoke(&harness.token.id).await;
    let (body, _, _) = request("node-a", "secret-a");
    assert_eq!(harness.join(&body).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_stolen_node_name_is_403_and_the_owners_password_stays() {
    let harness = Harness::start().await;
    let (body, _, _) = request("node-a", "secret-a");
    assert_eq!(harness.join(&body).await.0, StatusCode::OK);
    let before = harness.password_secret("node-a").await.expect("stored");

    let (body, _, _) = request("node-a", "another-password");
    let (status, answer) = harness.join(&body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["reason"], "Forbidden");
    let message = answer["message"].as_str().expect("message");
    assert!(
        message.starts_with("Node password rejected, duplicate hostname"),
        "{message}"
    );
    assert!(message.contains("node-a.node-password.petset"), "{message}");
    assert_eq!(harness.password_secret("node-a").await, Some(before));
}

#[tokio::test]
async fn a_bad_request_is_400_and_stores_nothing() {
    let harness = Harness::start().await;
    let (good, _, _) = request("node-a", "secret-a");
    let mut forged = good.clone();
    forged["clientCSR"] = json!(good["clientCSR"].as_str().expect("pem").replace("A", "B"));
    let mut bad_name = good.clone();
    bad_name["nodeName"] = json!("Node_A");
    let mut bad_ip = good.clone();
    bad_ip["nodeIPs"] = json!(["10.0.0.300"]);
    let mut too_long = good.clone();
    too_long["nodeName"] = json!(vec!["a".repeat(60); 4].join("."));
    let mut no_password = good.clone();
    no_password["nodePassword"] = json!("");
    for body in [
        forged,
        bad_name,
        too_long,
        bad_ip,
        no_password,
        json!({"nodeName": "node-a"}),
        json!("x"),
    ] {
        let (status, answer) = harness.join(&body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["reason"], "BadRequest", "{answer}");
    }
    assert!(harness.password_secret("node-a").await.is_none());
}

#[tokio::test]
async fn the_ca_is_public_and_the_join_needs_no_admin_token() {
    let harness = Harness::start().await;
    // A server that requires the admin token everywhere else.
    let store = std::sync::Arc::new(petset_store::LocalStore::in_memory());
    let dir = tempfile::tempdir().expect("temp dir");
    let guarded = ApiState::new(store, Some("admin".into())).with_join(JoinConfig {
        ca: crate::tls::certificate_authority(dir.path()).expect("CA"),
        cluster_cidr: "10.42.0.0/16".into(),
        service_cidr: "10.96.0.0/12".into(),
    });
    let get = |path: &str| Request::get(path).body(Body::empty()).expect("request");
    let (status, pem) = answer(crate::router(guarded.clone()), get(wire::CACERTS_PATH)).await;
    assert_eq!(status, StatusCode::OK);
    let pem = String::from_utf8(pem.to_vec()).expect("text");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    let (status, _) = answer(crate::router(guarded.clone()), get("/api/v1/namespaces")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The join itself answers its own 401 (no bootstrap token), not the admin layer's.
    let (status, _) = answer(
        crate::router(guarded),
        Request::post(wire::JOIN_PATH)
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Without `with_join` there is no join.
    let plain = harness.cluster.state.clone();
    let (status, _) = answer(crate::router(plain), get(wire::CACERTS_PATH)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_initial_token_is_made_once_and_remade_when_revoked() {
    let harness = Harness::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_pem = harness
        .state
        .join
        .as_ref()
        .expect("join")
        .ca
        .pem()
        .to_string();
    let first = ensure_initial_token(&harness.state, dir.path(), &ca_pem)
        .await
        .expect("made");
    let path = dir.path().join(tokens::NODE_TOKEN_FILE);
    assert_eq!(std::fs::read_to_string(&path).expect("file").trim(), first);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let token = JoinToken::parse(&first, false).expect("a full token");
    assert_eq!(
        token.ca_hash,
        Some(petset_pki::ca_hash(&ca_pem).expect("hash"))
    );
    let stored = harness
        .state
        .registry()
        .get(
            tokens::system_scope().expect("scope"),
            &tokens::secret_name(&token.credential.id),
        )
        .await
        .expect("stored");
    assert_eq!(stored["type"], tokens::SECRET_TYPE);
    assert_eq!(tokens::data_text(&stored, "expiration"), None);
    assert_eq!(
        tokens::data_text(&stored, "description").as_deref(),
        Some("petset server's initial join token")
    );

    let again = ensure_initial_token(&harness.state, dir.path(), &ca_pem)
        .await
        .expect("kept");
    assert_eq!(again, first);

    harness.revoke(&token.credential.id).await;
    let remade = ensure_initial_token(&harness.state, dir.path(), &ca_pem)
        .await
        .expect("remade");
    assert_ne!(remade, first);
    assert_eq!(std::fs::read_to_string(&path).expect("file").trim(), remade);
}

#[test]
fn token_rows_show_ids_ttls_and_descriptions_never_secrets() {
    let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("now");
    let token = |id: &str| BootstrapToken {
        id: id.into(),
        secret: "0123456789abcdef".into(),
    };
    let at = |text: &str| Some(text.parse::<jiff::Timestamp>().expect("timestamp"));
    let secrets = [
        tokens::secret(&token("bbbbbb"), at("2026-01-02T00:00:00Z"), "for the lab"),
        tokens::secret(&token("aaaaaa"), None, ""),
        tokens::secret(&token("cccccc"), at("2025-12-31T00:00:00Z"), "old"),
        json!({"type": "Opaque", "data": {"token-id": "ZGRkZGRk"}}),
    ];
    let rows = tokens::token_rows(&secrets, now);
    let shown: Vec<(&str, &str, &str, &str)> = rows
        .iter()
        .map(|row| {
            (
                row.id.as_str(),
                row.ttl.as_str(),
                row.expires.as_str(),
                row.description.as_str(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("aaaaaa", "<forever>", "<never>", "<none>"),
            ("bbbbbb", "24h", "2026-01-02T00:00:00Z", "for the lab"),
            ("cccccc", "<invalid>", "2025-12-31T00:00:00Z", "old"),
        ]
    );
    assert!(!format!("{rows:?}").contains("0123456789abcdef"));
}
