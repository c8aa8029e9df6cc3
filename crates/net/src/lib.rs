//! Strata's node networking (ARCHITECTURE.md, milestone 5). It knows nothing of
//! Kubernetes: the agent hands it plain inputs (a subnet, a pod's UID and the path of its
//! network namespace) and gets addresses back.
//!
//! - [`cidr`]: IPv4 networks and how a cluster range splits into node subnets.
//! - [`ipam`]: the addresses of a node subnet, on disk, never handed out twice.
//! - [`bridge`]: the node's bridge and a veth pair per pod sandbox, over netlink.
//! - [`netns`]: netlink requests made inside another network namespace.
//! - [`routes`]: routes to the other nodes' pod subnets (host-gw).
//! - [`services`]: service load balancing in nftables (cluster IPs, node ports).
//! - [`dns`]: the cluster DNS server, answering from records the agent feeds it.

pub mod bridge;
pub mod cidr;
pub mod dns;
pub mod ipam;
pub mod netns;
pub mod routes;
pub mod services;

pub use bridge::{PodAddress, PodNetwork, PodNetworkConfig};
pub use cidr::{CidrError, Ipv4Net};
pub use dns::{DnsEndpoint, DnsPort, DnsRecords, DnsServer, DnsService, Upstreams};
pub use ipam::{Ipam, IpamError};

/// Errors of the pod network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A netlink request failed.
    #[error("cannot {step}: {source}")]
    Netlink {
        /// What was being done.
        step: String,
        /// Cause.
        #[source]
        source: rtnetlink::Error,
    },
    /// A network namespace could not be entered.
    #[error("cannot enter the network namespace {path}")]
    Netns {
        /// Its file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Address management failed.
    #[error(transparent)]
    Ipam(#[from] IpamError),
    /// nft refused the rules or could not run.
    #[error("{0}")]
    Nft(String),
    /// A kernel setting could not be written.
    #[error("cannot set {path}")]
    Sysctl {
        /// The /proc/sys file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The DNS server could not bind its socket.
    #[error("cannot bind the DNS server's {protocol} socket to {addr}")]
    DnsBind {
        /// `UDP` or `TCP`.
        protocol: &'static str,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A resolv.conf (the host's resolvers, for DNS forwarding) could not be read.
    #[error("cannot read {path}")]
    ResolvConf {
        /// The file.
        path: std::path::PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Something the kernel should have made is not there.
    #[error("{0}")]
    Missing(String),
}

/// FNV-1a, 64 bits, in hex: stable across releases, so names made from it (interfaces,
/// nft chains) outlive the processes that made them.
pub(crate) fn short_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Why `name` cannot be a Linux interface name (1 to 15 bytes, no '/', ':' or white
/// space), or `None` when it can.
pub fn interface_name_problem(name: &str) -> Option<String> {
    let bad = name.is_empty()
        || name.len() > 15
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace);
    bad.then(|| format!("{name:?} is not an interface name (1 to 15 bytes, no '/', ':' or spaces)"))
}

/// The errno of a netlink error reply, if it is one (positive, e.g. `libc::EEXIST`).
pub(crate) fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| -code.get()),
        _ => None,
    }
}
