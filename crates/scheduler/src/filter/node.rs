//! NodeUnschedulable and NodeName: a cordoned node takes only pods that tolerate
//! `node.kubernetes.io/unschedulable:NoSchedule`; a pod that names a node fits only there.

use super::{Reason, Verdict};
use crate::filter::taints::tolerates;
use crate::snapshot::{NodeAttrs, PodInfo, TAINT_UNSCHEDULABLE};
use k8s_openapi::api::core::v1::Taint;

/// NodeUnschedulable: rejects a cordoned node unless the pod tolerates the cordon taint.
pub fn unschedulable(pod: &PodInfo, node: &NodeAttrs) -> Verdict {
    if !node.unschedulable {
        return Ok(());
    }
    let cordon = Taint {
        key: TAINT_UNSCHEDULABLE.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    if pod.tolerations.iter().any(|t| tolerates(t, &cordon)) {
        Ok(())
    } else {
        Err(vec![Reason::Unschedulable])
    }
}

/// NodeName: a pod with `spec.nodeName` fits only the node of that name.
pub fn node_name(pod: &PodInfo, node: &NodeAttrs) -> Verdict {
    match &pod.node_name {
        Some(name) if *name != node.name => Err(vec![Reason::NodeName]),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod, toleration};

    #[test]
    fn cordoned_nodes_reject_unless_tolerated() {
        let mut n = node("n1", &[]);
        let mut p = pod("p", 0, 0);
        assert_eq!(unschedulable(&p, &n), Ok(()));
        n.unschedulable = true;
        assert_eq!(unschedulable(&p, &n), Err(vec![Reason::Unschedulable]));
        p.tolerations = vec![toleration(TAINT_UNSCHEDULABLE, "Exists", "", "NoSchedule")];
        assert_eq!(unschedulable(&p, &n), Ok(()));
    }

    #[test]
    fn requested_node_name() {
        let mut p = pod("p", 0, 0);
        assert_eq!(node_name(&p, &node("n1", &[])), Ok(()));
        p.node_name = Some("n2".into());
        assert_eq!(node_name(&p, &node("n1", &[])), Err(vec![Reason::NodeName]));
        assert_eq!(node_name(&p, &node("n2", &[])), Ok(()));
        assert_eq!(
            Reason::NodeName.to_string(),
            "node(s) didn't match the requested node name"
        );
    }
}
