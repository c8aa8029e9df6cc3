//! Unit tests of [`plan`](super::plan): one sync at a time, no cluster.
#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::{Value, json};

fn t(seconds: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_700_000_000 + seconds)
}

fn job(spec: Value) -> Job {
    let mut full = json!({
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "j-uid"}},
        "backoffLimit": 6,
        "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "j-uid"}},
                     "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}},
    });
    if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        full.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "metadata": {"name": "pi", "namespace": "default", "uid": "j-uid"},
        "spec": full,
    }))
    .unwrap()
}

/// A pod of the Job in `phase`, finished (or created) at `at`, with completion `index`.
fn pod(name: &str, phase: &str, at: Timestamp, index: Option<i32>) -> Pod {
    let mut annotations = serde_json::Map::new();
    if let Some(i) = index {
        annotations.insert(
            strata_api::job::COMPLETION_INDEX.into(),
            json!(i.to_string()),
        );
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "namespace": "default",
                     "creationTimestamp": t(0).to_string(),
                     "labels": {"batch.kubernetes.io/controller-uid": "j-uid"},
                     "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "pi",
                                          "uid": "j-uid", "controller": true}]},
        "status": {"phase": phase, "containerStatuses": [{"name": "c", "image": "x", "imageID": "",
            "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "finishedAt": at.to_string()}}}]},
    }))
    .unwrap()
}

fn running(name: &str) -> Pod {
    let mut p = pod(name, "Running", t(0), None);
    p.status.as_mut().unwrap().container_statuses = None;
    p
}

fn with_status(mut j: Job, plan: &Plan<'_>) -> Job {
    j.status = Some(plan.status.clone());
    j
}

fn condition(plan: &Plan<'_>, type_: &str) -> Option<(String, String)> {
    let c = cond::find(plan.status.conditions.as_deref()?, type_)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default()))
}

const BACKOFF: FailureBackoff = FailureBackoff {
    base: Duration::from_secs(10),
    max: Duration::from_secs(360),
};

#[test]
fn failure_backoff_doubles_to_the_cap() {
    let delays: Vec<u64> = (0..8).map(|n| BACKOFF.delay(n).as_secs()).collect();
    assert_eq!(delays, [0, 10, 20, 40, 80, 160, 320, 360]);
    assert_eq!(BACKOFF.delay(usize::MAX), BACKOFF.max);
}

#[test]
fn runs_parallelism_pods_until_completions_then_completes() {
    let j = job(json!({"completions": 3, "parallelism": 2}));
    let first = plan(&j, &[], t(0), true, &BACKOFF);
    assert_eq!(first.create, [None, None]);
    assert_eq!(first.status.start_time, Some(Time(t(0))));
    let j = with_status(j, &first);

    let (a, b) = (pod("a", "Succeeded", t(5), None), running("b"));
    let second = plan(&j, &[&a, &b], t(6), true, &BACKOFF);
    assert_eq!(second.create, [None], "one left to do besides b");
    assert_eq!(second.status.succeeded, Some(1));
    assert_eq!(second.status.active, Some(1));
    let j = with_status(j, &second);

    let (b, c) = (
        pod("b", "Succeeded", t(7), None),
        pod("c", "Succeeded", t(8), None),
    );
    let done = plan(&j, &[&a, &b, &c], t(9), true, &BACKOFF);
    assert!(done.create.is_empty());
    assert_eq!(
        condition(&done, cond::SUCCESS_CRITERIA_MET).unwrap().1,
        "CompletionsReached"
    );
    assert_eq!(condition(&done, cond::COMPLETE).unwrap().0, "True");
    assert_eq!(done.status.completion_time, Some(Time(t(9))));
    assert_eq!(done.events.last().unwrap().reason, "Completed");
}

#[test]
fn success_waits_for_remaining_pods_to_stop() {
    let j = job(json!({"completions": 1, "parallelism": 2}));
    let (a, b) = (pod("a", "Succeeded", t(5), None), running("b"));
    let p = plan(&j, &[&a, &b], t(6), true, &BACKOFF);
    assert_eq!(p.delete.len(), 1, "the surplus pod is stopped");
    assert_eq!(condition(&p, cond::SUCCESS_CRITERIA_MET).unwrap().0, "True");
    assert_eq!(condition(&p, cond::COMPLETE), None);
}

#[test]
fn a_work_queue_finishes_when_one_succeeded_and_none_runs() {
    let j = job(json!({"parallelism": 2}));
    assert_eq!(plan(&j, &[], t(0), true, &BACKOFF).create.len(), 2);
    let (a, b) = (pod("a", "Succeeded", t(5), None), running("b"));
    let waiting = plan(&j, &[&a, &b], t(6), true, &BACKOFF);
    assert!(waiting.create.is_empty() && waiting.delete.is_empty());
    assert_eq!(condition(&waiting, cond::COMPLETE), None);
    let b = pod("b", "Succeeded", t(7), None);
    let done = plan(&j, &[&a, &b], t(8), true, &BACKOFF);
    assert_eq!(condition(&done, cond::COMPLETE).unwrap().0, "True");
}

#[test]
fn failed_pods_are_replaced_after_an_exponential_backoff() {
    let j = job(json!({"completions": 1}));
    let f1 = pod("f1", "Failed", t(100), None);
    let early = plan(&j, &[&f1], t(105), true, &BACKOFF);
    assert!(early.create.is_empty());
    assert_eq!(early.requeue_after, Some(Duration::from_secs(5)));
    assert_eq!(early.status.failed, Some(1));
    assert_eq!(plan(&j, &[&f1], t(110), true, &BACKOFF).create, [None]);
    // Two failures since the last success: 20 s from the last one.
    let f2 = pod("f2", "Failed", t(120), None);
    assert_eq!(
        plan(&j, &[&f1, &f2], t(130), true, &BACKOFF).requeue_after,
        Some(Duration::from_secs(10))
    );
}

#[test]
fn too_many_failures_fail_the_job_once_its_pods_stopped() {
    let j = job(json!({"completions": 2, "parallelism": 2, "backoffLimit": 1}));
    let (f1, f2, r) = (
        pod("f1", "Failed", t(1), None),
        pod("f2", "Failed", t(2), None),
        running("r"),
    );
    let target = plan(&j, &[&f1, &f2, &r], t(3), true, &BACKOFF);
    assert_eq!(
        condition(&target, cond::FAILURE_TARGET).unwrap().1,
        "BackoffLimitExceeded"
    );
    assert_eq!(target.delete.len(), 1);
    assert!(target.create.is_empty());
    assert_eq!(condition(&target, cond::FAILED), None);
    assert!(
        target
            .events
            .iter()
            .any(|e| e.warning && e.reason == "BackoffLimitExceeded")
    );
    let j = with_status(j, &target);
    let failed = plan(&j, &[&f1, &f2], t(4), true, &BACKOFF);
    assert_eq!(
        condition(&failed, cond::FAILED).unwrap(),
        ("True".into(), "BackoffLimitExceeded".into())
    );
    assert_eq!(failed.status.completion_time, None);
}

#[test]
fn the_deadline_fails_the_job_and_is_awaited() {
    let j = job(json!({"completions": 1, "activeDeadlineSeconds": 30}));
    let r = running("r");
    let first = plan(&j, &[&r], t(0), true, &BACKOFF);
    assert_eq!(first.requeue_after, Some(Duration::from_secs(30)));
    let j = with_status(j, &first);
    let late = plan(&j, &[&r], t(30), true, &BACKOFF);
    assert_eq!(
        condition(&late, cond::FAILURE_TARGET).unwrap().1,
        "DeadlineExceeded"
    );
    assert_eq!(late.delete.len(), 1);
    let j = with_status(j, &late);
    let failed = plan(&j, &[], t(31), true, &BACKOFF);
    assert_eq!(
        condition(&failed, cond::FAILED).unwrap().1,
        "DeadlineExceeded"
    );
}

#[test]
fn suspending_stops_pods_and_resuming_restarts_the_clock() {
    let j = job(json!({"completions": 1, "suspend": true}));
    let r = running("r");
    let suspended = plan(&j, &[&r], t(0), true, &BACKOFF);
    assert_eq!(suspended.delete.len(), 1);
    assert!(suspended.create.is_empty());
    assert_eq!(condition(&suspended, cond::SUSPENDED).unwrap().0, "True");
    assert_eq!(
        suspended.status.start_time, None,
        "a Job suspended at creation never started"
    );
    let mut j = with_status(j, &suspended);
    j.spec.as_mut().unwrap().suspend = Some(false);
    let resumed = plan(&j, &[], t(50), true, &BACKOFF);
    assert_eq!(
        condition(&resumed, cond::SUSPENDED).unwrap(),
        ("False".into(), "JobResumed".into())
    );
    assert_eq!(resumed.status.start_time, Some(Time(t(50))));
    assert_eq!(resumed.create, [None]);
    assert_eq!(resumed.events[0].reason, "Resumed");
}

#[test]
fn indexed_jobs_run_the_lowest_missing_indexes_once_each() {
    let j = job(json!({"completions": 5, "parallelism": 3, "completionMode": "Indexed"}));
    let first = plan(&j, &[], t(0), true, &BACKOFF);
    assert_eq!(first.create, [Some(0), Some(1), Some(2)]);

    let done0 = pod("p0", "Succeeded", t(1), Some(0));
    let mut dup_a = running("p1a");
    let mut dup_b = running("p1b");
    for p in [&mut dup_a, &mut dup_b] {
        p.metadata.annotations = Some(
            [(
                strata_api::job::COMPLETION_INDEX.to_string(),
                "1".to_string(),
            )]
            .into(),
        );
    }
    let mut stray = running("stray");
    stray.metadata.annotations = None;
    let mut j = with_status(j, &first);
    j.status.as_mut().unwrap().completed_indexes = Some("3".into());
    let p = plan(&j, &[&done0, &dup_a, &dup_b, &stray], t(2), true, &BACKOFF);
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0,3"));
    assert_eq!(p.status.succeeded, Some(2));
    let deleted: BTreeSet<String> = p
        .delete
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.contains("stray"));
    // Index 1 runs; 2 and 4 are missing and parallelism allows both.
    assert_eq!(p.create, [Some(2), Some(4)]);
}

#[test]
fn an_indexed_job_completes_when_every_index_did() {
    let j = job(json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed"}));
    let (a, b) = (
        pod("a", "Succeeded", t(1), Some(0)),
        pod("b", "Succeeded", t(2), Some(1)),
    );
    let p = plan(&j, &[&a, &b], t(3), true, &BACKOFF);
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0-1"));
    assert_eq!(condition(&p, cond::COMPLETE).unwrap().0, "True");
}

#[test]
fn unmet_expectations_hold_creates_and_completion_back() {
    let j = job(json!({"completions": 1}));
    assert!(plan(&j, &[], t(0), false, &BACKOFF).create.is_empty());
    let a = pod("a", "Succeeded", t(1), None);
    let p = plan(&j, &[&a], t(2), false, &BACKOFF);
    assert_eq!(condition(&p, cond::SUCCESS_CRITERIA_MET).unwrap().0, "True");
    assert_eq!(condition(&p, cond::COMPLETE), None);
}

#[test]
fn a_finished_job_is_deleted_after_its_ttl() {
    let j = job(json!({"completions": 1, "ttlSecondsAfterFinished": 60}));
    let a = pod("a", "Succeeded", t(1), None);
    let done = plan(&j, &[&a], t(10), true, &BACKOFF);
    let j = with_status(j, &done);
    let early = plan(&j, &[&a], t(40), true, &BACKOFF);
    assert!(!early.delete_job);
    assert_eq!(early.requeue_after, Some(Duration::from_secs(30)));
    assert_eq!(
        early.status,
        j.status.clone().unwrap(),
        "a finished Job's status stays"
    );
    assert!(plan(&j, &[&a], t(70), true, &BACKOFF).delete_job);
}
