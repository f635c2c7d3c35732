//! PodDisruptionBudgets with the real kubectl on the simulated node: the disruption
//! controller's status in `kubectl get pdb`, and `kubectl drain` evicting a StatefulSet's pods
//! only as far as its budget allows.

use std::time::Duration;

use petset_testkit::wait_until;

use crate::start;
use crate::statefulset::wait_ready_replicas;

const SET_AND_BUDGET: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: registry.k8s.io/nginx-slim:0.8
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 2
  selector:
    matchLabels:
      app: web
";

#[test]
fn drain_stops_at_a_statefulsets_disruption_budget() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(SET_AND_BUDGET))
        .ok();
    wait_ready_replicas(&petset, "web", 3);
    let mut table = String::new();
    let allowed = wait_until(Duration::from_secs(60), || {
        table = petset.kubectl(&["get", "pdb", "web"]).stdout;
        table.lines().nth(1).is_some_and(|row| {
            row.split_whitespace().collect::<Vec<_>>()[..4] == ["web", "2", "N/A", "1"]
        })
    });
    assert!(allowed, "{table}\n{}", petset.log());
    assert!(
        table.starts_with("NAME   MIN AVAILABLE   MAX UNAVAILABLE   ALLOWED DISRUPTIONS   AGE"),
        "{table}"
    );
    let status = petset
        .kubectl(&["get", "pdb", "web", "-o", "jsonpath={.status.currentHealthy} {.status.desiredHealthy} {.status.expectedPods} {.status.conditions[0].reason}"])
        .ok()
        .to_string();
    assert_eq!(status, "3 2 3 SufficientPods");

    let node = petset
        .kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])
        .ok()
        .to_string();
    let drain = petset.kubectl(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=30s",
    ]);
    assert!(!drain.success, "the drain cannot finish: {}", drain.stdout);
    let said = format!("{}\n{}", drain.stdout, drain.stderr);
    let refused: Vec<&str> = said
        .lines()
        .filter(|line| line.contains("(will retry after 5s)"))
        .collect();
    assert!(!refused.is_empty(), "{said}");
    for line in &refused {
        let pod = ["web-0", "web-1", "web-2"]
            .into_iter()
            .find(|pod| line.contains(&format!("pods/\"{pod}\"")))
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            line.ends_with(&format!(
                "error when evicting pods/\"{pod}\" -n \"default\" (will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."
            )),
            "{line}"
        );
    }
    // Exactly one pod went: the one evicted, whose replacement cannot be placed on the
    // cordoned node.
    let evicted: Vec<&str> = said
        .lines()
        .filter(|line| line.starts_with("pod/") && line.ends_with(" evicted"))
        .collect();
    assert_eq!(evicted.len(), 1, "{said}");
    let refused_pods: std::collections::BTreeSet<&str> = refused
        .iter()
        .filter_map(|line| line.split('"').nth(1))
        .collect();
    assert_eq!(refused_pods.len(), 2, "{said}");
    let pdb = petset
        .kubectl(&[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.disruptionsAllowed} {.status.currentHealthy}",
        ])
        .ok()
        .to_string();
    assert_eq!(pdb, "0 2");

    petset.kubectl(&["uncordon", &node]).ok();
    wait_ready_replicas(&petset, "web", 3);
    let restored = wait_until(Duration::from_secs(60), || {
        petset
            .kubectl(&[
                "get",
                "pdb",
                "web",
                "-o",
                "jsonpath={.status.disruptionsAllowed}",
            ])
            .stdout
            .trim()
            == "1"
    });
    assert!(restored, "{}", petset.log());
}
