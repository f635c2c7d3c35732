//! Many nodes for real: `petset cluster up --nodes 3 --node-runtime runc` (a server and three
//! agents, each in a network namespace of its own). A StatefulSet with required pod
//! anti-affinity gets one pod per node, each claim's volume is pinned to its pod's node, a
//! deleted pod comes back on its node with its data, names resolve across nodes, logs, exec,
//! port-forward and cp reach pods on any node, the etcd example forms its cluster across the
//! nodes, and `drain` moves what can move and leaves the rest Pending with upstream's
//! message until `uncordon`. Needs root, runc and Debian's etcd-server.

use std::collections::BTreeSet;
use std::time::Duration;

use petset_testkit::{LocalCluster, wait_until};

use crate::binary;

const WEB: &str = r#"
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
  replicas: 3
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      terminationGracePeriodSeconds: 2
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector: {matchLabels: {app: nginx}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: main
        image: petset/etcd:test
        command: ["sh", "-c", "echo serving $(hostname); echo page of $(hostname) > /data/index.html; exec httpd -f -p 80 -h /data"]
        ports: [{containerPort: 80, name: web}]
        volumeMounts: [{name: www, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Mi}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: roamer}
spec:
  serviceName: nginx
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: roamer}}
  template:
    metadata: {labels: {app: roamer}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: petset/etcd:test
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
"#;

fn field(cluster: &LocalCluster, kind: &str, name: &str, path: &str) -> String {
    cluster
        .kubectl(&["get", kind, name, "-o", &format!("jsonpath={{{path}}}")])
        .stdout
        .trim()
        .to_string()
}

fn wait(cluster: &LocalCluster, what: &str, seconds: u64, mut check: impl FnMut() -> bool) {
    assert!(
        wait_until(Duration::from_secs(seconds), &mut check),
        "{what}\n{}\n{}",
        cluster.kubectl(&["get", "pods,pvc", "-o", "wide"]).stdout,
        cluster.kubectl(&["get", "events"]).stdout
    );
}

fn ready(cluster: &LocalCluster, set: &str, count: usize) -> bool {
    field(cluster, "statefulset", set, ".status.readyReplicas") == count.to_string()
}

fn node_of(cluster: &LocalCluster, pod: &str) -> String {
    field(cluster, "pod", pod, ".spec.nodeName")
}

#[test]
fn a_three_node_cluster_runs_stateful_sets_across_its_nodes() {
    let test = "a_three_node_cluster_runs_stateful_sets_across_its_nodes";
    let Some((images, store)) = crate::runc::etcd_image_store(test) else {
        return;
    };
    let cluster = LocalCluster::start_with_images(binary(), 3, "runc", &[], Some(&store))
        .unwrap_or_else(|e| panic!("{e}"));

    // One pod per node, each volume pinned to its pod's node.
    cluster
        .kubectl_with_input(&["apply", "-f", "-"], Some(WEB))
        .ok();
    wait(&cluster, "web has 3 ready pods", 180, || {
        ready(&cluster, "web", 3)
    });
    let nodes: Vec<String> = (0..3)
        .map(|i| node_of(&cluster, &format!("web-{i}")))
        .collect();
    assert_eq!(
        nodes.iter().collect::<BTreeSet<_>>().len(),
        3,
        "web's pods share a node: {nodes:?}"
    );
    for (i, node) in nodes.iter().enumerate() {
        let volume = field(&cluster, "pvc", &format!("www-web-{i}"), ".spec.volumeName");
        let pinned = field(
            &cluster,
            "pv",
            &volume,
            ".spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].values[0]",
        );
        assert_eq!(&pinned, node, "the volume of web-{i} is pinned elsewhere");
    }

    // A deleted pod comes back on its node with its data.
    cluster
        .kubectl(&["exec", "web-1", "--", "sh", "-c", "echo kept > /data/kept"])
        .ok();
    let uid = field(&cluster, "pod", "web-1", ".metadata.uid");
    cluster.kubectl(&["delete", "pod", "web-1"]).ok();
    wait(&cluster, "web-1 comes back", 120, || {
        let now = field(&cluster, "pod", "web-1", ".metadata.uid");
        !now.is_empty() && now != uid && ready(&cluster, "web", 3)
    });
    assert_eq!(node_of(&cluster, "web-1"), nodes[1]);
    let kept = cluster.kubectl(&["exec", "web-1", "--", "cat", "/data/kept"]);
    assert_eq!(kept.ok().trim(), "kept");

    // Names resolve from a pod on another node, and pods reach each other across nodes.
    let ip2 = field(&cluster, "pod", "web-2", ".status.podIP");
    let mut answer = String::new();
    wait(&cluster, "web-2.nginx resolves from web-0", 60, || {
        answer = cluster
            .kubectl(&["exec", "web-0", "--", "nslookup", "web-2.nginx"])
            .stdout;
        answer.contains(&ip2)
    });
    let page = cluster.kubectl(&["exec", "web-0", "--", "wget", "-qO-", "http://web-2.nginx/"]);
    assert_eq!(page.ok().trim(), "page of web-2");

    // logs, exec, port-forward and cp reach pods on every node.
    for i in 0..3 {
        let logs = cluster.kubectl(&["logs", &format!("web-{i}")]);
        assert!(logs.ok().contains(&format!("serving web-{i}")), "{logs:?}");
    }
    let copied = images.path().join("copied.html");
    cluster
        .kubectl(&[
            "cp",
            "web-2:/data/index.html",
            &copied.display().to_string(),
        ])
        .ok();
    assert_eq!(
        std::fs::read_to_string(&copied).expect("copied").trim(),
        "page of web-2"
    );
    let port = petset_testkit::free_port();
    let mut forward = cluster
        .kubectl_command(&["port-forward", "pod/web-2", &format!("{port}:80")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl port-forward");
    let mut forwarded = (0, String::new());
    let reached = wait_until(Duration::from_secs(30), || {
        forwarded =
            petset_testkit::http_get(([127, 0, 0, 1], port).into(), "/").unwrap_or_default();
        forwarded.1.trim() == "page of web-2"
    });
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(reached, "port-forward to web-2 answered {forwarded:?}");

    // The etcd example forms its cluster across the nodes.
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/etcd.yaml"
    ))
    .expect("examples/etcd.yaml")
    .replace("image: petset/etcd:3.4", "image: petset/etcd:test");
    cluster
        .kubectl_with_input(&["apply", "-f", "-"], Some(&example))
        .ok();
    wait(&cluster, "etcd has 3 ready members", 180, || {
        ready(&cluster, "etcd", 3)
    });
    let etcd_nodes: BTreeSet<String> = (0..3)
        .map(|i| node_of(&cluster, &format!("etcd-{i}")))
        .collect();
    assert_eq!(
        etcd_nodes.len(),
        3,
        "etcd's members share a node: {etcd_nodes:?}"
    );
    let put = cluster.kubectl(&[
        "exec",
        "etcd-0",
        "--",
        "wget",
        "-qO-",
        "--post-data",
        r#"{"key":"Z3JlZXRpbmc=","value":"aGVsbG8="}"#,
        "http://etcd-2.etcd:2379/v3/kv/put",
    ]);
    assert!(put.ok().contains("revision"), "{put:?}");

    // drain: what can move moves, the rest waits Pending with upstream's message.
    wait(&cluster, "roamer has 3 ready pods", 120, || {
        ready(&cluster, "roamer", 3)
    });
    let drained = nodes[1].clone();
    cluster
        .kubectl(&[
            "drain",
            &drained,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=120s",
        ])
        .ok();
    wait(&cluster, "the roamers run elsewhere", 120, || {
        ready(&cluster, "roamer", 3)
            && (0..3).all(|i| node_of(&cluster, &format!("roamer-{i}")) != drained)
    });
    let mut message = String::new();
    wait(
        &cluster,
        "web-1 waits Pending with the scheduler's reason",
        60,
        || {
            message = field(
                &cluster,
                "pod",
                "web-1",
                ".status.conditions[?(@.type=='PodScheduled')].message",
            );
            message.starts_with("0/3 nodes are available:")
                && message.contains("1 node(s) were unschedulable")
                && message.contains("volume node affinity conflict")
        },
    );
    assert_eq!(field(&cluster, "pod", "web-1", ".status.phase"), "Pending");
    cluster.kubectl(&["uncordon", &drained]).ok();
    wait(&cluster, "web-1 is back on its node", 120, || {
        ready(&cluster, "web", 3) && node_of(&cluster, "web-1") == drained
    });
    let kept = cluster.kubectl(&["exec", "web-1", "--", "cat", "/data/kept"]);
    assert_eq!(kept.ok().trim(), "kept");

    let mut cluster = cluster;
    let status = cluster.stop().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status}\n{}", cluster.log());
}
