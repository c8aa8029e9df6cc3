//! Service load balancing in the kernel with nftables, laid out like kube-proxy's
//! nftables mode: one verdict map from `clusterIP . protocol . port` (and one from
//! `protocol . nodePort` for local addresses) to a chain per service port, whose one rule
//! DNATs to an endpoint picked by `numgen random` from a map of `address . port`. One map
//! lookup per packet however many services there are, and a chain per service rather
//! than per endpoint, so a large table loads fast. Also in the table:
//!
//! - services without endpoints are rejected (a TCP reset; ICMP port unreachable for
//!   other protocols, which the NAT hooks' conntrack may swallow), not black-holed;
//! - hairpin: a pod that reaches itself through its service (source and destination the
//!   same endpoint after DNAT, a set lookup) is masqueraded, so the reply comes back
//!   through the bridge;
//! - host ports: a pod's `hostPort` on this node's addresses (all of them, or its
//!   `hostIP`), a map lookup that DNATs to the pod (the CNI portmap plugin's job);
//! - egress is off: traffic from the bridge that leaves through another interface for an
//!   address outside the cluster's pod range is dropped, so pods never reach beyond the
//!   machine (and the cluster's other nodes), and what comes in on the link to the
//!   other nodes is forwarded only to the pods.
//!
//! Loopback addresses are left alone: node ports and host ports answer on the node's
//! other addresses, as in kube-proxy's nftables mode.
//!
//! A [`Ruleset`] is the table as plain data. Its first write is the whole table (one nft
//! script that deletes the old table and makes the new one); later writes are the
//! difference from the ruleset last written: map elements deleted and added, chains
//! flushed and refilled, made or removed. Either way `nft -f` applies the script as one
//! transaction ([`apply`]), so packets see the old rules or the new ones, never a mix, and
//! a change to one service touches only its chain and its map elements (the client-IP
//! affinity of the others survives).

mod ruleset;

pub use ruleset::Ruleset;

use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::NetError;
use crate::cidr::Ipv4Net;

/// A transport protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// From Kubernetes' spelling (`TCP`, `UDP`, `SCTP`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// Kubernetes' spelling (`TCP`, `UDP`, `SCTP`), as [`Protocol::parse`] reads it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }

    pub(crate) fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// Where a service port's traffic may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The pod's port.
    pub port: u16,
}

/// One port of one service, with its ready endpoints.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePort {
    /// `namespace/name:port` (names the chains, shows in comments).
    pub name: String,
    /// The cluster IP (`None` for services that have none, e.g. headless ones).
    pub cluster_ip: Option<Ipv4Addr>,
    /// The service port.
    pub port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// The node port, for NodePort services.
    pub node_port: Option<u16>,
    /// The ready endpoints.
    pub endpoints: Vec<Endpoint>,
    /// `sessionAffinity: ClientIP`: how long, in seconds, a client keeps going to the
    /// endpoint it was first sent to (refreshed by each new connection).
    pub affinity_seconds: Option<u32>,
}

/// What the table is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The nftables table (family `ip`), e.g. `strata`.
    pub table: String,
    /// The node's pod bridge.
    pub bridge: String,
    /// The cluster's pod range (pods may reach it through other interfaces).
    pub cluster_cidr: Ipv4Net,
    /// The interface towards the other nodes, when it forwards (see
    /// [`crate::routes::enable_forwarding_on`]).
    pub node_link: Option<String>,
}

/// A pod's `hostPort`: connections to this node's addresses on `port` go to the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// The protocol.
    pub protocol: Protocol,
    /// The node address it is bound to (`hostIP`); `None` for every address.
    pub host_ip: Option<Ipv4Addr>,
    /// The port on the node.
    pub port: u16,
    /// The pod's address.
    pub pod_ip: Ipv4Addr,
    /// The container's port.
    pub container_port: u16,
}

/// The whole table for `ports` (no host ports), as one nft script that deletes the old
/// table and makes the new one.
pub fn render(config: &ProxyConfig, ports: &[ServicePort]) -> String {
    Ruleset::new(config, ports, &[]).script()
}

/// Applies an nft script as one transaction (`nft -f -`).
pub fn apply(script: &str) -> Result<(), NetError> {
    run_nft(&["-f", "-"], script)
}

/// Removes the table (nothing happens when it is missing).
pub fn remove(table: &str) -> Result<(), NetError> {
    run_nft(
        &["-f", "-"],
        &format!("add table ip {table}\ndelete table ip {table}\n"),
    )
}

fn run_nft(args: &[&str], input: &str) -> Result<(), NetError> {
    let failed = |message: String| NetError::Nft(message);
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| failed(format!("cannot run nft (apt-get install nftables): {err}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|err| failed(format!("cannot write to nft: {err}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|err| failed(format!("nft did not finish: {err}")))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(failed(format!(
            "nft refused the service rules: {}",
            stderr.lines().next().unwrap_or("no message")
        )))
    }
}

/// A comment nft takes: no quotes or backslashes, at most 128 bytes.
pub(crate) fn comment(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests;
