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
//! **When the agent itself dies or hangs.** Killed -9, or stopped (SIGSTOP) and not continued
//! in time, the agent cannot raise its fence, and runc containers are not its children: they
//! live on. So on a runc node the fence has a second half outside the process,
//! `crate::watchdog` (`petset fence-watchdog`, started with [`Fence::start_watchdog`]): at
//! every renewal that succeeded the fence also writes a heartbeat with the `CLOCK_MONOTONIC`
//! time of its send ([`Fence::heartbeat`], from the same send as [`Fence::renewed`]), and the
//! watchdog kills every container of the node when that is as old as the deadline. Both count
//! from the same renewal, so an agent that is continued after the deadline finds its own fence
//! raised too. A clean stop of the agent tells the watchdog to exit once the containers are
//! stopped ([`Fence::stop_watchdog`]). The simulated node needs none: its pods are bookkeeping
//! in the agent's memory and die with it ([`Fence::with_pods_that_die_with_the_agent`]). A
//! fence that covers the agent's death says so ([`Fence::covers_agent_death`]), and the node
//! advertises it on its Node (`crate::node::FENCE_DEADLINE_ANNOTATION`).
//!
//! **The limit left.** Both halves run on this machine's clock. A whole machine frozen and
//! resumed (a paused VM, a suspended host) stops that clock too: its processes resume before
//! either half can see the time that passed, so it cannot fence itself, as etcd documents for
//! its leases (SIGSTOP of the agent, its watchdog and its containers together is the same case
//! in effect: all of them resume at once). A hardware watchdog (`/dev/watchdog`) is what covers
//! that.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::runtime::PodRuntime;
use crate::watchdog::{Launch, Launcher};

/// How long a node may go without a renewal before it fences itself, by default.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// How long the servers wait after they observed the Lease change before they mark the node
/// Unknown (`crates/controllers/src/nodelifecycle`, upstream's 50 s).
pub const SERVER_GRACE: Duration = Duration::from_secs(50);
/// What a deadline leaves at least of `SERVER_GRACE`, for the kills to be done.
pub const STOP_ALLOWANCE: Duration = Duration::from_secs(10);
/// How long a fence that was not lowered (raised, or not yet held at the agent's start) waits
/// after the renewal that lowers it before containers may start. The servers' failover
/// (`petset_controllers::nodeloss`) deletes a lost node's pods only on a confirmation at most
/// 2 s old that the node's Lease was not renewed: a renewal that lands after such a
/// confirmation may still be followed by the deletes it allows, within those 2 s and the time
/// the requests take. Waiting this long, and then reading each pod afresh (`crate::pods`),
/// means a node that comes back never starts a pod the servers have just moved elsewhere.
pub const RETURN_SETTLE: Duration = Duration::from_secs(5);

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

/// What stops the node's pods when the agent process itself dies or hangs.
#[derive(Clone)]
enum AgentDeath {
    /// Nothing: the fence is off, or only this process runs it.
    Uncovered,
    /// The pods die with the agent process (the simulated node's bookkeeping).
    PodsDieWithTheAgent,
    /// A watchdog process of its own (`crate::watchdog`), fed a heartbeat at every renewal.
    Watchdog(Arc<Launcher>),
}

/// A node's fence, shared by its lease loop (which reports renewals), its watchdog (which
/// raises and lowers it) and its pod workers (which start nothing while it is not lowered).
#[derive(Clone)]
pub struct Fence {
    deadline: Duration,
    /// When the last renewal that succeeded was sent.
    renewals: Arc<watch::Sender<Option<Instant>>>,
    state: Arc<watch::Sender<State>>,
    agent_death: AgentDeath,
    /// Set by a clean stop: no heartbeat is written after it, whatever is still running.
    stopped: Arc<AtomicBool>,
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
            agent_death: AgentDeath::Uncovered,
            stopped: Arc::new(AtomicBool::new(false)),
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
            agent_death: AgentDeath::Uncovered,
            stopped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether the fence ever rises (not `Fence::off`).
    pub fn is_on(&self) -> bool {
        self.deadline != Duration::MAX
    }

    /// This fence with a watchdog outside the agent (`crate::watchdog`), for a node whose
    /// containers outlive the agent process (runc). Nothing runs until `start_watchdog`.
    pub fn with_watchdog(mut self, launcher: Launcher) -> Self {
        if self.is_on() {
            self.agent_death = AgentDeath::Watchdog(Arc::new(launcher));
        }
        self
    }

    /// This fence for a node whose pods die with the agent process (the simulated node: its
    /// containers are bookkeeping in the agent's memory), which therefore needs no watchdog to
    /// cover the agent's death.
    pub fn with_pods_that_die_with_the_agent(mut self) -> Self {
        if self.is_on() {
            self.agent_death = AgentDeath::PodsDieWithTheAgent;
        }
        self
    }

    /// The deadline within which the node's pods are stopped even when the agent process is
    /// killed or hangs, when they are: what the node advertises on its Node
    /// (`crate::node::FENCE_DEADLINE_ANNOTATION`). `None` when the fence is off, covers only a
    /// live agent, or its watchdog could not be started.
    pub fn covers_agent_death(&self) -> Option<Duration> {
        match &self.agent_death {
            AgentDeath::Uncovered => None,
            AgentDeath::PodsDieWithTheAgent => Some(self.deadline),
            AgentDeath::Watchdog(launcher) => launcher.is_running().then_some(self.deadline),
        }
    }

    /// At the node's start, before anything runs: starts the watchdog unless one runs (one of
    /// an earlier run of the agent, killed, keeps counting from its last renewal), once a
    /// heartbeat that can fence nothing is cleared (`Launcher::forget_stale_heartbeat`).
    pub fn start_watchdog(&self) {
        let AgentDeath::Watchdog(launcher) = &self.agent_death else {
            return;
        };
        if let Err(error) = launcher.forget_stale_heartbeat() {
            tracing::warn!(%error, "fence: could not clear an earlier heartbeat");
        }
        ensure_watchdog(launcher);
    }

    /// A renewal that succeeded was sent at `sent_monotonic` (`watchdog::monotonic_now`, read
    /// with the `Instant` given to `renewed`): the heartbeat the watchdog counts from, then a
    /// watchdog if none runs (one that fired or crashed is replaced while the agent lives).
    pub fn heartbeat(&self, sent_monotonic: Duration) {
        let AgentDeath::Watchdog(launcher) = &self.agent_death else {
            return;
        };
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        if let Err(error) = launcher.renewed(sent_monotonic, self.deadline) {
            tracing::error!(%error, "fence: could not write the watchdog's heartbeat");
        }
        ensure_watchdog(launcher);
    }

    /// A clean stop, once the node's containers are stopped: the watchdog exits, killing
    /// nothing, and no heartbeat is written any more.
    pub fn stop_watchdog(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let AgentDeath::Watchdog(launcher) = &self.agent_death
            && let Err(error) = launcher.stopped()
        {
            tracing::error!(%error, "fence: could not tell the watchdog the agent stopped");
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
        // A fence that is off (never rises) has no failover to wait for.
        let settle = if self.deadline == Duration::MAX {
            Duration::ZERO
        } else {
            RETURN_SETTLE
        };
        let mut settled_at: Option<Instant> = None;
        loop {
            let last = *renewals.borrow_and_update();
            let now = Instant::now();
            let mut state = decide(last, now, self.deadline);
            // Lowered only `settle` after the renewal that would lower it (`RETURN_SETTLE`).
            let current = self.state();
            if state == State::Lowered && current != State::Lowered {
                let at = *settled_at.get_or_insert(now + settle);
                if now < at {
                    state = current;
                }
            } else {
                settled_at = None;
            }
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
                State::Unheld | State::Raised => settled_at,
            };
            tokio::select! {
                changed = renewals.changed() => if changed.is_err() { return },
                () = sleep_until(wake) => {}
            }
        }
    }
}

/// Starts a watchdog unless one runs; says so when none could be.
fn ensure_watchdog(launcher: &Launcher) {
    match launcher.ensure_running() {
        Ok(Launch::AlreadyRunning) => {}
        Ok(Launch::Started(pid)) => tracing::debug!(pid, "fence: started a watchdog"),
        Err(error) => tracing::error!(
            %error,
            "fence: no watchdog runs; the containers would outlive a killed agent"
        ),
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
    /// deadline, killing what runs, and lowers it `RETURN_SETTLE` after the next renewal.
    #[tokio::test(start_paused = true)]
    async fn the_watchdog_kills_at_the_deadline_and_lowers_at_the_next_renewal() {
        use std::str::FromStr;

        use petset_runtime::network::Cidr;
        use petset_runtime::pods::SandboxConfig;

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
        let config = runtime.container_for_tests("app");
        let app = runtime
            .start("p1", &config, std::path::Path::new("/nonexistent"))
            .expect("app");
        let fence = Fence::new(DEADLINE).expect("fence");
        let start = Instant::now();
        fence.renewed(start);
        let watchdog = tokio::spawn(fence.clone().watch(runtime.clone()));
        fence.lowered().await;
        // Not before the return settle: the servers may be deleting what it would start.
        assert!(Instant::now() >= start + RETURN_SETTLE);
        tokio::time::advance(DEADLINE - RETURN_SETTLE - Duration::from_secs(1)).await;
        assert_eq!(fence.state(), State::Lowered);
        // Nothing renews: the clock runs on to the deadline, where the container is killed.
        assert_eq!(app.exit.await, None, "killed");
        assert_eq!(fence.state(), State::Raised);
        assert!(Instant::now() >= start + DEADLINE);
        let renewed = Instant::now();
        fence.renewed(renewed);
        fence.lowered().await;
        assert_eq!(fence.state(), State::Lowered);
        assert!(Instant::now() >= renewed + RETURN_SETTLE);
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
