//! Service-account tokens through the real router: a TokenRequest's token is its
//! ServiceAccount, and an expired, tampered or revoked token, or one of a deleted
//! ServiceAccount or pod, is a 401 that writes nothing.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::test_cluster::{TestCluster, answer_json, request};

/// One request through the network's router with `token` as its bearer token.
async fn with_token(
    cluster: &TestCluster,
    token: &str,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let mut request = request(method, path, "application/json", "application/json", body);
    let value = format!("Bearer {token}").parse().expect("header");
    request
        .headers_mut()
        .insert(axum::http::header::AUTHORIZATION, value);
    answer_json(crate::router(cluster.state.clone()), request).await
}

async fn create(cluster: &TestCluster, path: &str, object: Value) -> Value {
    let (status, body) = cluster.json("POST", path, object).await;
    assert_eq!(status, 201, "{path}: {body}");
    body
}

async fn token_for(cluster: &TestCluster, account: &str, spec: Value) -> (u16, Value) {
    let path = format!("/api/v1/namespaces/shop/serviceaccounts/{account}/token");
    cluster
        .json(
            "POST",
            &path,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
        )
        .await
}

async fn shop_with_account(cluster: &TestCluster, account: &str) {
    let (status, body) = cluster
        .json(
            "POST",
            "/api/v1/namespaces",
            json!({"metadata": {"name": "shop"}}),
        )
        .await;
    assert!(status == 201 || status == 409, "{body}");
    create(
        cluster,
        "/api/v1/namespaces/shop/serviceaccounts",
        json!({"metadata": {"name": account}}),
    )
    .await;
}

fn token_of(answer: &Value) -> String {
    answer["status"]["token"]
        .as_str()
        .expect("a token")
        .to_string()
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json")
}

const PODS: &str = "/api/v1/namespaces/shop/pods";

#[tokio::test]
async fn a_requested_token_is_its_service_account_and_is_refused_the_pods_with_upstreams_text() {
    let cluster = TestCluster::start().await;
    shop_with_account(&cluster, "db").await;
    let (status, answer) = token_for(&cluster, "db", json!({"expirationSeconds": 1200})).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["kind"], "TokenRequest");
    assert_eq!(answer["spec"]["expirationSeconds"], 1200);
    assert_eq!(
        answer["spec"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    assert_eq!(
        answer["status"]["expirationTimestamp"],
        "2026-01-01T00:20:00Z"
    );
    let token = token_of(&answer);
    let claims = claims_of(&token);
    assert_eq!(claims["sub"], "system:serviceaccount:shop:db");
    assert_eq!(claims["kubernetes.io"]["namespace"], "shop");
    assert_eq!(claims["kubernetes.io"]["serviceaccount"]["name"], "db");
    let (status, body) = with_token(&cluster, &token, "GET", PODS, Value::Null).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["message"],
        r#"pods is forbidden: User "system:serviceaccount:shop:db" cannot list resource "pods" in API group "" in the namespace "shop""#
    );
}

#[tokio::test]
async fn a_token_request_is_checked_as_upstream_checks_it() {
    let cluster = TestCluster::start().await;
    shop_with_account(&cluster, "db").await;
    let (status, body) = token_for(&cluster, "db", json!({"expirationSeconds": 60})).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["message"],
        r#"TokenRequest.authentication.k8s.io "db" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#
    );
    let (status, body) = token_for(&cluster, "nobody", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], r#"serviceaccounts "nobody" not found"#);
    // ServiceAccount admission refuses a pod whose account does not exist.
    create(
        &cluster,
        "/api/v1/namespaces/shop/serviceaccounts",
        json!({"metadata": {"name": "web"}}),
    )
    .await;
    create(
        &cluster,
        PODS,
        json!({"metadata": {"name": "web-0"}, "spec": {"serviceAccountName": "web",
            "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let bound = json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0"}});
    let (status, body) = token_for(&cluster, "db", bound).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        r#"cannot bind token for serviceaccount "db" to pod running with different serviceaccount name."#
    );
    let secret = json!({"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s"}});
    let (status, body) = token_for(&cluster, "db", secret).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "cannot bind token to object of type v1, Kind=Secret"
    );
}

#[tokio::test]
async fn an_expired_tampered_or_foreign_token_is_a_401_that_writes_nothing() {
    let cluster = TestCluster::start().await;
    shop_with_account(&cluster, "db").await;
    let (_, answer) = token_for(&cluster, "db", json!({"expirationSeconds": 600})).await;
    let token = token_of(&answer);
    let configmap = json!({"metadata": {"name": "written"}});
    let configmaps = "/api/v1/namespaces/shop/configmaps";
    // Tampered: another subject under the same signature.
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let mut forged = claims_of(&token);
    forged["sub"] = json!("system:serviceaccount:kube-system:admin");
    parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
    let tampered = parts.join(".");
    // Foreign: signed by another cluster's key.
    let other = TestCluster::start().await;
    shop_with_account(&other, "db").await;
    let (_, foreign) = token_for(&other, "db", json!({})).await;
    for refused in [tampered.as_str(), &token_of(&foreign), "a.b.c"] {
        let (status, body) =
            with_token(&cluster, refused, "POST", configmaps, configmap.clone()).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["reason"], "Unauthorized");
    }
    cluster.advance(600);
    let (status, _) = with_token(&cluster, &token, "POST", configmaps, configmap.clone()).await;
    assert_eq!(status, 401);
    let (status, _) = cluster
        .json("GET", &format!("{configmaps}/written"), Value::Null)
        .await;
    assert_eq!(status, 404, "nothing was written");
}

#[tokio::test]
async fn a_token_stops_working_when_its_service_account_or_pod_is_gone() {
    let cluster = TestCluster::start().await;
    shop_with_account(&cluster, "db").await;
    let (_, answer) = token_for(&cluster, "db", json!({})).await;
    let account_token = token_of(&answer);
    let pod = create(
        &cluster,
        PODS,
        json!({"metadata": {"name": "db-0"}, "spec": {"serviceAccountName": "db",
            "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let bound = json!({"expirationSeconds": 3607, "boundObjectRef": {"kind": "Pod",
        "apiVersion": "v1", "name": "db-0", "uid": pod["metadata"]["uid"]}});
    let (status, answer) = token_for(&cluster, "db", bound).await;
    assert_eq!(status, 201, "{answer}");
    let pod_token = token_of(&answer);
    let claims = claims_of(&pod_token);
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "db-0");
    // A pod's 3607-second token is good for a year and says when it should have been renewed.
    assert_eq!(
        claims["exp"].as_i64().unwrap_or_default() - claims["iat"].as_i64().unwrap_or_default(),
        365 * 24 * 3600
    );
    assert_eq!(
        claims["kubernetes.io"]["warnafter"]
            .as_i64()
            .unwrap_or_default()
            - claims["iat"].as_i64().unwrap_or_default(),
        3607
    );
    let whoami = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    for token in [&account_token, &pod_token] {
        let (status, body) = with_token(&cluster, token, "GET", PODS, Value::Null).await;
        assert_eq!(status, 403, "a valid token is someone: {body}");
    }
    let (status, body) = cluster.json("POST", whoami, review.clone()).await;
    assert_eq!(
        (status, &body["status"]["userInfo"]["username"]),
        (201, &json!("system:apiserver"))
    );
    // The pod goes: its token with it, the ServiceAccount's stays.
    let (status, _) = cluster
        .json(
            "DELETE",
            &format!("{PODS}/db-0?gracePeriodSeconds=0"),
            Value::Null,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = with_token(&cluster, &pod_token, "GET", PODS, Value::Null).await;
    assert_eq!(status, 401);
    let (status, _) = with_token(&cluster, &account_token, "GET", PODS, Value::Null).await;
    assert_eq!(status, 403);
    // The ServiceAccount goes and comes back with another uid: the old token stays dead.
    let account = "/api/v1/namespaces/shop/serviceaccounts/db";
    let (status, _) = cluster.json("DELETE", account, Value::Null).await;
    assert_eq!(status, 200);
    let (status, _) = with_token(&cluster, &account_token, "GET", PODS, Value::Null).await;
    assert_eq!(status, 401);
    create(
        &cluster,
        "/api/v1/namespaces/shop/serviceaccounts",
        json!({"metadata": {"name": "db"}}),
    )
    .await;
    let (status, _) = with_token(&cluster, &account_token, "GET", PODS, Value::Null).await;
    assert_eq!(status, 401);
}
