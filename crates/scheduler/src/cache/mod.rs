//! The loop's state, without IO: the snapshot, the queue and the assumed pods (decided,
//! binding in flight). It turns watch events and binding outcomes into snapshot and queue
//! changes, and hands out the next piece of work.
//!
//! Assumed pods, like kube-scheduler's cache: a pod is put on its chosen node in the
//! snapshot before its binding is sent, so concurrent decisions count it and never
//! double-book the node. The assumption ends when the watch shows the pod bound
//! (confirmed), or when the binding fails (forgotten: taken out of the snapshot).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::algorithm::schedule;
use crate::queue::Queue;
use crate::score::Weights;
use crate::snapshot::{HostPort, NodeAttrs, PodInfo, Snapshot};

/// A pending pod: its scheduling inputs and the object (for events and status).
#[derive(Debug, Clone)]
pub struct Pending {
    /// Scheduling inputs.
    pub info: Arc<PodInfo>,
    /// The pod as last seen.
    pub pod: Arc<Pod>,
    /// Why the pod's requests cannot be parsed, if they cannot.
    pub invalid: Option<String>,
}

/// What the loop should do next for a pod it took off the queue.
#[derive(Debug)]
pub enum Work {
    /// Bind `pod` to `node` (already assumed).
    Bind {
        /// The pod.
        pod: Arc<Pod>,
        /// The node.
        node: String,
    },
    /// Report that `pod` fits nowhere, with kube-scheduler's message.
    Unschedulable {
        /// The pod.
        pod: Arc<Pod>,
        /// `0/N nodes are available: …`
        message: String,
    },
    /// The pod's resource requests cannot be parsed.
    Invalid {
        /// The pod.
        pod: Arc<Pod>,
        /// What is wrong.
        message: String,
    },
}

/// How a binding call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindOutcome {
    /// The API server accepted it.
    Bound,
    /// The pod is gone or already bound (404/409): nothing to retry.
    Moot,
    /// Any other failure: retry after backoff.
    Failed,
}

#[derive(Debug)]
struct Assumed {
    node: String,
    /// The binding call succeeded; waiting for the watch to show it.
    bound: bool,
}

/// The scheduler's state.
#[derive(Debug, Default)]
pub struct Cache {
    snapshot: Snapshot,
    queue: Queue<Pending>,
    assumed: HashMap<String, Assumed>,
    scheduler_name: String,
    weights: Weights,
    turn: u64,
    relist_pods: Option<HashSet<String>>,
    relist_nodes: Option<HashSet<String>>,
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

impl Cache {
    /// An empty cache for the scheduler called `scheduler_name`.
    pub fn new(scheduler_name: &str, weights: Weights) -> Self {
        Self {
            scheduler_name: scheduler_name.to_string(),
            weights,
            ..Default::default()
        }
    }

    /// The snapshot (for tests and diagnostics).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The queue (for tests and diagnostics).
    pub fn queue(&self) -> &Queue<Pending> {
        &self.queue
    }

    /// Whether a pod is ready to be scheduled.
    pub fn has_work(&self) -> bool {
        self.queue.has_active()
    }

    /// When the queue next needs [`Cache::tick`].
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.queue.next_wakeup()
    }

    /// Moves pods whose backoff or wait is over back to the active queue.
    pub fn tick(&mut self, now: Instant) {
        self.queue.flush(now);
    }

    fn is_ours(&self, pod: &Pod) -> bool {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or_default();
        name.is_empty() || name == self.scheduler_name
    }

    /// A pod was added or changed.
    pub fn pod_applied(&mut self, pod: Pod, now: Instant) {
        let key = key_of(&pod);
        if let Some(seen) = self.relist_pods.as_mut() {
            seen.insert(key.clone());
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        let finished = matches!(phase, Some("Succeeded") | Some("Failed"));
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        match node {
            Some(node) => {
                self.queue.remove(&key);
                self.assumed.remove(&key);
                if finished {
                    if self.snapshot.remove_pod(&key).is_some() {
                        self.queue.move_all(now);
                    }
                    return;
                }
                let info = PodInfo::from_pod(&pod).unwrap_or_else(|error| {
                    tracing::warn!(pod = %key, %error, "bound pod has invalid requests; counting it as requesting nothing");
                    PodInfo {
                        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                        name: pod.metadata.name.clone().unwrap_or_default(),
                        // It still binds its host ports on the node.
                        host_ports: pod.spec.as_ref().map(HostPort::of_pod).unwrap_or_default(),
                        ..Default::default()
                    }
                });
                self.snapshot.add_pod(&node, Arc::new(info));
            }
            None => {
                if self.assumed.get(&key).is_some_and(|a| a.bound) {
                    // An older version than our successful binding: ignore it.
                    return;
                }
                let terminating = pod.metadata.deletion_timestamp.is_some();
                if finished || terminating || !self.is_ours(&pod) {
                    self.queue.remove(&key);
                    return;
                }
                let (info, invalid) = match PodInfo::from_pod(&pod) {
                    Ok(info) => (info, None),
                    Err(error) => (
                        PodInfo {
                            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                            name: pod.metadata.name.clone().unwrap_or_default(),
                            ..Default::default()
                        },
                        Some(error.to_string()),
                    ),
                };
                // Our own PodScheduled=False patch comes back as an update: only a change
                // of spec or labels can make the pod fit, as in kube-scheduler's
                // isPodUpdated.
                let relevant = self.queue.get(&key).is_none_or(|old| {
                    old.pod.spec != pod.spec || old.pod.metadata.labels != pod.metadata.labels
                });
                let pending = Pending {
                    info: Arc::new(info),
                    pod: Arc::new(pod),
                    invalid,
                };
                self.queue.add_or_update(&key, pending, relevant, now);
            }
        }
    }

    /// A pod was deleted.
    pub fn pod_deleted(&mut self, pod: &Pod, now: Instant) {
        let key = key_of(pod);
        self.queue.remove(&key);
        self.assumed.remove(&key);
        if self.snapshot.remove_pod(&key).is_some() {
            self.queue.move_all(now);
        }
    }

    /// The pod watch is relisting: pods not listed again before [`Cache::pods_relisted`]
    /// are gone.
    pub fn pods_relisting(&mut self) {
        self.relist_pods = Some(HashSet::new());
    }

    /// The pod relist is complete.
    pub fn pods_relisted(&mut self, now: Instant) {
        let Some(seen) = self.relist_pods.take() else {
            return;
        };
        let stale: Vec<String> = self
            .snapshot
            .nodes_with_pods()
            .flat_map(|n| n.pods.keys())
            .filter(|k| !seen.contains(*k) && !self.assumed.contains_key(*k))
            .cloned()
            .collect();
        let any = !stale.is_empty();
        for key in stale {
            self.snapshot.remove_pod(&key);
            self.queue.remove(&key);
        }
        for key in self.queue.keys() {
            if !seen.contains(&key) {
                self.queue.remove(&key);
            }
        }
        if any {
            self.queue.move_all(now);
        }
    }

    /// A node was added or changed; a change of what the scheduler looks at (allocatable,
    /// labels, taints, readiness, cordon) retries the unschedulable pods.
    pub fn node_applied(&mut self, node: &Node, now: Instant) {
        let attrs = NodeAttrs::from_node(node);
        if let Some(seen) = self.relist_nodes.as_mut() {
            seen.insert(attrs.name.clone());
        }
        if let Some(error) = &attrs.invalid {
            tracing::warn!(node = %attrs.name, %error, "node allocatable is not valid; nothing will fit");
        }
        if self.snapshot.upsert_node(attrs) {
            self.queue.move_all(now);
        }
    }

    /// A node was deleted.
    pub fn node_deleted(&mut self, node: &Node) {
        if let Some(name) = node.metadata.name.as_deref() {
            self.snapshot.remove_node(name);
        }
    }

    /// The node watch is relisting.
    pub fn nodes_relisting(&mut self) {
        self.relist_nodes = Some(HashSet::new());
    }

    /// The node relist is complete.
    pub fn nodes_relisted(&mut self) {
        let Some(seen) = self.relist_nodes.take() else {
            return;
        };
        let stale: Vec<String> = self
            .snapshot
            .nodes()
            .map(|(n, _)| n.name.clone())
            .filter(|n| !seen.contains(n))
            .collect();
        for name in stale {
            self.snapshot.remove_node(&name);
        }
    }

    /// Takes the next pod off the queue and decides; a chosen node is assumed at once.
    pub fn next(&mut self, now: Instant) -> Option<Work> {
        let (key, pending) = self.queue.pop()?;
        if let Some(message) = pending.invalid {
            self.queue.unschedulable(&key, now);
            return Some(Work::Invalid {
                pod: pending.pod,
                message,
            });
        }
        self.turn = self.turn.wrapping_add(1);
        match schedule(&self.snapshot, &pending.info, &self.weights, self.turn) {
            Ok(decision) => {
                self.snapshot
                    .add_pod(&decision.node, Arc::clone(&pending.info));
                self.assumed.insert(
                    key,
                    Assumed {
                        node: decision.node.clone(),
                        bound: false,
                    },
                );
                Some(Work::Bind {
                    pod: pending.pod,
                    node: decision.node,
                })
            }
            Err(fit) => {
                self.queue.unschedulable(&key, now);
                Some(Work::Unschedulable {
                    pod: pending.pod,
                    message: fit.to_string(),
                })
            }
        }
    }

    /// A binding of pod `key` to `node` ended with `outcome`.
    pub fn bound(&mut self, key: &str, node: &str, outcome: BindOutcome, now: Instant) {
        match outcome {
            BindOutcome::Bound => {
                self.queue.remove(key);
                if let Some(a) = self.assumed.get_mut(key) {
                    a.bound = true;
                }
            }
            BindOutcome::Moot | BindOutcome::Failed => {
                if self.assumed.get(key).is_some_and(|a| a.node == node) {
                    self.assumed.remove(key);
                    self.snapshot.remove_pod(key);
                }
                if outcome == BindOutcome::Moot {
                    self.queue.remove(key);
                } else {
                    self.queue.failed(key, now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
