//! Matching labels against selectors: `LabelSelector` (pod affinity terms) and
//! `NodeSelectorTerm` (node affinity), with the semantics of apimachinery's `labels` package
//! and component-helpers' `nodeaffinity`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object (`metadata.labels`).
pub type Labels = BTreeMap<String, String>;

/// Whether `labels` match `selector`. An empty selector matches everything; an operator
/// that is not `In`, `NotIn`, `Exists` or `DoesNotExist` matches nothing (the API server
/// rejects those, so this only guards against unvalidated input).
pub fn selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let labels_match = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    labels_match
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether a node (by `name` and `labels`) matches a required `NodeSelector`: any of its
/// terms must match. A term with neither expressions nor fields matches nothing, as in
/// Kubernetes.
pub fn node_selector_matches(selector: &NodeSelector, name: &str, labels: &Labels) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|term| node_selector_term_matches(term, name, labels))
}

/// Whether a node matches one `NodeSelectorTerm` (all expressions and all fields).
pub fn node_selector_term_matches(term: &NodeSelectorTerm, name: &str, labels: &Labels) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            // `metadata.name` is the only field Kubernetes supports here.
            r.key == "metadata.name" && requirement_matches(r, Some(name))
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let contains = |v: &str| values.iter().any(|x| x == v);
    match r.operator.as_str() {
        "In" => value.is_some_and(contains),
        "NotIn" => value.is_none_or(|v| !contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(value), [bound]) = (value, values) else {
                return false;
            };
            let (Ok(value), Ok(bound)) = (value.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if r.operator == "Gt" {
                value > bound
            } else {
                value < bound
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(items: &[(&str, &str)]) -> Labels {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn term(exprs: Vec<NodeSelectorRequirement>) -> NodeSelectorTerm {
        NodeSelectorTerm {
            match_expressions: Some(exprs),
            match_fields: None,
        }
    }

    #[test]
    fn node_selector_operators() {
        let l = labels(&[("zone", "a"), ("gpus", "4")]);
        let ok = |r| node_selector_term_matches(&term(vec![r]), "n1", &l);
        assert!(ok(req("zone", "In", &["a", "b"])));
        assert!(!ok(req("zone", "In", &["b"])));
        assert!(ok(req("zone", "NotIn", &["b"])));
        assert!(!ok(req("zone", "NotIn", &["a"])));
        assert!(ok(req("absent", "NotIn", &["a"])));
        assert!(ok(req("zone", "Exists", &[])));
        assert!(!ok(req("absent", "Exists", &[])));
        assert!(ok(req("absent", "DoesNotExist", &[])));
        assert!(ok(req("gpus", "Gt", &["3"])));
        assert!(!ok(req("gpus", "Gt", &["4"])));
        assert!(ok(req("gpus", "Lt", &["5"])));
        assert!(!ok(req("zone", "Lt", &["5"])), "not an integer");
        assert!(!ok(req("gpus", "Gt", &["1", "2"])), "Gt takes one value");
        assert!(!ok(req("zone", "Like", &["a"])));
    }

    #[test]
    fn match_fields_and_terms() {
        let l = labels(&[]);
        let by_name = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
        };
        assert!(node_selector_term_matches(&by_name, "n1", &l));
        assert!(!node_selector_term_matches(&by_name, "n2", &l));
        let empty = NodeSelectorTerm::default();
        assert!(!node_selector_term_matches(&empty, "n1", &l));
        let selector = NodeSelector {
            node_selector_terms: vec![empty, by_name],
        };
        assert!(node_selector_matches(&selector, "n1", &l), "terms are ORed");
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let everything = LabelSelector::default();
        assert!(selector_matches(&everything, &l));
        let web = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["back".into()]),
            }]),
        };
        assert!(selector_matches(&web, &l));
        assert!(!selector_matches(&web, &labels(&[("app", "db")])));
    }
}
