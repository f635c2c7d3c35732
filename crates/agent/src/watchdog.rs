//! The fence watchdog: the half of the self-fence (`crate::fence`) that does not depend on the
//! agent process. runc containers are not the agent's children and outlive it, so an agent
//! killed -9, or stopped (SIGSTOP) and never continued, would leave them running past the
//! deadline the node promised. The watchdog is `petset fence-watchdog`, a process of its own
//! (its own process group, nothing of the agent's open but the files it was given), which
//! watches a heartbeat the agent writes and kills every container of its node when the
//! heartbeat is as old as the deadline.
//!
//! **The heartbeat** (`DIR/fence/heartbeat`, written through a rename so a reader sees the old
//! file or the new one) holds, after each renewal of the node's Lease that succeeded, the
//! `CLOCK_MONOTONIC` time (system-wide, unlike a process's `Instant`) at which that renewal
//! was *sent*, the same instant the agent's own fence counts from, with the deadline and the
//! machine's boot id:
//!
//! ```text
//! renewed
//! boot_id 5b1d…
//! sent_monotonic_ns 123456789012
//! deadline_ms 30000
//! ```
//!
//! or `stopped`, which a clean stop of the agent writes once its own containers are stopped:
//! the watchdog then exits, killing nothing. The watchdog reads it every 500 ms (and wakes at
//! the deadline) and compares with its own `CLOCK_MONOTONIC`. No heartbeat (an agent before
//! its first renewal, which started no container), or one of an earlier boot (whose processes
//! died with that boot), is nothing to fence; a heartbeat of an earlier run of the agent on
//! this boot counts: an agent killed -9 and started again keeps the old deadline running until
//! it renews.
//!
//! **The fence**: once `now - sent >= deadline`, every container of this node's runtime root
//! (`runc --root ROOT/runc list`, each `runc kill … KILL`) and every process in the cgroups of
//! its pods (`ROOT/pods/<id>`, `petset_runtime::pods::kill_pod_cgroups`) is killed, and only
//! those: other nodes on the machine share the cgroup hierarchy `/petset/`, not the pods.
//! Containers are killed, not removed (removing sandboxes stays the agent's). Then the marker
//! `DIR/fence/fenced` says when and why, and the watchdog exits.
//!
//! **One per node**: the watchdog holds an exclusive lock on `DIR/fence/watchdog.lock` (with its
//! pid written in it) for its whole life; a second one exits at once. The agent starts one
//! ([`Launcher::ensure_running`]) at its start and after each renewal when none holds the lock,
//! so one that fired or crashed is replaced while the agent lives. Its log is
//! `DIR/fence/watchdog.log`.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the watchdog reads the heartbeat.
pub const POLL: Duration = Duration::from_millis(500);

/// The watchdog's files, and the runtime root whose containers it kills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `DIR/fence`: the heartbeat, the lock, the log and the marker.
    pub fence_dir: PathBuf,
    /// The node's runtime root (`runc/` is runc's `--root`, `pods/<id>/` one per pod).
    pub runtime_root: PathBuf,
}

impl Paths {
    pub fn new(fence_dir: impl Into<PathBuf>, runtime_root: impl Into<PathBuf>) -> Self {
        Self {
            fence_dir: fence_dir.into(),
            runtime_root: runtime_root.into(),
        }
    }

    pub fn heartbeat(&self) -> PathBuf {
        self.fence_dir.join("heartbeat")
    }

    pub fn lock(&self) -> PathBuf {
        self.fence_dir.join("watchdog.lock")
    }

    pub fn log(&self) -> PathBuf {
        self.fence_dir.join("watchdog.log")
    }

    /// Written when the watchdog fenced the node.
    pub fn marker(&self) -> PathBuf {
        self.fence_dir.join("fenced")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a heartbeat: {reason}")]
    Heartbeat { path: PathBuf, reason: String },
    #[error("starting the fence watchdog {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WatchdogError + '_ {
    move |source| WatchdogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `CLOCK_MONOTONIC` now: one clock for every process of the machine, so the agent's
/// heartbeat and the watchdog's reading of it compare (a process's `Instant` has no value
/// another process can read). It stops while the machine is suspended, as the agent's
/// timers do, so both count alike.
pub fn monotonic_now() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // The kernel never gives a negative time or more than a second of nanoseconds.
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u32::try_from(now.tv_nsec).unwrap_or(0);
    Duration::new(seconds, nanos)
}

/// This boot's id: a monotonic time means nothing across a reboot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_string())
        .unwrap_or_default()
}

/// What the agent last said in the heartbeat file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heartbeat {
    /// A renewal that succeeded was sent at `sent` (`CLOCK_MONOTONIC` of boot `boot_id`);
    /// the node fences itself `deadline` later unless another one succeeds.
    Renewed {
        boot_id: String,
        sent: Duration,
        deadline: Duration,
    },
    /// The agent stopped cleanly, its containers first: nothing is left to fence.
    Stopped,
}

impl Heartbeat {
    /// The file's text (see the module's documentation).
    pub fn format(&self) -> String {
        match self {
            Heartbeat::Renewed {
                boot_id,
                sent,
                deadline,
            } => format!(
                "renewed\nboot_id {boot_id}\nsent_monotonic_ns {}\ndeadline_ms {}\n",
                sent.as_nanos(),
                deadline.as_millis()
            ),
            Heartbeat::Stopped => "stopped\n".to_string(),
        }
    }

    /// Reads `format`'s text back; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        match lines.next() {
            Some("stopped") => return Ok(Heartbeat::Stopped),
            Some("renewed") => {}
            Some(other) => return Err(format!("unknown kind {other:?}")),
            None => return Err("empty".into()),
        }
        let (mut boot_id, mut sent, mut deadline) = (None, None, None);
        for line in lines {
            let (key, value) = line
                .split_once(' ')
                .ok_or_else(|| format!("{line:?} is not `key value`"))?;
            let value = value.trim();
            let slot = match key {
                "boot_id" => &mut boot_id,
                "sent_monotonic_ns" => &mut sent,
                "deadline_ms" => &mut deadline,
                // Later fields are for later readers.
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(format!("{key} given twice"));
            }
        }
        let number = |key: &str, value: Option<&str>| -> Result<u64, String> {
            let value = value.ok_or_else(|| format!("no {key}"))?;
            value
                .parse()
                .map_err(|_| format!("{key} {value:?} is not a number"))
        };
        let sent = Duration::from_nanos(number("sent_monotonic_ns", sent)?);
        let deadline = Duration::from_millis(number("deadline_ms", deadline)?);
        // A deadline the agent's fence would refuse is none an agent wrote.
        crate::fence::check_deadline(deadline)?;
        Ok(Heartbeat::Renewed {
            boot_id: boot_id.ok_or("no boot_id")?.to_string(),
            sent,
            deadline,
        })
    }
}

/// Writes `text` to `path` through a rename, so that a reader sees the old file or the new one,
/// never half of one.
fn write_atomically(path: &Path, text: &str) -> Result<(), WatchdogError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, text).map_err(io(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io(path))
}

/// The heartbeat at `path`; `None` when there is none.
pub fn read_heartbeat(path: &Path) -> Result<Option<Heartbeat>, WatchdogError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Heartbeat::parse(&text)
            .map(Some)
            .map_err(|reason| WatchdogError::Heartbeat {
                path: path.to_path_buf(),
                reason,
            }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io(path)(error)),
    }
}

/// Writes `heartbeat` into `path` (the agent's side).
pub fn write_heartbeat(path: &Path, heartbeat: &Heartbeat) -> Result<(), WatchdogError> {
    write_atomically(path, &heartbeat.format())
}

/// What the watchdog does, given the last heartbeat it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to fence (no heartbeat, or one of another boot): look again later.
    Idle,
    /// The node holds its Lease: fence at this `CLOCK_MONOTONIC` time unless a renewal
    /// comes first.
    DueAt(Duration),
    /// The deadline passed since the last renewal was sent: kill every container.
    Fence,
    /// The agent stopped cleanly: exit, killing nothing.
    Exit,
}

/// The decision, pure: `heartbeat` as last read, on boot `boot_id`, at `now`
/// (`CLOCK_MONOTONIC`). The same rule as the agent's fence (`crate::fence::decide`): raised
/// once `now - sent >= deadline`.
pub fn decide(heartbeat: Option<&Heartbeat>, boot_id: &str, now: Duration) -> Decision {
    match heartbeat {
        None => Decision::Idle,
        Some(Heartbeat::Stopped) => Decision::Exit,
        Some(Heartbeat::Renewed { boot_id: of, .. }) if of != boot_id => Decision::Idle,
        Some(Heartbeat::Renewed { sent, deadline, .. }) => {
            if now.saturating_sub(*sent) >= *deadline {
                Decision::Fence
            } else {
                Decision::DueAt(*sent + *deadline)
            }
        }
    }
}

/// How a watchdog's life ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Another watchdog holds this node's lock: this one did nothing.
    AnotherRuns,
    /// The agent stopped cleanly: nothing was killed.
    Stopped,
    /// The deadline passed: every container was killed.
    Fenced(Fenced),
}

/// What a fence did, as the marker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fenced {
    /// When the kills began (`CLOCK_MONOTONIC`).
    pub at: Duration,
    /// When the last renewal that succeeded was sent, and the deadline it gave.
    pub sent: Duration,
    pub deadline: Duration,
    /// The runc containers killed, and the pods whose cgroups were emptied.
    pub containers: Vec<String>,
    pub pods: Vec<String>,
}

impl Fenced {
    /// The marker's text: `fenced`, then `key value` lines.
    pub fn format(&self, boot_id: &str) -> String {
        let late = self.at.saturating_sub(self.sent);
        format!(
            "fenced\nboot_id {boot_id}\nfenced_monotonic_ns {}\nfenced_at {}\nsent_monotonic_ns {}\ndeadline_ms {}\ncontainers {}\npods {}\nreason the agent did not renew the node's Lease for {:.1}s (deadline {}s): every container of the node was killed\n",
            self.at.as_nanos(),
            jiff::Timestamp::now(),
            self.sent.as_nanos(),
            self.deadline.as_millis(),
            self.containers.join(" "),
            self.pods.join(" "),
            late.as_secs_f64(),
            self.deadline.as_secs_f64(),
        )
    }
}

/// The renewal a marker (`Fenced::format`) says was fenced: its boot and its send.
fn fenced_renewal(marker: &str) -> Option<(String, Duration)> {
    let mut lines = marker.lines();
    if lines.next()? != "fenced" {
        return None;
    }
    let (mut boot, mut sent) = (None, None);
    for line in lines {
        match line.split_once(' ') {
            Some(("boot_id", value)) => boot = Some(value.to_string()),
            Some(("sent_monotonic_ns", value)) => {
                sent = value.parse().ok().map(Duration::from_nanos);
            }
            _ => {}
        }
    }
    Some((boot?, sent?))
}

/// The watchdog itself (`petset fence-watchdog`): takes the node's lock (or returns
/// `AnotherRuns` at once), then watches the heartbeat until the agent stops cleanly or the
/// deadline passes, which it fences. Blocks the calling thread for the watchdog's life.
pub fn run(paths: &Paths) -> Result<Outcome, WatchdogError> {
    std::fs::create_dir_all(&paths.fence_dir).map_err(io(&paths.fence_dir))?;
    let lock_path = paths.lock();
    let Some(mut lock) = try_lock(&lock_path)? else {
        tracing::info!(lock = %lock_path.display(), "another fence watchdog watches this node");
        return Ok(Outcome::AnotherRuns);
    };
    // The holder's pid, for whoever wonders which process it is (the lock is what counts).
    let pid = format!("{}\n", std::process::id());
    lock.set_len(0)
        .and_then(|()| lock.write_all(pid.as_bytes()))
        .map_err(io(&lock_path))?;
    let boot = boot_id();
    let heartbeat_path = paths.heartbeat();
    tracing::info!(
        heartbeat = %heartbeat_path.display(),
        runtime_root = %paths.runtime_root.display(),
        "the fence watchdog watches the node"
    );
    let mut last = None;
    let mut unreadable = false;
    loop {
        match read_heartbeat(&heartbeat_path) {
            Ok(Some(heartbeat)) => {
                last = Some(heartbeat);
                unreadable = false;
            }
            // A heartbeat that vanished is no renewal: the last one keeps counting (the node's
            // data removed under a live watchdog is fenced at its deadline all the same).
            // Never heard of and the node's directory gone: there is nothing to watch.
            Ok(None) => {
                if last.is_none() && !paths.fence_dir.exists() {
                    tracing::info!("the node's directory is gone; the fence watchdog exits");
                    return Ok(Outcome::Stopped);
                }
            }
            // The last good one keeps counting: a file that cannot be read is no renewal.
            Err(error) => {
                if !unreadable {
                    tracing::error!(%error, "the fence watchdog cannot read the heartbeat");
                }
                unreadable = true;
            }
        }
        let now = monotonic_now();
        match decide(last.as_ref(), &boot, now) {
            Decision::Idle => std::thread::sleep(POLL),
            Decision::DueAt(at) => std::thread::sleep(POLL.min(at.saturating_sub(now))),
            Decision::Exit => {
                tracing::info!("the agent stopped cleanly; the fence watchdog exits");
                return Ok(Outcome::Stopped);
            }
            Decision::Fence => {
                let Some(Heartbeat::Renewed { sent, deadline, .. }) = last.clone() else {
                    // `decide` fences only on a renewal; never spin.
                    std::thread::sleep(POLL);
                    continue;
                };
                tracing::error!(
                    late = ?now.saturating_sub(sent),
                    ?deadline,
                    "fence watchdog: the agent did not renew the node's Lease within the deadline; killing every container of the node"
                );
                let (containers, pods) = kill_node(&paths.runtime_root);
                let fenced = Fenced {
                    at: now,
                    sent,
                    deadline,
                    containers,
                    pods,
                };
                let marker = paths.marker();
                if let Err(error) = write_atomically(&marker, &fenced.format(&boot)) {
                    tracing::error!(%error, "the fence watchdog could not write its marker");
                }
                tracing::error!(
                    containers = ?fenced.containers,
                    pods = ?fenced.pods,
                    marker = %marker.display(),
                    "fence watchdog: the node is fenced; exiting"
                );
                return Ok(Outcome::Fenced(fenced));
            }
        }
    }
}

/// The lock at `path`, held for as long as the file is open; `None` when another process holds
/// it.
fn try_lock(path: &Path) -> Result<Option<File>, WatchdogError> {
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io(path))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(error)) => Err(io(path)(error)),
    }
}

/// Kills every runc container of the runtime root at `root` and every process in its pods'
/// cgroups; returns the containers and the pods. Errors are logged, not returned: whatever
/// can be killed is.
fn kill_node(root: &Path) -> (Vec<String>, Vec<String>) {
    let runc_root = root.join("runc");
    let listed = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["list", "--quiet"])
        .stdin(Stdio::null())
        .output();
    let containers: Vec<String> = match listed {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect(),
        Ok(output) => {
            tracing::error!(
                stderr = %String::from_utf8_lossy(&output.stderr).trim(),
                "fence watchdog: runc list failed; killing by cgroup only"
            );
            Vec::new()
        }
        Err(error) => {
            tracing::error!(%error, "fence watchdog: cannot run runc; killing by cgroup only");
            Vec::new()
        }
    };
    for id in &containers {
        let killed = Command::new("runc")
            .arg("--root")
            .arg(&runc_root)
            .args(["kill", id, "KILL"])
            .stdin(Stdio::null())
            .output();
        match killed {
            Ok(output) if output.status.success() => {}
            // A container that is not running is no failure.
            Ok(output) => tracing::debug!(
                container = %id,
                stderr = %String::from_utf8_lossy(&output.stderr).trim(),
                "runc kill"
            ),
            Err(error) => tracing::error!(%error, container = %id, "runc kill"),
        }
    }
    let pods_dir = root.join("pods");
    let mut pods: Vec<String> = std::fs::read_dir(&pods_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    pods.sort();
    for pod in &pods {
        petset_runtime::pods::kill_pod_cgroups(pod);
    }
    (containers, pods)
}

/// Whether a watchdog was started, as `Launcher::ensure_running` found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// One holds the node's lock already.
    AlreadyRunning,
    /// None did: this process id was started.
    Started(u32),
}

/// The agent's side: writes the heartbeat and keeps a watchdog running.
pub struct Launcher {
    paths: Paths,
    /// The watchdog's command line (`petset fence-watchdog …`, which the binary composes).
    program: PathBuf,
    args: Vec<OsString>,
    /// Watchdogs this process started, reaped once they exit.
    children: Mutex<Vec<Child>>,
    /// Whether the last look found a watchdog running or started one.
    running: AtomicBool,
}

impl Launcher {
    pub fn new(paths: Paths, program: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        Self {
            paths,
            program: program.into(),
            args,
            children: Mutex::new(Vec::new()),
            running: AtomicBool::new(false),
        }
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// Whether a watchdog was running (or started) at the last `ensure_running`.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// At the agent's start: a heartbeat that can fence nothing goes (an earlier clean stop's
    /// `stopped`, a renewal of an earlier boot, or one a watchdog fenced already, as its marker
    /// says), so that the watchdog started now neither takes the earlier stop for this agent's
    /// nor kills again, maybe what this agent starts meanwhile. Any other renewal of this boot
    /// stays: its deadline still runs.
    pub fn forget_stale_heartbeat(&self) -> Result<(), WatchdogError> {
        let path = self.paths.heartbeat();
        let boot = boot_id();
        let fenced = std::fs::read_to_string(self.paths.marker())
            .ok()
            .and_then(|marker| fenced_renewal(&marker));
        let stale = match read_heartbeat(&path) {
            Ok(None) => false,
            Ok(Some(Heartbeat::Stopped)) => true,
            Ok(Some(Heartbeat::Renewed {
                boot_id: of, sent, ..
            })) => of != boot || fenced == Some((of, sent)),
            // Unreadable: no watchdog could count from it either.
            Err(WatchdogError::Heartbeat { .. }) => true,
            Err(error) => return Err(error),
        };
        if stale {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(io(&path)(error)),
            }
        }
        Ok(())
    }

    /// Records a renewal that succeeded, sent at `sent` (`CLOCK_MONOTONIC`), for the watchdog.
    pub fn renewed(&self, sent: Duration, deadline: Duration) -> Result<(), WatchdogError> {
        let heartbeat = Heartbeat::Renewed {
            boot_id: boot_id(),
            sent,
            deadline,
        };
        write_heartbeat(&self.paths.heartbeat(), &heartbeat)
    }

    /// Tells the watchdog that the agent stopped cleanly (its containers first): it exits,
    /// killing nothing.
    pub fn stopped(&self) -> Result<(), WatchdogError> {
        write_heartbeat(&self.paths.heartbeat(), &Heartbeat::Stopped)
    }

    /// Starts a watchdog unless one holds the node's lock. It runs in a process group of its
    /// own (a kill of the agent's group does not reach it), from `/`, with stdin and stdout
    /// on `/dev/null`, stderr appended to `DIR/fence/watchdog.log`, and no other descriptor
    /// (`petset_runtime::detach`).
    pub fn ensure_running(&self) -> Result<Launch, WatchdogError> {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.retain_mut(|child| matches!(child.try_wait(), Ok(None)));
        let launch = self.launch();
        self.running.store(launch.is_ok(), Ordering::SeqCst);
        let (launch, child) = launch?;
        children.extend(child);
        Ok(launch)
    }

    fn launch(&self) -> Result<(Launch, Option<Child>), WatchdogError> {
        std::fs::create_dir_all(&self.paths.fence_dir).map_err(io(&self.paths.fence_dir))?;
        match try_lock(&self.paths.lock())? {
            None => return Ok((Launch::AlreadyRunning, None)),
            // Let go at once: the watchdog is to take it.
            Some(lock) => drop(lock),
        }
        // bash would start and only then fail to exec it: said here, where it can be.
        if !self.program.is_file() {
            return Err(WatchdogError::Spawn {
                program: self.program.clone(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let log_path = self.paths.log();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        let child = petset_runtime::detach::detached(&self.program)
            .args(&self.args)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| WatchdogError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        tracing::info!(pid = child.id(), log = %log_path.display(), "started the fence watchdog");
        Ok((Launch::Started(child.id()), Some(child)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEADLINE: Duration = Duration::from_secs(30);

    fn renewed(boot: &str, sent: Duration) -> Heartbeat {
        Heartbeat::Renewed {
            boot_id: boot.into(),
            sent,
            deadline: DEADLINE,
        }
    }

    #[test]
    fn a_heartbeat_reads_back_as_written() {
        let heartbeat = Heartbeat::Renewed {
            boot_id: "5b1d0c2e-7a4f-4e3b-9c1d-2f6a8b9c0d1e".into(),
            sent: Duration::new(123_456, 789),
            deadline: Duration::from_millis(2_500),
        };
        let text = heartbeat.format();
        assert_eq!(
            text,
            "renewed\nboot_id 5b1d0c2e-7a4f-4e3b-9c1d-2f6a8b9c0d1e\nsent_monotonic_ns 123456000000789\ndeadline_ms 2500\n"
        );
        assert_eq!(Heartbeat::parse(&text), Ok(heartbeat));
        assert_eq!(Heartbeat::parse("stopped\n"), Ok(Heartbeat::Stopped));
        // Fields a later agent adds are left for later readers.
        let extended = format!("{text}next_field 7\n");
        assert!(Heartbeat::parse(&extended).is_ok());
    }

    #[test]
    fn a_heartbeat_that_is_not_one_an_agent_wrote_is_refused() {
        let cases = [
            ("", "empty"),
            ("beating\n", "unknown kind"),
            (
                "renewed\nboot_id b\ndeadline_ms 30000\n",
                "no sent_monotonic_ns",
            ),
            (
                "renewed\nboot_id b\nsent_monotonic_ns x\ndeadline_ms 30000\n",
                "not a number",
            ),
            (
                "renewed\nboot_id b\nsent_monotonic_ns 1\nsent_monotonic_ns 2\ndeadline_ms 30000\n",
                "twice",
            ),
            (
                "renewed\nboot_id b\nsent_monotonic_ns 1\ndeadline_ms 0\n",
                "zero",
            ),
            (
                "renewed\nboot_id b\nsent_monotonic_ns 1\ndeadline_ms 60000\n",
                "at most",
            ),
            (
                "renewed\nsent_monotonic_ns 1\ndeadline_ms 30000\n",
                "no boot_id",
            ),
            ("renewed\nboot_id\n", "not `key value`"),
        ];
        for (text, expected) in cases {
            let error = Heartbeat::parse(text).expect_err(text);
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn the_watchdog_fences_at_the_deadline_counted_from_the_renewal_sent() {
        let sent = Duration::from_secs(1_000);
        let heartbeat = renewed("b", sent);
        assert_eq!(
            decide(Some(&heartbeat), "b", sent),
            Decision::DueAt(sent + DEADLINE)
        );
        let just_before = sent + DEADLINE - Duration::from_nanos(1);
        assert_eq!(
            decide(Some(&heartbeat), "b", just_before),
            Decision::DueAt(sent + DEADLINE)
        );
        assert_eq!(
            decide(Some(&heartbeat), "b", sent + DEADLINE),
            Decision::Fence
        );
        assert_eq!(
            decide(Some(&heartbeat), "b", sent + Duration::from_secs(3_600)),
            Decision::Fence
        );
    }

    #[test]
    fn no_heartbeat_or_one_of_another_boot_is_nothing_to_fence_and_a_stop_ends_the_watch() {
        let long_after = Duration::from_secs(1_000_000);
        assert_eq!(decide(None, "b", long_after), Decision::Idle);
        let earlier_boot = renewed("a", Duration::from_secs(5));
        assert_eq!(decide(Some(&earlier_boot), "b", long_after), Decision::Idle);
        assert_eq!(
            decide(Some(&Heartbeat::Stopped), "b", long_after),
            Decision::Exit
        );
    }

    #[test]
    fn the_marker_says_when_and_why() {
        let fenced = Fenced {
            at: Duration::from_secs(131),
            sent: Duration::from_secs(100),
            deadline: DEADLINE,
            containers: vec!["pabc-app".into(), "pabc-side".into()],
            pods: vec!["pabc".into()],
        };
        let text = fenced.format("b");
        assert_eq!(
            fenced_renewal(&text),
            Some(("b".to_string(), Duration::from_secs(100)))
        );
        assert_eq!(fenced_renewal("renewed\nboot_id b\n"), None);
        assert!(text.starts_with("fenced\nboot_id b\nfenced_monotonic_ns 131000000000\n"));
        assert!(
            text.contains("\ncontainers pabc-app pabc-side\npods pabc\n"),
            "{text}"
        );
        assert!(
            text.contains("did not renew the node's Lease for 31.0s (deadline 30s)"),
            "{text}"
        );
    }

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let before = monotonic_now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(monotonic_now() > before);
    }
}
