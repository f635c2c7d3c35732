//! What the Job controller does about one job, decided from the job and its pods alone (pure,
//! so the rules are tested without a cluster): which finished pods are counted, which pods go
//! and which are made, the back-off, and the status with upstream's conditions.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use petset_api::json::{count, items, text};
use petset_api::kinds::job::{COMPLETION_INDEX, TRACKING_FINALIZER, has_condition};
use serde_json::{Map, Value, json};

/// Upstream's pod failure back-off: 10 s after the first failure, doubling…
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// …to at most 10 minutes (`MaxJobPodFailureBackOff`).
pub const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(600);
/// At most this many pods are made in one sync (the next sync makes the rest).
const BURST: usize = 500;

pub const BACKOFF_LIMIT_EXCEEDED: (&str, &str) = (
    "BackoffLimitExceeded",
    "Job has reached the specified backoff limit",
);
pub const DEADLINE_EXCEEDED: (&str, &str) = (
    "DeadlineExceeded",
    "Job was active longer than specified deadline",
);
pub const COMPLETIONS_REACHED: (&str, &str) = (
    "CompletionsReached",
    "Reached expected number of succeeded pods",
);

/// What the controller needs of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub uid: String,
    pub state: State,
    /// Not finished, but being deleted.
    pub terminating: bool,
    pub ready: bool,
    pub finalizer: bool,
    pub index: Option<i64>,
    pub finished_at: Option<Timestamp>,
    pub restarts: i64,
    pub created: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Active,
    Succeeded,
    Failed,
}

impl PodView {
    pub fn of(pod: &Pod) -> Self {
        let value = serde_json::to_value(pod).unwrap_or_default();
        let phase = text(&value, "/status/phase");
        let deleting = pod.metadata.deletion_timestamp.is_some();
        let state = match phase {
            "Succeeded" => State::Succeeded,
            "Failed" => State::Failed,
            // Upstream's default podReplacementPolicy (TerminatingOrFailed): a pod being
            // deleted counts as failed at once.
            _ if deleting => State::Failed,
            _ => State::Active,
        };
        let statuses = items(&value, "/status/containerStatuses");
        let finished_at = statuses
            .iter()
            .filter_map(|s| s.pointer("/state/terminated/finishedAt"))
            .filter_map(Value::as_str)
            .filter_map(|t| t.parse::<Timestamp>().ok())
            .max();
        let ready = items(&value, "/status/conditions")
            .iter()
            .any(|c| text(c, "/type") == "Ready" && text(c, "/status") == "True");
        Self {
            uid: pod.uid().unwrap_or_default(),
            state,
            terminating: deleting && !matches!(phase, "Succeeded" | "Failed"),
            ready,
            finalizer: pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER),
            index: pod
                .annotations()
                .get(COMPLETION_INDEX)
                .and_then(|i| i.parse().ok()),
            finished_at,
            restarts: statuses
                .iter()
                .chain(items(&value, "/status/initContainerStatuses"))
                .map(|s| count(s, "/restartCount"))
                .sum(),
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }
}

/// Failures since the job's last success, and when the last was seen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Backoff {
    pub failures: u32,
    pub last_failure: Option<Timestamp>,
}

impl Backoff {
    /// How long pods are held back after the failures so far (none without failures).
    pub fn delay(&self) -> Duration {
        match self.failures {
            0 => Duration::ZERO,
            n => FAILURE_BACKOFF
                .checked_mul(1u32 << (n - 1).min(20))
                .unwrap_or(MAX_FAILURE_BACKOFF)
                .min(MAX_FAILURE_BACKOFF),
        }
    }
}

pub struct Observed<'a> {
    pub job: &'a Value,
    pub pods: &'a [PodView],
    pub now: Timestamp,
    pub backoff: Backoff,
}

/// What to do.
#[derive(Debug, Default)]
pub struct Decision {
    /// The status to write before any finalizer goes, when pods newly finished.
    pub status_before_finalizers: Option<Value>,
    /// Pods (by uid) whose tracking finalizer goes.
    pub release: BTreeSet<String>,
    pub delete: BTreeSet<String>,
    /// Pods to make: their completion index (Indexed) or none.
    pub create: Vec<Option<i64>>,
    /// The status once the above is done.
    pub status: Value,
    /// Events to record once that status is written: type, reason, message.
    pub events: Vec<(&'static str, &'static str, String)>,
    pub backoff: Backoff,
    pub requeue: Option<Duration>,
    /// For a finished job with a time to live: how long it has left.
    pub ttl_left: Option<Duration>,
}

fn condition(type_: &str, status: &str, (reason, message): (&str, &str), now: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now})
}

/// Sets condition `type_` in `status` (its transition time kept when its status stays).
fn set_condition(status: &mut Value, type_: &str, value: &str, why: (&str, &str), now: &str) {
    let Some(map) = status.as_object_mut() else {
        return;
    };
    let conditions = map.entry("conditions").or_insert_with(|| json!([]));
    let Some(list) = conditions.as_array_mut() else {
        return;
    };
    match list.iter_mut().find(|c| text(c, "/type") == type_) {
        Some(existing) if text(existing, "/status") == value => {}
        Some(existing) => *existing = condition(type_, value, why, now),
        None => list.push(condition(type_, value, why, now)),
    }
}

fn uids(status: &Value, which: &str) -> BTreeSet<String> {
    items(status, &format!("/uncountedTerminatedPods/{which}"))
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// `0-2,4` from a set of indexes, as upstream writes `completedIndexes`.
pub fn format_indexes(indexes: &BTreeSet<i64>) -> String {
    let mut parts = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last = iter.next().unwrap_or(last);
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    }
    parts.join(",")
}

/// The indexes of `0-2,4`; what does not parse is left out.
pub fn parse_indexes(text: &str) -> BTreeSet<i64> {
    let mut set = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
            set.extend(a..=b.min(a.saturating_add(100_000)));
        }
    }
    set
}

fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    Duration::from_secs(u64::try_from(later.as_second() - earlier.as_second()).unwrap_or(0))
}

pub fn decide(observed: &Observed<'_>) -> Decision {
    let job = observed.job;
    let now = observed.now;
    let now_text = petset_api::time::format(now);
    let spec = job.get("spec").cloned().unwrap_or_default();
    let mut status = job.get("status").cloned().unwrap_or_else(|| json!({}));
    if !status.is_object() {
        status = json!({});
    }
    let mut decision = Decision {
        backoff: observed.backoff.clone(),
        ..Decision::default()
    };
    let indexed = text(&spec, "/completionMode") == "Indexed";
    let completions = spec.get("completions").and_then(Value::as_i64);
    let finished = has_condition(job, "Complete") || has_condition(job, "Failed");
    let deleting = job.pointer("/metadata/deletionTimestamp").is_some();

    // Finished pods still holding their finalizer are written down as uncounted first.
    let mut uncounted_succeeded = uids(&status, "succeeded");
    let mut uncounted_failed = uids(&status, "failed");
    let before = (uncounted_succeeded.clone(), uncounted_failed.clone());
    for pod in observed.pods.iter().filter(|p| p.finalizer) {
        match pod.state {
            State::Succeeded => {
                uncounted_succeeded.insert(pod.uid.clone());
            }
            State::Failed => {
                uncounted_failed.insert(pod.uid.clone());
            }
            State::Active if finished || deleting => {}
            State::Active => continue,
        }
        decision.release.insert(pod.uid.clone());
    }
    if (uncounted_succeeded.clone(), uncounted_failed.clone()) != before
        && let Some(map) = status.as_object_mut()
    {
        map.insert(
            "uncountedTerminatedPods".into(),
            json!({"succeeded": uncounted_succeeded, "failed": uncounted_failed}),
        );
        decision.status_before_finalizers = Some(status.clone());
    }

    // Once released, they are counted.
    let mut succeeded = count(&status, "/succeeded");
    let mut failed = count(&status, "/failed");
    let mut completed = parse_indexes(text(&status, "/completedIndexes"));
    let by_uid = |uid: &String| observed.pods.iter().find(|p| &p.uid == uid);
    for uid in &uncounted_succeeded {
        if indexed {
            if let Some(index) = by_uid(uid).and_then(|p| p.index)
                && completions.is_some_and(|c| index < c)
            {
                completed.insert(index);
            }
        } else {
            succeeded += 1;
        }
    }
    if indexed {
        succeeded = completed.len() as i64;
    }
    failed += uncounted_failed.len() as i64;
    let newly_failed: Vec<&PodView> = uncounted_failed.iter().filter_map(by_uid).collect();
    let last_success = uncounted_succeeded
        .iter()
        .filter_map(by_uid)
        .filter_map(|p| p.finished_at)
        .max();
    if !uncounted_succeeded.is_empty() {
        decision.backoff = Backoff::default();
    }
    for pod in &newly_failed {
        let at = pod.finished_at.unwrap_or(now);
        if last_success.is_none_or(|s| at > s) {
            decision.backoff.failures += 1;
            decision.backoff.last_failure = decision.backoff.last_failure.max(Some(at));
        }
    }
    // Pods that vanished without being seen finished still count as failures.
    let seen_failed = newly_failed.len();
    decision.backoff.failures += (uncounted_failed.len() - seen_failed) as u32;
    if uncounted_failed.len() > seen_failed {
        decision.backoff.last_failure = decision.backoff.last_failure.max(Some(now));
    }

    let active: Vec<&PodView> = observed
        .pods
        .iter()
        .filter(|p| p.state == State::Active)
        .collect();
    let unfinished = observed
        .pods
        .iter()
        .filter(|p| p.state == State::Active || p.terminating)
        .count();
    let map = status
        .as_object_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut status = Value::Object(map);

    if !finished && !deleting {
        plan_running(
            observed,
            &spec,
            &mut status,
            &mut decision,
            &active,
            succeeded,
            failed,
            &completed,
            unfinished,
            &now_text,
        );
    }

    let remaining_active = active
        .iter()
        .filter(|p| !decision.delete.contains(&p.uid))
        .count() as i64;
    let ready = active
        .iter()
        .filter(|p| p.ready && !decision.delete.contains(&p.uid))
        .count() as i64;
    let terminating = observed.pods.iter().filter(|p| p.terminating).count() as i64;
    if let Some(map) = status.as_object_mut() {
        let mut put = |key: &str, value: i64, always: bool| {
            if value > 0 || always {
                map.insert(key.into(), json!(value));
            } else {
                map.remove(key);
            }
        };
        put(
            "active",
            remaining_active + decision.create.len() as i64,
            false,
        );
        put("succeeded", succeeded, false);
        put("failed", failed, false);
        put("ready", ready, true);
        put(
            "terminating",
            terminating + decision.delete.len() as i64,
            true,
        );
        if indexed {
            map.insert("completedIndexes".into(), json!(format_indexes(&completed)));
        }
        map.insert("uncountedTerminatedPods".into(), json!({}));
    }

    // A finished job's time to live.
    if finished && let Some(ttl) = spec.get("ttlSecondsAfterFinished").and_then(Value::as_i64) {
        let finished_at = job
            .pointer("/status/completionTime")
            .and_then(Value::as_str)
            .or_else(|| {
                items(job, "/status/conditions")
                    .iter()
                    .find(|c| {
                        matches!(text(c, "/type"), "Complete" | "Failed")
                            && text(c, "/status") == "True"
                    })
                    .and_then(|c| c.get("lastTransitionTime"))
                    .and_then(Value::as_str)
            })
            .and_then(|t| t.parse::<Timestamp>().ok())
            .unwrap_or(now);
        let expires = finished_at.as_second().saturating_add(ttl.max(0));
        decision.ttl_left = Some(Duration::from_secs(
            u64::try_from(expires - now.as_second()).unwrap_or(0),
        ));
    }
    decision.status = status;
    decision
}

#[allow(clippy::too_many_arguments)]
fn plan_running(
    observed: &Observed<'_>,
    spec: &Value,
    status: &mut Value,
    decision: &mut Decision,
    active: &[&PodView],
    succeeded: i64,
    failed: i64,
    completed: &BTreeSet<i64>,
    unfinished: usize,
    now_text: &str,
) {
    let now = observed.now;
    let job = observed.job;
    let indexed = text(spec, "/completionMode") == "Indexed";
    let completions = spec.get("completions").and_then(Value::as_i64);
    let parallelism = spec
        .get("parallelism")
        .and_then(Value::as_i64)
        .unwrap_or(1)
        .max(0);
    let suspended = spec.get("suspend") == Some(&json!(true));
    let backoff_limit = spec
        .get("backoffLimit")
        .and_then(Value::as_i64)
        .unwrap_or(6);
    let start = status
        .get("startTime")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<Timestamp>().ok());
    let start = match start {
        None if !suspended => {
            if let Some(map) = status.as_object_mut() {
                map.insert("startTime".into(), json!(now_text));
            }
            Some(now)
        }
        other => other,
    };

    // Why the job fails, if it does: as said before, or found now.
    let failure_target = items(job, "/status/conditions")
        .iter()
        .find(|c| text(c, "/type") == "FailureTarget" && text(c, "/status") == "True")
        .map(|c| {
            let found = [BACKOFF_LIMIT_EXCEEDED, DEADLINE_EXCEEDED]
                .into_iter()
                .find(|(reason, _)| *reason == text(c, "/reason"));
            found.unwrap_or(BACKOFF_LIMIT_EXCEEDED)
        });
    let on_failure = text(spec, "/template/spec/restartPolicy") == "OnFailure";
    let restarts: i64 = active.iter().map(|p| p.restarts).sum();
    let past_restarts = on_failure
        && if backoff_limit == 0 {
            restarts > 0
        } else {
            restarts >= backoff_limit
        };
    let deadline = spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .zip(start)
        .map(|(seconds, start)| start.as_second().saturating_add(seconds));
    let success_met = has_condition(job, "SuccessCriteriaMet");
    let complete_now = success_met
        || match (indexed, completions) {
            (true, Some(c)) => completed.len() as i64 >= c,
            (false, Some(c)) => succeeded >= c,
            (_, None) => succeeded > 0 && active.is_empty(),
        };
    let failure = failure_target.or_else(|| {
        if complete_now {
            None
        } else if failed > backoff_limit || past_restarts {
            Some(BACKOFF_LIMIT_EXCEEDED)
        } else if deadline.is_some_and(|d| now.as_second() >= d) {
            Some(DEADLINE_EXCEEDED)
        } else {
            None
        }
    });

    if let Some(why) = failure {
        set_condition(status, "FailureTarget", "True", why, now_text);
        decision.delete.extend(active.iter().map(|p| p.uid.clone()));
        if unfinished == 0 {
            set_condition(status, "Failed", "True", why, now_text);
            decision.events.push(("Warning", why.0, why.1.to_string()));
        } else {
            decision.requeue = Some(Duration::from_secs(1));
        }
        return;
    }
    if complete_now {
        set_condition(
            status,
            "SuccessCriteriaMet",
            "True",
            COMPLETIONS_REACHED,
            now_text,
        );
        decision.delete.extend(active.iter().map(|p| p.uid.clone()));
        if unfinished == 0 {
            set_condition(status, "Complete", "True", COMPLETIONS_REACHED, now_text);
            if let Some(map) = status.as_object_mut() {
                map.insert("completionTime".into(), json!(now_text));
            }
            decision
                .events
                .push(("Normal", "Completed", "Job completed".to_string()));
        } else {
            decision.requeue = Some(Duration::from_secs(1));
        }
        return;
    }
    let was_suspended = has_condition(job, "Suspended");
    if suspended {
        decision.delete.extend(active.iter().map(|p| p.uid.clone()));
        if !was_suspended {
            set_condition(
                status,
                "Suspended",
                "True",
                ("JobSuspended", "Job suspended"),
                now_text,
            );
            decision
                .events
                .push(("Normal", "Suspended", "Job suspended".to_string()));
        }
        return;
    }
    if was_suspended {
        set_condition(
            status,
            "Suspended",
            "False",
            ("JobResumed", "Job resumed"),
            now_text,
        );
        decision
            .events
            .push(("Normal", "Resumed", "Job resumed".to_string()));
    }
    if let Some(deadline) = deadline {
        let left = Duration::from_secs(u64::try_from(deadline - now.as_second()).unwrap_or(0));
        decision.requeue = Some(left.max(Duration::from_secs(1)));
    }

    // Pods to make, or too many to keep.
    let active_count = active.len() as i64;
    let wanted = if indexed {
        parallelism.min(completions.unwrap_or(0) - completed.len() as i64)
    } else {
        match completions {
            Some(c) => parallelism.min(c - succeeded),
            None if succeeded > 0 => active_count,
            None => parallelism,
        }
    }
    .max(0);
    if active_count > wanted {
        let mut extra: Vec<&&PodView> = active.iter().collect();
        // Not ready first, then the newest.
        extra.sort_by_key(|p| (p.ready, std::cmp::Reverse(p.created)));
        decision.delete.extend(
            extra
                .into_iter()
                .take((active_count - wanted) as usize)
                .map(|p| p.uid.clone()),
        );
        return;
    }
    let missing = (wanted - active_count) as usize;
    if missing == 0 {
        return;
    }
    if let Some(last) = decision.backoff.last_failure {
        let ready_at = last
            .as_second()
            .saturating_add(decision.backoff.delay().as_secs() as i64);
        if now.as_second() < ready_at {
            let left = since(Timestamp::from_second(ready_at).unwrap_or(now), now);
            decision.requeue = Some(decision.requeue.map_or(left, |r| r.min(left)));
            return;
        }
    }
    if indexed {
        let running: BTreeSet<i64> = active.iter().filter_map(|p| p.index).collect();
        decision.create = (0..completions.unwrap_or(0))
            .filter(|i| !completed.contains(i) && !running.contains(i))
            .take(missing.min(BURST))
            .map(Some)
            .collect();
    } else {
        decision.create = vec![None; missing.min(BURST)];
    }
    if missing > BURST {
        decision.requeue = Some(Duration::from_millis(100));
    }
}

/// The pod the job makes (for `index`, when Indexed).
pub fn pod_for(job: &Value, index: Option<i64>) -> Value {
    let name = text(job, "/metadata/name");
    let template = job.pointer("/spec/template").cloned().unwrap_or_default();
    let mut meta = template
        .get("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let meta_map = meta.as_object_mut().map(std::mem::take).unwrap_or_default();
    let mut meta = Map::from_iter(meta_map);
    meta.remove("name");
    meta.remove("creationTimestamp");
    let generate = match index {
        Some(i) => format!("{name}-{i}-"),
        None => format!("{name}-"),
    };
    meta.insert("generateName".into(), json!(generate));
    meta.insert(
        "ownerReferences".into(),
        json!([{"apiVersion": "batch/v1", "kind": "Job", "name": name,
            "uid": text(job, "/metadata/uid"), "controller": true, "blockOwnerDeletion": true}]),
    );
    meta.insert("finalizers".into(), json!([TRACKING_FINALIZER]));
    if let Some(i) = index {
        for key in ["annotations", "labels"] {
            let entry = meta.entry(key).or_insert_with(|| json!({}));
            if let Some(map) = entry.as_object_mut() {
                map.insert(COMPLETION_INDEX.into(), json!(i.to_string()));
            }
        }
        if let Some(spec) = spec.as_object_mut() {
            if spec
                .get("hostname")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                spec.insert("hostname".into(), json!(format!("{name}-{i}")));
            }
            for list in ["containers", "initContainers"] {
                for container in spec
                    .get_mut(list)
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    add_index_env(container);
                }
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

fn add_index_env(container: &mut Value) {
    let Some(map) = container.as_object_mut() else {
        return;
    };
    let env = map.entry("env").or_insert_with(|| json!([]));
    if let Some(list) = env.as_array_mut()
        && !list
            .iter()
            .any(|e| text(e, "/name") == "JOB_COMPLETION_INDEX")
    {
        list.push(
            json!({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": format!("metadata.annotations['{COMPLETION_INDEX}']")}}}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: Value) -> Value {
        let mut full = json!({"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox"}]});
        let mut spec_value = json!({"parallelism": 1, "completions": 1, "backoffLimit": 6,
            "completionMode": "NonIndexed", "template": {"spec": full.take()}});
        for (k, v) in spec.as_object().cloned().unwrap_or_default() {
            spec_value[k] = v;
        }
        json!({"metadata": {"name": "pi", "uid": "u"}, "spec": spec_value, "status": {}})
    }

    fn pod(uid: &str, state: State, finalizer: bool) -> PodView {
        PodView {
            uid: uid.into(),
            state,
            terminating: false,
            ready: state == State::Active,
            finalizer,
            index: None,
            finished_at: None,
            restarts: 0,
            created: None,
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("time")
    }

    fn decide_at(job: &Value, pods: &[PodView], now: Timestamp, backoff: Backoff) -> Decision {
        decide(&Observed {
            job,
            pods,
            now,
            backoff,
        })
    }

    #[test]
    fn a_new_job_makes_its_pods_and_starts() {
        let job = job(json!({"parallelism": 3, "completions": 5}));
        let decision = decide_at(&job, &[], at(0), Backoff::default());
        assert_eq!(decision.create.len(), 3);
        assert_eq!(decision.status["active"], 3);
        assert!(decision.status.get("startTime").is_some());
    }

    #[test]
    fn a_finished_pod_is_uncounted_first_then_counted_once_released() {
        let job = job(json!({}));
        let pods = [pod("a", State::Succeeded, true)];
        let decision = decide_at(&job, &pods, at(0), Backoff::default());
        assert_eq!(
            decision
                .status_before_finalizers
                .as_ref()
                .map(|s| s["uncountedTerminatedPods"]["succeeded"].clone()),
            Some(json!(["a"]))
        );
        assert!(decision.release.contains("a"));
        assert_eq!(decision.status["succeeded"], 1);
        assert_eq!(decision.status["uncountedTerminatedPods"], json!({}));
        let conditions = decision.status["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let types: Vec<&str> = conditions.iter().map(|c| text(c, "/type")).collect();
        assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);
        assert_eq!(conditions[1]["reason"], "CompletionsReached");
        assert!(decision.status.get("completionTime").is_some());
        // Released, the pod is not counted again.
        let mut counted = job.clone();
        counted["status"] = json!({"succeeded": 1});
        let again = decide_at(
            &counted,
            &[pod("a", State::Succeeded, false)],
            at(1),
            Backoff::default(),
        );
        assert_eq!(again.status["succeeded"], 1);
    }

    #[test]
    fn failures_back_off_exponentially_then_exceed_the_limit() {
        let job = job(json!({"backoffLimit": 2}));
        let mut failed = pod("a", State::Failed, true);
        failed.finished_at = Some(at(0));
        let decision = decide_at(&job, &[failed], at(1), Backoff::default());
        assert_eq!(decision.backoff.failures, 1);
        assert!(decision.create.is_empty(), "held back for 10 s");
        assert_eq!(decision.requeue, Some(Duration::from_secs(9)));
        let mut counted = job.clone();
        counted["status"] = json!({"failed": 1, "startTime": "2027-01-15T08:00:00Z"});
        let later = decide_at(&counted, &[], at(10), decision.backoff.clone());
        assert_eq!(later.create.len(), 1);
        assert_eq!(
            Backoff {
                failures: 2,
                last_failure: None
            }
            .delay(),
            Duration::from_secs(20)
        );
        assert_eq!(
            Backoff {
                failures: 12,
                last_failure: None
            }
            .delay(),
            MAX_FAILURE_BACKOFF
        );
        counted["status"]["failed"] = json!(3);
        let over = decide_at(&counted, &[], at(100), Backoff::default());
        let conditions = over.status["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1]["type"], "Failed");
        assert_eq!(conditions[1]["reason"], "BackoffLimitExceeded");
        assert_eq!(
            conditions[1]["message"],
            "Job has reached the specified backoff limit"
        );
    }

    #[test]
    fn the_deadline_fails_the_job_after_its_pods_go() {
        let mut job = job(json!({"activeDeadlineSeconds": 5}));
        job["status"] = json!({"startTime": petset_api::time::format(at(0))});
        let pods = [pod("a", State::Active, true)];
        let decision = decide_at(&job, &pods, at(6), Backoff::default());
        assert!(decision.delete.contains("a"));
        let conditions = decision.status["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0]["type"], "FailureTarget");
        assert_eq!(conditions[0]["reason"], "DeadlineExceeded");
    }

    #[test]
    fn an_indexed_job_makes_one_pod_per_missing_index() {
        let job = job(json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3}));
        let mut done = pod("a", State::Succeeded, true);
        done.index = Some(1);
        let decision = decide_at(&job, &[done], at(0), Backoff::default());
        assert_eq!(decision.create, vec![Some(0), Some(2)]);
        assert_eq!(decision.status["completedIndexes"], "1");
        let made = pod_for(&job, Some(2));
        assert_eq!(made["metadata"]["generateName"], "pi-2-");
        assert_eq!(made["metadata"]["annotations"][COMPLETION_INDEX], "2");
        assert_eq!(made["metadata"]["labels"][COMPLETION_INDEX], "2");
        assert_eq!(made["spec"]["hostname"], "pi-2");
        assert_eq!(
            made["spec"]["containers"][0]["env"][0]["name"],
            "JOB_COMPLETION_INDEX"
        );
        assert_eq!(made["metadata"]["finalizers"], json!([TRACKING_FINALIZER]));
    }

    #[test]
    fn indexes_format_as_ranges() {
        let set: BTreeSet<i64> = [0, 1, 2, 4, 6, 7].into_iter().collect();
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7"), set);
    }

    #[test]
    fn a_finished_job_with_a_ttl_goes_when_it_is_over() {
        let mut job = job(json!({"ttlSecondsAfterFinished": 10}));
        job["status"] = json!({"completionTime": petset_api::time::format(at(0)),
            "conditions": [{"type": "Complete", "status": "True"}]});
        assert_eq!(
            decide_at(&job, &[], at(4), Backoff::default()).ttl_left,
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            decide_at(&job, &[], at(11), Backoff::default()).ttl_left,
            Some(Duration::ZERO)
        );
    }
}
