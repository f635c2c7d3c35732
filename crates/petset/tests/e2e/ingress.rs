//! The node's ingress proxy, for real (root and runc): an Ingress with seed 002's `/jenkins`
//! path rule in front of a stand-in web server (busybox httpd in a Deployment) is reached with
//! curl through `--ingress-listen`, over one kept-alive connection; a path no rule matches gets
//! the 404 page, a Service without a ready endpoint the 503 page, and the Ingress's status
//! names the proxy's address.

use std::process::Command;
use std::time::Duration;

use petset_testkit::{can_run_containers, free_port, wait_until};

use crate::runc::start_with_busybox;

const JENKINS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: jenkins}
spec:
  replicas: 1
  selector: {matchLabels: {app: jenkins}}
  template:
    metadata: {labels: {app: jenkins}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: busybox:test
        command: ["sh", "-c", "mkdir -p /www/jenkins; echo jenkins of $(hostname) > /www/jenkins/index.html; exec httpd -f -p 8080 -h /www"]
        ports: [{containerPort: 8080, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: jenkins}
spec:
  selector: {app: jenkins}
  ports: [{port: 8080, targetPort: http, name: http}]
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: jenkins}
spec:
  rules:
  - http:
      paths:
      - path: /jenkins
        pathType: Prefix
        backend: {service: {name: jenkins, port: {number: 8080}}}
      - path: /nobody
        pathType: Exact
        backend: {service: {name: nobody, port: {number: 80}}}
"#;

/// curl's output for `urls` (one connection, kept alive), with the status code after each
/// body, and its verbose trace.
fn curl(urls: &[String]) -> (String, String) {
    let output = Command::new("curl")
        .args(["-sv", "--max-time", "10", "-w", " %{http_code}\n"])
        .args(urls)
        .output()
        .expect("curl runs");
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_ingress_proxy_routes_a_path_rule_to_ready_endpoints_and_answers_404_and_503() {
    if !can_run_containers(
        "the_ingress_proxy_routes_a_path_rule_to_ready_endpoints_and_answers_404_and_503",
    ) {
        return;
    }
    let listen = format!("127.0.0.1:{}", free_port());
    let (_images, petset) = start_with_busybox(&["--store", "memory", "--ingress-listen", &listen]);
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(JENKINS))
        .ok();
    // The default class was given by admission, and the proxy reports its address.
    let class = petset
        .kubectl(&[
            "get",
            "ingress",
            "jenkins",
            "-o",
            "jsonpath={.spec.ingressClassName}",
        ])
        .ok()
        .to_string();
    assert_eq!(class, "petset");
    let reported = wait_until(Duration::from_secs(30), || {
        petset
            .kubectl(&[
                "get",
                "ingress",
                "jenkins",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[0].ip} {.status.loadBalancer.ingress[0].hostname}",
            ])
            .stdout
            == "127.0.0.1 localhost"
    });
    assert!(reported, "the Ingress status\n{}", petset.log());

    let page = format!("http://{listen}/jenkins/");
    let mut answer = (String::new(), String::new());
    let served = wait_until(Duration::from_secs(60), || {
        answer = curl(&[page.clone(), page.clone()]);
        answer.0.matches("jenkins of jenkins-").count() == 2
    });
    assert!(served, "through the proxy: {answer:?}\n{}", petset.log());
    assert!(answer.0.contains(" 200\n"), "{}", answer.0);
    assert!(
        answer.1.contains("Re-using existing connection") || answer.1.contains("Reusing existing"),
        "one connection kept alive: {}",
        answer.1
    );

    let (body, _) = curl(&[format!("http://{listen}/elsewhere")]);
    assert!(
        body.contains("404 Not Found") && body.ends_with(" 404\n"),
        "{body}"
    );
    let (body, _) = curl(&[format!("http://{listen}/nobody")]);
    assert!(
        body.contains("503 Service Unavailable") && body.ends_with(" 503\n"),
        "{body}"
    );
    // Exact means exact.
    let (body, _) = curl(&[format!("http://{listen}/nobody/more")]);
    assert!(body.ends_with(" 404\n"), "{body}");
}
