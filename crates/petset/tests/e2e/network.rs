//! The pod network, the cluster DNS, Services, the proxy, port-forward, attach and TTYs, for
//! real: pods of a StatefulSet get addresses on petset's bridge, their names resolve (from the
//! host with `dig`, from a pod with `nslookup` and a short name) and follow a re-created pod,
//! ClusterIPs and `pods/proxy`, `services/proxy` and port-forward reach their web servers,
//! `kubectl run -i --tty` gives a shell, and stopping petset removes the bridge; the etcd
//! example forms a cluster that survives pod deletion and a crash of petset. Those need root
//! and runc; the DNS on the simulated node needs only `dig`.

use std::time::Duration;

use petset_testkit::{can_run_containers, wait_until};

use crate::runc::start_with_busybox;
use crate::statefulset::wait_ready_replicas;

const WEB: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{port: 80, name: web}]
---
apiVersion: v1
kind: Service
metadata: {name: web-public}
spec:
  selector: {app: nginx}
  ports: [{port: 8080, targetPort: web}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx
  replicas: 2
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: busybox:test
        command: ["sh", "-c", "mkdir -p /www; echo page of $(hostname) > /www/index.html; exec httpd -f -p 80 -h /www"]
        ports: [{containerPort: 80, name: web}]
"#;

/// The body of a `method` request for `path` at `address`, with a JSON `body` when one is
/// given (empty when it cannot be had).
fn http(address: &str, method: &str, path: &str, body: Option<&str>) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return String::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let body = body.unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim().to_string())
        .unwrap_or_default()
}

fn http_get(address: &str) -> String {
    http(address, "GET", "/", None)
}

/// A POST to etcd's HTTP/JSON gateway.
fn etcd_call(address: &str, path: &str, body: &str) -> String {
    http(address, "POST", path, Some(body))
}

/// `dig +short NAME` at the DNS on `server`, port 53.
fn dig(server: std::net::Ipv4Addr, name: &str) -> String {
    dig_with(&[&format!("@{server}"), name, "+short"])
}

/// `dig` with these arguments, trying once for 2 s; what it prints.
fn dig_with(args: &[&str]) -> String {
    let output = std::process::Command::new("dig")
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig (Debian package dnsutils)");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn pods_get_addresses_names_a_proxy_and_attach() {
    if !can_run_containers("pods_get_addresses_names_a_proxy_and_attach") {
        return;
    }
    let (_images, mut petset) = start_with_busybox(&["--store", "memory"]);
    let dns = petset
        .dns_address()
        .expect("the runc node has a pod network");
    let bridge = petset.bridge().expect("a bridge of its own");
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(WEB))
        .ok();
    wait_ready_replicas(&petset, "web", 2);
    let ip_of = |pod: &str| {
        petset
            .kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
            .ok()
            .to_string()
    };
    let (ip0, ip1) = (ip_of("web-0"), ip_of("web-1"));
    assert_ne!(ip0, ip1);
    let subnet = format!("{}.", dns.to_string().rsplit_once('.').expect("dotted").0);
    assert!(
        ip0.starts_with(&subnet) && ip1.starts_with(&subnet),
        "{ip0} {ip1} not in {subnet}0/24"
    );

    // From the host: the full name, the headless Service, a reverse lookup.
    let mut answer = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            answer = dig(dns, "web-0.nginx.default.svc.cluster.local");
            answer == ip0
        }),
        "web-0's name gave {answer:?}, want {ip0}"
    );
    let mut service: Vec<String> = dig(dns, "nginx.default.svc.cluster.local")
        .lines()
        .map(str::to_string)
        .collect();
    service.sort();
    let mut both = vec![ip0.clone(), ip1.clone()];
    both.sort();
    assert_eq!(service, both);
    assert_eq!(
        dig_with(&[&format!("@{dns}"), "-x", &ip1, "+short"]),
        "web-1.nginx.default.svc.cluster.local."
    );

    // From a pod, with the short name its search path completes.
    let lookup = petset.kubectl(&["exec", "web-1", "--", "busybox", "nslookup", "web-0.nginx"]);
    assert!(lookup.ok().contains(&ip0), "{lookup:?}");

    // A ClusterIP Service answers on its address and port, from the host and from a pod (by
    // its short name), relayed to the pods' port 80.
    let cluster_ip = petset
        .kubectl(&[
            "get",
            "service",
            "web-public",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .ok()
        .to_string();
    assert!(cluster_ip.starts_with("10.96."), "{cluster_ip}");
    assert_eq!(dig(dns, "web-public.default.svc.cluster.local"), cluster_ip);
    let mut page = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            page = http_get(&format!("{cluster_ip}:8080"));
            page.starts_with("page of web-")
        }),
        "the host got {page:?} from {cluster_ip}:8080"
    );
    let fetched = petset.kubectl(&[
        "exec",
        "web-1",
        "--",
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "http://web-public:8080/",
    ]);
    assert!(fetched.ok().starts_with("page of web-"), "{fetched:?}");

    // The `kubernetes` Service's ClusterIP leads to the API, whose certificate names it.
    let kubernetes_ip = petset
        .kubectl(&[
            "get",
            "service",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .ok()
        .to_string();
    let server = format!("https://{kubernetes_ip}:443");
    let version = petset.kubectl(&["--server", &server, "get", "--raw", "/version"]);
    assert!(version.ok().contains("gitVersion"), "{version:?}");

    // kubectl port-forward: a local port leads to the pod's port 80, once per connection.
    let mut forward = petset
        .kubectl_command(&["port-forward", "pod/web-0", "0:80"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    // kubectl keeps writing to stdout ("Handling connection …"): it is read to the end, or
    // kubectl would die of SIGPIPE.
    let (lines, announcements) = std::sync::mpsc::channel();
    if let Some(stdout) = forward.stdout.take() {
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = lines.send(line);
            }
        });
    }
    let announced = announcements
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_default();
    let local = announced
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .map(str::to_string);
    let pages: Vec<String> = (0..2)
        .map(|_| local.as_deref().map(http_get).unwrap_or_default())
        .collect();
    let _ = forward.kill();
    let output = forward
        .wait_with_output()
        .expect("kubectl port-forward ends");
    assert_eq!(
        pages,
        ["page of web-0", "page of web-0"],
        "kubectl said {announced:?} {:?}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The proxy subresources reach the pods' web servers.
    let page = petset.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/web-0/proxy/",
    ]);
    assert_eq!(page.ok().trim(), "page of web-0");
    let page = petset.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/nginx:web/proxy/index.html",
    ]);
    assert!(page.ok().starts_with("page of web-"), "{page:?}");
    let missing = petset.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/nosuch/proxy/",
    ]);
    assert!(missing.stderr.contains("NotFound"), "{missing:?}");

    // kubectl run -i --rm: attach passes stdin on and brings the output back.
    let run = petset.kubectl_with_input(
        &[
            "run",
            "talk",
            "-i",
            "--rm",
            "--restart=Never",
            "--image=busybox:test",
            "--",
            "sh",
            "-c",
            "read line; echo got $line",
        ],
        Some("hello\n"),
    );
    assert!(run.stdout.contains("got hello"), "{run:?}");
    // The tutorial's interactive lookup: a shell on a terminal in a new pod, typed into.
    let session = petset.kubectl_on_terminal(
        &[
            "run",
            "-i",
            "--tty",
            "--image",
            "busybox:test",
            "dns-test",
            "--restart=Never",
            "--rm",
        ],
        "nslookup web-0.nginx\nexit\n",
    );
    assert!(session.stdout.contains(&ip0), "{session:?}");
    assert!(session.stdout.contains("deleted"), "{session:?}");

    // A command that ends before kubectl attaches still shows its output through the attach.
    let quick = petset.kubectl(&[
        "run",
        "quick",
        "-i",
        "--rm",
        "--restart=Never",
        "--image=busybox:test",
        "--",
        "echo",
        "done-quickly",
    ]);
    assert!(quick.stdout.contains("done-quickly"), "{quick:?}");
    assert!(!quick.stderr.contains("couldn't attach"), "{quick:?}");

    // A re-created pod gets a new address, and its name follows it.
    petset.kubectl(&["delete", "pod", "web-0"]).ok();
    let mut new_ip = String::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            new_ip = ip_of("web-0");
            !new_ip.is_empty() && new_ip != ip0
        }),
        "web-0 came back with {new_ip:?}"
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            dig(dns, "web-0.nginx.default.svc.cluster.local") == new_ip
        }),
        "the name does not follow web-0 to {new_ip}"
    );

    let status = petset.stop().expect("stop");
    assert!(status.success(), "{}", petset.log());
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&bridge)
            .exists(),
        "bridge {bridge} is left"
    );
}

#[test]
fn the_etcd_example_forms_a_cluster_and_a_deleted_member_rejoins_with_its_data() {
    let test = "the_etcd_example_forms_a_cluster_and_a_deleted_member_rejoins_with_its_data";
    if !can_run_containers(test) {
        return;
    }
    if !petset_testkit::can_build_etcd_image(test) {
        return;
    }
    // The embedded store: the test also kills petset and starts it again.
    let (_images, mut petset) =
        crate::runc::start_with_image(petset_testkit::etcd_image, "petset/etcd:test", &[]);
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/etcd.yaml"
    ))
    .expect("examples/etcd.yaml")
    .replace("image: petset/etcd:3.4", "image: petset/etcd:test");
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(&example))
        .ok();
    let ready = |petset: &petset_testkit::Petset| {
        petset
            .kubectl(&[
                "get",
                "statefulset",
                "etcd",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ])
            .stdout
            .trim()
            == "3"
    };
    assert!(
        wait_until(Duration::from_secs(120), || ready(&petset)),
        "the etcd cluster never had 3 ready members: {}",
        petset.kubectl(&["logs", "etcd-0", "--tail", "20"]).stdout
    );
    let address = |petset: &petset_testkit::Petset, pod: &str| {
        let ip = petset
            .kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
            .ok()
            .to_string();
        format!("{ip}:2379")
    };
    // key "greeting", value "hello", base64 as the gateway wants them.
    let put = etcd_call(
        &address(&petset, "etcd-1"),
        "/v3/kv/put",
        r#"{"key":"Z3JlZXRpbmc=","value":"aGVsbG8="}"#,
    );
    assert!(put.contains("revision"), "put answered {put:?}");
    let members = etcd_call(&address(&petset, "etcd-2"), "/v3/cluster/member/list", "{}");
    for member in ["etcd-0", "etcd-1", "etcd-2"] {
        assert!(members.contains(member), "{members}");
    }

    let old = petset
        .kubectl(&["get", "pod", "etcd-0", "-o", "jsonpath={.metadata.uid}"])
        .ok()
        .to_string();
    petset.kubectl(&["delete", "pod", "etcd-0"]).ok();
    let back = wait_until(Duration::from_secs(120), || {
        let uid = petset
            .kubectl(&["get", "pod", "etcd-0", "-o", "jsonpath={.metadata.uid}"])
            .stdout;
        !uid.is_empty() && uid != old && ready(&petset)
    });
    assert!(back, "etcd-0 did not come back Ready");
    let mut read = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            read = etcd_call(
                &address(&petset, "etcd-0"),
                "/v3/kv/range",
                r#"{"key":"Z3JlZXRpbmc="}"#,
            );
            read.contains("aGVsbG8=")
        }),
        "the re-created etcd-0 reads {read:?}"
    );

    // kill -9 and a restart: the node removes what the dead process left (containers,
    // namespaces, addresses) before it runs anything, and the members come back with their
    // data at new addresses, found by name.
    let before = petset
        .kubectl(&["get", "pods", "-o", "jsonpath={.items[*].metadata.uid}"])
        .ok()
        .to_string();
    petset.stop_with("KILL").expect("kill");
    petset.restart().expect("restart");
    assert!(
        wait_until(Duration::from_secs(120), || {
            ready(&petset)
                && etcd_call(
                    &address(&petset, "etcd-2"),
                    "/v3/kv/range",
                    r#"{"key":"Z3JlZXRpbmc="}"#,
                )
                .contains("aGVsbG8=")
        }),
        "the cluster did not come back after a crash: {}",
        petset.kubectl(&["get", "pods", "-o", "wide"]).stdout
    );
    let after = petset
        .kubectl(&["get", "pods", "-o", "jsonpath={.items[*].metadata.uid}"])
        .ok()
        .to_string();
    assert_eq!(before, after, "the same pods, run again");
    let status = petset.stop().expect("stop");
    assert!(status.success(), "{}", petset.log());
}

/// `dig` at a DNS on a loopback port.
fn dig_at(port: u16, args: &[&str]) -> String {
    let port = port.to_string();
    let mut all = vec!["@127.0.0.1", "-p", &port];
    all.extend_from_slice(args);
    dig_with(&all)
}

#[test]
fn the_cluster_dns_answers_for_the_simulated_node() {
    let test = "the_cluster_dns_answers_for_the_simulated_node";
    if !petset_testkit::on_path("dig") {
        petset_testkit::skip(test, "needs dig (Debian package dnsutils)");
        return;
    }
    let port = petset_testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let petset = crate::start(&[
        "--store",
        "memory",
        "--node-runtime",
        "simulated",
        "--dns-listen",
        &listen,
    ]);
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(WEB))
        .ok();
    wait_ready_replicas(&petset, "web", 2);
    let ip0 = petset
        .kubectl(&["get", "pod", "web-0", "-o", "jsonpath={.status.podIP}"])
        .ok()
        .to_string();
    let mut answer = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            answer = dig_at(port, &["web-0.nginx.default.svc.cluster.local", "+short"]);
            answer == ip0
        }),
        "web-0's name gave {answer:?}, want {ip0}"
    );
    let srv = dig_at(
        port,
        &["_web._tcp.nginx.default.svc.cluster.local", "SRV", "+short"],
    );
    assert!(
        srv.contains("80 web-0.nginx.default.svc.cluster.local.")
            && srv.contains("80 web-1.nginx.default.svc.cluster.local."),
        "{srv}"
    );
    let missing = dig_at(port, &["web-7.nginx.default.svc.cluster.local"]);
    assert!(missing.contains("status: NXDOMAIN"), "{missing}");
    let outside = dig_at(port, &["example.com"]);
    assert!(outside.contains("status: REFUSED"), "{outside}");
    let tcp = dig_at(
        port,
        &["+tcp", "web-public.default.svc.cluster.local", "+short"],
    );
    assert!(tcp.starts_with("10.96."), "{tcp}");
}
