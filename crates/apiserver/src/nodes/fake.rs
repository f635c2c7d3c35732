//! Test fixtures of the nodes' side: a cluster whose node `n1` is a fake node API in process
//! and whose node `n2` no connector reaches.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{InProcess, Nodes};
use crate::test_cluster::TestCluster;

/// A cluster with the Nodes `n1`, reached through `n1_api` (a router standing for its node
/// API), and `n2`, which this API server cannot reach.
pub async fn cluster(n1_api: axum::Router) -> TestCluster {
    let mut cluster = TestCluster::start().await;
    cluster.state = cluster.state.clone().with_nodes(Nodes {
        connector: Some(Arc::new(InProcess::new("n1", n1_api))),
    });
    for node in ["n1", "n2"] {
        create(
            &cluster,
            "/api/v1/nodes",
            json!({"metadata": {"name": node}}),
        )
        .await;
    }
    cluster
}

/// Creates an object with a POST to `path`, which must succeed; the object created.
pub async fn create(cluster: &TestCluster, path: &str, body: Value) -> Value {
    let (code, created) = cluster.json("POST", path, body).await;
    assert_eq!(code, 201, "POST {path}: {created}");
    created
}

/// A pod of `default` with one container `main`, bound to `node` when one is given.
pub async fn pod(cluster: &TestCluster, name: &str, node: Option<&str>, ports: Value) -> Value {
    let body = json!({"metadata": {"name": name}, "spec": {"nodeName": node,
        "containers": [{"name": "main", "image": "busybox", "ports": ports}]}});
    create(cluster, "/api/v1/namespaces/default/pods", body).await
}
