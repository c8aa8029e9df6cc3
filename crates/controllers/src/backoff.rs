//! Per-object retry delays for failed reconciles: exponential from [`BASE`] to [`MAX`],
//! reset by a success (Kubernetes' item exponential rate limiter, with a shorter cap
//! because a small cluster has few objects to protect the API server from).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The first retry delay.
pub const BASE: Duration = Duration::from_millis(100);
/// The longest retry delay.
pub const MAX: Duration = Duration::from_secs(60);

/// Failure counts per object key.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Counts a failure of `key` and returns how long to wait before retrying.
    pub fn failed(&self, key: &str) -> Duration {
        let Ok(mut failures) = self.failures.lock() else {
            return MAX;
        };
        let n = failures.entry(key.to_string()).or_insert(0);
        let delay = BASE.saturating_mul(2u32.saturating_pow(*n));
        *n = n.saturating_add(1);
        delay.min(MAX)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let b = Backoff::default();
        assert_eq!(b.failed("a"), BASE);
        assert_eq!(b.failed("a"), BASE * 2);
        assert_eq!(b.failed("a"), BASE * 4);
        assert_eq!(b.failed("b"), BASE);
        for _ in 0..40 {
            b.failed("a");
        }
        assert_eq!(b.failed("a"), MAX);
        b.succeeded("a");
        assert_eq!(b.failed("a"), BASE);
    }
}
