//! Whatever a request carries, the server answers with a status: property tests of the
//! protobuf decoder, the `continue` token and query and path parsing through the whole router
//! (TestCluster), and the inputs a fuzzing run once found to panic it, each in-process.

use axum::body::Body;
use axum::http::Request;
use petset_api::resources::{RESOURCES, find};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::test_cluster::TestCluster;

/// proptest's defaults (which honour `PROPTEST_CASES`) without regression files.
fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}

/// A runtime for one property: TestCluster is async, proptest's cases are not.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn length_delimited(number: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3 | 2, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

/// Protobuf-shaped bytes: fields of every wire type (and invalid ones), nested messages,
/// lengths that lie.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        (1u64..16, any::<u64>()).prop_map(|(number, value)| {
            let mut out = Vec::new();
            varint(number << 3, &mut out);
            varint(value, &mut out);
            out
        }),
        (1u64..16, prop::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(number, payload)| length_delimited(number, &payload)),
        (any::<u64>(), prop::collection::vec(any::<u8>(), 0..12)).prop_map(|(tag, rest)| {
            let mut out = Vec::new();
            varint(tag, &mut out);
            out.extend(rest);
            out
        }),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        (1u64..16, prop::collection::vec(inner, 0..4))
            .prop_map(|(number, fields)| length_delimited(number, &fields.concat()))
    })
}

/// A `k8s\0` envelope around a `runtime.Unknown` of a kind the decoder knows.
fn envelope() -> impl Strategy<Value = Vec<u8>> {
    let kind = prop::sample::select(vec![
        "ConfigMap",
        "Secret",
        "Namespace",
        "Service",
        "ServiceAccount",
        "Pod",
    ]);
    (kind, prop::collection::vec(message(), 0..6)).prop_map(|(kind, fields)| {
        let type_meta = [
            length_delimited(1, b"v1"),
            length_delimited(2, kind.as_bytes()),
        ]
        .concat();
        let unknown = [
            length_delimited(1, &type_meta),
            length_delimited(2, &fields.concat()),
        ]
        .concat();
        [b"k8s\0".as_slice(), &unknown].concat()
    })
}

/// Query strings of the parameters the API reads, with values of any kind (never `watch`:
/// a watch answers with a stream that does not end).
fn query() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "limit",
        "continue",
        "labelSelector",
        "fieldSelector",
        "resourceVersion",
        "resourceVersionMatch",
        "timeoutSeconds",
        "sendInitialEvents",
        "allowWatchBookmarks",
        "dryRun",
        "fieldManager",
        "fieldValidation",
        "propagationPolicy",
        "gracePeriodSeconds",
        "orphanDependents",
        "includeObject",
        "pretty",
    ]);
    let value = prop_oneof![
        any::<String>(),
        "-?[0-9]{1,20}",
        Just("9223372036854775807".to_string()),
        Just("1-a\u{e9}0".to_string()),
        "[a-z=!(),\u{e9} ]{0,12}",
    ];
    prop::collection::vec((key, value), 0..5).prop_map(|pairs| {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    })
}

/// API paths from the segments the router knows, in any order (never `watch`).
fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        8 => prop::sample::select(vec![
            "api", "apis", "v1", "apps", "storage.k8s.io", "namespaces", "default", "kube-system",
            "pods", "configmaps", "statefulsets", "services", "nodes", "status", "scale",
            "finalize", "binding", "eviction", "ephemeralcontainers", "c", "",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ];
    prop::collection::vec(segment, 0..7).prop_map(|segments| {
        let encoded: Vec<String> = segments
            .iter()
            .map(|s| form_urlencoded::byte_serialize(s.as_bytes()).collect())
            .collect();
        format!("/{}", encoded.join("/"))
    })
}

fn answered_with_a_status(code: u16, body: &Value) -> bool {
    code < 400 || body.is_null() || body["kind"] == "Status"
}

#[test]
fn any_bytes_decode_to_an_object_or_a_bad_request() {
    let configmaps = find("", "v1", "configmaps").expect("configmaps are served");
    proptest!(config(), |(body in prop_oneof![prop::collection::vec(any::<u8>(), 0..64), envelope()],
                          resource in 0..RESOURCES.len())| {
        for resource in [configmaps, &RESOURCES[resource]] {
            if let Err(error) = crate::protobuf::decode(&body, resource) {
                prop_assert!(matches!(error.code, 400 | 415), "{}", error.code);
            }
        }
    });
}

#[test]
fn any_query_on_any_verb_gets_a_status() {
    let runtime = runtime();
    let cluster = runtime.block_on(TestCluster::start());
    runtime.block_on(async {
        let (code, _) = cluster
            .json(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            )
            .await;
        assert_eq!(code, 201);
    });
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    proptest!(config(), |(query in query(),
                          method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]),
                          named in any::<bool>())| {
        let path = if named {
            format!("/api/v1/namespaces/default/configmaps/c?{query}")
        } else {
            format!("/api/v1/namespaces/default/configmaps?{query}")
        };
        let body = if method == "PATCH" { json!({"data": {"a": "1"}}) } else { config_map.clone() };
        let content_type = if method == "PATCH" { "application/merge-patch+json" } else { "application/json" };
        let (code, answer) = runtime.block_on(cluster.send(method, &path, content_type, body));
        prop_assert!(code < 500, "{} {}: {} {}", method, path, code, answer);
        prop_assert!(answered_with_a_status(code, &answer), "{} {}: {}", method, path, answer);
    });
}

#[test]
fn any_path_gets_a_status() {
    let runtime = runtime();
    let cluster = runtime.block_on(TestCluster::start());
    proptest!(config(), |(path in path(), method in prop::sample::select(vec!["GET", "POST", "DELETE"]))| {
        let (code, answer) = runtime.block_on(cluster.json(method, &path, json!({})));
        prop_assert!(answered_with_a_status(code, &answer), "{} {}: {} {}", method, path, code, answer);
    });
}

#[test]
fn continue_tokens_resume_a_list_exactly_and_any_other_token_is_refused() {
    let runtime = runtime();
    let cluster = runtime.block_on(TestCluster::start());
    let names: Vec<String> = (0..7).map(|i| format!("c{i}")).collect();
    runtime.block_on(async {
        for name in &names {
            let (code, answer) = cluster
                .json(
                    "POST",
                    "/api/v1/namespaces/default/configmaps",
                    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}),
                )
                .await;
            assert_eq!(code, 201, "{answer}");
        }
    });
    proptest!(config(), |(limit in 1usize..9, token in any::<String>())| {
        let mut seen = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/namespaces/default/configmaps?limit={limit}");
            if let Some(token) = &next {
                path.push_str("&continue=");
                path.extend(form_urlencoded::byte_serialize(token.as_bytes()));
            }
            let (code, page) = runtime.block_on(cluster.json("GET", &path, Value::Null));
            prop_assert_eq!(code, 200, "{}", page);
            let items = page["items"].as_array().cloned().unwrap_or_default();
            prop_assert!(items.len() <= limit);
            seen.extend(items.iter().filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string)));
            match page["metadata"]["continue"].as_str() {
                Some(token) => next = Some(token.to_string()),
                None => break,
            }
        }
        prop_assert_eq!(&seen, &names);
        let path = format!(
            "/api/v1/namespaces/default/configmaps?limit=1&continue={}",
            form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
        );
        let (code, answer) = runtime.block_on(cluster.json("GET", &path, Value::Null));
        // The empty token is no token; anything else a client made up is not this list's.
        prop_assert!(matches!(code, 200 | 400), "{} {}", code, answer);
        prop_assert!(token.is_empty() || code == 400, "{:?}: {}", token, answer);
    });
}

/// Each input a fuzzing run (187,900 kubectl-shaped requests) found to panic the server, and
/// the grace period near `i64::MAX` found by reading: each gets upstream's status instead.
#[tokio::test]
async fn inputs_that_once_panicked_the_server_get_a_status() {
    let cluster = TestCluster::start().await;
    let with_labels = |labels: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": labels}});
    let long_label = with_labels(json!({"a": format!("{}\u{e9}", "a".repeat(62))}));
    let configmaps = "/api/v1/namespaces/default/configmaps";
    let (code, answer) = cluster.json("POST", configmaps, long_label).await;
    assert_eq!(code, 422, "a label value of 62 bytes and é: {answer}");
    let (code, answer) = cluster
        .json(
            "GET",
            "/api/v1/configmaps?limit=1&continue=1-a%C3%A90",
            Value::Null,
        )
        .await;
    assert_eq!(code, 400, "a continue token with UTF-8: {answer}");
    let (code, answer) = cluster
        .json("GET", "/api/v1/pods?labelSelector=)(", Value::Null)
        .await;
    assert_eq!(code, 400, "labelSelector=)(: {answer}");
    for body in [json!([]), json!("x"), json!(1)] {
        let (code, answer) = cluster
            .send(
                "PATCH",
                "/api/v1/namespaces/default/configmaps/missing?fieldManager=fuzz",
                "application/apply-patch+yaml",
                body.clone(),
            )
            .await;
        assert_eq!(
            code, 400,
            "an apply patch {body} for a missing object: {answer}"
        );
    }
    let (code, _) = cluster
        .json("POST", configmaps, with_labels(json!({})))
        .await;
    assert_eq!(code, 201);
    let move_to_root = json!([{"op": "move", "from": "/metadata", "path": ""},
                              {"op": "test", "path": "/nope", "value": 1}]);
    let (code, answer) = cluster
        .send(
            "PATCH",
            "/api/v1/namespaces/default/configmaps/c",
            "application/json-patch+json",
            move_to_root,
        )
        .await;
    assert_eq!(
        code, 422,
        "a failed JSON patch after a move to the root: {answer}"
    );
    // A watch whose timeout is past what the clock holds is a watch without one: it answers
    // 200 and streams (the body is not read, so the stream ends with this test).
    let request = Request::get("/api/v1/configmaps?watch=1&timeoutSeconds=9223372036854775807")
        .body(Body::empty())
        .expect("request");
    let response = crate::internal_router(cluster.state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), 200);
    drop(response);
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"terminationGracePeriodSeconds": i64::MAX,
                 "containers": [{"name": "c", "image": "busybox"}]}});
    let (code, answer) = cluster
        .json("POST", "/api/v1/namespaces/default/pods", pod)
        .await;
    assert_eq!(code, 201, "{answer}");
    let (code, answer) = cluster
        .json(
            "DELETE",
            &format!(
                "/api/v1/namespaces/default/pods/p?gracePeriodSeconds={}",
                i64::MAX
            ),
            Value::Null,
        )
        .await;
    assert_eq!(code, 200, "a grace period of i64::MAX: {answer}");
    // Found by the property tests: a StatefulSet whose updateStrategy is not an object.
    let set = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
        "spec": {"updateStrategy": false, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let (code, answer) = cluster
        .json("POST", "/apis/apps/v1/namespaces/default/statefulsets", set)
        .await;
    assert!(
        matches!(code, 400 | 422),
        "updateStrategy: false: {code} {answer}"
    );
    let (code, _) = cluster.json("GET", configmaps, Value::Null).await;
    assert_eq!(code, 200, "the server still serves");
}
