use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use petset_apiserver::test_cluster::TestCluster;
use tokio::time::Instant;

use super::*;

fn held_by(holder: &str) -> Record {
    Record {
        holder: holder.into(),
        lease_duration_seconds: 15,
        acquire_time: Some(jiff::Timestamp::UNIX_EPOCH),
        renew_time: Some(jiff::Timestamp::UNIX_EPOCH),
        transitions: 3,
    }
}

fn seen(record: Record, since: Instant) -> Observation {
    Observation { record, since }
}

#[test]
fn a_lease_nobody_holds_may_be_taken_at_once() {
    let now = Instant::now();
    let released = Record {
        lease_duration_seconds: 1,
        ..held_by("")
    };
    assert_eq!(decide("b", &seen(released, now), now), Decision::Take);
}

#[test]
fn another_holders_lease_may_be_taken_only_once_it_expired_on_our_clock() {
    let since = Instant::now();
    let observed = seen(held_by("a"), since);
    assert_eq!(decide("b", &observed, since), Decision::Wait);
    let almost = since + Duration::from_secs(15) - Duration::from_millis(1);
    assert_eq!(decide("b", &observed, almost), Decision::Wait);
    let expired = since + Duration::from_secs(15);
    assert_eq!(decide("b", &observed, expired), Decision::Take);
}

#[test]
fn a_renewal_seen_restarts_the_expiry_clock_and_an_unchanged_lease_does_not() {
    let first = Instant::now();
    let later = first + Duration::from_secs(10);
    let unchanged =
        Observation::after_reading(Some(seen(held_by("a"), first)), held_by("a"), later);
    assert_eq!(unchanged.since, first);
    let renewed = Record {
        renew_time: Some(jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(10)),
        ..held_by("a")
    };
    let after = Observation::after_reading(Some(seen(held_by("a"), first)), renewed, later);
    assert_eq!(after.since, later);
    assert_eq!(
        decide("b", &after, first + Duration::from_secs(16)),
        Decision::Wait
    );
}

#[test]
fn the_holder_renews_its_own_lease_even_when_it_looks_expired() {
    let since = Instant::now();
    let observed = seen(held_by("a"), since);
    assert_eq!(
        decide("a", &observed, since + Duration::from_secs(60)),
        Decision::Renew
    );
}

#[test]
fn a_renewal_keeps_the_term_and_a_take_over_starts_a_new_one() {
    let now = jiff::Timestamp::UNIX_EPOCH + jiff::SignedDuration::from_secs(100);
    let lease = Duration::from_secs(15);
    let renewed = next_record("a", Decision::Renew, &held_by("a"), lease, now);
    assert_eq!(
        renewed,
        Some(Record {
            renew_time: Some(now),
            ..held_by("a")
        })
    );
    let taken = next_record("b", Decision::Take, &held_by("a"), lease, now);
    assert_eq!(
        taken,
        Some(Record {
            holder: "b".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(now),
            renew_time: Some(now),
            transitions: 4,
        })
    );
    assert_eq!(
        next_record("b", Decision::Wait, &held_by("a"), lease, now),
        None
    );
    assert_eq!(first_record("a", lease, now).transitions, 0);
}

#[test]
fn timings_where_a_holder_could_outlive_its_lease_are_refused() {
    let refused = |timing: Timing, identity: &str| {
        Election::new("kube-system", "x", identity)
            .with_timing(timing)
            .check()
            .err()
            .map(|e| e.to_string())
    };
    let secs = Duration::from_secs;
    assert_eq!(refused(Timing::default(), "a"), None);
    assert_eq!(
        refused(
            Timing {
                lease_duration: secs(10),
                ..Timing::default()
            },
            "a"
        )
        .as_deref(),
        Some("invalid leader election: leaseDuration must be greater than renewDeadline")
    );
    assert_eq!(
        refused(
            Timing {
                retry_period: secs(9),
                ..Timing::default()
            },
            "a"
        )
        .as_deref(),
        Some(
            "invalid leader election: renewDeadline must be greater than retryPeriod*JitterFactor"
        )
    );
    assert_eq!(
        refused(Timing::default(), "").as_deref(),
        Some("invalid leader election: Lock identity is empty")
    );
}

/// Short enough for a test to see expiries; the rules are the same at any scale.
fn quick() -> Timing {
    Timing {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_secs(1),
        retry_period: Duration::from_millis(200),
    }
}

const PATIENCE: Duration = Duration::from_secs(30);

fn candidate(cluster: &TestCluster, identity: &str) -> Leadership {
    let election =
        Election::new("kube-system", "petset-controllers", identity).with_timing(quick());
    start(cluster.client(), election).expect("valid election")
}

async fn lease(cluster: &TestCluster) -> Record {
    let leases: Api<Lease> = Api::namespaced(cluster.client(), "kube-system");
    Record::of(&leases.get("petset-controllers").await.expect("the lease"))
}

/// A candidate that has become the leader.
async fn leader(cluster: &TestCluster, identity: &str) -> Leadership {
    let mut elected = candidate(cluster, identity);
    let acquired = tokio::time::timeout(PATIENCE, elected.acquired()).await;
    assert_eq!(acquired.ok(), Some(true), "{identity} leads alone");
    elected
}

/// Waits (boundedly) until `candidate`'s status satisfies `condition`.
async fn until(candidate: &mut Leadership, condition: impl FnMut(&Status) -> bool) -> Status {
    tokio::time::timeout(PATIENCE, candidate.wait_for(condition))
        .await
        .expect("the campaign got there in time")
}

/// Of two candidates one leads and the other, seeing it hold the Lease, does not; when the
/// leader stops renewing (a crash: no release), the other takes over once the Lease expired.
#[tokio::test]
async fn exactly_one_of_two_leads_and_the_other_takes_over_when_it_stops_renewing() {
    let cluster = TestCluster::start().await;
    let mut a = candidate(&cluster, "a");
    let mut b = candidate(&cluster, "b");
    let leader = tokio::time::timeout(PATIENCE, async {
        tokio::select! {
            _ = a.acquired() => "a",
            _ = b.acquired() => "b",
        }
    })
    .await
    .expect("someone leads");
    let (winner, mut other, other_name) = if leader == "a" {
        (a, b, "b")
    } else {
        (b, a, "a")
    };
    until(&mut other, |s| s.holder == leader).await;
    assert!(winner.is_leader());
    assert!(!other.is_leader(), "{:?}", other.status());
    let first = lease(&cluster).await;
    assert_eq!(first.holder, leader);
    assert_eq!(first.lease_duration_seconds, 2);

    drop(winner);
    let status = until(&mut other, |s| s.role == Role::Leading).await;
    assert_eq!(status.holder, other_name);
    let second = lease(&cluster).await;
    assert_eq!(second.holder, other_name);
    assert_eq!(second.transitions, first.transitions + 1);
    assert!(second.acquire_time > first.acquire_time);
    assert!(other.is_leader());
}

/// A holder that steps down releases the Lease, so the other candidate need not wait for it
/// to expire (and it records the hand-over as one more transition).
#[tokio::test]
async fn a_holder_that_steps_down_releases_the_lease_to_the_other() {
    let cluster = TestCluster::start().await;
    let a = leader(&cluster, "a").await;
    let mut b = candidate(&cluster, "b");
    until(&mut b, |s| s.holder == "a").await;
    a.step_down().await;
    let released = lease(&cluster).await;
    assert!(
        released.holder.is_empty() || released.holder == "b",
        "{released:?}"
    );
    until(&mut b, |s| s.role == Role::Leading).await;
    let taken = lease(&cluster).await;
    assert_eq!(taken.holder, "b");
    assert_eq!(taken.transitions, 1);
}

/// A holder whose Lease someone else took (as a partition looks from the holder's side: it
/// cannot renew) reports that it lost the lead, and does not take it back while the other
/// keeps it valid.
#[tokio::test]
async fn a_holder_that_cannot_renew_reports_that_it_lost() {
    let cluster = TestCluster::start().await;
    let mut a = leader(&cluster, "a").await;
    let leases: Api<Lease> = Api::namespaced(cluster.client(), "kube-system");
    // An intruder that keeps renewing under another identity.
    let intruder = tokio::spawn(async move {
        loop {
            if let Ok(mut lease) = leases.get("petset-controllers").await {
                let now = jiff::Timestamp::now();
                let record = Record {
                    holder: "intruder".into(),
                    lease_duration_seconds: 2,
                    acquire_time: Some(now),
                    renew_time: Some(now),
                    transitions: 7,
                };
                lease.spec = Some(record.write_into(lease.spec.take()));
                let _ = leases
                    .replace("petset-controllers", &PostParams::default(), &lease)
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    tokio::time::timeout(PATIENCE, a.lost())
        .await
        .expect("a noticed");
    intruder.abort();
    assert_eq!(a.status().role, Role::Lost);
    assert_eq!(lease(&cluster).await.holder, "intruder");
}
