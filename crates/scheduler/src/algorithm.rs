//! One scheduling decision: filter every node, score the feasible ones, pick the best.
//! Pure: the same snapshot, pod and turn always give the same answer.

use crate::filter::{FitError, Prepared};
use crate::score::{Maxima, Raw, Weights, total};
use crate::snapshot::{PodInfo, Snapshot};

/// Where a pod should go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The chosen node.
    pub node: String,
    /// Its weighted score.
    pub score: i64,
    /// How many nodes passed the filters.
    pub feasible: usize,
}

/// Picks a node for `pod`, or explains why none fits.
///
/// Ties: among the nodes with the best total, in name order, the scheduler takes the one at
/// `turn % ties` — callers pass a counter that grows with every decision, so equally good
/// nodes are used in turn (kube-scheduler picks one at random instead; round robin keeps
/// decisions reproducible).
pub fn schedule(
    snapshot: &Snapshot,
    pod: &PodInfo,
    weights: &Weights,
    turn: u64,
) -> Result<Decision, FitError> {
    let prepared = Prepared::new(pod, snapshot);
    let mut error = FitError::default();
    let mut feasible = Vec::new();
    let mut maxima = Maxima::default();
    for (node, attrs) in snapshot.nodes() {
        error.nodes += 1;
        match prepared.check(node, attrs) {
            Ok(()) => {
                let raw = Raw::of(pod, node, attrs);
                maxima.observe(&raw);
                feasible.push((attrs.name.as_str(), raw));
            }
            Err(reasons) => error.record(&reasons),
        }
    }
    let mut best = i64::MIN;
    let mut ties: Vec<&str> = Vec::new();
    for (name, raw) in &feasible {
        let score = total(raw, &maxima, weights);
        if score > best {
            best = score;
            ties.clear();
        }
        if score == best {
            ties.push(name);
        }
    }
    let index = usize::try_from(turn % (ties.len().max(1) as u64)).unwrap_or(0);
    let Some(node) = ties.get(index) else {
        return Err(error);
    };
    Ok(Decision {
        node: node.to_string(),
        score: best,
        feasible: feasible.len(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_support::{container_port, node, pod, pod_with_ports, taint};
    use std::sync::Arc;

    fn cluster(names: &[&str]) -> Snapshot {
        let mut s = Snapshot::new();
        for n in names {
            s.upsert_node(node(n, &[]));
        }
        s
    }

    #[test]
    fn replicas_of_one_owner_spread_over_nodes() {
        let mut s = cluster(&["n1", "n2", "n3"]);
        let mut placed = Vec::new();
        for i in 0..6 {
            let mut p = pod(&format!("web-{i}"), 100, 100 << 20);
            p.owner = Some("rs".into());
            let d = schedule(&s, &p, &Weights::default(), 0).unwrap();
            placed.push(d.node.clone());
            s.add_pod(&d.node, Arc::new(p));
        }
        for n in ["n1", "n2", "n3"] {
            assert_eq!(placed.iter().filter(|p| *p == n).count(), 2, "{placed:?}");
        }
    }

    #[test]
    fn ties_go_round_robin_in_name_order() {
        let s = cluster(&["b", "a", "c"]);
        let p = pod("p", 0, 0);
        let picks: Vec<String> = (0..4)
            .map(|turn| schedule(&s, &p, &Weights::default(), turn).unwrap().node)
            .collect();
        assert_eq!(picks, ["a", "b", "c", "a"]);
    }

    #[test]
    fn prefers_the_emptier_node_and_avoids_soft_taints() {
        let mut s = cluster(&["n1", "n2"]);
        s.add_pod("n1", Arc::new(pod("big", 3000, 6 << 30)));
        let p = pod("p", 500, 1 << 30);
        assert_eq!(schedule(&s, &p, &Weights::default(), 0).unwrap().node, "n2");
        let mut s2 = cluster(&["n1"]);
        let mut n2 = node("n2", &[]);
        n2.taints = vec![taint("soft", "", "PreferNoSchedule")];
        s2.upsert_node(n2);
        assert_eq!(
            schedule(&s2, &p, &Weights::default(), 1).unwrap().node,
            "n1"
        );
    }

    #[test]
    fn explains_when_nothing_fits() {
        let mut s = cluster(&["n1"]);
        let mut cp = node("cp", &[]);
        cp.taints = vec![taint(
            "node-role.kubernetes.io/control-plane",
            "",
            "NoSchedule",
        )];
        s.upsert_node(cp);
        let err = schedule(&s, &pod("p", 100, 9 << 30), &Weights::default(), 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/2 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }."
        );
    }

    #[test]
    fn explains_host_port_conflicts() {
        let mut s = cluster(&["n1", "n2"]);
        for (n, name) in [("n1", "a"), ("n2", "b")] {
            s.add_pod(
                n,
                Arc::new(pod_with_ports(name, &[container_port("", "", 8080)])),
            );
        }
        let p = pod_with_ports("p", &[container_port("TCP", "10.0.0.1", 8080)]);
        let err = schedule(&s, &p, &Weights::default(), 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."
        );
        s.remove_pod("default/b");
        assert_eq!(schedule(&s, &p, &Weights::default(), 0).unwrap().node, "n2");
    }
}
