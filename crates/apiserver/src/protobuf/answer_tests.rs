//! Answers in protobuf: which Accept headers ask for it, and what a protobuf client reads back
//! (parsed with `k8s-pb`'s bindings of upstream's `generated.proto`, not petset's layouts).

use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use prost::Message;
use serde_json::json;

use super::encode::Preference;
use crate::test_cluster::TestCluster;

const PROTOBUF_FIRST: &str = "application/vnd.kubernetes.protobuf,application/json";
const PROTOBUF_ONLY: &str = "application/vnd.kubernetes.protobuf";

#[test]
fn the_first_media_type_of_the_accept_header_decides() {
    let protobuf = |json_too| Preference::Protobuf { json_too };
    for (accept, wanted) in [
        (PROTOBUF_FIRST, protobuf(true)),
        ("application/vnd.kubernetes.protobuf, */*", protobuf(true)),
        ("application/vnd.kubernetes.protobuf;q=1", protobuf(false)),
        (PROTOBUF_ONLY, protobuf(false)),
        ("application/json", Preference::Json),
        (
            "application/json, application/vnd.kubernetes.protobuf",
            Preference::Json,
        ),
        ("*/*", Preference::Json),
        ("", Preference::Json),
        // Renderings petset writes as JSON.
        (
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json",
            Preference::Json,
        ),
        (
            "application/vnd.kubernetes.protobuf;stream=watch",
            Preference::Json,
        ),
    ] {
        assert_eq!(Preference::of(accept), wanted, "{accept}");
    }
}

/// The object in a protobuf answer: the envelope's type and the message's bytes.
fn unwrap(body: &[u8]) -> (String, String, Vec<u8>) {
    let inner = body.strip_prefix(b"k8s\0").expect("the k8s envelope");
    let unknown = Unknown::decode(inner).expect("a runtime.Unknown");
    let type_meta = unknown.type_meta.expect("typeMeta");
    (
        type_meta.api_version.unwrap_or_default(),
        type_meta.kind.unwrap_or_default(),
        unknown.raw.unwrap_or_default(),
    )
}

#[tokio::test]
async fn objects_lists_and_errors_go_out_as_protobuf_to_a_client_that_asks() {
    let cluster = TestCluster::start().await;
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "labels": {"app": "web"}}, "data": {"mode": "fast"}});
    let (status, content_type, body) = cluster
        .negotiated(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            PROTOBUF_FIRST,
            config,
        )
        .await;
    assert_eq!((status, content_type.as_str()), (201, PROTOBUF_ONLY));
    let (api_version, kind, raw) = unwrap(&body);
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "ConfigMap"));
    let created = core::ConfigMap::decode(raw.as_slice()).expect("a ConfigMap");
    let metadata = created.metadata.expect("metadata");
    assert_eq!(metadata.name.as_deref(), Some("settings"));
    assert!(metadata.uid.is_some_and(|uid| !uid.is_empty()));
    assert!(
        metadata
            .creation_timestamp
            .is_some_and(|t| t.seconds.unwrap_or(0) > 0)
    );
    assert_eq!(created.data.get("mode").map(String::as_str), Some("fast"));

    let (status, content_type, body) = cluster
        .negotiated(
            "GET",
            "/api/v1/namespaces/default/configmaps",
            PROTOBUF_ONLY,
            json!(null),
        )
        .await;
    assert_eq!((status, content_type.as_str()), (200, PROTOBUF_ONLY));
    let (api_version, kind, raw) = unwrap(&body);
    assert_eq!(
        (api_version.as_str(), kind.as_str()),
        ("v1", "ConfigMapList")
    );
    let list = core::ConfigMapList::decode(raw.as_slice()).expect("a ConfigMapList");
    assert!(
        list.metadata
            .and_then(|m| m.resource_version)
            .is_some_and(|rv| !rv.is_empty())
    );
    let names: Vec<_> = list
        .items
        .iter()
        .filter_map(|item| item.metadata.as_ref()?.name.clone())
        .collect();
    assert!(names.contains(&"settings".to_string()), "{names:?}");

    let (status, content_type, body) = cluster
        .negotiated(
            "GET",
            "/api/v1/namespaces/default/configmaps/absent",
            PROTOBUF_FIRST,
            json!(null),
        )
        .await;
    assert_eq!((status, content_type.as_str()), (404, PROTOBUF_ONLY));
    let (api_version, kind, raw) = unwrap(&body);
    assert_eq!((api_version.as_str(), kind.as_str()), ("v1", "Status"));
    let refused = meta::Status::decode(raw.as_slice()).expect("a Status");
    assert_eq!(refused.code, Some(404));
    assert_eq!(refused.reason.as_deref(), Some("NotFound"));
    assert_eq!(
        refused.message.as_deref(),
        Some("configmaps \"absent\" not found")
    );
    let details = refused.details.expect("details");
    assert_eq!(
        (details.name.as_deref(), details.kind.as_deref()),
        (Some("absent"), Some("configmaps"))
    );
}

#[tokio::test]
async fn a_body_without_a_protobuf_form_is_json_when_the_client_takes_it_and_a_406_when_not() {
    let cluster = TestCluster::start().await;
    let (status, content_type, body) = cluster
        .negotiated("GET", "/api/v1", PROTOBUF_FIRST, json!(null))
        .await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let resources: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(resources["kind"], "APIResourceList");

    let (status, content_type, body) = cluster
        .negotiated("GET", "/api/v1", PROTOBUF_ONLY, json!(null))
        .await;
    assert_eq!((status, content_type.as_str()), (406, "application/json"));
    let refused: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(refused["reason"], "NotAcceptable");
    assert_eq!(
        refused["message"],
        "only the following media types are accepted: application/json, application/yaml"
    );
}

/// A protobuf client's watch streams as upstream's: length-prefixed WatchEvents whose objects
/// are enveloped protobuf, as they come (never held back to be re-encoded whole, which would
/// never end).
#[tokio::test]
async fn a_protobuf_clients_watch_streams_framed_protobuf_events() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let cluster = TestCluster::start().await;
    let configmaps = "/api/v1/namespaces/default/configmaps";
    let (status, _) = cluster
        .json("POST", configmaps, json!({"metadata": {"name": "seen"}}))
        .await;
    assert_eq!(status, 201);
    let request = crate::test_cluster::request(
        "GET",
        &format!("{configmaps}?watch=true"),
        "application/json",
        PROTOBUF_FIRST,
        json!(null),
    );
    let router = crate::router_as(cluster.state.clone(), crate::auth::loopback_user());
    let response = router.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[axum::http::header::CONTENT_TYPE],
        "application/vnd.kubernetes.protobuf;stream=watch"
    );
    let mut body = response.into_body();
    let mut buffered = Vec::new();
    let mut next_event = async || -> (String, String) {
        loop {
            if buffered.len() >= 4 {
                let length =
                    u32::from_be_bytes(buffered[..4].try_into().expect("4 bytes")) as usize;
                if buffered.len() >= 4 + length {
                    let frame: Vec<u8> = buffered.drain(..4 + length).skip(4).collect();
                    let event = meta::WatchEvent::decode(frame.as_slice()).expect("a WatchEvent");
                    let raw = event.object.and_then(|o| o.raw).expect("the object");
                    let (_, kind, object) = unwrap(&raw);
                    assert_eq!(kind, "ConfigMap");
                    let config = core::ConfigMap::decode(object.as_slice()).expect("a ConfigMap");
                    let name = config.metadata.and_then(|m| m.name).unwrap_or_default();
                    return (event.r#type.unwrap_or_default(), name);
                }
            }
            let data = body
                .frame()
                .await
                .expect("the stream goes on")
                .expect("readable")
                .into_data()
                .expect("data");
            buffered.extend_from_slice(&data);
        }
    };
    assert_eq!(
        next_event().await,
        ("ADDED".to_string(), "seen".to_string())
    );
    let (status, _) = cluster
        .json("POST", configmaps, json!({"metadata": {"name": "later"}}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        next_event().await,
        ("ADDED".to_string(), "later".to_string())
    );
}

/// A stored object as the server keeps it (defaults, status, claim templates that carry their
/// own type meta) answers a protobuf-only client whole.
#[tokio::test]
async fn a_stateful_set_with_claim_templates_answers_in_protobuf() {
    use k8s_pb::api::apps::v1 as apps;
    let cluster = TestCluster::start().await;
    let web = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
        "spec": {"serviceName": "nginx", "replicas": 2,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                    "volumeMounts": [{"name": "www", "mountPath": "/usr/share/nginx/html"}]}]}},
            "volumeClaimTemplates": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}]}});
    let (status, _) = cluster
        .json("POST", "/apis/apps/v1/namespaces/default/statefulsets", web)
        .await;
    assert_eq!(status, 201);
    let (status, content_type, body) = cluster
        .negotiated(
            "GET",
            "/apis/apps/v1/namespaces/default/statefulsets/web",
            PROTOBUF_ONLY,
            json!(null),
        )
        .await;
    assert_eq!((status, content_type.as_str()), (200, PROTOBUF_ONLY));
    let (_, kind, raw) = unwrap(&body);
    assert_eq!(kind, "StatefulSet");
    let set = apps::StatefulSet::decode(raw.as_slice()).expect("a StatefulSet");
    let spec = set.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    // A default the server filled in comes along.
    assert_eq!(spec.pod_management_policy.as_deref(), Some("OrderedReady"));
    let claim = &spec.volume_claim_templates[0];
    assert_eq!(
        claim.metadata.as_ref().and_then(|m| m.name.as_deref()),
        Some("www")
    );
    let requests = &claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.clone())
        .expect("resources")
        .requests;
    assert_eq!(
        requests.get("storage").and_then(|q| q.string.as_deref()),
        Some("1Gi")
    );
}
