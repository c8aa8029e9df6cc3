//! Where a DaemonSet's pods belong and how they are pinned there: the tolerations
//! Kubernetes adds to every daemon pod, whether a node should run (or may keep) one
//! (`nodeSelector`, required node affinity, taints), and the node a pod targets, read
//! from `spec.nodeName` or from the `matchFields metadata.name` affinity the controller
//! writes so that the default scheduler binds the pod.

use k8s_openapi::api::core::v1::{
    Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec,
    Toleration,
};
use strata_scheduler::filter::taints::tolerates;
use strata_scheduler::labels::node_selector_matches;

/// The tolerations every daemon pod gets (Kubernetes' `AddOrUpdateDaemonPodTolerations`):
/// it stays on a not-ready or unreachable node and lands on a node under pressure or
/// cordoned.
pub const AUTOMATIC_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// Adds the [`AUTOMATIC_TOLERATIONS`] the spec lacks.
pub fn add_tolerations(spec: &mut PodSpec) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in AUTOMATIC_TOLERATIONS {
        let present = tolerations.iter().any(|t| {
            t.key.as_deref() == Some(key)
                && t.effect.as_deref() == Some(effect)
                && t.operator.as_deref() == Some("Exists")
        });
        if !present {
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some(effect.to_string()),
                ..Default::default()
            });
        }
    }
}

/// Pins the pod to `node`: its required node affinity becomes the single term
/// `matchFields metadata.name In [node]` (Kubernetes'
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`; preferred terms stay).
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let affinity = spec.affinity.get_or_insert_with(Default::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".to_string(),
                operator: "In".to_string(),
                values: Some(vec![node.to_string()]),
            }]),
        }],
    });
}

/// The node a daemon pod runs on or is pinned to.
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_deref())
        .and_then(|v| match v {
            [one] => Some(one.as_str()),
            _ => None,
        })
}

/// Whether a node suits the daemon pod `spec` (with its automatic tolerations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// A pod should be running there (new pods are created).
    pub should_run: bool,
    /// A pod already there may stay (only `NoSchedule` taints are untolerated).
    pub may_continue: bool,
}

/// Judges `node` for the daemon pod `spec`, as Kubernetes' `NodeShouldRunDaemonPod`.
pub fn fit(spec: &PodSpec, node: &Node) -> Fit {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let named = spec
        .node_name
        .as_deref()
        .is_none_or(|n| n.is_empty() || n == name);
    let selected = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let affine = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|s| node_selector_matches(s, name, &labels));
    if !(named && selected && affine) {
        return Fit {
            should_run: false,
            may_continue: false,
        };
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let untolerated = |effect: &str| {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    let may_continue = !untolerated("NoExecute");
    Fit {
        should_run: may_continue && !untolerated("NoSchedule"),
        may_continue,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
        }))
        .unwrap()
    }

    fn spec(extra: serde_json::Value) -> PodSpec {
        let mut spec: PodSpec = serde_json::from_value(extra).unwrap();
        add_tolerations(&mut spec);
        spec
    }

    #[test]
    fn selectors_affinity_and_taints_decide() {
        let plain = node("a", json!({"disk": "ssd"}), json!([]));
        let cordoned = node(
            "b",
            json!({}),
            json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
                   {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
        );
        let gpu_soft = node(
            "c",
            json!({}),
            json!([{"key": "gpu", "effect": "NoSchedule"}]),
        );
        let gpu_hard = node(
            "d",
            json!({}),
            json!([{"key": "gpu", "effect": "NoExecute"}]),
        );
        let s = spec(json!({"containers": []}));
        let yes = Fit {
            should_run: true,
            may_continue: true,
        };
        assert_eq!(fit(&s, &plain), yes);
        assert_eq!(fit(&s, &cordoned), yes, "automatic tolerations");
        assert_eq!(
            fit(&s, &gpu_soft),
            Fit {
                should_run: false,
                may_continue: true
            }
        );
        assert!(!fit(&s, &gpu_hard).may_continue);
        let picky = spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        assert!(fit(&picky, &plain).should_run);
        assert!(!fit(&picky, &cordoned).should_run);
        let affine = spec(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]}]}}}}));
        assert!(!fit(&affine, &plain).should_run);
        assert!(fit(&affine, &gpu_soft).may_continue);
    }

    #[test]
    fn pinning_replaces_required_terms_and_names_the_node() {
        let mut s = spec(json!({"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}}}}));
        pin_to_node(&mut s, "a");
        let pod = Pod {
            spec: Some(s.clone()),
            ..Default::default()
        };
        assert_eq!(target_node(&pod), Some("a"));
        let terms = &s
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms.len(), 1);
        assert!(terms[0].match_expressions.is_none());
        assert_eq!(s.tolerations.unwrap().len(), AUTOMATIC_TOLERATIONS.len());
    }
}
