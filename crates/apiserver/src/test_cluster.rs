//! The in-process test tier: the API's whole router over an in-memory store, driven with plain
//! HTTP requests and no sockets, so API behaviour is tested in milliseconds.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use petset_store::LocalStore;
use serde_json::Value;
use tower::ServiceExt;

use crate::ApiState;

/// An API server with the objects every cluster starts with.
pub struct TestCluster {
    pub state: ApiState,
}

impl TestCluster {
    pub async fn start() -> Self {
        let state = ApiState::new(Arc::new(LocalStore::in_memory()), None);
        state.registry().bootstrap().await.expect("bootstrap");
        Self { state }
    }

    /// One request (`body` null: no body); the status code and the answer as JSON (`null`
    /// when it is not JSON).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Value,
    ) -> (u16, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(if body.is_null() {
                Body::empty()
            } else {
                Body::from(body.to_string())
            })
            .expect("request");
        let response = crate::internal_router(self.state.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A JSON request (`POST`, `PUT`, `DELETE`, `GET`).
    pub async fn json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.send(method, path, "application/json", body).await
    }
}
