//! The runtime for real: a busybox image built from Debian's busybox-static, imported into a
//! temporary image store, run by runc in a pod sandbox. Needs root and runc; skips elsewhere
//! (fails under CI=true).

#[path = "it/routes.rs"]
mod routes;

use std::fs;
use std::path::Path;
use std::time::Duration;

use petset_runtime::images::ImageStore;
use petset_runtime::network::NetworkConfig;
use petset_runtime::pods::{ContainerConfig, Mount, Runtime, SandboxConfig};
use petset_testkit::{busybox_image, can_run_containers, wait_until};

/// What the container printed, without the log records' framing.
fn logged(log: &Path) -> String {
    String::from_utf8_lossy(&petset_runtime::logs::plain(
        &fs::read(log).unwrap_or_default(),
    ))
    .into_owned()
}

fn container(store: &ImageStore, name: &str, script: &str, data: &Path) -> ContainerConfig {
    let image = store.resolve("busybox:test").expect("image");
    ContainerConfig {
        name: name.into(),
        args: vec!["sh".into(), "-c".into(), script.into()],
        env: vec!["PATH=/bin".into(), "GREETING=hello".into()],
        cwd: "/".into(),
        mounts: vec![Mount {
            source: data.to_path_buf(),
            destination: "/data".into(),
            read_only: false,
        }],
        memory_limit_bytes: Some(64 << 20),
        cpu_limit_millis: Some(500),
        stdin: false,
        tty: false,
        image,
    }
}

#[test]
fn a_pod_runs_with_its_hostname_volume_and_logs_and_leaves_nothing_behind() {
    if !can_run_containers("a_pod_runs_with_its_hostname_volume_and_logs_and_leaves_nothing_behind")
    {
        return;
    }
    let temp = tempfile::tempdir().expect("temp");
    let store = ImageStore::open(temp.path().join("images")).expect("store");
    busybox_image(&temp.path().join("saved"), "busybox:test");
    store
        .import(&temp.path().join("saved"), &[])
        .expect("import");
    let runtime = Runtime::open(temp.path().join("node")).expect("runtime");
    let pod = format!("t{}", std::process::id());
    runtime
        .create_sandbox(&SandboxConfig {
            id: pod.clone(),
            hostname: "web-0".into(),
            host_names: "web-0".into(),
            resolv_conf: "nameserver 127.0.0.1\n".into(),
        })
        .expect("sandbox");
    let data = temp.path().join("data");
    fs::create_dir_all(&data).expect("data");
    fs::write(data.join("x"), "kept\n").expect("x");

    let log = runtime.log_path(&pod, "main", 0);
    let mut child = runtime
        .start(
            &pod,
            &container(
                &store,
                "main",
                "hostname; cat /etc/hostname; echo $GREETING; cat /data/x; echo out > /data/y",
                &data,
            ),
            &log,
        )
        .expect("start");
    let status = child.wait().expect("wait");
    assert_eq!(status, Some(0), "{:?}", logged(&log));
    assert_eq!(logged(&log), "web-0\nweb-0\nhello\nkept\n");
    assert_eq!(fs::read_to_string(data.join("y")).expect("y"), "out\n");

    // A second container of the same pod shares the sandbox; TERM stops it.
    let log = runtime.log_path(&pod, "sleeper", 0);
    let mut sleeper = runtime
        .start(
            &pod,
            &container(
                &store,
                "sleeper",
                "trap 'exit 3' TERM; while true; do sleep 0.1; done",
                &data,
            ),
            &log,
        )
        .expect("start sleeper");
    assert!(wait_until(Duration::from_secs(10), || {
        runtime.status(&pod, "sleeper").as_deref() == Some("running")
    }));
    let mut exec = runtime.exec_command(&pod, "sleeper", &["hostname".into()], false);
    let output = exec.output().expect("exec");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "web-0\n");
    runtime.signal(&pod, "sleeper", "TERM").expect("TERM");
    let status = sleeper.wait().expect("wait sleeper");
    assert_eq!(status, Some(3), "{:?}", logged(&log));

    // A container whose runc state is lost still goes with its removal: what is left in its
    // cgroup is killed.
    let log = runtime.log_path(&pod, "orphan", 0);
    let _orphan = runtime
        .start(&pod, &container(&store, "orphan", "sleep 300", &data), &log)
        .expect("start orphan");
    let runc_root = temp.path().join("node/runc");
    let state = std::process::Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["state", &format!("{pod}-orphan")])
        .output()
        .expect("runc state");
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).expect("state json");
    let pid = state["pid"].as_u64().expect("pid");
    fs::remove_dir_all(runc_root.join(format!("{pod}-orphan"))).expect("lose runc's state");
    runtime
        .remove_container(&pod, "orphan")
        .expect("remove orphan");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.contains(") Z ")),
        "the orphan's process {pid} still runs"
    );

    runtime.remove_sandbox(&pod).expect("remove");
    assert!(!runtime.pod_dir(&pod).exists());
    assert!(
        !Path::new("/run/netns")
            .join(Runtime::netns_name(&pod))
            .exists()
    );
    assert!(
        !Path::new("/sys/fs/cgroup/memory/petset")
            .join(&pod)
            .exists()
    );
    runtime.release().expect("release");
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let temp_path = temp.path().to_string_lossy().into_owned();
    assert!(!mounts.contains(&temp_path), "a mount is left: {mounts}");
}

#[test]
fn pods_on_the_bridge_reach_each_other_and_the_host_reaches_them() {
    if !can_run_containers("pods_on_the_bridge_reach_each_other_and_the_host_reaches_them") {
        return;
    }
    let temp = tempfile::tempdir().expect("temp");
    let store = ImageStore::open(temp.path().join("images")).expect("store");
    busybox_image(&temp.path().join("saved"), "busybox:test");
    store
        .import(&temp.path().join("saved"), &[])
        .expect("import");
    let bridge = "pst-rt-test";
    let runtime = Runtime::open(temp.path().join("node"))
        .expect("runtime")
        .with_network(NetworkConfig {
            bridge: bridge.into(),
            cidr: "10.244.251.0/24".parse().expect("cidr"),
            services: None,
        })
        .expect("network");
    // A second runtime cannot have the same bridge, and leaves no mount behind for trying.
    let refused = Runtime::open(temp.path().join("other"))
        .expect("runtime")
        .with_network(NetworkConfig {
            bridge: bridge.into(),
            cidr: "10.244.251.0/24".parse().expect("cidr"),
            services: None,
        });
    assert!(refused.is_err());
    let other = temp
        .path()
        .join("other/pods")
        .to_string_lossy()
        .into_owned();
    assert!(
        !fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .contains(&other),
        "a refused runtime left its mount"
    );
    let data = temp.path().join("data");
    fs::create_dir_all(&data).expect("data");
    fs::write(data.join("page"), "served\n").expect("page");
    let pid = std::process::id();
    let (server, client) = (format!("s{pid}"), format!("c{pid}"));
    let mut addresses = Vec::new();
    for (pod, hostname) in [(&server, "web-0"), (&client, "web-1")] {
        let address = runtime
            .create_sandbox(&SandboxConfig {
                id: pod.clone(),
                hostname: hostname.into(),
                host_names: format!("{hostname}.nginx.default.svc.cluster.local\t{hostname}"),
                resolv_conf: "nameserver 10.244.251.1\n".into(),
            })
            .expect("sandbox")
            .expect("an address on the bridge");
        addresses.push(address);
    }
    assert_ne!(addresses[0], addresses[1]);
    let hosts = fs::read_to_string(runtime.pod_dir(&server).join("etc/hosts")).expect("hosts");
    assert!(
        hosts.contains(&format!(
            "{}\tweb-0.nginx.default.svc.cluster.local\tweb-0",
            addresses[0]
        )),
        "{hosts}"
    );

    let log = runtime.log_path(&server, "main", 0);
    let mut server_process = runtime
        .start(
            &server,
            &container(&store, "main", "exec httpd -f -p 8080 -h /data", &data),
            &log,
        )
        .expect("start server");
    // The host reaches the pod over the bridge (the only place petset ever dials).
    let page = format!("http://{}:8080/page", addresses[0]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect((addresses[0], 8080)).is_ok()
        }),
        "the host cannot reach {page}: {:?}",
        logged(&log)
    );
    // Another pod reaches it too.
    let log = runtime.log_path(&client, "main", 0);
    let mut fetch = runtime
        .start(
            &client,
            &container(
                &store,
                "main",
                &format!("ip -4 -o addr show dev eth0; wget -q -O - {page}"),
                &data,
            ),
            &log,
        )
        .expect("start client");
    let status = fetch.wait().expect("wait");
    let output = logged(&log);
    assert_eq!(status, Some(0), "{output}");
    assert!(
        output.contains(&format!("inet {}/24", addresses[1])),
        "{output}"
    );
    assert!(output.ends_with("served\n"), "{output}");

    for pod in [&server, &client] {
        runtime.remove_sandbox(pod).expect("remove");
    }
    let _ = server_process.wait();
    let state = Path::new("/run/petset/networks").join(bridge);
    assert_eq!(
        fs::read_dir(&state)
            .map(|d| d
                .filter_map(Result::ok)
                .filter(|e| e.file_name() != "last")
                .count())
            .unwrap_or(0),
        0,
        "addresses are freed with their sandboxes"
    );
    runtime.release().expect("release");
    assert!(
        !Path::new("/sys/class/net").join(bridge).exists(),
        "the bridge is gone"
    );
    assert!(!state.exists());
}
