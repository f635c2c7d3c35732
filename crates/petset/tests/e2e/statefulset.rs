//! The StatefulSet tutorial on the simulated node, with the real kubectl: ordered creation,
//! stable names and claims, scaling, a rolling update with rollout status, history and undo,
//! and the Service's endpoints.

use std::time::Duration;

use petset_testkit::{Petset, wait_until};

use crate::start;

const WEB: &str = include_str!("web.yaml");
/// The image of every pod of the set.
const POD_IMAGES: [&str; 6] = [
    "get",
    "pods",
    "-l",
    "app=nginx",
    "-o",
    "jsonpath={.items[*].spec.containers[0].image}",
];

fn kubectl_ok(petset: &Petset, args: &[&str]) -> String {
    petset.kubectl(args).ok().to_string()
}

/// Waits until the StatefulSet `set` reports `count` ready replicas.
pub(crate) fn wait_ready_replicas(petset: &Petset, set: &str, count: usize) {
    wait_for(
        petset,
        &format!("{count} ready replicas of {set}"),
        &[
            "get",
            "statefulset",
            set,
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        &count.to_string(),
    );
}

pub(crate) fn wait_for(petset: &Petset, what: &str, args: &[&str], expected: &str) {
    wait_for_within(petset, what, args, expected, Duration::from_secs(60));
}

/// [`wait_for`], for at most `timeout`.
pub(crate) fn wait_for_within(
    petset: &Petset,
    what: &str,
    args: &[&str],
    expected: &str,
    timeout: Duration,
) {
    let mut last = String::new();
    let done = wait_until(timeout, || {
        last = petset.kubectl(args).stdout;
        last.trim() == expected
    });
    assert!(
        done,
        "{what}: expected {expected:?}, last saw {last:?}\n{}",
        petset.log()
    );
}

#[test]
fn the_statefulset_tutorial_on_the_simulated_node() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(WEB))
        .ok();
    let status = petset.kubectl(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(
        status
            .ok()
            .contains("partitioned roll out complete: 2 new pods have been updated"),
        "{}",
        status.stdout
    );
    assert_eq!(
        kubectl_ok(
            &petset,
            &[
                "get",
                "pods",
                "-l",
                "app=nginx",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name}:{.spec.hostname}:{.spec.subdomain}:{.status.phase} {end}"
            ]
        ),
        "web-0:web-0:nginx:Running web-1:web-1:nginx:Running "
    );
    wait_for(
        &petset,
        "claims bound",
        &[
            "get",
            "pvc",
            "-l",
            "app=nginx",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}",
        ],
        "www-web-0=Bound www-web-1=Bound",
    );
    wait_for(
        &petset,
        "endpoints with hostnames",
        &[
            "get",
            "endpoints",
            "nginx",
            "-o",
            "jsonpath={.subsets[0].addresses[*].hostname}",
        ],
        "web-0 web-1",
    );
    let uid = kubectl_ok(
        &petset,
        &["get", "sts", "web", "-o", "jsonpath={.metadata.uid}"],
    );
    assert_eq!(
        kubectl_ok(
            &petset,
            &[
                "get",
                "pod",
                "web-0",
                "-o",
                "jsonpath={.metadata.ownerReferences[0].uid}"
            ]
        ),
        uid
    );

    petset
        .kubectl(&["scale", "sts", "web", "--replicas=3"])
        .ok();
    wait_for(
        &petset,
        "scaled up",
        &[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "3",
    );
    petset
        .kubectl(&["scale", "sts", "web", "--replicas=1"])
        .ok();
    wait_for(
        &petset,
        "scaled down",
        &["get", "pods", "-l", "app=nginx", "-o", "name"],
        "pod/web-0",
    );
    assert_eq!(
        kubectl_ok(&petset, &["get", "pvc", "-o", "name"])
            .lines()
            .count(),
        3,
        "claims survive scale-down"
    );
    petset
        .kubectl(&["scale", "sts", "web", "--replicas=2"])
        .ok();

    petset
        .kubectl(&[
            "set",
            "image",
            "sts/web",
            "nginx=registry.k8s.io/nginx-slim:0.7",
        ])
        .ok();
    let rolled = petset.kubectl(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(
        rolled.ok().contains("roll out complete"),
        "{}",
        rolled.stdout
    );
    wait_for(
        &petset,
        "new image everywhere",
        &POD_IMAGES,
        "registry.k8s.io/nginx-slim:0.7 registry.k8s.io/nginx-slim:0.7",
    );
    let history = kubectl_ok(&petset, &["rollout", "history", "sts/web"]);
    assert_eq!(
        history
            .lines()
            .filter(|l| l.starts_with(['1', '2']))
            .count(),
        2,
        "{history}"
    );
    let undone = petset.kubectl(&["rollout", "undo", "sts/web"]);
    assert_eq!(undone.ok(), "statefulset.apps/web rolled back\n");
    wait_for(
        &petset,
        "rolled back",
        &POD_IMAGES,
        "registry.k8s.io/nginx-slim:0.8 registry.k8s.io/nginx-slim:0.8",
    );
    let revisions = kubectl_ok(
        &petset,
        &[
            "get",
            "controllerrevisions",
            "-o",
            "jsonpath={.items[*].revision}",
        ],
    );
    let mut numbers: Vec<&str> = revisions.split_whitespace().collect();
    numbers.sort();
    assert_eq!(
        numbers,
        ["2", "3"],
        "undo renumbers the old revision instead of making a new one"
    );
}

#[test]
fn claims_follow_the_retention_policy() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    let web = WEB.replace(
        "  serviceName: nginx\n",
        "  serviceName: nginx\n  persistentVolumeClaimRetentionPolicy:\n    whenDeleted: Delete\n    whenScaled: Delete\n",
    );
    assert_ne!(web, WEB, "the policy was inserted");
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(&web))
        .ok();
    wait_for(
        &petset,
        "two ready pods",
        &[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "2",
    );
    petset
        .kubectl(&["scale", "sts", "web", "--replicas=1"])
        .ok();
    wait_for(
        &petset,
        "the scaled-away claim is deleted with its pod",
        &["get", "pvc", "-o", "name"],
        "persistentvolumeclaim/www-web-0",
    );
    petset.kubectl(&["delete", "sts", "web"]).ok();
    wait_for(
        &petset,
        "the set's claims go with it",
        &["get", "pvc", "-o", "name"],
        "",
    );
}
