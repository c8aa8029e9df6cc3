//! The autoscaler's decision, as pure functions over observed concurrency (after Knative's
//! KPA): average in-flight requests over a stable window and a short panic window, divided
//! by the per-instance target; panic mode scales up fast on a burst and never scales down
//! while it lasts; an idle function scales to zero after its idle window.

use std::collections::VecDeque;
use std::time::Duration;

/// The short window that detects bursts.
pub const PANIC_WINDOW: Duration = Duration::from_secs(6);
/// The longest stable window (Knative's default).
pub const MAX_STABLE_WINDOW: Duration = Duration::from_secs(60);
/// Panic when the panic window wants this many times the ready instances.
pub const PANIC_THRESHOLD: f64 = 2.0;

/// Concurrency samples, one per tick, newest last.
#[derive(Debug, Default)]
pub struct Samples {
    values: VecDeque<f64>,
}

impl Samples {
    /// Adds a sample, keeping at most `keep`.
    pub fn push(&mut self, value: f64, keep: usize) {
        self.values.push_back(value);
        while self.values.len() > keep.max(1) {
            self.values.pop_front();
        }
    }

    /// The average of the newest `count` samples (0 when empty).
    pub fn average(&self, count: usize) -> f64 {
        let taken: Vec<f64> = self
            .values
            .iter()
            .rev()
            .take(count.max(1))
            .copied()
            .collect();
        if taken.is_empty() {
            0.0
        } else {
            taken.iter().sum::<f64>() / taken.len() as f64
        }
    }
}

/// What the autoscaler knows at one tick.
#[derive(Debug, Clone, Copy)]
pub struct Inputs {
    /// Average concurrency (in flight + waiting) over the stable window.
    pub stable_concurrency: f64,
    /// Average concurrency over the panic window.
    pub panic_concurrency: f64,
    /// Requests waiting for an instance now.
    pub waiting: u32,
    /// Instances ready now.
    pub ready: u32,
    /// The decision of the previous tick.
    pub previous: u32,
    /// Concurrent requests per instance to aim for.
    pub target: f64,
    /// Fewest instances.
    pub min_scale: u32,
    /// Most instances.
    pub max_scale: u32,
    /// Time since the last request started or finished (zero while requests are in flight).
    pub idle_for: Duration,
    /// Idle time after which the function scales to zero.
    pub scale_to_zero_after: Duration,
    /// True if the previous tick was in panic mode.
    pub panicking: bool,
}

/// The autoscaler's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Instances wanted.
    pub replicas: u32,
    /// True while in panic mode.
    pub panicking: bool,
}

/// Decides how many instances to run.
pub fn decide(inputs: &Inputs) -> Decision {
    let target = inputs.target.max(0.01);
    let want = |concurrency: f64| (concurrency / target).ceil().max(0.0) as u32;
    let stable = want(inputs.stable_concurrency);
    let panic = want(inputs.panic_concurrency);
    let bursting =
        inputs.ready > 0 && f64::from(panic) >= PANIC_THRESHOLD * f64::from(inputs.ready);
    // Panic ends once the stable window no longer wants more than the ready instances.
    let panicking = bursting || (inputs.panicking && stable > inputs.ready);
    let mut replicas = if panicking {
        panic.max(stable).max(inputs.previous)
    } else {
        stable
    };
    if inputs.waiting > 0 {
        replicas = replicas.max(want(f64::from(inputs.waiting)).max(1));
    }
    let idle = inputs.idle_for >= inputs.scale_to_zero_after;
    if replicas == 0 && !idle && inputs.previous > 0 {
        // Recently used: keep one instance until the idle window passes.
        replicas = 1;
    }
    Decision {
        replicas: replicas.clamp(inputs.min_scale, inputs.max_scale.max(inputs.min_scale)),
        panicking,
    }
}

/// The stable window for a function: its idle window, at most [`MAX_STABLE_WINDOW`] and
/// at least [`PANIC_WINDOW`].
pub fn stable_window(scale_to_zero_after: Duration) -> Duration {
    scale_to_zero_after.clamp(PANIC_WINDOW, MAX_STABLE_WINDOW)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            stable_concurrency: 0.0,
            panic_concurrency: 0.0,
            waiting: 0,
            ready: 0,
            previous: 0,
            target: 10.0,
            min_scale: 0,
            max_scale: 10,
            idle_for: Duration::from_secs(3600),
            scale_to_zero_after: Duration::from_secs(60),
            panicking: false,
        }
    }

    #[test]
    fn a_waiting_request_scales_from_zero() {
        let decision = decide(&Inputs {
            waiting: 1,
            idle_for: Duration::ZERO,
            ..inputs()
        });
        assert_eq!(decision.replicas, 1);
        assert_eq!(
            decide(&inputs()).replicas,
            0,
            "idle and nothing waiting: zero"
        );
    }

    #[test]
    fn stable_concurrency_over_target() {
        let decision = decide(&Inputs {
            stable_concurrency: 25.0,
            panic_concurrency: 25.0,
            ready: 3,
            previous: 3,
            idle_for: Duration::ZERO,
            ..inputs()
        });
        assert_eq!(
            decision,
            Decision {
                replicas: 3,
                panicking: false
            }
        );
    }

    #[test]
    fn a_burst_panics_and_panic_never_scales_down() {
        let burst = decide(&Inputs {
            stable_concurrency: 12.0,
            panic_concurrency: 45.0,
            ready: 2,
            previous: 2,
            idle_for: Duration::ZERO,
            ..inputs()
        });
        assert_eq!(
            burst,
            Decision {
                replicas: 5,
                panicking: true
            }
        );
        let calmer = decide(&Inputs {
            stable_concurrency: 30.0,
            panic_concurrency: 5.0,
            ready: 5,
            previous: 5,
            panicking: true,
            idle_for: Duration::ZERO,
            ..inputs()
        });
        assert_eq!(
            calmer,
            Decision {
                replicas: 3,
                panicking: false
            },
            "stable wants fewer than ready: panic over"
        );
        let still = decide(&Inputs {
            stable_concurrency: 60.0,
            panic_concurrency: 5.0,
            ready: 5,
            previous: 7,
            panicking: true,
            idle_for: Duration::ZERO,
            ..inputs()
        });
        assert_eq!(
            still,
            Decision {
                replicas: 7,
                panicking: true
            }
        );
    }

    #[test]
    fn keeps_one_until_idle_then_zero_but_never_below_min() {
        let recent = Inputs {
            previous: 1,
            ready: 1,
            idle_for: Duration::from_secs(10),
            ..inputs()
        };
        assert_eq!(decide(&recent).replicas, 1);
        assert_eq!(
            decide(&Inputs {
                idle_for: Duration::from_secs(61),
                ..recent
            })
            .replicas,
            0
        );
        assert_eq!(
            decide(&Inputs {
                min_scale: 2,
                ..recent
            })
            .replicas,
            2
        );
        let flood = Inputs {
            stable_concurrency: 1000.0,
            panic_concurrency: 1000.0,
            ready: 1,
            previous: 1,
            max_scale: 4,
            idle_for: Duration::ZERO,
            ..inputs()
        };
        assert_eq!(decide(&flood).replicas, 4);
    }

    #[test]
    fn samples_average_the_newest() {
        let mut samples = Samples::default();
        for v in [10.0, 0.0, 2.0, 4.0] {
            samples.push(v, 3);
        }
        assert_eq!(samples.average(2), 3.0);
        assert_eq!(samples.average(10), 2.0);
        assert_eq!(stable_window(Duration::from_secs(2)), PANIC_WINDOW);
        assert_eq!(stable_window(Duration::from_secs(600)), MAX_STABLE_WINDOW);
    }
}
