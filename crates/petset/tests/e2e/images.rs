//! Image names as the tutorials write them, and the stand-ins' tools (`curl localhost`): the
//! images come from the real `scripts/build-images.sh`, into an image store of the test's own,
//! and the tutorials' manifests run verbatim on the runc node. Needs root, runc, and Debian's
//! busybox-static and curl.

use petset_testkit::{Petset, build_tutorial_images, can_build_tutorial_images};

use crate::statefulset::{wait_for, wait_ready_replicas};
use crate::{binary, start};

/// Seed 000's `web.yaml`, verbatim (its image is `k8s.gcr.io/nginx-slim:0.8`).
const SEED_000_WEB: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  ports:
  - port: 80
    name: web
  clusterIP: None
  selector:
    app: nginx
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: "nginx"
  replicas: 2
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: k8s.gcr.io/nginx-slim:0.8
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ "ReadWriteOnce" ]
      resources:
        requests:
          storage: 1Gi
"#;

/// Seed 004's `statefulset-headless.yaml`, verbatim.
const SEED_004_HEADLESS: &str = r#"apiVersion: v1
kind: Service       # The object type is Service.
metadata:
  name: headless-svc
  labels:
    app: nginx
spec:
  ports:
    - name: nginx     # Name of the port for communication between pods
      port: 80        # Number of the port for communication between pods
  selector:
    app: nginx        # Select the pod whose label is app:nginx.
  clusterIP: None     # Set this parameter to None, indicating that a headless Service is to be created.
"#;

/// Seed 004's `statefulset-nginx.yaml`, verbatim (image `r.deso.tech/library/nginx`, a pull
/// secret that does not exist, the storage class `nfs-storageclass`).
const SEED_004_NGINX: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: statefulset-nginx
spec:
  serviceName: headless-svc                             # Name of the headless Service
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
        - name: container-0
          image: r.deso.tech/library/nginx
          resources:
            limits:
              cpu: 100m
              memory: 200Mi
            requests:
              cpu: 100m
              memory: 200Mi
          volumeMounts:                           # Storage mounted to the pod
          - name:  data
            mountPath: /usr/share/nginx/html      # Mount the storage to /usr/share/nginx/html.
      imagePullSecrets:
        - name: default-secret
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes:
      - ReadWriteMany
      resources:
        requests:
          storage: 1Gi
      storageClassName: nfs-storageclass                   # Insert Storage class for Persistent storage class
"#;

/// The class seed 004's cluster has, made as a petset user would: the same name, with
/// petset's own provisioner instead of the tutorial's NFS one.
const NFS_STORAGE_CLASS: &str = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: nfs-storageclass}
provisioner: petset.dev/local-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
"#;

/// A runc petset whose image store was filled by `scripts/build-images.sh` (the directory
/// lives as long as the returned guard); None when the machine cannot (the skip is reported).
fn start_with_tutorial_images(test: &str) -> Option<(tempfile::TempDir, Petset)> {
    if !can_build_tutorial_images(test) {
        return None;
    }
    let images = tempfile::tempdir().expect("temp");
    let store = images.path().join("store");
    build_tutorial_images(binary(), &store);
    let store = store.to_string_lossy().into_owned();
    let petset = start(&[
        "--store",
        "memory",
        "--node-runtime",
        "runc",
        "--image-store",
        &store,
    ]);
    Some((images, petset))
}

/// `kubectl exec -it POD -- curl localhost` on a terminal, as the tutorials type it; what the
/// terminal showed, after checking that kubectl succeeded.
fn curl_localhost(petset: &Petset, pod: &str) -> String {
    let curl = petset.kubectl_on_terminal(&["exec", "-it", pod, "--", "curl", "localhost"], "");
    assert!(curl.success, "curl in {pod}: {curl:?}\n{}", petset.log());
    // When its input ends, util-linux `script` types an end-of-file byte into kubectl's raw
    // terminal; kubectl forwards it and the pod's TTY echoes it as `^@` (none appears when the
    // input stays open, as a user's keyboard does), before or after the command's output:
    // the byte races the command.
    curl.stdout
        .trim()
        .trim_start_matches("^@")
        .trim_end_matches("^@")
        .trim()
        .to_string()
}

#[test]
fn seed_000_web_yaml_with_k8s_gcr_io_nginx_slim_gets_two_ready_pods_that_serve_their_hostnames() {
    let test = "seed_000_web_yaml_with_k8s_gcr_io_nginx_slim_gets_two_ready_pods_that_serve_their_hostnames";
    let Some((_images, mut petset)) = start_with_tutorial_images(test) else {
        return;
    };
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(SEED_000_WEB))
        .ok();
    wait_ready_replicas(&petset, "web", 2);
    for pod in ["web-0", "web-1"] {
        petset
            .kubectl(&[
                "exec",
                pod,
                "--",
                "sh",
                "-c",
                "echo $(hostname) > /usr/share/nginx/html/index.html",
            ])
            .ok();
        assert_eq!(curl_localhost(&petset, pod), pod);
    }
    assert!(petset.stop().expect("stop").success(), "{}", petset.log());
}

#[test]
fn seed_004_curl_localhost_prints_the_written_page_before_and_after_the_pod_is_deleted() {
    let test =
        "seed_004_curl_localhost_prints_the_written_page_before_and_after_the_pod_is_deleted";
    let Some((_images, mut petset)) = start_with_tutorial_images(test) else {
        return;
    };
    petset
        .kubectl(&["create", "namespace", "statefulset01"])
        .ok();
    petset
        .kubectl(&[
            "config",
            "set-context",
            "--current",
            "--namespace",
            "statefulset01",
        ])
        .ok();
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(NFS_STORAGE_CLASS))
        .ok();
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(SEED_004_HEADLESS))
        .ok();
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(SEED_004_NGINX))
        .ok();
    wait_ready_replicas(&petset, "statefulset-nginx", 3);
    petset
        .kubectl(&[
            "exec",
            "statefulset-nginx-1",
            "--",
            "sh",
            "-c",
            "echo hello Desotech Student > /usr/share/nginx/html/index.html",
        ])
        .ok();
    assert_eq!(
        curl_localhost(&petset, "statefulset-nginx-1"),
        "hello Desotech Student"
    );
    let uid_of = |petset: &Petset| {
        petset
            .kubectl(&[
                "get",
                "pod",
                "statefulset-nginx-1",
                "-o",
                "jsonpath={.metadata.uid}",
            ])
            .ok()
            .to_string()
    };
    let first_uid = uid_of(&petset);
    petset
        .kubectl(&["delete", "pod", "statefulset-nginx-1"])
        .ok();
    wait_for(
        &petset,
        "statefulset-nginx-1 re-created and Ready",
        &[
            "get",
            "pod",
            "statefulset-nginx-1",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        "True",
    );
    assert_ne!(uid_of(&petset), first_uid, "a new pod under the same name");
    assert_eq!(
        curl_localhost(&petset, "statefulset-nginx-1"),
        "hello Desotech Student"
    );
    assert!(petset.stop().expect("stop").success(), "{}", petset.log());
}

#[test]
fn untagged_busybox_and_busybox_latest_run_with_kubectl_run() {
    let test = "untagged_busybox_and_busybox_latest_run_with_kubectl_run";
    let Some((_images, mut petset)) = start_with_tutorial_images(test) else {
        return;
    };
    for (pod, image) in [("untagged", "busybox"), ("latest", "busybox:latest")] {
        let run = petset.kubectl(&[
            "run",
            pod,
            "-i",
            "--rm",
            "--restart=Never",
            "--image",
            image,
            "--",
            "sh",
            "-c",
            "echo ran as $(hostname)",
        ]);
        assert!(
            run.stdout.contains(&format!("ran as {pod}")),
            "{image}: {run:?}\n{}",
            petset.log()
        );
    }
    assert!(petset.stop().expect("stop").success(), "{}", petset.log());
}

#[test]
fn build_images_imports_every_name_the_tutorials_use() {
    let test = "build_images_imports_every_name_the_tutorials_use";
    if !can_build_tutorial_images(test) {
        return;
    }
    let images = tempfile::tempdir().expect("temp");
    let store = images.path().join("store");
    build_tutorial_images(binary(), &store);
    let listed = std::process::Command::new(binary())
        .arg("image")
        .arg("--image-store")
        .arg(&store)
        .arg("ls")
        .output()
        .expect("petset image ls");
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    let id_of = |name: &str| {
        listed
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                (words.next() == Some(name)).then(|| words.next().unwrap_or_default().to_string())
            })
            .unwrap_or_else(|| panic!("{name} not in the image store:\n{listed}"))
    };
    // Every spelling in the seeds, as the store names it; each group is one image.
    let groups: [&[&str]; 4] = [
        &[
            "docker.io/library/busybox:1.28",
            "docker.io/library/busybox:latest",
        ],
        &[
            "registry.k8s.io/nginx-slim:0.8",
            "k8s.gcr.io/nginx-slim:0.8",
            "gcr.io/google_containers/nginx-slim:0.8",
            "r.deso.tech/library/nginx:latest",
        ],
        &[
            "registry.k8s.io/nginx-slim:0.7",
            "k8s.gcr.io/nginx-slim:0.7",
        ],
        &["docker.io/luksa/kubia-pet:latest"],
    ];
    let mut ids = Vec::new();
    for group in groups {
        let id = id_of(group[0]);
        for name in group {
            assert_eq!(id_of(name), id, "{name} is the same image as {}", group[0]);
        }
        ids.push(id);
    }
    assert_ne!(ids[1], ids[2], "nginx-slim 0.8 and 0.7 differ");
    assert_ne!(ids[0], ids[1], "busybox is not nginx-slim");
}
