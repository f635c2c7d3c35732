//! Bounded controller work: a StatefulSet of any valid size never takes the server down.
//! The worst valid set (`replicas: 2147483647`, Parallel, a claim per pod) makes petset
//! create pods and claims as fast as it can; its memory stays bounded by the objects that
//! exist, and scaling the set to 0 or deleting its namespace stops the work.

use std::time::{Duration, Instant};

use petset_testkit::{Petset, wait_until};

use crate::start;

/// Far below what a plan allocating `replicas` entries reaches within seconds (it grew by
/// about 0.5 GB/s), far above what a few thousand pods and claims take.
const RSS_LIMIT: u64 = 1 << 30;
/// "Some hundreds of pods": enough that the controller is well into its create bursts.
const PODS_BEFORE_CHECKING: usize = 600;
/// Generous: on a loaded 2-core machine a few hundred pods take seconds, not minutes.
const PATIENCE: Duration = Duration::from_secs(240);

fn huge_set(namespace: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: huge
  namespace: {namespace}
spec:
  serviceName: huge
  replicas: 2147483647
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: huge
  template:
    metadata:
      labels:
        app: huge
    spec:
      containers:
      - name: app
        image: busybox:1.28
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Mi
"#
    )
}

/// Whether the namespace holds no pod, from a list of at most one (cheap at any count).
fn no_pods(petset: &Petset, namespace: &str) -> Option<bool> {
    let path = format!("/api/v1/namespaces/{namespace}/pods?limit=1");
    let run = petset.kubectl(&["get", "--raw", &path]);
    if !run.success {
        return None;
    }
    let list: serde_json::Value = serde_json::from_str(&run.stdout).ok()?;
    Some(list["items"].as_array()?.is_empty())
}

/// The pods the set counts in its status (every pod of it has a phase, Pending included).
fn counted_pods(petset: &Petset, namespace: &str) -> u64 {
    petset
        .kubectl(&[
            "get",
            "statefulset",
            "huge",
            "-n",
            namespace,
            "-o",
            "jsonpath={.status.replicas}",
        ])
        .stdout
        .trim()
        .parse()
        .unwrap_or(0)
}

/// Records the highest RSS seen, and fails the test at once when it passes the limit.
struct Memory<'a> {
    petset: &'a Petset,
    highest: u64,
}

impl<'a> Memory<'a> {
    fn of(petset: &'a Petset) -> Self {
        Self { petset, highest: 0 }
    }

    #[track_caller]
    fn check(&mut self, what: &str) {
        let rss = self
            .petset
            .rss_bytes()
            .unwrap_or_else(|| panic!("petset is gone while {what}:\n{}", self.petset.log()));
        self.highest = self.highest.max(rss);
        assert!(
            rss < RSS_LIMIT,
            "petset's RSS is {} MiB while {what}",
            rss >> 20
        );
    }
}

/// Waits until `namespace` holds at least `count` pods, checking memory all along. Parallel
/// creates ordinals in ascending batches, so pod `huge-<count - 1>` stands for them all.
fn wait_for_pods(petset: &Petset, memory: &mut Memory<'_>, namespace: &str, count: usize) {
    let last = format!("huge-{}", count - 1);
    let enough = wait_until(PATIENCE, || {
        memory.check("creating pods");
        petset
            .kubectl(&["get", "pod", &last, "-n", namespace, "-o", "name"])
            .success
    });
    assert!(enough, "pod {last} was never created\n{}", petset.log());
}

#[test]
fn a_set_of_the_largest_size_creates_pods_in_bounded_memory_and_scaling_it_to_zero_stops_it() {
    let petset = start(&["--store", "memory", "--node-runtime", "none"]);
    let mut memory = Memory::of(&petset);
    memory.check("idle");
    let idle = memory.highest;
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(&huge_set("default")))
        .ok();
    let began = Instant::now();
    wait_for_pods(&petset, &mut memory, "default", PODS_BEFORE_CHECKING);
    // Measured, not asserted: the rate goes in the report.
    // The status lags the creations; pod huge-599 exists, so at least 600 do.
    let created = counted_pods(&petset, "default").max(PODS_BEFORE_CHECKING as u64);
    eprintln!(
        "{created} pods in {:.1} s ({:.0} pods/s); RSS idle {} MiB, highest {} MiB",
        began.elapsed().as_secs_f64(),
        created as f64 / began.elapsed().as_secs_f64(),
        idle >> 20,
        memory.highest >> 20
    );

    petset
        .kubectl(&["scale", "statefulset", "huge", "--replicas=0"])
        .ok();
    let emptied = wait_until(PATIENCE, || {
        memory.check("scaling to 0");
        no_pods(&petset, "default") == Some(true)
    });
    assert!(
        emptied,
        "{} pods are left after scaling to 0\n{}",
        counted_pods(&petset, "default"),
        petset.log()
    );
    // The controller has seen the scale (its status says so) and still creates nothing.
    let observed = wait_until(PATIENCE, || {
        petset
            .kubectl(&[
                "get",
                "statefulset",
                "huge",
                "-o",
                "jsonpath={.metadata.generation}={.status.observedGeneration}:{.status.replicas}",
            ])
            .stdout
            == "2=2:0"
    });
    assert!(
        observed,
        "the scale to 0 was never observed\n{}",
        petset.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        no_pods(&petset, "default"),
        Some(true),
        "pods were created after the scale to 0"
    );
    memory.check("scaled to 0");
    eprintln!(
        "scaled to 0; RSS highest {} MiB, now {} MiB",
        memory.highest >> 20,
        petset.rss_bytes().unwrap_or(0) >> 20
    );
}

#[test]
fn deleting_the_namespace_of_a_set_of_the_largest_size_finishes() {
    let petset = start(&["--store", "memory", "--node-runtime", "none"]);
    let mut memory = Memory::of(&petset);
    petset.kubectl(&["create", "namespace", "huge"]).ok();
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(&huge_set("huge")))
        .ok();
    wait_for_pods(&petset, &mut memory, "huge", PODS_BEFORE_CHECKING);
    petset
        .kubectl(&["delete", "namespace", "huge", "--wait=false"])
        .ok();
    let mut last = String::new();
    let gone = wait_until(PATIENCE, || {
        memory.check("deleting the namespace");
        let run = petset.kubectl(&["get", "namespace", "huge", "-o", "name"]);
        last = format!("{}{}", run.stdout, run.stderr);
        !run.success && run.stderr.contains("NotFound")
    });
    assert!(
        gone,
        "namespace huge was not deleted; last: {last}\n{}",
        petset.log()
    );
    assert_eq!(no_pods(&petset, "huge"), Some(true));
    eprintln!(
        "namespace deleted; RSS highest {} MiB",
        memory.highest >> 20
    );
}
