//! NodeResourcesFit: the pod's request must fit in what the node has left (allocatable
//! minus the requests of the pods on it, in-flight bindings included).

use super::{Reason, Verdict};
use crate::snapshot::{NodeAttrs, NodeInfo, PodInfo};

/// NodeResourcesFit filter, in the order of kube-scheduler's `fitsRequest`: pod count,
/// then cpu, memory and ephemeral storage, all reported together. A pod that requests
/// nothing is only checked against the pod count.
pub fn filter(pod: &PodInfo, node: &NodeInfo, attrs: &NodeAttrs) -> Verdict {
    let want = &pod.requests.fit;
    let used = &node.requested;
    let free = &attrs.allocatable;
    let mut reasons = Vec::new();
    if used.pods.saturating_add(1) > free.pods {
        reasons.push(Reason::TooManyPods);
    }
    let short = |want: i64, used: i64, total: i64| want > 0 && want > total.saturating_sub(used);
    if short(want.milli_cpu, used.milli_cpu, free.milli_cpu) {
        reasons.push(Reason::InsufficientCpu);
    }
    if short(want.memory, used.memory, free.memory) {
        reasons.push(Reason::InsufficientMemory);
    }
    if short(
        want.ephemeral_storage,
        used.ephemeral_storage,
        free.ephemeral_storage,
    ) {
        reasons.push(Reason::InsufficientEphemeralStorage);
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod};

    #[test]
    fn fits_what_is_left() {
        let attrs = node("n1", &[]);
        let mut info = NodeInfo::default();
        info.requested.milli_cpu = 3500;
        info.requested.memory = 6 << 30;
        info.requested.pods = 2;
        assert_eq!(
            filter(&pod("p", 500, 2 << 30), &info, &attrs),
            Ok(()),
            "exactly full"
        );
        assert_eq!(
            filter(&pod("p", 501, 3 << 30), &info, &attrs),
            Err(vec![Reason::InsufficientCpu, Reason::InsufficientMemory])
        );
        let mut p = pod("p", 0, 0);
        p.requests.fit.ephemeral_storage = 101 << 30;
        assert_eq!(
            filter(&p, &info, &attrs),
            Err(vec![Reason::InsufficientEphemeralStorage])
        );
        info.requested.pods = 110;
        assert_eq!(
            filter(&pod("p", 0, 0), &info, &attrs),
            Err(vec![Reason::TooManyPods])
        );
        let words: Vec<String> = [
            Reason::InsufficientCpu,
            Reason::InsufficientMemory,
            Reason::InsufficientEphemeralStorage,
            Reason::TooManyPods,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            words,
            [
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient ephemeral-storage",
                "Too many pods"
            ]
        );
    }
}
