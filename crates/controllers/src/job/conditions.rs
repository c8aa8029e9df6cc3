//! Job conditions as Kubernetes 1.33 writes them: `SuccessCriteriaMet` or
//! `FailureTarget` as soon as the outcome is known, then `Complete` or `Failed` once
//! every pod has stopped; `Suspended` while suspended.

use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The Job succeeded; terminal.
pub const COMPLETE: &str = "Complete";
/// The Job failed; terminal.
pub const FAILED: &str = "Failed";
/// The Job will succeed once its remaining pods stop.
pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
/// The Job will fail once its remaining pods stop.
pub const FAILURE_TARGET: &str = "FailureTarget";
/// The Job is suspended (`True`) or was resumed (`False`).
pub const SUSPENDED: &str = "Suspended";

/// Why a Job has an outcome, with Kubernetes' reason and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Enough pods succeeded.
    CompletionsReached,
    /// More pods failed than `backoffLimit` allows.
    BackoffLimitExceeded,
    /// The Job ran longer than `activeDeadlineSeconds`.
    DeadlineExceeded,
}

impl Outcome {
    /// The condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            Outcome::CompletionsReached => "CompletionsReached",
            Outcome::BackoffLimitExceeded => "BackoffLimitExceeded",
            Outcome::DeadlineExceeded => "DeadlineExceeded",
        }
    }

    /// The condition message.
    pub fn message(self) -> &'static str {
        match self {
            Outcome::CompletionsReached => "Reached expected number of succeeded pods",
            Outcome::BackoffLimitExceeded => "Job has reached the specified backoff limit",
            Outcome::DeadlineExceeded => "Job was active longer than specified deadline",
        }
    }

    /// True for the outcomes that fail the Job.
    pub fn failed(self) -> bool {
        self != Outcome::CompletionsReached
    }

    /// The condition set first (`SuccessCriteriaMet` or `FailureTarget`).
    pub fn target(self) -> &'static str {
        if self.failed() {
            FAILURE_TARGET
        } else {
            SUCCESS_CRITERIA_MET
        }
    }

    /// The terminal condition (`Complete` or `Failed`).
    pub fn terminal(self) -> &'static str {
        if self.failed() { FAILED } else { COMPLETE }
    }

    /// The outcome a target condition's reason names.
    fn from_reason(reason: &str) -> Option<Self> {
        [
            Outcome::CompletionsReached,
            Outcome::BackoffLimitExceeded,
            Outcome::DeadlineExceeded,
        ]
        .into_iter()
        .find(|o| o.reason() == reason)
    }
}

/// The condition of `type_`, if present.
pub fn find<'a>(conditions: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition of `type_` is present and `True`.
pub fn is_true(conditions: &[JobCondition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

/// The outcome already recorded by a `SuccessCriteriaMet` or `FailureTarget` condition.
/// A target whose reason Strata does not know still fails or completes the Job.
pub fn recorded_outcome(conditions: &[JobCondition]) -> Option<Outcome> {
    [FAILURE_TARGET, SUCCESS_CRITERIA_MET]
        .into_iter()
        .filter_map(|t| find(conditions, t).filter(|c| c.status == "True"))
        .map(|c| {
            Outcome::from_reason(c.reason.as_deref().unwrap_or_default()).unwrap_or(
                if c.type_ == FAILURE_TARGET {
                    Outcome::BackoffLimitExceeded
                } else {
                    Outcome::CompletionsReached
                },
            )
        })
        .next()
}

/// Sets the condition `type_` to `status`; the transition and probe times change only
/// when the status, reason or message does. Returns true when something changed.
pub fn set(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let status = if status { "True" } else { "False" };
    let same = |c: &JobCondition| {
        c.status == status
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if same(c) => false,
        Some(c) => {
            if c.status != status {
                c.last_transition_time = Some(Time(now));
            }
            c.status = status.to_string();
            c.reason = Some(reason.to_string());
            c.message = Some(message.to_string());
            c.last_probe_time = Some(Time(now));
            true
        }
        None => {
            conditions.push(JobCondition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
                last_probe_time: Some(Time(now)),
                last_transition_time: Some(Time(now)),
            });
            true
        }
    }
}

/// When the Job finished (`Complete` or `Failed`), or `None` while it runs.
pub fn finished_at(job: &Job) -> Option<Timestamp> {
    let status = job.status.as_ref()?;
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let terminal = [COMPLETE, FAILED]
        .into_iter()
        .filter_map(|t| find(conditions, t))
        .find(|c| c.status == "True")?;
    let transition = terminal.last_transition_time.as_ref().map(|t| t.0);
    let completion = status.completion_time.as_ref().map(|t| t.0);
    Some(
        completion
            .filter(|_| terminal.type_ == COMPLETE)
            .or(transition)
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn set_keeps_times_unless_something_changes() {
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2025-01-01T00:01:00Z".parse().unwrap();
        let mut conditions = Vec::new();
        assert!(set(
            &mut conditions,
            SUSPENDED,
            true,
            "JobSuspended",
            "Job suspended",
            t0
        ));
        assert!(!set(
            &mut conditions,
            SUSPENDED,
            true,
            "JobSuspended",
            "Job suspended",
            t1
        ));
        assert!(set(
            &mut conditions,
            SUSPENDED,
            false,
            "JobResumed",
            "Job resumed",
            t1
        ));
        let c = find(&conditions, SUSPENDED).unwrap();
        assert_eq!(c.last_transition_time, Some(Time(t1)));
        assert!(!is_true(&conditions, SUSPENDED));
    }

    #[test]
    fn recorded_outcomes_come_from_target_conditions() {
        let t0 = Timestamp::UNIX_EPOCH;
        let mut conditions = Vec::new();
        assert_eq!(recorded_outcome(&conditions), None);
        let o = Outcome::DeadlineExceeded;
        set(
            &mut conditions,
            o.target(),
            true,
            o.reason(),
            o.message(),
            t0,
        );
        assert_eq!(recorded_outcome(&conditions), Some(o));
        assert_eq!(o.terminal(), FAILED);
        assert_eq!(Outcome::CompletionsReached.terminal(), COMPLETE);
    }
}
