//! What authentication and authorization add to a request: the same single-pod GETs as three
//! callers, interleaved one request each in turn so that drift (the store's cache, the
//! allocator) hits them alike:
//! - `admin`: no credential on a server without an admin token, so the admin, whom
//!   `system:masters` lets through before RBAC is asked;
//! - `rbac`: a user whose RoleBinding to a Role that may read pods the RBAC index finds, authorized as the guard
//!   does (authentication skipped, as `router_as` does for an in-process client);
//! - `sa-token`: a ServiceAccount token, verified (ES256) and its ServiceAccount looked up, then
//!   RBAC through a RoleBinding of the account.

use std::time::{Duration, Instant};

use anyhow::bail;
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use petset_apiserver::ApiState;
use petset_apiserver::auth::UserInfo;
use serde_json::json;
use tower::ServiceExt;

use super::stats::Summary;

/// The three callers' GET latencies, in the order of [`CALLERS`].
pub const CALLERS: [&str; 3] = ["admin", "rbac", "sa-token"];

pub async fn measure(
    state: &ApiState,
    app: &Router,
    namespace: &str,
    pods: usize,
    gets: usize,
) -> anyhow::Result<[Summary; 3]> {
    // A Role of its own: `view` gets its rules from the aggregation controller, which this
    // benchmark does not run.
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "bench-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    });
    let roles = format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles");
    send(app, Method::POST, &roles, Some(role.to_string()), None).await?;
    for (name, subject) in [
        (
            "bench-user",
            json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bench-user"}),
        ),
        (
            "bench-account",
            json!({"kind": "ServiceAccount", "name": "bench", "namespace": namespace}),
        ),
    ] {
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "bench-reader"},
            "subjects": [subject],
        });
        let path =
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings");
        send(app, Method::POST, &path, Some(binding.to_string()), None).await?;
    }
    let accounts = format!("/api/v1/namespaces/{namespace}/serviceaccounts");
    send(
        app,
        Method::POST,
        &accounts,
        Some(json!({"metadata": {"name": "bench"}}).to_string()),
        None,
    )
    .await?;
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}});
    let answer = send(
        app,
        Method::POST,
        &format!("{accounts}/bench/token"),
        Some(request.to_string()),
        None,
    )
    .await?;
    let token: serde_json::Value = serde_json::from_slice(&answer)?;
    let Some(token) = token["status"]["token"].as_str().map(str::to_string) else {
        bail!("the TokenRequest answered no token");
    };
    let user = UserInfo::new("bench-user", &["system:authenticated"]);
    let as_user = petset_apiserver::router_as(state.clone(), user);
    // The bindings reach the RBAC index through the watch cache; wait until they have.
    let first = format!("/api/v1/namespaces/{namespace}/pods/pod-0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(&as_user, Method::GET, &first, None, None)
        .await
        .is_err()
        || send(app, Method::GET, &first, None, Some(&token))
            .await
            .is_err()
    {
        if Instant::now() > deadline {
            bail!("the benchmark's RoleBindings never took effect");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for index in 0..gets {
        let name = format!("pod-{}", index.wrapping_mul(2_654_435_761) % pods.max(1));
        let path = format!("/api/v1/namespaces/{namespace}/pods/{name}");
        for (caller, latencies) in samples.iter_mut().enumerate() {
            let began = Instant::now();
            match caller {
                0 => send(app, Method::GET, &path, None, None).await?,
                1 => send(&as_user, Method::GET, &path, None, None).await?,
                _ => send(app, Method::GET, &path, None, Some(&token)).await?,
            };
            latencies.push(began.elapsed());
        }
    }
    let [admin, rbac, token] = samples;
    Ok([Summary::of(admin), Summary::of(rbac), Summary::of(token)])
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<String>,
    token: Option<&str>,
) -> anyhow::Result<bytes::Bytes> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("accept", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty))?;
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    if !(status == StatusCode::OK || status == StatusCode::CREATED) {
        bail!("{uri}: {status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(bytes)
}

/// Microseconds with one decimal.
pub fn us(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1e6)
}
