//! The events' reasons and messages: what `kubectl describe` and `kubectl get events` show of
//! a failover, worded so that a reader who sees only one of them knows what happened and why.

use super::claims::LocalClaim;
use super::decisions::{FENCED_TAINT, Loss, ON_NODE_LOSS_ANNOTATION, RECREATE_CLAIM};

/// On the Node, once per loss: it is lost, fenced and tainted.
pub const NODE_LOST: &str = "NodeLostFenced";
/// On the Node, once it renews its Lease again after a loss (or no longer says it is fenced).
pub const NODE_RETURNED: &str = "NodeReturned";
/// On the Node: its fence annotation cannot be read, so it is treated as unfenced.
pub const INVALID_DEADLINE: &str = "InvalidFenceDeadline";
/// On the pod and its StatefulSet: the pod is deleted at once to be made again elsewhere.
pub const FAILOVER: &str = "NodeLostFailover";
/// On a claim (and a pod made again whose claim it is): replaced by an empty one.
pub const CLAIM_REPLACED: &str = "NodeLostClaimReplaced";
/// On the pod and its StatefulSet: the pod waits, its data is on the lost node.
pub const WAITING: &str = "NodeLostWaitingForVolume";

fn seconds(duration: std::time::Duration) -> u64 {
    duration.as_secs()
}

fn what_it_did(loss: &Loss) -> String {
    format!(
        "stopped renewing its Lease {}s ago and fenced itself after its {}s deadline",
        seconds(loss.silent_for),
        seconds(loss.deadline)
    )
}

/// "Node X stopped renewing …": a sentence's start.
fn node_sentence(loss: &Loss) -> String {
    format!("Node {} {}", loss.node, what_it_did(loss))
}

/// "node X, which stopped renewing …,": inside a sentence.
fn node_which(loss: &Loss) -> String {
    format!("node {}, which {},", loss.node, what_it_did(loss))
}

/// "claim a" or "claims a, b".
fn claims_named(claims: &[LocalClaim]) -> String {
    let names: Vec<&str> = claims.iter().map(|c| c.claim.as_str()).collect();
    match names.as_slice() {
        [one] => format!("claim {one}"),
        _ => format!("claims {}", names.join(", ")),
    }
}

fn is_are(claims: &[LocalClaim]) -> &'static str {
    if claims.len() == 1 { "is" } else { "are" }
}

/// Why a claim is replaced: the StatefulSet asked for it.
fn opted_in() -> String {
    format!("({ON_NODE_LOSS_ANNOTATION}={RECREATE_CLAIM})")
}

pub fn node_lost(loss: &Loss) -> String {
    format!(
        "{}: tainted {FENCED_TAINT}:NoSchedule; its StatefulSet pods are made again on other nodes (one whose claim is bound to a local volume there only if its StatefulSet asks for an empty one with {ON_NODE_LOSS_ANNOTATION}={RECREATE_CLAIM})",
        node_sentence(loss)
    )
}

pub fn node_returned(node: &str) -> String {
    format!(
        "Node {node} renewed its Lease again: untainted {FENCED_TAINT}; no more of its pods are deleted"
    )
}

pub fn node_unfenced(node: &str) -> String {
    format!(
        "Node {node} no longer carries {}: untainted {FENCED_TAINT}; its pods are not failed over",
        super::decisions::FENCE_DEADLINE_ANNOTATION
    )
}

pub fn invalid_deadline(value: &str) -> String {
    format!(
        "Annotation {}={value:?} is not a whole number of seconds above zero: the node is treated as not fenced and its pods are never failed over",
        super::decisions::FENCE_DEADLINE_ANNOTATION
    )
}

pub fn pod_deleted(loss: &Loss, set: &str) -> String {
    format!(
        "{}: deleting the pod at once so StatefulSet {set} makes it again on another node",
        node_sentence(loss)
    )
}

pub fn pod_deleted_for_set(loss: &Loss, pod: &str) -> String {
    format!(
        "Pod {pod} was on {} deleting it at once so it is made again on another node",
        node_which(loss)
    )
}

pub fn pod_and_claims_deleted(loss: &Loss, set: &str, claims: &[LocalClaim]) -> String {
    format!(
        "{}: deleting {} (local to that node) and the pod at once, so StatefulSet {set} makes it again on another node with empty volumes {}",
        node_sentence(loss),
        claims_named(claims),
        opted_in()
    )
}

pub fn pod_and_claims_deleted_for_set(loss: &Loss, pod: &str, claims: &[LocalClaim]) -> String {
    format!(
        "Pod {pod} was on {} deleting {} and the pod so it is made again on another node with empty volumes {}",
        node_which(loss),
        claims_named(claims),
        opted_in()
    )
}

pub fn claim_replaced(loss: &Loss, claim: &LocalClaim, set: &str) -> String {
    format!(
        "The claim's volume {} is local to {} deleting the claim so StatefulSet {set} replaces it with an empty one on a live node {}; the data on {} is not used again",
        claim.volume,
        node_which(loss),
        opted_in(),
        loss.node
    )
}

pub fn pending_pod_claims_replaced(loss: &Loss, set: &str, claims: &[LocalClaim]) -> String {
    format!(
        "The pod can run nowhere while {} {} bound to a local volume on {} deleting {} so StatefulSet {set} makes {} on a live node {}",
        claims_named(claims),
        is_are(claims),
        node_which(loss),
        if claims.len() == 1 { "it" } else { "them" },
        if claims.len() == 1 {
            "a new, empty one that binds"
        } else {
            "new, empty ones that bind"
        },
        opted_in()
    )
}

fn opt_in(namespace: &str, set: &str) -> String {
    format!(
        "To make it again on another node with an empty volume instead, run: kubectl annotate statefulset {set} -n {namespace} {ON_NODE_LOSS_ANNOTATION}={RECREATE_CLAIM}"
    )
}

pub fn pod_waits(loss: &Loss, namespace: &str, set: &str, claims: &[LocalClaim]) -> String {
    format!(
        "{}, but the pod waits for it: {} {} bound to a local volume there. {}",
        node_sentence(loss),
        claims_named(claims),
        is_are(claims),
        opt_in(namespace, set)
    )
}

pub fn pod_waits_for_set(
    loss: &Loss,
    namespace: &str,
    set: &str,
    pod: &str,
    claims: &[LocalClaim],
) -> String {
    format!(
        "Pod {pod} waits for {} because {} {} bound to a local volume there. {}",
        node_which(loss),
        claims_named(claims),
        is_are(claims),
        opt_in(namespace, set)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn loss() -> Loss {
        Loss {
            node: "node-a".into(),
            hostname: "node-a".into(),
            silent_for: Duration::from_millis(41_700),
            deadline: Duration::from_secs(30),
            renewed: None,
        }
    }

    fn claim(name: &str) -> LocalClaim {
        LocalClaim {
            claim: name.into(),
            uid: "c1".into(),
            volume: format!("pvc-{name}"),
            node: "node-a".into(),
        }
    }

    #[test]
    fn the_messages_say_what_happened_why_and_what_to_do() {
        assert_eq!(
            pod_deleted(&loss(), "web"),
            "Node node-a stopped renewing its Lease 41s ago and fenced itself after its 30s deadline: deleting the pod at once so StatefulSet web makes it again on another node"
        );
        assert_eq!(
            pod_deleted_for_set(&loss(), "web-0"),
            "Pod web-0 was on node node-a, which stopped renewing its Lease 41s ago and fenced itself after its 30s deadline, deleting it at once so it is made again on another node"
        );
        assert_eq!(
            pod_waits(&loss(), "db", "web", &[claim("www-web-0")]),
            "Node node-a stopped renewing its Lease 41s ago and fenced itself after its 30s deadline, but the pod waits for it: claim www-web-0 is bound to a local volume there. To make it again on another node with an empty volume instead, run: kubectl annotate statefulset web -n db petset.dev/on-node-loss=recreate-claim"
        );
        assert_eq!(
            pod_waits_for_set(
                &loss(),
                "db",
                "web",
                "web-0",
                &[claim("www-web-0"), claim("logs-web-0")]
            ),
            "Pod web-0 waits for node node-a, which stopped renewing its Lease 41s ago and fenced itself after its 30s deadline, because claims www-web-0, logs-web-0 are bound to a local volume there. To make it again on another node with an empty volume instead, run: kubectl annotate statefulset web -n db petset.dev/on-node-loss=recreate-claim"
        );
        assert_eq!(
            pod_and_claims_deleted(&loss(), "web", &[claim("www-web-0")]),
            "Node node-a stopped renewing its Lease 41s ago and fenced itself after its 30s deadline: deleting claim www-web-0 (local to that node) and the pod at once, so StatefulSet web makes it again on another node with empty volumes (petset.dev/on-node-loss=recreate-claim)"
        );
        assert_eq!(
            claim_replaced(&loss(), &claim("www-web-0"), "web"),
            "The claim's volume pvc-www-web-0 is local to node node-a, which stopped renewing its Lease 41s ago and fenced itself after its 30s deadline, deleting the claim so StatefulSet web replaces it with an empty one on a live node (petset.dev/on-node-loss=recreate-claim); the data on node-a is not used again"
        );
        assert_eq!(
            pending_pod_claims_replaced(&loss(), "web", &[claim("www-web-0")]),
            "The pod can run nowhere while claim www-web-0 is bound to a local volume on node node-a, which stopped renewing its Lease 41s ago and fenced itself after its 30s deadline, deleting it so StatefulSet web makes a new, empty one that binds on a live node (petset.dev/on-node-loss=recreate-claim)"
        );
        assert_eq!(
            node_lost(&loss()),
            "Node node-a stopped renewing its Lease 41s ago and fenced itself after its 30s deadline: tainted petset.dev/fenced:NoSchedule; its StatefulSet pods are made again on other nodes (one whose claim is bound to a local volume there only if its StatefulSet asks for an empty one with petset.dev/on-node-loss=recreate-claim)"
        );
    }
}
