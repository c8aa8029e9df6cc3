//! The cache's bookkeeping of assumed pods and the queue, driven by literal watch events.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

use super::*;

fn node(name: &str, cpu: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .unwrap()
}

fn pod(name: &str, cpu: &str, node: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c",
            "resources": {"requests": {"cpu": cpu}}}]}
    }))
    .unwrap()
}

fn cache_with(nodes: &[(&str, &str)]) -> Cache {
    let mut c = Cache::new("default-scheduler", Weights::default());
    for (n, cpu) in nodes {
        c.node_applied(&node(n, cpu), Instant::now());
    }
    c
}

fn bind_target(work: Option<Work>) -> String {
    match work {
        Some(Work::Bind { node, .. }) => node,
        other => panic!("expected a binding, got {other:?}"),
    }
}

#[test]
fn assumed_pods_count_against_the_node_until_confirmed() {
    let now = Instant::now();
    let mut c = cache_with(&[("n1", "1")]);
    c.pod_applied(pod("a", "600m", None), now);
    c.pod_applied(pod("b", "600m", None), now);
    assert_eq!(bind_target(c.next(now)), "n1");
    match c.next(now) {
        Some(Work::Unschedulable { message, .. }) => {
            assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.")
        }
        other => panic!("the in-flight binding must count: {other:?}"),
    }
    c.bound("default/a", "n1", BindOutcome::Bound, now);
    // A stale unbound version of `a` must not requeue it.
    c.pod_applied(pod("a", "600m", None), now);
    assert!(c.queue().state("default/a").is_none());
    c.pod_applied(pod("a", "600m", Some("n1")), now);
    assert_eq!(c.snapshot().node("n1").unwrap().requested.milli_cpu, 600);
}

#[test]
fn a_failed_binding_is_forgotten_and_retried() {
    let now = Instant::now();
    let mut c = cache_with(&[("n1", "1")]);
    c.pod_applied(pod("a", "600m", None), now);
    assert_eq!(bind_target(c.next(now)), "n1");
    c.bound("default/a", "n1", BindOutcome::Failed, now);
    assert_eq!(c.snapshot().node("n1").unwrap().requested.milli_cpu, 0);
    assert!(matches!(
        c.queue().state("default/a"),
        Some(crate::queue::State::Backoff(_))
    ));
    c.tick(now + crate::queue::INITIAL_BACKOFF);
    assert_eq!(bind_target(c.next(now)), "n1");
    c.bound("default/a", "n1", BindOutcome::Moot, now);
    assert!(c.queue().is_empty());
}

#[test]
fn cluster_changes_wake_unschedulable_pods() {
    let now = Instant::now();
    let mut c = cache_with(&[("n1", "1")]);
    c.pod_applied(pod("big", "2", None), now);
    assert!(matches!(c.next(now), Some(Work::Unschedulable { .. })));
    c.node_applied(&node("n1", "1"), now);
    assert!(!c.has_work(), "an unchanged node is no cluster change");
    c.node_applied(&node("n2", "4"), now);
    c.tick(now + crate::queue::INITIAL_BACKOFF);
    assert_eq!(bind_target(c.next(now)), "n2");
}

#[test]
fn other_schedulers_and_finished_pods_are_ignored() {
    let now = Instant::now();
    let mut c = cache_with(&[("n1", "1")]);
    let mut other = pod("x", "1m", None);
    other.spec.as_mut().unwrap().scheduler_name = Some("custom".into());
    c.pod_applied(other, now);
    assert!(c.queue().is_empty());
    let mut done = pod("y", "500m", Some("n1"));
    c.pod_applied(done.clone(), now);
    assert_eq!(c.snapshot().node("n1").unwrap().requested.milli_cpu, 500);
    done.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Succeeded".into()),
        ..Default::default()
    });
    c.pod_applied(done, now);
    assert_eq!(c.snapshot().node("n1").unwrap().requested.milli_cpu, 0);
}

#[test]
fn a_relist_drops_what_was_deleted_meanwhile() {
    let now = Instant::now();
    let mut c = cache_with(&[("n1", "1")]);
    c.pod_applied(pod("gone", "500m", Some("n1")), now);
    c.pod_applied(pod("pending", "100m", None), now);
    c.pods_relisting();
    c.pod_applied(pod("kept", "100m", Some("n1")), now);
    c.pods_relisted(now);
    assert_eq!(c.snapshot().node("n1").unwrap().requested.milli_cpu, 100);
    assert!(c.queue().is_empty());
}

#[test]
fn our_own_status_patch_does_not_retry_the_pod() {
    let now = Instant::now();
    let mut c = cache_with(&[("n1", "1")]);
    c.pod_applied(pod("big", "2", None), now);
    assert!(matches!(c.next(now), Some(Work::Unschedulable { .. })));
    let mut patched = pod("big", "2", None);
    patched.status = Some(k8s_openapi::api::core::v1::PodStatus {
        conditions: Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    c.pod_applied(patched, now);
    assert!(matches!(
        c.queue().state("default/big"),
        Some(crate::queue::State::Unschedulable(_))
    ));
    let mut smaller = pod("big", "500m", None);
    smaller.metadata.labels = Some([("resized".to_string(), "yes".to_string())].into());
    c.pod_applied(smaller, now);
    c.tick(now + crate::queue::INITIAL_BACKOFF);
    assert_eq!(bind_target(c.next(now)), "n1");
}

fn pod_on_port(name: &str, cpu: &str, node: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c",
            "ports": [{"containerPort": 80, "hostPort": 8080}],
            "resources": {"requests": {"cpu": cpu}}}]}
    }))
    .unwrap()
}

#[test]
fn host_ports_of_assumed_and_invalid_bound_pods_count() {
    let now = Instant::now();
    let mut c = cache_with(&[("n1", "4")]);
    c.pod_applied(pod_on_port("a", "100m", None), now);
    c.pod_applied(pod_on_port("b", "100m", None), now);
    assert_eq!(bind_target(c.next(now)), "n1");
    match c.next(now) {
        Some(Work::Unschedulable { message, .. }) => assert_eq!(
            message,
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."
        ),
        other => panic!("the in-flight binding holds the port: {other:?}"),
    }
    c.pod_deleted(&pod_on_port("a", "100m", None), now);
    // A pod bound by hand with an unparsable request still holds its port.
    c.pod_applied(pod_on_port("x", "lots", Some("n1")), now);
    let n1 = c.snapshot().node("n1").unwrap();
    assert_eq!((n1.requested.milli_cpu, n1.used_ports.len()), (0, 1));
}
