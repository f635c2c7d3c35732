//! End-to-end tests of the `petset` binary: real processes on loopback ports.

use std::path::Path;

mod bounds;
mod catalogue;
mod daemonset;
mod data_safety;
mod debug;
mod deployment;
mod disruption;
mod helm;
mod identities;
mod images;
mod ingress;
mod jobs;
mod join;
mod kube_client;
mod kubectl;
mod kubelet;
mod local_cluster;
mod local_path;
mod multinode;
mod network;
mod networking;
mod node_api;
mod node_loss;
mod old_versions;
mod python_client;
mod rbac;
mod runc;
mod servers;
mod statefulset;

use petset_testkit::{Etcd, Petset, https_get, skip};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_petset"))
}

pub(crate) fn start(args: &[&str]) -> Petset {
    Petset::start(binary(), args).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn up_serves_health_endpoints_and_stops_cleanly_on_sigterm() {
    let mut petset = start(&[]);
    for path in ["/healthz", "/livez", "/readyz"] {
        let answer = https_get(petset.api_addr(), path).expect("request");
        assert_eq!(answer, (200, "ok".to_string()), "{path}");
    }
    let status = petset.stop().expect("stop");
    assert!(status.success(), "exit status {status}\n{}", petset.log());
    assert!(petset.log().contains("petset stopped"), "{}", petset.log());
}

#[test]
fn up_stops_cleanly_on_sigint() {
    let mut petset = start(&["--store", "memory"]);
    let status = petset.stop_with("INT").expect("stop");
    assert!(status.success(), "exit status {status}\n{}", petset.log());
}

#[test]
fn a_second_up_on_the_same_data_dir_fails_and_says_why() {
    let first = start(&[]);
    let mut second = Petset::spawn(binary(), first.data_dir(), &[]).expect("spawn");
    let status = second
        .wait_exit()
        .expect("the second petset exits by itself");
    assert!(!status.success());
    let log = second.log();
    assert!(log.contains("is in use by another petset"), "{log}");
    assert_eq!(
        https_get(first.api_addr(), "/readyz")
            .expect("first still serves")
            .0,
        200
    );
}

#[test]
fn a_damaged_store_file_stops_up_with_the_file_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store_file = dir.path().join("store.redb");
    std::fs::write(&store_file, vec![0x5a; 8192]).expect("write garbage");
    let mut petset = Petset::spawn(binary(), dir.path(), &[]).expect("spawn");
    let status = petset.wait_exit().expect("petset exits by itself");
    assert!(!status.success());
    let log = petset.log();
    assert!(log.contains(&store_file.display().to_string()), "{log}");
    assert_eq!(
        std::fs::read(&store_file).expect("read"),
        vec![0x5a; 8192],
        "file left untouched"
    );
}

#[test]
fn up_runs_on_an_etcd_store() {
    let etcd = match Etcd::start() {
        Ok(etcd) => etcd,
        Err(reason) => return skip("up_runs_on_an_etcd_store", &reason),
    };
    let mut petset = start(&["--store", &etcd.store_spec()]);
    assert_eq!(
        https_get(petset.api_addr(), "/readyz").expect("readyz").0,
        200
    );
    drop(etcd);
    // With its store gone, petset reports itself not ready instead of lying.
    let unready = petset_testkit::wait_until(std::time::Duration::from_secs(20), || {
        matches!(https_get(petset.api_addr(), "/readyz"), Ok((500, _)))
    });
    assert!(unready, "readyz stayed ok without etcd\n{}", petset.log());
    assert!(petset.stop().expect("stop").success());
}

#[test]
fn a_restart_on_the_embedded_store_keeps_objects_and_the_built_in_ones() {
    let mut petset = start(&[]);
    petset
        .kubectl(&["create", "configmap", "kept", "--from-literal=a=1"])
        .ok();
    petset.restart().unwrap_or_else(|e| panic!("{e}"));
    let kept = petset
        .kubectl(&["get", "configmap", "kept", "-o", "jsonpath={.data.a}"])
        .ok()
        .to_string();
    assert_eq!(kept, "1");
    let ip = petset
        .kubectl(&[
            "get",
            "service",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .ok()
        .to_string();
    assert_eq!(ip, "10.96.0.1");
}
