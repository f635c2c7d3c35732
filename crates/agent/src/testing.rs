//! Helpers of the agent's tests over the in-process API.

use std::time::Duration;

/// How long a test waits for a condition: generous, only a hang guard.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Waits (bounded by `PATIENCE`) until `check` holds.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
