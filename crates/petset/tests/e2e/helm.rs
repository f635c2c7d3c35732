//! Helm on the simulated node, as a new user drives it: each chart of `../shared/charts` with
//! its default values (NetworkPolicies and PodDisruptionBudgets included), installed, upgraded
//! to another replica count, rolled back, uninstalled and installed again under the same name,
//! with Helm 3 (client-side apply) and Helm 4 (server-side apply). The etcd chart upgrades
//! through its `pre-upgrade` Job hook (`templates/preupgrade-hook-job.yaml`, delete policy
//! `before-hook-creation`). Helm is installed by `scripts/install-deps.sh test`
//! (/usr/local/bin/helm is Helm 4, /usr/local/bin/helm3 Helm 3).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use petset_testkit::{Petset, skip, wait_until};

use crate::start;

/// A chart: in `$PETSET_SHARED_DIR/charts`, else in the `shared/charts` nearest above the
/// repository (`../shared` beside a checkout, wherever the checkout sits).
fn chart(name: &str) -> PathBuf {
    let relative = Path::new("charts/bitnami").join(name);
    if let Some(dir) = std::env::var_os("PETSET_SHARED_DIR") {
        return Path::new(&dir).join(relative);
    }
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    repository
        .ancestors()
        .map(|dir| dir.join("shared").join(&relative))
        .find(|chart| chart.join("Chart.yaml").is_file())
        .unwrap_or_else(|| repository.join("../shared").join(&relative))
}

/// Runs helm against `petset` with a private HOME and cache; (success, stdout + stderr).
fn helm(petset: &Petset, helm: &Path, args: &[&str]) -> (bool, String) {
    let home = petset.data_dir().join("helm-home");
    let output = Command::new(helm)
        .args(args)
        .env("KUBECONFIG", petset.kubeconfig())
        .env("HOME", &home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("helm runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// What one chart's lifecycle changes and checks.
struct Lifecycle {
    chart: &'static str,
    release: &'static str,
    /// The StatefulSet whose replicas the upgrade changes.
    workload: &'static str,
    /// The `--set` of the upgrade, and the replica counts before and after it.
    upgrade: &'static str,
    replicas: (u32, u32),
    /// A Job hook the upgrade runs, if the chart has one.
    hook: Option<&'static str>,
}

const ETCD: Lifecycle = Lifecycle {
    chart: "etcd",
    release: "my-etcd",
    workload: "my-etcd",
    upgrade: "replicaCount=3",
    replicas: (1, 3),
    hook: Some("my-etcd-pre-upgrade"),
};

const REDIS: Lifecycle = Lifecycle {
    chart: "redis",
    release: "my-redis",
    workload: "my-redis-replicas",
    upgrade: "replica.replicaCount=2",
    replicas: (3, 2),
    hook: None,
};

fn spec_replicas(petset: &Petset, workload: &str) -> String {
    petset
        .kubectl(&["get", "sts", workload, "-o", "jsonpath={.spec.replicas}"])
        .stdout
        .trim()
        .to_string()
}

fn ready_replicas(petset: &Petset, workload: &str, want: u32) -> bool {
    wait_until(Duration::from_secs(120), || {
        petset
            .kubectl(&[
                "get",
                "sts",
                workload,
                "-o",
                "jsonpath={.status.readyReplicas}",
            ])
            .stdout
            .trim()
            == want.to_string()
    })
}

/// install --wait, upgrade, rollback, uninstall, install again: each step must succeed and
/// leave the cluster as Helm says.
fn run_lifecycle(test: &str, helm_path: &str, plan: &Lifecycle) {
    let helm_path = Path::new(helm_path);
    if !helm_path.is_file() {
        return skip(
            test,
            &format!(
                "no {} (scripts/install-deps.sh test installs it)",
                helm_path.display()
            ),
        );
    }
    let chart = chart(plan.chart);
    if !chart.join("Chart.yaml").is_file() {
        return skip(test, &format!("no chart at {}", chart.display()));
    }
    let chart = chart.to_string_lossy().into_owned();
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    let release = plan.release;
    let install = ["install", release, &chart, "--wait", "--timeout", "3m"];
    let (ok, out) = helm(&petset, helm_path, &install);
    assert!(ok, "helm install: {out}\n{}", petset.log());
    assert_eq!(
        spec_replicas(&petset, plan.workload),
        plan.replicas.0.to_string()
    );

    let upgrade = [
        "upgrade",
        release,
        &chart,
        "--set",
        plan.upgrade,
        "--wait",
        "--timeout",
        "4m",
    ];
    let (ok, out) = helm(&petset, helm_path, &upgrade);
    assert!(ok, "helm upgrade: {out}\n{}", petset.log());
    if let Some(hook) = plan.hook {
        // The hook ran as a Job and completed (its delete policy keeps it until the next hook).
        let job = petset.kubectl(&[
            "get",
            "job",
            hook,
            "-o",
            "jsonpath={.status.succeeded} {.status.conditions[?(@.type==\"Complete\")].status}",
        ]);
        assert_eq!(job.stdout.trim(), "1 True", "{}", job.stderr);
    }
    assert!(
        ready_replicas(&petset, plan.workload, plan.replicas.1),
        "{} ready replicas after the upgrade\n{}",
        plan.replicas.1,
        petset.log()
    );

    let (ok, out) = helm(&petset, helm_path, &["rollback", release, "1", "--wait"]);
    assert!(ok, "helm rollback: {out}\n{}", petset.log());
    let (ok, out) = helm(&petset, helm_path, &["history", release]);
    assert!(ok && out.contains("Rollback to 1"), "helm history: {out}");
    assert_eq!(
        spec_replicas(&petset, plan.workload),
        plan.replicas.0.to_string()
    );

    // Helm deletes its release Secrets with a protobuf DeleteOptions body.
    let (ok, out) = helm(&petset, helm_path, &["uninstall", release, "--wait"]);
    assert!(ok, "helm uninstall: {out}\n{}", petset.log());
    let (ok, out) = helm(&petset, helm_path, &["status", release]);
    assert!(
        !ok && out.contains("release: not found"),
        "release left: {out}"
    );
    let secrets = petset.kubectl(&["get", "secrets", "-l", "owner=helm", "-o", "name"]);
    assert_eq!(secrets.stdout.trim(), "", "release secrets left");
    let gone = wait_until(Duration::from_secs(60), || {
        petset
            .kubectl(&[
                "get",
                "sts",
                plan.workload,
                "--ignore-not-found",
                "-o",
                "name",
            ])
            .stdout
            .trim()
            .is_empty()
    });
    assert!(gone, "{} outlived the uninstall", plan.workload);

    // The name is free again.
    let (ok, out) = helm(&petset, helm_path, &install);
    assert!(ok, "helm install again: {out}\n{}", petset.log());
    assert!(
        ready_replicas(&petset, plan.workload, plan.replicas.0),
        "{} ready replicas after installing again\n{}",
        plan.replicas.0,
        petset.log()
    );
}

#[test]
fn helm_3_installs_upgrades_rolls_back_uninstalls_and_reinstalls_etcd() {
    run_lifecycle(
        "helm_3_installs_upgrades_rolls_back_uninstalls_and_reinstalls_etcd",
        "/usr/local/bin/helm3",
        &ETCD,
    );
}

#[test]
fn helm_4_installs_upgrades_rolls_back_uninstalls_and_reinstalls_etcd() {
    run_lifecycle(
        "helm_4_installs_upgrades_rolls_back_uninstalls_and_reinstalls_etcd",
        "/usr/local/bin/helm",
        &ETCD,
    );
}

#[test]
fn helm_3_installs_upgrades_rolls_back_uninstalls_and_reinstalls_redis() {
    run_lifecycle(
        "helm_3_installs_upgrades_rolls_back_uninstalls_and_reinstalls_redis",
        "/usr/local/bin/helm3",
        &REDIS,
    );
}

#[test]
fn helm_4_installs_upgrades_rolls_back_uninstalls_and_reinstalls_redis() {
    run_lifecycle(
        "helm_4_installs_upgrades_rolls_back_uninstalls_and_reinstalls_redis",
        "/usr/local/bin/helm",
        &REDIS,
    );
}
