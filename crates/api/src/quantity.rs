//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`, `128974848`) as the node and the
//! scheduler need them: exact to the nano unit, rounded up where upstream's `Value()` and
//! `MilliValue()` round up.

/// A quantity in billionths of its unit (nano-cores, nano-bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

const NANO: i128 = 1_000_000_000;

impl Quantity {
    /// Parses a quantity; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let number_end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(number_end);
        let (negative, digits) = match number.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, number.strip_prefix('+').unwrap_or(number)),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        if (whole.is_empty() && fraction.is_empty())
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        // The number as an integer, and the power of ten it is scaled by.
        let mut mantissa: i128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(digit - b'0'))?;
        }
        let mut exponent = -(fraction.len() as i32);
        let mut factor: i128 = 1;
        match suffix {
            "" => {}
            "n" => exponent -= 9,
            "u" => exponent -= 6,
            "m" => exponent -= 3,
            "k" => exponent += 3,
            "M" => exponent += 6,
            "G" => exponent += 9,
            "T" => exponent += 12,
            "P" => exponent += 15,
            "E" => exponent += 18,
            "Ki" => factor = 1 << 10,
            "Mi" => factor = 1 << 20,
            "Gi" => factor = 1 << 30,
            "Ti" => factor = 1 << 40,
            "Pi" => factor = 1 << 50,
            "Ei" => factor = 1 << 60,
            other => {
                let power = other.strip_prefix(['e', 'E'])?;
                exponent = exponent.checked_add(power.parse::<i32>().ok()?)?;
            }
        }
        // To nano units: the exponent moves by 9, then whatever is left of it applies.
        exponent = exponent.checked_add(9)?;
        let mut nanos = mantissa.checked_mul(factor)?;
        if exponent >= 0 {
            nanos = nanos.checked_mul(10i128.checked_pow(exponent as u32)?)?;
        } else {
            // Finer than a nano unit: rounded up, as upstream rounds a quantity's value up.
            let divisor = 10i128.checked_pow(exponent.unsigned_abs())?;
            nanos = nanos / divisor + i128::from(nanos % divisor != 0);
        }
        Some(Self(if negative { -nanos } else { nanos }))
    }

    pub fn from_units(units: i64) -> Self {
        Self(i128::from(units) * NANO)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Whole units, rounded up (upstream's `Value()`).
    pub fn value(self) -> i64 {
        ceil_div(self.0, NANO)
    }

    /// Thousandths of the unit, rounded up (upstream's `MilliValue()`).
    pub fn milli_value(self) -> i64 {
        ceil_div(self.0, 1_000_000)
    }

    /// `self / divisor` rounded up, as the downward API divides a resource by its `divisor`;
    /// `None` for a zero divisor.
    pub fn ceil_div(self, divisor: Self) -> Option<i64> {
        (divisor.0 != 0).then(|| ceil_div(self.0, divisor.0))
    }
}

fn ceil_div(value: i128, divisor: i128) -> i64 {
    let quotient = value / divisor;
    let rounded = if value % divisor != 0 && (value > 0) == (divisor > 0) {
        quotient + 1
    } else {
        quotient
    };
    rounded.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// A byte count as upstream prints a binary quantity: the largest binary suffix that divides it
/// exactly (`16Gi`, `16331512Ki`), else plain bytes.
pub fn format_bytes(bytes: u64) -> String {
    for (suffix, shift) in [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ] {
        let unit = 1u64 << shift;
        if bytes >= unit && bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        Quantity::parse(text).unwrap_or_else(|| panic!("{text} is a quantity"))
    }

    #[test]
    fn suffixes_and_decimals_parse_exactly() {
        assert_eq!(q("128Mi").value(), 128 << 20);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("1000").value(), 1000);
        assert_eq!(q("1.5Gi").value(), 3 << 29);
        assert_eq!(q("2e3").value(), 2000);
        assert_eq!(q("1E3").value(), 1000);
        assert_eq!(q("500m").milli_value(), 500);
        assert_eq!(q("2").milli_value(), 2000);
        assert_eq!(q("0.25").milli_value(), 250);
        assert_eq!(q("100u").milli_value(), 1);
        assert_eq!(q("-1").value(), -1);
        assert_eq!(q("1Ei").value(), 1 << 60);
    }

    #[test]
    fn values_round_up_as_upstream() {
        assert_eq!(q("500m").value(), 1);
        assert_eq!(q("1m").value(), 1);
        assert_eq!(q("1.0001").value(), 2);
        assert_eq!(q("1n").milli_value(), 1);
    }

    #[test]
    fn what_is_not_a_quantity_is_refused() {
        for text in ["", "abc", "1Qi", "1.2.3", "Mi", "1e", "--1", "."] {
            assert_eq!(Quantity::parse(text), None, "{text}");
        }
    }

    #[test]
    fn division_rounds_up() {
        assert_eq!(q("250m").ceil_div(q("1")), Some(1));
        assert_eq!(q("2").ceil_div(q("1m")), Some(2000));
        assert_eq!(q("128Mi").ceil_div(q("1Mi")), Some(128));
        assert_eq!(q("100M").ceil_div(q("1Mi")), Some(96));
        assert_eq!(q("1").ceil_div(Quantity::from_units(0)), None);
    }

    #[test]
    fn byte_counts_print_with_the_largest_exact_binary_suffix() {
        assert_eq!(format_bytes(16 << 30), "16Gi");
        assert_eq!(format_bytes(16_331_512 * 1024), "16331512Ki");
        assert_eq!(format_bytes(93_478_772_582), "93478772582");
        assert_eq!(format_bytes(0), "0");
    }
}
