//! Startup, liveness and readiness probes of one running container attempt: a task per
//! probe runs its action every period and turns results into a verdict with the
//! success/failure thresholds, like the kubelet's probe workers. The pod worker reads the
//! verdicts (readiness into the status; failed liveness or startup kills the container)
//! and drops the probes when the attempt ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ObjectReference, Probe};
use strata_client::events::EventType;
use tokio::task::JoinHandle;

use super::actions::{self, Action, Target};
use crate::Context;

/// The three kinds of probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Holds the other probes back until the container has started.
    Startup,
    /// Restarts the container when it fails.
    Liveness,
    /// Takes the container out of service when it fails.
    Readiness,
}

impl Kind {
    fn title(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// A probe's timing fields with Kubernetes' defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Wait this long after the container started before the first probe.
    pub initial_delay: Duration,
    /// Probe this often.
    pub period: Duration,
    /// Give one probe this long.
    pub timeout: Duration,
    /// Successes in a row that make a failed probe succeed.
    pub success_threshold: u32,
    /// Failures in a row that make a succeeding probe fail.
    pub failure_threshold: u32,
}

impl Timings {
    /// The timings of `probe` (defaults: 0 s delay, 10 s period, 1 s timeout, thresholds
    /// 1 and 3; zero or negative values take the default).
    pub fn of(probe: &Probe) -> Self {
        let positive = |v: Option<i32>, default: u32| {
            v.and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(default)
        };
        Self {
            initial_delay: Duration::from_secs(
                probe.initial_delay_seconds.unwrap_or(0).max(0) as u64
            ),
            period: Duration::from_secs(positive(probe.period_seconds, 10).into()),
            timeout: Duration::from_secs(positive(probe.timeout_seconds, 1).into()),
            success_threshold: positive(probe.success_threshold, 1),
            failure_threshold: positive(probe.failure_threshold, 3),
        }
    }
}

/// A probe's verdict so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet.
    Unknown,
    /// Succeeding.
    Success,
    /// Failing, with the last failure's message.
    Failure(String),
}

/// Turns single results into a verdict: it flips only after `threshold` equal results in
/// a row.
#[derive(Debug, Clone)]
pub struct Tracker {
    timings: Timings,
    last_ok: Option<bool>,
    run: u32,
    verdict: Verdict,
}

impl Tracker {
    /// A tracker starting at `initial` (readiness starts failing, liveness succeeding,
    /// startup unknown).
    pub fn new(timings: Timings, initial: Verdict) -> Self {
        Self {
            timings,
            last_ok: None,
            run: 0,
            verdict: initial,
        }
    }

    /// Records one result and returns the verdict.
    pub fn record(&mut self, result: Result<(), String>) -> &Verdict {
        let ok = result.is_ok();
        if self.last_ok == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last_ok = Some(ok);
            self.run = 1;
        }
        match result {
            Ok(()) if self.run >= self.timings.success_threshold => self.verdict = Verdict::Success,
            Err(message) if self.run >= self.timings.failure_threshold => {
                self.verdict = Verdict::Failure(message)
            }
            _ => {}
        }
        &self.verdict
    }
}

/// What the probes of a container attempt concluded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdicts {
    /// The startup probe passed (or there is none).
    pub started: bool,
    /// The readiness probe passes (or there is none and the container started).
    pub ready: bool,
    /// Why the container must be restarted: a failed liveness or startup probe.
    pub kill: Option<String>,
}

/// The running probes of one container attempt; dropping it stops them.
pub struct ContainerProbes {
    /// The attempt they probe.
    pub attempt: u32,
    verdicts: Arc<Mutex<Verdicts>>,
    tasks: Vec<JoinHandle<()>>,
    /// The kill verdict was acted on.
    pub killing: bool,
}

impl Drop for ContainerProbes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// True when the container has any probe.
pub fn has_probes(container: &Container) -> bool {
    container.startup_probe.is_some()
        || container.liveness_probe.is_some()
        || container.readiness_probe.is_some()
}

impl ContainerProbes {
    /// Starts the probes of `container`'s attempt `attempt`, which has been running for
    /// `running_for`. Events about failures name `reference`.
    pub fn start(
        ctx: Arc<Context>,
        container: &Container,
        attempt: u32,
        target: Target,
        running_for: Duration,
        reference: ObjectReference,
    ) -> Self {
        let verdicts = Arc::new(Mutex::new(Verdicts {
            started: container.startup_probe.is_none(),
            ready: container.readiness_probe.is_none() && container.startup_probe.is_none(),
            kill: None,
        }));
        let probes = [
            (Kind::Startup, &container.startup_probe),
            (Kind::Liveness, &container.liveness_probe),
            (Kind::Readiness, &container.readiness_probe),
        ];
        let tasks = probes
            .into_iter()
            .filter_map(|(kind, probe)| Some((kind, probe.as_ref()?)))
            .map(|(kind, probe)| {
                let task = ProbeTask {
                    ctx: ctx.clone(),
                    kind,
                    timings: Timings::of(probe),
                    action: Action::of_probe(probe, container).map_err(|f| f.0),
                    target: target.clone(),
                    verdicts: verdicts.clone(),
                    reference: reference.clone(),
                    container: container.name.clone(),
                    has_readiness: container.readiness_probe.is_some(),
                };
                tokio::spawn(task.run(running_for))
            })
            .collect();
        Self {
            attempt,
            verdicts,
            tasks,
            killing: false,
        }
    }

    /// The verdicts so far.
    pub fn verdicts(&self) -> Verdicts {
        self.verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

struct ProbeTask {
    ctx: Arc<Context>,
    kind: Kind,
    timings: Timings,
    action: Result<Action, String>,
    target: Target,
    verdicts: Arc<Mutex<Verdicts>>,
    reference: ObjectReference,
    container: String,
    has_readiness: bool,
}

impl ProbeTask {
    fn update(&self, change: impl FnOnce(&mut Verdicts)) -> Verdicts {
        let mut verdicts = self
            .verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut verdicts);
        verdicts.clone()
    }

    async fn run(self, running_for: Duration) {
        tokio::time::sleep(self.timings.initial_delay.saturating_sub(running_for)).await;
        let initial = match self.kind {
            Kind::Startup => Verdict::Unknown,
            Kind::Liveness => Verdict::Success,
            Kind::Readiness => Verdict::Failure(String::new()),
        };
        let mut tracker = Tracker::new(self.timings, initial);
        loop {
            // Liveness and readiness wait for the startup probe.
            if self.kind != Kind::Startup && !self.update(|_| {}).started {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let result = match &self.action {
                Ok(action) => actions::run(action, &self.target, self.timings.timeout)
                    .await
                    .map_err(|f| f.0),
                Err(message) => Err(message.clone()),
            };
            if let Err(message) = &result {
                let text = format!("{} probe failed: {message}", self.kind.title());
                self.ctx
                    .recorder
                    .publish(&self.reference, EventType::Warning, "Unhealthy", &text)
                    .await;
            }
            let verdict = tracker.record(result).clone();
            let kind = self.kind;
            let has_readiness = self.has_readiness;
            let done = match (kind, verdict) {
                (Kind::Startup, Verdict::Success) => {
                    self.update(|v| {
                        v.started = true;
                        v.ready = v.ready || !has_readiness;
                    });
                    true
                }
                (Kind::Startup | Kind::Liveness, Verdict::Failure(message)) => {
                    let why = format!(
                        "Container {} failed {} probe, will be restarted: {message}",
                        self.container,
                        kind.title().to_lowercase(),
                    );
                    self.update(|v| v.kill = Some(why));
                    true
                }
                (Kind::Readiness, verdict) => {
                    self.update(|v| v.ready = verdict == Verdict::Success);
                    false
                }
                _ => false,
            };
            if done {
                return;
            }
            tokio::time::sleep(self.timings.period).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(success: u32, failure: u32) -> Timings {
        Timings {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn defaults_are_kubernetes_ones() {
        let t = Timings::of(&Probe::default());
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        let custom = Timings::of(&Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(0),
            failure_threshold: Some(1),
            ..Default::default()
        });
        assert_eq!(custom.initial_delay, Duration::from_secs(5));
        assert_eq!(custom.period, Duration::from_secs(10));
        assert_eq!(custom.failure_threshold, 1);
    }

    #[test]
    fn verdicts_flip_only_after_thresholds() {
        let mut liveness = Tracker::new(timings(1, 3), Verdict::Success);
        assert_eq!(liveness.record(Err("a".into())), &Verdict::Success);
        assert_eq!(liveness.record(Err("b".into())), &Verdict::Success);
        // A success in between starts the count again.
        assert_eq!(liveness.record(Ok(())), &Verdict::Success);
        assert_eq!(liveness.record(Err("c".into())), &Verdict::Success);
        assert_eq!(liveness.record(Err("d".into())), &Verdict::Success);
        assert_eq!(
            liveness.record(Err("e".into())),
            &Verdict::Failure("e".into())
        );

        let mut readiness = Tracker::new(timings(2, 1), Verdict::Failure(String::new()));
        assert_eq!(readiness.record(Ok(())), &Verdict::Failure(String::new()));
        assert_eq!(readiness.record(Ok(())), &Verdict::Success);
        assert_eq!(
            readiness.record(Err("x".into())),
            &Verdict::Failure("x".into())
        );
    }
}
