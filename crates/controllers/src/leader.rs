//! Leader election over a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does
//! it, so that what must run once in a cluster (the controllers, the garbage collector, node
//! IPAM) runs on one server of several: a candidate takes the Lease when it is free or when it
//! has seen no change to it for its `leaseDurationSeconds`; the leader renews it every retry
//! period and stops its work once it could not renew for the renew deadline, which is shorter
//! than the lease duration, so its work has stopped before another candidate may take over.
//!
//! Expiry is measured as upstream measures it: from the moment this candidate last saw the
//! record change, on its own monotonic clock, never by comparing `renewTime` with its wall
//! clock (servers' clocks may differ).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::task::JoinSet;

/// Where the Lease is and how it is held; [`ElectionConfig::new`] gives upstream's timings.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate's `holderIdentity` (upstream: `<hostname>_<uuid>`).
    pub identity: String,
    /// How long others wait after the last change they saw before they take over (15 s).
    pub lease_duration: Duration,
    /// How long a leader keeps working without a successful renewal (10 s).
    pub renew_deadline: Duration,
    /// How often a candidate tries and a leader renews (2 s).
    pub retry_period: Duration,
}

/// The Lease the controllers of `petset server` are elected by.
pub const CONTROLLERS_LEASE: &str = "petset-controller-manager";

impl ElectionConfig {
    /// kube-controller-manager's defaults: 15 s lease, 10 s renew deadline, 2 s retry, in
    /// `kube-system`.
    pub fn new(name: &str, identity: &str) -> Self {
        Self {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate does with the Lease as it last read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// There is no Lease: make it, held by this candidate.
    Create,
    /// Free or expired: take it (a new holder, one more transition).
    TakeOver,
    /// Held by this candidate already (a restart under the same identity): renew it.
    Renew,
    /// Held by another that renews it: try again later.
    Wait,
}

/// The next step, given the Lease's spec (`None`: no Lease), this candidate's identity, and
/// how long ago this candidate last saw the Lease change.
pub fn step(
    spec: Option<&LeaseSpec>,
    identity: &str,
    unchanged_for: Duration,
    default_duration: Duration,
) -> Step {
    let Some(spec) = spec else {
        return Step::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return Step::Renew;
    }
    if holder.is_empty() {
        return Step::TakeOver;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|seconds| u64::try_from(seconds).ok())
        .map_or(default_duration, Duration::from_secs);
    if unchanged_for >= duration {
        Step::TakeOver
    } else {
        Step::Wait
    }
}

/// The spec this candidate writes for `step`, from the spec it read.
fn next_spec(read: Option<&LeaseSpec>, step: Step, config: &ElectionConfig) -> LeaseSpec {
    let now = MicroTime(jiff::Timestamp::now());
    let seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let transitions = read.and_then(|s| s.lease_transitions).unwrap_or(0);
    match (step, read) {
        (Step::Renew, Some(read)) => LeaseSpec {
            renew_time: Some(now),
            lease_duration_seconds: Some(seconds),
            ..read.clone()
        },
        _ => LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            // Upstream counts a change of holder; the first holder is transition 0.
            lease_transitions: Some(match read {
                Some(read)
                    if read
                        .holder_identity
                        .as_deref()
                        .is_some_and(|h| !h.is_empty()) =>
                {
                    transitions.saturating_add(1)
                }
                _ => transitions,
            }),
            ..LeaseSpec::default()
        },
    }
}

/// Runs `start`'s tasks whenever this candidate leads, forever: they are aborted (and
/// awaited) as soon as leadership is lost, and started again once it is won back.
pub async fn run_elected<F>(client: Client, config: ElectionConfig, mut start: F)
where
    F: FnMut() -> JoinSet<()>,
{
    let leases: Api<Lease> = Api::namespaced(client, &config.namespace);
    loop {
        acquire(&leases, &config).await;
        tracing::info!(lease = %config.name, identity = %config.identity, "leading: starting the controllers");
        let mut tasks = start();
        hold(&leases, &config).await;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        tracing::warn!(lease = %config.name, identity = %config.identity, "lost the lease: the controllers stopped");
    }
}

/// Waits until this candidate holds the Lease.
async fn acquire(leases: &Api<Lease>, config: &ElectionConfig) {
    // The last record seen and when it was first seen so: the lease's clock.
    let mut seen: Option<(Option<String>, Instant)> = None;
    loop {
        match tokio::time::timeout(config.retry_period, try_acquire(leases, config, &mut seen))
            .await
        {
            Ok(Ok(true)) => return,
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::debug!(%error, lease = %config.name, "could not take the lease");
            }
            Err(_) => tracing::debug!(lease = %config.name, "taking the lease timed out"),
        }
        tokio::time::sleep(config.retry_period).await;
    }
}

/// One try: reads the Lease and takes it when [`step`] says so; whether this candidate now
/// holds it.
async fn try_acquire(
    leases: &Api<Lease>,
    config: &ElectionConfig,
    seen: &mut Option<(Option<String>, Instant)>,
) -> Result<bool, kube::Error> {
    let current = leases.get_opt(&config.name).await?;
    let version = current
        .as_ref()
        .and_then(|lease| lease.metadata.resource_version.clone());
    let changed_at = match seen {
        Some((seen_version, at)) if *seen_version == version => *at,
        _ => {
            let now = Instant::now();
            *seen = Some((version, now));
            now
        }
    };
    let spec = current.as_ref().and_then(|lease| lease.spec.as_ref());
    let next = step(
        spec,
        &config.identity,
        changed_at.elapsed(),
        config.lease_duration,
    );
    let written = Lease {
        metadata: ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: current
                .as_ref()
                .and_then(|lease| lease.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(next_spec(spec, next, config)),
    };
    let outcome = match next {
        Step::Wait => return Ok(false),
        Step::Create => leases.create(&PostParams::default(), &written).await,
        // The resourceVersion makes it a compare-and-swap: of two candidates, one wins.
        Step::TakeOver | Step::Renew => {
            leases
                .replace(&config.name, &PostParams::default(), &written)
                .await
        }
    };
    match outcome {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Renews the Lease every retry period; returns once leadership is lost: another holds the
/// Lease, or no renewal succeeded for the renew deadline.
async fn hold(leases: &Api<Lease>, config: &ElectionConfig) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(config.retry_period).await;
        let left = config.renew_deadline.saturating_sub(renewed.elapsed());
        if left.is_zero() {
            return;
        }
        match tokio::time::timeout(left, renew(leases, config)).await {
            Ok(Ok(true)) => renewed = Instant::now(),
            Ok(Ok(false)) => return,
            Ok(Err(error)) => {
                tracing::warn!(%error, lease = %config.name, "could not renew the lease");
            }
            Err(_) => return,
        }
    }
}

/// One renewal; `false` when another candidate holds the Lease now.
async fn renew(leases: &Api<Lease>, config: &ElectionConfig) -> Result<bool, kube::Error> {
    let Some(mut lease) = leases.get_opt(&config.name).await? else {
        return Ok(false);
    };
    let spec = lease.spec.as_ref();
    if spec.and_then(|s| s.holder_identity.as_deref()) != Some(config.identity.as_str()) {
        return Ok(false);
    }
    lease.spec = Some(next_spec(spec, Step::Renew, config));
    // A conflict (someone wrote it meanwhile) is not a renewal: the deadline keeps running
    // and the next read says who holds it.
    leases
        .replace(&config.name, &PostParams::default(), &lease)
        .await
        .map(|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            ..LeaseSpec::default()
        }
    }

    const FIFTEEN: Duration = Duration::from_secs(15);

    #[test]
    fn a_missing_lease_is_made_and_a_free_one_taken() {
        assert_eq!(step(None, "a", Duration::ZERO, FIFTEEN), Step::Create);
        assert_eq!(
            step(Some(&held_by("", 15)), "a", Duration::ZERO, FIFTEEN),
            Step::TakeOver
        );
    }

    #[test]
    fn another_holders_lease_is_taken_only_once_it_went_unchanged_for_its_duration() {
        let lease = held_by("b", 15);
        assert_eq!(
            step(Some(&lease), "a", Duration::from_secs(14), FIFTEEN),
            Step::Wait
        );
        assert_eq!(
            step(Some(&lease), "a", Duration::from_secs(15), FIFTEEN),
            Step::TakeOver
        );
        // The lease's own duration counts, not the candidate's.
        assert_eq!(
            step(
                Some(&held_by("b", 40)),
                "a",
                Duration::from_secs(20),
                FIFTEEN
            ),
            Step::Wait
        );
    }

    #[test]
    fn a_restart_under_the_same_identity_renews_at_once() {
        assert_eq!(
            step(Some(&held_by("a", 15)), "a", Duration::ZERO, FIFTEEN),
            Step::Renew
        );
    }

    #[test]
    fn a_change_of_holder_counts_one_transition_and_a_renewal_none() {
        let config = ElectionConfig::new("l", "a");
        let read = LeaseSpec {
            lease_transitions: Some(3),
            ..held_by("b", 15)
        };
        let taken = next_spec(Some(&read), Step::TakeOver, &config);
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert!(taken.acquire_time.is_some() && taken.renew_time.is_some());
        let first = next_spec(None, Step::Create, &config);
        assert_eq!(first.lease_transitions, Some(0));
        let mine = LeaseSpec {
            acquire_time: taken.acquire_time.clone(),
            ..taken.clone()
        };
        let renewed = next_spec(Some(&mine), Step::Renew, &config);
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, taken.acquire_time);
        assert_eq!(renewed.lease_duration_seconds, Some(15));
    }
}
