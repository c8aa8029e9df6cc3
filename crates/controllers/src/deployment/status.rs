//! A deployment's status: counts summed over its replica sets, and the `Available` and
//! `Progressing` conditions with Kubernetes' reasons, which `kubectl rollout status`
//! and `kubectl describe` read.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::view::Set;

/// Condition type: the rollout makes progress (or finished, or timed out).
pub const PROGRESSING: &str = "Progressing";
/// Condition type: at least `replicas - maxUnavailable` pods are available.
pub const AVAILABLE: &str = "Available";
/// Condition type: a replica set could not create or delete pods.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// `Progressing` reasons.
pub mod reason {
    /// A new replica set was created for the template.
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    /// An existing replica set matches the template.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// Replicas moved from old to new.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// The rollout completed.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// No progress within `progressDeadlineSeconds`.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// `spec.paused` was set.
    pub const PAUSED: &str = "DeploymentPaused";
    /// `spec.paused` was cleared.
    pub const RESUMED: &str = "DeploymentResumed";
    /// `Available` is true.
    pub const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
    /// `Available` is false.
    pub const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
}

/// A condition with both timestamps at `now`.
pub fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(Time(now)),
        last_update_time: Some(Time(now)),
    }
}

/// Finds the condition of `type_`.
pub fn get<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// Sets `new` like `SetDeploymentCondition`: a condition with the same status and
/// reason is left alone; the same status keeps its transition time.
pub fn set(status: &mut DeploymentStatus, mut new: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(i) = conditions.iter().position(|c| c.type_ == new.type_) {
        let old = &conditions[i];
        if old.status == new.status && old.reason == new.reason {
            return;
        }
        if old.status == new.status {
            new.last_transition_time = old.last_transition_time.clone();
        }
        conditions.remove(i);
    }
    conditions.push(new);
}

/// Removes the condition of `type_`.
pub fn remove(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// Counts over the sets and the `Available` condition (`calculateStatus`). Other
/// conditions and `collisionCount` are carried over from `current`.
pub fn calculate(
    d: &Deployment,
    current: &DeploymentStatus,
    new: Option<&Set>,
    all: &[Set],
    max_unavailable: i32,
    now: Timestamp,
) -> DeploymentStatus {
    let sum = |f: fn(&Set) -> i32| all.iter().map(f).sum::<i32>();
    let available = sum(|s| s.available);
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(sum(|s| s.actual)),
        updated_replicas: Some(new.map_or(0, |s| s.actual)),
        ready_replicas: Some(sum(|s| s.ready)),
        available_replicas: Some(available),
        unavailable_replicas: Some((sum(|s| s.replicas) - available).max(0)),
        collision_count: current.collision_count,
        conditions: current.conditions.clone(),
        terminating_replicas: None,
    };
    let desired = desired(d);
    let cond = if available >= desired - max_unavailable {
        condition(
            AVAILABLE,
            "True",
            reason::MIN_AVAILABLE,
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        condition(
            AVAILABLE,
            "False",
            reason::MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set(&mut status, cond);
    status
}

/// `spec.replicas`, defaulting to 1.
pub fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// `progressDeadlineSeconds`, `None` when unset or "never" (`i32::MAX`).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// True when every desired replica is updated and available (`DeploymentComplete`).
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let desired = desired(d);
    s.updated_replicas == Some(desired)
        && s.replicas == Some(desired)
        && s.available_replicas == Some(desired)
        && s.observed_generation >= d.metadata.generation
}

/// True when `new` moved on from the deployment's recorded status (`DeploymentProgressing`).
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// When the `Progressing` condition passes the deadline; `None` if it cannot time out.
fn deadline(d: &Deployment, status: &DeploymentStatus) -> Option<Timestamp> {
    let seconds = progress_deadline(d)?;
    let cond = get(status, PROGRESSING)?;
    if matches!(
        cond.reason.as_deref(),
        Some(reason::NEW_RS_AVAILABLE | reason::TIMED_OUT)
    ) {
        return None;
    }
    let from = cond.last_update_time.as_ref()?.0;
    Some(from + SignedDuration::from_secs(i64::from(seconds)))
}

/// Updates `Progressing` after a rollout step (`syncRolloutStatus`); returns when to
/// check the deadline again if nothing else happens.
pub fn progress(
    d: &Deployment,
    new_set: Option<&str>,
    status: &mut DeploymentStatus,
    now: Timestamp,
) -> Option<Duration> {
    if progress_deadline(d).is_none() {
        remove(status, PROGRESSING);
        return None;
    }
    let current = get(status, PROGRESSING).cloned();
    let finished = status.replicas == status.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(reason::NEW_RS_AVAILABLE);
    let subject = match new_set {
        Some(name) => format!("ReplicaSet {name:?}"),
        None => format!(
            "Deployment {:?}",
            d.metadata.name.as_deref().unwrap_or_default()
        ),
    };
    if !finished {
        if complete(d, status) {
            let msg = format!("{subject} has successfully progressed.");
            set(
                status,
                condition(PROGRESSING, "True", reason::NEW_RS_AVAILABLE, msg, now),
            );
        } else if progressing(d, status) {
            let mut cond = condition(
                PROGRESSING,
                "True",
                reason::RS_UPDATED,
                format!("{subject} is progressing."),
                now,
            );
            if let Some(old) = current.as_ref().filter(|c| c.status == "True") {
                cond.last_transition_time = old.last_transition_time.clone();
            }
            remove(status, PROGRESSING);
            set(status, cond);
        } else if deadline(d, status).is_some_and(|at| at < now) {
            let msg = format!("{subject} has timed out progressing.");
            set(
                status,
                condition(PROGRESSING, "False", reason::TIMED_OUT, msg, now),
            );
        }
    }
    let at = deadline(d, status)?;
    let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
    Some(wait + Duration::from_millis(500))
}

/// The `Progressing` condition for paused and resumed deployments (`checkPausedConditions`).
pub fn paused(d: &Deployment, status: &mut DeploymentStatus, now: Timestamp) {
    if progress_deadline(d).is_none() {
        return;
    }
    let reason_now = get(status, PROGRESSING).and_then(|c| c.reason.clone());
    if reason_now.as_deref() == Some(reason::TIMED_OUT) {
        return;
    }
    let is_paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let marked = reason_now.as_deref() == Some(reason::PAUSED);
    if is_paused && !marked {
        set(
            status,
            condition(
                PROGRESSING,
                "Unknown",
                reason::PAUSED,
                "Deployment is paused".into(),
                now,
            ),
        );
    } else if !is_paused && marked {
        set(
            status,
            condition(
                PROGRESSING,
                "Unknown",
                reason::RESUMED,
                "Deployment is resumed".into(),
                now,
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentSpec;

    fn deployment(replicas: i32, deadline: i32, status: DeploymentStatus) -> Deployment {
        Deployment {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(deadline),
                ..Default::default()
            }),
            status: Some(status),
        }
    }

    fn counts(replicas: i32, updated: i32, available: i32) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            ready_replicas: Some(available),
            available_replicas: Some(available),
            ..Default::default()
        }
    }

    fn reason_of(s: &DeploymentStatus) -> Option<&str> {
        get(s, PROGRESSING)?.reason.as_deref()
    }

    #[test]
    fn progressing_then_complete() {
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let d = deployment(3, 600, counts(3, 0, 3));
        let mut s = counts(4, 1, 3);
        assert!(progress(&d, Some("web-abc"), &mut s, t0).is_some());
        assert_eq!(reason_of(&s), Some(reason::RS_UPDATED));
        assert_eq!(
            get(&s, PROGRESSING).unwrap().message.as_deref(),
            Some("ReplicaSet \"web-abc\" is progressing.")
        );
        let mut done = counts(3, 3, 3);
        done.conditions = s.conditions.clone();
        assert_eq!(progress(&d, Some("web-abc"), &mut done, t0), None);
        assert_eq!(reason_of(&done), Some(reason::NEW_RS_AVAILABLE));
    }

    #[test]
    fn no_progress_past_the_deadline_times_out() {
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let mut s = counts(1, 1, 0);
        set(
            &mut s,
            condition(PROGRESSING, "True", reason::NEW_RS_CREATED, "x".into(), t0),
        );
        let d = deployment(1, 2, s.clone());
        let wait = progress(
            &d,
            Some("web-abc"),
            &mut s.clone(),
            t0 + SignedDuration::from_secs(1),
        );
        assert_eq!(wait, Some(Duration::from_millis(1500)));
        progress(
            &d,
            Some("web-abc"),
            &mut s,
            t0 + SignedDuration::from_secs(3),
        );
        assert_eq!(reason_of(&s), Some(reason::TIMED_OUT));
        assert_eq!(get(&s, PROGRESSING).unwrap().status, "False");
    }

    #[test]
    fn availability_and_pause_conditions() {
        let t0 = Timestamp::UNIX_EPOCH;
        let d = deployment(3, 600, DeploymentStatus::default());
        let set_of = |available| Set {
            name: "a".into(),
            replicas: 3,
            actual: 3,
            ready: available,
            available,
            created: None,
            revision: 1,
            desired_annotation: None,
            max_annotation: None,
        };
        let s = calculate(&d, &DeploymentStatus::default(), None, &[set_of(2)], 1, t0);
        assert_eq!(get(&s, AVAILABLE).unwrap().status, "True");
        assert_eq!(s.unavailable_replicas, Some(1));
        let s = calculate(&d, &s, None, &[set_of(1)], 1, t0);
        assert_eq!(
            get(&s, AVAILABLE).unwrap().reason.as_deref(),
            Some(reason::MIN_UNAVAILABLE)
        );

        let mut d = d;
        d.spec.as_mut().unwrap().paused = Some(true);
        let mut s = DeploymentStatus::default();
        paused(&d, &mut s, t0);
        assert_eq!(reason_of(&s), Some(reason::PAUSED));
        d.spec.as_mut().unwrap().paused = Some(false);
        paused(&d, &mut s, t0);
        assert_eq!(reason_of(&s), Some(reason::RESUMED));
    }
}
