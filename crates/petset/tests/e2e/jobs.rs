//! Jobs with the real kubectl: a Job that fails twice and then succeeds (real processes on the
//! runc node, a counter on a claim), an Indexed Job, a Job past its backoffLimit, and the
//! columns of `kubectl get jobs` (simulated node).

use std::time::Duration;

use petset_testkit::{Petset, can_run_containers, wait_until};

use crate::runc::start_with_busybox;
use crate::start;
use crate::statefulset::wait_for_within;

/// Creates the objects of a YAML `manifest` with `kubectl create -f -`.
fn create(petset: &Petset, manifest: &str) {
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(manifest))
        .ok();
}

/// Waits (a minute at most) for `job` (`job/<name>`) to complete.
fn wait_complete(petset: &Petset, job: &str) {
    petset
        .kubectl(&["wait", "--for=condition=complete", job, "--timeout=60s"])
        .ok();
}

/// The whitespace-separated columns of line `line` of a kubectl table.
fn columns(table: &str, line: usize) -> Vec<&str> {
    table
        .lines()
        .nth(line)
        .unwrap_or_default()
        .split_whitespace()
        .collect()
}

const FLAKY: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: counter}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: flaky}
spec:
  backoffLimit: 4
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:test
        command: ["sh", "-c", "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo attempt $n; [ $n -ge 3 ]"]
        volumeMounts: [{name: data, mountPath: /data}]
      volumes:
      - name: data
        persistentVolumeClaim: {claimName: counter}
"#;

#[test]
fn a_job_that_fails_twice_then_succeeds_backs_off_and_completes() {
    if !can_run_containers("a_job_that_fails_twice_then_succeeds_backs_off_and_completes") {
        return;
    }
    let (_images, petset) = start_with_busybox(&[]);
    create(&petset, FLAKY);
    wait_for_within(
        &petset,
        "the job completes",
        &[
            "get",
            "job",
            "flaky",
            "-o",
            "jsonpath={.status.failed} {.status.succeeded} {.status.conditions[?(@.type==\"Complete\")].status}",
        ],
        "2 1 True",
        Duration::from_secs(180),
    );
    // The second failure waited for the back-off: 10 s after the first, 20 s after the second.
    let times = petset
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name=flaky",
            "--sort-by=.metadata.creationTimestamp",
            "-o",
            "jsonpath={range .items[*]}{.metadata.creationTimestamp} {end}",
        ])
        .ok()
        .to_string();
    let stamps: Vec<jiff::Timestamp> = times
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    assert_eq!(stamps.len(), 3, "{times}");
    assert!((stamps[1] - stamps[0]).get_seconds() >= 10, "{times}");
    assert!((stamps[2] - stamps[1]).get_seconds() >= 20, "{times}");
    let events = petset
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=flaky",
        ])
        .ok()
        .to_string();
    assert!(events.contains("Created pod: flaky-"), "{events}");
    assert!(events.contains("Job completed"), "{events}");
    // The last pod ran the third attempt.
    let last = petset
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "batch.kubernetes.io/job-name=flaky",
            "--sort-by=.metadata.creationTimestamp",
            "-o",
            "jsonpath={.items[2].metadata.name}",
        ])
        .ok()
        .to_string();
    let logs = petset.kubectl(&["logs", last.trim()]).ok().to_string();
    assert!(logs.contains("attempt 3"), "{logs}");
}

const INDEXED: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: indexed}
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:test
        command: ["sh", "-c", "echo index $JOB_COMPLETION_INDEX"]
"#;

#[test]
fn an_indexed_job_gives_each_pod_its_index() {
    if !can_run_containers("an_indexed_job_gives_each_pod_its_index") {
        return;
    }
    let (_images, petset) = start_with_busybox(&[]);
    create(&petset, INDEXED);
    wait_for_within(
        &petset,
        "the indexed job completes",
        &[
            "get",
            "job",
            "indexed",
            "-o",
            "jsonpath={.status.succeeded} {.status.completedIndexes}",
        ],
        "3 0-2",
        Duration::from_secs(120),
    );
    for index in 0..3 {
        let pods = petset
            .kubectl(&[
                "get",
                "pods",
                "-l",
                &format!("batch.kubernetes.io/job-completion-index={index}"),
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ])
            .ok()
            .to_string();
        let pod = pods
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(pod.starts_with(&format!("indexed-{index}-")), "{pods}");
        let log = petset.kubectl(&["logs", &pod]).ok().to_string();
        assert_eq!(log.trim(), format!("index {index}"));
    }
}

const SIMULATED_JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: pi}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: pi, image: perl:5.34.0}]
"#;

#[test]
fn jobs_on_the_simulated_node_complete_and_print_as_upstream() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    create(&petset, SIMULATED_JOB);
    wait_complete(&petset, "job/pi");
    let table = petset.kubectl(&["get", "jobs"]).ok().to_string();
    let header: Vec<&str> = columns(&table, 0);
    assert_eq!(
        header,
        ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = columns(&table, 1);
    assert_eq!(&row[..3], ["pi", "Complete", "1/1"], "{table}");
    let wide = petset
        .kubectl(&["get", "jobs", "-o", "wide"])
        .ok()
        .to_string();
    let wide_header: Vec<&str> = columns(&wide, 0);
    assert_eq!(
        wide_header,
        [
            "NAME",
            "STATUS",
            "COMPLETIONS",
            "DURATION",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ],
        "{wide}"
    );
    assert!(
        wide.contains("batch.kubernetes.io/controller-uid="),
        "{wide}"
    );
    // The finished pod kept no tracking finalizer.
    let finalizers = petset
        .kubectl(&[
            "get",
            "pods",
            "-l",
            "job-name=pi",
            "-o",
            "jsonpath={.items[*].metadata.finalizers}",
        ])
        .ok()
        .to_string();
    assert_eq!(finalizers.trim(), "");
    // restartPolicy Always is refused as upstream words it.
    let refused = petset.kubectl_with_input(
        &["create", "-f", "-"],
        Some(
            &SIMULATED_JOB
                .replace("Never", "Always")
                .replace("name: pi}", "name: always}"),
        ),
    );
    assert!(refused.stderr.contains("spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""), "{}", refused.stderr);
}

const HOPELESS: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: hopeless}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:test
        command: ["sh", "-c", "exit 3"]
"#;

#[test]
fn a_job_past_its_backoff_limit_fails_with_upstreams_reason() {
    if !can_run_containers("a_job_past_its_backoff_limit_fails_with_upstreams_reason") {
        return;
    }
    let (_images, petset) = start_with_busybox(&[]);
    create(&petset, HOPELESS);
    wait_for_within(
        &petset,
        "the job fails",
        &[
            "get",
            "job",
            "hopeless",
            "-o",
            "jsonpath={.status.failed} {.status.conditions[?(@.type==\"Failed\")].reason}",
        ],
        "2 BackoffLimitExceeded",
        Duration::from_secs(120),
    );
    let row = petset
        .kubectl(&["get", "job", "hopeless", "--no-headers"])
        .ok()
        .to_string();
    assert!(row.contains("Failed"), "{row}");
}

const HELLO: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: hello}
spec:
  schedule: "*/1 * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: hello, image: busybox:1.28}]
"#;

#[test]
fn a_cronjob_fires_every_minute_and_kubectl_makes_a_job_from_it() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    create(&petset, HELLO);
    let table = petset.kubectl(&["get", "cronjobs"]).ok().to_string();
    let header: Vec<&str> = columns(&table, 0);
    assert_eq!(
        header,
        [
            "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"
        ],
        "{table}"
    );
    // `kubectl create job --from` builds the Job client-side from the jobTemplate.
    petset
        .kubectl(&["create", "job", "manual", "--from=cronjob/hello"])
        .ok();
    wait_complete(&petset, "job/manual");
    let annotation = petset
        .kubectl(&[
            "get",
            "job",
            "manual",
            "-o",
            "jsonpath={.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}",
        ])
        .ok()
        .to_string();
    assert_eq!(annotation.trim(), "manual");
    // The schedule fires within a minute (and a half, for slow machines) of creation.
    let mut scheduled = String::new();
    let fired = wait_until(Duration::from_secs(150), || {
        scheduled = petset
            .kubectl(&[
                "get",
                "jobs",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}={.status.succeeded} {end}",
            ])
            .stdout;
        scheduled
            .split_whitespace()
            .any(|j| j.starts_with("hello-") && j.ends_with("=1"))
    });
    assert!(
        fired,
        "a scheduled job completed: {scheduled:?}\n{}",
        petset.log()
    );
    let name = scheduled
        .split_whitespace()
        .find(|j| j.starts_with("hello-"))
        .and_then(|j| j.split('=').next())
        .unwrap_or_default()
        .to_string();
    let minutes: i64 = name
        .trim_start_matches("hello-")
        .parse()
        .expect("minutes since the epoch");
    let last = petset
        .kubectl(&[
            "get",
            "cronjob",
            "hello",
            "-o",
            "jsonpath={.status.lastScheduleTime}",
        ])
        .ok()
        .to_string();
    let last: jiff::Timestamp = last.trim().parse().expect("lastScheduleTime");
    assert!(last.as_second() / 60 >= minutes, "{last} {name}");
    let events = petset
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.kind=CronJob",
        ])
        .ok()
        .to_string();
    assert!(events.contains(&format!("Created job {name}")), "{events}");
}
