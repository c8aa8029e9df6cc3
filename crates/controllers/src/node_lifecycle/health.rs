//! Node health as the node lifecycle controller judges it: when it last saw the node's
//! heartbeat change (Lease renewal or Ready heartbeat, on the controller's own clock,
//! as Kubernetes does to be immune to clock skew), the conditions of a node that went
//! silent, and the `not-ready`/`unreachable` taints its Ready condition calls for.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use strata_scheduler::snapshot::{TAINT_NOT_READY, TAINT_UNREACHABLE};

/// The conditions set to `Unknown` when a node goes silent.
const MONITORED: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The node's heartbeat as last observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The Lease's `renewTime`.
    pub renew: Option<Timestamp>,
    /// The Ready condition's `lastHeartbeatTime`.
    pub heartbeat: Option<Timestamp>,
    /// When the controller saw either change (or first saw the node).
    pub at: Timestamp,
}

impl Observed {
    /// The observation after seeing `renew` and `heartbeat` at `now`: `at` moves only
    /// when one of them changed, so a silent node ages from its last sign of life.
    pub fn update(
        previous: Option<&Observed>,
        renew: Option<Timestamp>,
        heartbeat: Option<Timestamp>,
        now: Timestamp,
    ) -> Observed {
        let changed = previous.is_none_or(|p| p.renew != renew || p.heartbeat != heartbeat);
        Observed {
            renew,
            heartbeat,
            at: if changed {
                now
            } else {
                previous.map_or(now, |p| p.at)
            },
        }
    }

    /// How long until the node counts as silent with `grace`; `None` once it does.
    pub fn silent_in(&self, grace: Duration, now: Timestamp) -> Option<Duration> {
        let deadline = self.at + SignedDuration::try_from(grace).ok()?;
        Duration::try_from(deadline.duration_since(now))
            .ok()
            .filter(|d| !d.is_zero())
    }
}

/// The status of the node's `Ready` condition (`None` when it has none).
pub fn ready(node: &Node) -> Option<&str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// The conditions of a silent node: Ready and the pressure conditions `Unknown`
/// (reason `NodeStatusUnknown`, or `NodeStatusNeverUpdated` for a node that never
/// reported), heartbeats kept. `None` when they already are.
pub fn silent_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for type_ in MONITORED {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_transition_time: Some(Time(now)),
                    last_heartbeat_time: None,
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// The node's taints given its Ready status: `unreachable` (Unknown) or `not-ready`
/// (False) with effects `NoSchedule` and `NoExecute`, neither when Ready or when the
/// node never reported. `NoExecute` taints get `timeAdded`. `None` when `taints`
/// already are so.
pub fn desired_taints(taints: &[Taint], ready: Option<&str>, now: Timestamp) -> Option<Vec<Taint>> {
    let wanted = match ready {
        Some("Unknown") => Some(TAINT_UNREACHABLE),
        Some("False") => Some(TAINT_NOT_READY),
        _ => None,
    };
    let mine = |t: &Taint| t.key == TAINT_NOT_READY || t.key == TAINT_UNREACHABLE;
    let mut next: Vec<Taint> = taints
        .iter()
        .filter(|t| !mine(t) || Some(t.key.as_str()) == wanted)
        .cloned()
        .collect();
    if let Some(key) = wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !next.iter().any(|t| t.key == key && t.effect == effect) {
                next.push(Taint {
                    key: key.into(),
                    effect: effect.into(),
                    value: None,
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                });
            }
        }
    }
    (next != taints).then_some(next)
}

/// The conditions of a pod on a node that went silent (Kubernetes' `MarkPodsNotReady`):
/// `Ready` turns `False`, so the pod's endpoints stop taking traffic until its node's
/// agent reports again. `None` when the pod is not Ready now.
pub fn not_ready_conditions(pod: &Pod, now: Timestamp) -> Option<Vec<PodCondition>> {
    let mut conditions = pod.status.as_ref()?.conditions.clone()?;
    let ready = conditions
        .iter_mut()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    ready.status = "False".into();
    ready.reason = Some("NodeNotReady".into());
    ready.message = Some("The node stopped reporting; the pod may not be running".into());
    ready.last_transition_time = Some(Time(now));
    Some(conditions)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn t(seconds: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(1_700_000_000 + seconds)
    }

    #[test]
    fn pods_of_a_silent_node_turn_not_ready_once() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {
            "conditions": [{"type": "PodScheduled", "status": "True"},
                           {"type": "Ready", "status": "True"}]}}))
        .unwrap();
        let conditions = not_ready_conditions(&pod, t(0)).unwrap();
        assert_eq!(conditions.len(), 2, "the other conditions stay");
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("NodeNotReady"))
        );
        let mut marked = pod.clone();
        marked.status.as_mut().unwrap().conditions = Some(conditions);
        assert!(not_ready_conditions(&marked, t(1)).is_none());
    }

    #[test]
    fn a_node_ages_from_its_last_heartbeat_change() {
        let grace = Duration::from_secs(40);
        let first = Observed::update(None, Some(t(0)), None, t(5));
        assert_eq!(first.at, t(5), "the controller's clock, not the lease's");
        let same = Observed::update(Some(&first), Some(t(0)), None, t(30));
        assert_eq!(same.silent_in(grace, t(30)), Some(Duration::from_secs(15)));
        assert_eq!(same.silent_in(grace, t(45)), None);
        let renewed = Observed::update(Some(&same), Some(t(44)), None, t(45));
        assert_eq!(renewed.silent_in(grace, t(45)), Some(grace));
    }

    #[test]
    fn a_silent_node_reports_unknown_once() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "lastHeartbeatTime": t(0).to_string()},
                {"type": "NetworkUnavailable", "status": "False"},
            ]},
        }))
        .unwrap();
        let conditions = silent_conditions(&node, t(50)).unwrap();
        let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t(0))));
        let added = conditions
            .iter()
            .find(|c| c.type_ == "DiskPressure")
            .unwrap();
        assert_eq!(added.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        let network = conditions
            .iter()
            .find(|c| c.type_ == "NetworkUnavailable")
            .unwrap();
        assert_eq!(network.status, "False");
        let mut marked = node.clone();
        marked.status.as_mut().unwrap().conditions = Some(conditions);
        assert_eq!(silent_conditions(&marked, t(60)), None);
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let other = Taint {
            key: "dedicated".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let unreachable =
            desired_taints(std::slice::from_ref(&other), Some("Unknown"), t(1)).unwrap();
        let keys: Vec<(&str, &str, bool)> = unreachable
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str(), t.time_added.is_some()))
            .collect();
        assert_eq!(
            keys,
            [
                ("dedicated", "NoSchedule", false),
                (TAINT_UNREACHABLE, "NoSchedule", false),
                (TAINT_UNREACHABLE, "NoExecute", true),
            ]
        );
        assert_eq!(desired_taints(&unreachable, Some("Unknown"), t(2)), None);
        let not_ready = desired_taints(&unreachable, Some("False"), t(3)).unwrap();
        assert!(not_ready.iter().all(|t| t.key != TAINT_UNREACHABLE));
        assert_eq!(not_ready.len(), 3);
        assert_eq!(
            desired_taints(&not_ready, Some("True"), t(4)).unwrap(),
            std::slice::from_ref(&other)
        );
        assert_eq!(desired_taints(&[other], None, t(5)), None);
    }
}
