//! Cron triggers: the functions that have a `spec.schedule`, which of them are due in a
//! window of time, and the loop that wakes at each minute boundary and fires them.
//!
//! Schedules are evaluated in UTC on the wall clock ([`SystemTime`]); the loop sleeps on
//! tokio's monotonic clock only to wake up near the next minute.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strata_api::cron::Schedule;

use crate::table::FunctionKey;

/// The most times one call of [`CronTriggers::due`] fires one function.
///
/// A loop that wakes late fires each function once per minute it missed, so nothing is
/// skipped; after a long suspend (a laptop lid, a paused VM) that could be hundreds of
/// invocations at once, so the catch-up stops at this many, the earliest ones.
pub const MAX_CATCH_UP: usize = 5;

/// The scheduled functions and their parsed schedules.
#[derive(Debug, Clone, Default)]
pub struct CronTriggers {
    schedules: BTreeMap<FunctionKey, Schedule>,
}

impl CronTriggers {
    /// No scheduled functions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a function's schedule, replacing any it had; `None` unschedules it (a
    /// function whose `spec.schedule` was cleared).
    pub fn set(&mut self, key: FunctionKey, schedule: Option<Schedule>) {
        match schedule {
            Some(schedule) => {
                self.schedules.insert(key, schedule);
            }
            None => self.remove(&key),
        }
    }

    /// Unschedules a function (deleted, or no longer scheduled). Absent keys are fine.
    pub fn remove(&mut self, key: &FunctionKey) {
        self.schedules.remove(key);
    }

    /// A function's schedule, if it has one.
    pub fn get(&self, key: &FunctionKey) -> Option<&Schedule> {
        self.schedules.get(key)
    }

    /// How many functions are scheduled.
    pub fn len(&self) -> usize {
        self.schedules.len()
    }

    /// Whether no function is scheduled.
    pub fn is_empty(&self) -> bool {
        self.schedules.is_empty()
    }

    /// The functions to fire for the fire times in `(from_unix, to_unix]` (unix
    /// seconds, UTC), earliest first and by key within the same minute.
    ///
    /// The window is open at `from` and closed at `to`, so consecutive windows
    /// `(a, b]`, `(b, c]` fire every minute exactly once however late the caller wakes.
    /// A function due in several minutes of the window appears once per minute, at most
    /// [`MAX_CATCH_UP`] times. An empty or backwards window fires nothing.
    pub fn due(&self, from_unix: i64, to_unix: i64) -> Vec<FunctionKey> {
        let mut fires: Vec<(i64, &FunctionKey)> = Vec::new();
        for (key, schedule) in &self.schedules {
            let mut after = from_unix;
            for _ in 0..MAX_CATCH_UP {
                match schedule.next_after(after) {
                    Some(at) if at <= to_unix => {
                        fires.push((at, key));
                        after = at;
                    }
                    _ => break,
                }
            }
        }
        fires.sort();
        fires.into_iter().map(|(_, key)| key.clone()).collect()
    }
}

/// Fires scheduled functions until the task is dropped: wakes at each minute boundary,
/// calls `fire` for every function [`CronTriggers::due`] in `(last, now]`, and remembers
/// `now` as `last`.
///
/// Minutes before the loop starts are not fired. If the wall clock steps backwards,
/// `last` stays where it was, so no minute fires twice; the functions wait for the
/// clock to catch up. `fire` runs on this task with the triggers unlocked, and should
/// hand the invocation off (spawn it) rather than run it.
pub async fn run(triggers: Arc<Mutex<CronTriggers>>, fire: impl Fn(FunctionKey) + Send + 'static) {
    let mut last = now_millis().div_euclid(1000);
    loop {
        tokio::time::sleep(until_next_minute(now_millis())).await;
        last = tick(&triggers, last, now_millis().div_euclid(1000), &fire);
    }
}

/// One wake-up of [`run`]: fires what is due in `(last, now]` and returns the new `last`.
fn tick(triggers: &Mutex<CronTriggers>, last: i64, now: i64, fire: &impl Fn(FunctionKey)) -> i64 {
    // A panic elsewhere while holding the lock leaves the map itself intact.
    let due = triggers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .due(last, now);
    for key in due {
        tracing::debug!(function = %key, "cron schedule fired");
        fire(key);
    }
    last.max(now)
}

/// Milliseconds since the unix epoch on the wall clock (negative before it).
fn now_millis() -> i64 {
    let millis = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => millis(since),
        Err(before) => -millis(before.duration()),
    }
}

/// How long from `now_millis` to the next whole minute: more than 0, at most 60 s. On a
/// boundary it is a whole minute, since that minute has just been handled.
fn until_next_minute(now_millis: i64) -> Duration {
    // 1 to 60,000, so it fits.
    Duration::from_millis((60_000 - now_millis.rem_euclid(60_000)) as u64)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// 2024-01-01T00:00:00Z.
    const NEW_YEAR: i64 = 1_704_067_200;
    const MINUTE: i64 = 60;

    fn key(name: &str) -> FunctionKey {
        FunctionKey::new("default", name)
    }

    fn schedule(text: &str) -> Schedule {
        Schedule::parse(text).unwrap()
    }

    fn triggers(entries: &[(&str, &str)]) -> CronTriggers {
        let mut triggers = CronTriggers::new();
        for (name, text) in entries {
            triggers.set(key(name), Some(schedule(text)));
        }
        triggers
    }

    #[test]
    fn set_replaces_and_none_or_remove_unschedules() {
        let mut triggers = CronTriggers::new();
        assert!(triggers.is_empty());
        triggers.set(key("a"), Some(schedule("* * * * *")));
        triggers.set(key("b"), Some(schedule("0 * * * *")));
        assert_eq!(triggers.len(), 2);
        triggers.set(key("a"), Some(schedule("*/5 * * * *")));
        assert_eq!(triggers.len(), 2);
        assert_eq!(triggers.get(&key("a")), Some(&schedule("*/5 * * * *")));
        triggers.set(key("a"), None);
        assert_eq!(triggers.get(&key("a")), None);
        triggers.set(key("never-set"), None);
        triggers.remove(&key("never-set"));
        assert_eq!(triggers.len(), 1);
        triggers.remove(&key("b"));
        assert!(triggers.is_empty());
        assert!(triggers.due(NEW_YEAR - MINUTE, NEW_YEAR).is_empty());
    }

    #[test]
    fn due_is_open_at_from_and_closed_at_to() {
        let triggers = triggers(&[("hourly", "0 * * * *")]);
        assert_eq!(triggers.due(NEW_YEAR - 1, NEW_YEAR), [key("hourly")]);
        assert_eq!(triggers.due(NEW_YEAR - MINUTE, NEW_YEAR), [key("hourly")]);
        assert!(triggers.due(NEW_YEAR, NEW_YEAR + MINUTE).is_empty());
        assert!(triggers.due(NEW_YEAR - MINUTE, NEW_YEAR - 1).is_empty());
        assert!(triggers.due(NEW_YEAR, NEW_YEAR).is_empty());
        assert!(
            triggers
                .due(NEW_YEAR + MINUTE, NEW_YEAR - MINUTE)
                .is_empty()
        );
    }

    #[test]
    fn a_late_wake_up_fires_once_per_missed_minute() {
        let triggers = triggers(&[("every", "* * * * *"), ("hourly", "0 * * * *")]);
        // On time: one minute, one fire each that is due.
        assert_eq!(triggers.due(NEW_YEAR, NEW_YEAR + MINUTE), [key("every")]);
        // Woke 2 s late and covered 23:59 and 00:00: every-minute fires twice, hourly once.
        assert_eq!(
            triggers.due(NEW_YEAR - 2 * MINUTE + 1, NEW_YEAR + 2),
            [key("every"), key("every"), key("hourly")]
        );
    }

    #[test]
    fn consecutive_windows_neither_skip_nor_double() {
        let triggers = triggers(&[("five", "*/5 * * * *"), ("every", "* * * * *")]);
        // Wake-ups at irregular times over half an hour, some early, some minutes late.
        let offsets = [
            0, 59, 61, 125, 179, 300, 302, 601, 840, 1020, 1200, 1500, 1800,
        ];
        let mut stepwise = Vec::new();
        for pair in offsets.windows(2) {
            stepwise.extend(triggers.due(NEW_YEAR + pair[0], NEW_YEAR + pair[1]));
        }
        let count = |name: &str| stepwise.iter().filter(|k| k.name == name).count();
        assert_eq!(count("five"), 6); // :05 … :30
        // Every minute 1-30, except that windows over five minutes long are capped.
        let capped: usize = offsets
            .windows(2)
            .map(|p| (p[1] / MINUTE - p[0] / MINUTE) as usize)
            .map(|minutes| minutes.min(MAX_CATCH_UP))
            .sum();
        assert_eq!(count("every"), capped);
    }

    #[test]
    fn due_is_chronological_then_by_key() {
        let triggers = triggers(&[
            ("b", "*/2 * * * *"),
            ("a", "*/2 * * * *"),
            ("c", "1 * * * *"),
        ]);
        assert_eq!(
            triggers.due(NEW_YEAR - 1, NEW_YEAR + 2 * MINUTE),
            [key("a"), key("b"), key("c"), key("a"), key("b")]
        );
    }

    #[test]
    fn catch_up_is_capped_after_a_long_suspend() {
        let triggers = triggers(&[("every", "* * * * *"), ("daily", "0 0 * * *")]);
        let fires = triggers.due(NEW_YEAR - 1, NEW_YEAR + 3 * 86_400);
        let count = |name: &str| fires.iter().filter(|k| k.name == name).count();
        assert_eq!(count("every"), MAX_CATCH_UP);
        assert_eq!(count("daily"), 4);
    }

    #[test]
    fn impossible_schedules_are_never_due() {
        let triggers = triggers(&[("feb30", "0 0 30 2 *")]);
        assert!(triggers.due(NEW_YEAR, NEW_YEAR + 366 * 86_400).is_empty());
    }

    #[test]
    fn tick_fires_what_is_due_and_keeps_last_on_a_clock_step_back() {
        let triggers = Mutex::new(triggers(&[("every", "* * * * *")]));
        let fired = RefCell::new(Vec::new());
        let fire = |key: FunctionKey| fired.borrow_mut().push(key);
        let last = tick(&triggers, NEW_YEAR, NEW_YEAR + MINUTE, &fire);
        assert_eq!(last, NEW_YEAR + MINUTE);
        assert_eq!(fired.borrow().len(), 1);
        // The clock stepped back an hour: nothing fires and `last` stays.
        let last = tick(&triggers, last, NEW_YEAR - 3600, &fire);
        assert_eq!(last, NEW_YEAR + MINUTE);
        assert_eq!(fired.borrow().len(), 1);
        // Unscheduled between ticks: no longer fired.
        triggers.lock().unwrap().remove(&key("every"));
        tick(&triggers, last, last + MINUTE, &fire);
        assert_eq!(fired.borrow().len(), 1);
    }

    #[test]
    fn sleeps_end_on_the_next_minute_boundary() {
        let ms = Duration::from_millis;
        assert_eq!(until_next_minute(NEW_YEAR * 1000), ms(60_000));
        assert_eq!(until_next_minute(NEW_YEAR * 1000 + 1), ms(59_999));
        assert_eq!(until_next_minute(NEW_YEAR * 1000 + 59_999), ms(1));
        assert_eq!(until_next_minute(NEW_YEAR * 1000 + 30_500), ms(29_500));
        assert_eq!(until_next_minute(-1), ms(1));
        assert_eq!(until_next_minute(-59_999), ms(59_999));
    }

    #[test]
    fn the_loop_can_be_spawned() {
        fn spawnable<F: Future + Send + 'static>(_: F) {}
        spawnable(run(Arc::new(Mutex::new(CronTriggers::new())), |_| {}));
    }

    #[test]
    fn the_wall_clock_is_after_2024() {
        assert!(now_millis() > NEW_YEAR * 1000);
    }
}
