use axum::http::Method;
use serde_json::json;

use super::*;
use crate::auth::bootstrap_policy::default_index;

fn request(method: &str, uri: &str) -> RequestInfo {
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let (path, query) = match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri, None),
    };
    RequestInfo::parse(&method, path, query)
}

fn rule(
    verbs: &[&str],
    groups: &[&str],
    resources: &[&str],
    names: &[&str],
    urls: &[&str],
) -> Rule {
    let owned = |values: &[&str]| values.iter().map(|v| v.to_string()).collect();
    Rule {
        verbs: owned(verbs),
        api_groups: owned(groups),
        resources: owned(resources),
        resource_names: owned(names),
        non_resource_urls: owned(urls),
    }
}

/// One rule and one request a line: `verbs|groups|resources|names|urls METHOD uri => allow|deny`
/// (lists comma-separated, `-` for none).
const RULE_TABLE: &str = r#"
get|-|pods|-|- GET /api/v1/namespaces/a/pods/x => deny
get|,|pods|-|- GET /api/v1/namespaces/a/pods/x => allow
get|*|pods|-|- GET /apis/apps/v1/namespaces/a/pods/x => allow
*|,|pods|-|- DELETE /api/v1/namespaces/a/pods/x => allow
get|,|pods|-|- GET /api/v1/namespaces/a/pods => deny
list|,|pods|-|- GET /api/v1/namespaces/a/pods => allow
watch|,|pods|-|- GET /api/v1/namespaces/a/pods?watch=true => allow
get|,|pods|-|- GET /api/v1/namespaces/a/pods/x/log => deny
get|,|pods/log|-|- GET /api/v1/namespaces/a/pods/x/log => allow
get|,|*/log|-|- GET /api/v1/namespaces/a/pods/x/log => allow
get|,|*/log|-|- GET /api/v1/namespaces/a/pods/x => deny
get|,|*/status|-|- GET /api/v1/namespaces/a/pods/x/log => deny
get|,|pods/*|-|- GET /api/v1/namespaces/a/pods/x/log => deny
get|,|*|-|- GET /api/v1/namespaces/a/pods/x/log => allow
get|apps|statefulsets|-|- GET /apis/apps/v1/namespaces/a/statefulsets/web => allow
get|apps|statefulsets|-|- GET /api/v1/namespaces/a/statefulsets/web => deny
get|,|secrets|token|- GET /api/v1/namespaces/a/secrets/token => allow
get|,|secrets|token|- GET /api/v1/namespaces/a/secrets/other => deny
list|,|secrets|token|- GET /api/v1/namespaces/a/secrets => deny
list|,|secrets|token|- GET /api/v1/namespaces/a/secrets?fieldSelector=metadata.name%3Dtoken => allow
get|-|-|-|/healthz GET /healthz => allow
get|-|-|-|/healthz GET /healthz/etcd => deny
get|-|-|-|/healthz/* GET /healthz/etcd => allow
get|-|-|-|/healthz* GET /healthzfoo => allow
get|-|-|-|/api/* GET /api => deny
get|-|-|-|/api/* GET /api/v1 => allow
get|-|-|-|* GET /metrics => allow
post|-|-|-|* POST /logs => allow
get|-|-|-|* POST /logs => deny
get|*|*|-|- GET /metrics => deny
get|-|-|-|* GET /api/v1/namespaces/a/pods/x => deny
"#;

fn list(field: &str) -> Vec<&str> {
    match field {
        "-" => Vec::new(),
        // `,` alone is the core group's empty name.
        "," => vec![""],
        listed => listed.split(',').collect(),
    }
}

#[test]
fn rules_match_as_upstream() {
    for line in RULE_TABLE.lines().filter(|line| !line.trim().is_empty()) {
        let (case, expected) = line.split_once(" => ").expect("an outcome");
        let mut words = case.split_whitespace();
        let (Some(fields), Some(method), Some(uri)) = (words.next(), words.next(), words.next())
        else {
            panic!("{line}: rule, method and URI");
        };
        let fields: Vec<Vec<&str>> = fields.split('|').map(list).collect();
        let rule = rule(&fields[0], &fields[1], &fields[2], &fields[3], &fields[4]);
        let allowed = rule.allows(&request(method, uri));
        assert_eq!(allowed, expected == "allow", "{line}");
    }
}

fn jane() -> UserInfo {
    UserInfo::new("jane", &["developers", "system:authenticated"])
}

fn account(namespace: &str, name: &str) -> UserInfo {
    UserInfo::new(
        &format!("system:serviceaccount:{namespace}:{name}"),
        &[
            "system:serviceaccounts",
            &format!("system:serviceaccounts:{namespace}"),
            "system:authenticated",
        ],
    )
}

fn role_binding(namespace: &str, name: &str, role: (&str, &str), subjects: Value) -> Value {
    json!({"metadata": {"namespace": namespace, "name": name},
        "roleRef": {"apiGroup": GROUP, "kind": role.0, "name": role.1}, "subjects": subjects})
}

#[test]
fn a_service_account_without_a_binding_gets_upstreams_refusal() {
    let index = default_index();
    let info = request("GET", "/api/v1/namespaces/go-demo-3/pods");
    let decision = index.authorize(&account("go-demo-3", "default"), &info);
    assert_eq!(
        decision,
        Decision {
            allowed: false,
            reason: String::new()
        }
    );
    let refusal = crate::auth::authz::authorize(
        &index,
        &account("go-demo-3", "default"),
        &info,
        &crate::auth::authz::Facts::default(),
    )
    .expect_err("refused");
    assert_eq!(
        refusal.message,
        r#"pods is forbidden: User "system:serviceaccount:go-demo-3:default" cannot list resource "pods" in API group "" in the namespace "go-demo-3""#
    );
}

#[test]
fn a_binding_added_then_removed_grants_then_stops() {
    let index = default_index();
    let list_pods = request("GET", "/api/v1/namespaces/shop/pods");
    assert!(!index.authorize(&jane(), &list_pods).allowed);
    let binding = role_binding(
        "shop",
        "jane-views",
        ("ClusterRole", "view"),
        json!([{"kind": "User", "apiGroup": GROUP, "name": "jane"}]),
    );
    index.apply("rolebindings", None, Some(&binding));
    assert!(index.authorize(&jane(), &list_pods).allowed);
    // Only in the binding's namespace, and only what view grants.
    assert!(
        !index
            .authorize(&jane(), &request("GET", "/api/v1/namespaces/other/pods"))
            .allowed
    );
    assert!(
        !index
            .authorize(&jane(), &request("GET", "/api/v1/namespaces/shop/secrets"))
            .allowed
    );
    assert!(
        !index
            .authorize(
                &jane(),
                &request("DELETE", "/api/v1/namespaces/shop/pods/x")
            )
            .allowed
    );
    index.apply("rolebindings", Some(&binding), None);
    assert!(!index.authorize(&jane(), &list_pods).allowed);
}

#[test]
fn a_changed_binding_loses_the_subjects_it_no_longer_names() {
    let index = RbacIndex::new();
    let role = json!({"metadata": {"name": "reader"},
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
    index.apply("clusterroles", None, Some(&role));
    let to = |subject: &str| {
        json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "reader"},
            "subjects": [{"kind": "Group", "apiGroup": GROUP, "name": subject}]})
    };
    index.apply("clusterrolebindings", None, Some(&to("developers")));
    let get = request("GET", "/api/v1/namespaces/a/pods/x");
    assert!(index.authorize(&jane(), &get).allowed);
    index.apply(
        "clusterrolebindings",
        Some(&to("developers")),
        Some(&to("ops")),
    );
    assert!(!index.authorize(&jane(), &get).allowed);
    // A role's rules change with it.
    index.apply("clusterrolebindings", None, Some(&to("developers")));
    let narrower = json!({"metadata": {"name": "reader"},
        "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]});
    index.apply("clusterroles", Some(&role), Some(&narrower));
    assert!(!index.authorize(&jane(), &get).allowed);
}

#[test]
fn service_account_subjects_are_their_users_in_the_bindings_namespace_by_default() {
    let index = RbacIndex::new();
    let role = json!({"metadata": {"namespace": "shop", "name": "pod-reader"},
        "rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]});
    index.apply("roles", None, Some(&role));
    let binding = role_binding(
        "shop",
        "b",
        ("Role", "pod-reader"),
        json!([{"kind": "ServiceAccount", "name": "default"},
               {"kind": "ServiceAccount", "name": "ci", "namespace": "build"}]),
    );
    index.apply("rolebindings", None, Some(&binding));
    let list = request("GET", "/api/v1/namespaces/shop/pods");
    assert!(index.authorize(&account("shop", "default"), &list).allowed);
    assert!(index.authorize(&account("build", "ci"), &list).allowed);
    assert!(!index.authorize(&account("build", "default"), &list).allowed);
    // A ClusterRoleBinding's ServiceAccount subject needs its namespace.
    let cluster_binding = json!({"metadata": {"name": "c"},
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default"}]});
    index.apply("clusterrolebindings", None, Some(&cluster_binding));
    assert!(
        !index
            .authorize(
                &account("other", "default"),
                &request("GET", "/api/v1/namespaces/other/pods")
            )
            .allowed
    );
}

#[test]
fn a_binding_to_a_missing_role_says_so() {
    let index = RbacIndex::new();
    let binding = role_binding(
        "shop",
        "b",
        ("ClusterRole", "gone"),
        json!([{"kind": "User", "apiGroup": GROUP, "name": "jane"}]),
    );
    index.apply("rolebindings", None, Some(&binding));
    let decision = index.authorize(&jane(), &request("GET", "/api/v1/namespaces/shop/pods"));
    assert_eq!(
        decision.reason,
        r#"RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#
    );
    let refusal = crate::auth::authz::authorize(
        &index,
        &jane(),
        &request("GET", "/api/v1/namespaces/shop/pods"),
        &crate::auth::authz::Facts::default(),
    )
    .expect_err("refused");
    assert_eq!(
        refusal.message,
        r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "shop": RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found"#
    );
}

#[test]
fn the_default_roles_grant_what_upstreams_do() {
    let index = default_index();
    let grant = |role: &str, namespace: &str| {
        let binding = role_binding(
            namespace,
            role,
            ("ClusterRole", role),
            json!([{"kind": "User", "apiGroup": GROUP, "name": format!("{role}-user")}]),
        );
        index.apply("rolebindings", None, Some(&binding));
        UserInfo::new(&format!("{role}-user"), &["system:authenticated"])
    };
    let (viewer, editor, admin) = (
        grant("view", "shop"),
        grant("edit", "shop"),
        grant("admin", "shop"),
    );
    let may = |user: &UserInfo, method: &str, uri: &str| {
        index.authorize(user, &request(method, uri)).allowed
    };
    // view reads, but never secrets.
    assert!(may(
        &viewer,
        "GET",
        "/apis/apps/v1/namespaces/shop/statefulsets"
    ));
    assert!(may(
        &viewer,
        "GET",
        "/api/v1/namespaces/shop/pods/web-0/log"
    ));
    assert!(!may(&viewer, "GET", "/api/v1/namespaces/shop/secrets"));
    assert!(!may(&viewer, "GET", "/api/v1/namespaces/shop/secrets/db"));
    assert!(!may(
        &viewer,
        "DELETE",
        "/api/v1/namespaces/shop/pods/web-0"
    ));
    // edit writes workloads and reads secrets, but may not write roles or bindings.
    assert!(may(&editor, "GET", "/api/v1/namespaces/shop/secrets/db"));
    assert!(may(
        &editor,
        "POST",
        "/apis/apps/v1/namespaces/shop/statefulsets"
    ));
    assert!(may(
        &editor,
        "PATCH",
        "/apis/apps/v1/namespaces/shop/statefulsets/web/scale"
    ));
    assert!(may(
        &editor,
        "POST",
        "/api/v1/namespaces/shop/pods/web-0/exec"
    ));
    assert!(!may(
        &editor,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles"
    ));
    assert!(!may(
        &editor,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings"
    ));
    // admin may, in its namespace only.
    assert!(may(
        &admin,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles"
    ));
    assert!(may(
        &admin,
        "DELETE",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings/x"
    ));
    assert!(!may(
        &admin,
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/other/roles"
    ));
    assert!(!may(&admin, "GET", "/api/v1/nodes"));
    // Everyone authenticated reads discovery and reviews itself.
    assert!(may(&viewer, "GET", "/apis/apps/v1"));
    assert!(may(
        &viewer,
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    ));
    assert!(!may(&viewer, "GET", "/metrics"));
}

#[test]
fn rules_for_lists_what_applies_as_a_rules_review_does() {
    let index = default_index();
    let binding = role_binding(
        "shop",
        "b",
        ("ClusterRole", "view"),
        json!([{"kind": "User", "apiGroup": GROUP, "name": "jane"}]),
    );
    index.apply("rolebindings", None, Some(&binding));
    let (resources, non_resources) = index.rules_for(&jane(), "shop");
    assert!(resources.iter().any(|rule| rule.verbs == ["create"]
        && rule.resources.as_deref()
            == Some(
                &[
                    "selfsubjectaccessreviews".to_string(),
                    "selfsubjectrulesreviews".to_string()
                ][..]
            )));
    assert!(resources.iter().any(|rule| {
        rule.resources
            .as_ref()
            .is_some_and(|r| r.contains(&"statefulsets".to_string()))
    }));
    assert!(non_resources.iter().any(|rule| {
        rule.non_resource_urls
            .as_ref()
            .is_some_and(|urls| urls.contains(&"/apis/*".to_string()))
    }));
    let (elsewhere, _) = index.rules_for(&jane(), "other");
    assert!(!elsewhere.iter().any(|rule| {
        rule.resources
            .as_ref()
            .is_some_and(|r| r.contains(&"statefulsets".to_string()))
    }));
}

#[test]
fn a_decision_takes_microseconds() {
    // Not a timed assertion: this reports the cost (run with --nocapture) and checks the
    // decisions; the lookups are by key, so the cost does not grow with the bindings.
    let index = default_index();
    for n in 0..2000 {
        let binding = role_binding(
            &format!("ns{n}"),
            "b",
            ("ClusterRole", "edit"),
            json!([{"kind": "User", "apiGroup": GROUP, "name": format!("user{n}")}]),
        );
        index.apply("rolebindings", None, Some(&binding));
    }
    let user = UserInfo::new("user7", &["system:authenticated"]);
    let info = request("GET", "/api/v1/namespaces/ns7/pods/web-0");
    let started = std::time::Instant::now();
    let rounds = 10_000;
    for _ in 0..rounds {
        assert!(index.authorize(&user, &info).allowed);
    }
    eprintln!("RBAC decision: {:?} each", started.elapsed() / rounds);
}
