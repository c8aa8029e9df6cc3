//! The node IPAM controller (kube-controller-manager's range allocator): gives every Node
//! without one a pod subnet (`spec.podCIDR`, `spec.podCIDRs`) out of the cluster range,
//! a /24 each by default, never one that another node holds. A subnet is free again when
//! its node is deleted. When the range is used up the node gets a `CIDRNotAvailable`
//! event and is looked at again later.
//!
//! The choice is a pure function of the nodes in the cache ([`pick`]); reconciles run
//! one at a time and remember what they assigned until the cache shows it, so two new
//! nodes never get the same subnet.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use strata_client::events::{EventType, Recorder};
use strata_net::Ipv4Net;

use crate::backoff::Backoff;
use crate::{ControllerError, ControllerOptions};

/// The component name on events.
pub const COMPONENT: &str = "node-ipam-controller";

/// How soon a node that found the range used up looks again (a deleted node frees a
/// subnet without an event on the waiting one).
const RETRY_EXHAUSTED: Duration = Duration::from_secs(5);

/// How the pod range is split between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRange {
    /// The cluster's pod range (`--cluster-cidr`, 10.42.0.0/16 by default).
    pub cluster: Ipv4Net,
    /// The prefix length of each node's subnet (24 by default).
    pub node_prefix: u8,
}

impl Default for PodRange {
    fn default() -> Self {
        Self {
            cluster: Ipv4Net::new(std::net::Ipv4Addr::new(10, 42, 0, 0), 16)
                .unwrap_or_else(|| unreachable!("10.42.0.0/16 is a network")),
            node_prefix: 24,
        }
    }
}

/// A reconcile that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing the node's subnet failed.
    #[error("cannot set the pod subnet of node {node}")]
    Patch {
        /// The node.
        node: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// The subnets nodes hold now (a node may hold several `podCIDRs`; IPv6 ones are not
/// this allocator's and are skipped).
pub fn held(nodes: &[Arc<Node>]) -> Vec<Ipv4Net> {
    nodes
        .iter()
        .filter_map(|node| node.spec.as_ref())
        .flat_map(|spec| {
            spec.pod_cidrs
                .iter()
                .flatten()
                .chain(spec.pod_cidr.iter())
                .filter_map(|cidr| cidr.parse::<Ipv4Net>().ok())
        })
        .collect()
}

/// The first subnet of `range` that overlaps none of `taken`.
pub fn pick(range: PodRange, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    let count = range.cluster.subnet_count(range.node_prefix);
    (0..count)
        .filter_map(|index| {
            range
                .cluster
                .subnet(range.node_prefix, u32::try_from(index).ok()?)
        })
        .find(|candidate| !taken.iter().any(|t| t.overlaps(candidate)))
}

/// True when the node has a pod subnet already.
fn has_subnet(node: &Node) -> bool {
    node.spec
        .as_ref()
        .is_some_and(|spec| spec.pod_cidr.as_deref().is_some_and(|c| !c.is_empty()))
}

struct Context {
    client: kube::Client,
    nodes: Store<Node>,
    range: PodRange,
    recorder: Recorder,
    backoff: Backoff,
    /// Subnets assigned by this process, per node, until the cache shows them.
    assigned: Mutex<BTreeMap<String, Ipv4Net>>,
}

/// Runs the node IPAM controller until the future is dropped.
pub async fn run(client: kube::Client, options: ControllerOptions) -> Result<(), ControllerError> {
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default())
        // One at a time: each choice must see the ones before it.
        .with_config(kube::runtime::controller::Config::default().concurrency(1));
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        nodes: controller.store(),
        range: options.pod_range,
        backoff: Backoff::default(),
        assigned: Mutex::new(BTreeMap::new()),
    });
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %crate::chain(&err), "node IPAM reconcile");
            }
        })
        .await;
    Err(ControllerError::Ended {
        controller: COMPONENT,
    })
}

fn error_policy(node: Arc<Node>, err: &Error, ctx: Arc<Context>) -> Action {
    crate::retry(&ctx.backoff, node.as_ref(), err)
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    if has_subnet(&node) {
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    let nodes = ctx.nodes.state();
    let mut taken = held(&nodes);
    let remembered: Vec<(String, Ipv4Net)> = match ctx.assigned.lock() {
        Ok(mut assigned) => {
            // Forget what the cache shows now, and the assignments of deleted nodes.
            assigned.retain(|node, _| {
                ctx.nodes
                    .get(&ObjectRef::new(node))
                    .is_some_and(|n| !has_subnet(&n))
            });
            assigned.iter().map(|(n, c)| (n.clone(), *c)).collect()
        }
        Err(_) => Vec::new(),
    };
    if let Some((_, mine)) = remembered.iter().find(|(n, _)| *n == name) {
        // Assigned already; the cache has not caught up.
        return write(&ctx, &name, *mine).await;
    }
    taken.extend(remembered.iter().map(|(_, c)| *c));
    let Some(subnet) = pick(ctx.range, &taken) else {
        let message = format!(
            "Node {name} has no pod subnet: every /{} of {} is in use",
            ctx.range.node_prefix, ctx.range.cluster
        );
        ctx.recorder
            .publish(
                &node.object_ref(&()),
                EventType::Warning,
                "CIDRNotAvailable",
                &message,
            )
            .await;
        return Ok(Action::requeue(RETRY_EXHAUSTED));
    };
    if let Ok(mut assigned) = ctx.assigned.lock() {
        assigned.insert(name.clone(), subnet);
    }
    write(&ctx, &name, subnet).await
}

async fn write(ctx: &Context, name: &str, subnet: Ipv4Net) -> Result<Action, Error> {
    let patch = json!({"spec": {"podCIDR": subnet.to_string(), "podCIDRs": [subnet.to_string()]}});
    Api::<Node>::all(ctx.client.clone())
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(|source| Error::Patch {
            node: name.to_string(),
            source,
        })?;
    tracing::info!(node = name, subnet = %subnet, "assigned the node's pod subnet");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cidr: Option<&str>) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"podCIDR": cidr}}))
                .unwrap(),
        )
    }

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    #[test]
    fn picks_the_first_free_subnet_and_skips_overlaps() {
        let range = PodRange::default();
        assert_eq!(pick(range, &[]), Some(net("10.42.0.0/24")));
        let taken = held(&[
            node(Some("10.42.0.0/24")),
            node(None),
            node(Some("10.42.1.0/24")),
        ]);
        assert_eq!(pick(range, &taken), Some(net("10.42.2.0/24")));
        // A node given a larger block by hand blocks every /24 inside it.
        assert_eq!(
            pick(range, &[net("10.42.0.0/23")]),
            Some(net("10.42.2.0/24"))
        );
        // A freed subnet (its node deleted) is the first choice again.
        assert_eq!(
            pick(range, &[net("10.42.1.0/24")]),
            Some(net("10.42.0.0/24"))
        );
    }

    #[test]
    fn an_exhausted_range_has_nothing_to_give() {
        let range = PodRange {
            cluster: net("10.42.0.0/23"),
            node_prefix: 24,
        };
        assert_eq!(
            pick(range, &[net("10.42.0.0/24"), net("10.42.1.0/24")]),
            None
        );
        // Garbage in a node's spec is no subnet, and not a panic.
        assert!(held(&[node(Some("not-a-cidr"))]).is_empty());
    }
}
