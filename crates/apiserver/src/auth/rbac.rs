//! The RBAC authorizer (upstream's `plugin/pkg/auth/authorizer/rbac`): an in-memory index of
//! the Roles, ClusterRoles, RoleBindings and ClusterRoleBindings, kept current by the watch
//! cache's feed (`watch_cache.rs` lists them at the revision its store watch starts from, then
//! applies every event before publishing it), so a decision never reads the store.
//!
//! Bindings are indexed by subject (a user name, or a group) and by namespace, and rules are
//! parsed once per event, so a request costs a few map lookups and the rule matches
//! themselves. A ServiceAccount subject is indexed as the user it authenticates as,
//! `system:serviceaccount:<namespace>:<name>` (a RoleBinding's subject without a namespace
//! being in the binding's).
//!
//! Semantics are upstream's: ClusterRoleBindings apply everywhere, then the RoleBindings of the
//! request's namespace (to a Role there, or a ClusterRole within that namespace); a rule allows
//! when its verb, group, resource (`*`, exact, `*/<subresource>`), name and non-resource URL
//! (exact, `*`, or a prefix ending in `*`) match. A denial has no reason, unless a binding
//! names a role that does not exist: then `RBAC: <the role> not found`, as upstream.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use k8s_openapi::api::authorization::v1::{NonResourceRule, ResourceRule};
use petset_store::Revision;
use serde_json::Value;
use tokio::sync::watch;

use super::{RequestInfo, UserInfo};

pub const GROUP: &str = "rbac.authorization.k8s.io";
const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// The four kinds the index follows, by plural.
pub const PLURALS: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

/// An authorizer's answer: allowed or not, and why not (upstream's reason; empty for RBAC
/// unless a binding names a role that does not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// One policy rule, parsed once from its object (`rbacv1.PolicyRule`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(object: &Value, field: &str) -> Vec<String> {
    object
        .get(field)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    pub fn from_json(rule: &Value) -> Self {
        Self {
            verbs: strings(rule, "verbs"),
            api_groups: strings(rule, "apiGroups"),
            resources: strings(rule, "resources"),
            resource_names: strings(rule, "resourceNames"),
            non_resource_urls: strings(rule, "nonResourceURLs"),
        }
    }

    /// The rules of a Role or ClusterRole object.
    pub fn all_of(role: &Value) -> Vec<Rule> {
        role.get("rules")
            .and_then(Value::as_array)
            .map(|rules| rules.iter().map(Rule::from_json).collect())
            .unwrap_or_default()
    }

    /// Upstream's `RuleAllows`.
    pub fn allows(&self, info: &RequestInfo) -> bool {
        if !verb_matches(self, &info.verb) {
            return false;
        }
        if !info.is_resource_request {
            return non_resource_url_matches(self, &info.path);
        }
        let combined = info.resource_path();
        api_group_matches(self, &info.api_group)
            && resource_matches(self, &combined, &info.subresource)
            && resource_name_matches(self, &info.name)
    }
}

fn verb_matches(rule: &Rule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == "*" || v == verb)
}

fn api_group_matches(rule: &Rule, group: &str) -> bool {
    rule.api_groups.iter().any(|g| g == "*" || g == group)
}

/// `*`, the exact `<resource>[/<subresource>]`, or `*/<subresource>` for a subresource.
fn resource_matches(rule: &Rule, combined: &str, subresource: &str) -> bool {
    rule.resources.iter().any(|resource| {
        resource == "*"
            || resource == combined
            || (!subresource.is_empty() && resource.strip_prefix("*/") == Some(subresource))
    })
}

fn resource_name_matches(rule: &Rule, name: &str) -> bool {
    rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == name)
}

/// `*`, the exact path, or a prefix when the rule's URL ends in `*`.
fn non_resource_url_matches(rule: &Rule, path: &str) -> bool {
    rule.non_resource_urls
        .iter()
        .any(|url| url == "*" || url == path || url_prefix_covers(url, path))
}

pub(crate) fn url_prefix_covers(url: &str, path: &str) -> bool {
    url.ends_with('*') && path.starts_with(url.trim_end_matches('*'))
}

/// Which role a binding grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    /// `Role` or `ClusterRole` (anything else resolves to nothing).
    pub kind: String,
    pub name: String,
}

impl RoleRef {
    pub fn from_binding(binding: &Value) -> Self {
        let text = |field: &str| {
            binding
                .pointer(&format!("/roleRef/{field}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Self {
            kind: text("kind"),
            name: text("name"),
        }
    }
}

/// How one subject of a binding is looked up: by the user it is, or by a group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SubjectKey {
    User(String),
    Group(String),
}

/// Upstream's `appliesToUser`, as a lookup key. `namespace` is the binding's (empty for a
/// ClusterRoleBinding), where a ServiceAccount subject without one lives.
fn subject_key(subject: &Value, namespace: &str) -> Option<SubjectKey> {
    let text = |field: &str| {
        subject
            .get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let name = text("name");
    match text("kind") {
        "User" => Some(SubjectKey::User(name.to_string())),
        "Group" => Some(SubjectKey::Group(name.to_string())),
        "ServiceAccount" => {
            let account_namespace = match text("namespace") {
                "" => namespace,
                given => given,
            };
            (!account_namespace.is_empty()).then(|| {
                SubjectKey::User(format!(
                    "{SERVICE_ACCOUNT_USER_PREFIX}{account_namespace}:{name}"
                ))
            })
        }
        _ => None,
    }
}

struct Binding {
    role_ref: RoleRef,
    subjects: Vec<SubjectKey>,
}

/// The bindings of one scope (the cluster, or one namespace), by name and by subject.
#[derive(Default)]
struct Bindings {
    by_name: BTreeMap<String, Binding>,
    by_subject: HashMap<SubjectKey, BTreeSet<String>>,
}

impl Bindings {
    fn insert(&mut self, name: &str, binding: Binding) {
        self.remove(name);
        for subject in &binding.subjects {
            self.by_subject
                .entry(subject.clone())
                .or_default()
                .insert(name.to_string());
        }
        self.by_name.insert(name.to_string(), binding);
    }

    fn remove(&mut self, name: &str) {
        let Some(old) = self.by_name.remove(name) else {
            return;
        };
        for subject in &old.subjects {
            if let Some(names) = self.by_subject.get_mut(subject) {
                names.remove(name);
                if names.is_empty() {
                    self.by_subject.remove(subject);
                }
            }
        }
    }

    /// The bindings naming `user` or one of its groups, each once, by name (the order the
    /// rules are visited in).
    fn applying_to<'a>(&'a self, user: &UserInfo) -> Vec<(&'a str, &'a Binding)> {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        let user_key = SubjectKey::User(user.name.clone());
        if let Some(found) = self.by_subject.get(&user_key) {
            names.extend(found.iter().map(String::as_str));
        }
        for group in &user.groups {
            if let Some(found) = self.by_subject.get(&SubjectKey::Group(group.clone())) {
                names.extend(found.iter().map(String::as_str));
            }
        }
        names
            .into_iter()
            .filter_map(|name| Some((name, self.by_name.get(name)?)))
            .collect()
    }
}

#[derive(Default)]
struct Index {
    /// The store revision the index reflects: older events and lists are ignored.
    revision: Revision,
    /// Roles by (namespace, name).
    roles: HashMap<(String, String), Arc<[Rule]>>,
    cluster_roles: HashMap<String, Arc<[Rule]>>,
    cluster_bindings: Bindings,
    bindings_by_namespace: HashMap<String, Bindings>,
}

/// Where one rule came from, for the visitors (upstream's `authorizingVisitor` and rule
/// collection both walk the same rules in the same order).
enum Visit<'a> {
    Rule(&'a Rule),
    /// A binding names a role that does not exist (upstream's lister error text).
    Missing(String),
}

impl Index {
    fn role_rules(&self, role_ref: &RoleRef, namespace: &str) -> Result<&Arc<[Rule]>, String> {
        let found = match role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&role_ref.name),
            "Role" => self
                .roles
                .get(&(namespace.to_string(), role_ref.name.clone())),
            _ => None,
        };
        found.ok_or_else(|| not_found(role_ref))
    }

    /// Walks the rules that apply to `user` in `namespace` until `visitor` says stop.
    fn visit(&self, user: &UserInfo, namespace: &str, visitor: &mut dyn FnMut(Visit<'_>) -> bool) {
        let scopes = std::iter::once(("", &self.cluster_bindings)).chain(
            (!namespace.is_empty())
                .then(|| self.bindings_by_namespace.get(namespace))
                .flatten()
                .map(|bindings| (namespace, bindings)),
        );
        for (scope_namespace, bindings) in scopes {
            for (_, binding) in bindings.applying_to(user) {
                match self.role_rules(&binding.role_ref, scope_namespace) {
                    Ok(rules) => {
                        for rule in rules.iter() {
                            if !visitor(Visit::Rule(rule)) {
                                return;
                            }
                        }
                    }
                    Err(missing) => {
                        if !visitor(Visit::Missing(missing)) {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// The not-found text of upstream's listers (singular resource names).
fn not_found(role_ref: &RoleRef) -> String {
    let resource = match role_ref.kind.as_str() {
        "ClusterRole" => "clusterrole",
        _ => "role",
    };
    format!("{resource}.{GROUP} {:?} not found", role_ref.name)
}

/// Upstream's `utilerrors.NewAggregate(...).Error()`: one message alone, several in brackets,
/// each once.
fn aggregate(errors: &[String]) -> String {
    let mut seen = BTreeSet::new();
    let unique: Vec<&str> = errors
        .iter()
        .filter(|e| seen.insert(e.as_str()))
        .map(String::as_str)
        .collect();
    match unique.as_slice() {
        [] => String::new(),
        [one] => one.to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The RBAC authorizer over its index. Shared by the guard, the registry's escalation check
/// and the review endpoints.
pub struct RbacIndex {
    index: RwLock<Index>,
    loaded: watch::Sender<bool>,
}

impl Default for RbacIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RbacIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbacIndex")
            .field("loaded", &*self.loaded.borrow())
            .finish_non_exhaustive()
    }
}

impl RbacIndex {
    /// An empty index, not yet loaded.
    pub fn new() -> Self {
        Self {
            index: RwLock::new(Index::default()),
            loaded: watch::channel(false).0,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Index> {
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index> {
        self.index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Upstream's `RBACAuthorizer.Authorize`.
    pub fn authorize(&self, user: &UserInfo, info: &RequestInfo) -> Decision {
        let mut allowed = false;
        let mut errors = Vec::new();
        self.read()
            .visit(user, &info.namespace, &mut |visit| match visit {
                Visit::Rule(rule) => {
                    allowed = rule.allows(info);
                    !allowed
                }
                Visit::Missing(error) => {
                    errors.push(error);
                    true
                }
            });
        let reason = if allowed || errors.is_empty() {
            String::new()
        } else {
            format!("RBAC: {}", aggregate(&errors))
        };
        Decision { allowed, reason }
    }

    /// Every rule that applies to `user` in `namespace` (the cluster's alone for `""`), in
    /// visit order, and the errors met on the way (upstream's rule resolver `RulesFor`).
    pub fn policy_rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let (mut rules, mut errors) = (Vec::new(), Vec::new());
        self.read().visit(user, namespace, &mut |visit| {
            match visit {
                Visit::Rule(rule) => rules.push(rule.clone()),
                Visit::Missing(error) => errors.push(error),
            }
            true
        });
        (rules, errors)
    }

    /// The rules `user` has in `namespace`, shaped as SelfSubjectRulesReview's status
    /// (upstream's `RBACAuthorizer.RulesFor`: a rule with resources is a resource rule, one
    /// with URLs a non-resource rule).
    pub fn rules_for(
        &self,
        user: &UserInfo,
        namespace: &str,
    ) -> (Vec<ResourceRule>, Vec<NonResourceRule>) {
        let (rules, _) = self.policy_rules_for(user, namespace);
        let listed = |values: &[String]| (!values.is_empty()).then(|| values.to_vec());
        let mut resource_rules = Vec::new();
        let mut non_resource_rules = Vec::new();
        for rule in rules {
            if !rule.resources.is_empty() {
                resource_rules.push(ResourceRule {
                    verbs: rule.verbs.clone(),
                    api_groups: listed(&rule.api_groups),
                    resources: listed(&rule.resources),
                    resource_names: listed(&rule.resource_names),
                });
            }
            if !rule.non_resource_urls.is_empty() {
                non_resource_rules.push(NonResourceRule {
                    verbs: rule.verbs.clone(),
                    non_resource_urls: listed(&rule.non_resource_urls),
                });
            }
        }
        (resource_rules, non_resource_rules)
    }

    /// The rules a binding's role reference grants in `namespace` (upstream's
    /// `GetRoleReferenceRules`), or the not-found text.
    pub fn role_reference_rules(
        &self,
        role_ref: &RoleRef,
        namespace: &str,
    ) -> Result<Vec<Rule>, String> {
        self.read()
            .role_rules(role_ref, namespace)
            .map(|rules| rules.to_vec())
    }

    /// Applies one change of a followed kind (`plural`): `new` is the object after it (`None`:
    /// deleted), `old` the object before (used only for its name when `new` is `None`).
    pub fn apply(&self, plural: &str, old: Option<&Value>, new: Option<&Value>) {
        let mut index = self.write();
        apply_to(&mut index, plural, old, new);
    }

    /// [`Self::apply`] for the change of store revision `revision`; ignored when the index
    /// already reflects it (a list taken later than the watch it races with).
    pub fn apply_at(
        &self,
        revision: Revision,
        plural: &str,
        old: Option<&Value>,
        new: Option<&Value>,
    ) {
        let mut index = self.write();
        if revision <= index.revision {
            return;
        }
        index.revision = revision;
        apply_to(&mut index, plural, old, new);
    }

    /// Replaces everything with `objects` (plural, object), and marks the index loaded.
    pub fn replace_all<'a>(&self, objects: impl IntoIterator<Item = (&'a str, &'a Value)>) {
        self.replace_at(0, objects);
    }

    /// [`Self::replace_all`] from a list at store revision `revision`; ignored when the index
    /// is already newer.
    pub fn replace_at<'a>(
        &self,
        revision: Revision,
        objects: impl IntoIterator<Item = (&'a str, &'a Value)>,
    ) {
        let mut fresh = Index {
            revision,
            ..Index::default()
        };
        for (plural, object) in objects {
            apply_to(&mut fresh, plural, None, Some(object));
        }
        {
            let mut index = self.write();
            if revision != 0 && revision < index.revision {
                return;
            }
            *index = fresh;
        }
        self.loaded.send_replace(true);
    }

    /// Whether the index has been loaded at least once.
    pub fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }
}

fn metadata_text<'a>(object: &'a Value, field: &str) -> &'a str {
    object
        .get("metadata")
        .and_then(|meta| meta.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn apply_to(index: &mut Index, plural: &str, old: Option<&Value>, new: Option<&Value>) {
    let Some(object) = new.or(old) else {
        return;
    };
    let name = metadata_text(object, "name").to_string();
    let namespace = metadata_text(object, "namespace").to_string();
    match (plural, new) {
        ("clusterroles", Some(role)) => {
            index.cluster_roles.insert(name, Rule::all_of(role).into());
        }
        ("clusterroles", None) => {
            index.cluster_roles.remove(&name);
        }
        ("roles", Some(role)) => {
            index
                .roles
                .insert((namespace, name), Rule::all_of(role).into());
        }
        ("roles", None) => {
            index.roles.remove(&(namespace, name));
        }
        ("clusterrolebindings", Some(binding)) => {
            let parsed = parse_binding(binding, "");
            index.cluster_bindings.insert(&name, parsed);
        }
        ("clusterrolebindings", None) => index.cluster_bindings.remove(&name),
        ("rolebindings", Some(binding)) => {
            let parsed = parse_binding(binding, &namespace);
            index
                .bindings_by_namespace
                .entry(namespace)
                .or_default()
                .insert(&name, parsed);
        }
        ("rolebindings", None) => {
            if let Some(bindings) = index.bindings_by_namespace.get_mut(&namespace) {
                bindings.remove(&name);
                if bindings.by_name.is_empty() {
                    index.bindings_by_namespace.remove(&namespace);
                }
            }
        }
        _ => {}
    }
}

fn parse_binding(binding: &Value, namespace: &str) -> Binding {
    let subjects = binding
        .get("subjects")
        .and_then(Value::as_array)
        .map(|subjects| {
            subjects
                .iter()
                .filter_map(|subject| subject_key(subject, namespace))
                .collect()
        })
        .unwrap_or_default();
    Binding {
        role_ref: RoleRef::from_binding(binding),
        subjects,
    }
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
