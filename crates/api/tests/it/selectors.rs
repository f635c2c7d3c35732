//! Label and field selectors: parsing never panics, rendering parses back to the same
//! selector, and matching agrees with a model written from the definitions.

use std::collections::BTreeMap;

use petset_api::selector::{FieldSelector, LabelSelector, Requirement};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Few keys and values, so generated selectors and label sets meet.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["app", "tier", "example.com/role", "in", "notin"]).prop_map(str::to_string),
        1 => "([a-z0-9]{1,8}\\.)?[a-z0-9]{1,8}/([A-Za-z0-9][-A-Za-z0-9_.]{0,10})?[A-Za-z0-9]",
        1 => "([A-Za-z0-9][-A-Za-z0-9_.]{0,10})?[A-Za-z0-9]",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["web", "db", "a.b", "x_y", "1"]).prop_map(str::to_string),
        1 => "([A-Za-z0-9][-A-Za-z0-9_.]{0,10})?[A-Za-z0-9]",
    ]
}

fn requirement() -> impl Strategy<Value = Requirement> {
    // `in ()` lists drop empty entries, so an empty value is only generated where it renders
    // unambiguously (after `=` and `!=`).
    let values = || prop::collection::vec(value(), 1..4);
    prop_oneof![
        (key(), prop_oneof![value(), Just(String::new())])
            .prop_map(|(k, v)| Requirement::Equals(k, v)),
        (key(), prop_oneof![value(), Just(String::new())])
            .prop_map(|(k, v)| Requirement::NotEquals(k, v)),
        (key(), values()).prop_map(|(k, vs)| Requirement::In(k, vs)),
        (key(), values()).prop_map(|(k, vs)| Requirement::NotIn(k, vs)),
        key().prop_map(Requirement::Exists),
        key().prop_map(Requirement::DoesNotExist),
    ]
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    prop::collection::vec(requirement(), 0..5)
        .prop_map(|requirements| LabelSelector { requirements })
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(key(), value(), 0..5)
}

/// Selector-shaped text: the operators, parentheses and commas in any order.
fn selector_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::collection::vec(
            prop::sample::select(vec![
                "a", "b", "=", "==", "!=", "!", "(", ")", ",", " ", "in", "notin", "\u{e9}",
                "x.y/z",
            ]),
            0..16,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

/// Whether one requirement holds, straight from the Kubernetes definitions: `!=` and `notin`
/// also match a missing label.
fn model_holds(requirement: &Requirement, labels: &BTreeMap<String, String>) -> bool {
    match requirement {
        Requirement::Equals(k, v) => labels.get(k) == Some(v),
        Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
        Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
        Requirement::NotIn(k, vs) => !labels.get(k).is_some_and(|v| vs.contains(v)),
        Requirement::Exists(k) => labels.contains_key(k),
        Requirement::DoesNotExist(k) => !labels.contains_key(k),
    }
}

fn as_json(labels: &BTreeMap<String, String>) -> Map<String, Value> {
    labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect()
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn no_text_panics_the_parsers(text in selector_text()) {
        let _ = LabelSelector::parse(&text);
        let _ = FieldSelector::parse(&text);
    }

    #[test]
    fn no_structured_selector_panics(selector in crate::json::value()) {
        if let Ok(parsed) = LabelSelector::from_structured(&selector) {
            let _ = LabelSelector::parse(&parsed.to_string());
        }
    }

    #[test]
    fn a_structured_selector_matches_as_its_requirements_do(
        match_labels in prop::collection::btree_map(key(), value(), 0..3),
        expressions in prop::collection::vec(requirement(), 0..4),
        labels in labels(),
    ) {
        let mut requirements: Vec<Requirement> = match_labels
            .iter()
            .map(|(k, v)| Requirement::Equals(k.clone(), v.clone()))
            .collect();
        let expressions: Vec<Value> = expressions
            .into_iter()
            .filter_map(|requirement| {
                let expression = match &requirement {
                    Requirement::In(k, vs) => json!({"key": k, "operator": "In", "values": vs}),
                    Requirement::NotIn(k, vs) => json!({"key": k, "operator": "NotIn", "values": vs}),
                    Requirement::Exists(k) => json!({"key": k, "operator": "Exists"}),
                    Requirement::DoesNotExist(k) => json!({"key": k, "operator": "DoesNotExist"}),
                    Requirement::Equals(..) | Requirement::NotEquals(..) => return None,
                };
                requirements.push(requirement);
                Some(expression)
            })
            .collect();
        let structured = json!({"matchLabels": match_labels, "matchExpressions": expressions});
        let parsed = LabelSelector::from_structured(&structured).expect("a well-formed selector");
        let expected = requirements.iter().all(|r| model_holds(r, &labels));
        prop_assert_eq!(parsed.matches(Some(&as_json(&labels))), expected);
    }

    #[test]
    fn a_rendered_label_selector_parses_back_to_itself(selector in selector()) {
        let text = selector.to_string();
        prop_assert_eq!(LabelSelector::parse(&text), Ok(selector), "{}", text);
    }

    #[test]
    fn label_matching_agrees_with_the_model(selector in selector(), labels in labels()) {
        let expected = selector.requirements.iter().all(|r| model_holds(r, &labels));
        let parsed = LabelSelector::parse(&selector.to_string()).expect("a rendered selector parses");
        prop_assert_eq!(parsed.matches(Some(&as_json(&labels))), expected);
        let object = json!({"metadata": {"labels": as_json(&labels)}});
        prop_assert_eq!(parsed.matches_object(&object), expected);
    }

    #[test]
    fn an_object_without_labels_matches_as_an_empty_set(selector in selector()) {
        let expected = selector.requirements.iter().all(|r| model_holds(r, &BTreeMap::new()));
        prop_assert_eq!(selector.matches(None), expected);
        prop_assert_eq!(selector.matches_object(&json!({})), expected);
    }

    #[test]
    fn a_rendered_field_selector_parses_back_and_matches_as_defined(
        terms in prop::collection::vec(
            ("[a-z]{1,6}(\\.[a-z]{1,6}){0,2}", any::<bool>(), prop_oneof![value(), Just(String::new())]),
            0..4,
        ),
        object in crate::json::object(),
    ) {
        let text = terms
            .iter()
            .map(|(path, equal, value)| format!("{path}{}{value}", if *equal { "=" } else { "!=" }))
            .collect::<Vec<_>>()
            .join(",");
        let parsed = FieldSelector::parse(&text).expect("a rendered field selector parses");
        prop_assert_eq!(&parsed.terms, &terms);
        let expected = terms.iter().all(|(path, equal, value)| {
            let actual = path
                .split('.')
                .try_fold(&object, |current, part| current.get(part))
                .map_or(String::new(), |found| match found {
                    Value::String(text) => text.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                });
            (actual == *value) == *equal
        });
        prop_assert_eq!(parsed.matches(&object), expected);
    }
}
