//! IPv4 networks in CIDR notation (`10.42.0.0/16`): parsing, the subnets a cluster range
//! splits into, and the host addresses of a subnet. Pure arithmetic, no IO.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: an address with every host bit zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a CIDR string is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `a.b.c.d/n`.
    #[error("{0:?} is not an IPv4 CIDR (want a.b.c.d/n, e.g. 10.42.0.0/16)")]
    Syntax(String),
    /// The prefix is above 32.
    #[error("{0:?} has a prefix longer than 32 bits")]
    Prefix(String),
    /// Host bits are set (`10.42.0.1/16`).
    #[error("{given:?} has host bits set; the network is {network}")]
    HostBits {
        /// What was given.
        given: String,
        /// The network it lies in.
        network: Ipv4Net,
    },
}

impl Ipv4Net {
    /// The network `network/prefix`; `None` when the prefix is above 32 or host bits are
    /// set.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Option<Self> {
        let net = Self { network, prefix };
        (prefix <= 32 && net.mask() & u32::from(network) == u32::from(network)).then_some(net)
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The number of addresses in the network (network and broadcast included).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// True when `ip` lies in the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// True when the two networks share an address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The `index`-th subnet of length `prefix` (`10.42.0.0/16`, 24, 3 → `10.42.3.0/24`);
    /// `None` past the end or when `prefix` is shorter than the network's own.
    pub fn subnet(&self, prefix: u8, index: u32) -> Option<Ipv4Net> {
        if prefix < self.prefix || prefix > 32 {
            return None;
        }
        let count = 1u64 << (prefix - self.prefix);
        if u64::from(index) >= count {
            return None;
        }
        let step = 1u64 << (32 - u32::from(prefix));
        let start = u64::from(u32::from(self.network)) + u64::from(index) * step;
        Ipv4Net::new(Ipv4Addr::from(u32::try_from(start).ok()?), prefix)
    }

    /// How many subnets of length `prefix` the network holds (0 if `prefix` is shorter).
    pub fn subnet_count(&self, prefix: u8) -> u64 {
        if prefix < self.prefix || prefix > 32 {
            0
        } else {
            1u64 << (prefix - self.prefix)
        }
    }

    /// The `n`-th address of the network (0 is the network address itself), if inside.
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        (u64::from(n) < self.size()).then(|| Ipv4Addr::from(u32::from(self.network) + n))
    }

    /// The offset of `ip` in the network, if it lies inside.
    pub fn offset_of(&self, ip: Ipv4Addr) -> Option<u32> {
        self.contains(ip)
            .then(|| u32::from(ip) - u32::from(self.network))
    }

    /// The broadcast address (the last one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(text.to_string());
        let (ip, prefix) = text.split_once('/').ok_or_else(syntax)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| syntax())?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 2 {
            return Err(syntax());
        }
        let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
        if prefix > 32 {
            return Err(CidrError::Prefix(text.to_string()));
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let network = Ipv4Addr::from(u32::from(ip) & mask);
        if network != ip {
            return Err(CidrError::HostBits {
                given: text.to_string(),
                network: Ipv4Net { network, prefix },
            });
        }
        Ok(Ipv4Net { network, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_networks() {
        assert_eq!(net("10.42.0.0/16").to_string(), "10.42.0.0/16");
        assert_eq!(net("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(net("10.1.2.3/32").size(), 1);
        assert!(
            matches!("10.42.0.1/16".parse::<Ipv4Net>(), Err(CidrError::HostBits { network, .. }) if network == net("10.42.0.0/16"))
        );
        assert!(matches!(
            "10.42.0.0/33".parse::<Ipv4Net>(),
            Err(CidrError::Prefix(_))
        ));
        for bad in [
            "10.42.0.0",
            "10.42.0/16",
            "10.42.0.0/",
            "10.42.0.0/+8",
            "x/8",
            "10.42.0.0/16/1",
        ] {
            assert!(
                matches!(bad.parse::<Ipv4Net>(), Err(CidrError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn splits_a_cluster_range_into_node_subnets() {
        let cluster = net("10.42.0.0/16");
        assert_eq!(cluster.subnet_count(24), 256);
        assert_eq!(cluster.subnet(24, 0), Some(net("10.42.0.0/24")));
        assert_eq!(cluster.subnet(24, 255), Some(net("10.42.255.0/24")));
        assert_eq!(cluster.subnet(24, 256), None);
        assert_eq!(cluster.subnet(8, 0), None);
        assert_eq!(
            net("10.200.16.0/20").subnet(24, 3),
            Some(net("10.200.19.0/24"))
        );
    }

    #[test]
    fn hosts_and_membership() {
        let node = net("10.42.3.0/24");
        assert_eq!(node.nth(1), Some(Ipv4Addr::new(10, 42, 3, 1)));
        assert_eq!(node.nth(256), None);
        assert_eq!(node.broadcast(), Ipv4Addr::new(10, 42, 3, 255));
        assert_eq!(node.offset_of(Ipv4Addr::new(10, 42, 3, 9)), Some(9));
        assert_eq!(node.offset_of(Ipv4Addr::new(10, 42, 4, 9)), None);
        assert!(net("10.42.0.0/16").overlaps(&node));
        assert!(!net("10.43.0.0/16").overlaps(&node));
    }
}
