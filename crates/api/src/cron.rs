//! Five-field cron schedules (`minute hour day-of-month month day-of-week`), checked
//! as Vixie cron reads them: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, and
//! comma-separated lists of these. Months may be named `JAN`…`DEC` and weekdays
//! `SUN`…`SAT` (any case); weekday 7 is Sunday, like 0. Macros such as `@hourly` and
//! the `?`, `L`, `W` and `#` extensions are not accepted.

/// One field of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CronField {
    /// Its name, for messages (`minute`).
    pub name: &'static str,
    /// Smallest value.
    pub min: u32,
    /// Largest value.
    pub max: u32,
    /// Names standing for `min`, `min + 1`, … (empty when the field has none).
    pub names: &'static [&'static str],
}

/// The five fields, in order.
pub const FIELDS: [CronField; 5] = [
    CronField {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    CronField {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    CronField {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    CronField {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ],
    },
    CronField {
        name: "day of week",
        min: 0,
        max: 7,
        names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    },
];

/// Why a schedule is not a valid five-field cron expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The schedule does not have exactly five fields.
    #[error("expected exactly 5 fields, found {found}")]
    FieldCount {
        /// How many whitespace-separated fields there were.
        found: usize,
    },
    /// One item of a field is malformed or out of range.
    #[error("{field} field: {problem} in {item:?}")]
    Item {
        /// The field's name (`hour`).
        field: &'static str,
        /// The item (`25`, `MON-FOO`).
        item: String,
        /// What is wrong with it.
        problem: String,
    },
}

/// Checks that `schedule` is a valid five-field cron expression.
///
/// ```
/// use strata_api::cron::check;
/// assert!(check("*/5 9-17 * * MON-FRI").is_ok());
/// assert!(check("0 24 * * *").is_err());
/// ```
pub fn check(schedule: &str) -> Result<(), CronError> {
    let parts: Vec<&str> = schedule.split_whitespace().collect();
    if parts.len() != FIELDS.len() {
        return Err(CronError::FieldCount { found: parts.len() });
    }
    for (part, field) in parts.iter().zip(&FIELDS) {
        for item in part.split(',') {
            check_item(item, field).map_err(|problem| CronError::Item {
                field: field.name,
                item: item.to_string(),
                problem,
            })?;
        }
    }
    Ok(())
}

/// Checks one list item: `*`, `v`, `a-b`, each optionally followed by `/step`.
fn check_item(item: &str, field: &CronField) -> Result<(), String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    if let Some(step) = step {
        let step: u32 = step
            .parse()
            .map_err(|_| format!("step {step:?} is not a number"))?;
        if step == 0 || step > field.max {
            return Err(format!("step must be between 1 and {}", field.max));
        }
    }
    if range == "*" {
        return Ok(());
    }
    match range.split_once('-') {
        Some((low, high)) => {
            let (low, high) = (value(low, field)?, value(high, field)?);
            if low > high {
                return Err(format!("range start {low} is after its end {high}"));
            }
        }
        None => {
            value(range, field)?;
        }
    }
    Ok(())
}

/// A number or name within the field's bounds.
fn value(text: &str, field: &CronField) -> Result<u32, String> {
    if let Some(index) = field
        .names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
    {
        // At most 12 names, so the index fits.
        return Ok(field.min + index as u32);
    }
    let number: u32 = text.parse().map_err(|_| {
        if text.is_empty() {
            "empty value".to_string()
        } else {
            format!("{text:?} is not a number")
        }
    })?;
    if !(field.min..=field.max).contains(&number) {
        return Err(format!("{number} is outside {}-{}", field.min, field.max));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_schedules_are_accepted() {
        for schedule in [
            "* * * * *",
            "0 0 * * *",
            "*/15 * * * *",
            "0 9-17/2 * * 1-5",
            "30 4 1,15 * *",
            "0 0 1 jan,JUL *",
            "0 12 * * MON-FRI",
            "0 0 * * 7",
            "5 4 * * sun",
            "  1   2 3 4 5  ",
        ] {
            assert_eq!(check(schedule), Ok(()), "{schedule}");
        }
    }

    #[test]
    fn malformed_schedules_say_what_is_wrong() {
        assert_eq!(check("* * * *"), Err(CronError::FieldCount { found: 4 }));
        assert_eq!(check("@hourly"), Err(CronError::FieldCount { found: 1 }));
        let problem = |s: &str| check(s).unwrap_err().to_string();
        assert_eq!(
            problem("60 * * * *"),
            "minute field: 60 is outside 0-59 in \"60\""
        );
        assert_eq!(
            problem("* 24 * * *"),
            "hour field: 24 is outside 0-23 in \"24\""
        );
        assert_eq!(
            problem("* * 0 * *"),
            "day of month field: 0 is outside 1-31 in \"0\""
        );
        assert!(problem("* * * FOO *").starts_with("month field: \"FOO\" is not a number"));
        assert!(problem("* * * * MON-FOO").starts_with("day of week field"));
        assert!(problem("*/0 * * * *").contains("step must be between 1 and 59"));
        assert!(problem("5-1 * * * *").contains("range start 5 is after its end 1"));
        assert!(problem("1,,2 * * * *").contains("empty value"));
        assert!(problem("? * * * *").contains("not a number"));
        assert!(problem("* * * * 1#2").starts_with("day of week field"));
    }
}
