//! The kubelet as users see it on the runc node: events, `$(VAR)` expansion, resource env vars, statuses.

use std::time::Duration;

use petset_testkit::{Petset, busybox_image, can_run_containers, wait_until};

use crate::runc::{import_image, start_with_busybox};
use crate::statefulset::wait_for;

/// Seed 003's Consul pod, on busybox: its init container rewrites the config for the pod's
/// namespace with `$(POD_NAMESPACE)` in its command.
const CONSUL: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: consul-ns}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: consulconfig, namespace: consul-ns}
data:
  consul.json: |
    {"retry_join": ["consul-0.consul.default.svc.cluster.local","consul-1.consul.default.svc.cluster.local"]}
---
apiVersion: v1
kind: Pod
metadata: {name: consul-0, namespace: consul-ns}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: consul-config-data
    image: busybox:test
    command: ["/bin/sh", "-c", "cp /readonly/consul.json /config && sed -i s/default/$(POD_NAMESPACE)/g /config/consul.json"]
    env:
    - name: POD_NAMESPACE
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    volumeMounts:
    - {name: readonly, mountPath: /readonly, readOnly: true}
    - {name: config, mountPath: /config}
  containers:
  - name: consul
    image: busybox:test
    command: ["sh", "-c", "cat /config/consul.json; echo mem=$LIMITS_MEMORY cpu=$LIMITS_CPU req=$REQUESTS_CPU greeting=$GREETING file=$(cat /info/mem) api=$API_PORT; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    resources:
      limits: {memory: 128Mi}
      requests: {cpu: 250m, memory: 64Mi}
    env:
    - name: POD_NAMESPACE
      valueFrom: {fieldRef: {fieldPath: metadata.namespace}}
    - name: GREETING
      value: "hi-$(POD_NAMESPACE)-$$(POD_NAMESPACE)-$(UNDEFINED)"
    - name: API_PORT
      value: "$(KUBERNETES_SERVICE_PORT)"
    - name: LIMITS_MEMORY
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
    - name: LIMITS_CPU
      valueFrom: {resourceFieldRef: {resource: limits.cpu}}
    - name: REQUESTS_CPU
      valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}
    volumeMounts:
    - {name: config, mountPath: /config}
    - {name: info, mountPath: /info}
  volumes:
  - name: readonly
    configMap: {name: consulconfig}
  - name: config
    emptyDir: {}
  - name: info
    downwardAPI:
      items:
      - path: mem
        resourceFieldRef: {containerName: consul, resource: limits.memory, divisor: 1Mi}
"#;

/// Pods that each make the kubelet say something.
const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: steady}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "trap '' TERM; echo up; while true; do sleep 0.2; done"]
---
apiVersion: v1
kind: Pod
metadata: {name: crashy}
spec:
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "exit 1"]
---
apiVersion: v1
kind: Pod
metadata: {name: unready}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    readinessProbe: {exec: {command: [cat, /nope]}, periodSeconds: 1}
---
apiVersion: v1
kind: Pod
metadata: {name: nobinary}
spec:
  containers:
  - name: main
    image: busybox:test
    command: ["/no/such/binary"]
---
apiVersion: v1
kind: Pod
metadata: {name: nomount}
spec:
  containers:
  - name: main
    image: busybox:test
    volumeMounts: [{name: cfg, mountPath: /cfg}]
  volumes:
  - {name: cfg, configMap: {name: absent}}
---
apiVersion: v1
kind: Pod
metadata: {name: missing}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: "nosuch:1"
    command: ["sh", "-c", "echo imported; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#;

fn jsonpath(petset: &Petset, args: &[&str]) -> String {
    petset.kubectl(args).stdout.trim().to_string()
}

/// Waits until `kubectl describe` of the pod shows every one of `expected`.
fn wait_describe(petset: &Petset, pod: &str, namespace: &str, expected: &[&str]) {
    let mut last = String::new();
    let shown = wait_until(Duration::from_secs(60), || {
        last = petset
            .kubectl(&["describe", "pod", pod, "-n", namespace])
            .stdout;
        expected.iter().all(|e| last.contains(e))
    });
    assert!(
        shown,
        "describe pod {pod} lacks one of {expected:?}:\n{last}\n{}",
        petset.log()
    );
}

#[test]
fn the_kubelets_events_statuses_env_and_node() {
    if !can_run_containers("the_kubelets_events_statuses_env_and_node") {
        return;
    }
    let (images, mut petset) = start_with_busybox(&["--store", "memory"]);
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(CONSUL))
        .ok();
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(PODS))
        .ok();

    // The Node says the pod range it was given, and the machine's resources.
    let gateway = petset.dns_address().expect("a runc node has a bridge");
    let [a, b, c, _] = gateway.octets();
    assert_eq!(
        jsonpath(
            &petset,
            &["get", "node", "-o", "jsonpath={.items[0].spec.podCIDR}"]
        ),
        format!("{a}.{b}.{c}.0/24")
    );
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .expect("cpuinfo")
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count()
        .to_string();
    let capacity = jsonpath(
        &petset,
        &[
            "get",
            "node",
            "-o",
            "jsonpath={.items[0].status.capacity.cpu}/{.items[0].status.capacity.pods}/{.items[0].status.allocatable.ephemeral-storage}",
        ],
    );
    let (counted, rest) = capacity.split_once('/').expect("cpu/pods/storage");
    assert_eq!(counted, cpus, "{capacity}");
    assert!(rest.starts_with("110/") && rest.len() > 4, "{capacity}");

    // Seed 003: the init container's $(POD_NAMESPACE) is the namespace; resources as numbers.
    let expected = format!(
        "{{\"retry_join\": [\"consul-0.consul.consul-ns.svc.cluster.local\",\"consul-1.consul.consul-ns.svc.cluster.local\"]}}\n\
         mem=128 cpu={cpus} req=250 greeting=hi-consul-ns-$(POD_NAMESPACE)-$(UNDEFINED) file=128 api=443\n"
    );
    let mut logs = String::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            logs = petset
                .kubectl(&["logs", "consul-0", "-n", "consul-ns", "-c", "consul"])
                .stdout;
            logs == expected
        }),
        "consul logged {logs:?}, not {expected:?}\n{}",
        petset.log()
    );

    wait_describe(
        &petset,
        "steady",
        "default",
        &[
            "Pulled",
            "Container image \"busybox:test\" already present on machine",
            "Created container: main",
            "Started container main",
            "kubelet",
        ],
    );
    let source = jsonpath(
        &petset,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=steady,reason=Started",
            "-o",
            "jsonpath={.items[0].source.component}/{.items[0].involvedObject.fieldPath}",
        ],
    );
    assert_eq!(source, "kubelet/spec.containers{main}");
    wait_describe(
        &petset,
        "crashy",
        "default",
        &[
            "BackOff",
            "Back-off restarting failed container main in pod crashy_default(",
        ],
    );
    wait_describe(
        &petset,
        "unready",
        "default",
        &[
            "Unhealthy",
            "Readiness probe failed: cat: can't open '/nope': No such file or directory",
        ],
    );

    // A missing binary is the runtime's start error, and exec says the container is not there.
    wait_for(
        &petset,
        "the start error is in the last state",
        &[
            "get",
            "pod",
            "nobinary",
            "-o",
            "jsonpath={.status.containerStatuses[0].lastState.terminated.reason}/{.status.containerStatuses[0].lastState.terminated.exitCode}",
        ],
        "StartError/128",
    );
    let message = jsonpath(
        &petset,
        &[
            "get",
            "pod",
            "nobinary",
            "-o",
            "jsonpath={.status.containerStatuses[0].lastState.terminated.message}",
        ],
    );
    assert!(
        message.contains("/no/such/binary")
            && message.contains("unable to start container process"),
        "{message}"
    );
    wait_describe(
        &petset,
        "nobinary",
        "default",
        &["Error: runc run failed: "],
    );
    let exec = petset.kubectl(&["exec", "nobinary", "--", "true"]);
    assert!(
        exec.stderr
            .contains("error: unable to upgrade connection: container not found (\"main\")"),
        "{exec:?}"
    );

    // A volume that cannot be set up: ContainerCreating, and the reason in a FailedMount event.
    wait_describe(
        &petset,
        "nomount",
        "default",
        &[
            "FailedMount",
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"absent\" not found",
        ],
    );
    assert_eq!(
        jsonpath(
            &petset,
            &[
                "get",
                "pod",
                "nomount",
                "-o",
                "jsonpath={.status.containerStatuses[0].state.waiting.reason}"
            ]
        ),
        "ContainerCreating"
    );

    // A missing image: the events name the import command; the status retries with a
    // back-off, and the pod starts once the image is imported.
    wait_describe(
        &petset,
        "missing",
        "default",
        &[
            "Failed to pull image \"nosuch:1\"",
            "petset image import",
            "Error: ErrImagePull",
            "Back-off pulling image \"nosuch:1\"",
        ],
    );
    let reason = [
        "get",
        "pod",
        "missing",
        "-o",
        "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
    ];
    wait_for(&petset, "in back-off", &reason, "ImagePullBackOff");
    wait_for(&petset, "pulled again", &reason, "ErrImagePull");
    wait_for(&petset, "in back-off again", &reason, "ImagePullBackOff");
    let back_off_message = jsonpath(
        &petset,
        &[
            "get",
            "pod",
            "missing",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.message}",
        ],
    );
    assert!(
        back_off_message.starts_with("Back-off pulling image \"nosuch:1\": ErrImagePull: ")
            && back_off_message.contains("petset image import"),
        "{back_off_message}"
    );
    let archive = images.path().join("nosuch");
    busybox_image(&archive, "nosuch:1");
    import_image(&images.path().join("store"), &archive);
    let mut started = String::new();
    assert!(
        // The back-off is at most 40 s by now.
        wait_until(Duration::from_secs(90), || {
            started = petset.kubectl(&["logs", "missing"]).stdout;
            started == "imported\n"
        }),
        "missing logged {started:?}\n{}",
        petset.log()
    );

    // A terminating pod reads 0/1 while its container stops.
    petset
        .kubectl(&["delete", "pod", "steady", "--wait=false"])
        .ok();
    wait_for(
        &petset,
        "steady is not ready while it terminates",
        &[
            "get",
            "pod",
            "steady",
            "-o",
            "jsonpath={.status.containerStatuses[0].ready}/{.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        "false/False",
    );
    let table = petset.kubectl(&["get", "pod", "steady"]).ok().to_string();
    assert!(
        table.contains("0/1") && table.contains("Terminating"),
        "{table}"
    );
    let killing = jsonpath(
        &petset,
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=steady,reason=Killing",
            "-o",
            "jsonpath={.items[0].message}",
        ],
    );
    assert_eq!(killing, "Stopping container main");

    petset
        .kubectl(&["delete", "pod", "--all", "--grace-period=1", "--wait=false"])
        .ok();
    let status = petset.stop().expect("stop");
    assert!(status.success(), "{}", petset.log());
}
