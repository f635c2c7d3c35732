//! Leader election over a `coordination.k8s.io/v1` Lease, with client-go's leaderelection
//! semantics, so that of several processes running one component exactly one acts:
//!
//! - a candidate takes the Lease only when nobody holds it or its holder has not renewed it
//!   for `leaseDurationSeconds` (15 s by default);
//! - the holder renews it every `retryPeriod` (2 s) and gives up leading when it could not
//!   renew for `renewDeadline` (10 s), before any other candidate may take it over;
//! - every write is guarded by the resourceVersion that was read, so of two candidates racing
//!   for one Lease, one wins and the other sees a conflict;
//! - expiry is measured on the candidate's own clock from the moment it first saw the Lease
//!   unchanged, never from the `renewTime` written by another machine, so clocks need not agree
//!   (client-go's observed time).
//!
//! The decision itself is the pure [`decide`]; [`start`] runs a campaign and hands back a
//! [`Leadership`] that tells the holder when it leads and when it lost.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::errors::is_conflict;

/// client-go's `JitterFactor`: a candidate waits between one and 2.2 retry periods.
const JITTER_FACTOR: f64 = 1.2;

/// How long leases last and how often they are renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a holder's Lease stays valid without renewal (`leaseDurationSeconds`).
    pub lease_duration: Duration,
    /// How long a holder keeps trying to renew before it stops leading.
    pub renew_deadline: Duration,
    /// How often candidates try to take the Lease and the holder renews it.
    pub retry_period: Duration,
}

impl Default for Timing {
    /// kube-controller-manager's defaults.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// One election: which Lease, and who is asking.
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    /// This candidate's name, unique among the candidates (written as `holderIdentity`).
    pub identity: String,
    pub timing: Timing,
}

impl Election {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            timing: Timing::default(),
        }
    }

    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// client-go's checks, in its words: a holder must give up before others may take over.
    fn check(&self) -> Result<(), LeaderError> {
        let Timing {
            lease_duration,
            renew_deadline,
            retry_period,
        } = self.timing;
        let invalid = if lease_duration <= renew_deadline {
            Some("leaseDuration must be greater than renewDeadline")
        } else if renew_deadline.as_secs_f64() <= JITTER_FACTOR * retry_period.as_secs_f64() {
            Some("renewDeadline must be greater than retryPeriod*JitterFactor")
        } else if lease_duration < Duration::from_secs(1) {
            // The Lease holds whole seconds.
            Some("leaseDuration must be greater than zero")
        } else if retry_period.is_zero() {
            Some("retryPeriod must be greater than zero")
        } else if self.identity.is_empty() {
            Some("Lock identity is empty")
        } else {
            None
        };
        invalid.map_or(Ok(()), |reason| Err(LeaderError::InvalidConfig(reason)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid leader election: {0}")]
    InvalidConfig(&'static str),
}

/// What election reads and writes of a Lease (client-go's `LeaderElectionRecord`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Empty when nobody holds it (a holder that stepped down).
    pub holder: String,
    pub lease_duration_seconds: i32,
    pub acquire_time: Option<jiff::Timestamp>,
    pub renew_time: Option<jiff::Timestamp>,
    pub transitions: i32,
}

impl Record {
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        Self {
            holder: spec.holder_identity.unwrap_or_default(),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec.acquire_time.map(|t| t.0),
            renew_time: spec.renew_time.map(|t| t.0),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    /// `spec` with this record written into it (other fields, such as a strategy, kept).
    fn write_into(&self, spec: Option<LeaseSpec>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            lease_duration_seconds: Some(self.lease_duration_seconds),
            acquire_time: self.acquire_time.map(MicroTime),
            renew_time: self.renew_time.map(MicroTime),
            lease_transitions: Some(self.transitions),
            ..spec.unwrap_or_default()
        }
    }
}

/// A Lease as one candidate last saw it, and when by its own clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub record: Record,
    pub since: Instant,
}

impl Observation {
    /// The observation after reading `record` at `now`: the same record keeps its first
    /// sighting (its expiry clock keeps running), a changed one starts over.
    pub fn after_reading(previous: Option<Observation>, record: Record, now: Instant) -> Self {
        match previous {
            Some(seen) if seen.record == record => seen,
            _ => Self { record, since: now },
        }
    }
}

/// What a candidate does with the Lease it observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: renew it.
    Renew,
    /// Nobody holds it, or its holder let it expire: take it.
    Take,
    /// Another holder's Lease is still valid.
    Wait,
}

/// May `identity` take or renew the Lease it observed, at `now`?
pub fn decide(identity: &str, observed: &Observation, now: Instant) -> Decision {
    let record = &observed.record;
    if record.holder == identity {
        return Decision::Renew;
    }
    let duration = Duration::from_secs(u64::try_from(record.lease_duration_seconds).unwrap_or(0));
    let expires = observed
        .since
        .checked_add(duration)
        .unwrap_or(observed.since);
    if !record.holder.is_empty() && expires > now {
        Decision::Wait
    } else {
        Decision::Take
    }
}

/// The record `identity` writes for a decision to renew or take (`None` for [`Decision::Wait`]):
/// a renewal keeps the acquire time and the transition count, a take-over starts a new term.
pub fn next_record(
    identity: &str,
    decision: Decision,
    current: &Record,
    lease_duration: Duration,
    now: jiff::Timestamp,
) -> Option<Record> {
    let lease_duration_seconds = whole_seconds(lease_duration);
    match decision {
        Decision::Wait => None,
        Decision::Renew => Some(Record {
            holder: identity.to_string(),
            lease_duration_seconds,
            acquire_time: current.acquire_time.or(Some(now)),
            renew_time: Some(now),
            transitions: current.transitions,
        }),
        Decision::Take => Some(Record {
            holder: identity.to_string(),
            lease_duration_seconds,
            acquire_time: Some(now),
            renew_time: Some(now),
            transitions: current.transitions.saturating_add(1),
        }),
    }
}

/// The record of a Lease `identity` creates: the first term, no transitions yet.
pub fn first_record(identity: &str, lease_duration: Duration, now: jiff::Timestamp) -> Record {
    Record {
        holder: identity.to_string(),
        lease_duration_seconds: whole_seconds(lease_duration),
        acquire_time: Some(now),
        renew_time: Some(now),
        transitions: 0,
    }
}

fn whole_seconds(duration: Duration) -> i32 {
    i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)
}

/// Where a candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Trying to take the Lease.
    Candidate,
    /// Holding it: the work that needs a single actor may run.
    Leading,
    /// It led and no longer does (it could not renew in time, or stepped down). Final: the work
    /// must stop; a new election starts a new campaign.
    Lost,
}

/// What a campaign reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub role: Role,
    /// The holder this candidate last saw on the Lease ("" when none).
    pub holder: String,
}

/// A running campaign. Dropping it abandons the Lease without a word (as a crash would: others
/// take over once it expires); [`Leadership::step_down`] hands it over at once.
pub struct Leadership {
    status: watch::Receiver<Status>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Starts campaigning for `election`'s Lease through `client`.
pub fn start(client: Client, election: Election) -> Result<Leadership, LeaderError> {
    election.check()?;
    let (status, receiver) = watch::channel(Status {
        role: Role::Candidate,
        holder: String::new(),
    });
    let (stop, stopped) = oneshot::channel();
    let campaign = Campaign {
        leases: Api::namespaced(client, &election.namespace),
        election,
        observed: None,
        status,
    };
    Ok(Leadership {
        status: receiver,
        stop: Some(stop),
        task: Some(tokio::spawn(campaign.run(stopped))),
    })
}

impl Leadership {
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        self.status.borrow().role == Role::Leading
    }

    /// Waits until the status satisfies `condition`, and returns it.
    pub async fn wait_for(&mut self, condition: impl FnMut(&Status) -> bool) -> Status {
        let reached = self.status.wait_for(condition).await.map(|s| s.clone());
        // An error means the campaign has ended: its last word stands.
        reached.unwrap_or_else(|_| self.status())
    }

    /// Waits until this candidate leads; `false` when its campaign ended first.
    pub async fn acquired(&mut self) -> bool {
        self.wait_for(|s| s.role != Role::Candidate).await.role == Role::Leading
    }

    /// Waits until this holder has lost the lead (never returns for a candidate that does not
    /// get it).
    pub async fn lost(&mut self) {
        self.wait_for(|s| s.role == Role::Lost).await;
    }

    /// Stops campaigning; a holder releases the Lease (no holder, a one-second duration, as
    /// client-go's `ReleaseOnCancel`) so another candidate takes over without waiting for expiry.
    pub async fn step_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

struct Campaign {
    leases: Api<Lease>,
    election: Election,
    observed: Option<Observation>,
    status: watch::Sender<Status>,
}

impl Campaign {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        tokio::select! {
            () = self.campaign() => {}
            Ok(()) = &mut stopped => {
                if self.status.borrow().role == Role::Leading {
                    self.release().await;
                }
            }
        }
        self.status.send_modify(|s| {
            if s.role == Role::Leading {
                s.role = Role::Lost;
            }
        });
    }

    /// Acquires, then renews until a renewal misses its deadline.
    async fn campaign(&mut self) {
        let timing = self.election.timing;
        loop {
            if self.try_acquire_or_renew(timing.lease_duration).await {
                break;
            }
            tokio::time::sleep(jittered(timing.retry_period)).await;
        }
        tracing::info!(lease = %self.election.name, identity = %self.election.identity, "became leader");
        self.status.send_modify(|s| s.role = Role::Leading);
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(timing.retry_period).await;
            let attempt = Instant::now();
            let deadline = renewed + timing.renew_deadline;
            let budget = deadline.saturating_duration_since(attempt);
            if tokio::time::timeout(budget, self.try_acquire_or_renew(budget))
                .await
                .unwrap_or(false)
            {
                // Measured from before the write: others saw the renewal only after it.
                renewed = attempt;
            } else if Instant::now() >= deadline {
                tracing::warn!(lease = %self.election.name, identity = %self.election.identity, "failed to renew the lease in time; stopped leading");
                self.status.send_modify(|s| s.role = Role::Lost);
                return;
            }
        }
    }

    /// One round of client-go's tryAcquireOrRenew: read the Lease, decide, write it guarded by
    /// the resourceVersion read. Whether this candidate holds the Lease now.
    async fn try_acquire_or_renew(&mut self, budget: Duration) -> bool {
        match tokio::time::timeout(budget, self.acquire_or_renew()).await {
            Ok(Ok(held)) => held,
            Ok(Err(error)) => {
                tracing::debug!(%error, lease = %self.election.name, "leader election round failed");
                false
            }
            Err(_) => false,
        }
    }

    async fn acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        let identity = self.election.identity.clone();
        let lease_duration = self.election.timing.lease_duration;
        let Some(lease) = self.leases.get_opt(&self.election.name).await? else {
            let record = first_record(&identity, lease_duration, jiff::Timestamp::now());
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.election.name.clone()),
                    namespace: Some(self.election.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(record.write_into(None)),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(self.wrote(record, now)),
                Err(error) if is_conflict(&error) => Ok(false),
                Err(error) => Err(error),
            };
        };
        let observed = Observation::after_reading(self.observed.take(), Record::of(&lease), now);
        let decision = decide(&identity, &observed, now);
        let current = observed.record.clone();
        self.observe(observed);
        let Some(record) = next_record(
            &identity,
            decision,
            &current,
            lease_duration,
            jiff::Timestamp::now(),
        ) else {
            return Ok(false);
        };
        let mut next = lease;
        next.spec = Some(record.write_into(next.spec.take()));
        match self
            .leases
            .replace(&next.name_any(), &PostParams::default(), &next)
            .await
        {
            Ok(_) => Ok(self.wrote(record, now)),
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn observe(&mut self, observed: Observation) {
        let holder = observed.record.holder.clone();
        self.status.send_if_modified(|s| {
            let changed = s.holder != holder;
            s.holder = holder;
            changed
        });
        self.observed = Some(observed);
    }

    fn wrote(&mut self, record: Record, now: Instant) -> bool {
        self.observe(Observation { record, since: now });
        true
    }

    /// Hands the Lease over: no holder, and a duration of one second.
    async fn release(&mut self) {
        let result = async {
            let Some(mut lease) = self.leases.get_opt(&self.election.name).await? else {
                return Ok(());
            };
            let current = Record::of(&lease);
            if current.holder != self.election.identity {
                return Ok(());
            }
            let now = jiff::Timestamp::now();
            let released = Record {
                holder: String::new(),
                lease_duration_seconds: 1,
                acquire_time: Some(now),
                renew_time: Some(now),
                transitions: current.transitions,
            };
            lease.spec = Some(released.write_into(lease.spec.take()));
            self.leases
                .replace(&self.election.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        .await;
        if let Err(error) = result {
            tracing::debug!(%error, lease = %self.election.name, "could not release the lease; it expires instead");
        }
    }
}

/// A wait between one and `1 + JITTER_FACTOR` periods, so candidates do not retry in step.
fn jittered(period: Duration) -> Duration {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = (random % 1000) as f64 / 1000.0;
    period.mul_f64(1.0 + JITTER_FACTOR * fraction)
}

#[cfg(test)]
mod tests;
