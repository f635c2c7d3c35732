//! The official Kubernetes Python client (`pip install kubernetes`, installed by
//! `scripts/install-deps.sh test`) against a real `petset up` on the simulated node: the script
//! `python/client_e2e.py` drives it as its users do (typed CRUD, watch, an informer loop,
//! `utils.create_from_yaml`, the dynamic client) and fails on any wrong answer.

use std::path::{Path, PathBuf};
use std::process::Command;

use petset_testkit::{Petset, on_path, skip};

use crate::start;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/python/client_e2e.py")
}

/// Why the Python client cannot run here, if it cannot.
fn missing_client() -> Option<String> {
    if !on_path("python3") {
        return Some("python3 is not on PATH (scripts/install-deps.sh test installs it)".into());
    }
    let probe = Command::new("python3")
        .args([
            "-c",
            "import kubernetes, yaml; print(kubernetes.__version__)",
        ])
        .output();
    match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "the Python module `kubernetes` is missing (scripts/install-deps.sh test installs it): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("running python3: {e}")),
    }
}

/// Runs the script's `parts` against `petset`; panics with its report unless every part passed.
fn run_parts(test: &str, petset: &Petset, parts: &[&str]) {
    // The dynamic client caches discovery under TMPDIR: keep it in a directory this test removes.
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new("python3")
        .arg("-u")
        .arg(script())
        .args(parts)
        .env("KUBECONFIG", petset.kubeconfig())
        .env("TMPDIR", tmp.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}");
    let passed = stdout.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(
        out.status.success() && passed > 0,
        "{test}: the Python client's parts did not all pass (exit {}):\n{stdout}\n{stderr}\n--- petset log (tail) ---\n{}",
        out.status,
        tail(&petset.log(), 60)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Pods, services, configmaps, namespaces, watches, an informer loop that relists after 410
/// Gone (hence the one-second compaction), the dynamic client with server-side apply, and
/// `utils.create_from_yaml` of a multi-document file.
#[test]
fn the_python_client_drives_the_core_kinds() {
    let test = "the_python_client_drives_the_core_kinds";
    if let Some(reason) = missing_client() {
        return skip(test, &reason);
    }
    let petset = start(&["--node-runtime", "simulated", "--compaction-interval", "1"]);
    run_parts(test, &petset, &["core"]);
}

/// Deployments, ReplicationControllers, Jobs, DaemonSets and `create_from_yaml` of a file with
/// a Deployment in it. A kind the cluster does not serve is reported as NOT SERVED with the
/// kind it needs, and fails the test.
#[test]
fn the_python_client_drives_the_workload_kinds() {
    let test = "the_python_client_drives_the_workload_kinds";
    if let Some(reason) = missing_client() {
        return skip(test, &reason);
    }
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    run_parts(test, &petset, &["workloads"]);
}
