//! `/healthz`, `/livez` and `/readyz`, answered as kube-apiserver does: `ok` in plain text, or a
//! 500 naming the failed check.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::ApiState;

pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/healthz", get(ready))
        .route("/readyz", get(ready))
}

/// Ready while serving and while the store answers.
async fn ready(State(state): State<ApiState>) -> (StatusCode, String) {
    if !state.is_serving() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "[-]shutdown failed: reason withheld\nreadyz check failed".into(),
        );
    }
    match state.store.current_revision().await {
        Ok(_) => (StatusCode::OK, "ok".into()),
        Err(error) => {
            tracing::warn!(%error, "readiness check: store unavailable");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "[-]etcd failed: reason withheld\nreadyz check failed".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use petset_store::LocalStore;

    use super::*;

    async fn get_body(state: &ApiState, path: &str) -> (StatusCode, String) {
        let request = Request::get(path).body(Body::empty()).expect("request");
        let (status, body) =
            crate::test_cluster::answer(crate::router(state.clone()), request).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_is_ok_until_shutdown_begins() {
        let state = ApiState::new(Arc::new(LocalStore::in_memory()), None);
        assert_eq!(
            get_body(&state, "/readyz").await,
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(
            get_body(&state, "/livez").await,
            (StatusCode::OK, "ok".into())
        );
        state.begin_shutdown();
        let (status, body) = get_body(&state, "/readyz").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("shutdown failed"), "{body}");
        assert_eq!(get_body(&state, "/livez").await.0, StatusCode::OK);
    }
}
