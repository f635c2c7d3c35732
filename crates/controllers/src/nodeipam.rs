//! Pod networks for nodes, as kube-controller-manager's node IPAM (`--allocate-node-cidrs`,
//! the range allocator): every Node without `spec.podCIDR` gets the lowest free block of the
//! cluster CIDR (a /24, `--node-cidr-mask-size`'s default), written with the Node's
//! resourceVersion as a precondition, so a Node changed meanwhile is looked at again rather
//! than given a block twice. A block is free when no Node's `spec.podCIDR` overlaps it, so
//! the Nodes themselves are the record of what is taken: a deleted Node frees its block, and
//! a restart loses nothing. Nodes that bring their own range (`petset up`'s node) keep it.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::cache::{Cache, Change};
use crate::events::Recorder;

/// The prefix length of each node's block (upstream's default for IPv4).
pub const NODE_MASK: u8 = 24;

/// An IPv4 network: address and prefix length.
pub type Network = (Ipv4Addr, u8);

fn mask(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

fn overlaps(a: Network, b: Network) -> bool {
    let common = mask(a.1.min(b.1));
    u32::from(a.0) & common == u32::from(b.0) & common
}

/// A Node's `spec.podCIDR`, when it holds a well-formed IPv4 network.
pub fn parse(text: &str) -> Option<Network> {
    let (address, prefix) = text.split_once('/')?;
    let address: Ipv4Addr = address.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((Ipv4Addr::from(u32::from(address) & mask(prefix)), prefix))
}

/// The lowest block of `cluster` that overlaps none of `taken`; `None` when all are.
pub fn lowest_free(cluster: Network, taken: &[Network]) -> Option<Network> {
    let block = NODE_MASK.max(cluster.1);
    let first = u32::from(cluster.0) & mask(cluster.1);
    let count = 1u64 << (block - cluster.1);
    let step = 1u64 << (32 - u32::from(block));
    (0..count)
        .map(|index| {
            (
                Ipv4Addr::from((u64::from(first) + index * step) as u32),
                block,
            )
        })
        .find(|candidate| !taken.iter().any(|t| overlaps(*candidate, *t)))
}

/// What the allocator does for one pass over the Nodes: each Node without a range, by name,
/// with the block it gets (those that get none are left out: the cluster CIDR is full).
/// `given` are the blocks this allocator wrote that its cache may not show yet: they are taken
/// too (as upstream's allocator keeps its own record of the blocks it gave), or a Node seen
/// before another's allocation reached the cache would get the same block.
pub fn assignments(
    cluster: Network,
    nodes: &[Arc<Node>],
    given: &[Network],
) -> (Vec<(String, Network)>, Vec<String>) {
    let mut taken: Vec<Network> = nodes
        .iter()
        .filter_map(|node| node.spec.as_ref()?.pod_cidr.as_deref())
        .filter_map(parse)
        .chain(given.iter().copied())
        .collect();
    let mut waiting: BTreeSet<String> = BTreeSet::new();
    for node in nodes {
        let has_range = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .is_some_and(|c| !c.is_empty());
        if !has_range && node.metadata.deletion_timestamp.is_none() {
            waiting.insert(node.name_any());
        }
    }
    let mut given = Vec::new();
    let mut full = Vec::new();
    for name in waiting {
        match lowest_free(cluster, &taken) {
            Some(block) => {
                taken.push(block);
                given.push((name, block));
            }
            None => full.push(name),
        }
    }
    (given, full)
}

/// Gives every Node without a pod range one from `cluster`, until the task is aborted.
pub async fn run(client: Client, cluster: Network) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut helpers = tokio::task::JoinSet::new();
    let notify = wake.clone();
    let nodes: Cache<Node> = Cache::follow(
        &mut helpers,
        Api::all(client.clone()),
        watcher::Config::default(),
        move |change| {
            if matches!(change, Change::Applied(_) | Change::Relisted) {
                notify.notify_one();
            }
        },
    );
    nodes.ready().await;
    let api: Api<Node> = Api::all(client.clone());
    let recorder = Recorder::new(client, "node-ipam-controller");
    // The blocks written, by Node name and uid, until the cache shows the Node with its range
    // (or without the Node: a deleted Node frees its block).
    let mut written: HashMap<(String, String), Network> = HashMap::new();
    loop {
        let current = nodes.store().state();
        written.retain(|(name, uid), _| {
            current.iter().any(|n| {
                n.name_any() == *name
                    && n.uid().as_deref() == Some(uid.as_str())
                    && n.spec
                        .as_ref()
                        .and_then(|s| s.pod_cidr.as_deref())
                        .is_none_or(str::is_empty)
            })
        });
        let pending: Vec<Network> = written.values().copied().collect();
        let (given, full) = assignments(cluster, &current, &pending);
        let mut retry = false;
        for (name, (address, prefix)) in given {
            let Some(node) = current.iter().find(|n| n.name_any() == name) else {
                continue;
            };
            let block = format!("{address}/{prefix}");
            let patch = json!({
                "metadata": {"resourceVersion": node.resource_version()},
                "spec": {"podCIDR": block, "podCIDRs": [block]},
            });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {
                    written.insert(
                        (name.clone(), node.uid().unwrap_or_default()),
                        (address, prefix),
                    );
                    tracing::info!(node = %name, pod_cidr = %block, "allocated the node's pod range")
                }
                // Changed meanwhile (or gone): the next pass sees it as it is now.
                Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                    retry = true;
                }
                Err(error) => {
                    tracing::warn!(%error, node = %name, "could not write the node's pod range");
                    retry = true;
                }
            }
        }
        for name in full {
            if let Some(node) = current.iter().find(|n| n.name_any() == name) {
                recorder.record(
                    node.object_ref(&()),
                    "Normal",
                    "CIDRNotAvailable",
                    format!("Node {name} status is now: CIDRNotAvailable"),
                );
            }
        }
        if retry {
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, cidr: Option<&str>) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "spec": {"podCIDR": cidr},
            }))
            .expect("node"),
        )
    }

    fn net(text: &str) -> Network {
        parse(text).expect("network")
    }

    #[test]
    fn nodes_get_the_lowest_free_blocks_in_name_order() {
        let cluster = net("10.42.0.0/16");
        let nodes = [
            node("b", None),
            node("a", None),
            node("c", Some("10.42.0.0/24")),
        ];
        let (given, full) = assignments(cluster, &nodes, &[]);
        assert_eq!(
            given,
            vec![
                ("a".to_string(), net("10.42.1.0/24")),
                ("b".to_string(), net("10.42.2.0/24"))
            ]
        );
        assert!(full.is_empty());
    }

    /// Two Nodes that join at once: the first's block is written, but the cache still shows
    /// it without one when the second is looked at. What was written counts as taken.
    #[test]
    fn a_block_written_but_not_yet_seen_is_not_given_twice() {
        let cluster = net("10.42.0.0/16");
        let nodes = [node("first", None), node("second", None)];
        let (given, _) = assignments(cluster, &nodes[1..], &[net("10.42.0.0/24")]);
        assert_eq!(given, vec![("second".to_string(), net("10.42.1.0/24"))]);
        let (again, _) = assignments(cluster, &nodes[1..], &[]);
        assert_eq!(
            again,
            vec![("second".to_string(), net("10.42.0.0/24"))],
            "without the record, the block would be given twice"
        );
    }

    #[test]
    fn a_range_a_node_brought_itself_is_not_handed_out_again() {
        // `petset up`'s node brings a /16 that covers part of the cluster CIDR.
        let taken = [net("10.42.0.0/23")];
        assert_eq!(
            lowest_free(net("10.42.0.0/16"), &taken),
            Some(net("10.42.2.0/24"))
        );
    }

    #[test]
    fn a_full_cluster_cidr_gives_nothing() {
        let cluster = net("10.42.0.0/23");
        let nodes = [node("a", None), node("b", None), node("c", None)];
        let (given, full) = assignments(cluster, &nodes, &[]);
        assert_eq!(given.len(), 2);
        assert_eq!(full, vec!["c".to_string()]);
    }

    #[test]
    fn a_cluster_cidr_smaller_than_a_block_is_one_block() {
        assert_eq!(
            lowest_free(net("10.42.0.0/26"), &[]),
            Some(net("10.42.0.0/26"))
        );
        assert_eq!(parse("10.42.0.7/24"), Some(net("10.42.0.0/24")));
        assert_eq!(parse("bogus"), None);
        assert_eq!(parse("10.42.0.0/33"), None);
    }
}
