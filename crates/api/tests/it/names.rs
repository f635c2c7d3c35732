//! Names, label keys and label values (apimachinery's `util/validation` rules).

use petset_api::names;
use proptest::prelude::*;

const LABEL_VALUE: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?";
const DNS1123_LABEL: &str = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?";
const DNS1123_SUBDOMAIN: &str =
    "[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?){0,5}";
const QUALIFIED_NAME_PART: &str = "([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]";

/// Text that is mostly near the rules' edges: their alphabets, multi-byte characters, and
/// lengths around 63 and 253 bytes.
fn near_names() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9._/\u{e9}\u{1F600}-]{0,70}",
        "[a-z0-9.-]{240,260}",
        (0usize..70, "\\PC{1,3}").prop_map(|(n, tail)| format!("{}{tail}", "a".repeat(n))),
    ]
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn no_text_panics_any_validator(text in near_names()) {
        names::dns1123_label(&text);
        names::dns1123_subdomain(&text);
        names::qualified_name(&text);
        names::label_value(&text);
        names::config_map_key(&text);
    }

    #[test]
    fn what_the_validators_accept_has_their_alphabet_and_length(text in near_names()) {
        if names::dns1123_label(&text).is_empty() {
            prop_assert!(text.len() <= 63);
            prop_assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        }
        if names::dns1123_subdomain(&text).is_empty() {
            prop_assert!(!text.is_empty() && text.len() <= 253);
            prop_assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
        }
        if names::label_value(&text).is_empty() {
            prop_assert!(text.len() <= 63);
            prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
        }
        if names::qualified_name(&text).is_empty() {
            let name = text.rsplit('/').next().unwrap_or_default();
            prop_assert!(!name.is_empty() && name.len() <= 63);
        }
    }

    #[test]
    fn a_generated_dns1123_label_is_accepted(label in DNS1123_LABEL) {
        prop_assert_eq!(names::dns1123_label(&label), Vec::<String>::new());
        prop_assert_eq!(names::dns1123_subdomain(&label), Vec::<String>::new());
    }

    #[test]
    fn a_generated_dns1123_subdomain_is_accepted(subdomain in DNS1123_SUBDOMAIN) {
        prop_assert_eq!(names::dns1123_subdomain(&subdomain), Vec::<String>::new());
    }

    #[test]
    fn a_generated_label_value_is_accepted(value in LABEL_VALUE) {
        prop_assert_eq!(names::label_value(&value), Vec::<String>::new());
    }

    #[test]
    fn a_generated_label_key_is_accepted(
        prefix in proptest::option::of(DNS1123_SUBDOMAIN),
        name in QUALIFIED_NAME_PART,
    ) {
        let key = match prefix {
            Some(prefix) => format!("{prefix}/{name}"),
            None => name,
        };
        prop_assert_eq!(names::qualified_name(&key), Vec::<String>::new());
    }

    #[test]
    fn a_label_value_one_character_too_long_is_refused(value in "[A-Za-z0-9]{63}", extra in "\\PC") {
        let too_long = format!("{value}{extra}");
        prop_assert!(names::label_value(&too_long).iter().any(|p| p == "must be no more than 63 characters"));
    }

    #[test]
    fn an_uppercase_letter_makes_a_dns1123_label_invalid(
        label in DNS1123_LABEL,
        at in any::<prop::sample::Index>(),
        upper in "[A-Z]",
    ) {
        let mut bad = label.clone();
        bad.insert_str(at.index(label.len() + 1), &upper);
        prop_assert!(!names::dns1123_label(&bad).is_empty());
    }
}
