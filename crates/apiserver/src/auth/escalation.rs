//! Escalation prevention (upstream's `pkg/registry/rbac/escalation_check.go`, the
//! policy-based Role, ClusterRole and binding storages and `validation/policy_comparator.go`):
//! no one grants through RBAC what they do not hold.
//!
//! - A Role or ClusterRole may be written only by someone who holds every rule it lists (in
//!   the role's namespace), or who may `escalate` it; setting or changing a ClusterRole's
//!   `aggregationRule` needs every permission (`*` on everything).
//! - A binding may be written only by someone who may `bind` the role it names (in the
//!   binding's namespace), or who holds every rule of that role.
//! - `system:masters` (and in-process callers, who have no requester) are never checked; a
//!   change of only the fields the garbage collector writes (owner references, finalizers)
//!   is not checked either.
//!
//! Checked in the registry where the final object is known (after defaults, before
//! validation, as upstream's storages do), for creates, updates and every patch type alike;
//! the requester reaches it through [`super::requester`].

use std::collections::{BTreeMap, BTreeSet, HashSet};

use petset_api::ApiError;
use petset_api::resources::ResourceType;
use serde_json::Value;

use super::authn::MASTERS_GROUP;
use super::rbac::{GROUP, RbacIndex, RoleRef, Rule, url_prefix_covers};
use super::{RequestInfo, UserInfo};

/// Upstream's `BreakdownRule`: one verb, group, resource and name (or URL and verb) each.
fn breakdown(rule: &Rule) -> Vec<Rule> {
    let mut parts = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                let one = |names: Vec<String>| Rule {
                    verbs: vec![verb.clone()],
                    api_groups: vec![group.clone()],
                    resources: vec![resource.clone()],
                    resource_names: names,
                    non_resource_urls: Vec::new(),
                };
                if rule.resource_names.is_empty() {
                    parts.push(one(Vec::new()));
                } else {
                    for name in &rule.resource_names {
                        parts.push(one(vec![name.clone()]));
                    }
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            parts.push(Rule {
                verbs: vec![verb.clone()],
                non_resource_urls: vec![url.clone()],
                ..Rule::default()
            });
        }
    }
    parts
}

fn has(set: &[String], wanted: &str) -> bool {
    set.iter().any(|s| s == wanted)
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    let owned: HashSet<&str> = set.iter().map(String::as_str).collect();
    wanted.iter().all(|w| owned.contains(w.as_str()))
}

fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, "*") || has_all(owner, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        has(owner, path)
            || path
                .split_once('/')
                .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
    })
}

fn urls_cover(owner: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|path| {
        owner
            .iter()
            .any(|url| url == path || url_prefix_covers(url, path))
    })
}

/// Upstream's `ruleCovers`: whether `owner` grants all of the broken-down `part`.
fn rule_covers(owner: &Rule, part: &Rule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &part.verbs);
    let groups = has(&owner.api_groups, "*") || has_all(&owner.api_groups, &part.api_groups);
    let names = if part.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &part.resource_names)
    };
    verbs
        && groups
        && resources_cover(&owner.resources, &part.resources)
        && names
        && urls_cover(&owner.non_resource_urls, &part.non_resource_urls)
}

/// Upstream's `Covers`: the broken-down parts of `wanted` no rule of `owner` covers.
pub fn uncovered(owner: &[Rule], wanted: &[Rule]) -> Vec<Rule> {
    wanted
        .iter()
        .flat_map(breakdown)
        .filter(|part| !owner.iter().any(|rule| rule_covers(rule, part)))
        .collect()
}

/// Upstream's `CompactRules`: parts of one group and resource (and at most one name) become
/// one rule with their verbs.
fn compact(rules: Vec<Rule>) -> Vec<Rule> {
    let mut compacted = Vec::new();
    let mut simple: BTreeMap<(String, String, Option<String>), Rule> = BTreeMap::new();
    for rule in rules {
        let is_simple = rule.resource_names.len() <= 1
            && rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        if !is_simple {
            compacted.push(rule);
            continue;
        }
        let key = (
            rule.api_groups[0].clone(),
            rule.resources[0].clone(),
            rule.resource_names.first().cloned(),
        );
        match simple.get_mut(&key) {
            Some(existing) => {
                for verb in rule.verbs {
                    if !existing.verbs.contains(&verb) {
                        existing.verbs.push(verb);
                    }
                }
            }
            None => {
                simple.insert(key, rule);
            }
        }
    }
    compacted.extend(simple.into_values());
    compacted
}

/// Go's `%q` of a string slice: `["a" "b"]`.
fn go_quoted(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[{}]", quoted.join(" "))
}

/// Upstream's `CompactString`: `{APIGroups:["…"], Resources:["…"], Verbs:["…"]}`.
pub fn compact_string(rule: &Rule) -> String {
    let mut parts = Vec::new();
    for (label, values) in [
        ("APIGroups", &rule.api_groups),
        ("Resources", &rule.resources),
        ("NonResourceURLs", &rule.non_resource_urls),
        ("ResourceNames", &rule.resource_names),
        ("Verbs", &rule.verbs),
    ] {
        if !values.is_empty() {
            parts.push(format!("{label}:{}", go_quoted(values)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

/// Upstream's `ConfirmNoEscalation`: `user` holds every rule of `rules` in `namespace`, or the
/// text that says which it does not.
pub fn confirm_no_escalation(
    index: &RbacIndex,
    user: &UserInfo,
    namespace: &str,
    rules: &[Rule],
) -> Result<(), String> {
    let (owned, errors) = index.policy_rules_for(user, namespace);
    let missing = uncovered(&owned, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let descriptions: BTreeSet<String> = compact(missing).iter().map(compact_string).collect();
    let descriptions: Vec<String> = descriptions.into_iter().collect();
    let mut message = format!(
        "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_quoted(&user.groups),
        descriptions.join("\n")
    );
    if !errors.is_empty() {
        // Go's `%v` of a slice of errors.
        message.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(message)
}

/// Whether `user` may `verb` (`escalate`, `bind`) the role `name` of `plural` in `namespace`.
fn may(
    index: &RbacIndex,
    user: &UserInfo,
    verb: &str,
    plural: &str,
    name: &str,
    namespace: &str,
) -> bool {
    let info = RequestInfo {
        verb: verb.to_string(),
        is_resource_request: true,
        api_group: GROUP.to_string(),
        api_version: "*".to_string(),
        resource: plural.to_string(),
        name: name.to_string(),
        namespace: namespace.to_string(),
        ..RequestInfo::default()
    };
    index.authorize(user, &info).allowed
}

/// Upstream's `IsOnlyMutatingGCFields`: `new` differs from `old` at most in owner references,
/// finalizers and what the system writes.
fn only_gc_fields_change(old: &Value, new: &Value) -> bool {
    let strip = |object: &Value| {
        let mut copy = object.clone();
        if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "ownerReferences",
                "finalizers",
                "selfLink",
                "managedFields",
                "resourceVersion",
                "generation",
            ] {
                meta.remove(field);
            }
        }
        copy
    };
    strip(old) == strip(new)
}

/// The whole of everything, which an aggregation rule can gather.
fn full_authority() -> [Rule; 2] {
    let all = || vec!["*".to_string()];
    [
        Rule {
            verbs: all(),
            api_groups: all(),
            resources: all(),
            ..Rule::default()
        },
        Rule {
            verbs: all(),
            non_resource_urls: all(),
            ..Rule::default()
        },
    ]
}

/// Refuses (403, upstream's texts) a write of an RBAC object by `user` that would grant more
/// than `user` holds; `old` is the stored object for an update. Any other kind passes.
pub fn check_write(
    index: &RbacIndex,
    user: &UserInfo,
    resource: &ResourceType,
    namespace: &str,
    old: Option<&Value>,
    new: &Value,
) -> Result<(), ApiError> {
    if resource.group != GROUP || user.in_group(MASTERS_GROUP) {
        return Ok(());
    }
    if old.is_some_and(|old| only_gc_fields_change(old, new)) {
        return Ok(());
    }
    let name = new
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let refuse = |why: &str| ApiError::forbidden_on(resource, name, why);
    match resource.plural {
        "roles" | "clusterroles" => {
            if may(index, user, "escalate", resource.plural, name, namespace) {
                return Ok(());
            }
            confirm_no_escalation(index, user, namespace, &Rule::all_of(new))
                .map_err(|why| refuse(&why))?;
            let aggregation = |role: &Value| {
                role.get("aggregationRule")
                    .filter(|r| !r.is_null())
                    .cloned()
            };
            let sets_aggregation = aggregation(new)
                .is_some_and(|rule| old.and_then(aggregation).as_ref() != Some(&rule));
            if resource.plural == "clusterroles"
                && sets_aggregation
                && confirm_no_escalation(index, user, namespace, &full_authority()).is_err()
            {
                return Err(refuse(
                    "must have cluster-admin privileges to use the aggregationRule",
                ));
            }
            Ok(())
        }
        "rolebindings" | "clusterrolebindings" => {
            let role_ref = RoleRef::from_binding(new);
            let role_plural = match role_ref.kind.as_str() {
                "ClusterRole" => "clusterroles",
                "Role" => "roles",
                _ => "",
            };
            if !role_plural.is_empty()
                && may(index, user, "bind", role_plural, &role_ref.name, namespace)
            {
                return Ok(());
            }
            let rules = index
                .role_reference_rules(&role_ref, namespace)
                .map_err(|why| refuse(&why))?;
            confirm_no_escalation(index, user, namespace, &rules).map_err(|why| refuse(&why))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "escalation_tests.rs"]
mod tests;
