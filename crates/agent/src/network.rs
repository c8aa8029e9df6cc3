//! The node's pod network: waits for the Node's pod subnet (`spec.podCIDR`, given by the
//! node IPAM controller), sets up the bridge for it through `strata-net`, and frees the
//! addresses of pods that left this node while the agent was down.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use strata_net::{Ipv4Net, PodNetwork, PodNetworkConfig};

use crate::{AgentError, Context};

/// How often the agent looks for its pod subnet while it has none.
const SUBNET_POLL: Duration = Duration::from_secs(1);

/// The bridge of the node's pod network, unless `--bridge` says otherwise.
pub const DEFAULT_BRIDGE: &str = "strata0";

/// Sets up the pod network once the node has its subnet, and stores it in the context.
pub async fn setup(ctx: &Context) -> Result<(), AgentError> {
    let subnet = wait_for_subnet(ctx).await?;
    let network = PodNetwork::setup(PodNetworkConfig {
        bridge: ctx.options.bridge.clone(),
        subnet,
        state_dir: ctx.options.data_dir.join("net").join("ipam"),
    })
    .await
    .map_err(AgentError::Network)?;
    release_orphans(ctx, &network);
    tracing::info!(bridge = %network.bridge(), subnet = %subnet, gateway = %network.gateway(), "pod network ready");
    let _ = ctx.network.set(network);
    Ok(())
}

async fn wait_for_subnet(ctx: &Context) -> Result<Ipv4Net, AgentError> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut told = false;
    loop {
        let cidr = match nodes.get(&ctx.options.node_name).await {
            Ok(node) => node.spec.and_then(|s| s.pod_cidr),
            Err(err) => {
                tracing::debug!(error = %err, "cannot read the node");
                None
            }
        };
        if let Some(cidr) = cidr.filter(|c| !c.is_empty()) {
            return cidr.parse().map_err(|err: strata_net::CidrError| {
                AgentError::Internal(format!("the node's spec.podCIDR: {err}"))
            });
        }
        if !told {
            tracing::info!(node = %ctx.options.node_name, "waiting for the node's pod subnet (spec.podCIDR)");
            told = true;
        }
        tokio::time::sleep(SUBNET_POLL).await;
    }
}

/// Frees the addresses whose pods have no directory on this node any more (they were
/// removed while the agent was down, between detach and release).
fn release_orphans(ctx: &Context, network: &PodNetwork) {
    let pods = ctx.options.data_dir.join("pods");
    let Ok(allocations) = network.ipam().allocations() else {
        return;
    };
    for (ip, owner) in allocations {
        if !pods.join(&owner).exists() {
            tracing::info!(pod = %owner, %ip, "releasing the address of a pod that is gone");
            let _ = network.ipam().release(&owner);
        }
    }
}
