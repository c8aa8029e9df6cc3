//! The DaemonSet's decisions as pure functions of the nodes, the pods and the time:
//! which nodes get a pod, which pods go (wrong node, failed, surplus), the rolling
//! update step ([`super::rolling`]) and the status. No IO: `super` carries it out.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;

use super::placement::{self, Fit};
use super::rolling;
use crate::deployment::rolling::StrategyError;
use crate::pods;

/// The pod label naming the template revision a daemon pod was made from.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// What to do with the daemon set's pods now.
#[derive(Debug, Default, PartialEq)]
pub struct Plan<'a> {
    /// Orphans the set takes.
    pub adopt: Vec<&'a Pod>,
    /// Owned pods its selector no longer selects.
    pub release: Vec<&'a Pod>,
    /// Nodes to create a pod for.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<&'a Pod>,
    /// The status to report.
    pub status: DaemonSetStatus,
    /// When a ready pod becomes available (`minReadySeconds`), if one will.
    pub requeue_after: Option<Duration>,
}

/// One node and the daemon pods targeting it.
#[derive(Debug)]
pub struct NodePods<'a> {
    /// The node's name.
    pub name: String,
    /// How the node suits the daemon pods.
    pub fit: Fit,
    /// Running or pending pods, not being deleted.
    pub pods: Vec<&'a Pod>,
}

impl NodePods<'_> {
    /// True when a pod of the node has the revision `hash`.
    pub fn has_revision(&self, hash: &str) -> bool {
        self.pods.iter().any(|p| revision(p) == Some(hash))
    }
}

/// The revision hash a pod was made from.
pub fn revision(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH)
        .map(String::as_str)
}

/// What the rolling update needs to know of the set.
pub struct Rollout<'r> {
    /// The current revision hash.
    pub hash: &'r str,
    /// `minReadySeconds`.
    pub min_ready: i32,
    /// The time of the decision.
    pub now: Timestamp,
}

impl Rollout<'_> {
    /// True when `pod` counts as available.
    pub fn available(&self, pod: &Pod) -> bool {
        pods::is_available(pod, self.min_ready, self.now)
    }
}

/// Decides what the daemon set `ds` (current revision `hash`) does with `nodes` and
/// the pods of its namespace at `now`. While `expectations_met` is false it only
/// claims and reports.
pub fn plan<'a>(
    ds: &DaemonSet,
    nodes: &[&Node],
    pods: &[&'a Pod],
    hash: &str,
    now: Timestamp,
    expectations_met: bool,
) -> Result<Plan<'a>, StrategyError> {
    let spec = ds.spec.clone().unwrap_or_default();
    let selector = pods::selector(&spec.selector);
    let claimed = pods::claim_pods(&ds.metadata, selector.as_ref(), pods);
    let mut plan = Plan {
        adopt: claimed.adopt,
        release: claimed.release,
        ..Plan::default()
    };
    let mut pod_spec = spec.template.spec.clone().unwrap_or_default();
    placement::add_tolerations(&mut pod_spec);
    let mut by_node: BTreeMap<&str, Vec<&'a Pod>> = BTreeMap::new();
    let mut failed = Vec::new();
    for &pod in &claimed.owned {
        if pods::is_terminating(&pod.metadata) {
            continue;
        }
        if pods::phase(pod) == "Failed" {
            failed.push(pod);
        } else if let Some(node) = placement::target_node(pod) {
            by_node.entry(node).or_default().push(pod);
        }
    }
    let mut on_nodes: Vec<NodePods<'a>> = nodes
        .iter()
        .map(|node| {
            let name = node.metadata.name.clone().unwrap_or_default();
            let mut pods = by_node.remove(name.as_str()).unwrap_or_default();
            pods.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            NodePods {
                fit: placement::fit(&pod_spec, node),
                name,
                pods,
            }
        })
        .collect();
    on_nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let rollout = Rollout {
        hash,
        min_ready: spec.min_ready_seconds.unwrap_or(0),
        now,
    };
    let budget = rolling::budget(&spec, &on_nodes)?;
    let surge = budget.map_or(0, |b| b.max_surge);
    plan.status = status(ds, &on_nodes, &rollout);
    plan.requeue_after = pods::becomes_available_in(
        on_nodes.iter().flat_map(|n| n.pods.iter().copied()),
        rollout.min_ready,
        now,
    );
    if !expectations_met || pods::is_terminating(&ds.metadata) {
        return Ok(plan);
    }
    plan.delete = failed;
    let mut untouched = Vec::new();
    for node in &on_nodes {
        match (node.fit, node.pods.as_slice()) {
            (
                Fit {
                    may_continue: false,
                    ..
                },
                pods,
            ) => plan.delete.extend(pods),
            (
                Fit {
                    should_run: true, ..
                },
                [],
            ) => plan.create.push(node.name.clone()),
            (_, [_])
            | (
                Fit {
                    should_run: false, ..
                },
                _,
            ) => untouched.push(node),
            (_, pods) => {
                let surplus = surplus(pods, &rollout, surge > 0);
                if surplus.is_empty() {
                    untouched.push(node);
                }
                plan.delete.extend(surplus);
            }
        }
    }
    if let Some(budget) = budget {
        let step = rolling::step(budget, &on_nodes, &untouched, &rollout);
        plan.create.extend(step.create);
        plan.delete.extend(step.delete);
    }
    Ok(plan)
}

/// The pods of a node with more than one to delete: all but the oldest; with a surge
/// rollout, an old ready pod may stay beside a new pod that is not ready yet.
fn surplus<'a>(pods: &[&'a Pod], rollout: &Rollout<'_>, surging: bool) -> Vec<&'a Pod> {
    let oldest_new = pods.iter().find(|p| revision(p) == Some(rollout.hash));
    let oldest_old = pods.iter().find(|p| revision(p) != Some(rollout.hash));
    let keep: Vec<&Pod> = match (oldest_new, oldest_old) {
        (Some(new), Some(old)) if surging && !pods::is_ready(new) && pods::is_ready(old) => {
            vec![*new, *old]
        }
        (Some(new), _) if surging => vec![*new],
        _ => pods.iter().take(1).copied().collect(),
    };
    pods.iter()
        .filter(|p| !keep.iter().any(|k| std::ptr::eq(*k, **p)))
        .copied()
        .collect()
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The status: per node, as Kubernetes counts it.
fn status(ds: &DaemonSet, nodes: &[NodePods<'_>], rollout: &Rollout<'_>) -> DaemonSetStatus {
    let should: Vec<&NodePods<'_>> = nodes.iter().filter(|n| n.fit.should_run).collect();
    let with = |f: &dyn Fn(&Pod) -> bool| {
        count(
            should
                .iter()
                .filter(|n| n.pods.iter().any(|p| f(p)))
                .count(),
        )
    };
    let desired = count(should.len());
    let available = with(&|p| rollout.available(p));
    let old = ds.status.clone().unwrap_or_default();
    DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: with(&|_| true),
        number_misscheduled: count(
            nodes
                .iter()
                .filter(|n| !n.fit.should_run && !n.pods.is_empty())
                .count(),
        ),
        number_ready: with(&pods::is_ready),
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        updated_number_scheduled: Some(with(&|p| revision(p) == Some(rollout.hash))),
        observed_generation: ds.metadata.generation,
        collision_count: old.collision_count,
        conditions: old.conditions,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
