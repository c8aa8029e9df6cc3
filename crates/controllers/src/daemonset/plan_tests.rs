//! Unit tests of [`plan`](super::plan): one sync at a time, no cluster.
#![allow(clippy::unwrap_used)]

use super::*;
use serde_json::{Value, json};

fn ds(strategy: Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 2},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": strategy,
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"nodeSelector": {"role": "worker"},
                                  "containers": [{"name": "c", "image": "x"}]}},
        },
    }))
    .unwrap()
}

fn node(name: &str, role: &str, taints: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"role": role}},
        "spec": {"taints": taints},
    }))
    .unwrap()
}

fn pod(name: &str, node: &str, hash: &str, ready: bool, created: i64) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "uid": format!("uid-{name}"), "namespace": "default",
                     "creationTimestamp": Timestamp::from_second(created).unwrap().to_string(),
                     "labels": {"app": "agent", "controller-revision-hash": hash},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                          "name": "agent", "uid": "ds-uid", "controller": true}]},
        "spec": {"nodeName": node, "containers": []},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    }))
    .unwrap()
}

fn names(pods: &[&Pod]) -> Vec<String> {
    pods.iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect()
}

const NOW: Timestamp = Timestamp::UNIX_EPOCH;

#[test]
fn one_pod_per_eligible_node() {
    let set = ds(json!({"type": "OnDelete"}));
    let (a, b, c) = (
        node("a", "worker", json!([])),
        node(
            "b",
            "worker",
            json!([{"key": "gpu", "effect": "NoSchedule"}]),
        ),
        node("c", "db", json!([])),
    );
    let on_c = pod("on-c", "c", "h1", true, 1);
    let p = plan(&set, &[&a, &b, &c], &[&on_c], "h1", NOW, true).unwrap();
    assert_eq!(
        p.create,
        ["a"],
        "b has an untolerated taint, c the wrong role"
    );
    assert_eq!(names(&p.delete), ["on-c"]);
    let s = &p.status;
    assert_eq!(
        (
            s.desired_number_scheduled,
            s.current_number_scheduled,
            s.number_misscheduled
        ),
        (1, 0, 1)
    );
    assert_eq!(s.observed_generation, Some(2));
}

#[test]
fn a_pod_stays_on_a_node_tainted_no_schedule_but_not_no_execute() {
    let set = ds(json!({"type": "OnDelete"}));
    let soft = node(
        "a",
        "worker",
        json!([{"key": "gpu", "effect": "NoSchedule"}]),
    );
    let hard = node(
        "b",
        "worker",
        json!([{"key": "gpu", "effect": "NoExecute"}]),
    );
    let (pa, pb) = (pod("pa", "a", "h1", true, 1), pod("pb", "b", "h1", true, 1));
    let p = plan(&set, &[&soft, &hard], &[&pa, &pb], "h1", NOW, true).unwrap();
    assert_eq!(names(&p.delete), ["pb"]);
    assert!(p.create.is_empty());
}

#[test]
fn extra_and_failed_pods_go_and_the_oldest_stays() {
    let set = ds(json!({"type": "OnDelete"}));
    let a = node("a", "worker", json!([]));
    let (old, young) = (
        pod("old", "a", "h1", true, 1),
        pod("young", "a", "h1", true, 2),
    );
    let mut failed = pod("failed", "a", "h1", false, 0);
    failed.status.as_mut().unwrap().phase = Some("Failed".into());
    let p = plan(&set, &[&a], &[&young, &old, &failed], "h1", NOW, true).unwrap();
    let mut deleted = names(&p.delete);
    deleted.sort();
    assert_eq!(deleted, ["failed", "young"]);
    assert_eq!(p.status.number_ready, 1);
}

#[test]
fn on_delete_leaves_old_pods_and_rolling_replaces_them() {
    let nodes = [
        node("a", "worker", json!([])),
        node("b", "worker", json!([])),
    ];
    let refs: Vec<&Node> = nodes.iter().collect();
    let (pa, pb) = (pod("pa", "a", "h1", true, 1), pod("pb", "b", "h1", true, 1));
    let on_delete = plan(
        &ds(json!({"type": "OnDelete"})),
        &refs,
        &[&pa, &pb],
        "h2",
        NOW,
        true,
    )
    .unwrap();
    assert!(on_delete.delete.is_empty() && on_delete.create.is_empty());
    assert_eq!(on_delete.status.updated_number_scheduled, Some(0));
    let rolling = ds(json!({"type": "RollingUpdate",
                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
    let p = plan(&rolling, &refs, &[&pa, &pb], "h2", NOW, true).unwrap();
    assert_eq!(names(&p.delete), ["pa"], "one node at a time");
    // a's replacement is not ready yet: b waits.
    let new_a = pod("new-a", "a", "h2", false, 3);
    let p = plan(&rolling, &refs, &[&new_a, &pb], "h2", NOW, true).unwrap();
    assert!(p.delete.is_empty() && p.create.is_empty());
    assert_eq!(p.status.updated_number_scheduled, Some(1));
    assert_eq!(p.status.number_unavailable, Some(1));
}

#[test]
fn unmet_expectations_hold_creates_back() {
    let set = ds(json!({"type": "OnDelete"}));
    let a = node("a", "worker", json!([]));
    let p = plan(&set, &[&a], &[], "h1", NOW, false).unwrap();
    assert!(p.create.is_empty());
    assert_eq!(p.status.desired_number_scheduled, 1);
}
