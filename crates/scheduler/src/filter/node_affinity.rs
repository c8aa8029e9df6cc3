//! NodeAffinity: `spec.nodeSelector` and the required node affinity must both match the
//! node's labels (and, for `matchFields`, its name).

use super::{Reason, Verdict};
use crate::labels::node_selector_matches;
use crate::snapshot::{NodeAttrs, PodInfo};

/// Whether `node` satisfies the pod's node selector and required node affinity.
pub fn matches(pod: &PodInfo, node: &NodeAttrs) -> bool {
    pod.node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k) == Some(v))
        && pod
            .required_node_affinity
            .as_ref()
            .is_none_or(|s| node_selector_matches(s, &node.name, &node.labels))
}

/// NodeAffinity filter.
pub fn filter(pod: &PodInfo, node: &NodeAttrs) -> Verdict {
    if matches(pod, node) {
        Ok(())
    } else {
        Err(vec![Reason::NodeAffinity])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod};
    use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

    #[test]
    fn node_selector_and_required_affinity_both_apply() {
        let ssd = node("n1", &[("disk", "ssd"), ("zone", "a")]);
        let hdd = node("n2", &[("disk", "hdd"), ("zone", "a")]);
        let mut p = pod("p", 0, 0);
        p.node_selector = [("disk".to_string(), "ssd".to_string())].into();
        assert_eq!(filter(&p, &ssd), Ok(()));
        assert_eq!(filter(&p, &hdd), Err(vec![Reason::NodeAffinity]));
        p.required_node_affinity = Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: "zone".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["a".into()]),
                }]),
                match_fields: None,
            }],
        });
        assert_eq!(filter(&p, &ssd), Err(vec![Reason::NodeAffinity]));
        assert_eq!(
            Reason::NodeAffinity.to_string(),
            "node(s) didn't match Pod's node affinity/selector"
        );
    }
}
