//! Routes to the other nodes' pod subnets ("host-gw", as flannel's backend of that name):
//! each remote subnet goes through that node's address, which must be on a network this
//! machine is directly attached to (the kernel refuses a gateway that is not, and so
//! pod ranges never follow the default route out). Routes carry their own protocol
//! number, so the ones a previous run left are found and replaced at start.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::cidr::Ipv4Net;
use crate::{NetError, errno};

/// The protocol number on Strata's routes (`ip route` shows `proto 83`).
pub const ROUTE_PROTOCOL: u8 = 83;

/// The pod-subnet routes of this node.
#[derive(Debug)]
pub struct NodeRoutes {
    handle: Handle,
    installed: BTreeMap<Ipv4Net, Ipv4Addr>,
}

impl NodeRoutes {
    /// Opens a netlink connection (driven on the current tokio runtime) and reads the
    /// routes a previous run installed.
    pub async fn open() -> Result<Self, NetError> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|source| NetError::Netns {
                path: "/proc/self/ns/net".into(),
                source,
            })?;
        tokio::spawn(connection);
        let installed = installed(&handle).await?;
        Ok(Self { handle, installed })
    }

    /// The routes in place now: subnet → gateway.
    pub fn installed(&self) -> &BTreeMap<Ipv4Net, Ipv4Addr> {
        &self.installed
    }

    /// Makes the routes equal to `wanted` (subnet → the node address it lies behind).
    /// Every route is tried; the first failure is returned after the rest are done.
    pub async fn sync(&mut self, wanted: &BTreeMap<Ipv4Net, Ipv4Addr>) -> Result<(), NetError> {
        let mut first_error = None;
        let stale: Vec<(Ipv4Net, Ipv4Addr)> = self
            .installed
            .iter()
            .filter(|(subnet, via)| wanted.get(subnet) != Some(via))
            .map(|(s, v)| (*s, *v))
            .collect();
        for (subnet, via) in stale {
            match self.delete(subnet, via).await {
                Ok(()) => {
                    self.installed.remove(&subnet);
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        for (subnet, via) in wanted {
            if self.installed.get(subnet) == Some(via) {
                continue;
            }
            match self.add(*subnet, *via).await {
                Ok(()) => {
                    self.installed.insert(*subnet, *via);
                }
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn message(subnet: Ipv4Net, via: Ipv4Addr) -> rtnetlink::packet_route::route::RouteMessage {
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(subnet.network(), subnet.prefix())
            .gateway(via)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
            .build()
    }

    async fn add(&self, subnet: Ipv4Net, via: Ipv4Addr) -> Result<(), NetError> {
        let added = self
            .handle
            .route()
            .add(Self::message(subnet, via))
            .replace()
            .execute()
            .await;
        added.map_err(|source| NetError::Netlink {
            step: format!("route {subnet} via {via} (is {via} on a directly attached network?)"),
            source,
        })
    }

    async fn delete(&self, subnet: Ipv4Net, via: Ipv4Addr) -> Result<(), NetError> {
        match self
            .handle
            .route()
            .del(Self::message(subnet, via))
            .execute()
            .await
        {
            Err(err) if errno(&err) != Some(nix::errno::Errno::ESRCH as i32) => {
                Err(NetError::Netlink {
                    step: format!("remove the route to {subnet} via {via}"),
                    source: err,
                })
            }
            _ => Ok(()),
        }
    }
}

/// The IPv4 routes with Strata's protocol number in the main table.
async fn installed(handle: &Handle) -> Result<BTreeMap<Ipv4Net, Ipv4Addr>, NetError> {
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut found = BTreeMap::new();
    while let Some(route) = routes
        .try_next()
        .await
        .map_err(|source| NetError::Netlink {
            step: "list routes".into(),
            source,
        })?
    {
        if route.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
            continue;
        }
        let mut destination = None;
        let mut gateway = None;
        for attribute in &route.attributes {
            match attribute {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = Some(*ip),
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                _ => {}
            }
        }
        if let (Some(destination), Some(gateway)) = (destination, gateway)
            && let Some(subnet) = Ipv4Net::new(destination, route.header.destination_prefix_length)
        {
            found.insert(subnet, gateway);
        }
    }
    Ok(found)
}

/// Lets the interface holding `address` forward packets (a node routes between its pod
/// bridge and the link to the other nodes). The proxy's forward rules keep forwarded
/// traffic to what involves the bridge.
pub async fn enable_forwarding_on(address: Ipv4Addr) -> Result<Option<String>, NetError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|source| NetError::Netns {
            path: "/proc/self/ns/net".into(),
            source,
        })?;
    let driver = tokio::spawn(connection);
    let result = interface_of(&handle, address).await;
    driver.abort();
    let Some(name) = result? else {
        return Ok(None);
    };
    let path = std::path::PathBuf::from(format!("/proc/sys/net/ipv4/conf/{name}/forwarding"));
    std::fs::write(&path, "1").map_err(|source| NetError::Sysctl { path, source })?;
    Ok(Some(name))
}

async fn interface_of(handle: &Handle, address: Ipv4Addr) -> Result<Option<String>, NetError> {
    let mut addresses = handle
        .address()
        .get()
        .set_address_filter(IpAddr::V4(address))
        .execute();
    let step = |step: &str| {
        let step = step.to_string();
        move |source| NetError::Netlink { step, source }
    };
    let Some(found) = addresses.try_next().await.map_err(step("list addresses"))? else {
        return Ok(None);
    };
    let mut links = handle
        .link()
        .get()
        .match_index(found.header.index)
        .execute();
    let link = links.try_next().await.map_err(step("look up a link"))?;
    Ok(link.and_then(|link| {
        link.attributes.into_iter().find_map(|a| match a {
            rtnetlink::packet_route::link::LinkAttribute::IfName(name) => Some(name),
            _ => None,
        })
    }))
}
