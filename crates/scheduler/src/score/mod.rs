//! Scores: how good is this feasible node for this pod? Each score is 0..=100 per node
//! (some normalised over the feasible nodes, like kube-scheduler's `NormalizeScore`), and
//! the total is their sum weighted with kube-scheduler's default weights.

pub mod affinity;
pub mod resources;
pub mod spread;
pub mod taints;

use crate::snapshot::{NodeAttrs, NodeInfo, PodInfo};

/// The highest score a single plugin gives (kube-scheduler's `MaxNodeScore`).
pub const MAX_SCORE: i64 = 100;

/// Weights of the scores in the total (kube-scheduler's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    /// NodeResourcesFit with the LeastAllocated strategy.
    pub least_allocated: i64,
    /// NodeResourcesBalancedAllocation.
    pub balanced_allocation: i64,
    /// NodeAffinity (preferred terms).
    pub node_affinity: i64,
    /// TaintToleration (`PreferNoSchedule` taints).
    pub taint_toleration: i64,
    /// Spreading the pods of one controller across nodes (PodTopologySpread's default
    /// hostname constraint plays this role in kube-scheduler).
    pub spread: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            least_allocated: 1,
            balanced_allocation: 1,
            node_affinity: 2,
            taint_toleration: 3,
            spread: 2,
        }
    }
}

/// The raw per-node inputs of the scores, before normalisation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Raw {
    /// LeastAllocated, already 0..=100.
    pub least_allocated: i64,
    /// BalancedAllocation, already 0..=100.
    pub balanced_allocation: i64,
    /// Sum of the weights of the matching preferred node affinity terms.
    pub node_affinity: i64,
    /// Number of `PreferNoSchedule` taints the pod does not tolerate.
    pub untolerated_soft_taints: i64,
    /// Number of pods of the same controller already on the node.
    pub same_owner_pods: i64,
}

impl Raw {
    /// Computes the raw scores of `pod` on one node.
    pub fn of(pod: &PodInfo, node: &NodeInfo, attrs: &NodeAttrs) -> Self {
        Self {
            least_allocated: resources::least_allocated(pod, node, attrs),
            balanced_allocation: resources::balanced_allocation(pod, node, attrs),
            node_affinity: affinity::preferred_weight(pod, attrs),
            untolerated_soft_taints: taints::untolerated_soft_taints(pod, attrs),
            same_owner_pods: spread::same_owner_pods(pod, node),
        }
    }
}

/// Maxima over the feasible nodes, for normalisation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Maxima {
    node_affinity: i64,
    untolerated_soft_taints: i64,
    same_owner_pods: i64,
}

impl Maxima {
    /// Takes one node's raw scores into account.
    pub fn observe(&mut self, raw: &Raw) {
        self.node_affinity = self.node_affinity.max(raw.node_affinity);
        self.untolerated_soft_taints = self
            .untolerated_soft_taints
            .max(raw.untolerated_soft_taints);
        self.same_owner_pods = self.same_owner_pods.max(raw.same_owner_pods);
    }
}

/// kube-scheduler's `DefaultNormalizeScore`: scales to 0..=100 by the maximum; `reverse`
/// makes fewer better. With a maximum of zero, every node gets 0 (or 100 when reversed).
pub fn normalize(value: i64, max: i64, reverse: bool) -> i64 {
    if max <= 0 {
        return if reverse { MAX_SCORE } else { 0 };
    }
    let scaled = MAX_SCORE * value / max;
    if reverse { MAX_SCORE - scaled } else { scaled }
}

/// The weighted total of one node's scores.
pub fn total(raw: &Raw, max: &Maxima, weights: &Weights) -> i64 {
    weights.least_allocated * raw.least_allocated
        + weights.balanced_allocation * raw.balanced_allocation
        + weights.node_affinity * normalize(raw.node_affinity, max.node_affinity, false)
        + weights.taint_toleration
            * normalize(
                raw.untolerated_soft_taints,
                max.untolerated_soft_taints,
                true,
            )
        + weights.spread * normalize(raw.same_owner_pods, max.same_owner_pods, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize(5, 10, false), 50);
        assert_eq!(normalize(5, 10, true), 50);
        assert_eq!(normalize(0, 10, true), 100);
        assert_eq!(normalize(0, 0, false), 0);
        assert_eq!(normalize(0, 0, true), 100);
    }

    #[test]
    fn weighted_total() {
        let raw = Raw {
            least_allocated: 80,
            balanced_allocation: 90,
            node_affinity: 3,
            untolerated_soft_taints: 0,
            same_owner_pods: 1,
        };
        let max = Maxima {
            node_affinity: 6,
            untolerated_soft_taints: 2,
            same_owner_pods: 2,
        };
        // 80 + 90 + 2*50 + 3*100 + 2*50
        assert_eq!(total(&raw, &max, &Weights::default()), 670);
    }
}
