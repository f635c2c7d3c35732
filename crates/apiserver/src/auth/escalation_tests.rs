use serde_json::json;

use super::*;
use crate::auth::bootstrap_policy::default_index;

fn resource(plural: &str) -> &'static ResourceType {
    petset_api::resources::find(GROUP, "v1", plural).expect("served")
}

fn jane() -> UserInfo {
    UserInfo::new("jane", &["developers", "system:authenticated"])
}

/// The default policy with jane bound to `role` (a ClusterRole) in `shop`.
fn jane_with(role: &str) -> RbacIndex {
    let index = default_index();
    let binding = json!({"metadata": {"namespace": "shop", "name": "jane"},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "jane"}]});
    index.apply("rolebindings", None, Some(&binding));
    index
}

fn pod_role(verbs: &[&str]) -> Value {
    json!({"metadata": {"namespace": "shop", "name": "pods"},
        "rules": [{"verbs": verbs, "apiGroups": [""], "resources": ["pods"]}]})
}

#[test]
fn a_role_granting_what_the_writer_lacks_is_refused_with_upstreams_text() {
    let index = RbacIndex::new();
    let refusal = check_write(
        &index,
        &jane(),
        resource("roles"),
        "shop",
        None,
        &pod_role(&["list"]),
    )
    .expect_err("refused");
    assert_eq!(refusal.code, 403);
    assert_eq!(
        refusal.message,
        "roles.rbac.authorization.k8s.io \"pods\" is forbidden: user \"jane\" (groups=[\"developers\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"list\"]}"
    );
}

#[test]
fn the_missing_permissions_are_compacted_and_sorted() {
    let index = jane_with("view");
    let role = json!({"metadata": {"namespace": "shop", "name": "r"}, "rules": [
        {"verbs": ["get", "delete", "create"], "apiGroups": ["", "apps"], "resources": ["pods", "statefulsets"]},
        {"verbs": ["get"], "nonResourceURLs": ["/metrics"]}]});
    let refusal =
        check_write(&index, &jane(), resource("roles"), "shop", None, &role).expect_err("refused");
    let (_, missing) = refusal.message.split_once("held:\n").expect("a list");
    assert_eq!(
        missing.lines().collect::<Vec<_>>(),
        [
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete" "create"]}"#,
            r#"{APIGroups:[""], Resources:["statefulsets"], Verbs:["get" "delete" "create"]}"#,
            r#"{APIGroups:["apps"], Resources:["pods"], Verbs:["get" "delete" "create"]}"#,
            r#"{APIGroups:["apps"], Resources:["statefulsets"], Verbs:["delete" "create"]}"#,
            r#"{NonResourceURLs:["/metrics"], Verbs:["get"]}"#,
        ]
    );
}

#[test]
fn what_the_writer_holds_may_be_granted() {
    let index = jane_with("edit");
    check_write(
        &index,
        &jane(),
        resource("roles"),
        "shop",
        None,
        &pod_role(&["get", "list", "delete"]),
    )
    .expect("edit holds these");
    // Not in another namespace, where jane holds nothing.
    assert!(
        check_write(
            &index,
            &jane(),
            resource("roles"),
            "other",
            None,
            &pod_role(&["get"])
        )
        .is_err()
    );
}

#[test]
fn escalate_and_masters_skip_the_check() {
    let index = RbacIndex::new();
    let escalator = json!({"metadata": {"name": "escalator"},
        "rules": [{"verbs": ["escalate"], "apiGroups": [GROUP], "resources": ["roles"]}]});
    index.apply("clusterroles", None, Some(&escalator));
    let binding = json!({"metadata": {"name": "jane"},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "escalator"},
        "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "jane"}]});
    index.apply("clusterrolebindings", None, Some(&binding));
    check_write(
        &index,
        &jane(),
        resource("roles"),
        "shop",
        None,
        &pod_role(&["*"]),
    )
    .expect("escalate");
    let admin = UserInfo::new(
        "kubernetes-admin",
        &["system:masters", "system:authenticated"],
    );
    check_write(
        &RbacIndex::new(),
        &admin,
        resource("roles"),
        "shop",
        None,
        &pod_role(&["*"]),
    )
    .expect("masters");
}

#[test]
fn a_binding_needs_bind_or_every_permission_of_its_role() {
    let index = jane_with("edit");
    let binding_to = |role: &str| {
        json!({"metadata": {"namespace": "shop", "name": "b"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "joe"}]})
    };
    // jane holds everything view grants (edit aggregates view).
    check_write(
        &index,
        &jane(),
        resource("rolebindings"),
        "shop",
        None,
        &binding_to("view"),
    )
    .expect("view is covered");
    let refusal = check_write(
        &index,
        &jane(),
        resource("rolebindings"),
        "shop",
        None,
        &binding_to("admin"),
    )
    .expect_err("admin is not");
    assert!(refusal.message.starts_with("rolebindings.rbac.authorization.k8s.io \"b\" is forbidden: user \"jane\" (groups=[\"developers\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n"), "{}", refusal.message);
    let missing = check_write(
        &index,
        &jane(),
        resource("rolebindings"),
        "shop",
        None,
        &binding_to("gone"),
    )
    .expect_err("no such role");
    assert_eq!(
        missing.message,
        r#"rolebindings.rbac.authorization.k8s.io "b" is forbidden: clusterrole.rbac.authorization.k8s.io "gone" not found"#
    );
    // `bind` on the role is enough.
    let binder = json!({"metadata": {"name": "binder"},
        "rules": [{"verbs": ["bind"], "apiGroups": [GROUP], "resources": ["clusterroles"], "resourceNames": ["admin"]}]});
    index.apply("clusterroles", None, Some(&binder));
    let grant = json!({"metadata": {"namespace": "shop", "name": "jane-binds"},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "binder"},
        "subjects": [{"kind": "User", "apiGroup": GROUP, "name": "jane"}]});
    index.apply("rolebindings", None, Some(&grant));
    check_write(
        &index,
        &jane(),
        resource("rolebindings"),
        "shop",
        None,
        &binding_to("admin"),
    )
    .expect("bind");
}

#[test]
fn an_aggregation_rule_needs_every_permission() {
    let index = jane_with("admin");
    let role = json!({"metadata": {"name": "mine"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}});
    let refusal = check_write(&index, &jane(), resource("clusterroles"), "", None, &role)
        .expect_err("refused");
    assert_eq!(
        refusal.message,
        r#"clusterroles.rbac.authorization.k8s.io "mine" is forbidden: must have cluster-admin privileges to use the aggregationRule"#
    );
}

#[test]
fn a_change_of_only_owner_references_and_finalizers_is_not_checked() {
    let index = RbacIndex::new();
    let old = pod_role(&["*"]);
    let mut new = old.clone();
    new["metadata"]["finalizers"] = json!(["example.com/keep"]);
    check_write(&index, &jane(), resource("roles"), "shop", Some(&old), &new).expect("gc fields");
    new["metadata"]["labels"] = json!({"a": "b"});
    assert!(check_write(&index, &jane(), resource("roles"), "shop", Some(&old), &new).is_err());
}

#[test]
fn covering_follows_upstreams_comparator() {
    let owner = [Rule {
        verbs: vec!["get".into()],
        api_groups: vec!["".into()],
        resources: vec!["*/status".into(), "pods".into()],
        ..Rule::default()
    }];
    let wanted = |resource: &str| Rule {
        verbs: vec!["get".into()],
        api_groups: vec!["".into()],
        resources: vec![resource.into()],
        ..Rule::default()
    };
    assert!(uncovered(&owner, &[wanted("pods")]).is_empty());
    assert!(uncovered(&owner, &[wanted("nodes/status")]).is_empty());
    assert_eq!(uncovered(&owner, &[wanted("pods/log")]).len(), 1);
    // A rule limited to names covers only those names.
    let named = [Rule {
        resource_names: vec!["a".into()],
        ..wanted("pods")
    }];
    assert_eq!(uncovered(&named, &[wanted("pods")]).len(), 1);
    assert!(
        uncovered(
            &named,
            &[Rule {
                resource_names: vec!["a".into()],
                ..wanted("pods")
            }]
        )
        .is_empty()
    );
}
