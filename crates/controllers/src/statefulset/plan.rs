//! The StatefulSet reconcile decisions as data: the set, its claimed pods and its two revisions
//! in; the actions of one sync and the status out. No I/O, so every rule of upstream's
//! `updateStatefulSet` (../shared/spec/statefulset.md §3, §5) is tested here.

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

/// What a sync decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: StatefulSetStatus,
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
fn is_available(pod: &Pod, min_ready_seconds: i32, now: i64) -> bool {
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

/// Everything one sync looks at.
pub struct Observed<'a> {
    pub set: &'a StatefulSet,
    /// The pods this set owns (after adoption and release).
    pub pods: &'a [Pod],
    pub current_revision: &'a str,
    pub update_revision: &'a str,
    pub collision_count: i32,
    /// Unix seconds.
    pub now: i64,
}

/// Decides one sync.
pub fn plan(observed: &Observed<'_>) -> Plan {
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

    let mut slots: Vec<Option<&Pod>> = vec![None; replicas as usize];
    let mut condemned: Vec<&Pod> = Vec::new();
    for pod in observed.pods {
        let Some((_, ordinal)) = parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or(""))
        else {
            continue;
        };
        if ordinal >= start && ordinal < start + replicas {
            slots[(ordinal - start) as usize] = Some(pod);
        } else if ordinal >= 0 {
            condemned.push(pod);
        }
    }
    condemned.sort_by_key(|pod| {
        std::cmp::Reverse(
            parent_and_ordinal(pod.metadata.name.as_deref().unwrap_or(""))
                .map(|(_, o)| o)
                .unwrap_or(-1),
        )
    });

    let status = status_of(observed, &slots, &condemned, min_ready, replicas);
    let mut plan = Plan {
        actions: Vec::new(),
        status,
    };
    // Foreground deletion in progress: do nothing but report.
    if set.metadata.deletion_timestamp.is_some() {
        return plan;
    }
    let unavailable = |pod: &Pod| !is_available(pod, min_ready, now) || is_terminating(pod);
    let first_unavailable: Option<String> = slots
        .iter()
        .flatten()
        .find(|pod| unavailable(pod))
        .or_else(|| condemned.iter().rev().find(|pod| unavailable(pod)))
        .map(|pod| name_of(pod));

    // Phase A: every replica slot, ascending.
    for (index, slot) in slots.iter().enumerate() {
        let ordinal = start + index as i32;
        let Some(pod) = slot else {
            let revision = if !on_delete
                && match &rolling {
                    None => ordinal < start + status_current,
                    Some(_) => ordinal < start + partition,
                } {
                Revision::Current
            } else {
                Revision::Update
            };
            plan.actions.push(Action::CreatePod { ordinal, revision });
            if monotonic {
                return plan;
            }
            continue;
        };
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
    for pod in &condemned {
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
        plan.actions.push(Action::DeletePod {
            name: name_of(pod),
            uid: uid_of(pod),
            why: Why::Condemned,
        });
        if monotonic {
            return plan;
        }
    }

    // Phase C: rolling update, highest ordinal first, one pod at a time.
    if on_delete {
        return plan;
    }
    let update_min = if rolling.is_some() {
        partition.max(0)
    } else {
        0
    };
    if let Some(max_unavailable) = rolling.as_ref().and_then(|r| r.max_unavailable.as_ref()) {
        let budget = scaled(max_unavailable, replicas);
        budgeted_update(
            &mut plan,
            &slots,
            update_min,
            budget,
            monotonic,
            observed,
            &unavailable,
        );
        return plan;
    }
    let mut index = replicas - 1;
    while index >= update_min {
        let Some(pod) = slots.get(index as usize).copied().flatten() else {
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
        index -= 1;
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
            .map(|percent| (percent * i64::from(replicas) / 100) as i32)
            .unwrap_or(1),
    };
    raw.max(1)
}

/// A rolling update with `maxUnavailable` (upstream's MaxUnavailableStatefulSet path, with the
/// 1.37 fix for Parallel): stale pods that are already unavailable are replaced without
/// spending the budget (Parallel only); then, while fewer than `budget` replicas are
/// unavailable, healthy stale pods go, highest ordinal first.
fn budgeted_update(
    plan: &mut Plan,
    slots: &[Option<&Pod>],
    update_min: i32,
    budget: i32,
    monotonic: bool,
    observed: &Observed<'_>,
    unavailable: &dyn Fn(&Pod) -> bool,
) {
    let stale = |pod: &Pod| revision_of(pod) != observed.update_revision && !is_terminating(pod);
    let mut down = slots
        .iter()
        .filter(|slot| slot.is_none_or(unavailable))
        .count() as i32;
    let candidates: Vec<&Pod> = slots
        .iter()
        .enumerate()
        .rev()
        .filter(|(index, _)| *index as i32 >= update_min)
        .filter_map(|(_, slot)| *slot)
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
        if down >= budget {
            return;
        }
        if !unavailable(pod) {
            down += 1;
        }
        delete(pod, plan);
    }
}

/// Upstream's status counts, with the completion rule applied.
fn status_of(
    observed: &Observed<'_>,
    slots: &[Option<&Pod>],
    condemned: &[&Pod],
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
    for pod in slots.iter().flatten().chain(condemned.iter()) {
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

    #[test]
    fn ordinals_parse_like_upstream() {
        assert_eq!(parent_and_ordinal("web-1-0"), Some(("web-1", 0)));
        assert_eq!(parent_and_ordinal("web-01"), Some(("web", 1)));
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-x"), None);
    }
}
