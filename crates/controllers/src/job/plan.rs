//! The Job's decisions as pure functions of what the cache shows and the time: which
//! pods to create (and with which completion index) or delete, when the Job has
//! succeeded or failed, the status to report and the events to emit. No IO: `super`
//! carries the plan out.
//!
//! Limitation: Strata does not put Kubernetes' `batch.kubernetes.io/job-tracking`
//! finalizer on Job pods, so finished pods are counted while they exist; the counts in
//! the status never go down, but a finished pod deleted (by someone else) before the
//! controller saw it finish is not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::conditions::{self as cond, Outcome};
use super::indexed;
use crate::{pod_control, pods, rank};

/// The retry delays after failed pods: `base · 2^(n-1)` for the n-th failure since
/// the last success, capped at `max` (Kubernetes: 10 s and 6 min).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureBackoff {
    /// The delay after the first failure.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for FailureBackoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(10),
            max: Duration::from_secs(6 * 60),
        }
    }
}

impl FailureBackoff {
    /// The delay before replacing a pod after `failures` consecutive failures.
    pub fn delay(&self, failures: usize) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doublings = u32::try_from(failures - 1).unwrap_or(u32::MAX).min(31);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }
}

/// An event the Job controller reports on the Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// A `Warning` rather than a `Normal` event.
    pub warning: bool,
    /// The reason.
    pub reason: &'static str,
    /// The message.
    pub message: &'static str,
}

/// What to do for the Job now.
#[derive(Debug, Default, PartialEq)]
pub struct Plan<'a> {
    /// Orphans the Job takes.
    pub adopt: Vec<&'a Pod>,
    /// Owned pods its selector no longer selects.
    pub release: Vec<&'a Pod>,
    /// Pods to create: their completion index (Indexed) or `None`.
    pub create: Vec<Option<i32>>,
    /// Pods to delete.
    pub delete: Vec<&'a Pod>,
    /// The status to report.
    pub status: JobStatus,
    /// Events to report.
    pub events: Vec<Event>,
    /// The Job finished longer than `ttlSecondsAfterFinished` ago: delete it.
    pub delete_job: bool,
    /// When to look again though no watch event may come (deadline, back-off, TTL).
    pub requeue_after: Option<Duration>,
}

/// The Job's pods by state.
#[derive(Debug, Default)]
struct Sorted<'a> {
    active: Vec<&'a Pod>,
    terminating: Vec<&'a Pod>,
    succeeded: Vec<&'a Pod>,
    failed: Vec<&'a Pod>,
}

impl<'a> Sorted<'a> {
    fn new(owned: &[&'a Pod]) -> Self {
        let mut sorted = Sorted::default();
        for &pod in owned {
            match pods::phase(pod) {
                "Succeeded" => sorted.succeeded.push(pod),
                "Failed" => sorted.failed.push(pod),
                _ if pods::is_terminating(&pod.metadata) => sorted.terminating.push(pod),
                _ => sorted.active.push(pod),
            }
        }
        sorted
    }

    /// When the next pod may be created: after the back-off for the failures since
    /// the last success, counted from the last failure.
    fn not_before(&self, backoff: &FailureBackoff) -> Option<Timestamp> {
        let last_success = self
            .succeeded
            .iter()
            .filter_map(|p| pods::finished_at(p))
            .max();
        let failures: Vec<Timestamp> = self
            .failed
            .iter()
            .filter_map(|p| pods::finished_at(p))
            .filter(|t| last_success.is_none_or(|s| *t > s))
            .collect();
        let last = failures.iter().max()?;
        let delay = SignedDuration::try_from(backoff.delay(failures.len())).ok()?;
        Some(*last + delay)
    }
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The time from `now` until `at`, if that is in the future.
fn until(now: Timestamp, at: Timestamp) -> Option<Duration> {
    Duration::try_from(at.duration_since(now))
        .ok()
        .filter(|d| !d.is_zero())
}

fn earliest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Decides what the Job does with the pods of its namespace at `now`.
/// `expectations_met` is false while earlier creates or deletes are not yet in the
/// cache: then the Job neither creates nor scales down, and does not finish.
pub fn plan<'a>(
    job: &Job,
    pods: &[&'a Pod],
    now: Timestamp,
    expectations_met: bool,
    backoff: &FailureBackoff,
) -> Plan<'a> {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut plan = Plan {
        status: old.clone(),
        ..Plan::default()
    };
    if let Some(finished) = cond::finished_at(job) {
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let expires = finished + SignedDuration::from_secs(i64::from(ttl));
            plan.requeue_after = until(now, expires);
            plan.delete_job = plan.requeue_after.is_none();
        }
        return plan;
    }
    if pods::is_terminating(&job.metadata) {
        return plan;
    }
    let selector = spec.selector.as_ref().and_then(pods::selector);
    let claimed = pods::claim_pods(&job.metadata, selector.as_ref(), pods);
    plan.adopt = claimed.adopt;
    plan.release = claimed.release;
    let sorted = Sorted::new(&claimed.owned);
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions.unwrap_or(0).max(0);
    let mut completed = BTreeSet::new();
    if indexed {
        completed = indexed::parse(old.completed_indexes.as_deref().unwrap_or(""), completions);
        completed.extend(
            sorted
                .succeeded
                .iter()
                .filter_map(|p| indexed::index_of(p))
                .filter(|i| *i < completions),
        );
    }
    let succeeded = if indexed {
        count(completed.len())
    } else {
        count(sorted.succeeded.len()).max(old.succeeded.unwrap_or(0))
    };
    let failed = count(sorted.failed.len()).max(old.failed.unwrap_or(0));
    let mut conditions = old.conditions.clone().unwrap_or_default();
    let mut start_time = old.start_time.clone();
    let suspended = spec.suspend == Some(true);
    let was_suspended = cond::is_true(&conditions, cond::SUSPENDED);
    if suspended {
        if cond::set(
            &mut conditions,
            cond::SUSPENDED,
            true,
            "JobSuspended",
            "Job suspended",
            now,
        ) {
            plan.events.push(Event {
                warning: false,
                reason: "Suspended",
                message: "Job suspended",
            });
        }
    } else {
        if was_suspended {
            cond::set(
                &mut conditions,
                cond::SUSPENDED,
                false,
                "JobResumed",
                "Job resumed",
                now,
            );
            plan.events.push(Event {
                warning: false,
                reason: "Resumed",
                message: "Job resumed",
            });
            // The deadline counts from the resumption, as in Kubernetes.
            start_time = Some(Time(now));
        }
        start_time.get_or_insert(Time(now));
    }
    let deadline = spec
        .active_deadline_seconds
        .zip(start_time.as_ref())
        .filter(|_| !suspended)
        .map(|(seconds, start)| start.0 + SignedDuration::from_secs(seconds));

    let mut outcome = cond::recorded_outcome(&conditions);
    if outcome.is_none() && !suspended {
        let restarts: i32 = if pod_restart_policy(&spec) == Some("OnFailure") {
            sorted.active.iter().map(|p| pods::restarts(p)).sum()
        } else {
            0
        };
        // Indexed Jobs always have `completions` (validation); a NonIndexed Job
        // without it is a work queue, done when one pod succeeded and none runs.
        let done = if indexed || spec.completions.is_some() {
            succeeded >= completions
        } else {
            succeeded > 0 && sorted.active.is_empty()
        };
        outcome = if failed.saturating_add(restarts) > spec.backoff_limit.unwrap_or(6) {
            Some(Outcome::BackoffLimitExceeded)
        } else if deadline.is_some_and(|d| d <= now) {
            Some(Outcome::DeadlineExceeded)
        } else if done {
            Some(Outcome::CompletionsReached)
        } else {
            None
        };
        if let Some(o) = outcome {
            cond::set(
                &mut conditions,
                o.target(),
                true,
                o.reason(),
                o.message(),
                now,
            );
            if o.failed() {
                plan.events.push(Event {
                    warning: true,
                    reason: o.reason(),
                    message: o.message(),
                });
            }
        }
    }
    let mut completion_time = old.completion_time.clone();
    if let Some(o) = outcome {
        // The outcome is known: stop every pod, and finish once none is left.
        plan.delete = sorted.active.clone();
        if sorted.active.is_empty() && sorted.terminating.is_empty() && expectations_met {
            cond::set(
                &mut conditions,
                o.terminal(),
                true,
                o.reason(),
                o.message(),
                now,
            );
            if !o.failed() {
                completion_time = Some(Time(now));
                plan.events.push(Event {
                    warning: false,
                    reason: "Completed",
                    message: "Job completed",
                });
            }
        }
    } else if suspended {
        plan.delete = sorted.active.clone();
    } else if expectations_met {
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let (create, delete) = if indexed {
            manage_indexed(&sorted.active, &completed, completions, parallelism)
        } else {
            manage_non_indexed(&sorted.active, &spec, succeeded, parallelism)
        };
        plan.delete = delete;
        if !create.is_empty() {
            match sorted.not_before(backoff).and_then(|t| until(now, t)) {
                Some(wait) => plan.requeue_after = Some(wait),
                None => plan.create = create,
            }
        }
    }
    if outcome.is_none() {
        plan.requeue_after = earliest(plan.requeue_after, deadline.and_then(|d| until(now, d)));
    }
    plan.status = JobStatus {
        active: Some(count(sorted.active.len())).filter(|n| *n > 0),
        ready: Some(count(
            sorted.active.iter().filter(|p| pods::is_ready(p)).count(),
        )),
        terminating: Some(count(sorted.terminating.len())),
        succeeded: Some(succeeded).filter(|n| *n > 0),
        failed: Some(failed).filter(|n| *n > 0),
        start_time,
        completion_time,
        completed_indexes: Some(indexed::format(&completed)).filter(|s| !s.is_empty()),
        failed_indexes: None,
        uncounted_terminated_pods: Some(UncountedTerminatedPods::default()),
        conditions: (!conditions.is_empty()).then_some(conditions),
    };
    plan
}

fn pod_restart_policy(spec: &JobSpec) -> Option<&str> {
    spec.template.spec.as_ref()?.restart_policy.as_deref()
}

/// NonIndexed: keep `min(parallelism, completions - succeeded)` pods running; without
/// `completions` (a work queue), `parallelism` until one succeeds, then none new.
fn manage_non_indexed<'a>(
    active: &[&'a Pod],
    spec: &JobSpec,
    succeeded: i32,
    parallelism: i32,
) -> (Vec<Option<i32>>, Vec<&'a Pod>) {
    let running = count(active.len());
    let want = match spec.completions {
        Some(c) => parallelism.min((c - succeeded).max(0)),
        None if succeeded > 0 => running,
        None => parallelism,
    };
    let surplus = usize::try_from(running - want).unwrap_or(0);
    if surplus > 0 {
        let mut victims = active.to_vec();
        rank::deletion_order(&mut victims);
        victims.truncate(surplus.min(pod_control::BURST));
        return (Vec::new(), victims);
    }
    let missing = usize::try_from(want - running).unwrap_or(0);
    (vec![None; missing.min(pod_control::BURST)], Vec::new())
}

/// Indexed: one running pod per index not yet completed, the lowest indexes first, at
/// most `parallelism` at once. Pods without a valid index, of a completed index, or
/// extra pods of one index are deleted.
fn manage_indexed<'a>(
    active: &[&'a Pod],
    completed: &BTreeSet<i32>,
    completions: i32,
    parallelism: i32,
) -> (Vec<Option<i32>>, Vec<&'a Pod>) {
    let mut delete = Vec::new();
    let mut by_index: BTreeMap<i32, Vec<&'a Pod>> = BTreeMap::new();
    for &pod in active {
        match indexed::index_of(pod) {
            Some(i) if i < completions && !completed.contains(&i) => {
                by_index.entry(i).or_default().push(pod)
            }
            _ => delete.push(pod),
        }
    }
    for pods in by_index.values_mut() {
        rank::deletion_order(pods);
        // The best pod is last in deletion order; the others go.
        let keep = pods.len().saturating_sub(1);
        delete.extend(pods.drain(..keep));
    }
    let running = count(by_index.len());
    let want = parallelism.min(completions - count(completed.len()));
    if running > want {
        let surplus = usize::try_from(running - want).unwrap_or(0);
        delete.extend(by_index.values().rev().take(surplus).flatten());
        return (Vec::new(), delete);
    }
    let missing = usize::try_from(want - running).unwrap_or(0);
    let create = (0..completions)
        .filter(|i| !completed.contains(i) && !by_index.contains_key(i))
        .take(missing.min(pod_control::BURST))
        .map(Some)
        .collect();
    (create, delete)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
