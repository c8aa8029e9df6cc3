//! The replica set's decisions as pure functions of what the cache shows: which pods
//! to adopt or release, how many to create or which to delete, in what batches, and
//! the status to report. No IO: `super` carries the plan out.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::{pod_control, pods, rank};

/// Condition type set while pods cannot be created or deleted.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// What to do with the replica set's pods now.
#[derive(Debug, Default, PartialEq)]
pub struct Plan<'a> {
    /// Orphans the set takes (pod names).
    pub adopt: Vec<&'a Pod>,
    /// Owned pods the selector no longer selects (pod names).
    pub release: Vec<&'a Pod>,
    /// Active pods the set counts: owned and adopted, not terminating or finished.
    pub active: Vec<&'a Pod>,
    /// Owned pods being deleted.
    pub terminating: usize,
    /// Pods to create.
    pub create: usize,
    /// Pods to delete, best candidates first.
    pub delete: Vec<&'a Pod>,
}

/// Decides what the replica set `rs` does with the pods of its namespace.
/// `expectations_met` is false while earlier creates or deletes are not yet in the
/// cache: then the set claims pods and reports status but neither creates nor deletes.
pub fn plan<'a>(rs: &ReplicaSet, pods: &[&'a Pod], expectations_met: bool) -> Plan<'a> {
    let deleting = pods::is_terminating(&rs.metadata);
    let selector = rs.spec.as_ref().and_then(|s| pods::selector(&s.selector));
    let claimed = pods::claim_pods(&rs.metadata, selector.as_ref(), pods);
    let mut plan = Plan {
        adopt: claimed.adopt,
        release: claimed.release,
        ..Plan::default()
    };
    for pod in claimed.owned {
        if pods::is_terminating(&pod.metadata) {
            plan.terminating += 1;
        } else if pods::is_active(pod) {
            plan.active.push(pod);
        }
    }
    if !expectations_met || deleting {
        return plan;
    }
    let desired = usize::try_from(desired_replicas(rs)).unwrap_or(0);
    let current = plan.active.len();
    if current < desired {
        plan.create = (desired - current).min(pod_control::BURST);
    } else if current > desired {
        let mut candidates = plan.active.clone();
        rank::deletion_order(&mut candidates);
        candidates.truncate((current - desired).min(pod_control::BURST));
        plan.delete = candidates;
    }
    plan
}

/// `spec.replicas`, defaulting to 1 like the API.
pub fn desired_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// Why pods could not be created or deleted, for the `ReplicaFailure` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    /// The API's error message.
    pub message: String,
}

/// The status of `rs` given the active pods it counts, at `now`.
pub fn status(
    rs: &ReplicaSet,
    plan: &Plan<'_>,
    failure: Option<&Failure>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(plan.active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let fully_labeled = count(&|p| {
        let labels = pods::labels(&p.metadata);
        template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    });
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions = old.conditions.unwrap_or_default();
    let existing = conditions.iter().position(|c| c.type_ == REPLICA_FAILURE);
    match (failure, existing) {
        (Some(f), None) => conditions.push(ReplicaSetCondition {
            type_: REPLICA_FAILURE.into(),
            status: "True".into(),
            reason: Some(f.reason.into()),
            message: Some(f.message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        (None, Some(i)) => {
            conditions.remove(i);
        }
        _ => {}
    }
    ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(count(&pods::is_ready)),
        available_replicas: Some(count(&|p| pods::is_available(p, min_ready, now))),
        terminating_replicas: Some(i32::try_from(plan.terminating).unwrap_or(i32::MAX)),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
    }
}

/// When a ready pod that is not yet available (`minReadySeconds`) becomes available:
/// the set checks again then, since no watch event will tell it.
pub fn recheck_after(rs: &ReplicaSet, active: &[&Pod], now: Timestamp) -> Option<Duration> {
    let min_ready = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    pods::becomes_available_in(active.iter().copied(), min_ready, now)
        .map(|d| d + Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        LabelSelector, ObjectMeta, OwnerReference,
    };
    use k8s_openapi::jiff::SignedDuration;

    fn rs(replicas: i32) -> ReplicaSet {
        let labels: std::collections::BTreeMap<String, String> =
            [("app".to_string(), "web".to_string())].into();
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                uid: Some("rs-uid".into()),
                generation: Some(3),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector {
                    match_labels: Some(labels.clone()),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(
                            [
                                ("app".to_string(), "web".to_string()),
                                ("tier".to_string(), "front".to_string()),
                            ]
                            .into(),
                        ),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                min_ready_seconds: None,
            }),
            status: None,
        }
    }

    fn pod(name: &str, owner: Option<&str>, app: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([("app".to_string(), app.to_string())].into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn creates_the_missing_pods() {
        let owned = pod("a", Some("rs-uid"), "web");
        let plan = plan(&rs(3), &[&owned], true);
        assert_eq!(plan.create, 2);
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn unmet_expectations_hold_creates_and_deletes_back() {
        let plan = plan(&rs(3), &[], false);
        assert_eq!(plan.create, 0);
    }

    #[test]
    fn adopts_orphans_releases_strays_and_ignores_others() {
        let orphan = pod("orphan", None, "web");
        let stray = pod("stray", Some("rs-uid"), "db");
        let foreign = pod("foreign", Some("other"), "web");
        let plan = plan(&rs(1), &[&orphan, &stray, &foreign], true);
        assert_eq!(names(&plan.adopt), ["orphan"]);
        assert_eq!(names(&plan.release), ["stray"]);
        assert_eq!(names(&plan.active), ["orphan"]);
        assert_eq!(plan.create, 0);
    }

    #[test]
    fn terminating_pods_are_replaced_but_counted_apart() {
        let mut going = pod("going", Some("rs-uid"), "web");
        going.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let mut done = pod("done", Some("rs-uid"), "web");
        done.status = Some(PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        let set = rs(2);
        let plan = plan(&set, &[&going, &done], true);
        assert_eq!(plan.create, 2);
        assert_eq!(plan.terminating, 1);
        let status = status(&set, &plan, None, Timestamp::UNIX_EPOCH);
        assert_eq!(status.replicas, 0);
        assert_eq!(status.terminating_replicas, Some(1));
    }

    #[test]
    fn scale_down_deletes_the_surplus_in_preference_order() {
        let mut ready = pod("ready", Some("rs-uid"), "web");
        ready.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let pending = pod("pending", Some("rs-uid"), "web");
        let plan = plan(&rs(1), &[&ready, &pending], true);
        assert_eq!(names(&plan.delete), ["pending"]);
    }

    #[test]
    fn status_counts_labels_readiness_availability_and_failures() {
        let mut set = rs(2);
        set.spec.as_mut().unwrap().min_ready_seconds = Some(10);
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let mut ready = pod("ready", Some("rs-uid"), "web");
        ready.metadata.labels = set
            .spec
            .as_ref()
            .unwrap()
            .template
            .as_ref()
            .unwrap()
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone();
        ready.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(t0)),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let plain = pod("plain", Some("rs-uid"), "web");
        let plan = plan(&set, &[&ready, &plain], true);
        let failure = Failure {
            reason: "FailedCreate",
            message: "quota exceeded".into(),
        };
        let early = t0 + SignedDuration::from_secs(5);
        let s = status(&set, &plan, Some(&failure), early);
        assert_eq!(s.replicas, 2);
        assert_eq!(s.fully_labeled_replicas, Some(1));
        assert_eq!(s.ready_replicas, Some(1));
        assert_eq!(s.available_replicas, Some(0));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(
            s.conditions.as_ref().unwrap()[0].reason.as_deref(),
            Some("FailedCreate")
        );
        assert_eq!(
            recheck_after(&set, &plan.active, early),
            Some(Duration::from_millis(5100))
        );
        set.status = Some(s);
        let later = status(&set, &plan, None, t0 + SignedDuration::from_secs(10));
        assert_eq!(later.available_replicas, Some(1));
        assert_eq!(later.conditions, None);
    }
}
