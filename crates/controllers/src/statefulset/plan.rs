//! The StatefulSet reconcile decisions as data: the set, its claimed pods and its two revisions
//! in; the actions of one sync and the status out. No I/O, so every rule of upstream's
//! `updateStatefulSet` (../shared/spec/statefulset.md §3, §5) is tested here.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The revision label on pods.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// Which of the set's two revisions a new pod is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    Current,
    Update,
}

/// One step of a sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the missing claims of this ordinal (a Pending pod may have lost one).
    CreateClaims { ordinal: i32 },
    /// Create the claims, then the pod, for this ordinal.
    CreatePod { ordinal: i32, revision: Revision },
    /// Delete a pod; `why` names the event reason's context.
    DeletePod { name: String, uid: String, why: Why },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Failed or Succeeded: it is replaced.
    Terminal,
    /// Outside the ordinal range (scale-down).
    Condemned,
    /// At an old revision (rolling update).
    Update,
}

/// At most this many pods are created, and at most this many condemned pods deleted, in one
/// sync (upstream's ReplicaSet `burstReplicas`); a plan cut short asks for another sync at once.
/// So a sync costs O(existing pods + BURST) whatever `replicas` says.
pub const BURST: usize = 500;

/// What a sync decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: StatefulSetStatus,
    /// `BURST` cut the plan short: sync again at once for the rest.
    pub unfinished: bool,
}

/// The parent and ordinal of a pod name `<parent>-<ordinal>` (upstream's greedy regex).
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ordinal) = name.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ordinal.parse().ok()?))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Failed" | "Succeeded")
}

/// The Ready condition's status and when it last changed.
fn ready_condition(pod: &Pod) -> Option<(bool, Option<i64>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| {
            (
                c.status == "True",
                c.last_transition_time.as_ref().map(|t| t.0.as_second()),
            )
        })
}

pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && ready_condition(pod).is_some_and(|(ready, _)| ready)
}

/// Ready for longer than `min_ready_seconds` (strictly), as `podutil.IsPodAvailable`.
pub(crate) fn is_available(pod: &Pod, min_ready_seconds: i32, now: i64) -> bool {
    if !is_running_and_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_condition(pod).and_then(|(_, since)| since) {
        Some(since) => since + i64::from(min_ready_seconds) < now,
        None => false,
    }
}

fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map(String::as_str)
        .unwrap_or_default()
}

fn name_of(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn ordinal_of(pod: &Pod) -> Option<i32> {
    parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or("")).map(|(_, ordinal)| ordinal)
}

/// Everything one sync looks at.
pub struct Observed<'a, P: Borrow<Pod> = Pod> {
    pub set: &'a StatefulSet,
    /// The pods this set owns (after adoption and release).
    pub pods: &'a [P],
    pub current_revision: &'a str,
    pub update_revision: &'a str,
    pub collision_count: i32,
    /// Unix seconds.
    pub now: i64,
}

/// The set's pods by where they stand: the replica slots that hold a pod (only those: a set
/// may ask for far more replicas than exist) and the condemned, highest ordinal first.
struct Members<'p> {
    /// Ordinals `start..end` (end exclusive, in i64: `start + replicas` may pass i32::MAX).
    start: i64,
    end: i64,
    filled: BTreeMap<i32, &'p Pod>,
    condemned: Vec<&'p Pod>,
}

impl<'p> Members<'p> {
    fn sort<P: Borrow<Pod>>(pods: &'p [P], start: i32, replicas: i32) -> Self {
        let start = i64::from(start);
        let end = start + i64::from(replicas);
        let mut filled = BTreeMap::new();
        let mut condemned = Vec::new();
        for pod in pods.iter().map(Borrow::borrow) {
            let Some(ordinal) = ordinal_of(pod) else {
                continue;
            };
            if (start..end).contains(&i64::from(ordinal)) {
                filled.insert(ordinal, pod);
            } else if ordinal >= 0 {
                condemned.push(pod);
            }
        }
        condemned.sort_by_key(|pod| std::cmp::Reverse(ordinal_of(pod).unwrap_or(-1)));
        Self {
            start,
            end,
            filled,
            condemned,
        }
    }

    /// Replica slots with no pod.
    fn missing(&self) -> i64 {
        self.end - self.start - self.filled.len() as i64
    }

    /// The pods in replica slots, lowest ordinal first.
    fn in_slots(&self) -> impl DoubleEndedIterator<Item = (i32, &'p Pod)> + '_ {
        self.filled.iter().map(|(ordinal, pod)| (*ordinal, *pod))
    }
}

/// Decides one sync.
pub fn plan<P: Borrow<Pod>>(observed: &Observed<'_, P>) -> Plan {
    let set = observed.set;
    let spec = set.spec.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let on_delete = strategy.type_.as_deref() == Some("OnDelete");
    let rolling = strategy.rolling_update.clone();
    let partition = rolling.as_ref().and_then(|r| r.partition).unwrap_or(0);
    let status_current = set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let now = observed.now;

    let members = Members::sort(observed.pods, start, replicas);
    let status = status_of(observed, &members, min_ready, replicas);
    let mut plan = Plan {
        actions: Vec::new(),
        status,
        unfinished: false,
    };
    // Foreground deletion in progress: do nothing but report.
    if set.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let unavailable = |pod: &Pod| !is_available(pod, min_ready, now) || is_terminating(pod);
    let first_unavailable: Option<String> = members
        .in_slots()
        .map(|(_, pod)| pod)
        .find(|pod| unavailable(pod))
        .or_else(|| {
            members
                .condemned
                .iter()
                .rev()
                .find(|pod| unavailable(pod))
                .copied()
        })
        .map(name_of);
    let revision_for = |ordinal: i64| {
        let below = match &rolling {
            None => members.start + i64::from(status_current),
            Some(_) => members.start + i64::from(partition),
        };
        if !on_delete && ordinal < below {
            Revision::Current
        } else {
            Revision::Update
        }
    };

    // Phase A: every replica slot, ascending. Empty slots are walked only until BURST pods
    // are planned, so a huge `replicas` costs nothing beyond the pods that exist.
    let mut creates = 0;
    let mut next = members.start;
    let ahead = members.in_slots().map(Some).chain([None]);
    for filled in ahead {
        let gap_end = filled.map_or(members.end, |(ordinal, _)| i64::from(ordinal));
        while next < gap_end {
            if creates == BURST {
                plan.unfinished = true;
                break;
            }
            // Below `end`, which is at most i32::MAX + 1.
            let Ok(ordinal) = i32::try_from(next) else {
                break;
            };
            plan.actions.push(Action::CreatePod {
                ordinal,
                revision: revision_for(next),
            });
            creates += 1;
            if monotonic {
                return plan;
            }
            next += 1;
        }
        let Some((ordinal, pod)) = filled else {
            break;
        };
        next = i64::from(ordinal) + 1;
        if is_terminal(pod) {
            if !is_terminating(pod) {
                plan.actions.push(Action::DeletePod {
                    name: name_of(pod),
                    uid: uid_of(pod),
                    why: Why::Terminal,
                });
            }
            if monotonic {
                return plan;
            }
            continue;
        }
        if phase(pod) == "Pending" {
            plan.actions.push(Action::CreateClaims { ordinal });
        }
        if monotonic && (is_terminating(pod) || !is_available(pod, min_ready, now)) {
            return plan;
        }
    }

    // Phase B: condemned pods, highest ordinal first.
    let mut deletes = 0;
    for pod in &members.condemned {
        if is_terminating(pod) {
            if monotonic {
                return plan;
            }
            continue;
        }
        if monotonic
            && !is_available(pod, min_ready, now)
            && first_unavailable.as_deref() != Some(name_of(pod).as_str())
        {
            return plan;
        }
        if deletes == BURST {
            plan.unfinished = true;
            break;
        }
        plan.actions.push(Action::DeletePod {
            name: name_of(pod),
            uid: uid_of(pod),
            why: Why::Condemned,
        });
        deletes += 1;
        if monotonic {
            return plan;
        }
    }

    // Phase C: rolling update, highest ordinal first, one pod at a time.
    if on_delete {
        return plan;
    }
    let update_min = members.start
        + if rolling.is_some() {
            i64::from(partition.max(0))
        } else {
            0
        };
    if let Some(max_unavailable) = rolling.as_ref().and_then(|r| r.max_unavailable.as_ref()) {
        let budget = scaled(max_unavailable, replicas);
        budgeted_update(
            &mut plan,
            &members,
            update_min,
            budget,
            monotonic,
            observed,
            &unavailable,
        );
        return plan;
    }
    // Descends only through filled slots: the first empty one ends the update.
    let mut ordinal = members.end - 1;
    while ordinal >= update_min {
        let Some(pod) = i32::try_from(ordinal)
            .ok()
            .and_then(|o| members.filled.get(&o))
        else {
            return plan;
        };
        if revision_of(pod) != observed.update_revision && !is_terminating(pod) {
            plan.actions.push(Action::DeletePod {
                name: name_of(pod),
                uid: uid_of(pod),
                why: Why::Update,
            });
            if let Some(current) = plan.status.current_replicas.as_mut() {
                *current = (*current - 1).max(0);
            }
            return plan;
        }
        if unavailable(pod) {
            return plan;
        }
        ordinal -= 1;
    }
    plan
}

/// `maxUnavailable` against the replica count: a percentage rounds down (as upstream's code
/// does, whatever its API comment says), and the result is at least 1.
fn scaled(value: &IntOrString, replicas: i32) -> i32 {
    let raw = match value {
        IntOrString::Int(number) => *number,
        IntOrString::String(text) => text
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map(|percent| {
                let count = percent.saturating_mul(i64::from(replicas)) / 100;
                i32::try_from(count).unwrap_or(if count < 0 { 0 } else { i32::MAX })
            })
            .unwrap_or(1),
    };
    raw.max(1)
}

/// A rolling update with `maxUnavailable` (upstream's MaxUnavailableStatefulSet path, with the
/// 1.37 fix for Parallel): stale pods that are already unavailable are replaced without
/// spending the budget (Parallel only); then, while fewer than `budget` replicas are
/// unavailable, healthy stale pods go, highest ordinal first.
fn budgeted_update<P: Borrow<Pod>>(
    plan: &mut Plan,
    members: &Members<'_>,
    update_min: i64,
    budget: i32,
    monotonic: bool,
    observed: &Observed<'_, P>,
    unavailable: &dyn Fn(&Pod) -> bool,
) {
    let stale = |pod: &Pod| revision_of(pod) != observed.update_revision && !is_terminating(pod);
    let mut down = members.missing()
        + members
            .in_slots()
            .filter(|(_, pod)| unavailable(pod))
            .count() as i64;
    let candidates: Vec<&Pod> = members
        .in_slots()
        .rev()
        .filter(|(ordinal, _)| i64::from(*ordinal) >= update_min)
        .map(|(_, pod)| pod)
        .filter(|pod| stale(pod))
        .collect();
    let delete = |pod: &Pod, plan: &mut Plan| {
        plan.actions.push(Action::DeletePod {
            name: name_of(pod),
            uid: uid_of(pod),
            why: Why::Update,
        });
        if let Some(current) = plan.status.current_replicas.as_mut() {
            *current = (*current - 1).max(0);
        }
    };
    if !monotonic {
        for pod in candidates.iter().filter(|pod| unavailable(pod)) {
            delete(pod, plan);
        }
    }
    for pod in candidates
        .iter()
        .filter(|pod| monotonic || !unavailable(pod))
    {
        if down >= i64::from(budget) {
            return;
        }
        if !unavailable(pod) {
            down += 1;
        }
        delete(pod, plan);
    }
}

/// Upstream's status counts, with the completion rule applied. Counted from the pods that
/// exist, so the cost does not depend on `replicas`.
fn status_of<P: Borrow<Pod>>(
    observed: &Observed<'_, P>,
    members: &Members<'_>,
    min_ready: i32,
    replicas: i32,
) -> StatefulSetStatus {
    let mut status = StatefulSetStatus {
        observed_generation: observed.set.metadata.generation,
        current_revision: Some(observed.current_revision.to_string()),
        update_revision: Some(observed.update_revision.to_string()),
        collision_count: Some(observed.collision_count),
        ..StatefulSetStatus::default()
    };
    let (mut count, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    let pods = members
        .in_slots()
        .map(|(_, pod)| pod)
        .chain(members.condemned.iter().copied());
    for pod in pods {
        if phase(pod).is_empty() {
            continue;
        }
        count += 1;
        if is_running_and_ready(pod) {
            ready += 1;
            if is_available(pod, min_ready, observed.now) {
                available += 1;
            }
        }
        if !is_terminating(pod) {
            let revision = revision_of(pod);
            if revision == observed.current_revision {
                current += 1;
            }
            if revision == observed.update_revision {
                updated += 1;
            }
        }
    }
    status.replicas = count;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(current);
    status.updated_replicas = Some(updated);
    if updated == replicas && ready == replicas && count == replicas {
        status.current_replicas = Some(updated);
        status.current_revision = Some(observed.update_revision.to_string());
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(extra: serde_json::Value) -> StatefulSet {
        let mut spec = json!({"replicas": 3, "serviceName": "nginx", "selector": {"matchLabels": {"app": "nginx"}},
            "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
            "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": []}}});
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({"metadata": {"name": "web", "generation": 1}, "spec": spec}))
            .expect("a set")
    }

    fn pod(ordinal: i32, revision: &str, state: &str) -> Pod {
        let (phase, ready) = match state {
            "ready" => ("Running", "True"),
            "running" => ("Running", "False"),
            "pending" => ("Pending", "False"),
            "failed" => ("Failed", "False"),
            _ => ("", "False"),
        };
        let mut pod = json!({"metadata": {"name": format!("web-{ordinal}"), "uid": format!("uid-{ordinal}"),
            "labels": {"app": "nginx", REVISION_LABEL: revision}},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]}});
        if state == "terminating" {
            pod["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            pod["status"] =
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        }
        serde_json::from_value(pod).expect("a pod")
    }

    fn run(set: &StatefulSet, pods: &[Pod], current: &str, update: &str) -> Plan {
        plan(&Observed {
            set,
            pods,
            current_revision: current,
            update_revision: update,
            collision_count: 0,
            now: 1_000_000,
        })
    }

    #[test]
    fn ordered_ready_creates_one_pod_at_a_time_after_its_predecessor_is_ready() {
        let s = set(json!({}));
        assert_eq!(
            run(&s, &[], "r1", "r1").actions,
            vec![Action::CreatePod {
                ordinal: 0,
                revision: Revision::Update
            }]
        );
        assert_eq!(
            run(&s, &[pod(0, "r1", "running")], "r1", "r1").actions,
            vec![]
        );
        assert_eq!(
            run(&s, &[pod(0, "r1", "ready")], "r1", "r1").actions,
            vec![Action::CreatePod {
                ordinal: 1,
                revision: Revision::Update
            }]
        );
    }

    #[test]
    fn a_missing_lower_ordinal_is_recreated_even_while_a_higher_one_is_unhealthy() {
        let s = set(json!({}));
        let plan = run(
            &s,
            &[pod(1, "r1", "running"), pod(2, "r1", "ready")],
            "r1",
            "r1",
        );
        assert_eq!(
            plan.actions,
            vec![Action::CreatePod {
                ordinal: 0,
                revision: Revision::Update
            }]
        );
    }

    #[test]
    fn parallel_creates_every_missing_pod_at_once() {
        let s = set(json!({"podManagementPolicy": "Parallel"}));
        let plan = run(&s, &[pod(1, "r1", "running")], "r1", "r1");
        assert_eq!(
            plan.actions,
            vec![
                Action::CreatePod {
                    ordinal: 0,
                    revision: Revision::Update
                },
                Action::CreatePod {
                    ordinal: 2,
                    revision: Revision::Update
                },
            ]
        );
    }

    #[test]
    fn scale_down_deletes_the_highest_ordinal_first_one_at_a_time() {
        let s = set(json!({"replicas": 1}));
        let pods = [
            pod(0, "r1", "ready"),
            pod(1, "r1", "ready"),
            pod(2, "r1", "ready"),
        ];
        let plan = run(&s, &pods, "r1", "r1");
        assert_eq!(
            plan.actions,
            vec![Action::DeletePod {
                name: "web-2".into(),
                uid: "uid-2".into(),
                why: Why::Condemned
            }]
        );
        // While web-2 terminates, web-1 waits.
        let pods = [
            pod(0, "r1", "ready"),
            pod(1, "r1", "ready"),
            pod(2, "r1", "terminating"),
        ];
        assert_eq!(run(&s, &pods, "r1", "r1").actions, vec![]);
    }

    #[test]
    fn an_unhealthy_condemned_pod_goes_only_when_it_is_the_first_unavailable() {
        let s = set(json!({"replicas": 0}));
        let pods = [
            pod(0, "r1", "running"),
            pod(1, "r1", "running"),
            pod(2, "r1", "running"),
        ];
        assert_eq!(run(&s, &pods, "r1", "r1").actions, vec![]);
        let s = set(json!({"replicas": 2}));
        let pods = [
            pod(0, "r1", "ready"),
            pod(1, "r1", "ready"),
            pod(2, "r1", "running"),
        ];
        assert_eq!(
            run(&s, &pods, "r1", "r1").actions,
            vec![Action::DeletePod {
                name: "web-2".into(),
                uid: "uid-2".into(),
                why: Why::Condemned
            }]
        );
    }

    #[test]
    fn rolling_update_replaces_the_highest_stale_pod_first() {
        let s = set(json!({}));
        let pods = [
            pod(0, "r1", "ready"),
            pod(1, "r1", "ready"),
            pod(2, "r1", "ready"),
        ];
        let plan = run(&s, &pods, "r1", "r2");
        assert_eq!(
            plan.actions,
            vec![Action::DeletePod {
                name: "web-2".into(),
                uid: "uid-2".into(),
                why: Why::Update
            }]
        );
        // web-2 recreated at r2 but not ready yet: wait.
        let pods = [
            pod(0, "r1", "ready"),
            pod(1, "r1", "ready"),
            pod(2, "r2", "running"),
        ];
        assert_eq!(run(&s, &pods, "r1", "r2").actions, vec![]);
        let pods = [
            pod(0, "r1", "ready"),
            pod(1, "r1", "ready"),
            pod(2, "r2", "ready"),
        ];
        assert_eq!(
            run(&s, &pods, "r1", "r2").actions,
            vec![Action::DeletePod {
                name: "web-1".into(),
                uid: "uid-1".into(),
                why: Why::Update
            }]
        );
    }

    #[test]
    fn a_partition_keeps_lower_ordinals_and_recreates_them_at_the_current_revision() {
        let s = set(
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
        );
        let pods = [
            pod(0, "r1", "ready"),
            pod(1, "r1", "ready"),
            pod(2, "r2", "ready"),
        ];
        assert_eq!(run(&s, &pods, "r1", "r2").actions, vec![]);
        let pods = [pod(0, "r1", "ready"), pod(2, "r2", "ready")];
        assert_eq!(
            run(&s, &pods, "r1", "r2").actions,
            vec![Action::CreatePod {
                ordinal: 1,
                revision: Revision::Current
            }]
        );
    }

    #[test]
    fn on_delete_never_replaces_and_recreates_at_the_update_revision() {
        let s = set(json!({"updateStrategy": {"type": "OnDelete"}}));
        let pods = [
            pod(0, "r1", "ready"),
            pod(1, "r1", "ready"),
            pod(2, "r1", "ready"),
        ];
        assert_eq!(run(&s, &pods, "r1", "r2").actions, vec![]);
        let pods = [pod(0, "r1", "ready"), pod(2, "r1", "ready")];
        assert_eq!(
            run(&s, &pods, "r1", "r2").actions,
            vec![Action::CreatePod {
                ordinal: 1,
                revision: Revision::Update
            }]
        );
    }

    #[test]
    fn failed_pods_are_deleted_to_be_replaced() {
        let s = set(json!({}));
        let pods = [pod(0, "r1", "failed")];
        assert_eq!(
            run(&s, &pods, "r1", "r1").actions,
            vec![Action::DeletePod {
                name: "web-0".into(),
                uid: "uid-0".into(),
                why: Why::Terminal
            }]
        );
    }

    #[test]
    fn status_counts_and_completes_the_rollout() {
        let s = set(json!({}));
        let pods = [
            pod(0, "r2", "ready"),
            pod(1, "r2", "ready"),
            pod(2, "r2", "ready"),
        ];
        let status = run(&s, &pods, "r1", "r2").status;
        assert_eq!(status.replicas, 3);
        assert_eq!(status.ready_replicas, Some(3));
        assert_eq!(status.updated_replicas, Some(3));
        assert_eq!(status.current_revision.as_deref(), Some("r2"));
        assert_eq!(status.current_replicas, Some(3));
        let pods = [pod(0, "r1", "ready"), pod(1, "r2", "ready")];
        let status = run(&s, &pods, "r1", "r2").status;
        assert_eq!(status.current_revision.as_deref(), Some("r1"));
        assert_eq!(
            (status.current_replicas, status.updated_replicas),
            (Some(1), Some(1))
        );
    }

    #[test]
    fn max_unavailable_replaces_several_stale_pods_at_once() {
        let s = set(
            json!({"replicas": 4, "updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"partition": 0, "maxUnavailable": 2}}}),
        );
        let pods = [
            pod(0, "r1", "ready"),
            pod(1, "r1", "ready"),
            pod(2, "r1", "ready"),
            pod(3, "r1", "ready"),
        ];
        let deleted: Vec<String> = run(&s, &pods, "r1", "r2")
            .actions
            .into_iter()
            .filter_map(|a| match a {
                Action::DeletePod { name, .. } => Some(name),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, ["web-3", "web-2"]);
        // One replica already down (Parallel gets this far with one unready): one more may go.
        let s = set(
            json!({"replicas": 4, "podManagementPolicy": "Parallel", "updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"partition": 0, "maxUnavailable": 2}}}),
        );
        let pods = [
            pod(0, "r1", "ready"),
            pod(1, "r1", "ready"),
            pod(2, "r1", "ready"),
            pod(3, "r2", "running"),
        ];
        let actions = run(&s, &pods, "r1", "r2").actions;
        assert_eq!(
            actions,
            vec![Action::DeletePod {
                name: "web-2".into(),
                uid: "uid-2".into(),
                why: Why::Update
            }]
        );
    }

    #[test]
    fn parallel_with_max_unavailable_replaces_a_broken_stale_pod_without_spending_the_budget() {
        let s = set(
            json!({"replicas": 1, "podManagementPolicy": "Parallel", "updateStrategy": {"type": "RollingUpdate",
            "rollingUpdate": {"partition": 0, "maxUnavailable": 1}}}),
        );
        let pods = [pod(0, "r1", "running")];
        assert_eq!(
            run(&s, &pods, "r1", "r2").actions,
            vec![Action::DeletePod {
                name: "web-0".into(),
                uid: "uid-0".into(),
                why: Why::Update
            }]
        );
    }

    #[test]
    fn ordinals_start_shifts_names_and_the_partition() {
        let s = set(json!({"replicas": 2, "ordinals": {"start": 5},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}}));
        assert_eq!(
            run(&s, &[], "r1", "r2").actions,
            vec![Action::CreatePod {
                ordinal: 5,
                revision: Revision::Current
            }]
        );
        let pods = [pod(5, "r1", "ready")];
        assert_eq!(
            run(&s, &pods, "r1", "r2").actions,
            vec![Action::CreatePod {
                ordinal: 6,
                revision: Revision::Update
            }]
        );
        // An ordinal below the start is condemned.
        let pods = [
            pod(4, "r2", "ready"),
            pod(5, "r1", "ready"),
            pod(6, "r2", "ready"),
        ];
        assert_eq!(
            run(&s, &pods, "r1", "r2").actions,
            vec![Action::DeletePod {
                name: "web-4".into(),
                uid: "uid-4".into(),
                why: Why::Condemned
            }]
        );
    }

    #[test]
    fn min_ready_seconds_holds_ordered_creation_until_available() {
        let s = set(json!({"minReadySeconds": 10}));
        let mut recent = pod(0, "r1", "ready");
        if let Some(conditions) = recent.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            conditions[0].last_transition_time =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::from_second(1_000_000 - 5).expect("a time"),
                ));
        }
        let plan = run(&s, std::slice::from_ref(&recent), "r1", "r1");
        assert_eq!(plan.actions, vec![]);
        assert_eq!(plan.status.available_replicas, Some(0));
        if let Some(conditions) = recent.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            conditions[0].last_transition_time =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    jiff::Timestamp::from_second(1_000_000 - 20).expect("a time"),
                ));
        }
        let plan = run(&s, std::slice::from_ref(&recent), "r1", "r1");
        assert_eq!(
            plan.actions,
            vec![Action::CreatePod {
                ordinal: 1,
                revision: Revision::Update
            }]
        );
    }

    #[test]
    fn a_set_being_deleted_in_the_foreground_does_nothing() {
        let mut s = set(json!({}));
        s.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::from_second(1_000_000).expect("a time"),
        ));
        assert_eq!(run(&s, &[], "r1", "r1").actions, vec![]);
    }

    fn creates(plan: &Plan) -> Vec<i32> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                Action::CreatePod { ordinal, .. } => Some(*ordinal),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_largest_parallel_set_plans_at_most_a_burst_of_creations() {
        let s = set(json!({"replicas": i32::MAX, "podManagementPolicy": "Parallel"}));
        let plan = run(&s, &[], "r1", "r1");
        assert_eq!(plan.actions.len(), BURST);
        assert!(plan.unfinished);
        assert_eq!(creates(&plan), (0..BURST as i32).collect::<Vec<_>>());
        assert_eq!(plan.status.replicas, 0);
    }

    #[test]
    fn a_huge_set_creates_the_next_burst_after_the_pods_it_has_and_counts_only_those() {
        let s = set(json!({"replicas": i32::MAX, "podManagementPolicy": "Parallel"}));
        let mut pods: Vec<Pod> = (0..700).map(|o| pod(o, "r1", "ready")).collect();
        pods.remove(3);
        let plan = run(&s, &pods, "r1", "r1");
        let created = creates(&plan);
        assert_eq!(created.len(), BURST);
        assert_eq!(created[0], 3, "the gap first");
        assert_eq!(created[1], 700);
        assert_eq!(created.last(), Some(&(700 + BURST as i32 - 2)));
        assert!(plan.unfinished);
        assert_eq!(plan.status.replicas, 699);
        assert_eq!(plan.status.ready_replicas, Some(699));
        // Not complete, so the revision is not rolled over.
        assert_eq!(plan.status.current_replicas, Some(699));
    }

    #[test]
    fn a_huge_ordered_set_still_creates_one_pod_and_a_huge_start_does_not_overflow() {
        let s = set(json!({"replicas": i32::MAX}));
        assert_eq!(
            run(&s, &[pod(0, "r1", "ready")], "r1", "r1").actions,
            vec![Action::CreatePod {
                ordinal: 1,
                revision: Revision::Update
            }]
        );
        let s = set(
            json!({"replicas": i32::MAX, "podManagementPolicy": "Parallel",
            "ordinals": {"start": i32::MAX - 2}}),
        );
        let plan = run(&s, &[], "r1", "r1");
        assert_eq!(creates(&plan), vec![i32::MAX - 2, i32::MAX - 1, i32::MAX]);
        assert!(!plan.unfinished);
    }

    #[test]
    fn a_parallel_scale_down_deletes_at_most_a_burst_highest_first() {
        let s = set(json!({"replicas": 0, "podManagementPolicy": "Parallel"}));
        let pods: Vec<Pod> = (0..1200).map(|o| pod(o, "r1", "pending")).collect();
        let plan = run(&s, &pods, "r1", "r1");
        let deleted: Vec<String> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::DeletePod {
                    name,
                    why: Why::Condemned,
                    ..
                } => Some(name.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(plan.actions.len(), BURST);
        assert_eq!(deleted.first().map(String::as_str), Some("web-1199"));
        assert_eq!(deleted.last().map(String::as_str), Some("web-700"));
        assert!(plan.unfinished);
    }

    #[test]
    fn a_rolling_update_of_a_huge_set_waits_for_its_highest_ordinal() {
        let s = set(
            json!({"replicas": i32::MAX, "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0, "maxUnavailable": "50%"}}}),
        );
        let pods: Vec<Pod> = (0..3).map(|o| pod(o, "r1", "ready")).collect();
        let plan = run(&s, &pods, "r1", "r2");
        // Over half the replicas are missing, so the budget is spent: nothing is replaced.
        assert!(
            plan.actions
                .iter()
                .all(|a| matches!(a, Action::CreatePod { .. }))
        );
        let s = set(json!({"replicas": i32::MAX, "podManagementPolicy": "Parallel"}));
        let plan = run(&s, &pods, "r1", "r2");
        assert!(
            plan.actions
                .iter()
                .all(|a| matches!(a, Action::CreatePod { .. }))
        );
    }

    #[test]
    fn ordinals_parse_like_upstream() {
        assert_eq!(parent_and_ordinal("web-1-0"), Some(("web-1", 0)));
        assert_eq!(parent_and_ordinal("web-01"), Some(("web", 1)));
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-x"), None);
    }
}
