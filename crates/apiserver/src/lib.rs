//! The HTTP surface of petset: today the health endpoints, soon the Kubernetes API.
//!
//! This crate is the only writer to the store; everything else (controllers, the node agent,
//! DNS) reaches cluster state through the API it serves.

mod health;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use petset_store::Store;

/// What every request handler shares.
#[derive(Clone)]
pub struct ApiState {
    store: Arc<dyn Store>,
    serving: Arc<AtomicBool>,
}

impl ApiState {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            serving: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Marks the server as shutting down: `/readyz` fails so clients move away while in-flight
    /// requests finish.
    pub fn begin_shutdown(&self) {
        self.serving.store(false, Ordering::SeqCst);
    }

    fn is_serving(&self) -> bool {
        self.serving.load(Ordering::SeqCst)
    }
}

/// The whole HTTP API as one router.
pub fn router(state: ApiState) -> Router {
    health::routes().with_state(state)
}
