//! Spreading: prefer nodes with fewer pods of the same controller (the pod's controlling
//! ownerReference, e.g. its ReplicaSet), like kube-scheduler's former SelectorSpread and the
//! default `kubernetes.io/hostname` constraint of PodTopologySpread. Normalised in reverse.

use crate::snapshot::{NodeInfo, PodInfo};

/// Number of pods on `node` with the same controlling owner as `pod` (0 without owner).
pub fn same_owner_pods(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.owner
        .as_ref()
        .and_then(|o| node.owner_counts.get(o))
        .map_or(0, |&c| i64::from(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::pod;

    #[test]
    fn counts_siblings_only() {
        let mut node = NodeInfo::default();
        node.owner_counts.insert("rs-1".into(), 3);
        let mut p = pod("p", 0, 0);
        assert_eq!(same_owner_pods(&p, &node), 0);
        p.owner = Some("rs-1".into());
        assert_eq!(same_owner_pods(&p, &node), 3);
        p.owner = Some("rs-2".into());
        assert_eq!(same_owner_pods(&p, &node), 0);
    }
}
