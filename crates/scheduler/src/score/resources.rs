//! LeastAllocated and BalancedAllocation: prefer nodes with the most free cpu and memory
//! after placing the pod, and nodes whose cpu and memory use stay in proportion.

use super::MAX_SCORE;
use crate::snapshot::{NodeAttrs, NodeInfo, PodInfo};

/// LeastAllocated (cpu and memory, weight 1 each), on the non-zero scoring requests:
/// `(allocatable - requested) × 100 / allocatable` averaged; a full or overfull resource
/// scores 0.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo, attrs: &NodeAttrs) -> i64 {
    let one = |requested: i64, allocatable: i64| {
        if allocatable <= 0 || requested > allocatable {
            0
        } else {
            (allocatable - requested) * MAX_SCORE / allocatable
        }
    };
    let cpu = one(
        node.score_milli_cpu
            .saturating_add(pod.requests.score_milli_cpu),
        attrs.allocatable.milli_cpu,
    );
    let memory = one(
        node.score_memory.saturating_add(pod.requests.score_memory),
        attrs.allocatable.memory,
    );
    (cpu + memory) / 2
}

/// BalancedAllocation on the actual requests: `(1 - |cpu fraction - memory fraction| / 2)
/// × 100`, fractions capped at 1; a resource the node has none of is left out.
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo, attrs: &NodeAttrs) -> i64 {
    let fraction = |requested: i64, allocatable: i64| {
        (allocatable > 0).then(|| (requested as f64 / allocatable as f64).min(1.0))
    };
    let cpu = fraction(
        node.requested
            .milli_cpu
            .saturating_add(pod.requests.fit.milli_cpu),
        attrs.allocatable.milli_cpu,
    );
    let memory = fraction(
        node.requested
            .memory
            .saturating_add(pod.requests.fit.memory),
        attrs.allocatable.memory,
    );
    let std = match (cpu, memory) {
        (Some(c), Some(m)) => ((c - m) / 2.0).abs(),
        _ => 0.0,
    };
    ((1.0 - std) * MAX_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{node, pod};

    #[test]
    fn least_allocated_prefers_free_nodes() {
        let attrs = node("n1", &[]); // 4 cores, 8 GiB
        let empty = NodeInfo::default();
        let mut busy = NodeInfo {
            score_milli_cpu: 2000,
            score_memory: 4 << 30,
            ..Default::default()
        };
        let p = pod("p", 1000, 2 << 30);
        assert_eq!(least_allocated(&p, &empty, &attrs), 75);
        assert_eq!(least_allocated(&p, &busy, &attrs), 25);
        busy.score_milli_cpu = 4000;
        assert_eq!(least_allocated(&p, &busy, &attrs), 12, "(0 + 25) / 2");
    }

    #[test]
    fn balanced_allocation_prefers_proportional_use() {
        let attrs = node("n1", &[]);
        let empty = NodeInfo::default();
        assert_eq!(
            balanced_allocation(&pod("p", 2000, 4 << 30), &empty, &attrs),
            100
        );
        assert_eq!(balanced_allocation(&pod("p", 4000, 0), &empty, &attrs), 50);
        assert_eq!(balanced_allocation(&pod("p", 2000, 0), &empty, &attrs), 75);
    }
}
