//! Filters: may this pod run on this node? Each filter is a pure function of the pod, the
//! node and (for inter-pod affinity) state prepared once per pod; a failing filter names
//! its reasons in kube-scheduler's exact words, and [`FitError`] folds them into the
//! `0/N nodes are available: …` message.
//!
//! Filters run in kube-scheduler's default order (NodeUnschedulable, NodeName,
//! TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, InterPodAffinity) and a node's
//! reasons are those of the first filter that fails, as in kube-scheduler.

pub mod fit;
pub mod interpod;
pub mod node;
pub mod node_affinity;
pub mod node_ports;
pub mod taints;

use std::collections::BTreeMap;
use std::fmt;

use crate::snapshot::{NodeAttrs, NodeInfo, PodInfo, Snapshot};

/// Why a node was rejected for a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The node is cordoned (`spec.unschedulable`).
    Unschedulable,
    /// The pod asks for another node by name.
    NodeName,
    /// The node has a `NoSchedule`/`NoExecute` taint the pod does not tolerate.
    UntoleratedTaint {
        /// Taint key.
        key: String,
        /// Taint value (may be empty).
        value: String,
    },
    /// The node's labels or name do not match the pod's node selector or required affinity.
    NodeAffinity,
    /// A host port the pod binds conflicts with one a pod on the node already binds.
    NodePorts,
    /// Not enough CPU left.
    InsufficientCpu,
    /// Not enough memory left.
    InsufficientMemory,
    /// Not enough ephemeral storage left.
    InsufficientEphemeralStorage,
    /// The node runs as many pods as it allows.
    TooManyPods,
    /// The pod's required pod affinity finds no matching pod in the node's topology domain.
    PodAffinity,
    /// The pod's required anti-affinity finds a matching pod in the node's topology domain.
    PodAntiAffinity,
    /// A pod in the node's topology domain has anti-affinity against this pod.
    ExistingPodsAntiAffinity,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::NodeName => f.write_str("node(s) didn't match the requested node name"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::NodePorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::InsufficientCpu => f.write_str("Insufficient cpu"),
            Reason::InsufficientMemory => f.write_str("Insufficient memory"),
            Reason::InsufficientEphemeralStorage => f.write_str("Insufficient ephemeral-storage"),
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::PodAffinity => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::PodAntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::ExistingPodsAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
        }
    }
}

/// A filter's verdict: `Err` carries the reasons the node was rejected.
pub type Verdict = Result<(), Vec<Reason>>;

/// What the filters need about one pod, prepared once before looking at the nodes.
#[derive(Debug)]
pub struct Prepared<'a> {
    /// The pod being scheduled.
    pub pod: &'a PodInfo,
    /// Inter-pod (anti-)affinity state; `None` when neither the pod nor any existing pod
    /// has required (anti-)affinity terms.
    pub interpod: Option<interpod::State>,
}

impl<'a> Prepared<'a> {
    /// Prepares `pod` for filtering against `snapshot`.
    pub fn new(pod: &'a PodInfo, snapshot: &Snapshot) -> Self {
        Self {
            pod,
            interpod: interpod::State::prepare(pod, snapshot),
        }
    }

    /// Runs every filter in order; the first failure decides.
    pub fn check(&self, node: &NodeInfo, attrs: &NodeAttrs) -> Verdict {
        node::unschedulable(self.pod, attrs)?;
        node::node_name(self.pod, attrs)?;
        taints::filter(self.pod, attrs)?;
        node_affinity::filter(self.pod, attrs)?;
        node_ports::filter(self.pod, node)?;
        fit::filter(self.pod, node, attrs)?;
        if let Some(state) = &self.interpod {
            state.filter(attrs)?;
        }
        Ok(())
    }
}

/// No node fits a pod: the count of nodes and how often each reason was given.
///
/// Its message is kube-scheduler's `FitError.Error()` without the `preemption: …` suffix,
/// since Strata does not preempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FitError {
    /// How many nodes were considered.
    pub nodes: usize,
    /// Reason message → number of nodes that gave it.
    pub reasons: BTreeMap<String, usize>,
}

impl FitError {
    /// Counts the reasons of one rejected node.
    pub fn record(&mut self, reasons: &[Reason]) {
        for reason in reasons {
            *self.reasons.entry(reason.to_string()).or_default() += 1;
        }
    }
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nodes == 0 {
            // kube-scheduler's ErrNoNodesAvailable.
            return f.write_str("no nodes available to schedule pods");
        }
        write!(f, "0/{} nodes are available:", self.nodes)?;
        // Sorted as strings, count first, exactly like sortReasonsHistogram.
        let mut parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        parts.sort();
        if !parts.is_empty() {
            write!(f, " {}.", parts.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for FitError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_matches_kube_scheduler() {
        let mut e = FitError {
            nodes: 2,
            ..Default::default()
        };
        e.record(&[Reason::InsufficientMemory]);
        e.record(&[Reason::UntoleratedTaint {
            key: "node-role.kubernetes.io/control-plane".into(),
            value: String::new(),
        }]);
        assert_eq!(
            e.to_string(),
            "0/2 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
        );
    }

    #[test]
    fn counts_sort_as_strings_and_nodes_may_give_several_reasons() {
        let mut e = FitError {
            nodes: 12,
            ..Default::default()
        };
        for _ in 0..10 {
            e.record(&[Reason::InsufficientCpu, Reason::InsufficientMemory]);
        }
        e.record(&[Reason::Unschedulable]);
        e.record(&[Reason::Unschedulable]);
        assert_eq!(
            e.to_string(),
            "0/12 nodes are available: 10 Insufficient cpu, 10 Insufficient memory, 2 node(s) were unschedulable."
        );
    }

    #[test]
    fn no_nodes() {
        assert_eq!(
            FitError::default().to_string(),
            "no nodes available to schedule pods"
        );
    }
}
