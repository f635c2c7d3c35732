//! The fence watchdog (`petset_agent::watchdog`) against real processes: a process tree in a
//! scratch cgroup of a pod of a fake runtime root (the layout a runc node has: `runc/`,
//! `pods/<id>/`, cgroups `/petset/<id>/<container>`). It kills the tree once the heartbeat is as
//! old as its deadline and not before, exits without killing anything when the agent writes
//! `stopped`, lets a second watchdog of the same node exit at once, and is started in a
//! process group of its own with nothing of the agent's open. The cgroup tests need root and
//! skip elsewhere (fail under CI=true).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use petset_agent::watchdog::{
    self, Heartbeat, Launch, Launcher, Outcome, Paths, boot_id, monotonic_now,
};
use petset_testkit::{skip, wait_until};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// The cgroup hierarchy the test's processes go into: cgroup v2's root, else v1's `pids`.
fn hierarchy() -> Option<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return Some(base.to_path_buf());
    }
    let pids = base.join("pids");
    pids.join("cgroup.procs").exists().then_some(pids)
}

/// Whether a process runs (exists and is no zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|state| state != "Z")
}

/// A fake node: its fence directory and runtime root in a temporary directory, one pod whose
/// container's cgroup holds a shell and its two children. Whatever is left is killed, and the
/// cgroups removed, on drop.
struct Node {
    _temp: tempfile::TempDir,
    paths: Paths,
    pod: String,
    cgroup: PathBuf,
    shell: Child,
    pids: Vec<u32>,
}

impl Node {
    fn start(test: &str, hierarchy: &Path) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let paths = Paths::new(temp.path().join("fence"), temp.path().join("node"));
        // A pod id of this test's alone: the cgroup hierarchy is the machine's.
        let pod = format!("pwd{}{test}", std::process::id());
        std::fs::create_dir_all(paths.runtime_root.join("runc")).expect("runc root");
        std::fs::create_dir_all(paths.runtime_root.join("pods").join(&pod)).expect("pod dir");
        let cgroup = hierarchy.join("petset").join(&pod).join("app");
        std::fs::create_dir_all(&cgroup).expect("the container's cgroup");
        let mut shell = Command::new("sh")
            .args(["-c", "read go; sleep 600 & sleep 600 & wait"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("sh");
        // Into the cgroup before it forks, so that its children are born there.
        std::fs::write(cgroup.join("cgroup.procs"), shell.id().to_string()).expect("join");
        shell
            .stdin
            .as_mut()
            .expect("stdin")
            .write_all(b"go\n")
            .expect("go");
        let members = || -> Vec<u32> {
            std::fs::read_to_string(cgroup.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect()
        };
        assert!(
            wait_until(Duration::from_secs(10), || members().len() == 3),
            "the tree did not start: {:?}",
            members()
        );
        let pids = members();
        Self {
            _temp: temp,
            paths,
            pod,
            cgroup,
            shell,
            pids,
        }
    }

    fn all_alive(&self) -> bool {
        self.pids.iter().all(|pid| alive(*pid))
    }

    fn all_dead(&mut self) -> bool {
        // The shell is this process's child: reaped, or it would stay a zombie.
        let _ = self.shell.try_wait();
        self.pids.iter().all(|pid| !alive(*pid))
    }

    fn beat(&self, heartbeat: &Heartbeat) {
        watchdog::write_heartbeat(&self.paths.heartbeat(), heartbeat).expect("heartbeat");
    }

    /// A renewal sent now with this deadline, then the watchdog: when the renewal was sent,
    /// and the watchdog's outcome to come.
    fn renewed_then_watched(
        &self,
        deadline: Duration,
    ) -> (
        Duration,
        mpsc::Receiver<Result<Outcome, watchdog::WatchdogError>>,
    ) {
        let sent = monotonic_now();
        self.beat(&Heartbeat::Renewed {
            boot_id: boot_id(),
            sent,
            deadline,
        });
        (sent, self.watch())
    }

    /// The watchdog, on a thread of its own; its outcome comes on the channel.
    fn watch(&self) -> mpsc::Receiver<Result<Outcome, watchdog::WatchdogError>> {
        let (send, outcome) = mpsc::channel();
        let paths = self.paths.clone();
        std::thread::spawn(move || {
            let _ = send.send(watchdog::run(&paths));
        });
        outcome
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        petset_runtime::pods::kill_pod_cgroups(&self.pod);
        let _ = self.shell.wait();
        let _ = std::fs::remove_dir(&self.cgroup);
        if let Some(pod) = self.cgroup.parent() {
            let _ = std::fs::remove_dir(pod);
        }
    }
}

/// The hierarchy to use, or why the test cannot run here.
fn cgroups_here(test: &str) -> Option<PathBuf> {
    if !is_root() {
        skip(test, "needs root (a scratch cgroup)");
        return None;
    }
    let found = hierarchy();
    if found.is_none() {
        skip(test, "no cgroup v2 root and no v1 pids hierarchy");
    }
    found
}

#[test]
fn the_watchdog_kills_the_nodes_processes_at_the_deadline_and_not_before() {
    let Some(hierarchy) = cgroups_here("the_watchdog_kills_the_nodes_processes_at_the_deadline")
    else {
        return;
    };
    let mut node = Node::start("fence", &hierarchy);
    let deadline = Duration::from_secs(2);
    let (sent, outcome) = node.renewed_then_watched(deadline);

    // Halfway to the deadline everything runs and nothing is marked.
    std::thread::sleep((sent + deadline / 2).saturating_sub(monotonic_now()));
    assert!(node.all_alive(), "killed before the deadline");
    assert!(!node.paths.marker().exists());

    let outcome = outcome
        .recv_timeout(Duration::from_secs(60))
        .expect("the watchdog ends")
        .expect("the watchdog runs");
    let Outcome::Fenced(fenced) = outcome else {
        panic!("not fenced: {outcome:?}");
    };
    assert!(
        fenced.at >= sent + deadline,
        "fenced at {:?}, before the deadline {:?}",
        fenced.at,
        sent + deadline
    );
    assert_eq!((fenced.sent, fenced.deadline), (sent, deadline));
    assert_eq!(fenced.pods, [node.pod.clone()]);
    assert!(
        wait_until(Duration::from_secs(10), || node.all_dead()),
        "the pod's processes outlived the fence"
    );
    let marker = std::fs::read_to_string(node.paths.marker()).expect("the marker");
    assert!(marker.starts_with("fenced\n"), "{marker}");
    assert!(
        marker.contains(&format!("\npods {}\n", node.pod)),
        "{marker}"
    );
    // Killed, not removed: the pod's directory is the agent's to remove.
    assert!(
        node.paths
            .runtime_root
            .join("pods")
            .join(&node.pod)
            .is_dir()
    );
}

#[test]
fn a_stopped_agents_watchdog_exits_killing_nothing_and_a_second_one_exits_at_once() {
    let Some(hierarchy) = cgroups_here("a_stopped_agents_watchdog_exits_killing_nothing") else {
        return;
    };
    let node = Node::start("stop", &hierarchy);
    node.beat(&Heartbeat::Renewed {
        boot_id: boot_id(),
        sent: monotonic_now(),
        deadline: Duration::from_secs(30),
    });
    let outcome = node.watch();
    let holds_the_lock = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(node.paths.lock())
            .is_ok_and(|pid| pid.trim() == std::process::id().to_string())
    });
    assert!(holds_the_lock, "the watchdog did not take the node's lock");

    // One watchdog per node: a second returns at once, and the agent starts none.
    assert_eq!(
        watchdog::run(&node.paths).expect("a second watchdog"),
        Outcome::AnotherRuns
    );
    let launcher = Launcher::new(node.paths.clone(), "/bin/false", Vec::new());
    assert_eq!(
        launcher.ensure_running().expect("a look"),
        Launch::AlreadyRunning
    );
    assert!(launcher.is_running());

    // A clean stop of the agent, its containers first: the watchdog goes, killing nothing.
    launcher.stopped().expect("stopped");
    let outcome = outcome
        .recv_timeout(Duration::from_secs(30))
        .expect("the watchdog ends")
        .expect("the watchdog runs");
    assert_eq!(outcome, Outcome::Stopped);
    assert!(node.all_alive(), "a clean stop killed the pod's processes");
    assert!(!node.paths.marker().exists());
}

#[test]
fn at_the_agents_start_an_earlier_runs_renewal_is_kept_and_a_stop_or_a_fenced_renewal_forgotten() {
    let temp = tempfile::tempdir().expect("temp dir");
    let paths = Paths::new(temp.path().join("fence"), temp.path().join("node"));
    let launcher = Launcher::new(paths.clone(), "/bin/false", Vec::new());
    launcher.stopped().expect("stopped");
    launcher.forget_stale_heartbeat().expect("forget");
    assert_eq!(
        watchdog::read_heartbeat(&paths.heartbeat()).expect("read"),
        None
    );
    // A renewal of an earlier run on this boot still counts: its deadline runs on.
    let sent = monotonic_now();
    launcher
        .renewed(sent, Duration::from_secs(30))
        .expect("renewed");
    launcher.forget_stale_heartbeat().expect("forget");
    assert_eq!(
        watchdog::read_heartbeat(&paths.heartbeat()).expect("read"),
        Some(Heartbeat::Renewed {
            boot_id: boot_id(),
            sent,
            deadline: Duration::from_secs(30)
        })
    );
    // Nor one a watchdog fenced already, as its marker says: that fence is done.
    let fenced = watchdog::Fenced {
        at: sent + Duration::from_secs(31),
        sent,
        deadline: Duration::from_secs(30),
        containers: Vec::new(),
        pods: Vec::new(),
    };
    std::fs::write(paths.marker(), fenced.format(&boot_id())).expect("marker");
    launcher.forget_stale_heartbeat().expect("forget");
    assert_eq!(
        watchdog::read_heartbeat(&paths.heartbeat()).expect("read"),
        None
    );
    // One of another boot does not: its processes died with that boot.
    let earlier_boot = Heartbeat::Renewed {
        boot_id: "another-boot".into(),
        sent,
        deadline: Duration::from_secs(30),
    };
    watchdog::write_heartbeat(&paths.heartbeat(), &earlier_boot).expect("write");
    launcher.forget_stale_heartbeat().expect("forget");
    assert_eq!(
        watchdog::read_heartbeat(&paths.heartbeat()).expect("read"),
        None
    );
}

/// The descriptors of a process, each as what it points to.
fn descriptors(pid: u32) -> Vec<(String, PathBuf)> {
    let mut fds: Vec<(String, PathBuf)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the process's descriptors")
        .filter_map(Result::ok)
        .map(|e| {
            let target = std::fs::read_link(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), target)
        })
        .collect();
    fds.sort();
    fds
}

/// The process group of a process (`/proc/PID/stat`'s fifth field).
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}

#[test]
fn the_launcher_starts_a_watchdog_in_a_group_of_its_own_holding_nothing_of_the_agents() {
    let temp = tempfile::tempdir().expect("temp dir");
    let paths = Paths::new(temp.path().join("fence"), temp.path().join("node"));
    // Something of the agent's open meanwhile, which the watchdog must not get.
    let _agents_file = std::fs::File::create(temp.path().join("agent-file")).expect("a file");
    // `sleep` takes no lock: each look starts another, which shows that the lock is what
    // tells whether one runs.
    let launcher = Launcher::new(paths.clone(), "/bin/sleep", vec!["600".into()]);
    let Launch::Started(pid) = launcher.ensure_running().expect("started") else {
        panic!("nothing holds the lock, yet none was started");
    };
    assert!(launcher.is_running());
    // Started through bash, which closes what was inherited and then execs the watchdog.
    let execed = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
    });
    let fds = descriptors(pid);
    let kill = |pid: u32| {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    };
    let group = process_group(pid);
    let Launch::Started(second) = launcher.ensure_running().expect("started") else {
        kill(pid);
        panic!("a watchdog that holds no lock counted as running");
    };
    kill(pid);
    kill(second);
    assert!(execed, "the watchdog's program did not start");
    assert_eq!(
        fds,
        [
            ("0".to_string(), PathBuf::from("/dev/null")),
            ("1".to_string(), PathBuf::from("/dev/null")),
            ("2".to_string(), paths.log()),
        ]
    );
    assert_eq!(group, Some(pid), "not in a process group of its own");
    assert_ne!(process_group(std::process::id()), Some(pid));

    let broken = Launcher::new(paths, "/nonexistent/petset", Vec::new());
    assert!(broken.ensure_running().is_err());
    assert!(!broken.is_running(), "a watchdog that could not start");
}

/// A heartbeat that vanishes (the node's data removed under a live watchdog) is no renewal:
/// the node is fenced at the deadline all the same, and the watchdog ends. One whose node's
/// directory is gone before it ever heard a renewal ends at once, killing nothing.
#[test]
fn a_vanished_heartbeat_still_fences_at_the_deadline_and_a_gone_node_ends_the_watch() {
    let Some(hierarchy) = cgroups_here("a_vanished_heartbeat_still_fences_at_the_deadline") else {
        return;
    };
    let mut node = Node::start("vanish", &hierarchy);
    let deadline = Duration::from_secs(2);
    let (_, outcome) = node.renewed_then_watched(deadline);
    std::thread::sleep(Duration::from_millis(600));
    std::fs::remove_file(node.paths.heartbeat()).expect("remove the heartbeat");
    let outcome = outcome
        .recv_timeout(Duration::from_secs(60))
        .expect("the watchdog ends")
        .expect("the watchdog runs");
    assert!(
        matches!(outcome, Outcome::Fenced(_)),
        "not fenced: {outcome:?}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || node.all_dead()),
        "the pod's processes outlived the fence"
    );

    // Never heard of, and the node's directory removed: nothing to watch.
    let empty = Node::start("gone", &hierarchy);
    let watching = empty.watch();
    std::thread::sleep(Duration::from_millis(600));
    std::fs::remove_dir_all(&empty.paths.fence_dir).expect("remove the node's fence dir");
    let outcome = watching
        .recv_timeout(Duration::from_secs(10))
        .expect("the watchdog ends")
        .expect("the watchdog runs");
    assert!(matches!(outcome, Outcome::Stopped), "{outcome:?}");
    assert!(empty.all_alive(), "it killed what it never watched over");
}
