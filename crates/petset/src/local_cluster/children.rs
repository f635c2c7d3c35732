//! The processes of a local cluster: started with their output in a log file of their own,
//! stopped by pid (SIGTERM, a grace period, then SIGKILL), and found again by pid and start
//! time after a crash of the `cluster up` that started them.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;

use super::record::RecordedProcess;

/// How long a stopping node or server may take before it is killed.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(20);

/// One process of the cluster (the server, or one node's agent).
pub(crate) struct ClusterProcess {
    /// `server`, or the node's name.
    pub role: String,
    pub log: PathBuf,
    pid: u32,
    child: tokio::process::Child,
    exited: Option<ExitStatus>,
}

/// What to run and where its output goes.
pub(crate) struct Launch<'a> {
    pub role: &'a str,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The network namespace it runs in (else the host's).
    pub namespace: Option<&'a str>,
    pub log: &'a Path,
}

/// Starts a process of the cluster. It gets SIGTERM should this process die first (util-linux
/// `setpriv --pdeathsig`, kept across the `nsenter` and `petset` execs): a `cluster up` killed
/// with SIGKILL still stops its nodes, which stop their pods. The signal is tied to the thread
/// that forks, so this must run on a thread that lives as long as the cluster (the thread of
/// `block_on`, which runs `cluster up` itself, does).
pub(crate) fn spawn(launch: Launch<'_>) -> anyhow::Result<ClusterProcess> {
    if let Some(parent) = launch.log.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(launch.log)
        .with_context(|| format!("opening {}", launch.log.display()))?;
    let log_err = log
        .try_clone()
        .with_context(|| format!("opening {}", launch.log.display()))?;
    let argv = match launch.namespace {
        Some(namespace) => {
            let command = super::netns::in_namespace(namespace, &launch.argv);
            std::iter::once(command.get_program().to_string_lossy().into_owned())
                .chain(command.get_args().map(|a| a.to_string_lossy().into_owned()))
                .collect()
        }
        None => launch.argv,
    };
    let mut command = tokio::process::Command::new("setpriv");
    command
        .args(["--pdeathsig", "TERM", "--"])
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        // A group of its own: Ctrl-C in the terminal reaches `cluster up` alone, which then
        // stops the nodes before the server.
        .process_group(0);
    let child = command
        .spawn()
        .with_context(|| format!("starting {} ({})", launch.role, argv.join(" ")))?;
    let pid = child
        .id()
        .with_context(|| format!("{} exited as it started", launch.role))?;
    Ok(ClusterProcess {
        role: launch.role.to_string(),
        log: launch.log.to_path_buf(),
        pid,
        child,
        exited: None,
    })
}

impl ClusterProcess {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What `cluster.json` keeps of it.
    pub fn recorded(&self) -> RecordedProcess {
        RecordedProcess {
            role: self.role.clone(),
            pid: self.pid,
            start_time: start_time(self.pid).unwrap_or_default(),
        }
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits until it exits.
    pub async fn wait(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        match self.child.wait().await {
            Ok(status) => {
                self.exited = Some(status);
                status
            }
            // Only when it was never ours to wait for; then it is not running either.
            Err(_) => std::future::pending().await,
        }
    }

    /// An error for a process that exited before it should have, naming its log.
    pub fn died(&self, status: ExitStatus) -> anyhow::Error {
        anyhow::anyhow!(
            "{} exited unexpectedly ({status}); its log is {}",
            self.role,
            self.log.display()
        )
    }
}

/// Stops `processes` together: SIGTERM to each still running, then up to `grace` for them to
/// exit, then SIGKILL for those that did not.
pub(crate) async fn stop_all(processes: &mut [ClusterProcess], grace: Duration) {
    for process in processes.iter_mut() {
        if process.exited().is_none() {
            signal(process.pid, "TERM");
        }
    }
    let waits = processes.iter_mut().map(|process| async move {
        if tokio::time::timeout(grace, process.wait()).await.is_err() {
            tracing::warn!(
                role = %process.role,
                pid = process.pid,
                "did not stop within {} s of SIGTERM; killing it",
                grace.as_secs()
            );
            let _ = process.child.start_kill();
            process.wait().await;
        }
    });
    futures::future::join_all(waits).await;
}

/// Stops a process a previous run of the cluster started, if it still runs (the same pid with
/// the same start time), as `stop_all` does.
pub(crate) async fn stop_recorded(process: &RecordedProcess, grace: Duration) {
    let still_ours = || start_time(process.pid) == Some(process.start_time);
    if !still_ours() {
        return;
    }
    tracing::info!(role = %process.role, pid = process.pid, "stopping a process a previous run left");
    signal(process.pid, "TERM");
    if !gone_within(grace, still_ours).await {
        signal(process.pid, "KILL");
        gone_within(Duration::from_secs(5), still_ours).await;
    }
}

async fn gone_within(timeout: Duration, still_there: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while still_there() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// When a running process started (clock ticks since boot, `/proc/<pid>/stat` field 22);
/// `None` once it is gone or a zombie.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Signals a process by pid through kill(1), which keeps this crate free of `unsafe`.
fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_process_has_a_start_time_and_keeps_it() {
        let me = std::process::id();
        let first = start_time(me).expect("this process runs");
        assert_eq!(start_time(me), Some(first));
        assert_eq!(start_time(u32::MAX), None);
    }

    #[tokio::test]
    async fn a_process_that_ignores_sigterm_is_killed_after_the_grace_period() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("stubborn.log");
        let mut processes = vec![
            spawn(Launch {
                role: "stubborn",
                argv: [
                    "sh",
                    "-c",
                    "trap '' TERM; echo up; while :; do sleep 0.1; done",
                ]
                .map(String::from)
                .to_vec(),
                namespace: None,
                log: &log,
            })
            .expect("spawn"),
        ];
        assert!(
            petset_testkit::wait_until(Duration::from_secs(30), || {
                std::fs::read_to_string(&log).is_ok_and(|text| text.contains("up"))
            }),
            "the stand-in never started"
        );
        let recorded = processes[0].recorded();
        assert_ne!(recorded.start_time, 0);
        stop_all(&mut processes, Duration::from_millis(300)).await;
        let status = processes[0].exited().expect("it has exited");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status}");
        assert_eq!(start_time(recorded.pid), None);
    }

    #[tokio::test]
    async fn a_recorded_process_is_stopped_only_while_its_start_time_matches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("sleeper.log");
        let mut sleeper = spawn(Launch {
            role: "sleeper",
            argv: ["sleep", "600"].map(String::from).to_vec(),
            namespace: None,
            log: &log,
        })
        .expect("spawn");
        let mut recorded = sleeper.recorded();
        // Another process that got the same pid later is not ours: left alone.
        recorded.start_time += 1;
        stop_recorded(&recorded, Duration::from_secs(5)).await;
        assert!(sleeper.exited().is_none(), "a stranger was stopped");
        recorded.start_time -= 1;
        stop_recorded(&recorded, Duration::from_secs(20)).await;
        let status = sleeper.wait().await;
        assert!(!status.success(), "{status}");
    }
}
