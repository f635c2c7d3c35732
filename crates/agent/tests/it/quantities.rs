//! Resource quantities as the node reads them: any text parses to a quantity or to nothing,
//! never a panic, and the forms the node prints parse back to what they say.

use petset_agent::quantity::{Quantity, format_bytes};
use proptest::prelude::*;

/// Quantity-shaped text: signs, digits, points, every suffix, and exponents of any size.
fn quantity_text() -> impl Strategy<Value = String> {
    let suffix = prop::sample::select(vec![
        "", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "e",
        "E", "e-", "e+", "x", "\u{e9}",
    ]);
    prop_oneof![
        any::<String>(),
        (
            "[+-]?[0-9]{0,45}(\\.[0-9]{0,45})?",
            suffix,
            proptest::option::of(prop_oneof![
                any::<i64>(),
                any::<i32>().prop_map(i64::from),
                (i64::from(i32::MAX) - 20)..=i64::from(i32::MAX),
                i64::from(i32::MIN)..(i64::from(i32::MIN) + 20)
            ]),
        )
            .prop_map(|(number, suffix, exponent)| match exponent {
                Some(e) if suffix.starts_with(['e', 'E']) =>
                    format!("{number}{}{}", &suffix[..1], e),
                _ => format!("{number}{suffix}"),
            }),
    ]
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn no_text_panics_the_parser(text in quantity_text()) {
        if let Some(quantity) = Quantity::parse(&text) {
            quantity.value();
            quantity.milli_value();
            quantity.is_zero();
            let _ = quantity.ceil_div(Quantity::from_units(3));
            let _ = Quantity::from_units(1).ceil_div(quantity);
        }
    }

    #[test]
    fn a_printed_byte_count_parses_back_to_itself(bytes in 0u64..=i64::MAX as u64) {
        let printed = format_bytes(bytes);
        let parsed = Quantity::parse(&printed);
        prop_assert_eq!(parsed.map(Quantity::value), Some(bytes as i64), "{}", printed);
    }

    #[test]
    fn whole_units_and_thousandths_parse_exactly(units in any::<i64>()) {
        prop_assert_eq!(Quantity::parse(&units.to_string()), Some(Quantity::from_units(units)));
        prop_assert_eq!(Quantity::parse(&format!("{units}m")).map(Quantity::milli_value), Some(units));
        prop_assert_eq!(Quantity::parse(&format!("{units}000m")).map(Quantity::value), Some(units));
    }

    #[test]
    fn binary_and_decimal_suffixes_scale_as_upstream(units in 0i64..(1 << 20)) {
        prop_assert_eq!(Quantity::parse(&format!("{units}Ki")).map(Quantity::value), Some(units << 10));
        prop_assert_eq!(Quantity::parse(&format!("{units}Mi")).map(Quantity::value), Some(units << 20));
        prop_assert_eq!(Quantity::parse(&format!("{units}k")).map(Quantity::value), Some(units * 1000));
        prop_assert_eq!(Quantity::parse(&format!("{units}e3")).map(Quantity::value), Some(units * 1000));
    }
}

#[test]
fn quantities_at_the_edges_of_the_arithmetic_are_refused_or_parsed() {
    // Exponents past i32, mantissas at i128's end, rounding of the largest finer-than-nano
    // values: each once panicked a debug build or wrapped a release one.
    for text in [
        "0E2147483639",
        "1e-2147483648",
        "170141183460469231731687303715884105727e-10",
        "170141183460469231731687303715884105727e-40",
        "170141183460469231731687303715884105727n",
        "-170141183460469231731687303715884105727e-1",
        "9223372036854775807Ei",
    ] {
        if let Some(quantity) = Quantity::parse(text) {
            quantity.value();
            quantity.milli_value();
        }
    }
}
