//! One step of a DaemonSet's RollingUpdate, as Kubernetes' `rollingUpdate` takes it.
//! Without surge, old pods are deleted while at most `maxUnavailable` nodes lack an
//! available pod (the replacement is created on the next sync, as a missing pod).
//! With `maxSurge`, a new pod starts beside the old one on up to `maxSurge` nodes at
//! once, and the old pod goes when the new one is available.

use k8s_openapi::api::apps::v1::DaemonSetSpec;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::plan::{NodePods, Rollout, revision};
use crate::deployment::rolling::{StrategyError, scaled};

/// How far a rollout may go at once, in nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Nodes that may lack an available pod.
    pub max_unavailable: usize,
    /// Nodes that may run an extra, new pod.
    pub max_surge: usize,
}

/// The budget of a RollingUpdate set over the nodes that should run it (both values
/// rounded up, like Kubernetes; `maxUnavailable` becomes 1 when both are 0). `None`
/// for `OnDelete`.
pub fn budget(
    spec: &DaemonSetSpec,
    nodes: &[NodePods<'_>],
) -> Result<Option<Budget>, StrategyError> {
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    if strategy
        .type_
        .as_deref()
        .is_some_and(|t| t != "RollingUpdate")
    {
        return Ok(None);
    }
    let rolling = strategy.rolling_update.unwrap_or_default();
    let desired =
        i32::try_from(nodes.iter().filter(|n| n.fit.should_run).count()).unwrap_or(i32::MAX);
    let unavailable = rolling.max_unavailable.unwrap_or(IntOrString::Int(1));
    let surge = rolling.max_surge.unwrap_or(IntOrString::Int(0));
    let as_count = |n: i32| usize::try_from(n).unwrap_or(0);
    let mut budget = Budget {
        max_unavailable: as_count(scaled("maxUnavailable", &unavailable, desired, true)?),
        max_surge: as_count(scaled("maxSurge", &surge, desired, true)?),
    };
    if budget.max_unavailable == 0 && budget.max_surge == 0 {
        budget.max_unavailable = 1;
    }
    Ok(Some(budget))
}

/// Pods to create (by node) and delete in this step.
#[derive(Debug, Default, PartialEq)]
pub struct Step<'a> {
    /// Nodes that get a new pod now.
    pub create: Vec<String>,
    /// Old pods to delete now.
    pub delete: Vec<&'a Pod>,
}

/// The next step over `candidates` (nodes with exactly the pods the rollout may
/// replace); `nodes` are all nodes, for counting what is unavailable or surging.
pub fn step<'a>(
    budget: Budget,
    nodes: &[NodePods<'a>],
    candidates: &[&NodePods<'a>],
    rollout: &Rollout<'_>,
) -> Step<'a> {
    let mut step = Step::default();
    let should: Vec<&NodePods<'a>> = nodes.iter().filter(|n| n.fit.should_run).collect();
    let available = |n: &NodePods<'_>| n.pods.iter().any(|p| rollout.available(p));
    if budget.max_surge == 0 {
        let mut unavailable = should.iter().filter(|n| !available(n)).count();
        for node in candidates.iter().filter(|n| n.fit.should_run) {
            for &pod in node
                .pods
                .iter()
                .filter(|p| revision(p) != Some(rollout.hash))
            {
                if !rollout.available(pod) {
                    // Already unavailable: replacing it costs nothing.
                    step.delete.push(pod);
                } else if unavailable < budget.max_unavailable {
                    step.delete.push(pod);
                    unavailable += 1;
                }
            }
        }
        return step;
    }
    let new_unavailable = |n: &NodePods<'_>| {
        n.pods
            .iter()
            .any(|p| revision(p) == Some(rollout.hash) && !rollout.available(p))
    };
    let mut surging = should
        .iter()
        .filter(|n| n.pods.len() > 1 && new_unavailable(n))
        .count();
    for node in candidates.iter().filter(|n| n.fit.should_run) {
        let (new, old): (Vec<&'a Pod>, Vec<&'a Pod>) = node
            .pods
            .iter()
            .partition(|p| revision(p) == Some(rollout.hash));
        if old.is_empty() {
            continue;
        }
        if new.iter().any(|p| rollout.available(p)) {
            step.delete.extend(old);
        } else if new.is_empty() {
            if !old.iter().any(|p| rollout.available(p)) {
                step.create.push(node.name.clone());
            } else if surging < budget.max_surge {
                step.create.push(node.name.clone());
                surging += 1;
            }
        }
    }
    step
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::daemonset::placement::Fit;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn pod(hash: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p-{hash}"), "labels": {"controller-revision-hash": hash}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn node<'a>(name: &str, pods: Vec<&'a Pod>) -> NodePods<'a> {
        NodePods {
            name: name.into(),
            fit: Fit {
                should_run: true,
                may_continue: true,
            },
            pods,
        }
    }

    const ROLLOUT: Rollout<'static> = Rollout {
        hash: "new",
        min_ready: 0,
        now: Timestamp::UNIX_EPOCH,
    };

    #[test]
    fn without_surge_old_pods_go_within_max_unavailable() {
        let (old_a, old_b, old_c) = (pod("old", true), pod("old", true), pod("old", false));
        let nodes = vec![
            node("a", vec![&old_a]),
            node("b", vec![&old_b]),
            node("c", vec![&old_c]),
        ];
        let candidates: Vec<&NodePods<'_>> = nodes.iter().collect();
        let budget = Budget {
            max_unavailable: 2,
            max_surge: 0,
        };
        let s = step(budget, &nodes, &candidates, &ROLLOUT);
        // c is unavailable already (1 of 2): it goes for free, and one more may.
        assert_eq!(s.delete, [&old_a, &old_c]);
        assert!(s.create.is_empty());
    }

    #[test]
    fn surge_starts_new_pods_beside_old_ones_then_removes_the_old() {
        let (old_a, old_b, new_a) = (pod("old", true), pod("old", true), pod("new", false));
        let nodes = vec![node("a", vec![&old_a, &new_a]), node("b", vec![&old_b])];
        let candidates: Vec<&NodePods<'_>> = nodes.iter().collect();
        let budget = Budget {
            max_unavailable: 0,
            max_surge: 1,
        };
        let s = step(budget, &nodes, &candidates, &ROLLOUT);
        assert!(s.create.is_empty(), "a is surging; b waits");
        assert!(s.delete.is_empty());
        let ready_new = pod("new", true);
        let nodes = vec![node("a", vec![&old_a, &ready_new]), node("b", vec![&old_b])];
        let candidates: Vec<&NodePods<'_>> = nodes.iter().collect();
        let s = step(budget, &nodes, &candidates, &ROLLOUT);
        assert_eq!(s.delete, [&old_a]);
        assert_eq!(s.create, ["b"]);
    }

    #[test]
    fn budgets_round_up_and_never_stall() {
        let p = pod("x", true);
        let nodes: Vec<NodePods<'_>> = (0..3).map(|i| node(&i.to_string(), vec![&p])).collect();
        let spec = |v: serde_json::Value| -> DaemonSetSpec {
            serde_json::from_value(json!({"selector": {}, "template": {}, "updateStrategy": v}))
                .unwrap()
        };
        let b = budget(
            &spec(json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "50%", "maxSurge": 0}})),
            &nodes,
        );
        assert_eq!(b.unwrap().unwrap().max_unavailable, 2);
        let zero = budget(
            &spec(json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}})),
            &nodes,
        );
        assert_eq!(zero.unwrap().unwrap().max_unavailable, 1);
        assert_eq!(
            budget(&spec(json!({"type": "OnDelete"})), &nodes).unwrap(),
            None
        );
        assert!(
            budget(
                &spec(json!({"type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": "half"}})),
                &nodes
            )
            .is_err()
        );
    }
}
