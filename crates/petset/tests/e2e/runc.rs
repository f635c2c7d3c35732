//! Real containers: `petset up --node-runtime runc` runs a StatefulSet's pods with runc, each
//! with its hostname and its own volume, logs and exec; a deleted pod comes back with its data;
//! stopping petset leaves no container, mount or namespace behind. Needs root and runc.

use std::time::Duration;

use petset_testkit::{busybox_image, can_run_containers, wait_until};

use crate::start;
use crate::statefulset::{wait_for, wait_ready_replicas};

const SET: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{port: 80, name: web}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: main
        image: busybox:test
        command: ["sh", "-c", "hostname >> /data/hosts; echo started as $POD; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
        env:
        - name: POD
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// The network namespaces left of the pods with these uids (tests run in parallel, so only a
/// test's own pods are its business).
fn netns_left(uids: &[String]) -> Vec<String> {
    uids.iter()
        .map(|uid| format!("petset-{}", petset_agent::pods::sandbox_id_of(uid)))
        .filter(|name| std::path::Path::new("/run/netns").join(name).exists())
        .collect()
}

fn pod_uids(petset: &petset_testkit::Petset) -> Vec<String> {
    petset
        .kubectl(&["get", "pods", "-o", "jsonpath={.items[*].metadata.uid}"])
        .ok()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A runc petset with `busybox:test` in an image store of its own (the directory lives as long
/// as the returned guard).
pub(crate) fn start_with_busybox(extra: &[&str]) -> (tempfile::TempDir, petset_testkit::Petset) {
    start_with_image(busybox_image, "busybox:test", extra)
}

/// Imports the image archive at `archive` into the image store at `store`.
pub(crate) fn import_image(store: &std::path::Path, archive: &std::path::Path) {
    let imported = std::process::Command::new(env!("CARGO_BIN_EXE_petset"))
        .args(["image", "--image-store"])
        .arg(store)
        .arg("import")
        .arg(archive)
        .output()
        .expect("petset image import");
    assert!(imported.status.success(), "{imported:?}");
}

/// An image store of its own (alive as long as the guard) holding `petset/etcd:test`, for the
/// multi-node tests; `None`, with the skip reported, where containers or the etcd image cannot
/// be had.
pub(crate) fn etcd_image_store(test: &str) -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    if !can_run_containers(test) || !petset_testkit::can_build_etcd_image(test) {
        return None;
    }
    let images = tempfile::tempdir().expect("temp");
    petset_testkit::etcd_image(&images.path().join("saved"), "petset/etcd:test");
    let store = images.path().join("store");
    import_image(&store, &images.path().join("saved"));
    Some((images, store))
}

/// A runc petset with the image `build` writes, named `name`, in an image store of its own.
pub(crate) fn start_with_image(
    build: fn(&std::path::Path, &str),
    name: &str,
    extra: &[&str],
) -> (tempfile::TempDir, petset_testkit::Petset) {
    let images = tempfile::tempdir().expect("temp");
    build(&images.path().join("saved"), name);
    import_image(&images.path().join("store"), &images.path().join("saved"));
    let store = images.path().join("store").to_string_lossy().into_owned();
    let mut args = vec!["--node-runtime", "runc", "--image-store", &store];
    args.extend_from_slice(extra);
    let petset = start(&args);
    (images, petset)
}

#[test]
fn a_statefulset_runs_as_real_containers_with_hostnames_and_volumes() {
    if !can_run_containers("a_statefulset_runs_as_real_containers_with_hostnames_and_volumes") {
        return;
    }
    let (_images, mut petset) = start_with_busybox(&["--store", "memory"]);
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(SET))
        .ok();
    wait_for(
        &petset,
        "both pods Running",
        &[
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}",
        ],
        "web-0=Running web-1=Running",
    );
    wait_ready_replicas(&petset, "web", 2);
    let volume_of = |pod: &str| {
        let name = petset
            .kubectl(&[
                "get",
                "pvc",
                &format!("data-{pod}"),
                "-o",
                "jsonpath={.spec.volumeName}",
            ])
            .ok()
            .to_string();
        petset.data_dir().join("volumes").join(name).join("hosts")
    };
    let mut hosts = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            hosts = std::fs::read_to_string(volume_of("web-0")).unwrap_or_default();
            hosts == "web-0\n"
        }),
        "web-0 wrote {hosts:?}\n{}",
        petset.log()
    );

    let logs = petset.kubectl(&["logs", "web-1"]).ok().to_string();
    assert_eq!(logs, "started as web-1\n");
    let tail = petset
        .kubectl(&["logs", "web-1", "--tail=1", "-c", "main"])
        .ok()
        .to_string();
    assert_eq!(tail, "started as web-1\n");
    // Each line has its time: --timestamps shows it, --since filters by it.
    let stamped = petset
        .kubectl(&["logs", "web-1", "--timestamps"])
        .ok()
        .to_string();
    let (time, line) = stamped.split_once(' ').expect("a timestamp, then the line");
    assert_eq!(line, "started as web-1\n");
    assert!(
        time.len() >= 20 && time.ends_with('Z') && time.contains('T'),
        "{stamped:?}"
    );
    let recent = petset
        .kubectl(&["logs", "web-1", "--since=1h"])
        .ok()
        .to_string();
    assert_eq!(recent, "started as web-1\n");
    let since = petset
        .kubectl(&["logs", "web-1", "--since-time=2999-01-01T00:00:00Z"])
        .ok()
        .to_string();
    assert_eq!(since, "", "nothing was printed after 2999");
    let previous = petset.kubectl(&["logs", "web-1", "--previous"]);
    assert!(
        previous
            .stderr
            .contains("previous terminated container \"main\" in pod \"web-1\" not found"),
        "{}",
        previous.stderr
    );

    let hostname = petset
        .kubectl(&["exec", "web-1", "--", "hostname"])
        .ok()
        .to_string();
    assert_eq!(hostname, "web-1\n");
    let failed = petset.kubectl(&["exec", "web-1", "--", "sh", "-c", "echo oops >&2; exit 3"]);
    assert!(
        failed.err().contains("command terminated with exit code 3"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("oops"), "{}", failed.stderr);
    let echoed = petset.kubectl_with_input(&["exec", "-i", "web-1", "--", "cat"], Some("hello\n"));
    assert_eq!(echoed.ok(), "hello\n");
    // exec -it: kubectl (itself on a terminal, from util-linux's `script`) asks for a TTY, and
    // the command runs on one; its exit status comes back.
    let on_terminal = petset.kubectl_on_terminal(
        &["exec", "-it", "web-1", "--", "sh", "-c", "tty; exit 4"],
        "",
    );
    assert!(on_terminal.stdout.contains("/dev/pts/"), "{on_terminal:?}");
    assert!(
        !on_terminal.success,
        "exit status 4 comes back: {on_terminal:?}"
    );

    // The pod comes back under its name, with its volume and a second line in it.
    let mut uids = pod_uids(&petset);
    let uid = petset
        .kubectl(&["get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    petset.kubectl(&["delete", "pod", "web-0"]).ok();
    wait_for(
        &petset,
        "web-0 re-created",
        &["get", "pod", "web-0", "-o", "jsonpath={.status.phase}"],
        "Running",
    );
    let new_uid = petset
        .kubectl(&["get", "pod", "web-0", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    assert_ne!(uid, new_uid);
    assert!(
        wait_until(Duration::from_secs(30), || {
            hosts = std::fs::read_to_string(volume_of("web-0")).unwrap_or_default();
            hosts == "web-0\nweb-0\n"
        }),
        "web-0 wrote {hosts:?}\n{}",
        petset.log()
    );

    // A clean stop of petset stops the pods' containers: nothing is left running.
    uids.extend(pod_uids(&petset));
    let status = petset.stop().expect("stop");
    assert!(status.success(), "{}", petset.log());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let data_dir = petset.data_dir().to_string_lossy().into_owned();
    assert!(!mounts.contains(&data_dir), "mounts left: {mounts}");
    assert_eq!(netns_left(&uids), Vec::<String>::new(), "namespaces left");
}

const PODS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
---
apiVersion: v1
kind: Pod
metadata: {name: mixed}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: init
    image: busybox:test
    command: ["sh", "-c", "echo init-ran > /work/init.txt"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "cat /work/init.txt /config/greeting; echo; cat /info/name; echo; echo $FROM_CM; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    env:
    - name: FROM_CM
      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}
    volumeMounts:
    - {name: work, mountPath: /work}
    - {name: config, mountPath: /config}
    - {name: info, mountPath: /info}
  - name: crasher
    image: busybox:test
    command: ["sh", "-c", "echo crash; exit 2"]
  volumes:
  - {name: work, emptyDir: {}}
  - {name: config, configMap: {name: settings}}
  - name: info
    downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
---
apiVersion: v1
kind: Pod
metadata: {name: missing}
spec:
  containers: [{name: main, image: "nosuch:1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "trap '' TERM; echo up; while true; do sleep 0.2; done"]
"#;

#[test]
fn init_containers_volumes_back_off_missing_images_grace_and_restart() {
    if !can_run_containers("init_containers_volumes_back_off_missing_images_grace_and_restart") {
        return;
    }
    let (_images, mut petset) = start_with_busybox(&[]);
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(PODS))
        .ok();
    let uids = pod_uids(&petset);

    let expected = "init-ran\nhello\nmixed\nhello\n";
    let mut logs = String::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            logs = petset.kubectl(&["logs", "mixed", "-c", "main"]).stdout;
            logs == expected
        }),
        "main logged {logs:?}\n{}",
        petset.log()
    );
    wait_for(
        &petset,
        "init completed",
        &[
            "get",
            "pod",
            "mixed",
            "-o",
            "jsonpath={.status.initContainerStatuses[0].state.terminated.reason}",
        ],
        "Completed",
    );
    wait_for(
        &petset,
        "the crasher backs off",
        &[
            "get",
            "pod",
            "mixed",
            "-o",
            "jsonpath={.status.containerStatuses[?(@.name==\"crasher\")].state.waiting.reason}",
        ],
        "CrashLoopBackOff",
    );
    let crasher = petset.kubectl(&["get", "pod", "mixed", "-o",
        "jsonpath={.status.containerStatuses[?(@.name==\"crasher\")].lastState.terminated.exitCode}"]).ok().to_string();
    assert_eq!(crasher, "2");
    let table = petset.kubectl(&["get", "pod", "mixed"]).ok().to_string();
    assert!(table.contains("CrashLoopBackOff"), "{table}");

    wait_for(
        &petset,
        "a missing image is reported",
        &[
            "get",
            "pod",
            "missing",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
        ],
        "ImagePullBackOff",
    );
    let message = petset
        .kubectl(&[
            "get",
            "pod",
            "missing",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.message}",
        ])
        .ok()
        .to_string();
    assert!(
        message.contains("nosuch:1") && message.contains("not found"),
        "{message}"
    );

    // A process that ignores SIGTERM is killed after its grace period.
    wait_for(&petset, "stubborn runs", &["logs", "stubborn"], "up");
    petset
        .kubectl(&["delete", "pod", "stubborn", "--wait=true"])
        .ok();
    wait_for(
        &petset,
        "stubborn is gone",
        &[
            "get",
            "pods",
            "stubborn",
            "--ignore-not-found",
            "-o",
            "name",
        ],
        "",
    );

    // A restart of petset runs the pods again (a clean stop stopped their containers).
    petset.restart().expect("restart");
    assert!(
        wait_until(Duration::from_secs(60), || {
            logs = petset.kubectl(&["logs", "mixed", "-c", "main"]).stdout;
            logs == expected
        }),
        "after the restart main logged {logs:?}\n{}",
        petset.log()
    );
    petset
        .kubectl(&["delete", "pod", "--all", "--grace-period=1"])
        .ok();
    let status = petset.stop().expect("stop");
    assert!(status.success(), "{}", petset.log());
    assert_eq!(netns_left(&uids), Vec::<String>::new(), "namespaces left");
}

const PROBED: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: web
    image: busybox:test
    command: ["sh", "-c", "mkdir -p /www; echo ok > /www/index.html; echo yes > /tmp/alive; trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"]
    ports: [{name: http, containerPort: 8080}]
    startupProbe: {tcpSocket: {port: http}, periodSeconds: 1, failureThreshold: 30}
    readinessProbe: {httpGet: {path: /ready.html, port: 8080}, periodSeconds: 1}
    livenessProbe: {exec: {command: [cat, /tmp/alive]}, periodSeconds: 1, failureThreshold: 2}
"#;

#[test]
fn startup_readiness_and_liveness_probes() {
    if !can_run_containers("startup_readiness_and_liveness_probes") {
        return;
    }
    let (_images, mut petset) = start_with_busybox(&["--store", "memory"]);
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(PROBED))
        .ok();
    let uids = pod_uids(&petset);
    let ready = [
        "get",
        "pod",
        "probed",
        "-o",
        "jsonpath={.status.phase}/{.status.containerStatuses[0].started}/{.status.containerStatuses[0].ready}",
    ];
    wait_for(&petset, "started, not ready", &ready, "Running/true/false");
    petset
        .kubectl(&[
            "exec",
            "probed",
            "--",
            "sh",
            "-c",
            "echo ready > /www/ready.html",
        ])
        .ok();
    wait_for(
        &petset,
        "ready once the page exists",
        &ready,
        "Running/true/true",
    );
    petset
        .kubectl(&["exec", "probed", "--", "rm", "/tmp/alive"])
        .ok();
    wait_for(
        &petset,
        "killed by its liveness probe",
        &[
            "get",
            "pod",
            "probed",
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ],
        "1",
    );
    let status = petset.stop().expect("stop");
    assert!(status.success(), "{}", petset.log());
    assert_eq!(netns_left(&uids), Vec::<String>::new(), "namespaces left");
}

const KEPT: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: kept}
spec:
  serviceName: kept
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: kept}}
  template:
    metadata: {labels: {app: kept}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: busybox:test
        command: ["sh", "-c", "echo started; touch /tmp/ready; trap 'exit 0' TERM; while true; do echo tick; sleep 0.5; done"]
        readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1}
"#;

/// What a restart of the node must not change of a pod: its uid, address, containers' ids,
/// restart counts and the host pid of each container's process.
fn kept_pods(
    petset: &petset_testkit::Petset,
    node_dir: &std::path::Path,
) -> Vec<(String, String, String, String, u32)> {
    let listed = petset
        .kubectl(&["get", "pods", "-l", "app=kept", "-o", "json"])
        .ok()
        .to_string();
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("pods json");
    let runc_root = node_dir.join("node/runc");
    let mut pods: Vec<_> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|pod| {
            let uid = pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let status = &pod["status"]["containerStatuses"][0];
            let container = format!("{}-main", petset_agent::pods::sandbox_id_of(&uid));
            let state = std::process::Command::new("runc")
                .arg("--root")
                .arg(&runc_root)
                .args(["state", &container])
                .output()
                .expect("runc state");
            let state: serde_json::Value =
                serde_json::from_slice(&state.stdout).unwrap_or_default();
            (
                pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                pod["status"]["podIP"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                status["containerID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                status["restartCount"].to_string(),
                u32::try_from(state["pid"].as_u64().unwrap_or(0)).unwrap_or(0),
            )
        })
        .collect();
    pods.sort();
    pods
}

/// Watches the kept pods while the restarted node takes its three containers over (as its
/// log, `log`, tells): they stay Ready in every status the API gives meanwhile.
fn watch_the_take_over(petset: &petset_testkit::Petset, log: impl Fn() -> String) {
    let mut seen_unready = Vec::new();
    let settled = wait_until(Duration::from_secs(60), || {
        let ready = petset
            .kubectl(&[
                "get",
                "pods",
                "-l",
                "app=kept",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}",
            ])
            .stdout;
        seen_unready.extend(
            ready
                .split_whitespace()
                .filter(|p| !p.ends_with("=True"))
                .map(str::to_string),
        );
        log().matches("took over a running container").count() >= 3
    });
    assert!(
        settled,
        "the node did not take its containers over\n{}",
        log()
    );
    assert_eq!(seen_unready, Vec::<String>::new(), "pods went unready");
}

fn process_runs(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.contains(") Z ") && !stat.contains(") X "))
}

#[test]
fn a_kill_9_of_petset_up_leaves_the_containers_running_and_the_restart_takes_them_over() {
    if !can_run_containers(
        "a_kill_9_of_petset_up_leaves_the_containers_running_and_the_restart_takes_them_over",
    ) {
        return;
    }
    let (_images, mut petset) = start_with_busybox(&[]);
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(KEPT))
        .ok();
    wait_ready_replicas(&petset, "kept", 3);
    let before = kept_pods(&petset, petset.data_dir());
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(
        before.iter().all(|p| p.4 != 0 && !p.1.is_empty()),
        "every pod has an address and a process: {before:?}"
    );
    for _ in 0..2 {
        petset.stop_with("KILL").expect("kill -9");
        // With petset gone, its containers live on, each under its keeper.
        for pod in &before {
            assert!(process_runs(pod.4), "{} died with petset", pod.0);
        }
        petset.restart().expect("restart");
        // The pods stay Ready through the recovery: every status the restarted node writes
        // says so (watched until each pod's status was written by the new run).
        watch_the_take_over(&petset, || petset.log());
        let after = kept_pods(&petset, petset.data_dir());
        assert_eq!(after, before, "the restart changed the pods");
        // The logs of the run go on in the same file.
        let logs = petset.kubectl(&["logs", "kept-0"]).ok().to_string();
        assert_eq!(logs.matches("started").count(), 1, "{logs}");
        let ticks = logs.matches("tick").count();
        assert!(
            wait_until(Duration::from_secs(20), || {
                petset
                    .kubectl(&["logs", "kept-0"])
                    .stdout
                    .matches("tick")
                    .count()
                    > ticks
            }),
            "the container's output is no longer logged"
        );
        // The kills of a later round are counted from here.
        let _ = std::fs::write(petset.data_dir().join("petset.log"), "");
    }
    let uids = pod_uids(&petset);
    petset
        .kubectl(&["delete", "statefulset", "kept", "--wait=true"])
        .ok();
    let status = petset.stop().expect("stop");
    assert!(status.success(), "{}", petset.log());
    assert_eq!(netns_left(&uids), Vec::<String>::new(), "namespaces left");
}

#[test]
fn an_agent_killed_9_and_started_again_takes_its_running_containers_over() {
    if !can_run_containers("an_agent_killed_9_and_started_again_takes_its_running_containers_over")
    {
        return;
    }
    let images = tempfile::tempdir().expect("temp");
    busybox_image(&images.path().join("saved"), "busybox:test");
    import_image(&images.path().join("store"), &images.path().join("saved"));
    let store = images.path().join("store").to_string_lossy().into_owned();
    let volumes = images.path().join("volumes").to_string_lossy().into_owned();
    // Ranges, an address and a bridge of its own (not 10.250/16, where cluster up makes its
    // subnets), so that parallel tests' bridges and routes never meet it.
    let server = petset_testkit::Petset::start_server(
        crate::binary(),
        &[
            "--cluster-cidr",
            "10.221.0.0/16",
            "--service-cidr",
            "10.222.0.0/24",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let address = std::net::IpAddr::from([127, 0, 0, 82]);
    let agent_args = [
        "--node-runtime",
        "runc",
        "--image-store",
        &store,
        "--bridge",
        "pstkeep82",
        "--local-path-dir",
        &volumes,
    ];
    let mut first =
        petset_testkit::Agent::spawn(crate::binary(), &server, "keeper", address, &agent_args)
            .unwrap_or_else(|e| panic!("{e}"));
    server
        .kubectl_with_input(&["apply", "-f", "-"], Some(KEPT))
        .ok();
    wait_ready_replicas(&server, "kept", 3);
    let node_dir = first.data_dir().to_path_buf();
    let before = kept_pods(&server, &node_dir);
    assert!(
        before.len() == 3 && before.iter().all(|p| p.4 != 0 && !p.1.is_empty()),
        "every pod has an address and a process: {before:?}\n{}",
        first.log()
    );
    first.kill();
    for pod in &before {
        assert!(process_runs(pod.4), "{} died with its agent", pod.0);
    }
    // The agent started again on its data dir, its log begun afresh.
    let start_again = || {
        let _ = std::fs::write(node_dir.join("agent.log"), "");
        petset_testkit::Agent::spawn_in(
            crate::binary(),
            &server,
            "keeper",
            address,
            &node_dir,
            &agent_args,
            tempfile::tempdir().expect("temp"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let mut again = start_again();
    watch_the_take_over(&server, || again.log());
    assert_eq!(
        kept_pods(&server, &node_dir),
        before,
        "the restart changed the pods"
    );

    // A pod deleted while its node is down: the node takes its container over when it is
    // back and stops it (within its grace period), and the set makes the pod again.
    again.kill();
    let deleted = before
        .iter()
        .find(|p| p.0 == "kept-0")
        .expect("kept-0")
        .clone();
    let old_uid = server
        .kubectl(&["get", "pod", "kept-0", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    server
        .kubectl(&["delete", "pod", "kept-0", "--wait=false"])
        .ok();
    let mut third = start_again();
    let remade = wait_until(Duration::from_secs(60), || {
        let pod = server
            .kubectl(&[
                "get",
                "pod",
                "kept-0",
                "-o",
                "jsonpath={.metadata.uid} {.status.conditions[?(@.type==\"Ready\")].status}",
            ])
            .stdout;
        pod.ends_with(" True") && !pod.starts_with(&old_uid)
    });
    assert!(remade, "kept-0 was not made again\n{}", third.log());
    assert!(
        !process_runs(deleted.4),
        "the deleted pod's process still runs"
    );
    assert!(
        third
            .log()
            .lines()
            .any(|l| l.contains("took over a running container") && l.contains("kept-0")),
        "{}",
        third.log()
    );
    let uids = pod_uids(&server);
    server
        .kubectl(&["delete", "statefulset", "kept", "--wait=true"])
        .ok();
    assert!(third.stop().is_some_and(|s| s.success()), "{}", third.log());
    assert_eq!(netns_left(&uids), Vec::<String>::new(), "namespaces left");
    drop(again);
    drop(first);
}
