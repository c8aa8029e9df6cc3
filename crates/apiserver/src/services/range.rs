//! The two ranges Services are given addresses from: the service CIDR
//! (`--service-cidr`, cluster IPs) and the NodePort range (`--service-node-port-range`).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// The default service CIDR (`10.43.0.10` in it is the cluster DNS address).
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";
/// The default NodePort range, Kubernetes' own.
pub const DEFAULT_NODE_PORT_RANGE: &str = "30000-32767";

/// Offsets below this one (`.1` to `.15` of the default range) are handed out only
/// when a Service asks for them by `spec.clusterIP`: well-known addresses such as
/// the `kubernetes` Service's `.1` and cluster DNS's `.10` stay free for their owners.
/// Kubernetes does the same with a lower band that dynamic allocation avoids
/// (KEP-3070); Strata's band is a fixed 16 addresses and is never used dynamically,
/// not even when the rest of the range is full.
pub const RESERVED_LOW: u32 = 16;

/// Shortest and longest prefix a service CIDR may have. Up to /12 is what Kubernetes
/// allows for IPv4 (a bitmap of 2^20 addresses, 128 KiB); from /24 on the range would
/// be mostly the reserved low band.
const PREFIXES: std::ops::RangeInclusive<u8> = 12..=24;

/// Why a service CIDR or a NodePort range does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not `a.b.c.d/n` with an IPv4 address.
    #[error("{value:?} is not an IPv4 CIDR such as 10.43.0.0/16")]
    MalformedCidr {
        /// The text given.
        value: String,
    },
    /// The prefix length is outside what a bitmap allocator serves.
    #[error("the service CIDR {value} must have a prefix length from /12 to /24")]
    PrefixLength {
        /// The text given.
        value: String,
    },
    /// Host bits are set (`10.43.0.1/16`).
    #[error("{value} is not a network address (did you mean {network}?)")]
    HostBits {
        /// The text given.
        value: String,
        /// The network the prefix names.
        network: String,
    },
    /// Not `first-last` with `1 <= first <= last <= 65535`.
    #[error("{value:?} is not a port range such as 30000-32767")]
    MalformedPorts {
        /// The text given.
        value: String,
    },
}

/// An IPv4 service CIDR. Its network and broadcast addresses are never allocated;
/// every other address is, at an offset from the network address.
///
/// ```
/// use std::net::Ipv4Addr;
/// use strata_apiserver::ServiceCidr;
///
/// let cidr: ServiceCidr = "10.43.0.0/16".parse()?;
/// assert_eq!(cidr.offset(Ipv4Addr::new(10, 43, 0, 10)), Some(10));
/// assert_eq!(cidr.offset(Ipv4Addr::new(10, 43, 255, 255)), None); // broadcast
/// assert!("10.43.0.1/16".parse::<ServiceCidr>().is_err()); // host bits set
/// # Ok::<(), strata_apiserver::services::RangeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServiceCidr {
    network: Ipv4Addr,
    prefix: u8,
}

impl ServiceCidr {
    /// How many addresses the CIDR spans, network and broadcast included.
    pub fn size(&self) -> u32 {
        1 << (32 - u32::from(self.prefix))
    }

    /// The offset of `ip` when it may be allocated (inside the CIDR, neither the
    /// network nor the broadcast address).
    pub fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let offset = u32::from(ip).checked_sub(u32::from(self.network))?;
        (offset >= 1 && offset < self.size() - 1).then_some(offset)
    }

    /// The address at `offset`.
    pub fn address(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network).wrapping_add(offset))
    }
}

impl Default for ServiceCidr {
    fn default() -> Self {
        ServiceCidr {
            network: Ipv4Addr::new(10, 43, 0, 0),
            prefix: 16,
        }
    }
}

impl FromStr for ServiceCidr {
    type Err = RangeError;

    fn from_str(value: &str) -> Result<Self, RangeError> {
        let malformed = || RangeError::MalformedCidr {
            value: value.to_string(),
        };
        let (ip, prefix) = value.split_once('/').ok_or_else(malformed)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| malformed())?;
        let prefix: u8 = prefix.parse().map_err(|_| malformed())?;
        if !PREFIXES.contains(&prefix) {
            return Err(RangeError::PrefixLength {
                value: value.to_string(),
            });
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        let network = Ipv4Addr::from(u32::from(ip) & mask);
        if network != ip {
            return Err(RangeError::HostBits {
                value: value.to_string(),
                network: format!("{network}/{prefix}"),
            });
        }
        Ok(ServiceCidr { network, prefix })
    }
}

impl fmt::Display for ServiceCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The ports NodePort and LoadBalancer Services are exposed on, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodePortRange {
    first: u16,
    last: u16,
}

impl NodePortRange {
    /// How many ports the range holds.
    pub fn size(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// The offset of `port` in the range, if it is in it.
    pub fn offset(&self, port: i32) -> Option<u32> {
        let port = u16::try_from(port).ok()?;
        (self.first..=self.last)
            .contains(&port)
            .then(|| u32::from(port - self.first))
    }

    /// The port at `offset`.
    pub fn port(&self, offset: u32) -> i32 {
        i32::from(self.first) + offset as i32
    }
}

impl Default for NodePortRange {
    fn default() -> Self {
        NodePortRange {
            first: 30000,
            last: 32767,
        }
    }
}

impl FromStr for NodePortRange {
    type Err = RangeError;

    fn from_str(value: &str) -> Result<Self, RangeError> {
        let malformed = || RangeError::MalformedPorts {
            value: value.to_string(),
        };
        let (first, last) = value.split_once('-').ok_or_else(malformed)?;
        let first: u16 = first.trim().parse().map_err(|_| malformed())?;
        let last: u16 = last.trim().parse().map_err(|_| malformed())?;
        if first == 0 || first > last {
            return Err(malformed());
        }
        Ok(NodePortRange { first, last })
    }
}

impl fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_defaults_are_the_documented_ranges() {
        assert_eq!(
            ServiceCidr::default(),
            DEFAULT_SERVICE_CIDR.parse().unwrap()
        );
        assert_eq!(
            NodePortRange::default(),
            DEFAULT_NODE_PORT_RANGE.parse().unwrap()
        );
        assert_eq!(ServiceCidr::default().to_string(), "10.43.0.0/16");
        assert_eq!(NodePortRange::default().to_string(), "30000-32767");
    }

    #[test]
    fn network_and_broadcast_are_not_allocatable() {
        let cidr: ServiceCidr = "10.43.0.0/16".parse().unwrap();
        assert_eq!(cidr.size(), 65536);
        assert_eq!(cidr.offset(Ipv4Addr::new(10, 43, 0, 0)), None);
        assert_eq!(cidr.offset(Ipv4Addr::new(10, 43, 0, 1)), Some(1));
        assert_eq!(cidr.offset(Ipv4Addr::new(10, 43, 255, 254)), Some(65534));
        assert_eq!(cidr.offset(Ipv4Addr::new(10, 43, 255, 255)), None);
        assert_eq!(cidr.offset(Ipv4Addr::new(10, 44, 0, 1)), None);
        assert_eq!(cidr.offset(Ipv4Addr::new(10, 42, 0, 1)), None);
        assert_eq!(cidr.address(10), Ipv4Addr::new(10, 43, 0, 10));
    }

    #[test]
    fn bad_cidrs_are_refused_with_a_reason() {
        for bad in ["10.43.0.0", "10.43.0.0/x", "fd00::/108", "10.43.0/16"] {
            assert!(
                matches!(
                    bad.parse::<ServiceCidr>(),
                    Err(RangeError::MalformedCidr { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            "10.0.0.0/8".parse::<ServiceCidr>(),
            Err(RangeError::PrefixLength { .. })
        ));
        let err = "10.43.0.1/16".parse::<ServiceCidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "10.43.0.1/16 is not a network address (did you mean 10.43.0.0/16?)"
        );
    }

    #[test]
    fn port_ranges_parse_and_bound() {
        let range: NodePortRange = "30000-30009".parse().unwrap();
        assert_eq!(range.size(), 10);
        assert_eq!(range.offset(30000), Some(0));
        assert_eq!(range.offset(30009), Some(9));
        assert_eq!(range.offset(30010), None);
        assert_eq!(range.offset(-1), None);
        assert_eq!(range.port(3), 30003);
        for bad in ["30000", "0-10", "20-10", "a-b", "1-70000"] {
            assert!(bad.parse::<NodePortRange>().is_err(), "{bad}");
        }
    }
}
