//! The scheduler's view of the cluster: each node's attributes (allocatable, labels, taints)
//! and the pods on it with their summed requests. It is plain data, updated incrementally by
//! the loop from watch events and read by the filters and scores.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ContainerPort, Node, NodeSelector, Pod, PodAffinityTerm, PodSpec, PreferredSchedulingTerm,
    Taint, Toleration,
};

use crate::labels::Labels;
use crate::quantity::QuantityError;
use crate::resources::{PodRequests, Resources, pod_requests};

/// The taint the node lifecycle controller puts on a node whose `Ready` condition is
/// `False` (and the kubelet on a node that just registered).
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint the node lifecycle controller puts on a node whose `Ready` condition is
/// `Unknown` (the kubelet stopped reporting).
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint that stands for `spec.unschedulable` (tolerating it lets a pod onto a
/// cordoned node, as DaemonSet pods do).
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// A port a pod binds on its node (`ports[].hostPort`), with the API's defaults filled in
/// as kube-scheduler's `HostPortInfo` does: protocol `TCP`, host IP `0.0.0.0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// `protocol`: `TCP`, `UDP` or `SCTP`; `TCP` when unset.
    pub protocol: String,
    /// `hostIP`; [`HostPort::ALL_ADDRESSES`] when unset or empty.
    pub host_ip: String,
    /// `hostPort`; always positive.
    pub port: i32,
}

impl HostPort {
    /// The host IP that stands for every address of the node (kube-scheduler's
    /// `DefaultBindAllHostIP`). Only this spelling is a wildcard: like kube-scheduler,
    /// `::` is compared as a specific address.
    pub const ALL_ADDRESSES: &'static str = "0.0.0.0";

    /// The host port a container port binds, or `None` when it binds none (`hostPort`
    /// unset or not positive).
    pub fn from_container_port(port: &ContainerPort) -> Option<Self> {
        let number = port.host_port.filter(|p| *p > 0)?;
        let or_default = |value: Option<&String>, default: &str| match value {
            Some(v) if !v.is_empty() => v.clone(),
            _ => default.to_string(),
        };
        Some(Self {
            protocol: or_default(port.protocol.as_ref(), "TCP"),
            host_ip: or_default(port.host_ip.as_ref(), Self::ALL_ADDRESSES),
            port: number,
        })
    }

    /// The host ports a pod binds, as kube-scheduler's `GetHostPorts` finds them: those of
    /// its containers and of its sidecar init containers (`restartPolicy: Always`), which
    /// run as long as the pod. Ordinary init containers have exited before the containers
    /// start, so their ports are not held.
    pub fn of_pod(spec: &PodSpec) -> Vec<Self> {
        let sidecars = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        sidecars
            .chain(&spec.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(Self::from_container_port)
            .collect()
    }
}

/// What the scheduler needs of one pod, extracted once from the `Pod` object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Labels,
    /// The effective request.
    pub requests: PodRequests,
    /// `spec.nodeName`: the node the pod is bound to or asks for.
    pub node_name: Option<String>,
    /// `spec.nodeSelector`.
    pub node_selector: Labels,
    /// `requiredDuringSchedulingIgnoredDuringExecution` of the node affinity.
    pub required_node_affinity: Option<NodeSelector>,
    /// `preferredDuringSchedulingIgnoredDuringExecution` of the node affinity.
    pub preferred_node_affinity: Vec<PreferredSchedulingTerm>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// Required pod affinity terms.
    pub required_affinity: Vec<PodAffinityTerm>,
    /// Required pod anti-affinity terms.
    pub required_anti_affinity: Vec<PodAffinityTerm>,
    /// UID of the controlling owner (ReplicaSet, Job, …), for spreading its pods.
    pub owner: Option<String>,
    /// The host ports the pod binds (see [`HostPort::of_pod`]).
    pub host_ports: Vec<HostPort>,
}

impl PodInfo {
    /// Extracts a pod's scheduling inputs; fails only on an unparsable resource quantity.
    pub fn from_pod(pod: &Pod) -> Result<Self, QuantityError> {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let requests = pod_requests(&spec)?;
        let host_ports = HostPort::of_pod(&spec);
        let affinity = spec.affinity.unwrap_or_default();
        let node_affinity = affinity.node_affinity.unwrap_or_default();
        Ok(Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            requests,
            node_name: spec.node_name.filter(|n| !n.is_empty()),
            node_selector: spec.node_selector.unwrap_or_default(),
            required_node_affinity: node_affinity
                .required_during_scheduling_ignored_during_execution,
            preferred_node_affinity: node_affinity
                .preferred_during_scheduling_ignored_during_execution
                .unwrap_or_default(),
            tolerations: spec.tolerations.unwrap_or_default(),
            required_affinity: affinity
                .pod_affinity
                .and_then(|a| a.required_during_scheduling_ignored_during_execution)
                .unwrap_or_default(),
            required_anti_affinity: affinity
                .pod_anti_affinity
                .and_then(|a| a.required_during_scheduling_ignored_during_execution)
                .unwrap_or_default(),
            owner: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            host_ports,
        })
    }

    /// `namespace/name`, the pod's key in the snapshot and the queue.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What the scheduler needs of one Node object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeAttrs {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`.
    pub labels: Labels,
    /// `spec.taints`, plus the not-ready/unreachable taint derived from the Ready condition.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
    /// `status.allocatable` (zero when it could not be parsed).
    pub allocatable: Resources,
    /// Why `status.allocatable` could not be parsed, if it could not.
    pub invalid: Option<QuantityError>,
}

impl NodeAttrs {
    /// Extracts a node's scheduling inputs.
    ///
    /// Until Strata has a node lifecycle controller, the taint it would add is derived here:
    /// a node whose `Ready` condition is `False` or missing carries
    /// `node.kubernetes.io/not-ready:NoSchedule`, and one whose condition is `Unknown`
    /// carries `node.kubernetes.io/unreachable:NoSchedule`, so pods that tolerate those
    /// taints (as DaemonSet pods do) still land there, like in Kubernetes.
    pub fn from_node(node: &Node) -> Self {
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.as_ref();
        let (allocatable, invalid) = match status.and_then(|s| s.allocatable.as_ref()) {
            Some(list) => match Resources::from_list(list) {
                Ok(r) => (r, None),
                Err(e) => (Resources::default(), Some(e)),
            },
            None => (Resources::default(), None),
        };
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.as_str());
        let mut taints = spec.taints.unwrap_or_default();
        let derived = match ready {
            Some("True") => None,
            Some("Unknown") => Some(TAINT_UNREACHABLE),
            _ => Some(TAINT_NOT_READY),
        };
        if let Some(key) = derived {
            if !taints
                .iter()
                .any(|t| t.key == key && t.effect == "NoSchedule")
            {
                taints.push(Taint {
                    key: key.to_string(),
                    effect: "NoSchedule".to_string(),
                    ..Default::default()
                });
            }
        }
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints,
            unschedulable: spec.unschedulable.unwrap_or(false),
            allocatable,
            invalid,
        }
    }
}

/// One node and the pods on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The node's attributes; `None` while pods are known to be bound to a node whose
    /// Node object has not been seen (or was deleted).
    pub attrs: Option<NodeAttrs>,
    /// The node's name.
    pub name: String,
    /// Sum of the fit requests of the pods on the node (`pods` is their number).
    pub requested: Resources,
    /// Sum of the scoring CPU requests (see [`PodRequests`]).
    pub score_milli_cpu: i64,
    /// Sum of the scoring memory requests.
    pub score_memory: i64,
    /// The pods on the node, by key.
    pub pods: HashMap<String, Arc<PodInfo>>,
    /// How many pods of each controlling owner UID are on the node.
    pub owner_counts: HashMap<String, u32>,
    /// How many pods on the node have required anti-affinity terms.
    pub anti_affinity_pods: usize,
    /// How many pods on the node bind each host port. Counted rather than a set: a pod seen
    /// again is added before its previous version is forgotten, and both hold its ports.
    pub used_ports: HashMap<HostPort, u32>,
}

impl NodeInfo {
    fn add(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests.fit);
        self.score_milli_cpu = self
            .score_milli_cpu
            .saturating_add(pod.requests.score_milli_cpu);
        self.score_memory = self.score_memory.saturating_add(pod.requests.score_memory);
        if let Some(owner) = &pod.owner {
            *self.owner_counts.entry(owner.clone()).or_default() += 1;
        }
        if !pod.required_anti_affinity.is_empty() {
            self.anti_affinity_pods += 1;
        }
        for port in &pod.host_ports {
            *self.used_ports.entry(port.clone()).or_default() += 1;
        }
        if let Some(old) = self.pods.insert(pod.key(), pod) {
            self.forget(&old);
        }
    }

    fn remove(&mut self, key: &str) -> Option<Arc<PodInfo>> {
        let pod = self.pods.remove(key)?;
        self.forget(&pod);
        Some(pod)
    }

    /// Takes a pod's share out of the sums (the pod itself is already out of `pods`).
    fn forget(&mut self, pod: &PodInfo) {
        self.requested.sub(&pod.requests.fit);
        self.score_milli_cpu = self
            .score_milli_cpu
            .saturating_sub(pod.requests.score_milli_cpu);
        self.score_memory = self.score_memory.saturating_sub(pod.requests.score_memory);
        if let Some(owner) = &pod.owner {
            if let Some(count) = self.owner_counts.get_mut(owner) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.owner_counts.remove(owner);
                }
            }
        }
        if !pod.required_anti_affinity.is_empty() {
            self.anti_affinity_pods = self.anti_affinity_pods.saturating_sub(1);
        }
        for port in &pod.host_ports {
            if let Some(count) = self.used_ports.get_mut(port) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.used_ports.remove(port);
                }
            }
        }
    }
}

/// All nodes, ordered by name, and where each known pod is.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    pod_node: HashMap<String, String>,
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Nodes whose Node object is known, in name order, with their attributes.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeInfo, &NodeAttrs)> {
        self.nodes
            .iter()
            .filter_map(|n| n.attrs.as_ref().map(|a| (n, a)))
    }

    /// Every node entry, including those only known from the pods bound to them.
    pub fn nodes_with_pods(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.iter()
    }

    /// The number of nodes whose Node object is known.
    pub fn node_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.attrs.is_some()).count()
    }

    /// The node called `name`, if anything is known about it.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).and_then(|&i| self.nodes.get(i))
    }

    /// Sets a node's attributes; returns whether they changed (a new node counts as a change).
    pub fn upsert_node(&mut self, attrs: NodeAttrs) -> bool {
        let name = attrs.name.clone();
        let node = self.node_mut(&name);
        if node.attrs.as_ref() == Some(&attrs) {
            return false;
        }
        node.attrs = Some(attrs);
        true
    }

    /// Forgets a node's attributes; its pods stay accounted until they are removed.
    pub fn remove_node(&mut self, name: &str) {
        if let Some(&i) = self.index.get(name) {
            if let Some(node) = self.nodes.get_mut(i) {
                node.attrs = None;
            }
            self.drop_if_empty(name);
        }
    }

    /// Places `pod` on `node` (moving it if it was elsewhere).
    pub fn add_pod(&mut self, node: &str, pod: Arc<PodInfo>) {
        let key = pod.key();
        if let Some(previous) = self.pod_node.get(&key).cloned() {
            if previous != node {
                self.remove_pod(&key);
            }
        }
        self.pod_node.insert(key, node.to_string());
        self.node_mut(node).add(pod);
    }

    /// Removes the pod `key` (`namespace/name`); returns the node it was on.
    pub fn remove_pod(&mut self, key: &str) -> Option<String> {
        let node = self.pod_node.remove(key)?;
        if let Some(&i) = self.index.get(&node) {
            if let Some(info) = self.nodes.get_mut(i) {
                info.remove(key);
            }
        }
        self.drop_if_empty(&node);
        Some(node)
    }

    /// The node the pod `key` is on, if it is in the snapshot.
    pub fn pod_node(&self, key: &str) -> Option<&str> {
        self.pod_node.get(key).map(String::as_str)
    }

    /// Whether any pod in the snapshot has required anti-affinity terms.
    pub fn has_anti_affinity_pods(&self) -> bool {
        self.nodes.iter().any(|n| n.anti_affinity_pods > 0)
    }

    fn node_mut(&mut self, name: &str) -> &mut NodeInfo {
        let i = match self.index.get(name) {
            Some(&i) => i,
            None => {
                let at = self.nodes.partition_point(|n| n.name.as_str() < name);
                self.nodes.insert(
                    at,
                    NodeInfo {
                        name: name.to_string(),
                        ..Default::default()
                    },
                );
                self.reindex();
                at
            }
        };
        &mut self.nodes[i]
    }

    fn drop_if_empty(&mut self, name: &str) {
        let Some(&i) = self.index.get(name) else {
            return;
        };
        if self
            .nodes
            .get(i)
            .is_some_and(|n| n.attrs.is_none() && n.pods.is_empty())
        {
            self.nodes.remove(i);
            self.reindex();
        }
    }

    fn reindex(&mut self) {
        self.index = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

    fn node(ready: Option<&str>) -> Node {
        Node {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: ready.map(|s| {
                    vec![NodeCondition {
                        type_: "Ready".into(),
                        status: s.into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn readiness_becomes_a_taint() {
        assert!(NodeAttrs::from_node(&node(Some("True"))).taints.is_empty());
        let t = NodeAttrs::from_node(&node(Some("False"))).taints;
        assert_eq!(
            (t[0].key.as_str(), t[0].effect.as_str()),
            (TAINT_NOT_READY, "NoSchedule")
        );
        let t = NodeAttrs::from_node(&node(None)).taints;
        assert_eq!(t[0].key, TAINT_NOT_READY);
        let t = NodeAttrs::from_node(&node(Some("Unknown"))).taints;
        assert_eq!(t[0].key, TAINT_UNREACHABLE);
    }

    fn pod(name: &str, cpu: i64) -> Arc<PodInfo> {
        let mut p = PodInfo {
            namespace: "default".into(),
            name: name.into(),
            owner: Some("rs".into()),
            ..Default::default()
        };
        p.requests.fit.milli_cpu = cpu;
        p.requests.fit.pods = 1;
        Arc::new(p)
    }

    #[test]
    fn pods_move_and_sums_follow() {
        let mut s = Snapshot::new();
        for name in ["b", "a"] {
            s.upsert_node(NodeAttrs {
                name: name.into(),
                ..Default::default()
            });
        }
        let names: Vec<_> = s.nodes().map(|(n, _)| n.name.as_str()).collect();
        assert_eq!(names, ["a", "b"], "ordered by name");
        s.add_pod("a", pod("p", 100));
        s.add_pod("a", pod("q", 50));
        assert_eq!(s.node("a").map(|n| n.requested.milli_cpu), Some(150));
        s.add_pod("b", pod("p", 100));
        assert_eq!(s.node("a").map(|n| n.requested.milli_cpu), Some(50));
        assert_eq!(s.node("a").map(|n| n.owner_counts["rs"]), Some(1));
        assert_eq!(s.node("b").map(|n| n.requested.pods), Some(1));
        assert_eq!(s.remove_pod("default/p").as_deref(), Some("b"));
        assert_eq!(s.node("b").map(|n| n.requested), Some(Resources::default()));
        assert!(s.node("b").is_some_and(|n| n.owner_counts.is_empty()));
    }

    #[test]
    fn pods_on_unknown_nodes_are_kept_but_the_node_is_not_listed() {
        let mut s = Snapshot::new();
        s.add_pod("ghost", pod("p", 100));
        assert_eq!(s.node_count(), 0);
        assert!(s.upsert_node(NodeAttrs {
            name: "ghost".into(),
            ..Default::default()
        }));
        assert_eq!(s.node("ghost").map(|n| n.requested.milli_cpu), Some(100));
        s.remove_node("ghost");
        assert_eq!(s.node_count(), 0);
        s.remove_pod("default/p");
        assert!(s.node("ghost").is_none(), "dropped once empty and unknown");
    }
}
