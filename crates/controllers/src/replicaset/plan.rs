//! What a replica set's sync decides from its pods alone: how many pods to make or which to
//! delete, the slow-start batches creates go out in, and the status the pods add up to
//! (upstream's `manageReplicas`, `getPodsToDelete` with `ActivePodsWithRanks`, and
//! `calculateStatus`).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::statefulset::plan::{is_available, is_terminal, is_terminating, ready_condition};

/// At most this many pods are made or deleted by one sync (upstream's `BurstReplicas`).
pub const BURST: usize = 500;

/// Counted as a replica: neither finished nor on its way out (upstream's `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && !is_terminating(pod)
}

fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|(ready, _)| ready)
}

/// What to do about the difference between the pods there are and the replicas wanted.
#[derive(Debug, PartialEq, Eq)]
pub enum Diff {
    Create(usize),
    /// Indices into the active pods given, the first to go first.
    Delete(Vec<usize>),
    None,
}

/// The difference for `active` pods against `replicas`, capped at `BURST`.
pub fn diff<P: Borrow<Pod>>(active: &[P], replicas: i32) -> Diff {
    let wanted = usize::try_from(replicas).unwrap_or(0);
    match active.len().cmp(&wanted) {
        Ordering::Less => Diff::Create((wanted - active.len()).min(BURST)),
        Ordering::Greater => {
            let excess = (active.len() - wanted).min(BURST);
            let mut order: Vec<usize> = (0..active.len()).collect();
            order.sort_by(|a, b| deletion_order(active[*a].borrow(), active[*b].borrow()));
            order.truncate(excess);
            Diff::Delete(order)
        }
        Ordering::Equal => Diff::None,
    }
}

/// The sizes of upstream's slow-start batches for `count` creates: 1, 2, 4, … (the last what
/// is left). A batch with a failure ends the sync, so a broken template costs one create.
pub fn batches(count: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut left = count;
    let mut size = 1;
    while left > 0 {
        let now = size.min(left);
        sizes.push(now);
        left -= now;
        size *= 2;
    }
    sizes
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") => 0,
        Some("Running") => 2,
        _ => 1,
    }
}

fn ready_since(pod: &Pod) -> Option<i64> {
    ready_condition(pod)
        .filter(|(ready, _)| *ready)
        .and_then(|(_, since)| since)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|statuses| statuses.iter().map(|s| s.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

/// Which pod of two goes first when scaling down: unscheduled before scheduled, pending before
/// unknown before running, not ready before ready, ready for less time first, more restarts
/// first, newer first (upstream's `ActivePods` order).
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
    scheduled(a)
        .cmp(&scheduled(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        .then_with(|| match (ready_since(a), ready_since(b)) {
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
        })
}

/// The counts a replica set's status carries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub fully_labeled: i32,
    pub ready: i32,
    pub available: i32,
}

/// The counts of the active pods, `template_labels` being the labels a fully labeled pod has.
pub fn counts<P: Borrow<Pod>>(
    active: &[P],
    template_labels: &BTreeMap<String, String>,
    min_ready_seconds: i32,
    now: i64,
) -> Counts {
    let mut counts = Counts::default();
    for pod in active {
        let pod = pod.borrow();
        counts.replicas += 1;
        let labels = pod.metadata.labels.as_ref();
        if template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            counts.fully_labeled += 1;
        }
        if is_ready(pod) {
            counts.ready += 1;
            if is_available(pod, min_ready_seconds, now) {
                counts.available += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn pod(
        name: &str,
        node: Option<&str>,
        phase: &str,
        ready_at: Option<i64>,
        created: i64,
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                creation_timestamp: Some(Time(
                    jiff::Timestamp::from_second(created).expect("as the test set it up"),
                )),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(String::from),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready_at.map(|at| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(
                            jiff::Timestamp::from_second(at).expect("as the test set it up"),
                        )),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn slow_start_doubles_the_batches() {
        assert_eq!(batches(0), Vec::<usize>::new());
        assert_eq!(batches(1), vec![1]);
        assert_eq!(batches(10), vec![1, 2, 4, 3]);
        assert_eq!(batches(500).iter().sum::<usize>(), 500);
    }

    #[test]
    fn creates_and_deletes_are_capped_at_the_burst() {
        let none: Vec<Pod> = Vec::new();
        assert_eq!(diff(&none, 1000), Diff::Create(BURST));
        assert_eq!(diff(&none, -1), Diff::None);
        assert_eq!(diff(&none, 0), Diff::None);
    }

    #[test]
    fn unscheduled_pending_and_unready_pods_go_first_then_the_newest() {
        let pods = vec![
            pod("ready-old", Some("n"), "Running", Some(100), 10),
            pod("ready-new", Some("n"), "Running", Some(200), 20),
            pod("unscheduled", None, "Pending", None, 5),
            pod("pending", Some("n"), "Pending", None, 5),
            pod("not-ready", Some("n"), "Running", None, 5),
        ];
        let Diff::Delete(order) = diff(&pods, 0) else {
            panic!("expected deletes");
        };
        let names: Vec<&str> = order
            .iter()
            .map(|i| {
                pods[*i]
                    .metadata
                    .name
                    .as_deref()
                    .expect("as the test set it up")
            })
            .collect();
        assert_eq!(
            names,
            vec![
                "unscheduled",
                "pending",
                "not-ready",
                "ready-new",
                "ready-old"
            ]
        );
        let Diff::Delete(one) = diff(&pods, 4) else {
            panic!("expected a delete");
        };
        assert_eq!(one, vec![2]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let pods = vec![
            pod("a", Some("n"), "Running", Some(100), 1),
            pod("b", Some("n"), "Running", Some(195), 1),
            pod("c", Some("n"), "Pending", None, 1),
        ];
        let mut labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let counted = counts(&pods, &labels, 10, 200);
        assert_eq!(
            counted,
            Counts {
                replicas: 3,
                fully_labeled: 3,
                ready: 2,
                available: 1
            }
        );
        labels.insert("tier".into(), "x".into());
        assert_eq!(counts(&pods, &labels, 0, 200).fully_labeled, 0);
        assert_eq!(counts(&pods, &labels, 0, 200).available, 2);
    }
}
