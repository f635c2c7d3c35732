//! Self-fencing: a node that cannot renew its Lease stops its pods' processes before a deadline
//! shorter than the time the servers wait before they call it lost (multinode.md §3.8).
//!
//! The lease loop (`crate::node::keep_fenced_lease`) tells the fence the monotonic instant at
//! which each renewal that succeeded was *sent* ([`Fence::renewed`]): the server may have
//! observed it at any time after that, never before, so counting from the send errs on the safe
//! side. A watchdog of its own ([`Fence::watch`], independent of the API connection: a renewal
//! stuck in a request does not delay it) raises the fence once `now - last_sent >= deadline`;
//! raising kills every container of every pod at once, through the runtime (SIGKILL, no grace:
//! they must be gone before the deadline, not start a graceful stop then), and while it is
//! raised no container starts (`crate::pods` waits for it, marks the containers `NodeFenced`
//! and records a Warning event). Only the next renewal that succeeds lowers it.
//!
//! **The margin.** The servers' node lifecycle controller marks a node Unknown
//! [`SERVER_GRACE`] (50 s, `--node-monitor-grace-period` since 1.32) after *it observed* the
//! node's Lease change, which is no earlier than the node sent the renewal. The default deadline
//! is [`DEFAULT_DEADLINE`] (30 s: three renewal periods of 10 s, so two lost renewals and their
//! retries pass unfenced). That leaves 20 s between the raise and the earliest moment the
//! servers may call the node lost, for: the watchdog waking on a loaded machine, the kills
//! (`runc kill` per container: milliseconds), and the rate difference of two monotonic clocks
//! (parts per million). A configured deadline must leave at least [`STOP_ALLOWANCE`] (10 s) of
//! it ([`Fence::new`] refuses one that does not). Anything the servers do after Unknown (the
//! NoExecute taint's `tolerationSeconds`, a fenced failover's own wait) only widens it.
//!
//! **Before the first renewal** the node does not hold its Lease yet ([`State::Unheld`]): no
//! container starts, nothing needs killing (this process started none), and nothing is logged
//! as fenced.
//!
//! **The limit.** The fence runs on this machine's clock. A whole machine frozen and resumed (a
//! paused VM, a suspended host, SIGSTOP of petset and its containers alike) stops that clock
//! too: its processes resume before the watchdog can see the time that passed, so it cannot
//! fence itself, as etcd documents for its leases. Neither can an agent that crashed while its
//! runc containers live on (the next start sweeps them); a hardware watchdog
//! (`/dev/watchdog`) is what covers those.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::runtime::PodRuntime;

/// How long a node may go without a renewal before it fences itself, by default.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// How long the servers wait after they observed the Lease change before they mark the node
/// Unknown (`crates/controllers/src/nodelifecycle`, upstream's 50 s).
pub const SERVER_GRACE: Duration = Duration::from_secs(50);
/// What a deadline leaves at least of `SERVER_GRACE`, for the kills to be done.
pub const STOP_ALLOWANCE: Duration = Duration::from_secs(10);

/// The fence's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No renewal has succeeded yet: containers wait for the first.
    Unheld,
    /// The Lease was renewed within the deadline: containers may run.
    Lowered,
    /// The Lease was not renewed within the deadline: no container runs.
    Raised,
}

impl State {
    pub fn may_start(self) -> bool {
        self == State::Lowered
    }
}

/// The decision, pure: where the fence is at `now`, given when the last renewal that succeeded
/// was sent (`None`: none has yet).
pub fn decide(last_renewal_sent: Option<Instant>, now: Instant, deadline: Duration) -> State {
    match last_renewal_sent {
        None => State::Unheld,
        Some(sent) if now.saturating_duration_since(sent) >= deadline => State::Raised,
        Some(_) => State::Lowered,
    }
}

/// When the fence rises unless a renewal succeeds first (`None`: not while none has).
pub fn raises_at(last_renewal_sent: Option<Instant>, deadline: Duration) -> Option<Instant> {
    last_renewal_sent.and_then(|sent| sent.checked_add(deadline))
}

/// Whether `deadline` leaves the kills their time before the servers' grace runs out.
pub fn check_deadline(deadline: Duration) -> Result<(), String> {
    if deadline.is_zero() {
        return Err("the fence deadline must be longer than zero".into());
    }
    if deadline + STOP_ALLOWANCE > SERVER_GRACE {
        return Err(format!(
            "the fence deadline ({deadline:?}) must leave {STOP_ALLOWANCE:?} of the servers' {SERVER_GRACE:?} grace to stop containers: at most {:?}",
            SERVER_GRACE - STOP_ALLOWANCE
        ));
    }
    Ok(())
}

/// A node's fence, shared by its lease loop (which reports renewals), its watchdog (which
/// raises and lowers it) and its pod workers (which start nothing while it is not lowered).
#[derive(Clone)]
pub struct Fence {
    deadline: Duration,
    /// When the last renewal that succeeded was sent.
    renewals: Arc<watch::Sender<Option<Instant>>>,
    state: Arc<watch::Sender<State>>,
}

impl Fence {
    /// A fence raised `deadline` after the last renewal; refused when it leaves too little of
    /// the servers' grace (`check_deadline`).
    pub fn new(deadline: Duration) -> Result<Self, String> {
        check_deadline(deadline)?;
        Ok(Self {
            deadline,
            renewals: Arc::new(watch::channel(None).0),
            state: Arc::new(watch::channel(State::Unheld).0),
        })
    }

    /// A fence that never rises: the node keeps its pods whatever happens to its Lease.
    /// The default until the servers replace a lost node's pods (the fence's only purpose):
    /// a fence also kills every pod when the whole control plane is down for its deadline,
    /// which a node cannot tell from being cut off alone.
    pub fn off() -> Self {
        Self {
            deadline: Duration::MAX,
            renewals: Arc::new(watch::channel(None).0),
            state: Arc::new(watch::channel(State::Unheld).0),
        }
    }

    /// The default fence (`DEFAULT_DEADLINE`).
    pub fn default_deadline() -> Self {
        Self::new(DEFAULT_DEADLINE).expect("the default deadline is valid")
    }

    /// A fence that is lowered and stays so (no watchdog): for tests of the pod workers.
    #[cfg(test)]
    pub(crate) fn lowered_for_tests() -> Self {
        let fence = Self::default_deadline();
        fence.state.send_replace(State::Lowered);
        fence
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// A renewal sent at `sent` succeeded.
    pub fn renewed(&self, sent: Instant) {
        self.renewals.send_if_modified(|last| {
            if last.is_none_or(|last| sent > last) {
                *last = Some(sent);
                true
            } else {
                false
            }
        });
    }

    /// Returns once the fence is lowered (at once when it is).
    pub async fn lowered(&self) {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|s| s.may_start()).await;
    }

    /// Why containers do not start while the fence is raised, as a pod's event and status say.
    pub fn message(&self) -> String {
        format!(
            "the node could not renew its Lease for {}s; containers are stopped until it can",
            self.deadline.as_secs_f64()
        )
    }

    /// The watchdog: raises the fence when the deadline passes without a renewal (killing every
    /// container of `runtime`'s pods), lowers it at the next renewal. Runs until aborted.
    pub async fn watch(self, runtime: Arc<dyn PodRuntime>) {
        let mut renewals = self.renewals.subscribe();
        loop {
            let last = *renewals.borrow_and_update();
            let state = decide(last, Instant::now(), self.deadline);
            let previous = self.state.send_replace(state);
            match (previous, state) {
                (State::Raised, State::Raised) | (State::Lowered, State::Lowered) => {}
                (_, State::Raised) => {
                    tracing::error!(
                        deadline = ?self.deadline,
                        "fence raised: the node could not renew its Lease within the deadline; killing every container, and starting none until it can"
                    );
                    kill_all(&runtime).await;
                }
                (State::Raised, State::Lowered) => {
                    tracing::error!(
                        "fence lowered: the node renewed its Lease; containers may start again"
                    );
                }
                (_, State::Lowered) => tracing::debug!("the node holds its Lease"),
                (_, State::Unheld) => {}
            }
            let wake = match state {
                State::Lowered => raises_at(last, self.deadline),
                State::Unheld | State::Raised => None,
            };
            tokio::select! {
                changed = renewals.changed() => if changed.is_err() { return },
                () = sleep_until(wake) => {}
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Kills every container of every pod the runtime has, at once.
async fn kill_all(runtime: &Arc<dyn PodRuntime>) {
    let runtime = runtime.clone();
    let killed = tokio::task::spawn_blocking(move || {
        for pod in runtime.pods() {
            if let Err(error) = runtime.kill_all(&pod) {
                tracing::error!(%error, pod, "fence: could not kill the pod's containers");
            }
        }
    })
    .await;
    if let Err(error) = killed {
        tracing::error!(%error, "fence: the kills failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(30);

    #[test]
    fn the_fence_rises_at_the_deadline_counted_from_the_last_renewal_sent() {
        let sent = Instant::now();
        assert_eq!(decide(Some(sent), sent, DEADLINE), State::Lowered);
        let just_before = sent + DEADLINE - Duration::from_millis(1);
        assert_eq!(decide(Some(sent), just_before, DEADLINE), State::Lowered);
        assert_eq!(decide(Some(sent), sent + DEADLINE, DEADLINE), State::Raised);
        let long_after = sent + Duration::from_secs(3600);
        assert_eq!(decide(Some(sent), long_after, DEADLINE), State::Raised);
        assert_eq!(raises_at(Some(sent), DEADLINE), Some(sent + DEADLINE));
    }

    #[test]
    fn a_renewal_lowers_it_only_when_it_was_sent_within_the_deadline() {
        let start = Instant::now();
        let raised_at = start + DEADLINE;
        assert_eq!(decide(Some(start), raised_at, DEADLINE), State::Raised);
        // A renewal sent after the raise lowers it.
        let resent = raised_at + Duration::from_secs(2);
        let answered = resent + Duration::from_secs(1);
        assert_eq!(decide(Some(resent), answered, DEADLINE), State::Lowered);
        // A renewal whose answer took longer than the deadline does not: the server may
        // have observed it as early as it was sent.
        let slow = start + Duration::from_secs(5);
        let slow_answer = slow + DEADLINE + Duration::from_secs(1);
        assert_eq!(decide(Some(slow), slow_answer, DEADLINE), State::Raised);
    }

    #[test]
    fn before_the_first_renewal_the_lease_is_not_held_and_nothing_rises() {
        let now = Instant::now();
        assert_eq!(decide(None, now, DEADLINE), State::Unheld);
        assert_eq!(
            decide(None, now + Duration::from_secs(3600), DEADLINE),
            State::Unheld
        );
        assert_eq!(raises_at(None, DEADLINE), None);
        assert!(!State::Unheld.may_start());
        assert!(!State::Raised.may_start());
        assert!(State::Lowered.may_start());
    }

    #[test]
    fn a_deadline_must_leave_time_to_stop_containers_before_the_servers_grace() {
        assert_eq!(check_deadline(DEFAULT_DEADLINE), Ok(()));
        assert_eq!(check_deadline(SERVER_GRACE - STOP_ALLOWANCE), Ok(()));
        assert_eq!(check_deadline(Duration::from_secs(1)), Ok(()));
        assert!(check_deadline(SERVER_GRACE - STOP_ALLOWANCE + Duration::from_millis(1)).is_err());
        assert!(check_deadline(SERVER_GRACE).is_err());
        assert!(check_deadline(Duration::ZERO).is_err());
        assert!(Fence::new(SERVER_GRACE).is_err());
    }

    /// The watchdog on tokio's paused clock (no real time passes): it raises the fence at the
    /// deadline, killing what runs, and lowers it at the next renewal.
    #[tokio::test(start_paused = true)]
    async fn the_watchdog_kills_at_the_deadline_and_lowers_at_the_next_renewal() {
        use std::str::FromStr;

        use petset_runtime::network::Cidr;
        use petset_runtime::pods::{ContainerConfig, SandboxConfig};

        use crate::runtimes::simulated::SimulatedRuntime;

        let cidr = Cidr::from_str("10.213.7.0/24").expect("cidr");
        let runtime = Arc::new(SimulatedRuntime::new(&cidr));
        let sandbox = SandboxConfig {
            id: "p1".into(),
            hostname: "web-0".into(),
            host_names: "web-0".into(),
            resolv_conf: String::new(),
        };
        runtime.create_sandbox(&sandbox).expect("sandbox");
        let config = ContainerConfig {
            name: "app".into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: "/".into(),
            mounts: Vec::new(),
            memory_limit_bytes: None,
            cpu_limit_millis: None,
            stdin: false,
            tty: false,
            image: runtime.image("busybox").expect("image"),
        };
        let app = runtime
            .start("p1", &config, std::path::Path::new("/nonexistent"))
            .expect("app");
        let fence = Fence::new(DEADLINE).expect("fence");
        let start = Instant::now();
        fence.renewed(start);
        let watchdog = tokio::spawn(fence.clone().watch(runtime.clone()));
        fence.lowered().await;
        tokio::time::advance(DEADLINE - Duration::from_secs(1)).await;
        assert_eq!(fence.state(), State::Lowered);
        // Nothing renews: the clock runs on to the deadline, where the container is killed.
        assert_eq!(app.exit.await, None, "killed");
        assert_eq!(fence.state(), State::Raised);
        assert!(Instant::now() >= start + DEADLINE);
        fence.renewed(Instant::now());
        fence.lowered().await;
        assert_eq!(fence.state(), State::Lowered);
        watchdog.abort();
    }

    #[test]
    fn renewals_only_move_forward() {
        let fence = Fence::new(DEADLINE).expect("fence");
        let sent = Instant::now();
        fence.renewed(sent + Duration::from_secs(5));
        fence.renewed(sent);
        assert_eq!(
            *fence.renewals.borrow(),
            Some(sent + Duration::from_secs(5))
        );
        assert_eq!(fence.state(), State::Unheld, "the watchdog moves it");
        assert_eq!(
            fence.message(),
            "the node could not renew its Lease for 30s; containers are stopped until it can"
        );
    }
}
