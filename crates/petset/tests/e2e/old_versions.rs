//! Old tutorial manifests through the real kubectl (beyond upstream, which stopped serving
//! `apps/v1beta2` in 1.16): seed 003's `consul-sts.yaml`, verbatim (copied from the seed's
//! text; its `namespace:` is empty and its claims ask for a StorageClass `default` that no
//! cluster of petset has), applied client-side and server-side, warned about, stored as
//! `apps/v1`.

use petset_testkit::Petset;

use crate::start;
use crate::statefulset::wait_for;

const CONSUL_STS: &str = include_str!("consul-sts.yaml");

const WARNING: &str = "Warning: apps/v1beta2 StatefulSet is deprecated in v1.9+, unavailable in v1.16+; use apps/v1 StatefulSet";

fn get_consul(petset: &Petset, jsonpath: &str) -> String {
    petset
        .kubectl(&[
            "get",
            "statefulset",
            "consul",
            "-o",
            &format!("jsonpath={jsonpath}"),
        ])
        .ok()
        .to_string()
}

#[test]
fn seed_003s_v1beta2_statefulset_applies_with_the_deprecation_warning() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);

    let applied = petset.kubectl_with_input(&["apply", "-f", "-"], Some(CONSUL_STS));
    assert_eq!(applied.ok().trim(), "statefulset.apps/consul created");
    assert!(
        applied.stderr.lines().any(|line| line == WARNING),
        "{}",
        applied.stderr
    );

    // The same file again: kubectl reads the object at apps/v1beta2 and patches it there. As
    // upstream (and as for an apps/v1 file), kubectl says `configured`: it sends the claim
    // templates whole (a list without a merge key), because the live ones carry the server's
    // defaults; the patch changes nothing, so nothing is written.
    let before = get_consul(
        &petset,
        "{.metadata.resourceVersion} {.metadata.generation}",
    );
    let again = petset.kubectl_with_input(&["apply", "-f", "-"], Some(CONSUL_STS));
    assert_eq!(again.ok().trim(), "statefulset.apps/consul configured");
    assert!(
        again.stderr.lines().any(|line| line == WARNING),
        "{}",
        again.stderr
    );
    assert_eq!(
        get_consul(
            &petset,
            "{.metadata.resourceVersion} {.metadata.generation}"
        ),
        before
    );

    // kubectl itself reads the preferred version: the object is an apps/v1 StatefulSet in the
    // kubeconfig's namespace (the manifest's empty `namespace:`), with apps/v1beta2's
    // defaults, which are apps/v1's.
    assert_eq!(
        get_consul(
            &petset,
            "{.apiVersion} {.metadata.namespace} {.spec.replicas} {.spec.updateStrategy.type} {.spec.volumeClaimTemplates[0].spec.storageClassName}"
        ),
        "apps/v1 default 3 RollingUpdate default"
    );
    let plain = petset.kubectl(&["get", "statefulset", "consul"]);
    assert!(plain.stderr.is_empty(), "{}", plain.stderr);

    // Asked for by version, kubectl gets the old form, warned.
    let old = petset.kubectl(&[
        "get",
        "statefulsets.v1beta2.apps",
        "consul",
        "-o",
        "jsonpath={.apiVersion}",
    ]);
    assert_eq!(old.ok(), "apps/v1beta2");
    assert!(old.stderr.contains(WARNING), "{}", old.stderr);

    // A changed file is patched at the old version (a strategic merge patch of apps/v1beta2).
    let scaled = CONSUL_STS.replace("replicas: 3", "replicas: 1");
    let patched = petset.kubectl_with_input(&["apply", "-f", "-"], Some(&scaled));
    assert_eq!(patched.ok().trim(), "statefulset.apps/consul configured");
    assert_eq!(get_consul(&petset, "{.spec.replicas}"), "1");

    // Server-side apply takes the same file.
    let server_side = petset.kubectl_with_input(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(CONSUL_STS),
    );
    assert_eq!(
        server_side.ok().trim(),
        "statefulset.apps/consul serverside-applied"
    );
    assert!(
        server_side.stderr.contains(WARNING),
        "{}",
        server_side.stderr
    );
    assert_eq!(get_consul(&petset, "{.spec.replicas}"), "3");

    // As upstream, a claim of a StorageClass that does not exist waits, and says why.
    wait_for(
        &petset,
        "the first claim",
        &[
            "get",
            "pvc",
            "data-consul-0",
            "-o",
            "jsonpath={.status.phase}",
        ],
        "Pending",
    );
    wait_for(
        &petset,
        "the claim's event",
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=data-consul-0",
            "-o",
            "jsonpath={.items[0].message}",
        ],
        "storageclass.storage.k8s.io \"default\" not found",
    );

    let deleted = petset.kubectl_with_input(&["delete", "-f", "-"], Some(CONSUL_STS));
    assert_eq!(deleted.ok().trim(), "statefulset.apps \"consul\" deleted");
    assert!(deleted.stderr.contains(WARNING), "{}", deleted.stderr);
}

/// The Deployment of the old tutorials: `apps/v1beta1`, no selector (it came from the
/// template's labels then).
const NGINX_V1BETA1: &str = "apiVersion: apps/v1beta1
kind: Deployment
metadata:
  name: nginx
spec:
  replicas: 2
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.7.9
        ports:
        - containerPort: 80
";

#[test]
fn an_apps_v1beta1_deployment_gets_its_versions_defaults_and_rolls_out() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    let warning = "Warning: apps/v1beta1 Deployment is deprecated in v1.8+, unavailable in v1.16+; use apps/v1 Deployment";
    let applied = petset.kubectl_with_input(&["apply", "-f", "-"], Some(NGINX_V1BETA1));
    assert_eq!(applied.ok().trim(), "deployment.apps/nginx created");
    assert!(
        applied.stderr.lines().any(|line| line == warning),
        "{}",
        applied.stderr
    );
    let again = petset.kubectl_with_input(&["apply", "-f", "-"], Some(NGINX_V1BETA1));
    assert_eq!(again.ok().trim(), "deployment.apps/nginx unchanged");
    let status = petset.kubectl(&["rollout", "status", "deployment/nginx", "--timeout=60s"]);
    assert!(
        status
            .ok()
            .contains("deployment \"nginx\" successfully rolled out"),
        "{}",
        status.stdout
    );
    let current = petset.kubectl(&[
        "get",
        "deployment",
        "nginx",
        "-o",
        "jsonpath={.apiVersion} {.spec.revisionHistoryLimit} {.spec.selector.matchLabels.app} {.metadata.labels.app}",
    ]);
    assert_eq!(current.ok(), "apps/v1 2 nginx nginx");
}

#[test]
fn seed_003s_extensions_v1beta1_ingress_is_created_with_the_deprecation_warning() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    let created = petset.kubectl_with_input(
        &["create", "-f", "-"],
        Some(include_str!("consul-ingress.yaml")),
    );
    assert_eq!(
        created.ok().trim(),
        "ingress.extensions/consul created",
        "{}",
        created.stderr
    );
    let warning = "Warning: extensions/v1beta1 Ingress is deprecated in v1.14+, unavailable in v1.22+; use networking.k8s.io/v1 Ingress";
    assert!(
        created.stderr.lines().any(|line| line == warning),
        "{}",
        created.stderr
    );
    // Stored as networking.k8s.io/v1, with the old version's default path type and the
    // default class.
    let stored = petset
        .kubectl(&[
            "get",
            "ingresses.v1.networking.k8s.io",
            "consul",
            "-o",
            "jsonpath={.spec.ingressClassName} {.spec.rules[0].http.paths[0].pathType} {.spec.rules[0].http.paths[0].backend.service.name}:{.spec.rules[0].http.paths[0].backend.service.port.number}",
        ])
        .ok()
        .to_string();
    assert_eq!(stored, "petset ImplementationSpecific consul-ui:8500");
    // And read back at the old version as the tutorial wrote it.
    let old = petset.kubectl(&[
        "get",
        "ingresses.v1beta1.extensions",
        "consul",
        "-o",
        "jsonpath={.apiVersion} {.spec.rules[0].http.paths[0].backend.serviceName}:{.spec.rules[0].http.paths[0].backend.servicePort}",
    ]);
    assert_eq!(old.ok(), "extensions/v1beta1 consul-ui:8500");
    let deleted = petset.kubectl_with_input(
        &["delete", "-f", "-"],
        Some(include_str!("consul-ingress.yaml")),
    );
    assert!(deleted.ok().contains("deleted"), "{}", deleted.stderr);
}
