//! NodeAffinity score: the sum of the weights of the pod's preferred node affinity terms
//! that the node matches (normalised over the feasible nodes by the caller).

use crate::labels::node_selector_term_matches;
use crate::snapshot::{NodeAttrs, PodInfo};

/// Sum of the weights of the matching preferred terms.
pub fn preferred_weight(pod: &PodInfo, attrs: &NodeAttrs) -> i64 {
    pod.preferred_node_affinity
        .iter()
        .filter(|t| node_selector_term_matches(&t.preference, &attrs.name, &attrs.labels))
        .map(|t| i64::from(t.weight))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod};
    use k8s_openapi::api::core::v1::{
        NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm,
    };

    fn prefer(weight: i32, key: &str, value: &str) -> PreferredSchedulingTerm {
        PreferredSchedulingTerm {
            weight,
            preference: NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: key.into(),
                    operator: "In".into(),
                    values: Some(vec![value.into()]),
                }]),
                match_fields: None,
            },
        }
    }

    #[test]
    fn sums_matching_weights() {
        let mut p = pod("p", 0, 0);
        p.preferred_node_affinity = vec![prefer(10, "zone", "a"), prefer(5, "disk", "ssd")];
        assert_eq!(
            preferred_weight(&p, &node("n1", &[("zone", "a"), ("disk", "ssd")])),
            15
        );
        assert_eq!(preferred_weight(&p, &node("n2", &[("disk", "ssd")])), 5);
        assert_eq!(preferred_weight(&p, &node("n3", &[])), 0);
    }
}
