//! RBAC through the network's router of a `TestCluster`: a user's certificate, bindings made
//! by the admin and followed by the index, and the escalation check on every kind of write.

use serde_json::{Value, json};

use super::ClientCertificate;
use crate::test_cluster::{TestCluster, answer_json, request};

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

struct Jane {
    _dir: tempfile::TempDir,
    certificate: ClientCertificate,
}

fn jane() -> Jane {
    let dir = tempfile::tempdir().expect("temp dir");
    let (pem, _) = crate::tls::issue_client_certificate(dir.path(), "jane", Some("developers"))
        .expect("certificate");
    let certificate = ClientCertificate::from_pem(&pem).expect("a certificate");
    Jane {
        _dir: dir,
        certificate,
    }
}

async fn as_jane(
    cluster: &TestCluster,
    jane: &Jane,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let mut request = request(method, path, content_type, "application/json", body);
    request.extensions_mut().insert(jane.certificate.clone());
    answer_json(crate::router(cluster.state.clone()), request).await
}

/// Asks until the answer's code is `code` (the index follows the store through the watch
/// cache, a moment behind the write); bounded by attempts, not by time.
async fn until_code(
    cluster: &TestCluster,
    jane: &Jane,
    method: &str,
    path: &str,
    code: u16,
) -> (u16, Value) {
    let mut answer = (0, Value::Null);
    for _ in 0..500 {
        answer = as_jane(cluster, jane, method, path, "application/json", Value::Null).await;
        if answer.0 == code {
            return answer;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    answer
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

async fn admin_creates(cluster: &TestCluster, path: &str, body: Value) {
    let (code, answer) = cluster.json("POST", path, body).await;
    assert_eq!(code, 201, "{answer}");
}

#[tokio::test]
async fn a_user_gets_what_its_bindings_grant_and_cannot_grant_more() {
    let cluster = TestCluster::start().await;
    let jane = jane();
    let (code, body) = as_jane(
        &cluster,
        &jane,
        "GET",
        "/api/v1/namespaces/default/pods",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        message(&body),
        r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    // Discovery, through the default system:discovery binding.
    let (code, _) = as_jane(
        &cluster,
        &jane,
        "GET",
        "/apis/apps/v1",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);

    admin_creates(
        &cluster,
        &format!("{RBAC}/clusterroles"),
        json!({"metadata": {"name": "pod-manager"}, "rules": [
            {"verbs": ["get", "list", "watch", "create", "update", "patch", "delete"], "apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["get", "list", "create", "update", "patch", "delete"], "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"]}]}),
    )
    .await;
    admin_creates(
        &cluster,
        &format!("{RBAC}/namespaces/default/rolebindings"),
        json!({"metadata": {"name": "jane"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "pod-manager"},
            "subjects": [{"kind": "Group", "name": "developers"}]}),
    )
    .await;
    let (code, body) = until_code(
        &cluster,
        &jane,
        "GET",
        "/api/v1/namespaces/default/pods",
        200,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, _) = as_jane(
        &cluster,
        &jane,
        "GET",
        "/api/v1/namespaces/kube-system/pods",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(code, 403);

    // A role with what jane holds is fine; one with more is refused, by create…
    let roles = format!("{RBAC}/namespaces/default/roles");
    let pod_reader = json!({"metadata": {"name": "pod-reader"},
        "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]});
    let (code, body) = as_jane(
        &cluster,
        &jane,
        "POST",
        &roles,
        "application/json",
        pod_reader,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let secret_reader = json!({"metadata": {"name": "secret-reader"},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]});
    let (code, body) = as_jane(
        &cluster,
        &jane,
        "POST",
        &roles,
        "application/json",
        secret_reader,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        message(&body),
        "roles.rbac.authorization.k8s.io \"secret-reader\" is forbidden: user \"jane\" (groups=[\"developers\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
    );
    // …and by every patch type, checked on the patched object.
    let path = format!("{roles}/pod-reader");
    let add_secrets = json!([{"op": "add", "path": "/rules/-",
        "value": {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}}]);
    let (code, body) = as_jane(
        &cluster,
        &jane,
        "PATCH",
        &path,
        "application/json-patch+json",
        add_secrets,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let replace = json!({"rules": [{"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}]});
    let (code, _) = as_jane(
        &cluster,
        &jane,
        "PATCH",
        &path,
        "application/merge-patch+json",
        replace,
    )
    .await;
    assert_eq!(code, 403);
    let (code, stored) = cluster.json("GET", &path, Value::Null).await;
    assert_eq!(
        (code, stored["rules"].as_array().map(Vec::len)),
        (200, Some(1))
    );

    // A binding to a role jane does not hold needs `bind`; one to a role she holds does not.
    let bindings = format!("{RBAC}/namespaces/default/rolebindings");
    let bind = |role: &str, kind: &str| {
        json!({"metadata": {"name": format!("joe-{role}")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "User", "name": "joe"}]})
    };
    // The index follows the store a moment behind: wait until it holds jane's new role.
    let pod_reader_ref = crate::auth::rbac::RoleRef {
        kind: "Role".to_string(),
        name: "pod-reader".to_string(),
    };
    for _ in 0..500 {
        if cluster
            .state
            .rbac()
            .role_reference_rules(&pod_reader_ref, "default")
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (code, body) = as_jane(
        &cluster,
        &jane,
        "POST",
        &bindings,
        "application/json",
        bind("pod-reader", "Role"),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = as_jane(
        &cluster,
        &jane,
        "POST",
        &bindings,
        "application/json",
        bind("cluster-admin", "ClusterRole"),
    )
    .await;
    assert_eq!(code, 403);
    assert!(message(&body).starts_with(
        "rolebindings.rbac.authorization.k8s.io \"joe-cluster-admin\" is forbidden: user \"jane\" (groups=[\"developers\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n"
    ), "{body}");
}

#[tokio::test]
async fn an_invalid_binding_is_422_and_its_role_ref_never_changes() {
    let cluster = TestCluster::start().await;
    let (code, body) = cluster
        .json(
            "POST",
            &format!("{RBAC}/clusterrolebindings"),
            json!({"metadata": {"name": "x"},
                "roleRef": {"kind": "Role", "name": "r"},
                "subjects": [{"kind": "ServiceAccount", "name": "default"}, {"kind": "Robot", "name": "r2"}]}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let causes: Vec<(&str, &str)> = body["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        causes,
        [
            (
                "roleRef.kind",
                "Unsupported value: \"Role\": supported values: \"ClusterRole\""
            ),
            ("subjects[0].namespace", "Required value"),
            (
                "subjects[1].kind",
                "Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""
            ),
        ]
    );
    // roleRef never changes.
    admin_binding(&cluster).await;
    let (code, body) = cluster
        .send(
            "PATCH",
            &format!("{RBAC}/namespaces/default/rolebindings/b"),
            "application/merge-patch+json",
            json!({"roleRef": {"name": "edit"}}),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert!(message(&body).contains(r#"roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"edit"}: cannot change roleRef"#), "{body}");
}

async fn admin_binding(cluster: &TestCluster) {
    admin_creates(
        cluster,
        &format!("{RBAC}/namespaces/default/rolebindings"),
        json!({"metadata": {"name": "b"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}]}),
    )
    .await;
}
