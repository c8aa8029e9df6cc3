//! TaintToleration score: fewer untolerated `PreferNoSchedule` taints is better
//! (normalised in reverse over the feasible nodes by the caller).

use crate::filter::taints::tolerates;
use crate::snapshot::{NodeAttrs, PodInfo};

/// Number of `PreferNoSchedule` taints of the node that the pod does not tolerate.
/// Only tolerations with an empty effect or `PreferNoSchedule` count, as in kube-scheduler.
pub fn untolerated_soft_taints(pod: &PodInfo, attrs: &NodeAttrs) -> i64 {
    attrs
        .taints
        .iter()
        .filter(|taint| taint.effect == "PreferNoSchedule")
        .filter(|taint| {
            !pod.tolerations.iter().any(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                ) && tolerates(t, taint)
            })
        })
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod, taint, toleration};

    #[test]
    fn counts_untolerated_soft_taints() {
        let mut n = node("n1", &[]);
        n.taints = vec![
            taint("a", "", "PreferNoSchedule"),
            taint("b", "x", "PreferNoSchedule"),
            taint("c", "", "NoSchedule"),
        ];
        let mut p = pod("p", 0, 0);
        assert_eq!(untolerated_soft_taints(&p, &n), 2);
        p.tolerations = vec![toleration("a", "Exists", "", "PreferNoSchedule")];
        assert_eq!(untolerated_soft_taints(&p, &n), 1);
        p.tolerations
            .push(toleration("b", "Equal", "x", "NoSchedule"));
        assert_eq!(
            untolerated_soft_taints(&p, &n),
            1,
            "effect must cover PreferNoSchedule"
        );
    }
}
