//! Leader election over one API: of two candidates only one runs its work; when the leader
//! dies the other takes over after the lease duration, counting a transition; a leader whose
//! Lease is taken from it stops its work and competes again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, PostParams};
use petset_controllers::leader::{ElectionConfig, run_elected};
use tokio::task::JoinSet;

use crate::support::{Running, cluster, eventually};

/// Fast timings, in upstream's proportions, so that a take-over happens within a test.
fn config(identity: &str) -> ElectionConfig {
    ElectionConfig {
        lease_duration: Duration::from_millis(1500),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(100),
        ..ElectionConfig::new("test-controllers", identity)
    }
}

/// Who runs their work right now, and whether two ever did at once.
#[derive(Default)]
struct Leading {
    now: Vec<String>,
    overlaps: usize,
}

/// Present in `Leading` while its task lives.
struct Mark(Arc<Mutex<Leading>>, String);

impl Drop for Mark {
    fn drop(&mut self) {
        let mut leading = self.0.lock().expect("lock");
        leading.now.retain(|who| *who != self.1);
    }
}

/// A candidate whose work marks it as leading.
fn candidate(client: &Client, identity: &str, leading: &Arc<Mutex<Leading>>) -> Running {
    let leading = leading.clone();
    let who = identity.to_string();
    Running::default().with(run_elected(client.clone(), config(identity), move || {
        let mut tasks = JoinSet::new();
        let (leading, who) = (leading.clone(), who.clone());
        tasks.spawn(async move {
            {
                let mut state = leading.lock().expect("lock");
                if !state.now.is_empty() {
                    state.overlaps += 1;
                }
                state.now.push(who.clone());
            }
            let _mark = Mark(leading, who);
            std::future::pending::<()>().await;
        });
        tasks
    }))
}

fn leaders(leading: &Arc<Mutex<Leading>>) -> Vec<String> {
    leading.lock().expect("lock").now.clone()
}

async fn lease(client: &Client) -> Result<Lease, String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    leases
        .get("test-controllers")
        .await
        .map_err(|e| e.to_string())
}

fn holder_and_transitions(lease: &Lease) -> (String, i32) {
    let spec = lease.spec.as_ref().expect("spec");
    (
        spec.holder_identity.clone().unwrap_or_default(),
        spec.lease_transitions.unwrap_or_default(),
    )
}

/// Waits until the leader has renewed its Lease `times` more times.
async fn renewals(client: &Client, times: usize) {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    eventually("the leader renews its lease", || {
        let (client, seen) = (client.clone(), seen.clone());
        async move {
            let lease = lease(&client).await?;
            let renewed = format!("{:?}", lease.spec.and_then(|s| s.renew_time));
            let mut seen = seen.lock().expect("lock");
            if !seen.contains(&renewed) {
                seen.push(renewed);
            }
            if seen.len() > times {
                Ok(())
            } else {
                Err(format!("{} renewals seen", seen.len()))
            }
        }
    })
    .await;
}

#[tokio::test]
async fn one_of_two_candidates_leads_and_the_other_takes_over_when_it_dies() {
    let (_cluster, client) = cluster().await;
    let leading = Arc::new(Mutex::new(Leading::default()));
    let first = candidate(&client, "server-a", &leading);
    eventually("server-a leads", || async {
        (leaders(&leading) == ["server-a"])
            .then_some(())
            .ok_or_else(|| format!("{:?}", leaders(&leading)))
    })
    .await;
    let second = candidate(&client, "server-b", &leading);
    renewals(&client, 3).await;
    assert_eq!(leaders(&leading), ["server-a"], "server-b leads too");
    assert_eq!(
        holder_and_transitions(&lease(&client).await.expect("lease")),
        ("server-a".to_string(), 0)
    );

    drop(first);
    eventually("server-b takes over", || async {
        (leaders(&leading) == ["server-b"])
            .then_some(())
            .ok_or_else(|| format!("{:?}", leaders(&leading)))
    })
    .await;
    assert_eq!(
        holder_and_transitions(&lease(&client).await.expect("lease")),
        ("server-b".to_string(), 1)
    );
    assert_eq!(leading.lock().expect("lock").overlaps, 0);
    drop(second);
}

#[tokio::test]
async fn a_leader_whose_lease_is_taken_stops_its_work_and_competes_again() {
    let (_cluster, client) = cluster().await;
    let leading = Arc::new(Mutex::new(Leading::default()));
    let _only = candidate(&client, "server-a", &leading);
    eventually("server-a leads", || async {
        (leaders(&leading) == ["server-a"])
            .then_some(())
            .ok_or_else(|| format!("{:?}", leaders(&leading)))
    })
    .await;
    // Another holder writes itself in (and then never renews).
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut taken = lease(&client).await.expect("lease");
    if let Some(spec) = taken.spec.as_mut() {
        spec.holder_identity = Some("intruder".into());
    }
    leases
        .replace("test-controllers", &PostParams::default(), &taken)
        .await
        .expect("take the lease");
    eventually("server-a stops its work", || async {
        leaders(&leading)
            .is_empty()
            .then_some(())
            .ok_or_else(|| format!("{:?}", leaders(&leading)))
    })
    .await;
    eventually(
        "server-a leads again once the intruder's lease expired",
        || async {
            (leaders(&leading) == ["server-a"])
                .then_some(())
                .ok_or_else(|| format!("{:?}", leaders(&leading)))
        },
    )
    .await;
    let (holder, transitions) = holder_and_transitions(&lease(&client).await.expect("lease"));
    assert_eq!(holder, "server-a");
    assert_eq!(
        transitions, 1,
        "the intruder's write kept the count; server-a's is one more"
    );
    assert_eq!(leading.lock().expect("lock").overlaps, 0);
}
