//! Five-field cron schedules (`minute hour day-of-month month day-of-week`), parsed
//! and evaluated as Vixie cron reads them: `*`, numbers, ranges `a-b`, steps `*/n` and
//! `a-b/n`, and comma-separated lists of these. Months may be named `JAN`…`DEC` and
//! weekdays `SUN`…`SAT` (any case); weekday 7 is Sunday, like 0. Macros such as
//! `@hourly` and the `?`, `L`, `W` and `#` extensions are not accepted.
//!
//! Times are UTC: [`Schedule::next_after`] works on unix seconds and converts them to
//! civil dates itself (proleptic Gregorian calendar), without a time-zone database.

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
    Schedule::parse(schedule).map(|_| ())
}

/// Minutes in a day.
const MINUTES_PER_DAY: i64 = 24 * 60;

/// How far [`Schedule::next_after`] looks ahead, in days: eight years and a day. A
/// `29 2` schedule can wait eight years across a century that is not a leap year
/// (2096-02-29, then 2104-02-29), so four years would wrongly call it impossible.
const SEARCH_DAYS: i64 = 8 * 366 + 1;

/// A parsed five-field cron schedule: one bit set per value each field allows.
///
/// Day matching follows Vixie cron (crontab(5)): when both day of month and day of week
/// are restricted — neither field starts with `*` — a day matches if *either* does;
/// otherwise both must. So `0 0 1 * MON` fires on the 1st and on every Monday, while
/// `0 0 */2 * MON` (day of month starts with `*`) fires on Mondays with an odd day of
/// month. (robfig/cron, used by Kubernetes CronJobs, counts `*/2` as restricted.)
///
/// ```
/// use strata_api::cron::Schedule;
/// let every_quarter_hour = Schedule::parse("*/15 * * * *").unwrap();
/// assert!(every_quarter_hour.matches(45, 3, 1, 1, 4));
/// assert!(!every_quarter_hour.matches(46, 3, 1, 1, 4));
/// // 2024-01-01T00:00:00Z is 1704067200; the next quarter hour is 00:15.
/// assert_eq!(every_quarter_hour.next_after(1_704_067_200), Some(1_704_068_100));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Bit `v` is set when minute `v` (0-59) matches.
    minutes: u64,
    /// Bit `v` is set when hour `v` (0-23) matches.
    hours: u64,
    /// Bit `v` is set when day of month `v` (1-31) matches.
    days_of_month: u64,
    /// Bit `v` is set when month `v` (1-12) matches.
    months: u64,
    /// Bit `v` is set when weekday `v` (0-6, Sunday = 0) matches; 7 is folded into 0.
    days_of_week: u64,
    /// The day-of-month field starts with `*` (Vixie's `DOM_STAR`).
    day_of_month_star: bool,
    /// The day-of-week field starts with `*` (Vixie's `DOW_STAR`).
    day_of_week_star: bool,
}

impl Schedule {
    /// Parses a five-field cron expression.
    ///
    /// `N/step` without a range means `N-max/step`, as in cronie and robfig/cron.
    pub fn parse(text: &str) -> Result<Schedule, CronError> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, day_of_month, month, day_of_week] = parts[..] else {
            return Err(CronError::FieldCount { found: parts.len() });
        };
        let [minute_f, hour_f, dom_f, month_f, dow_f] = &FIELDS;
        let mut days_of_week = field_bits(day_of_week, dow_f)?;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(Schedule {
            minutes: field_bits(minute, minute_f)?,
            hours: field_bits(hour, hour_f)?,
            days_of_month: field_bits(day_of_month, dom_f)?,
            months: field_bits(month, month_f)?,
            days_of_week,
            day_of_month_star: day_of_month.starts_with('*'),
            day_of_week_star: day_of_week.starts_with('*'),
        })
    }

    /// Whether the schedule fires at this minute of this day. `day_of_week` counts from
    /// Sunday = 0; 7 is Sunday too. Values outside a field's range never match.
    pub fn matches(
        &self,
        minute: u32,
        hour: u32,
        day_of_month: u32,
        month: u32,
        day_of_week: u32,
    ) -> bool {
        let day_of_week = if day_of_week == 7 { 0 } else { day_of_week };
        has(self.minutes, minute)
            && has(self.hours, hour)
            && has(self.months, month)
            && self.day_matches(day_of_month, day_of_week)
    }

    /// The first whole minute strictly after `after_unix_seconds` (UTC) at which the
    /// schedule fires, in unix seconds.
    ///
    /// Returns `None` when nothing matches within the next eight years — a schedule
    /// that can never fire, such as `0 0 30 2 *` — or when the answer would not fit an
    /// `i64`. The search walks day by day and costs at most about 3,000 cheap steps.
    pub fn next_after(&self, after_unix_seconds: i64) -> Option<i64> {
        let first_minute = after_unix_seconds.div_euclid(60).checked_add(1)?;
        let first_day = first_minute.div_euclid(MINUTES_PER_DAY);
        let mut from_minute_of_day = first_minute.rem_euclid(MINUTES_PER_DAY);
        for day in first_day..=first_day.checked_add(SEARCH_DAYS)? {
            let (_, month, day_of_month) = civil_from_days(day);
            if has(self.months, month)
                && self.day_matches(day_of_month, weekday(day))
                && let Some(minute_of_day) = self.first_time_from(from_minute_of_day)
            {
                return day
                    .checked_mul(MINUTES_PER_DAY)?
                    .checked_add(minute_of_day)?
                    .checked_mul(60);
            }
            from_minute_of_day = 0;
        }
        None
    }

    /// Vixie's day rule; `day_of_week` is 0-6.
    fn day_matches(&self, day_of_month: u32, day_of_week: u32) -> bool {
        let dom = has(self.days_of_month, day_of_month);
        let dow = has(self.days_of_week, day_of_week);
        if self.day_of_month_star || self.day_of_week_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first minute of the day (0-1439) at or after `from` with a matching hour and
    /// minute.
    fn first_time_from(&self, from: i64) -> Option<i64> {
        let (from_hour, from_minute) = (from / 60, from % 60);
        (from_hour..24)
            .filter(|&hour| self.hours & (1 << hour) != 0)
            .find_map(|hour| {
                let start = if hour == from_hour { from_minute } else { 0 };
                let minute = (self.minutes & (u64::MAX << start)).trailing_zeros();
                (minute < 60).then(|| hour * 60 + i64::from(minute))
            })
    }
}

impl std::str::FromStr for Schedule {
    type Err = CronError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Schedule::parse(text)
    }
}

/// Whether bit `value` of `bits` is set (false beyond bit 63).
fn has(bits: u64, value: u32) -> bool {
    value < 64 && bits & (1 << value) != 0
}

/// The values a whole field allows, as bits.
fn field_bits(part: &str, field: &CronField) -> Result<u64, CronError> {
    part.split(',').try_fold(0, |bits, item| {
        item_bits(item, field)
            .map(|b| bits | b)
            .map_err(|problem| CronError::Item {
                field: field.name,
                item: item.to_string(),
                problem,
            })
    })
}

/// The values one list item allows, as bits: `*`, `v`, `a-b`, each optionally followed
/// by `/step` (`v/step` meaning `v-max/step`).
fn item_bits(item: &str, field: &CronField) -> Result<u64, String> {
    let (range, step) = match item.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (item, None),
    };
    let step = match step {
        Some(step) => {
            let step: u32 = step
                .parse()
                .map_err(|_| format!("step {step:?} is not a number"))?;
            if step == 0 || step > field.max {
                return Err(format!("step must be between 1 and {}", field.max));
            }
            Some(step)
        }
        None => None,
    };
    let (low, high) = if range == "*" {
        (field.min, field.max)
    } else {
        match range.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (value(low, field)?, value(high, field)?);
                if low > high {
                    return Err(format!("range start {low} is after its end {high}"));
                }
                (low, high)
            }
            None => {
                let low = value(range, field)?;
                (low, if step.is_some() { field.max } else { low })
            }
        }
    };
    // Every field's max is below 64, so each value has its bit.
    Ok((low..=high)
        .step_by(step.unwrap_or(1) as usize)
        .fold(0, |bits, v| bits | (1 << v)))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (`month` 1-12, `day` 1-31).
///
/// Howard Hinnant's `days_from_civil`
/// (<https://howardhinnant.github.io/date_algorithms.html#days_from_civil>): years
/// start in March so the leap day is the last day of a year, and 400-year eras repeat.
/// Only the tests need this direction: they build instants from civil times with it and
/// check [`civil_from_days`] against it.
#[cfg(test)]
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400); // 0-399
    let month_from_march = i64::from((month + 9) % 12); // March = 0
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1; // 0-365
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian `(year, month, day)` of a count of days since 1970-01-01;
/// Hinnant's `civil_from_days`, the inverse of `days_from_civil`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468; // Days since 0000-03-01.
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097); // 0-146096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0-11
    // Both are small and non-negative: day 1-31, month 1-12.
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The weekday (Sunday = 0) of a count of days since 1970-01-01, a Thursday.
fn weekday(days: i64) -> u32 {
    // 0-6, so it fits.
    (days + 4).rem_euclid(7) as u32
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

    /// Unix seconds of a UTC civil time.
    fn at(year: i64, month: u32, day: u32, hour: i64, minute: i64) -> i64 {
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60
    }

    fn parse(text: &str) -> Schedule {
        Schedule::parse(text).unwrap()
    }

    /// The values 0..=max a field of `schedule` allows, tested through `matches`.
    fn minutes_of(schedule: &Schedule) -> Vec<u32> {
        (0..60)
            .filter(|&m| schedule.matches(m, 0, 1, 1, 1))
            .collect()
    }

    #[test]
    fn civil_dates_round_trip_through_day_counts() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        // 2024-02-29 exists (divisible by 4), 1900-02-29 does not (by 100, not 400),
        // 2000-02-29 does (by 400).
        assert_eq!(
            civil_from_days(days_from_civil(2024, 2, 28) + 1),
            (2024, 2, 29)
        );
        assert_eq!(
            civil_from_days(days_from_civil(2023, 2, 28) + 1),
            (2023, 3, 1)
        );
        assert_eq!(
            civil_from_days(days_from_civil(1900, 2, 28) + 1),
            (1900, 3, 1)
        );
        assert_eq!(
            civil_from_days(days_from_civil(2000, 2, 28) + 1),
            (2000, 2, 29)
        );
        assert_eq!(
            civil_from_days(days_from_civil(2100, 2, 28) + 1),
            (2100, 3, 1)
        );
        // Month and year ends.
        for (year, month, last) in [(2023, 1, 31), (2023, 4, 30), (2023, 12, 31), (2024, 6, 30)] {
            let next = if month == 12 {
                (year + 1, 1, 1)
            } else {
                (year, month + 1, 1)
            };
            assert_eq!(
                civil_from_days(days_from_civil(year, month, last) + 1),
                next
            );
        }
        // Every day of four centuries either side of the epoch round-trips, and each
        // day follows the previous one.
        let mut previous = civil_from_days(-146_097 - 1);
        for days in -146_097..146_097 {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
            assert!((1..=12).contains(&month) && (1..=31).contains(&day));
            assert!((year, month, day) > previous);
            previous = (year, month, day);
        }
    }

    #[test]
    fn weekdays_count_from_sunday() {
        assert_eq!(weekday(0), 4); // 1970-01-01, Thursday
        assert_eq!(weekday(-1), 3);
        assert_eq!(weekday(days_from_civil(2024, 2, 29)), 4);
        assert_eq!(weekday(days_from_civil(2000, 1, 1)), 6);
        assert_eq!(weekday(days_from_civil(2023, 12, 31)), 0);
    }

    #[test]
    fn steps_ranges_lists_and_names_select_values() {
        assert_eq!(minutes_of(&parse("*/15 * * * *")), [0, 15, 30, 45]);
        assert_eq!(minutes_of(&parse("10-30/7 * * * *")), [10, 17, 24]);
        assert_eq!(minutes_of(&parse("1,5,58-59 * * * *")), [1, 5, 58, 59]);
        assert_eq!(minutes_of(&parse("50/4 * * * *")), [50, 54, 58]);
        assert_eq!(minutes_of(&parse("7 * * * *")), [7]);
        let hours = parse("0 9-17/2 * * *");
        let matched: Vec<u32> = (0..24).filter(|&h| hours.matches(0, h, 1, 1, 1)).collect();
        assert_eq!(matched, [9, 11, 13, 15, 17]);
        let months = parse("0 0 * jan,Jul-SEP *");
        let matched: Vec<u32> = (1..=12)
            .filter(|&m| months.matches(0, 0, 1, m, 1))
            .collect();
        assert_eq!(matched, [1, 7, 8, 9]);
        let weekdays = parse("0 0 * * mon-FRI");
        let matched: Vec<u32> = (0..7)
            .filter(|&d| weekdays.matches(0, 0, 1, 1, d))
            .collect();
        assert_eq!(matched, [1, 2, 3, 4, 5]);
        assert_eq!(parse("0 0 * * 1-5"), weekdays);
        assert_eq!("0 0 * * 1-5".parse::<Schedule>(), Ok(weekdays));
    }

    #[test]
    fn seven_is_sunday() {
        for text in ["0 0 * * 7", "0 0 * * 0", "0 0 * * SUN", "0 0 * * 6-7,0"] {
            let schedule = parse(text);
            assert!(schedule.matches(0, 0, 1, 1, 0), "{text}");
            assert!(schedule.matches(0, 0, 1, 1, 7), "{text}");
            assert!(!schedule.matches(0, 0, 1, 1, 5), "{text}");
        }
        assert_eq!(parse("0 0 * * 7"), parse("0 0 * * 0"));
        let weekend = parse("0 0 * * 6-7");
        assert!(weekend.matches(0, 0, 1, 1, 6) && weekend.matches(0, 0, 1, 1, 0));
        // 2023-12-31 was a Sunday.
        assert_eq!(
            parse("0 12 * * 7").next_after(at(2023, 12, 25, 0, 0)),
            Some(at(2023, 12, 31, 12, 0))
        );
    }

    #[test]
    fn restricted_day_fields_match_either() {
        // The 13th or any Friday.
        let schedule = parse("0 0 13 * FRI");
        assert!(schedule.matches(0, 0, 13, 1, 2)); // the 13th, a Tuesday
        assert!(schedule.matches(0, 0, 6, 1, 5)); // a Friday, the 6th
        assert!(!schedule.matches(0, 0, 6, 1, 4));
        // One field `*`: both must match, and `*` lets everything through.
        let fridays = parse("0 0 * * FRI");
        assert!(fridays.matches(0, 0, 6, 1, 5));
        assert!(!fridays.matches(0, 0, 13, 1, 2));
        let thirteenths = parse("0 0 13 * *");
        assert!(thirteenths.matches(0, 0, 13, 1, 2));
        assert!(!thirteenths.matches(0, 0, 6, 1, 5));
        // A field starting with `*` counts as unrestricted even with a step (Vixie's
        // DOM_STAR): odd days that are Mondays.
        let stepped = parse("0 0 */2 * MON");
        assert!(stepped.matches(0, 0, 1, 1, 1));
        assert!(!stepped.matches(0, 0, 2, 1, 1));
        assert!(!stepped.matches(0, 0, 3, 1, 2));
        // From Tue 2024-01-02: next Friday the 5th, then the 13th (a Saturday).
        let after = at(2024, 1, 2, 12, 0);
        let first = schedule.next_after(after).unwrap();
        assert_eq!(first, at(2024, 1, 5, 0, 0));
        let second = schedule.next_after(first).unwrap();
        assert_eq!(second, at(2024, 1, 12, 0, 0));
        assert_eq!(schedule.next_after(second), Some(at(2024, 1, 13, 0, 0)));
    }

    #[test]
    fn matches_rejects_out_of_range_values() {
        let all = parse("* * * * *");
        assert!(all.matches(59, 23, 31, 12, 6));
        assert!(!all.matches(60, 0, 1, 1, 0));
        assert!(!all.matches(0, 24, 1, 1, 0));
        assert!(!all.matches(0, 0, 0, 1, 0));
        assert!(!all.matches(0, 0, 1, 13, 0));
        assert!(!all.matches(0, 0, 1, 1, 8));
        assert!(!all.matches(0, 0, 1, 1, u32::MAX));
    }

    #[test]
    fn next_after_is_strictly_later_and_on_a_whole_minute() {
        let every_minute = parse("* * * * *");
        let noon = at(2024, 5, 1, 12, 0);
        assert_eq!(every_minute.next_after(noon), Some(noon + 60));
        assert_eq!(every_minute.next_after(noon - 1), Some(noon));
        assert_eq!(every_minute.next_after(noon + 59), Some(noon + 60));
        assert_eq!(every_minute.next_after(-1), Some(0));
        assert_eq!(every_minute.next_after(-61), Some(-60));
        let quarters = parse("*/15 * * * *");
        assert_eq!(quarters.next_after(noon), Some(noon + 15 * 60));
        assert_eq!(
            quarters.next_after(noon + 14 * 60 + 59),
            Some(noon + 15 * 60)
        );
    }

    #[test]
    fn next_after_crosses_hour_day_month_and_year() {
        let quarters = parse("*/15 * * * *");
        assert_eq!(
            quarters.next_after(at(2024, 5, 1, 12, 50)),
            Some(at(2024, 5, 1, 13, 0))
        );
        assert_eq!(
            quarters.next_after(at(2024, 5, 31, 23, 45)),
            Some(at(2024, 6, 1, 0, 0))
        );
        assert_eq!(
            quarters.next_after(at(2023, 12, 31, 23, 59)),
            Some(at(2024, 1, 1, 0, 0))
        );
        let morning = parse("30 9 * * *");
        assert_eq!(
            morning.next_after(at(2024, 4, 30, 9, 30)),
            Some(at(2024, 5, 1, 9, 30))
        );
        let first_of_month = parse("0 0 1 * *");
        assert_eq!(
            first_of_month.next_after(at(2024, 1, 1, 0, 0)),
            Some(at(2024, 2, 1, 0, 0))
        );
        let new_year = parse("0 0 1 1 *");
        assert_eq!(
            new_year.next_after(at(2024, 1, 1, 0, 0)),
            Some(at(2025, 1, 1, 0, 0))
        );
        let business = parse("0 9-17/4 * * MON-FRI");
        // Friday 2024-05-03 17:00 → Monday 09:00.
        assert_eq!(
            business.next_after(at(2024, 5, 3, 17, 0)),
            Some(at(2024, 5, 6, 9, 0))
        );
        assert_eq!(
            business.next_after(at(2024, 5, 6, 9, 0)),
            Some(at(2024, 5, 6, 13, 0))
        );
        let last_minute = parse("59 23 31 12 *");
        assert_eq!(
            last_minute.next_after(at(2024, 1, 1, 0, 0)),
            Some(at(2024, 12, 31, 23, 59))
        );
        let thirty_first = parse("0 0 31 * *");
        assert_eq!(
            thirty_first.next_after(at(2024, 3, 31, 0, 0)),
            Some(at(2024, 5, 31, 0, 0))
        );
    }

    #[test]
    fn february_29_waits_for_a_leap_year() {
        let leap_day = parse("0 0 29 2 *");
        assert_eq!(
            leap_day.next_after(at(2023, 3, 1, 0, 0)),
            Some(at(2024, 2, 29, 0, 0))
        );
        assert_eq!(
            leap_day.next_after(at(2024, 2, 29, 0, 0)),
            Some(at(2028, 2, 29, 0, 0))
        );
        // 2100 is not a leap year: eight years from 2096 to 2104.
        assert_eq!(
            leap_day.next_after(at(2096, 2, 29, 0, 0)),
            Some(at(2104, 2, 29, 0, 0))
        );
        // 2000 is.
        assert_eq!(
            leap_day.next_after(at(1997, 1, 1, 0, 0)),
            Some(at(2000, 2, 29, 0, 0))
        );
        let end_of_february = parse("0 0 28-29 2 *");
        assert_eq!(
            end_of_february.next_after(at(2023, 2, 28, 0, 0)),
            Some(at(2024, 2, 28, 0, 0))
        );
    }

    #[test]
    fn impossible_schedules_never_fire() {
        for text in ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"] {
            assert_eq!(parse(text).next_after(at(2024, 1, 1, 0, 0)), None, "{text}");
        }
        // With a restricted weekday too, the OR rule makes it possible again.
        assert_eq!(
            parse("0 0 30 2 MON").next_after(at(2024, 1, 1, 0, 0)),
            Some(at(2024, 2, 5, 0, 0))
        );
    }

    #[test]
    fn next_after_does_not_overflow() {
        let every_minute = parse("* * * * *");
        assert_eq!(every_minute.next_after(i64::MAX), None);
        // The last whole minute that fits an i64 is still found.
        let last_minute = i64::MAX.div_euclid(60) * 60;
        assert_eq!(every_minute.next_after(last_minute - 1), Some(last_minute));
        assert_eq!(every_minute.next_after(last_minute), None);
        assert_eq!(parse("0 0 1 1 *").next_after(last_minute - 1), None);
        assert_eq!(
            every_minute.next_after(i64::MIN),
            Some((i64::MIN.div_euclid(60) + 1) * 60)
        );
    }
}
