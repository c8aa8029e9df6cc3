//! Per-function usage metering: invocations, errors, cold starts, a duration histogram,
//! memory peak and GB-seconds billed the way cloud providers bill them (each invocation's
//! duration rounded up to the millisecond, times the configured memory), plus a per-minute
//! window for "usage since", and the Prometheus text exposition of all of it.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Upper bounds (seconds) of the duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];
/// Minutes of per-minute history kept for `usage --since`.
pub const WINDOW_MINUTES: usize = 24 * 60;

/// One finished invocation.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// Wall-clock duration.
    pub duration: Duration,
    /// True when the function failed (trap, timeout, memory, exit, 5xx from a backend).
    pub error: bool,
    /// True when the invocation had to start the function (scale from zero).
    pub cold: bool,
    /// Peak memory in bytes, when known.
    pub memory_peak: u64,
}

/// Totals of one function (or of a window of its history).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageSnapshot {
    /// Invocations finished.
    pub invocations: u64,
    /// Invocations that failed.
    pub errors: u64,
    /// Invocations that started the function.
    pub cold_starts: u64,
    /// Sum of durations in milliseconds (rounded up per invocation).
    pub billed_milliseconds: u64,
    /// Sum over invocations of billed milliseconds × configured MiB.
    pub mib_milliseconds: u64,
    /// The largest memory any invocation used, in bytes.
    pub memory_peak_bytes: u64,
    /// Seconds since the Unix epoch of the last invocation, if any.
    pub last_invoked: Option<u64>,
    /// Cumulative-free bucket counts matching [`DURATION_BUCKETS`], plus the overflow.
    pub buckets: Vec<u64>,
    /// Sum of exact durations in seconds (the histogram's `_sum`).
    pub duration_seconds: f64,
}

impl UsageSnapshot {
    /// GB-seconds billed: MiB-milliseconds / 1024 / 1000.
    pub fn gb_seconds(&self) -> f64 {
        self.mib_milliseconds as f64 / 1024.0 / 1000.0
    }

    /// GB-seconds as the decimal string the Function status carries (six decimals).
    pub fn gb_seconds_text(&self) -> String {
        format!("{:.6}", self.gb_seconds())
    }

    fn add(&mut self, other: &UsageSnapshot) {
        self.invocations += other.invocations;
        self.errors += other.errors;
        self.cold_starts += other.cold_starts;
        self.billed_milliseconds += other.billed_milliseconds;
        self.mib_milliseconds += other.mib_milliseconds;
        self.memory_peak_bytes = self.memory_peak_bytes.max(other.memory_peak_bytes);
        self.last_invoked = self.last_invoked.max(other.last_invoked);
        self.duration_seconds += other.duration_seconds;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }
}

/// The meter of one function.
#[derive(Debug)]
pub struct Meter {
    memory_mib: u64,
    state: Mutex<MeterState>,
}

#[derive(Debug, Default)]
struct MeterState {
    total: UsageSnapshot,
    /// (minute since epoch, usage in that minute), oldest first.
    minutes: VecDeque<(u64, UsageSnapshot)>,
}

impl Meter {
    /// A meter billing `memory_bytes` per invocation, starting from `seed` (totals kept
    /// from an earlier run, e.g. the Function's status).
    pub fn new(memory_bytes: u64, seed: UsageSnapshot) -> Self {
        let mut total = seed;
        total.buckets.resize(DURATION_BUCKETS.len() + 1, 0);
        Self {
            memory_mib: memory_bytes.div_ceil(1 << 20).max(1),
            state: Mutex::new(MeterState {
                total,
                minutes: VecDeque::new(),
            }),
        }
    }

    /// Adds one invocation, finished now.
    pub fn record(&self, record: Record) {
        self.record_at(record, SystemTime::now());
    }

    /// Adds one invocation that finished at `at`.
    pub fn record_at(&self, record: Record, at: SystemTime) {
        let seconds = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let billed_ms = u64::try_from(record.duration.as_nanos().div_ceil(1_000_000))
            .unwrap_or(u64::MAX)
            .max(1);
        let mut one = UsageSnapshot {
            invocations: 1,
            errors: u64::from(record.error),
            cold_starts: u64::from(record.cold),
            billed_milliseconds: billed_ms,
            mib_milliseconds: billed_ms.saturating_mul(self.memory_mib),
            memory_peak_bytes: record.memory_peak,
            last_invoked: Some(seconds),
            buckets: vec![0; DURATION_BUCKETS.len() + 1],
            duration_seconds: record.duration.as_secs_f64(),
        };
        let secs = record.duration.as_secs_f64();
        let bucket = DURATION_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(DURATION_BUCKETS.len());
        one.buckets[bucket] = 1;
        let minute = seconds / 60;
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.total.add(&one);
        match state.minutes.back_mut() {
            Some((last, usage)) if *last == minute => usage.add(&one),
            _ => {
                state.minutes.push_back((minute, one));
                while state.minutes.len() > WINDOW_MINUTES {
                    state.minutes.pop_front();
                }
            }
        }
    }

    /// Totals since the meter started (including its seed).
    pub fn total(&self) -> UsageSnapshot {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.total.clone()
    }

    /// Usage in the minutes that began at or after `since` (per-minute resolution, at most
    /// [`WINDOW_MINUTES`] back, this process's lifetime only).
    pub fn since(&self, since: SystemTime) -> UsageSnapshot {
        let first = since
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            / 60;
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut usage = UsageSnapshot {
            buckets: vec![0; DURATION_BUCKETS.len() + 1],
            ..UsageSnapshot::default()
        };
        for (_, minute) in state.minutes.iter().filter(|(m, _)| *m >= first) {
            usage.add(minute);
        }
        usage
    }
}

/// A counter's metric name, help text and value.
type Counter = (&'static str, &'static str, fn(&UsageSnapshot) -> f64);

/// Renders the Prometheus text exposition for `functions` (namespace, name, usage).
pub fn prometheus(functions: &[(String, String, UsageSnapshot)]) -> String {
    let mut out = String::new();
    let counters: [Counter; 4] = [
        (
            "strata_function_invocations_total",
            "Invocations finished.",
            |u| u.invocations as f64,
        ),
        (
            "strata_function_errors_total",
            "Invocations that failed.",
            |u| u.errors as f64,
        ),
        (
            "strata_function_cold_starts_total",
            "Invocations that started the function.",
            |u| u.cold_starts as f64,
        ),
        (
            "strata_function_gb_seconds_total",
            "GB-seconds billed (duration rounded up to 1 ms x configured memory).",
            |u| u.gb_seconds(),
        ),
    ];
    for (metric, help, value) in counters {
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} counter");
        for (namespace, name, usage) in functions {
            let _ = writeln!(
                out,
                "{metric}{{namespace=\"{namespace}\",function=\"{name}\"}} {}",
                value(usage)
            );
        }
    }
    let metric = "strata_function_memory_peak_bytes";
    let _ = writeln!(
        out,
        "# HELP {metric} Largest memory an invocation used.\n# TYPE {metric} gauge"
    );
    for (namespace, name, usage) in functions {
        let _ = writeln!(
            out,
            "{metric}{{namespace=\"{namespace}\",function=\"{name}\"}} {}",
            usage.memory_peak_bytes
        );
    }
    let metric = "strata_function_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {metric} Invocation duration.\n# TYPE {metric} histogram"
    );
    for (namespace, name, usage) in functions {
        let labels = format!("namespace=\"{namespace}\",function=\"{name}\"");
        let mut cumulative = 0;
        for (i, bound) in DURATION_BUCKETS.iter().enumerate() {
            cumulative += usage.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "{metric}_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{metric}_bucket{{{labels},le=\"+Inf\"}} {}",
            usage.invocations
        );
        let _ = writeln!(out, "{metric}_sum{{{labels}}} {}", usage.duration_seconds);
        let _ = writeln!(out, "{metric}_count{{{labels}}} {}", usage.invocations);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ms: u64, error: bool, cold: bool) -> Record {
        Record {
            duration: Duration::from_micros(ms * 1000 - 300),
            error,
            cold,
            memory_peak: 65536,
        }
    }

    #[test]
    fn bills_rounded_milliseconds_times_memory() {
        let meter = Meter::new(128 << 20, UsageSnapshot::default());
        meter.record(rec(3, false, true));
        meter.record(rec(1, true, false));
        let total = meter.total();
        assert_eq!(total.invocations, 2);
        assert_eq!(total.errors, 1);
        assert_eq!(total.cold_starts, 1);
        // 2.7 ms -> 3 ms, 0.7 ms -> 1 ms; 4 ms x 128 MiB.
        assert_eq!(total.billed_milliseconds, 4);
        assert_eq!(total.mib_milliseconds, 512);
        assert_eq!(total.gb_seconds_text(), "0.000500");
        assert_eq!(total.buckets.iter().sum::<u64>(), 2);
    }

    #[test]
    fn seed_continues_totals_and_window_counts_recent_minutes() {
        let seed = UsageSnapshot {
            invocations: 10,
            ..UsageSnapshot::default()
        };
        let meter = Meter::new(64 << 20, seed);
        let now = SystemTime::now();
        meter.record_at(rec(2, false, false), now - Duration::from_secs(3600));
        meter.record_at(rec(2, false, false), now);
        assert_eq!(meter.total().invocations, 12);
        assert_eq!(meter.since(now - Duration::from_secs(600)).invocations, 1);
        assert_eq!(meter.since(now - Duration::from_secs(7200)).invocations, 2);
    }

    #[test]
    fn prometheus_histogram_is_cumulative() {
        let meter = Meter::new(128 << 20, UsageSnapshot::default());
        meter.record(rec(1, false, false));
        meter.record(rec(50, false, false));
        let text = prometheus(&[("default".into(), "hello".into(), meter.total())]);
        assert!(text.contains(
            "strata_function_invocations_total{namespace=\"default\",function=\"hello\"} 2"
        ));
        assert!(text.contains("strata_function_duration_seconds_bucket{namespace=\"default\",function=\"hello\",le=\"0.001\"} 1"));
        assert!(text.contains("strata_function_duration_seconds_bucket{namespace=\"default\",function=\"hello\",le=\"0.05\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 2"));
    }
}
