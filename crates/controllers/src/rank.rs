//! The order in which an owner (replica set, job) deletes surplus pods, as Kubernetes'
//! `ActivePodsWithRanks` sorts them: the cheapest pod to lose goes first.

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use crate::pods;

/// Sorts `pods` so that the first ones are the best to delete:
/// 1. not assigned to a node before assigned;
/// 2. `Pending` before `Unknown` before `Running`;
/// 3. not ready before ready;
/// 4. more replicas of the set on the same node before fewer (spreads what is left);
/// 5. ready for less time before ready for longer;
/// 6. more container restarts before fewer;
/// 7. newer before older.
pub fn deletion_order(pods: &mut [&Pod]) {
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for pod in pods.iter() {
        if let Some(node) = node_of(pod) {
            *per_node.entry(node.to_string()).or_default() += 1;
        }
    }
    let colocated = |pod: &Pod| node_of(pod).map_or(0, |n| per_node.get(n).copied().unwrap_or(0));
    pods.sort_by(|a, b| compare(a, b, colocated(a), colocated(b)));
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        Some(_) => 3,
    }
}

/// `Less` when `a` should be deleted before `b`.
fn compare(a: &Pod, b: &Pod, a_colocated: usize, b_colocated: usize) -> Ordering {
    let assigned = |p: &Pod| node_of(p).is_some();
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| pods::is_ready(a).cmp(&pods::is_ready(b)))
        .then_with(|| b_colocated.cmp(&a_colocated))
        // Ready for less time: the later transition goes first.
        .then_with(|| pods::ready_since(b).cmp(&pods::ready_since(a)))
        .then_with(|| pods::restarts(b).cmp(&pods::restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

fn created(pod: &Pod) -> Option<k8s_openapi::jiff::Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    struct P {
        name: &'static str,
        node: Option<&'static str>,
        phase: &'static str,
        ready_at: Option<i64>,
        restarts: i32,
        created: i64,
    }

    fn pod(p: P) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(p.name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(p.created).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: p.node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(p.phase.into()),
                conditions: p.ready_at.map(|at| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(at).unwrap())),
                        ..Default::default()
                    }]
                }),
                container_statuses: Some(vec![ContainerStatus {
                    restart_count: p.restarts,
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn base(name: &'static str) -> P {
        P {
            name,
            node: Some("n1"),
            phase: "Running",
            ready_at: Some(100),
            restarts: 0,
            created: 10,
        }
    }

    fn order(list: Vec<Pod>) -> Vec<String> {
        let mut refs: Vec<&Pod> = list.iter().collect();
        deletion_order(&mut refs);
        refs.iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect()
    }

    #[test]
    fn kubernetes_preference_order() {
        let pods = vec![
            pod(base("old-ready")),
            pod(P {
                created: 20,
                ..base("new-ready")
            }),
            pod(P {
                restarts: 3,
                ..base("restarting")
            }),
            pod(P {
                ready_at: Some(200),
                ..base("recently-ready")
            }),
            pod(P {
                ready_at: None,
                ..base("not-ready")
            }),
            pod(P {
                phase: "Unknown",
                ready_at: None,
                ..base("unknown")
            }),
            pod(P {
                phase: "Pending",
                ready_at: None,
                ..base("pending")
            }),
            pod(P {
                node: None,
                phase: "Pending",
                ready_at: None,
                ..base("unassigned")
            }),
        ];
        assert_eq!(
            order(pods),
            [
                "unassigned",
                "pending",
                "unknown",
                "not-ready",
                "recently-ready",
                "restarting",
                "new-ready",
                "old-ready"
            ]
        );
    }

    #[test]
    fn doubled_up_nodes_lose_pods_first() {
        let pods = vec![
            pod(P {
                node: Some("a"),
                ..base("alone")
            }),
            pod(P {
                node: Some("b"),
                ..base("pair-1")
            }),
            pod(P {
                node: Some("b"),
                created: 5,
                ..base("pair-2")
            }),
        ];
        assert_eq!(order(pods), ["pair-1", "pair-2", "alone"]);
    }
}
