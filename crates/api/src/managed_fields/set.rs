//! Field sets: which fields of an object a manager owns, as structured-merge-diff's `Set`, and
//! their `FieldsV1` JSON form (`f:<name>`, `k:<key object>`, `v:<value>`, `i:<index>`, `.`).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// One step from a node to a child. The order (fields, then keys, values and indices) is
/// upstream's, so sets render in the order upstream renders them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of a struct or an entry of a map.
    Field(String),
    /// An item of a list keyed by its merge keys: the canonical JSON object of the key fields,
    /// in name order (`{"containerPort":80,"protocol":"TCP"}`).
    Key(String),
    /// An item of a set-list (a list of scalars): its canonical JSON.
    Value(String),
    /// An item of a list without keys, by position.
    Index(usize),
}

impl PathElement {
    /// The item of a keyed list with these key fields (in any order).
    pub fn key(fields: &[(&str, Value)]) -> Self {
        let mut sorted: Vec<&(&str, Value)> = fields.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut map = Map::new();
        for (name, value) in sorted {
            map.insert((*name).to_string(), value.clone());
        }
        Self::Key(canonical(&Value::Object(map)))
    }

    /// The item of a set-list with this value.
    pub fn value(value: &Value) -> Self {
        Self::Value(canonical(value))
    }

    /// The `FieldsV1` key of this element.
    fn fields_v1_key(&self) -> String {
        match self {
            Self::Field(name) => format!("f:{name}"),
            Self::Key(key) => format!("k:{key}"),
            Self::Value(value) => format!("v:{value}"),
            Self::Index(index) => format!("i:{index}"),
        }
    }

    fn parse(key: &str) -> Result<Self, FieldsV1Error> {
        let invalid = || FieldsV1Error(format!("invalid FieldsV1 key {key:?}"));
        let (prefix, rest) = key.split_once(':').ok_or_else(invalid)?;
        match prefix {
            "f" => Ok(Self::Field(rest.to_string())),
            "k" => match serde_json::from_str::<Value>(rest) {
                Ok(value @ Value::Object(_)) => Ok(Self::Key(canonical(&value))),
                _ => Err(invalid()),
            },
            "v" => serde_json::from_str::<Value>(rest)
                .map(|value| Self::value(&value))
                .map_err(|_| invalid()),
            "i" => rest.parse().map(Self::Index).map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }
}

/// Upstream's `Path.String()` form of one element: `.name`, `[name="nginx"]`, `[=value]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => write!(f, ".{name}"),
            Self::Key(key) => {
                let fields = match serde_json::from_str::<Value>(key) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{name}={}", canonical(value)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            Self::Value(value) => write!(f, "[={value}]"),
            Self::Index(index) => write!(f, "[{index}]"),
        }
    }
}

/// A path from the object's root, printed as upstream prints it (`.spec.replicas`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<PathElement>);

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for element in &self.0 {
            write!(f, "{element}")?;
        }
        Ok(())
    }
}

/// Compact JSON with object keys in name order, so equal values have one spelling.
pub fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let ordered: BTreeMap<&String, Value> =
                    map.iter().map(|(k, v)| (k, sorted(v))).collect();
                let mut out = Map::new();
                for (k, v) in ordered {
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}

/// A `FieldsV1` document that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FieldsV1Error(pub String);

/// A set of paths, as a tree: a node is a member when `itself` is set (`.` in `FieldsV1`, or
/// a leaf `{}`), and has the children that hold members below it. Empty children are never
/// kept, so equal sets are equal values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    itself: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        !self.itself && self.children.is_empty()
    }

    /// Adds the path (the empty path is the root, which is never a member).
    pub fn insert(&mut self, path: &[PathElement]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let child = self.children.entry(first.clone()).or_default();
        if rest.is_empty() {
            child.itself = true;
        } else {
            child.insert(rest);
        }
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path.split_first() {
            None => false,
            Some((first, rest)) => self.children.get(first).is_some_and(|child| {
                if rest.is_empty() {
                    child.itself
                } else {
                    child.contains(rest)
                }
            }),
        }
    }

    /// The subtree at `path` (members at or below it), if any.
    pub fn at(&self, path: &[PathElement]) -> Option<&FieldSet> {
        match path.split_first() {
            None => Some(self),
            Some((first, rest)) => self.children.get(first)?.at(rest),
        }
    }

    /// Whether any member lies at or below `path`.
    pub fn covers(&self, path: &[PathElement]) -> bool {
        self.at(path).is_some_and(|subtree| !subtree.is_empty())
    }

    /// Whether the node at `path` has members below it.
    pub fn has_children(&self, path: &[PathElement]) -> bool {
        self.at(path).is_some_and(|node| !node.children.is_empty())
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.itself |= other.itself;
        for (element, child) in &other.children {
            let merged = match out.children.get(element) {
                Some(existing) => existing.union(child),
                None => child.clone(),
            };
            out.children.insert(element.clone(), merged);
        }
        out
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            itself: self.itself && !other.itself,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            let rest = match other.children.get(element) {
                Some(theirs) => child.difference(theirs),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(element.clone(), rest);
            }
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            itself: self.itself && other.itself,
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            if let Some(theirs) = other.children.get(element) {
                let common = child.intersection(theirs);
                if !common.is_empty() {
                    out.children.insert(element.clone(), common);
                }
            }
        }
        out
    }

    /// Every member path, in upstream's order (a node before what lies below it).
    pub fn paths(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<FieldPath>) {
        if self.itself && !prefix.is_empty() {
            out.push(FieldPath(prefix.clone()));
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON of the set, as upstream renders it.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.itself {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (element, child) in &self.children {
            let rendered = if child.children.is_empty() {
                Value::Object(Map::new())
            } else {
                child.to_fields_v1()
            };
            map.insert(element.fields_v1_key(), rendered);
        }
        Value::Object(map)
    }

    /// Parses a `FieldsV1` document.
    pub fn from_fields_v1(value: &Value) -> Result<FieldSet, FieldsV1Error> {
        let mut set = Self::parse_node(value, 0)?;
        set.itself = false;
        Ok(set)
    }

    fn parse_node(value: &Value, depth: usize) -> Result<FieldSet, FieldsV1Error> {
        if depth > crate::depth::MAX_DEPTH {
            return Err(FieldsV1Error("FieldsV1 nests too deep".into()));
        }
        let Value::Object(map) = value else {
            return Err(FieldsV1Error(format!(
                "FieldsV1 nodes must be objects, got {value}"
            )));
        };
        let mut node = FieldSet::new();
        for (key, child) in map {
            if key == "." {
                node.itself = true;
                continue;
            }
            let element = PathElement::parse(key)?;
            let mut parsed = Self::parse_node(child, depth + 1)?;
            // A leaf (`{}`) is a member; a node with children is one only with `.`.
            if parsed.children.is_empty() {
                parsed.itself = true;
            }
            node.children.insert(element, parsed);
        }
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    #[test]
    fn fields_v1_round_trips_upstream_documents() {
        let upstream = json!({"f:metadata":{"f:labels":{".":{},"f:app":{}}},
            "f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},
            "f:ports":{".":{},"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:protocol":{}}}}}}}},
            "f:metadata2":{"f:finalizers":{".":{},"v:\"a/b\"":{}}}});
        let set = FieldSet::from_fields_v1(&upstream).expect("parses");
        assert_eq!(set.to_fields_v1(), upstream);
        assert!(set.contains(&[field("metadata"), field("labels")]));
        assert!(set.contains(&[field("metadata"), field("labels"), field("app")]));
        assert!(!set.contains(&[field("metadata")]));
    }

    #[test]
    fn keys_are_canonical_whatever_order_they_come_in() {
        let a = PathElement::parse("k:{\"protocol\":\"TCP\",\"containerPort\":80}").expect("key");
        let b = PathElement::key(&[("containerPort", json!(80)), ("protocol", json!("TCP"))]);
        assert_eq!(a, b);
        assert_eq!(b.to_string(), "[containerPort=80,protocol=\"TCP\"]");
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&[field("spec"), field("replicas")]);
        a.insert(&[field("spec"), field("paused")]);
        let mut b = FieldSet::new();
        b.insert(&[field("spec"), field("replicas")]);
        b.insert(&[field("metadata"), field("labels"), field("x")]);
        let common = a.intersection(&b);
        assert_eq!(
            common.paths(),
            vec![FieldPath(vec![field("spec"), field("replicas")])]
        );
        assert_eq!(
            a.difference(&b).to_fields_v1(),
            json!({"f:spec":{"f:paused":{}}})
        );
        assert_eq!(
            a.union(&b).to_fields_v1(),
            json!({"f:metadata":{"f:labels":{"f:x":{}}},"f:spec":{"f:paused":{},"f:replicas":{}}})
        );
        assert!(a.difference(&a).is_empty());
        assert_eq!(common.paths()[0].to_string(), ".spec.replicas");
    }

    #[test]
    fn malformed_documents_are_errors() {
        assert!(FieldSet::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:[1]": {}})).is_err());
        assert!(FieldSet::from_fields_v1(&json!([])).is_err());
    }
}
