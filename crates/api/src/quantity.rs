//! Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `1e3`) parsed into integers,
//! rounding up like apimachinery's `Quantity.Value()` and `Quantity.MilliValue()`.
//!
//! Grammar (from `k8s.io/apimachinery/pkg/api/resource/quantity.go`):
//! `<sign><digits>[.<digits>]<suffix>` where the suffix is a binary SI unit
//! (`Ki Mi Gi Ti Pi Ei`), a decimal SI unit (`n u m "" k M G T P E`) or a decimal exponent
//! (`e<int>` / `E<int>`). Values beyond `i64` saturate, as apimachinery's do.

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity {text:?} is not valid: {problem}")]
pub struct QuantityError {
    /// The rejected text.
    pub text: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// A parsed quantity: `digits × 2^(10·binary_power) × 10^exponent`, exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    digits: u128,
    exponent: i32,
    binary_power: u32,
}

/// The most significant digits kept; more would overflow `u128` arithmetic and
/// apimachinery rounds such values anyway.
const MAX_DIGITS: usize = 30;

impl Quantity {
    /// Parses `text` in Kubernetes' quantity syntax.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let fail = |problem| QuantityError {
            text: text.to_string(),
            problem,
        };
        let trimmed = text.trim();
        let (negative, rest) = match trimmed.as_bytes().first() {
            Some(b'-') => (true, &trimmed[1..]),
            Some(b'+') => (false, &trimmed[1..]),
            Some(_) => (false, trimmed),
            None => return Err(fail("empty")),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(fail("no digits"));
        }
        if fraction.contains('.') {
            return Err(fail("more than one decimal point"));
        }
        let mut digits: u128 = 0;
        let mut significant = 0usize;
        let mut exponent: i32 = 0;
        for (index, c) in whole.bytes().chain(fraction.bytes()).enumerate() {
            let in_fraction = index >= whole.len();
            if significant >= MAX_DIGITS {
                // Dropped digits of the whole part still scale the value.
                if !in_fraction {
                    exponent += 1;
                }
                continue;
            }
            digits = digits * 10 + u128::from(c - b'0');
            if digits > 0 {
                significant += 1;
            }
            if in_fraction {
                exponent -= 1;
            }
        }
        let mut binary_power = 0;
        match suffix {
            "" => {}
            "Ki" => binary_power = 1,
            "Mi" => binary_power = 2,
            "Gi" => binary_power = 3,
            "Ti" => binary_power = 4,
            "Pi" => binary_power = 5,
            "Ei" => binary_power = 6,
            "n" => exponent -= 9,
            "u" => exponent -= 6,
            "m" => exponent -= 3,
            "k" => exponent += 3,
            "M" => exponent += 6,
            "G" => exponent += 9,
            "T" => exponent += 12,
            "P" => exponent += 15,
            "E" => exponent += 18,
            other => {
                let Some(power) = other.strip_prefix(['e', 'E']) else {
                    return Err(fail("unknown suffix"));
                };
                let power: i32 = power.parse().map_err(|_| fail("bad exponent"))?;
                if !(-1000..=1000).contains(&power) {
                    return Err(fail("exponent out of range"));
                }
                exponent += power;
            }
        }
        Ok(Self {
            negative,
            digits,
            exponent,
            binary_power,
        })
    }

    /// The value in units, rounded up (away from zero for positives, like `Value()`).
    pub fn value(&self) -> i64 {
        self.scaled(0)
    }

    /// The value in thousandths of a unit, rounded up (like `MilliValue()`).
    pub fn milli_value(&self) -> i64 {
        self.scaled(3)
    }

    /// `ceil(self × 10^extra)`, saturating at the `i64` range.
    fn scaled(&self, extra: i32) -> i64 {
        let mut numerator = self.digits;
        let mut denominator: u128 = 1;
        for _ in 0..self.binary_power {
            numerator = match numerator.checked_mul(1024) {
                Some(n) => n,
                None => return self.saturated(),
            };
        }
        let exponent = self.exponent + extra;
        if exponent >= 0 {
            for _ in 0..exponent {
                if numerator == 0 {
                    break;
                }
                numerator = match numerator.checked_mul(10) {
                    Some(n) => n,
                    None => return self.saturated(),
                };
            }
        } else {
            for _ in 0..(-exponent) {
                if denominator > numerator {
                    // Further division only shrinks a value already below one.
                    break;
                }
                denominator *= 10;
            }
        }
        let whole = numerator / denominator;
        let rest = numerator % denominator;
        // Rounding up the magnitude matches Kubernetes for the positive quantities that
        // requests and capacities are; a negative value rounds toward zero instead.
        let magnitude = if rest != 0 && !self.negative {
            whole + 1
        } else {
            whole
        };
        match i64::try_from(magnitude) {
            Ok(m) if self.negative => -m,
            Ok(m) => m,
            Err(_) => self.saturated(),
        }
    }

    fn saturated(&self) -> i64 {
        if self.negative { i64::MIN } else { i64::MAX }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn milli(text: &str) -> i64 {
        Quantity::parse(text).unwrap().milli_value()
    }

    fn value(text: &str) -> i64 {
        Quantity::parse(text).unwrap().value()
    }

    #[test]
    fn cpu_forms() {
        assert_eq!(milli("100m"), 100);
        assert_eq!(milli("1"), 1000);
        assert_eq!(milli("1.5"), 1500);
        assert_eq!(milli("0.1"), 100);
        assert_eq!(milli(".5"), 500);
        assert_eq!(milli("2."), 2000);
        assert_eq!(milli("250000u"), 250);
        assert_eq!(milli("1n"), 1, "rounds up");
        assert_eq!(milli("1e3"), 1_000_000);
        assert_eq!(milli("1E-3"), 1);
        assert_eq!(milli("+4"), 4000);
        assert_eq!(milli("0"), 0);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(value("128Mi"), 128 * 1024 * 1024);
        assert_eq!(value("1Ki"), 1024);
        assert_eq!(value("1.5Gi"), 1536 * 1024 * 1024);
        assert_eq!(value("1G"), 1_000_000_000);
        assert_eq!(value("1k"), 1000);
        assert_eq!(value("129e6"), 129_000_000);
        assert_eq!(value("1M"), 1_000_000);
        assert_eq!(value("64Ti"), 64 << 40);
        assert_eq!(value("2Ei"), 2 << 60);
        assert_eq!(value("8Ei"), i64::MAX, "2^63 saturates");
        assert_eq!(value("100m"), 1, "fractions round up");
        assert_eq!(value("12345678901234567890123456789012345"), i64::MAX);
    }

    #[test]
    fn negative_values() {
        assert_eq!(value("-1"), -1);
        assert_eq!(milli("-1.5"), -1500);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "abc", "1x", "1.2.3", "Mi", "1e", "1ee3", "1 Mi", "-", "1KiB",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
