//! InterPodAffinity (required terms only): the topology domains (values of a term's
//! `topologyKey` label, e.g. one per node for `kubernetes.io/hostname`) that a pod's
//! affinity needs or its anti-affinity forbids, and the domains that existing pods'
//! anti-affinity closes to it. Computed once per pod, then checked per node by label lookup.
//!
//! Limits: a term's `namespaceSelector` other than `{}` (all namespaces) is not evaluated
//! (Strata's scheduler does not watch namespaces), so such a term only covers its
//! `namespaces` list; `matchLabelKeys`/`mismatchLabelKeys` are ignored.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::PodAffinityTerm;

use super::{Reason, Verdict};
use crate::labels::selector_matches;
use crate::snapshot::{NodeAttrs, PodInfo, Snapshot};

/// Topology domains, as `(topologyKey, value)`.
type Domains = HashSet<(String, String)>;

/// The per-pod state of the InterPodAffinity filter.
#[derive(Debug, Default)]
pub struct State {
    affinity_terms: Vec<PodAffinityTerm>,
    anti_affinity_terms: Vec<PodAffinityTerm>,
    /// Domains holding a pod that matches all of the pod's affinity terms.
    affinity: Domains,
    /// Whether the pod may be the first of a group with affinity to itself.
    affinity_self_ok: bool,
    /// Domains holding a pod that matches one of the pod's anti-affinity terms.
    anti_affinity: Domains,
    /// Domains where an existing pod's anti-affinity matches the pod.
    existing_anti_affinity: Domains,
}

/// Whether `term`, written in a pod of namespace `owner_namespace`, selects `pod`.
pub fn term_matches(term: &PodAffinityTerm, owner_namespace: &str, pod: &PodInfo) -> bool {
    let namespaces = term.namespaces.as_deref().unwrap_or_default();
    let all_namespaces = term
        .namespace_selector
        .as_ref()
        .is_some_and(|s| s.match_labels.is_none() && s.match_expressions.is_none());
    let namespace_ok = if all_namespaces {
        true
    } else if namespaces.is_empty() && term.namespace_selector.is_none() {
        pod.namespace == owner_namespace
    } else {
        namespaces.contains(&pod.namespace)
    };
    namespace_ok
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, &pod.labels))
}

fn domain(term: &PodAffinityTerm, node: &NodeAttrs) -> Option<(String, String)> {
    node.labels
        .get(&term.topology_key)
        .map(|v| (term.topology_key.clone(), v.clone()))
}

impl State {
    /// Scans the snapshot for the pods that matter to `pod`; `None` when there are no
    /// required (anti-)affinity terms anywhere (the filter then passes every node).
    pub fn prepare(pod: &PodInfo, snapshot: &Snapshot) -> Option<Self> {
        let has_own = !pod.required_affinity.is_empty() || !pod.required_anti_affinity.is_empty();
        if !has_own && !snapshot.has_anti_affinity_pods() {
            return None;
        }
        let mut state = State {
            affinity_terms: pod.required_affinity.clone(),
            anti_affinity_terms: pod.required_anti_affinity.clone(),
            ..Default::default()
        };
        for (node, attrs) in snapshot.nodes() {
            if !has_own && node.anti_affinity_pods == 0 {
                continue;
            }
            for other in node.pods.values() {
                if other.namespace == pod.namespace && other.name == pod.name {
                    continue;
                }
                if !state.affinity_terms.is_empty()
                    && state
                        .affinity_terms
                        .iter()
                        .all(|t| term_matches(t, &pod.namespace, other))
                {
                    state
                        .affinity
                        .extend(state.affinity_terms.iter().filter_map(|t| domain(t, attrs)));
                }
                for term in &state.anti_affinity_terms {
                    if term_matches(term, &pod.namespace, other) {
                        state.anti_affinity.extend(domain(term, attrs));
                    }
                }
                for term in &other.required_anti_affinity {
                    if term_matches(term, &other.namespace, pod) {
                        state.existing_anti_affinity.extend(domain(term, attrs));
                    }
                }
            }
        }
        state.affinity_self_ok = state.affinity.is_empty()
            && state
                .affinity_terms
                .iter()
                .all(|t| term_matches(t, &pod.namespace, pod));
        Some(state)
    }

    /// Checks one node, in kube-scheduler's order: affinity, anti-affinity, then the
    /// anti-affinity of existing pods.
    pub fn filter(&self, node: &NodeAttrs) -> Verdict {
        if !self.affinity_terms.is_empty() {
            let mut all_present = true;
            let mut pods_exist = true;
            for term in &self.affinity_terms {
                match domain(term, node) {
                    Some(d) => pods_exist &= self.affinity.contains(&d),
                    None => all_present = false,
                }
            }
            if !all_present || !(pods_exist || self.affinity_self_ok) {
                return Err(vec![Reason::PodAffinity]);
            }
        }
        if self
            .anti_affinity_terms
            .iter()
            .filter_map(|t| domain(t, node))
            .any(|d| self.anti_affinity.contains(&d))
        {
            return Err(vec![Reason::PodAntiAffinity]);
        }
        if self
            .existing_anti_affinity
            .iter()
            .any(|(k, v)| node.labels.get(k) == Some(v))
        {
            return Err(vec![Reason::ExistingPodsAntiAffinity]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use std::sync::Arc;

    const HOST: &str = "kubernetes.io/hostname";

    fn term(app: &str, key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), app.to_string())].into()),
                match_expressions: None,
            }),
            topology_key: key.into(),
            ..Default::default()
        }
    }

    fn labelled(name: &str, app: &str) -> PodInfo {
        let mut p = pod(name, 0, 0);
        p.labels = [("app".to_string(), app.to_string())].into();
        p
    }

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new();
        for n in ["n1", "n2", "n3"] {
            s.upsert_node(node(
                n,
                &[(HOST, n), ("zone", if n == "n3" { "b" } else { "a" })],
            ));
        }
        s.add_pod("n1", Arc::new(labelled("web-0", "web")));
        s
    }

    fn verdicts(s: &Snapshot, p: &PodInfo) -> Vec<Verdict> {
        let state = State::prepare(p, s);
        s.nodes()
            .map(|(_, a)| state.as_ref().map_or(Ok(()), |st| st.filter(a)))
            .collect()
    }

    #[test]
    fn nothing_to_do_without_terms() {
        assert!(State::prepare(&labelled("x", "web"), &snapshot()).is_none());
    }

    #[test]
    fn anti_affinity_by_hostname_and_by_zone() {
        let s = snapshot();
        let mut p = labelled("web-1", "web");
        p.required_anti_affinity = vec![term("web", HOST)];
        assert_eq!(
            verdicts(&s, &p),
            [Err(vec![Reason::PodAntiAffinity]), Ok(()), Ok(())]
        );
        p.required_anti_affinity = vec![term("web", "zone")];
        assert_eq!(
            verdicts(&s, &p),
            [
                Err(vec![Reason::PodAntiAffinity]),
                Err(vec![Reason::PodAntiAffinity]),
                Ok(())
            ]
        );
        assert_eq!(
            Reason::PodAntiAffinity.to_string(),
            "node(s) didn't match pod anti-affinity rules"
        );
    }

    #[test]
    fn other_namespaces_do_not_count_by_default() {
        let s = snapshot();
        let mut p = labelled("web-1", "web");
        p.namespace = "other".into();
        p.required_anti_affinity = vec![term("web", HOST)];
        assert_eq!(verdicts(&s, &p), [Ok(()), Ok(()), Ok(())]);
    }

    #[test]
    fn existing_pods_anti_affinity_is_symmetric() {
        let mut s = snapshot();
        let mut guard = labelled("db-0", "db");
        guard.required_anti_affinity = vec![term("web", HOST)];
        s.add_pod("n2", Arc::new(guard));
        let p = labelled("web-1", "web");
        assert_eq!(
            verdicts(&s, &p),
            [Ok(()), Err(vec![Reason::ExistingPodsAntiAffinity]), Ok(())]
        );
    }

    #[test]
    fn affinity_needs_a_matching_pod_or_self_match_for_the_first() {
        let s = snapshot();
        let mut p = labelled("cache-0", "cache");
        p.required_affinity = vec![term("web", "zone")];
        assert_eq!(
            verdicts(&s, &p),
            [Ok(()), Ok(()), Err(vec![Reason::PodAffinity])]
        );
        let mut first = labelled("cache-0", "cache");
        first.required_affinity = vec![term("cache", HOST)];
        assert_eq!(verdicts(&s, &first), [Ok(()), Ok(()), Ok(())]);
        let mut lonely = labelled("x", "x");
        lonely.required_affinity = vec![term("cache", HOST)];
        assert!(verdicts(&s, &lonely).iter().all(Result::is_err));
    }
}
