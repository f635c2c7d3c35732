//! The kubelet's lifecycle rules as pure functions of what the worker observed: which
//! containers start now (init containers one at a time, in order, then every app container),
//! whether an exited container restarts and after which back-off (CrashLoopBackOff: 10 s
//! doubling to 5 min, reset after 10 minutes of running), the pull back-off, the pod's phase,
//! and when the worker next has something to do.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::probes::ProbeState;

pub const FIRST_BACK_OFF: Duration = Duration::from_secs(10);
pub const MAX_BACK_OFF: Duration = Duration::from_secs(300);
/// A container that ran this long before it exited starts its back-off over.
const BACK_OFF_RESET: Duration = Duration::from_secs(600);

/// What the node knows of one container of the pod.
#[derive(Debug, Clone, Default)]
pub struct ContainerRecord {
    pub restart_count: i32,
    /// The number of the container's latest run (its log file's name); 0 before the first.
    pub attempt: u32,
    pub state: Value,
    pub last_state: Value,
    /// When the next restart may happen (back-off).
    pub restart_at: Option<Instant>,
    pub back_off: Duration,
    pub running: bool,
    pub started: Option<Instant>,
    pub image_id: String,
    pub startup: ProbeState,
    pub readiness: ProbeState,
    pub liveness: ProbeState,
    /// Held back by the node's fence (`crate::fence`): its status waits `NodeFenced` until the
    /// fence is lowered.
    pub fenced: bool,
}

impl ContainerRecord {
    /// A record carried over from the pod's status (a worker after a restart of petset): the
    /// restart count stays, and new runs' log files follow the earlier ones.
    pub fn resumed(restart_count: i32) -> Self {
        Self {
            restart_count,
            attempt: u32::try_from(restart_count.max(0)).unwrap_or(0) + 1,
            ..Self::default()
        }
    }

    /// Whether the container ran to completion with exit code 0.
    pub fn completed(&self) -> bool {
        self.state.pointer("/terminated/exitCode") == Some(&json!(0))
    }

    fn restart_due(&self, now: Instant) -> bool {
        self.restart_at.is_none_or(|at| at <= now)
    }

    pub fn ready(&self) -> bool {
        self.running && self.startup.passed && self.readiness.passed
    }
}

/// A container of the pod, as `Starts` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub init: bool,
}

/// What to start now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Starts {
    /// Whether every init container has completed (the app containers may run).
    pub init_done: bool,
    pub start: Vec<Named>,
}

/// Which containers start now: the first init container that has not completed, when it is
/// not running and its back-off is over; once all have completed, every app container that
/// has never run, or whose restart is due.
pub fn starts(
    spec: &PodSpec,
    init: &BTreeMap<String, ContainerRecord>,
    containers: &BTreeMap<String, ContainerRecord>,
    init_done: bool,
    now: Instant,
) -> Starts {
    let none = ContainerRecord::default();
    if !init_done {
        for container in spec.init_containers.iter().flatten() {
            let record = init.get(&container.name).unwrap_or(&none);
            if record.completed() {
                continue;
            }
            let start = (!record.running && record.restart_due(now)).then(|| Named {
                name: container.name.clone(),
                init: true,
            });
            return Starts {
                init_done: false,
                start: start.into_iter().collect(),
            };
        }
    }
    let start = spec
        .containers
        .iter()
        .filter(|container| {
            let record = containers.get(&container.name).unwrap_or(&none);
            let first = record.state.is_null();
            !record.running && (first || (record.restart_at.is_some() && record.restart_due(now)))
        })
        .map(|container| Named {
            name: container.name.clone(),
            init: false,
        })
        .collect();
    Starts {
        init_done: true,
        start,
    }
}

/// Whether a container that exited with `code` runs again, as the pod's restart policy says
/// (an init container that completed never does).
pub fn restarts(policy: &str, init: bool, code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => code != 0,
        _ => !(init && code == 0),
    }
}

/// The back-off before a restart: the first after `FIRST_BACK_OFF`, then doubling up to
/// `MAX_BACK_OFF`; a container that had run for ten minutes starts over.
pub fn next_back_off(previous: Duration, started: Option<Instant>, now: Instant) -> Duration {
    let ran_long = started.is_some_and(|s| now.saturating_duration_since(s) > BACK_OFF_RESET);
    if ran_long || previous.is_zero() {
        FIRST_BACK_OFF
    } else {
        previous.saturating_mul(2).min(MAX_BACK_OFF)
    }
}

/// The pull back-off after one more failed attempt (the first of an image: `None`).
pub fn next_pull_delay(previous: Option<Duration>) -> Duration {
    previous.map_or(FIRST_BACK_OFF, |d| d.saturating_mul(2).min(MAX_BACK_OFF))
}

/// The pod's phase: Succeeded or Failed once every app container has terminated for good,
/// Running once every app container has run, else Pending.
pub fn phase(
    spec: &PodSpec,
    containers: &BTreeMap<String, ContainerRecord>,
    init_done: bool,
) -> &'static str {
    let terminated: Vec<i64> = spec
        .containers
        .iter()
        .filter_map(|c| {
            containers
                .get(&c.name)
                .and_then(|r| r.state.pointer("/terminated/exitCode"))
                .and_then(Value::as_i64)
        })
        .collect();
    if terminated.len() == spec.containers.len() && !terminated.is_empty() {
        if terminated.iter().all(|c| *c == 0) {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if init_done
        && spec
            .containers
            .iter()
            .all(|c| containers.get(&c.name).is_some_and(|r| r.attempt > 0))
    {
        "Running"
    } else {
        "Pending"
    }
}

/// When something is next due: a restart, or a probe of a running app container.
pub fn next_wake(
    init: &BTreeMap<String, ContainerRecord>,
    containers: &BTreeMap<String, ContainerRecord>,
) -> Option<Instant> {
    let probes = containers.values().filter(|r| r.running).flat_map(|r| {
        [r.startup.next, r.readiness.next, r.liveness.next]
            .into_iter()
            .flatten()
    });
    init.values()
        .chain(containers.values())
        .filter_map(|r| r.restart_at)
        .chain(probes)
        .min()
}

/// A duration as Go prints one (`10s`, `2m40s`, `5m0s`), as the kubelet's back-off messages
/// show it.
pub fn go_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match (seconds / 3600, seconds / 60 % 60, seconds % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: Value) -> PodSpec {
        serde_json::from_value(value).expect("pod spec")
    }

    fn two_inits_one_app() -> PodSpec {
        spec(json!({
            "initContainers": [{"name": "first"}, {"name": "second"}],
            "containers": [{"name": "app"}],
        }))
    }

    fn named(name: &str, init: bool) -> Named {
        Named {
            name: name.into(),
            init,
        }
    }

    fn terminated(code: i32) -> ContainerRecord {
        ContainerRecord {
            attempt: 1,
            state: json!({"terminated": {"exitCode": code}}),
            ..ContainerRecord::default()
        }
    }

    fn running() -> ContainerRecord {
        ContainerRecord {
            attempt: 1,
            running: true,
            state: json!({"running": {}}),
            ..ContainerRecord::default()
        }
    }

    #[test]
    fn init_containers_run_one_at_a_time_in_order() {
        let spec = two_inits_one_app();
        let now = Instant::now();
        let mut init = BTreeMap::new();
        let apps = BTreeMap::new();
        let plan = starts(&spec, &init, &apps, false, now);
        assert_eq!(plan.start, [named("first", true)]);
        assert!(!plan.init_done);
        init.insert("first".into(), running());
        assert_eq!(starts(&spec, &init, &apps, false, now).start, []);
        init.insert("first".into(), terminated(0));
        assert_eq!(
            starts(&spec, &init, &apps, false, now).start,
            [named("second", true)]
        );
        init.insert("second".into(), terminated(0));
        let plan = starts(&spec, &init, &apps, false, now);
        assert!(plan.init_done);
        assert_eq!(plan.start, [named("app", false)]);
    }

    #[test]
    fn a_failed_init_container_blocks_the_app_containers() {
        let spec = two_inits_one_app();
        let now = Instant::now();
        let init = BTreeMap::from([(
            "first".to_string(),
            ContainerRecord {
                restart_at: Some(now + FIRST_BACK_OFF),
                ..terminated(1)
            },
        )]);
        let plan = starts(&spec, &init, &BTreeMap::new(), false, now);
        assert_eq!(plan, Starts::default(), "waits for its back-off");
        let later = starts(&spec, &init, &BTreeMap::new(), false, now + FIRST_BACK_OFF);
        assert_eq!(later.start, [named("first", true)]);
    }

    #[test]
    fn an_app_container_that_ended_for_good_is_not_started_again() {
        let spec = spec(json!({"containers": [{"name": "job"}]}));
        let containers = BTreeMap::from([("job".to_string(), terminated(0))]);
        let plan = starts(&spec, &BTreeMap::new(), &containers, true, Instant::now());
        assert_eq!(plan.start, []);
        assert_eq!(phase(&spec, &containers, true), "Succeeded");
        let failed = BTreeMap::from([("job".to_string(), terminated(2))]);
        assert_eq!(phase(&spec, &failed, true), "Failed");
    }

    #[test]
    fn restart_policies_decide_who_runs_again() {
        assert!(restarts("Always", false, 0));
        assert!(restarts("Always", false, 1));
        assert!(!restarts("Always", true, 0), "a completed init container");
        assert!(restarts("Always", true, 1));
        assert!(restarts("OnFailure", false, 1));
        assert!(!restarts("OnFailure", false, 0));
        assert!(!restarts("Never", false, 1));
    }

    #[test]
    fn the_phase_is_running_once_every_app_container_ran() {
        let spec = spec(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        let mut containers = BTreeMap::from([("a".to_string(), running())]);
        assert_eq!(phase(&spec, &containers, true), "Pending");
        containers.insert("b".into(), running());
        assert_eq!(phase(&spec, &containers, true), "Running");
        assert_eq!(phase(&spec, &containers, false), "Pending");
    }

    #[tokio::test(start_paused = true)]
    async fn crash_loop_back_off_doubles_to_five_minutes_and_resets_after_ten_running() {
        let started = Instant::now();
        let mut back_off = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..7 {
            tokio::time::advance(Duration::from_secs(1)).await;
            back_off = next_back_off(back_off, Some(started), Instant::now());
            seen.push(go_duration(back_off));
        }
        assert_eq!(
            seen,
            ["10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "5m0s"]
        );
        let restarted = Instant::now();
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(
            next_back_off(back_off, Some(restarted), Instant::now()),
            FIRST_BACK_OFF,
            "ten minutes of running start the back-off over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_restart_waits_for_its_back_off_on_the_clock() {
        let spec = spec(json!({"containers": [{"name": "app"}]}));
        let restart_at = Instant::now() + FIRST_BACK_OFF;
        let containers = BTreeMap::from([(
            "app".to_string(),
            ContainerRecord {
                restart_at: Some(restart_at),
                state: json!({"waiting": {"reason": "CrashLoopBackOff"}}),
                attempt: 1,
                ..ContainerRecord::default()
            },
        )]);
        assert_eq!(next_wake(&BTreeMap::new(), &containers), Some(restart_at));
        tokio::time::advance(FIRST_BACK_OFF - Duration::from_millis(1)).await;
        let early = starts(&spec, &BTreeMap::new(), &containers, true, Instant::now());
        assert_eq!(early.start, []);
        tokio::time::advance(Duration::from_millis(1)).await;
        let due = starts(&spec, &BTreeMap::new(), &containers, true, Instant::now());
        assert_eq!(due.start, [named("app", false)]);
    }

    #[tokio::test(start_paused = true)]
    async fn probes_of_running_containers_wake_the_worker_on_their_period() {
        let probe = serde_json::from_value(json!({"periodSeconds": 3, "initialDelaySeconds": 2}))
            .expect("probe");
        let mut record = running();
        record.startup = ProbeState::reset(None, Instant::now());
        record.readiness = ProbeState::reset(Some(&probe), Instant::now());
        assert!(
            !record.ready(),
            "not ready before its readiness probe passes"
        );
        let first = Instant::now() + Duration::from_secs(2);
        let containers = BTreeMap::from([("app".to_string(), record.clone())]);
        assert_eq!(next_wake(&BTreeMap::new(), &containers), Some(first));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(record.readiness.due(Instant::now()));
        record.readiness.record(&probe, true, Instant::now());
        assert!(record.ready());
        let containers = BTreeMap::from([("app".to_string(), record.clone())]);
        assert_eq!(
            next_wake(&BTreeMap::new(), &containers),
            Some(Instant::now() + Duration::from_secs(3))
        );
        record.running = false;
        let stopped = BTreeMap::from([("app".to_string(), record)]);
        assert_eq!(
            next_wake(&BTreeMap::new(), &stopped),
            None,
            "no probes of a stopped container"
        );
    }

    #[test]
    fn pull_back_off_doubles_from_ten_seconds_to_five_minutes() {
        let mut delay = None;
        let mut seen = Vec::new();
        for _ in 0..7 {
            let next = next_pull_delay(delay);
            seen.push(next.as_secs());
            delay = Some(next);
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(160)), "2m40s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
