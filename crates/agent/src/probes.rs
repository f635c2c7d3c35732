//! Where each probe of a container stands, counted against its thresholds as the kubelet's
//! prober counts: `successThreshold` passes in a row make it pass, `failureThreshold` failures
//! in a row make it fail, and it runs every `periodSeconds` from `initialDelaySeconds` on.

use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::core::v1::Probe;

/// Where one probe of a container stands.
#[derive(Debug, Clone, Default)]
pub struct ProbeState {
    pub next: Option<Instant>,
    successes: i32,
    failures: i32,
    pub passed: bool,
}

impl ProbeState {
    pub fn reset(probe: Option<&Probe>, now: Instant) -> Self {
        Self {
            next: probe.map(|p| {
                now + Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64)
            }),
            passed: probe.is_none(),
            ..Self::default()
        }
    }

    /// Counts one result against the probe's thresholds; returns whether it just failed for good.
    pub fn record(&mut self, probe: &Probe, ok: bool, now: Instant) -> bool {
        self.next =
            Some(now + Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64));
        if ok {
            self.failures = 0;
            self.successes += 1;
            if self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                self.passed = true;
            }
            false
        } else {
            self.successes = 0;
            self.failures += 1;
            let failed = self.failures >= probe.failure_threshold.unwrap_or(3).max(1);
            if failed {
                self.passed = false;
            }
            failed
        }
    }

    pub fn due(&self, now: Instant) -> bool {
        self.next.is_some_and(|at| at <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(value: serde_json::Value) -> Probe {
        serde_json::from_value(value).expect("probe")
    }

    #[test]
    fn thresholds_count_results_in_a_row() {
        let probe = probe(
            serde_json::json!({"periodSeconds": 2, "failureThreshold": 2,
            "successThreshold": 2, "initialDelaySeconds": 5}),
        );
        let now = Instant::now();
        let mut state = ProbeState::reset(Some(&probe), now);
        assert!(!state.passed);
        assert!(!state.due(now));
        assert!(state.due(now + Duration::from_secs(5)));
        assert!(!state.record(&probe, true, now));
        assert!(!state.passed, "one success of two");
        assert!(!state.record(&probe, true, now));
        assert!(state.passed);
        assert_eq!(state.next, Some(now + Duration::from_secs(2)));
        assert!(!state.record(&probe, false, now));
        assert!(state.passed, "one failure of two");
        assert!(state.record(&probe, false, now), "failed for good");
        assert!(!state.passed);
        assert!(ProbeState::reset(None, now).passed, "no probe passes");
    }
}
