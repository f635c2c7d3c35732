//! Deployments, ReplicaSets and ReplicationControllers with the real kubectl: seed 002's
//! go-demo-3 Deployment half (with stand-in images), rolling updates with rollout status,
//! history and undo, a Recreate rollout, scaling, and `get all`.

use std::time::Duration;

use petset_testkit::{Petset, can_run_containers, wait_until};

use crate::runc::start_with_busybox;
use crate::start;
use crate::statefulset::wait_for;

/// `sts/go-demo-3-deploy.yml` as the tutorial describes it (Namespace, the `db` and `api`
/// Deployments of three replicas each, their Services, the `mongo` claim), with busybox
/// standing in for mongo and go-demo-3, and without its Ingress.
const GO_DEMO_3: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: go-demo-3}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: mongo, namespace: go-demo-3}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 2Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: go-demo-3}
spec:
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: db
        image: busybox:test
        command: ["sh", "-c", "echo waiting for connections on port 27017; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
        volumeMounts: [{name: mongo-data, mountPath: /data/db}]
      volumes:
      - name: mongo-data
        persistentVolumeClaim: {claimName: mongo}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: go-demo-3}
spec:
  ports: [{port: 27017}]
  selector: {app: db}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: go-demo-3}
spec:
  replicas: 3
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: api
        image: busybox:test
        command: ["sh", "-c", "echo connecting to $DB; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
        env: [{name: DB, value: db}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: go-demo-3}
spec:
  ports: [{port: 8080}]
  selector: {app: api}
"#;

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: "nginx:1.14"}
"#;

fn rollout_status(petset: &Petset, args: &[&str]) -> String {
    let mut full = vec!["rollout", "status", "--timeout=120s"];
    full.extend_from_slice(args);
    let out = petset.kubectl(&full);
    assert!(
        out.stdout.contains("successfully rolled out"),
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        petset.log()
    );
    out.stdout
}

fn images(petset: &Petset, label: &str) -> String {
    petset
        .kubectl(&[
            "get",
            "pods",
            "-l",
            label,
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ])
        .ok()
        .to_string()
}

/// Waits until the pods of `label` are `count` live ones (none terminating), all running
/// `image`.
fn wait_images(petset: &Petset, label: &str, image: &str, count: usize) {
    let mut last = String::new();
    let done = wait_until(Duration::from_secs(60), || {
        last = petset
            .kubectl(&[
                "get",
                "pods",
                "-l",
                label,
                "-o",
                "jsonpath={range .items[*]}{.metadata.deletionTimestamp}/{.spec.containers[0].image} {end}",
            ])
            .stdout;
        let pods: Vec<&str> = last.split_whitespace().collect();
        pods.len() == count && pods.iter().all(|p| *p == format!("/{image}"))
    });
    assert!(done, "pods of {label}: {last}");
}

/// Whether `text` has a line of exactly these words.
fn has_row(text: &str, words: &[&str]) -> bool {
    text.lines()
        .any(|line| line.split_whitespace().collect::<Vec<_>>() == words)
}

#[test]
fn seed_002_go_demo_3_deployments_roll_out_with_six_pods_and_logs() {
    const TEST: &str = "seed_002_go_demo_3_deployments_roll_out_with_six_pods_and_logs";
    if !can_run_containers(TEST) {
        return;
    }
    let (_images, petset) = start_with_busybox(&["--store", "memory"]);
    petset
        .kubectl_with_input(&["create", "-f", "-", "--save-config"], Some(GO_DEMO_3))
        .ok();
    rollout_status(&petset, &["-n", "go-demo-3", "deployment", "api"]);
    rollout_status(&petset, &["-n", "go-demo-3", "deployment", "db"]);
    let mut last = String::new();
    let six = wait_until(Duration::from_secs(60), || {
        last = petset.kubectl(&["-n", "go-demo-3", "get", "pods"]).stdout;
        let rows: Vec<&str> = last.lines().skip(1).collect();
        rows.len() == 6
            && rows
                .iter()
                .all(|r| r.contains("1/1") && r.contains("Running"))
            && rows.iter().filter(|r| r.starts_with("api-")).count() == 3
            && rows.iter().filter(|r| r.starts_with("db-")).count() == 3
    });
    assert!(six, "{last}");
    let db = petset
        .kubectl(&[
            "-n",
            "go-demo-3",
            "get",
            "pods",
            "-l",
            "app=db",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
        .ok()
        .to_string();
    let mut logs = String::new();
    let logged = wait_until(Duration::from_secs(30), || {
        logs = petset.kubectl(&["-n", "go-demo-3", "logs", &db]).stdout;
        logs.contains("waiting for connections on port 27017")
    });
    assert!(logged, "{logs}");
    let all = petset
        .kubectl(&["-n", "go-demo-3", "get", "all"])
        .ok()
        .to_string();
    for expected in [
        "deployment.apps/api",
        "deployment.apps/db",
        "replicaset.apps/api-",
        "service/db",
        "pod/db-",
    ] {
        assert!(all.contains(expected), "{expected} missing from\n{all}");
    }
    // The pods made for a deployment carry its replica set's name and template hash.
    let hash = petset
        .kubectl(&[
            "-n",
            "go-demo-3",
            "get",
            "rs",
            "-l",
            "app=api",
            "-o",
            "jsonpath={.items[0].metadata.labels.pod-template-hash}",
        ])
        .ok()
        .to_string();
    assert!(!hash.is_empty());
    let names = petset
        .kubectl(&[
            "-n",
            "go-demo-3",
            "get",
            "pods",
            "-l",
            "app=api",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .ok()
        .to_string();
    assert!(
        names
            .split_whitespace()
            .all(|n| n.starts_with(&format!("api-{hash}-"))),
        "{names}"
    );
}

#[test]
fn a_deployment_rolls_forward_and_back_with_history_on_the_simulated_node() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(WEB))
        .ok();
    rollout_status(&petset, &["deployment/web"]);
    assert_eq!(
        images(&petset, "app=web"),
        "nginx:1.14 nginx:1.14 nginx:1.14"
    );
    let get = petset.kubectl(&["get", "deploy", "web"]).ok().to_string();
    let header: Vec<&str> = get
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(
        get.lines().nth(1).is_some_and(|l| l.contains("3/3")),
        "{get}"
    );
    let wide = petset
        .kubectl(&["get", "deploy", "web", "-o", "wide"])
        .ok()
        .to_string();
    assert!(
        wide.contains("SELECTOR") && wide.contains("app=web") && wide.contains("nginx:1.14"),
        "{wide}"
    );

    petset
        .kubectl(&["set", "image", "deployment/web", "web=nginx:1.16"])
        .ok();
    rollout_status(&petset, &["deployment/web"]);
    wait_images(&petset, "app=web", "nginx:1.16", 3);
    let history = petset
        .kubectl(&["rollout", "history", "deployment/web"])
        .ok()
        .to_string();
    assert!(
        history.contains("REVISION")
            && history.lines().any(|l| l.starts_with("1 "))
            && history.lines().any(|l| l.starts_with("2 ")),
        "{history}"
    );
    let revision_one = petset
        .kubectl(&["rollout", "history", "deployment/web", "--revision=1"])
        .ok()
        .to_string();
    assert!(revision_one.contains("nginx:1.14"), "{revision_one}");

    let describe = petset
        .kubectl(&["describe", "deploy", "web"])
        .ok()
        .to_string();
    for expected in [
        "RollingUpdateStrategy:  25% max unavailable, 25% max surge",
        "NewReplicaSet:",
        "OldReplicaSets:",
        "ScalingReplicaSet",
        "deployment-controller",
    ] {
        assert!(
            describe.contains(expected),
            "{expected} missing from\n{describe}"
        );
    }
    assert!(
        has_row(
            &describe,
            &["Progressing", "True", "NewReplicaSetAvailable"]
        ),
        "{describe}"
    );
    assert!(
        has_row(
            &describe,
            &["Available", "True", "MinimumReplicasAvailable"]
        ),
        "{describe}"
    );
    assert!(
        describe.contains("Scaled up replica set web-") && describe.contains("from 0 to 3"),
        "{describe}"
    );

    petset
        .kubectl(&["rollout", "undo", "deployment/web", "--to-revision=1"])
        .ok();
    rollout_status(&petset, &["deployment/web"]);
    wait_images(&petset, "app=web", "nginx:1.14", 3);
    wait_for(
        &petset,
        "revision 3",
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ],
        "3",
    );
    let rs = petset
        .kubectl(&["get", "rs", "-l", "app=web"])
        .ok()
        .to_string();
    let header: Vec<&str> = rs
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    assert_eq!(rs.lines().count(), 3, "{rs}");

    petset
        .kubectl(&["scale", "deploy", "web", "--replicas=5"])
        .ok();
    rollout_status(&petset, &["deployment/web"]);
    wait_images(&petset, "app=web", "nginx:1.14", 5);

    petset.kubectl(&["rollout", "pause", "deployment/web"]).ok();
    petset
        .kubectl(&["set", "image", "deployment/web", "web=nginx:1.17"])
        .ok();
    wait_for(
        &petset,
        "paused condition",
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}",
        ],
        "DeploymentPaused",
    );
    assert_eq!(
        images(&petset, "app=web")
            .split_whitespace()
            .filter(|i| *i == "nginx:1.17")
            .count(),
        0
    );
    petset
        .kubectl(&["rollout", "resume", "deployment/web"])
        .ok();
    rollout_status(&petset, &["deployment/web"]);
    wait_images(&petset, "app=web", "nginx:1.17", 5);
    petset
        .kubectl(&["rollout", "restart", "deployment/web"])
        .ok();
    rollout_status(&petset, &["deployment/web"]);
    wait_for(
        &petset,
        "revision 5",
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ],
        "5",
    );
}

#[test]
fn a_recreate_rollout_replaces_every_pod_at_once_and_rcs_scale() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    let recreate = WEB.replace("replicas: 3", "replicas: 3\n  strategy: {type: Recreate}");
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(&recreate))
        .ok();
    rollout_status(&petset, &["deployment/web"]);
    petset
        .kubectl(&["set", "image", "deployment/web", "web=nginx:1.16"])
        .ok();
    // Sample while it rolls: never an old pod beside a new one.
    let mut seen_mixed = None;
    let done = wait_until(Duration::from_secs(60), || {
        let all = images(&petset, "app=web");
        if all.contains("nginx:1.14") && all.contains("nginx:1.16") {
            seen_mixed = Some(all.clone());
        }
        all == "nginx:1.16 nginx:1.16 nginx:1.16"
    });
    assert!(done, "{}", images(&petset, "app=web"));
    assert_eq!(seen_mixed, None);
    rollout_status(&petset, &["deployment/web"]);

    let rc = r#"
apiVersion: v1
kind: ReplicationController
metadata: {name: nginx}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: nginx}]
"#;
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(rc))
        .ok();
    wait_for(
        &petset,
        "rc ready",
        &[
            "get",
            "rc",
            "nginx",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "2",
    );
    petset
        .kubectl(&["scale", "rc", "nginx", "--replicas=4"])
        .ok();
    wait_for(
        &petset,
        "rc scaled",
        &[
            "get",
            "rc",
            "nginx",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "4",
    );
    let table = petset
        .kubectl(&["get", "rc", "nginx", "-o", "wide"])
        .ok()
        .to_string();
    assert!(
        table.contains("app=nginx") && table.contains("DESIRED"),
        "{table}"
    );
    let all = petset.kubectl(&["get", "all"]).ok().to_string();
    for expected in [
        "deployment.apps/web",
        "replicaset.apps/web-",
        "replicationcontroller/nginx",
        "pod/nginx-",
    ] {
        assert!(all.contains(expected), "{expected} missing from\n{all}");
    }
    let described = petset
        .kubectl(&["describe", "rc", "nginx"])
        .ok()
        .to_string();
    assert!(
        described.contains("Created pod: nginx-") && described.contains("4 current / 4 desired"),
        "{described}"
    );
}
