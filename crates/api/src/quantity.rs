//! Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `1e3`) as numbers:
//! binary suffixes (Ki … Ei) are powers of 1024, decimal ones (n, u, m, k, M … E) powers
//! of 1000, and an exponent (`e3`, `E-2`) scales by ten.

/// A quantity that is not in Kubernetes' syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a quantity (like 100m, 1.5, 128Mi or 1G)")]
pub struct QuantityError(pub String);

/// The value of `text` in base units (cores, bytes, counts).
///
/// ```
/// assert_eq!(strata_api::quantity::parse("250m").unwrap(), 0.25);
/// assert_eq!(strata_api::quantity::parse("64Mi").unwrap(), 67_108_864.0);
/// ```
pub fn parse(text: &str) -> Result<f64, QuantityError> {
    let error = || QuantityError(text.to_string());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(trimmed.len());
    let (number, suffix) = trimmed.split_at(split);
    if number.is_empty() || number == "+" || number == "-" {
        return Err(error());
    }
    let value: f64 = number.parse().map_err(|_| error())?;
    let scale = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| error())?;
            10f64.powi(power)
        }
        _ => return Err(error()),
    };
    let result = value * scale;
    if result.is_finite() {
        Ok(result)
    } else {
        Err(error())
    }
}

/// The value in thousandths, rounded up (how Kubernetes counts CPU: `MilliValue`).
pub fn parse_milli(text: &str) -> Result<i64, QuantityError> {
    parse(text).map(|v| (v * 1000.0).ceil() as i64)
}

/// The value as a whole number, rounded up (bytes, counts: `Value`).
pub fn parse_whole(text: &str) -> Result<i64, QuantityError> {
    parse(text).map(|v| v.ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_and_exponents() {
        assert_eq!(parse_milli("100m").unwrap(), 100);
        assert_eq!(parse_milli("1.5").unwrap(), 1500);
        assert_eq!(parse_whole("128Mi").unwrap(), 128 << 20);
        assert_eq!(parse_whole("1G").unwrap(), 1_000_000_000);
        assert_eq!(parse_whole("1e3").unwrap(), 1000);
        assert_eq!(parse_whole("2Ki").unwrap(), 2048);
        assert_eq!(parse_whole("0.5Gi").unwrap(), 512 << 20);
        assert!(parse("12Q").is_err());
        assert!(parse("Mi").is_err());
        assert!(parse("").is_err());
    }
}
