//! `NoExecute` taint eviction (Kubernetes' taint manager): a pod on a node with a
//! `NoExecute` taint it does not tolerate is deleted at once; one that tolerates every
//! such taint for a limited `tolerationSeconds` is deleted when the shortest of them
//! has passed since the taints were added; one that tolerates them for ever stays.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use strata_scheduler::filter::taints::tolerates;

use crate::pods;

/// Which pods of a node to evict now, and when to look again.
#[derive(Debug, Default, PartialEq)]
pub struct Evictions<'a> {
    /// Pods to delete now.
    pub now: Vec<&'a Pod>,
    /// How long until the next pod's toleration runs out.
    pub next: Option<Duration>,
}

/// When `pod`, on a node with `taints`, must go: `Some(None)` at once, `Some(Some(t))`
/// at `t`, `None` never.
fn deadline(pod: &Pod, taints: &[&Taint], now: Timestamp) -> Option<Option<Timestamp>> {
    let tolerations: &[Toleration] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut shortest: Option<i64> = None;
    for taint in taints {
        let used: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Some(None);
        }
        for seconds in used.iter().filter_map(|t| t.toleration_seconds) {
            shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
        }
    }
    let seconds = shortest?;
    let since = taints
        .iter()
        .filter_map(|t| t.time_added.as_ref().map(|a| a.0))
        .max()
        .unwrap_or(now);
    Some(Some(since + SignedDuration::from_secs(seconds.max(0))))
}

/// Decides which of `pods` (those bound to the node) go because of the node's
/// `NoExecute` taints at `now`. Pods being deleted are left alone.
pub fn evictions<'a>(taints: &[Taint], pods: &[&'a Pod], now: Timestamp) -> Evictions<'a> {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    let mut plan = Evictions::default();
    if no_execute.is_empty() {
        return plan;
    }
    for &pod in pods {
        if pods::is_terminating(&pod.metadata) {
            continue;
        }
        match deadline(pod, &no_execute, now) {
            None => {}
            Some(Some(at)) if at > now => {
                if let Ok(wait) = Duration::try_from(at.duration_since(now)) {
                    plan.next = Some(plan.next.map_or(wait, |n| n.min(wait)));
                }
            }
            Some(_) => plan.now.push(pod),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_700_000_000 + seconds)
    }

    fn pod(name: &str, tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "n1", "containers": [], "tolerations": tolerations},
        }))
        .unwrap()
    }

    fn unreachable(added: i64) -> Vec<Taint> {
        vec![
            Taint {
                key: "node.kubernetes.io/unreachable".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            },
            Taint {
                key: "node.kubernetes.io/unreachable".into(),
                effect: "NoExecute".into(),
                time_added: Some(Time(t(added))),
                value: None,
            },
        ]
    }

    #[test]
    fn untolerating_pods_go_now_and_tolerating_ones_in_time() {
        let plain = pod("plain", json!([]));
        let brief = pod(
            "brief",
            json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 30}]),
        );
        let forever = pod("forever", json!([{"operator": "Exists"}]));
        let mut leaving = pod("leaving", json!([]));
        leaving.metadata.deletion_timestamp = Some(Time(t(0)));
        let taints = unreachable(100);
        let all = [&plain, &brief, &forever, &leaving];
        let early = evictions(&taints, &all, t(110));
        assert_eq!(early.now, [&plain]);
        assert_eq!(early.next, Some(Duration::from_secs(20)));
        let late = evictions(&taints, &all, t(130));
        assert_eq!(late.now, [&plain, &brief]);
        assert_eq!(late.next, None);
    }

    #[test]
    fn only_no_execute_taints_evict() {
        let plain = pod("plain", json!([]));
        let taints = &unreachable(0)[..1];
        assert_eq!(evictions(taints, &[&plain], t(0)), Evictions::default());
    }

    #[test]
    fn the_shortest_toleration_of_all_taints_counts() {
        let p = pod(
            "p",
            json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300},
                   {"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]),
        );
        let mut taints = unreachable(0);
        taints.push(Taint {
            key: "gpu".into(),
            effect: "NoExecute".into(),
            time_added: Some(Time(t(5))),
            value: None,
        });
        assert_eq!(
            evictions(&taints, &[&p], t(5)).next,
            Some(Duration::from_secs(10))
        );
    }
}
