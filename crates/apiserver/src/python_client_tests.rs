//! What the official Python client (`pip install kubernetes`) sends, through the in-process
//! API: the requests its e2e test (crates/petset/tests/e2e/python_client.rs) found petset
//! answering differently from upstream.

use serde_json::json;

use crate::handlers::query_bool;
use crate::test_cluster::{TestCluster, answer, request};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

#[test]
fn boolean_query_parameters_read_as_upstream_reads_them() {
    for yes in ["true", "True", "TRUE", "1", "yes", ""] {
        assert!(query_bool(Some(yes)), "{yes:?}");
    }
    for no in ["false", "False", "FALSE", "0"] {
        assert!(!query_bool(Some(no)), "{no:?}");
    }
    assert!(!query_bool(None));
}

/// Python's clients put booleans in the query as `True` (`watch=True`,
/// `allowWatchBookmarks=True`): that is a watch, not a list.
#[tokio::test]
async fn watch_capital_true_is_a_watch() {
    let cluster = TestCluster::start().await;
    let (code, created) = cluster
        .json("POST", CONFIGMAPS, json!({"metadata": {"name": "a"}}))
        .await;
    assert_eq!(code, 201, "{created}");
    let path = format!(
        "{CONFIGMAPS}?watch=True&allowWatchBookmarks=True&timeoutSeconds=1&fieldSelector=metadata.name%3Da"
    );
    let (status, body) = answer(
        crate::internal_router(cluster.state.clone()),
        request(
            "GET",
            &path,
            "application/json",
            "application/json",
            serde_json::Value::Null,
        ),
    )
    .await;
    assert_eq!(status, 200);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&body)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a watch event per line"))
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "a");
}
