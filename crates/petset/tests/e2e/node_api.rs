//! The node API: the only way the API server reaches a node, and only with its certificate.
//! The test dials a real `petset up`'s node API over HTTPS on loopback, as an API server on
//! another machine would (`petset_apiserver::nodes::Tls`, verifying the node's certificate
//! against the cluster CA), at the port its Node publishes, with the API server's client
//! certificate from `DIR/pki/apiserver-kubelet-client.{crt,key}`, with another identity, and
//! with none.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use petset_apiserver::nodes::{NodeEndpoint, Tls, relay};
use petset_apiserver::tls;
use petset_testkit::{Petset, can_run_containers, wait_until};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runc::start_with_busybox;
use crate::statefulset::wait_for;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "echo hello from the node; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
"#;

/// The Node's published endpoint, once it has one.
fn published_endpoint(petset: &Petset) -> NodeEndpoint {
    let mut endpoint = None;
    let published = wait_until(Duration::from_secs(30), || {
        let nodes: Value =
            serde_json::from_str(petset.kubectl(&["get", "nodes", "-o", "json"]).ok())
                .unwrap_or(Value::Null);
        let node = &nodes["items"][0];
        let port = &node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"];
        if port.as_u64().unwrap_or(0) == 0 {
            return false;
        }
        endpoint = Some(NodeEndpoint::of(node));
        true
    });
    assert!(published, "the Node publishes no node API endpoint");
    endpoint.unwrap_or_else(|| unreachable!("published"))
}

/// A connector presenting `identity` (certificate and key PEM), or no certificate.
fn connector(petset: &Petset, identity: Option<(String, String)>) -> Tls {
    let ca = std::fs::read_to_string(petset.data_dir().join("pki/ca.crt")).expect("the CA");
    let identity = identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
    Tls::new(tls::kubelet_client_config(&ca, identity).expect("client config"))
}

fn api_server_identity(petset: &Petset) -> (String, String) {
    let (cert, key) = tls::kubelet_client_paths(petset.data_dir());
    (
        std::fs::read_to_string(cert).expect("the API server's client certificate"),
        std::fs::read_to_string(key).expect("its key"),
    )
}

/// A plain request: the status code and body.
async fn get(
    connector: &Tls,
    endpoint: &NodeEndpoint,
    path: &str,
) -> Result<(u16, String), String> {
    let request = Request::get(path).body(Body::empty()).expect("request");
    let response = relay::send(connector, endpoint, request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(Body::new(response.into_body()), 1 << 20)
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// What an exec came to: the refusal's code and text, or its stdout and final status.
#[derive(Debug)]
enum Exec {
    Refused(u16, String),
    Ran { stdout: String, status: Value },
}

/// Runs `argv` in the talker's container through `/exec` over WebSocket (v5.channel.k8s.io),
/// reading the server's frames by hand (they are never masked).
async fn exec(connector: &Tls, endpoint: &NodeEndpoint, argv: &[&str]) -> Result<Exec, String> {
    let mut query = form_urlencoded_query(argv);
    query.push_str("&output=1&error=1");
    let request = Request::get(format!("/exec/default/talker/main?{query}"))
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_VERSION, "13")
        .header(header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ==")
        .header(header::SEC_WEBSOCKET_PROTOCOL, "v5.channel.k8s.io")
        .body(Body::empty())
        .expect("request");
    let response = relay::send(connector, endpoint, request)
        .await
        .map_err(|e| e.to_string())?;
    let code = response.status().as_u16();
    if code != 101 {
        let body = axum::body::to_bytes(Body::new(response.into_body()), 1 << 20)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Exec::Refused(
            code,
            String::from_utf8_lossy(&body).into_owned(),
        ));
    }
    let mut socket = relay::upgraded(response).await.map_err(|e| e.to_string())?;
    let (mut stdout, mut status) = (Vec::new(), Value::Null);
    loop {
        let mut head = [0u8; 2];
        socket
            .read_exact(&mut head)
            .await
            .map_err(|e| e.to_string())?;
        let length = match head[1] & 0x7f {
            126 => u64::from(socket.read_u16().await.map_err(|e| e.to_string())?),
            127 => socket.read_u64().await.map_err(|e| e.to_string())?,
            short => u64::from(short),
        };
        let mut payload = vec![0u8; usize::try_from(length).map_err(|e| e.to_string())?];
        socket
            .read_exact(&mut payload)
            .await
            .map_err(|e| e.to_string())?;
        match (head[0] & 0x0f, payload.first()) {
            (0x8, _) => break,
            (0x2, Some(1)) => stdout.extend_from_slice(&payload[1..]),
            (0x2, Some(3)) => status = serde_json::from_slice(&payload[1..]).unwrap_or(Value::Null),
            _ => {}
        }
    }
    let _ = socket.shutdown().await;
    Ok(Exec::Ran {
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        status,
    })
}

fn form_urlencoded_query(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| {
            format!(
                "command={}",
                a.replace('%', "%25")
                    .replace(' ', "%20")
                    .replace('/', "%2F")
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Starts the test's pod and waits until it runs.
fn run_talker(petset: &Petset) {
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(POD))
        .ok();
    wait_for(
        petset,
        "the talker runs",
        &["get", "pod", "talker", "-o", "jsonpath={.status.phase}"],
        "Running",
    );
}

#[test]
fn the_node_api_answers_the_api_server_only() {
    if !can_run_containers("the_node_api_answers_the_api_server_only") {
        return;
    }
    let (_images, petset) = start_with_busybox(&["--store", "memory", "--kubelet-port", "0"]);
    run_talker(&petset);
    let endpoint = published_endpoint(&petset);
    let nodes = petset.kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={.items[0].status.addresses}",
    ]);
    assert!(nodes.ok().contains(r#""type":"InternalIP""#), "{nodes:?}");
    assert_eq!(endpoint.address.as_deref(), Some("127.0.0.1"));

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let api_server = connector(&petset, Some(api_server_identity(&petset)));
    let anonymous = connector(&petset, None);
    let other =
        tls::issue_client_certificate(petset.data_dir(), "system:node:x", Some("system:nodes"))
            .expect("a certificate of the cluster CA for another identity");
    let other = connector(&petset, Some(other));
    // A certificate claiming the API server's name from another CA is refused by TLS itself.
    let elsewhere = tempfile::tempdir().expect("temp");
    let impostor = tls::issue_client_certificate(
        elsewhere.path(),
        tls::KUBELET_CLIENT_COMMON_NAME,
        Some("kubeadm:cluster-admins"),
    )
    .expect("a certificate of another CA");
    let impostor = connector(&petset, Some(impostor));
    let logs = "/containerLogs/default/talker/main";

    runtime.block_on(async {
        assert_eq!(
            get(&anonymous, &endpoint, "/healthz").await,
            Ok((200, "ok".into()))
        );

        // The API server's certificate: logs and exec work.
        let (code, body) = get(&api_server, &endpoint, logs).await.expect("logs");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("hello from the node"), "{body}");
        let ran = exec(&api_server, &endpoint, &["echo", "hi there"])
            .await
            .expect("exec");
        let Exec::Ran { stdout, status } = ran else {
            panic!("exec refused: {ran:?}");
        };
        assert_eq!(stdout, "hi there\n");
        assert_eq!(status["status"], "Success", "{status}");

        // No certificate: 401, and another identity: 403, with nothing run.
        assert_eq!(
            get(&anonymous, &endpoint, logs).await,
            Ok((401, "Unauthorized".into()))
        );
        let refused = exec(&anonymous, &endpoint, &["mkdir", "/anonymous"]).await;
        assert!(matches!(refused, Ok(Exec::Refused(401, _))), "{refused:?}");
        let refused = exec(&other, &endpoint, &["mkdir", "/forbidden"]).await;
        let Ok(Exec::Refused(403, message)) = refused else {
            panic!("another identity was not refused: {refused:?}");
        };
        assert!(message.contains("user=system:node:x"), "{message}");
        let (code, _) = get(&other, &endpoint, logs).await.expect("answered");
        assert_eq!(code, 403);
        let impostor_answer = get(&impostor, &endpoint, logs).await;
        assert!(impostor_answer.is_err(), "{impostor_answer:?}");
        let refused = exec(&impostor, &endpoint, &["mkdir", "/impostor"]).await;
        assert!(refused.is_err(), "{refused:?}");

        let checked = exec(&api_server, &endpoint, &["ls", "/"])
            .await
            .expect("exec");
        let Exec::Ran { stdout, .. } = checked else {
            panic!("exec refused: {checked:?}");
        };
        assert!(
            !stdout.contains("anonymous")
                && !stdout.contains("forbidden")
                && !stdout.contains("impostor"),
            "{stdout}"
        );
        // The check itself can fail: a file the API server's exec makes is seen.
        let made = exec(&api_server, &endpoint, &["mkdir", "/allowed"])
            .await
            .expect("exec");
        assert!(matches!(made, Exec::Ran { .. }), "{made:?}");
        let listed = exec(&api_server, &endpoint, &["ls", "/"])
            .await
            .expect("exec");
        let Exec::Ran { stdout, .. } = listed else {
            panic!("exec refused: {listed:?}");
        };
        assert!(stdout.contains("allowed"), "{stdout}");
    });

    // kubectl's streams reach the same node API through the API server: `exec -i` with stdin
    // (what `kubectl cp` does with tar) and `logs -f`.
    let copied = petset.kubectl_with_input(
        &[
            "exec",
            "-i",
            "talker",
            "--",
            "sh",
            "-c",
            "cat > /copied; cat /copied",
        ],
        Some("through stdin\n"),
    );
    assert_eq!(copied.ok(), "through stdin\n");
    // `kubectl cp` runs `tar` in the container (the test image links it to busybox).
    let local = elsewhere.path().join("local.txt");
    std::fs::write(&local, "copied both ways\n").expect("write");
    petset
        .kubectl(&["cp", &local.to_string_lossy(), "talker:/copied.txt"])
        .ok();
    let back = elsewhere.path().join("back.txt");
    petset
        .kubectl(&["cp", "talker:/copied.txt", &back.to_string_lossy()])
        .ok();
    assert_eq!(
        std::fs::read_to_string(&back).expect("copied back"),
        "copied both ways\n"
    );
    let followed = elsewhere.path().join("followed");
    let mut follow = petset
        .kubectl_command(&["logs", "-f", "talker"])
        .stdout(std::fs::File::create(&followed).expect("output file"))
        .spawn()
        .expect("kubectl logs -f");
    let seen = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&followed).is_ok_and(|text| text.contains("hello from the node"))
    });
    let still_following = follow.try_wait().expect("kubectl logs -f").is_none();
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(seen, "{:?}", std::fs::read_to_string(&followed));
    assert!(
        still_following,
        "kubectl logs -f ended while the container runs"
    );
}

#[test]
fn a_simulated_nodes_pods_say_why_they_have_no_streams() {
    let petset = crate::start(&[
        "--store",
        "memory",
        "--node-runtime",
        "simulated",
        "--kubelet-port",
        "0",
    ]);
    run_talker(&petset);
    // kubectl retries a refused WebSocket upgrade over SPDY and prints what that answer says:
    // the node's reason, not a bare "Upgrade request required".
    let exec = petset.kubectl(&["exec", "talker", "--", "true"]);
    assert!(
        exec.stderr
            .contains("its node runs no processes here (a simulated node)"),
        "{exec:?}"
    );
    let logs = petset.kubectl(&["logs", "talker"]);
    assert!(logs.stderr.contains("keeps no container logs"), "{logs:?}");
    let endpoint = published_endpoint(&petset);
    assert_eq!(endpoint.address.as_deref(), Some("127.0.0.1"));
}
