//! Node IPAM: Nodes that register at once each get a pod range of their own.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};

use crate::support::{Running, cluster, eventually, object};

#[tokio::test]
async fn nodes_that_register_at_once_get_distinct_ranges() {
    let (_cluster, client) = cluster().await;
    let cluster_cidr = petset_controllers::nodeipam::parse("10.42.0.0/16").expect("cidr");
    let _ipam = Running::default().with(petset_controllers::nodeipam::run(
        client.clone(),
        cluster_cidr,
    ));
    let nodes: Api<Node> = Api::all(client.clone());
    // One after another, as agents joining together do. (The in-process store delivers so
    // fast that the race of a range written but not yet seen rarely shows here; the unit test
    // `a_block_written_but_not_yet_seen_is_not_given_twice` pins it.)
    for i in 0..12 {
        nodes
            .create(
                &PostParams::default(),
                &object(serde_json::json!({"metadata": {"name": format!("node-{i}")}})),
            )
            .await
            .expect("node");
        tokio::task::yield_now().await;
    }
    let ranges = eventually("every node has a range", || async {
        let listed = nodes
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let ranges: Vec<String> = listed
            .items
            .iter()
            .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
            .collect();
        if ranges.len() == 12 {
            Ok(ranges)
        } else {
            Err(format!("{} of 12 have one", ranges.len()))
        }
    })
    .await;
    let distinct: BTreeSet<&String> = ranges.iter().collect();
    assert_eq!(distinct.len(), 12, "two nodes share a range: {ranges:?}");
}
