//! The arithmetic of PodDisruptionBudgets, shared by the disruption controller (which writes
//! a budget's status) and the eviction subresource (which spends it). Upstream's
//! `pkg/controller/disruption` (`getExpectedPodCount`, `buildDisruptedPodMap`,
//! `countHealthyPods`, `updatePdbStatus`, `failSafe`), `pkg/apis/policy/helper`
//! (`UpdateDisruptionAllowedCondition`, `ConditionsAreUpToDate`) and the decision half of
//! `pkg/registry/core/pod/storage/eviction.go` (`canIgnorePDB`, `checkAndDecrement`).
//! Budgets and pods are wire JSON; nothing here does I/O.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use crate::selector::LabelSelector;
use crate::validate::percent;

/// How long a pod the eviction subresource named in `status.disruptedPods` is expected to take
/// to be deleted before the controller counts it again (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);
/// Upstream's `MaxDisruptedPodSize`: past it, evictions are refused until the controller
/// confirms the ones recorded.
pub const MAX_DISRUPTED_PODS: usize = 2000;
pub const CONDITION: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";
/// The message of the eviction subresource's 429.
pub const WOULD_VIOLATE: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn int(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Upstream's `IsPodReady`: the `Ready` condition is `True`.
pub fn pod_ready(pod: &Value) -> bool {
    crate::json::items(pod, "/status/conditions")
        .iter()
        .any(|c| text(c, "/type") == "Ready" && text(c, "/status") == "True")
}

fn being_deleted(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// Whether the budget selects the pod: same namespace and a valid, non-empty selector that
/// matches its labels (an empty or invalid selector selects nothing, as upstream).
pub fn selects(budget: &Value, pod: &Value) -> bool {
    if text(budget, "/metadata/namespace") != text(pod, "/metadata/namespace") {
        return false;
    }
    let Some(selector) = budget.pointer("/spec/selector").filter(|s| !s.is_null()) else {
        return false;
    };
    match LabelSelector::from_structured(selector) {
        Ok(selector) => !selector.is_empty() && selector.matches_object(pod),
        Err(_) => false,
    }
}

/// Upstream's `GetScaledValueFromIntOrPercent`: a count, or a percentage of `total` rounded up
/// (`round_up`) or down.
pub fn scaled(value: &Value, total: i64, round_up: bool) -> Result<i64, String> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("invalid value for IntOrString: {n}")),
        Value::String(s) => {
            let p = percent(s).ok_or_else(|| {
                "invalid value for IntOrString: invalid type: string is not a percentage"
                    .to_string()
            })?;
            let p = i64::try_from(p).unwrap_or(i64::MAX);
            let product = p.saturating_mul(total);
            Ok(if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            })
        }
        other => Err(format!("invalid value for IntOrString: {other}")),
    }
}

/// Whether the budget's expected count needs the scale of the pods' controllers (everything
/// but an integer `minAvailable`).
pub fn needs_scale(budget: &Value) -> bool {
    let spec = budget.get("spec").cloned().unwrap_or(Value::Null);
    if spec.get("maxUnavailable").is_some_and(|v| !v.is_null()) {
        return true;
    }
    matches!(spec.get("minAvailable"), Some(Value::String(_)))
}

/// Upstream's `getExpectedPodCount`: `(expectedCount, desiredHealthy)` given the pods the budget
/// selects and, when [`needs_scale`], the summed scale of their controllers.
pub fn expected_and_desired(
    budget: &Value,
    pods: usize,
    scale: Option<i64>,
) -> Result<(i64, i64), String> {
    let spec = budget.get("spec").cloned().unwrap_or(Value::Null);
    let pods = i64::try_from(pods).unwrap_or(i64::MAX);
    if let Some(max) = spec.get("maxUnavailable").filter(|v| !v.is_null()) {
        let expected = scale.unwrap_or(0);
        let max = scaled(max, expected, true)?;
        return Ok((expected, (expected - max).max(0)));
    }
    match spec.get("minAvailable") {
        Some(Value::String(_)) => {
            let expected = scale.unwrap_or(0);
            let min = scaled(&spec["minAvailable"], expected, true)?;
            Ok((expected, min))
        }
        Some(min @ Value::Number(_)) => Ok((pods, scaled(min, pods, true)?)),
        _ => Ok((0, 0)),
    }
}

/// Upstream's `buildDisruptedPodMap`: the entries of `status.disruptedPods` still pending
/// (a pod not yet being deleted, within [`DELETION_TIMEOUT`]), when the first of them expires,
/// and the pods whose deletion never came (upstream records `NotDeleted` on them).
pub fn disrupted_pods(
    budget: &Value,
    pods: &[Value],
    now: Timestamp,
) -> (Map<String, Value>, Option<Timestamp>, Vec<String>) {
    let mut pending = Map::new();
    let mut recheck: Option<Timestamp> = None;
    let mut not_deleted = Vec::new();
    let Some(recorded) = budget
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
    else {
        return (pending, recheck, not_deleted);
    };
    for pod in pods {
        if being_deleted(pod) {
            continue;
        }
        let name = text(pod, "/metadata/name");
        let Some(at) = recorded.get(name) else {
            continue;
        };
        let Some(when) = at.as_str().and_then(crate::time::parse) else {
            continue;
        };
        let expected = when + DELETION_TIMEOUT;
        if expected < now {
            not_deleted.push(name.to_string());
        } else {
            if recheck.is_none_or(|r| expected < r) {
                recheck = Some(expected);
            }
            pending.insert(name.to_string(), at.clone());
        }
    }
    (pending, recheck, not_deleted)
}

/// Upstream's `countHealthyPods`: ready pods that are neither being deleted nor about to be.
pub fn current_healthy(pods: &[Value], disrupted: &Map<String, Value>, now: Timestamp) -> i64 {
    let mut healthy = 0;
    for pod in pods {
        if being_deleted(pod) {
            continue;
        }
        let pending = disrupted
            .get(text(pod, "/metadata/name"))
            .and_then(Value::as_str)
            .and_then(crate::time::parse)
            .is_some_and(|at| at + DELETION_TIMEOUT > now);
        if !pending && pod_ready(pod) {
            healthy += 1;
        }
    }
    healthy
}

/// apimachinery's `SetStatusCondition`: adds or updates the condition of `condition["type"]`,
/// moving `lastTransitionTime` only when the status changes.
pub fn set_condition(conditions: &mut Vec<Value>, mut condition: Value, now: &str) {
    let kind = text(&condition, "/type").to_string();
    match conditions.iter_mut().find(|c| text(c, "/type") == kind) {
        Some(existing) => {
            if text(existing, "/status") != text(&condition, "/status") {
                existing["status"] = condition["status"].take();
                existing["lastTransitionTime"] = json!(now);
            }
            for field in ["reason", "message", "observedGeneration"] {
                existing[field] = condition.get(field).cloned().unwrap_or(Value::Null);
            }
            if existing["observedGeneration"].is_null()
                && let Some(map) = existing.as_object_mut()
            {
                map.remove("observedGeneration");
            }
        }
        None => {
            condition["lastTransitionTime"] = json!(now);
            conditions.push(condition);
        }
    }
}

fn conditions_of(status: &Value) -> Vec<Value> {
    status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Upstream's `UpdateDisruptionAllowedCondition` on a status.
pub fn update_allowed_condition(status: &mut Value, now: &str) {
    let mut conditions = conditions_of(status);
    let allowed = int(status, "/disruptionsAllowed") > 0;
    let (state, reason) = if allowed {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    set_condition(
        &mut conditions,
        json!({"type": CONDITION, "status": state, "reason": reason, "message": "",
            "observedGeneration": int(status, "/observedGeneration")}),
        now,
    );
    status["conditions"] = Value::Array(conditions);
}

/// Upstream's `ConditionsAreUpToDate`.
pub fn conditions_up_to_date(budget: &Value) -> bool {
    let Some(condition) = crate::json::items(budget, "/status/conditions")
        .iter()
        .find(|c| text(c, "/type") == CONDITION)
    else {
        return false;
    };
    if int(condition, "/observedGeneration") != int(budget, "/status/observedGeneration") {
        return false;
    }
    if int(budget, "/status/disruptionsAllowed") > 0 {
        text(condition, "/status") == "True" && text(condition, "/reason") == SUFFICIENT_PODS
    } else {
        text(condition, "/status") == "False" && text(condition, "/reason") == INSUFFICIENT_PODS
    }
}

/// What the controller computed for one budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub current_healthy: i64,
    pub desired_healthy: i64,
    pub expected_pods: i64,
    pub disrupted_pods: Map<String, Value>,
}

/// Upstream's `updatePdbStatus`: the status to write, `None` when the budget already says it.
pub fn status_after(budget: &Value, health: &Health, now: &str) -> Option<Value> {
    let mut allowed = health.current_healthy - health.desired_healthy;
    if health.expected_pods <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let generation = int(budget, "/metadata/generation");
    let recorded = budget
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if int(budget, "/status/currentHealthy") == health.current_healthy
        && int(budget, "/status/desiredHealthy") == health.desired_healthy
        && int(budget, "/status/expectedPods") == health.expected_pods
        && int(budget, "/status/disruptionsAllowed") == allowed
        && recorded == health.disrupted_pods
        && int(budget, "/status/observedGeneration") == generation
        && conditions_up_to_date(budget)
    {
        return None;
    }
    let mut status = json!({
        "currentHealthy": health.current_healthy,
        "desiredHealthy": health.desired_healthy,
        "expectedPods": health.expected_pods,
        "disruptionsAllowed": allowed,
        "observedGeneration": generation,
        "conditions": budget.pointer("/status/conditions").cloned().unwrap_or(json!([])),
    });
    if !health.disrupted_pods.is_empty() {
        status["disruptedPods"] = Value::Object(health.disrupted_pods.clone());
    }
    update_allowed_condition(&mut status, now);
    Some(status)
}

/// Upstream's `failSafe`: no disruptions allowed, the condition saying why the sync failed.
pub fn fail_safe(budget: &Value, message: &str, now: &str) -> Value {
    let mut status = budget.get("status").cloned().unwrap_or_else(|| json!({}));
    status["disruptionsAllowed"] = json!(0);
    let mut conditions = conditions_of(&status);
    set_condition(
        &mut conditions,
        json!({"type": CONDITION, "status": "False", "reason": SYNC_FAILED, "message": message,
            "observedGeneration": int(&status, "/observedGeneration")}),
        now,
    );
    status["conditions"] = Value::Array(conditions);
    status
}

/// Upstream's `canIgnorePDB`: a pod that is terminal, pending or already being deleted is
/// evicted without asking its budget.
pub fn evicts_freely(pod: &Value) -> bool {
    matches!(
        text(pod, "/status/phase"),
        "Succeeded" | "Failed" | "Pending"
    ) || being_deleted(pod)
}

/// How a budget treats the eviction of a pod that is not ready (the `IsPodReady` check before
/// `checkAndDecrement`): `true` when it may go without spending the budget.
pub fn unhealthy_evicts_freely(budget: &Value) -> bool {
    if text(budget, "/spec/unhealthyPodEvictionPolicy") == "AlwaysAllow" {
        return true;
    }
    let desired = int(budget, "/status/desiredHealthy");
    int(budget, "/status/currentHealthy") >= desired && desired > 0
}

/// Why the eviction subresource refuses to spend a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 429: the controller has not seen the budget's last change yet; the cause's message.
    NotProcessed(String),
    /// 429: no disruption allowed; the cause's message.
    Exhausted(String),
    /// 403 with this reason.
    Forbidden(&'static str),
}

/// Upstream's `checkAndDecrement`: the budget's status after one more disruption of
/// `pod` (recorded in `disruptedPods` unless `dry_run`), or why not.
pub fn spend(budget: &Value, pod: &str, now: &str, dry_run: bool) -> Result<Value, Refusal> {
    let name = text(budget, "/metadata/name");
    if int(budget, "/status/observedGeneration") < int(budget, "/metadata/generation") {
        return Err(Refusal::NotProcessed(format!(
            "The disruption budget {name} is still being processed by the server."
        )));
    }
    let allowed = int(budget, "/status/disruptionsAllowed");
    if allowed < 0 {
        return Err(Refusal::Forbidden("pdb disruptions allowed is negative"));
    }
    if crate::json::map_len(budget, "/status/disruptedPods") > MAX_DISRUPTED_PODS {
        return Err(Refusal::Forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(Refusal::Exhausted(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            int(budget, "/status/desiredHealthy"),
            int(budget, "/status/currentHealthy")
        )));
    }
    let mut status = budget.get("status").cloned().unwrap_or_else(|| json!({}));
    status["disruptionsAllowed"] = json!(allowed - 1);
    if allowed - 1 == 0 {
        update_allowed_condition(&mut status, now);
    }
    if !dry_run {
        if !status.get("disruptedPods").is_some_and(Value::is_object) {
            status["disruptedPods"] = json!({});
        }
        status["disruptedPods"][pod] = json!(now);
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-01-01T00:10:00Z";

    fn now() -> Timestamp {
        crate::time::parse(NOW).expect("test data")
    }

    fn pod(name: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "status": {"phase": "Running",
                "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    fn budget(spec: Value) -> Value {
        let mut spec = spec;
        spec["selector"] = json!({"matchLabels": {"app": "web"}});
        json!({"metadata": {"name": "web", "namespace": "default", "generation": 1}, "spec": spec})
    }

    #[test]
    fn percentages_round_up_and_counts_are_counts() {
        assert_eq!(scaled(&json!("50%"), 3, true), Ok(2));
        assert_eq!(scaled(&json!("50%"), 3, false), Ok(1));
        assert_eq!(scaled(&json!("34%"), 3, true), Ok(2));
        assert_eq!(scaled(&json!("0%"), 3, true), Ok(0));
        assert_eq!(scaled(&json!(2), 3, true), Ok(2));
        assert!(scaled(&json!("half"), 3, true).is_err());
    }

    #[test]
    fn expected_and_desired_follow_min_available_and_max_unavailable() {
        // An integer minAvailable counts the selected pods; no scale needed.
        let b = budget(json!({"minAvailable": 2}));
        assert!(!needs_scale(&b));
        assert_eq!(expected_and_desired(&b, 3, None), Ok((3, 2)));
        // A percentage of the controllers' scale, rounded up.
        let b = budget(json!({"minAvailable": "50%"}));
        assert!(needs_scale(&b));
        assert_eq!(expected_and_desired(&b, 2, Some(5)), Ok((5, 3)));
        let b = budget(json!({"maxUnavailable": 1}));
        assert_eq!(expected_and_desired(&b, 3, Some(3)), Ok((3, 2)));
        let b = budget(json!({"maxUnavailable": "30%"}));
        assert_eq!(expected_and_desired(&b, 3, Some(3)), Ok((3, 2)));
        // Never below zero.
        let b = budget(json!({"maxUnavailable": 5}));
        assert_eq!(expected_and_desired(&b, 3, Some(3)), Ok((3, 0)));
    }

    #[test]
    fn a_stateful_set_of_three_with_min_available_two_allows_one_disruption() {
        let b = budget(json!({"minAvailable": 2}));
        let pods = vec![pod("web-0", true), pod("web-1", true), pod("web-2", true)];
        let (disrupted, recheck, _) = disrupted_pods(&b, &pods, now());
        assert!(recheck.is_none());
        let (expected, desired) = expected_and_desired(&b, pods.len(), None).expect("test data");
        let health = Health {
            current_healthy: current_healthy(&pods, &disrupted, now()),
            desired_healthy: desired,
            expected_pods: expected,
            disrupted_pods: disrupted,
        };
        let status = status_after(&b, &health, NOW).expect("test data");
        assert_eq!(status["disruptionsAllowed"], 1);
        assert_eq!(status["currentHealthy"], 3);
        assert_eq!(status["observedGeneration"], 1);
        assert_eq!(status["conditions"][0]["reason"], SUFFICIENT_PODS);
        assert_eq!(status["conditions"][0]["status"], "True");
        // Written once, nothing more to write.
        let mut written = b.clone();
        written["status"] = status;
        assert_eq!(status_after(&written, &health, NOW), None);
    }

    #[test]
    fn a_pod_being_evicted_does_not_count_until_its_deletion_is_overdue() {
        let mut b = budget(json!({"minAvailable": 2}));
        b["status"] = json!({"disruptedPods": {"web-1": "2026-01-01T00:09:00Z",
            "web-2": "2026-01-01T00:07:00Z", "gone": "2026-01-01T00:09:00Z"}});
        let pods = vec![pod("web-0", true), pod("web-1", true), pod("web-2", true)];
        let (disrupted, recheck, overdue) = disrupted_pods(&b, &pods, now());
        assert_eq!(disrupted.keys().collect::<Vec<_>>(), ["web-1"]);
        assert_eq!(recheck, crate::time::parse("2026-01-01T00:11:00Z"));
        assert_eq!(overdue, ["web-2"]);
        assert_eq!(current_healthy(&pods, &disrupted, now()), 2);
    }

    #[test]
    fn spending_the_last_disruption_records_the_pod_and_flips_the_condition() {
        let mut b = budget(json!({"minAvailable": 2}));
        b["status"] = json!({"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2,
            "expectedPods": 3, "observedGeneration": 1,
            "conditions": [{"type": CONDITION, "status": "True", "reason": SUFFICIENT_PODS,
                "message": "", "observedGeneration": 1, "lastTransitionTime": "x"}]});
        let status = spend(&b, "web-2", NOW, false).expect("test data");
        assert_eq!(status["disruptionsAllowed"], 0);
        assert_eq!(status["disruptedPods"]["web-2"], NOW);
        assert_eq!(status["conditions"][0]["reason"], INSUFFICIENT_PODS);
        assert_eq!(status["conditions"][0]["lastTransitionTime"], NOW);
        // A dry run spends nothing it records.
        assert!(
            spend(&b, "web-2", NOW, true)
                .expect("test data")
                .get("disruptedPods")
                .is_none()
        );
        b["status"] = status;
        assert_eq!(
            spend(&b, "web-1", NOW, false),
            Err(Refusal::Exhausted(
                "The disruption budget web needs 2 healthy pods and has 3 currently".into()
            ))
        );
        b["metadata"]["generation"] = json!(2);
        assert!(matches!(
            spend(&b, "web-1", NOW, false),
            Err(Refusal::NotProcessed(_))
        ));
    }

    #[test]
    fn unready_and_terminal_pods() {
        let mut b = budget(json!({"minAvailable": 2}));
        b["status"] = json!({"currentHealthy": 2, "desiredHealthy": 2});
        assert!(unhealthy_evicts_freely(&b));
        b["status"]["currentHealthy"] = json!(1);
        assert!(!unhealthy_evicts_freely(&b));
        b["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert!(unhealthy_evicts_freely(&b));
        let mut p = pod("x", false);
        assert!(!evicts_freely(&p));
        p["status"]["phase"] = json!("Succeeded");
        assert!(evicts_freely(&p));
    }

    #[test]
    fn an_empty_selector_selects_nothing() {
        let mut b = budget(json!({}));
        assert!(selects(&b, &pod("a", true)));
        b["spec"]["selector"] = json!({});
        assert!(!selects(&b, &pod("a", true)));
        b["spec"]["selector"] = json!({"matchLabels": {"app": "web"}});
        b["metadata"]["namespace"] = json!("other");
        assert!(!selects(&b, &pod("a", true)));
    }

    #[test]
    fn a_failed_sync_allows_nothing_and_says_why() {
        let b = budget(json!({"maxUnavailable": 1}));
        let status = fail_safe(&b, "found no controllers for pod \"x\"", NOW);
        assert_eq!(status["disruptionsAllowed"], 0);
        assert_eq!(status["conditions"][0]["reason"], SYNC_FAILED);
    }
}
