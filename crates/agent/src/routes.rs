//! Routes to the other nodes' pods: watches the Nodes and routes each other node's pod
//! subnet (`spec.podCIDR`) through its `InternalIP` (`strata-net`'s host-gw routes).
//! A node without both is skipped; a node whose address is not on a network this
//! machine is attached to gets no route (the kernel refuses it, and it is logged).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use strata_net::Ipv4Net;
use strata_net::routes::NodeRoutes;

use crate::Context;

/// How soon a failed sync is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Keeps the routes until the future is dropped.
pub async fn run(ctx: Arc<Context>) {
    let mut routes = match NodeRoutes::open().await {
        Ok(routes) => routes,
        Err(err) => {
            tracing::warn!(error = %crate::containers::monitor::one_line(&err), "cannot manage routes to other nodes");
            return;
        }
    };
    tracing::debug!(installed = ?routes.installed(), "routes to other nodes: started");
    let (nodes, writer) = reflector::store();
    // The watch fills the cache only while polled: a task of its own drives it and says
    // when something changed.
    let (changed, mut changes) = tokio::sync::mpsc::channel::<()>(1);
    let client = ctx.client.clone();
    let driver = tokio::spawn(async move {
        let mut events = std::pin::pin!(
            watcher(Api::<Node>::all(client), watcher::Config::default())
                .default_backoff()
                .reflect(writer)
        );
        while events.next().await.is_some() {
            let _ = changed.try_send(());
        }
    });
    let _stop_driver = crate::AbortOnDrop::of(driver);
    loop {
        // Wait for a change, or retry a failed sync.
        if let Ok(None) = tokio::time::timeout(RETRY, changes.recv()).await {
            return;
        }
        if nodes.wait_until_ready().await.is_err() {
            return;
        }
        let wanted = wanted(&nodes, &ctx.options.node_name);
        if *routes.installed() == wanted {
            continue;
        }
        tracing::debug!(?wanted, "routes to other nodes");
        if let Err(err) = routes.sync(&wanted).await {
            tracing::warn!(error = %crate::containers::monitor::one_line(&err), "cannot route to another node's pods");
        }
    }
}

/// Every other node's pod subnet and the address it lies behind.
fn wanted(nodes: &Store<Node>, me: &str) -> BTreeMap<Ipv4Net, Ipv4Addr> {
    nodes
        .state()
        .iter()
        .filter(|node| node.name_any() != me)
        .filter_map(|node| route_of(node))
        .collect()
}

/// A node's pod subnet and its `InternalIP`, when it has both.
pub fn route_of(node: &Node) -> Option<(Ipv4Net, Ipv4Addr)> {
    let subnet = node.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok()?;
    let address = node
        .status
        .as_ref()?
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse::<Ipv4Addr>()
        .ok()?;
    // A node on loopback (one-node `strata up`) is not reachable from another machine.
    (!address.is_loopback()).then_some((subnet, address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(cidr: Option<&str>, ip: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"podCIDR": cidr},
            "status": {"addresses": [{"type": "Hostname", "address": "n"}, {"type": "InternalIP", "address": ip}]}}))
        .unwrap()
    }

    #[test]
    fn a_route_needs_a_subnet_and_a_reachable_internal_ip() {
        assert_eq!(
            route_of(&node(Some("10.42.1.0/24"), "192.168.5.2")),
            Some((
                "10.42.1.0/24".parse().unwrap(),
                "192.168.5.2".parse().unwrap()
            ))
        );
        assert_eq!(route_of(&node(None, "192.168.5.2")), None);
        assert_eq!(route_of(&node(Some("10.42.1.0/24"), "127.0.0.1")), None);
        assert_eq!(route_of(&node(Some("garbage"), "192.168.5.2")), None);
    }
}
