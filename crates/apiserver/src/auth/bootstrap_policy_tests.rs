use serde_json::json;

use super::*;

fn named<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    objects
        .iter()
        .find(|object| name_of(object) == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn every_default_object_is_labelled_and_auto_updated_as_upstreams() {
    for object in cluster_roles().iter().chain(&cluster_role_bindings()) {
        assert_eq!(
            object.pointer("/metadata/labels/kubernetes.io~1bootstrapping"),
            Some(&json!("rbac-defaults")),
            "{}",
            name_of(object)
        );
        assert_eq!(
            object.pointer("/metadata/annotations/rbac.authorization.kubernetes.io~1autoupdate"),
            Some(&json!("true"))
        );
    }
}

#[test]
fn every_default_object_passes_validation() {
    for (plural, objects) in [
        ("clusterroles", cluster_roles()),
        ("clusterrolebindings", cluster_role_bindings()),
    ] {
        let resource = rbac_type(plural).expect("served");
        for object in &objects {
            let causes = petset_api::validate::create(resource, object);
            assert!(causes.is_empty(), "{}: {causes:?}", name_of(object));
        }
    }
}

#[test]
fn the_user_facing_roles_aggregate_as_upstreams() {
    let roles = cluster_roles();
    let selector = |name: &str| {
        named(&roles, name)
            .pointer("/aggregationRule/clusterRoleSelectors/0/matchLabels")
            .cloned()
    };
    assert_eq!(selector("admin"), Some(json!({TO_ADMIN: "true"})));
    assert_eq!(selector("edit"), Some(json!({TO_EDIT: "true"})));
    assert_eq!(selector("view"), Some(json!({TO_VIEW: "true"})));
    assert_eq!(
        named(&roles, "edit").pointer(&format!("/metadata/labels/{}", TO_ADMIN.replace('/', "~1"))),
        Some(&json!("true"))
    );
    let aggregated = with_aggregation(roles);
    let view_rules = Rule::all_of(named(&aggregated, "view"));
    assert!(
        !view_rules
            .iter()
            .any(|rule| rule.resources.contains(&"secrets".to_string()))
    );
    let admin_rules = Rule::all_of(named(&aggregated, "admin"));
    // admin holds all of edit, which holds all of view.
    assert!(uncovered(&admin_rules, &Rule::all_of(named(&aggregated, "edit"))).is_empty());
    assert!(uncovered(&Rule::all_of(named(&aggregated, "edit")), &view_rules).is_empty());
}

#[test]
fn reconciling_a_role_adds_what_is_missing_and_keeps_what_was_added() {
    let expected = named(&cluster_roles(), "system:discovery").clone();
    let mut existing = expected.clone();
    existing["rules"] = json!([{"verbs": ["get"], "nonResourceURLs": ["/api", "/custom"]}]);
    existing["metadata"]["labels"] = json!({"team": "a"});
    existing["metadata"]["annotations"] = json!({AUTOUPDATE_ANNOTATION: "true"});
    let reconciled = reconciled_role(&existing, &expected).expect("changed");
    let rules = Rule::all_of(&reconciled);
    assert!(uncovered(&rules, &Rule::all_of(&expected)).is_empty());
    assert!(
        rules
            .iter()
            .any(|rule| rule.non_resource_urls.contains(&"/custom".to_string()))
    );
    assert_eq!(reconciled["metadata"]["labels"]["team"], "a");
    assert_eq!(
        reconciled["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    assert_eq!(reconciled_role(&reconciled, &expected), None);
    assert_eq!(reconciled_role(&expected, &expected), None);
}

#[test]
fn reconciling_keeps_an_aggregated_roles_gathered_rules() {
    let expected = named(&cluster_roles(), "view").clone();
    let existing = named(&with_aggregation(cluster_roles()), "view").clone();
    assert_eq!(reconciled_role(&existing, &expected), None);
}

#[test]
fn a_protected_object_is_left_alone() {
    let mut existing = named(&cluster_roles(), "view").clone();
    assert!(!protected(&existing));
    existing["metadata"]["annotations"][AUTOUPDATE_ANNOTATION] = json!("false");
    assert!(protected(&existing));
}

#[test]
fn reconciling_a_binding_adds_subjects_and_recreates_on_a_new_role() {
    let expected = named(&cluster_role_bindings(), "system:public-info-viewer").clone();
    let mut existing = expected.clone();
    existing["subjects"] = json!([{"kind": "User", "apiGroup": GROUP, "name": "joe"}]);
    let BindingChange::Update(updated) = reconciled_binding(&existing, &expected) else {
        panic!("an update");
    };
    assert_eq!(updated["subjects"].as_array().map(Vec::len), Some(3));
    assert_eq!(reconciled_binding(&updated, &expected), BindingChange::None);
    let mut elsewhere = expected.clone();
    elsewhere["roleRef"]["name"] = json!("view");
    let BindingChange::Recreate(recreated) = reconciled_binding(&elsewhere, &expected) else {
        panic!("a re-creation");
    };
    assert_eq!(recreated["roleRef"]["name"], "system:public-info-viewer");
}

#[tokio::test]
async fn bootstrap_creates_the_policy_and_a_restart_restores_what_was_taken() {
    let registry = Registry::new(std::sync::Arc::new(petset_store::LocalStore::in_memory()));
    registry.bootstrap().await.expect("bootstrap");
    let roles = Scope {
        resource: rbac_type("clusterroles").expect("served"),
        namespace: None,
    };
    let discovery = registry.get(roles, "system:discovery").await.expect("made");
    let mut narrowed = discovery.clone();
    narrowed["rules"] = json!([{"verbs": ["get"], "nonResourceURLs": ["/api"]}]);
    registry
        .update(roles, "system:discovery", None, narrowed, false)
        .await
        .expect("narrowed");
    registry.bootstrap().await.expect("bootstrap again");
    let restored = registry
        .get(roles, "system:discovery")
        .await
        .expect("there");
    assert!(uncovered(&Rule::all_of(&restored), &Rule::all_of(&discovery)).is_empty());
    let bindings = Scope {
        resource: rbac_type("clusterrolebindings").expect("served"),
        namespace: None,
    };
    let admins = registry.get(bindings, "cluster-admin").await.expect("made");
    assert_eq!(
        admins["subjects"],
        json!([{"kind": "Group", "apiGroup": GROUP, "name": "system:masters"}])
    );
}
