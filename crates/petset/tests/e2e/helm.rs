//! Helm on the simulated node, as a new user drives it: the bitnami etcd chart of
//! `../shared/charts` installed, upgraded to three replicas through its `pre-upgrade` Job
//! hook (`templates/preupgrade-hook-job.yaml`, delete policy `before-hook-creation`), and
//! rolled back. Helm is installed by `scripts/install-deps.sh test` (/usr/local/bin/helm).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use petset_testkit::{Petset, skip, wait_until};

use crate::start;

/// The chart: in `$PETSET_SHARED_DIR/charts`, else in the `shared/charts` nearest above the
/// repository (`../shared` beside a checkout, wherever the checkout sits).
fn etcd_chart() -> PathBuf {
    let relative = Path::new("charts/bitnami/etcd");
    if let Some(dir) = std::env::var_os("PETSET_SHARED_DIR") {
        return Path::new(&dir).join(relative);
    }
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    repository
        .ancestors()
        .map(|dir| dir.join("shared").join(relative))
        .find(|chart| chart.join("Chart.yaml").is_file())
        .unwrap_or_else(|| repository.join("../shared").join(relative))
}

fn helm_binary() -> Option<PathBuf> {
    ["/usr/local/bin/helm", "/usr/bin/helm"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
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

#[test]
fn helm_installs_upgrades_through_the_job_hook_and_rolls_back_etcd() {
    let test = "helm_installs_upgrades_through_the_job_hook_and_rolls_back_etcd";
    let Some(helm_path) = helm_binary() else {
        return skip(test, "no helm (scripts/install-deps.sh test installs it)");
    };
    let chart = etcd_chart();
    if !chart.join("Chart.yaml").is_file() {
        return skip(test, &format!("no chart at {}", chart.display()));
    }
    let chart = chart.to_string_lossy().into_owned();
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    // NetworkPolicy is not served yet (another issue): the chart renders one by default.
    let no_policy = "networkPolicy.enabled=false";
    let (ok, out) = helm(
        &petset,
        &helm_path,
        &[
            "install",
            "my-etcd",
            &chart,
            "--set",
            no_policy,
            "--wait",
            "--timeout",
            "3m",
        ],
    );
    assert!(ok, "helm install: {out}\n{}", petset.log());
    let (ok, out) = helm(
        &petset,
        &helm_path,
        &[
            "upgrade",
            "my-etcd",
            &chart,
            "--set",
            no_policy,
            "--set",
            "replicaCount=3",
            "--wait",
            "--timeout",
            "4m",
        ],
    );
    assert!(ok, "helm upgrade: {out}\n{}", petset.log());
    // The hook ran as a Job and completed (its delete policy keeps it until the next hook).
    let hook = petset.kubectl(&[
        "get",
        "job",
        "my-etcd-pre-upgrade",
        "-o",
        "jsonpath={.status.succeeded} {.status.conditions[?(@.type==\"Complete\")].status}",
    ]);
    assert_eq!(hook.stdout.trim(), "1 True", "{}", hook.stderr);
    let ready = wait_until(Duration::from_secs(120), || {
        petset
            .kubectl(&[
                "get",
                "sts",
                "my-etcd",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ])
            .stdout
            .trim()
            == "3"
    });
    assert!(ready, "three etcd replicas\n{}", petset.log());
    let (ok, out) = helm(&petset, &helm_path, &["rollback", "my-etcd", "1", "--wait"]);
    assert!(ok, "helm rollback: {out}\n{}", petset.log());
    let (ok, out) = helm(&petset, &helm_path, &["history", "my-etcd"]);
    assert!(ok && out.contains("Rollback to 1"), "helm history: {out}");
    let replicas = petset
        .kubectl(&["get", "sts", "my-etcd", "-o", "jsonpath={.spec.replicas}"])
        .stdout;
    assert_eq!(replicas.trim(), "1");
}
