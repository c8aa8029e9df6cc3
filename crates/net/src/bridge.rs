//! The node's pod network: one Linux bridge holding the subnet's gateway address, and per
//! pod sandbox a veth pair whose host end is a bridge port and whose other end is `eth0`
//! in the sandbox, with the pod's address and a default route through the gateway. All
//! of it over netlink; nothing is routed anywhere but the bridge (no masquerade, no
//! forwarding rules), so pod traffic stays on this machine unless something else routes
//! it.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::cidr::Ipv4Net;
use crate::ipam::Ipam;
use crate::{NetError, errno, netns, short_hash};

/// The name of the pod's interface inside its sandbox.
pub const POD_INTERFACE: &str = "eth0";

/// What a node's pod network is made of.
#[derive(Debug, Clone)]
pub struct PodNetworkConfig {
    /// The bridge's name (at most 15 bytes), e.g. `strata0`.
    pub bridge: String,
    /// The node's pod subnet (its `spec.podCIDR`).
    pub subnet: Ipv4Net,
    /// Where address records are kept (survives restarts).
    pub state_dir: PathBuf,
}

/// A pod's place on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodAddress {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix: u8,
    /// The gateway (the bridge's address).
    pub gateway: Ipv4Addr,
}

/// The pod network of this node: attaches pod sandboxes to the bridge and detaches them.
#[derive(Debug, Clone)]
pub struct PodNetwork {
    handle: Handle,
    bridge: String,
    ipam: Ipam,
}

impl PodNetwork {
    /// Opens a netlink connection (driven on the current tokio runtime), makes the bridge
    /// with the gateway address unless it exists, and brings it up.
    pub async fn setup(config: PodNetworkConfig) -> Result<Self, NetError> {
        if let Some(problem) = crate::interface_name_problem(&config.bridge) {
            return Err(NetError::Missing(format!("bridge name {problem}")));
        }
        let ipam = Ipam::open(&config.state_dir, config.subnet)?;
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| NetError::Netns {
                path: PathBuf::from("/proc/self/ns/net"),
                source,
            })?;
        tokio::spawn(connection);
        let network = Self {
            handle,
            bridge: config.bridge,
            ipam,
        };
        network.ensure_bridge().await?;
        Ok(network)
    }

    /// The node subnet.
    pub fn subnet(&self) -> Ipv4Net {
        self.ipam.subnet()
    }

    /// The gateway address (on the bridge).
    pub fn gateway(&self) -> Ipv4Addr {
        self.ipam.gateway()
    }

    /// The bridge's name.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The address manager.
    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// Gives the sandbox whose network namespace file is `netns` an address for `owner`
    /// and plugs it into the bridge. Idempotent: a sandbox already attached keeps its
    /// address; a half-made attachment (a crash in between) is redone.
    pub async fn attach(&self, owner: &str, netns: &Path) -> Result<PodAddress, NetError> {
        let ip = self.ipam.allocate(owner)?;
        let address = PodAddress {
            ip,
            prefix: self.ipam.subnet().prefix(),
            gateway: self.ipam.gateway(),
        };
        let host_end = host_interface(owner);
        if netns::run_in(netns, move |handle| is_configured(handle, ip)).await?
            && link_index(&self.handle, &host_end).await?.is_some()
        {
            return Ok(address);
        }
        let result = self.plug(&host_end, owner, netns, address).await;
        if result.is_err() {
            let _ = self.delete_link(&host_end).await;
        }
        result.map(|()| address)
    }

    /// Unplugs the sandbox of `owner` (its veth pair goes) and frees its address. Safe to
    /// repeat, and after the sandbox is gone.
    pub async fn detach(&self, owner: &str) -> Result<Option<Ipv4Addr>, NetError> {
        self.delete_link(&host_interface(owner)).await?;
        Ok(self.ipam.release(owner)?)
    }

    /// Removes the bridge (the veth pairs on it must be gone first to free addresses).
    pub async fn remove_bridge(&self) -> Result<(), NetError> {
        self.delete_link(&self.bridge).await
    }

    async fn plug(
        &self,
        host_end: &str,
        owner: &str,
        netns: &Path,
        address: PodAddress,
    ) -> Result<(), NetError> {
        let bridge = self.ensure_bridge().await?;
        // A leftover pair from an attach that did not finish.
        self.delete_link(host_end).await?;
        let peer = peer_interface(owner);
        let step = |step: String| move |source| NetError::Netlink { step, source };
        self.handle
            .link()
            .add(LinkVeth::new(host_end, &peer).build())
            .execute()
            .await
            .map_err(step(format!("create the veth pair {host_end}/{peer}")))?;
        let netns_file = std::fs::File::open(netns).map_err(|source| NetError::Netns {
            path: netns.to_path_buf(),
            source,
        })?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_name(&peer)
                    .setns_by_fd(netns_file.as_raw_fd())
                    .build(),
            )
            .execute()
            .await
            .map_err(step(format!("move {peer} into {}", netns.display())))?;
        drop(netns_file);
        let host_index = link_index(&self.handle, host_end)
            .await?
            .ok_or_else(|| NetError::Missing(format!("veth {host_end} vanished")))?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(host_index)
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(step(format!("plug {host_end} into bridge {}", self.bridge)))?;
        // Hairpin: a pod that reaches itself through a service address gets its packets
        // back through the port they came in on.
        self.handle
            .link()
            .set_port(LinkBridgePort::new(host_index).hairpin(true).build())
            .execute()
            .await
            .map_err(step(format!("set hairpin on {host_end}")))?;
        netns::run_in(netns, move |handle| {
            configure_pod_end(handle, peer, address)
        })
        .await
    }

    /// The bridge's index, after making it (with the gateway address) if missing.
    async fn ensure_bridge(&self) -> Result<u32, NetError> {
        let step = |step: String| move |source| NetError::Netlink { step, source };
        let index = match link_index(&self.handle, &self.bridge).await? {
            Some(index) => index,
            None => {
                let added = self
                    .handle
                    .link()
                    .add(LinkBridge::new(&self.bridge).build())
                    .execute()
                    .await;
                match added {
                    Err(err) if errno(&err) != Some(libc_eexist()) => {
                        return Err(step(format!("create bridge {}", self.bridge))(err));
                    }
                    _ => {}
                }
                link_index(&self.handle, &self.bridge)
                    .await?
                    .ok_or_else(|| NetError::Missing(format!("bridge {} vanished", self.bridge)))?
            }
        };
        let gateway = self.ipam.gateway();
        let prefix = self.ipam.subnet().prefix();
        match self
            .handle
            .address()
            .add(index, IpAddr::V4(gateway), prefix)
            .execute()
            .await
        {
            Err(err) if errno(&err) != Some(libc_eexist()) => {
                return Err(step(format!(
                    "give bridge {} the address {gateway}/{prefix}",
                    self.bridge
                ))(err));
            }
            _ => {}
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(step(format!("bring bridge {} up", self.bridge)))?;
        // Packets that come in on the bridge may be routed (to a service's endpoint, to
        // another node's pods); the proxy's forward rules keep them inside the cluster.
        let forwarding = PathBuf::from(format!(
            "/proc/sys/net/ipv4/conf/{}/forwarding",
            self.bridge
        ));
        std::fs::write(&forwarding, "1").map_err(|source| NetError::Sysctl {
            path: forwarding,
            source,
        })?;
        Ok(index)
    }

    /// Routes `cidr` onto the bridge (for the service range: a service address without
    /// rules then stays on this machine instead of following the default route out).
    pub async fn route_to_bridge(&self, cidr: Ipv4Net) -> Result<(), NetError> {
        let index = self.ensure_bridge().await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(cidr.network(), cidr.prefix())
            .output_interface(index)
            .scope(rtnetlink::packet_route::route::RouteScope::Link)
            .build();
        match self.handle.route().add(route).execute().await {
            Err(err) if errno(&err) != Some(libc_eexist()) => Err(NetError::Netlink {
                step: format!("route {cidr} to bridge {}", self.bridge),
                source: err,
            }),
            _ => Ok(()),
        }
    }

    async fn delete_link(&self, name: &str) -> Result<(), NetError> {
        let Some(index) = link_index(&self.handle, name).await? else {
            return Ok(());
        };
        match self.handle.link().del(index).execute().await {
            Err(err) if errno(&err) != Some(libc_enodev()) => Err(NetError::Netlink {
                step: format!("delete {name}"),
                source: err,
            }),
            _ => Ok(()),
        }
    }
}

/// Inside the sandbox: true when `eth0` holds `ip` already.
async fn is_configured(handle: Handle, ip: Ipv4Addr) -> Result<bool, NetError> {
    let Some(index) = link_index(&handle, POD_INTERFACE).await? else {
        return Ok(false);
    };
    let mut addresses = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .set_address_filter(IpAddr::V4(ip))
        .execute();
    let found = addresses
        .try_next()
        .await
        .map_err(|source| NetError::Netlink {
            step: format!("list the addresses of {POD_INTERFACE}"),
            source,
        })?;
    if found.is_some() {
        return Ok(true);
    }
    // A half-configured eth0 (an attach that did not finish): remove it to start over.
    handle
        .link()
        .del(index)
        .execute()
        .await
        .map_err(|source| NetError::Netlink {
            step: format!("remove a half-configured {POD_INTERFACE}"),
            source,
        })?;
    Ok(false)
}

/// Inside the sandbox: renames the veth end to `eth0`, gives it the address, brings it up
/// and routes everything through the gateway.
async fn configure_pod_end(
    handle: Handle,
    peer: String,
    address: PodAddress,
) -> Result<(), NetError> {
    let step = |step: String| move |source| NetError::Netlink { step, source };
    let index = link_index(&handle, &peer)
        .await?
        .ok_or_else(|| NetError::Missing(format!("{peer} did not arrive in the sandbox")))?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(index)
                .name(POD_INTERFACE)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(step(format!("rename {peer} to {POD_INTERFACE}")))?;
    handle
        .address()
        .add(index, IpAddr::V4(address.ip), address.prefix)
        .execute()
        .await
        .map_err(step(format!(
            "give {POD_INTERFACE} the address {}/{}",
            address.ip, address.prefix
        )))?;
    handle
        .route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(address.gateway)
                .output_interface(index)
                .build(),
        )
        .execute()
        .await
        .map_err(step(format!(
            "route through the gateway {}",
            address.gateway
        )))?;
    Ok(())
}

/// The index of the link called `name`, if there is one.
async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|link| link.header.index)),
        Err(err) if errno(&err) == Some(libc_enodev()) => Ok(None),
        Err(source) => Err(NetError::Netlink {
            step: format!("look up link {name}"),
            source,
        }),
    }
}

/// The host end of a pod's veth pair: `veth` and 11 hex digits of a hash of the owner
/// (15 bytes, the kernel's limit).
pub fn host_interface(owner: &str) -> String {
    format!("veth{}", &short_hash(owner)[..11])
}

/// The pod end's name until it is renamed inside the sandbox.
fn peer_interface(owner: &str) -> String {
    format!("vp{}", &short_hash(owner)[..11])
}

fn libc_eexist() -> i32 {
    nix::errno::Errno::EEXIST as i32
}

fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_the_kernel_limit_and_are_stable() {
        let name = host_interface("0b7e1c56-8f2a-4c1e-9d3b-2a5f6e7d8c9b");
        assert_eq!(name.len(), 15);
        assert_eq!(name, host_interface("0b7e1c56-8f2a-4c1e-9d3b-2a5f6e7d8c9b"));
        assert_ne!(name, host_interface("another"));
        assert!(peer_interface("x").len() <= 15);
    }
}
