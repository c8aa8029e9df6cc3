//! What the cluster DNS answers from: plain services with their ports and ready endpoints,
//! written by the agent and read by the server. The agent swaps the whole table at once,
//! so a query sees either the old table or the new one, never a mix.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, RwLock};

use hickory_server::proto::rr::Name;

use crate::services::Protocol;

/// One service as DNS sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsService {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The cluster IP; `None` for a headless service, whose name resolves to its endpoints.
    pub cluster_ip: Option<Ipv4Addr>,
    /// Its ports; only named ones get SRV records.
    pub ports: Vec<DnsPort>,
    /// The ready endpoints. Only a headless service's are served (as its addresses and as
    /// `<hostname>.<service>...` names).
    pub endpoints: Vec<DnsEndpoint>,
}

/// A port of a service, for SRV records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPort {
    /// The port's name (`""` when unnamed: no SRV record).
    pub name: String,
    /// Its protocol (`_tcp`, `_udp` or `_sctp` in the SRV name).
    pub protocol: Protocol,
    /// The port SRV records give. For a headless service, pass the endpoints' port (as
    /// CoreDNS gives it), since clients connect to the endpoints directly.
    pub port: u16,
}

/// A ready endpoint of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsEndpoint {
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The pod's hostname (`spec.hostname`, as a StatefulSet sets it); without one the
    /// endpoint is named by its dashed address (`10-42-0-5`), as CoreDNS does.
    pub hostname: Option<String>,
}

impl DnsEndpoint {
    /// The first label of the endpoint's own name, lowercase.
    pub(crate) fn label(&self) -> String {
        match &self.hostname {
            Some(hostname) if !hostname.is_empty() => hostname.to_ascii_lowercase(),
            _ => self.ip.to_string().replace('.', "-"),
        }
    }
}

/// Records of one cluster, shared between the agent (writer) and the server (reader).
/// Cheap to clone: clones share the same table.
#[derive(Debug, Clone)]
pub struct DnsRecords {
    table: Arc<RwLock<Arc<Table>>>,
}

impl DnsRecords {
    /// An empty table for the cluster domain `domain` (e.g. `cluster.local`; a trailing
    /// dot and case do not matter). A domain that is no valid DNS name (a label over 63
    /// bytes, say) serves nothing: every query is then refused as outside the cluster.
    pub fn new(domain: &str) -> Self {
        let zone = Zone::parse(domain);
        if zone.is_none() {
            tracing::warn!(
                domain,
                "the cluster domain is not a DNS name; DNS serves nothing"
            );
        }
        let table = Table {
            zone,
            serial: 1,
            services: HashMap::new(),
            namespaces: HashSet::new(),
        };
        Self {
            table: Arc::new(RwLock::new(Arc::new(table))),
        }
    }

    /// Swaps the whole table for `services` at once. Of two services with the same
    /// namespace and name, the later one wins; an endpoint listed twice is served once.
    pub fn replace(&self, services: Vec<DnsService>) {
        let current = self.snapshot();
        let mut table = Table {
            zone: current.zone.clone(),
            serial: current.serial.wrapping_add(1).max(1),
            services: HashMap::with_capacity(services.len()),
            namespaces: HashSet::new(),
        };
        for mut service in services {
            let mut seen = HashSet::new();
            service
                .endpoints
                .retain(|endpoint| seen.insert((endpoint.ip, endpoint.label())));
            let key = (
                service.namespace.to_ascii_lowercase(),
                service.name.to_ascii_lowercase(),
            );
            table.namespaces.insert(key.0.clone());
            table.services.insert(key, service);
        }
        let mut slot = self
            .table
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Arc::new(table);
    }

    /// The current table (the lock is held only to clone the `Arc`).
    pub(crate) fn snapshot(&self) -> Arc<Table> {
        let slot = self
            .table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(&slot)
    }
}

/// The cluster domain: its lowercase labels and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Zone {
    /// Lowercase labels, left to right (`["cluster", "local"]`).
    pub(crate) labels: Vec<String>,
    /// The same as a fully qualified name.
    pub(crate) name: Name,
}

impl Zone {
    /// `None` when `domain` is no valid DNS name.
    pub(crate) fn parse(domain: &str) -> Option<Self> {
        let labels: Vec<String> = domain
            .trim_end_matches('.')
            .split('.')
            .filter(|label| !label.is_empty())
            .map(str::to_ascii_lowercase)
            .collect();
        let mut name = Name::from_labels(labels.iter().map(String::as_bytes)).ok()?;
        name.set_fqdn(true);
        Some(Self { labels, name })
    }

    /// `labels` (lowercase, left to right) followed by the cluster domain, fully
    /// qualified; `None` when too long for DNS.
    pub(crate) fn fqdn(&self, labels: &[&str]) -> Option<Name> {
        let mut name = Name::from_labels(labels.iter().map(|label| label.as_bytes()))
            .ok()?
            .append_domain(&self.name)
            .ok()?;
        name.set_fqdn(true);
        Some(name)
    }
}

/// One version of the records.
#[derive(Debug)]
pub(crate) struct Table {
    /// The cluster domain (`None`: not a valid name, nothing is served).
    pub(crate) zone: Option<Zone>,
    /// The SOA serial: one more on every replace.
    pub(crate) serial: u32,
    /// Services by lowercase (namespace, name).
    services: HashMap<(String, String), DnsService>,
    /// Namespaces that hold a service (lowercase).
    namespaces: HashSet<String>,
}

impl Table {
    /// The service `name` in `namespace` (both lowercase).
    pub(crate) fn service(&self, namespace: &str, name: &str) -> Option<&DnsService> {
        self.services.get(&(namespace.to_owned(), name.to_owned()))
    }

    /// Whether any service lives in `namespace` (lowercase).
    pub(crate) fn has_namespace(&self, namespace: &str) -> bool {
        self.namespaces.contains(namespace)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn service(namespace: &str, name: &str, ip: [u8; 4]) -> DnsService {
        DnsService {
            namespace: namespace.into(),
            name: name.into(),
            cluster_ip: Some(Ipv4Addr::from(ip)),
            ports: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    #[test]
    fn domain_is_normalised() {
        let zone = Zone::parse("Cluster.Local.").unwrap();
        assert_eq!(zone.labels, ["cluster", "local"]);
        assert_eq!(zone.name.to_string(), "cluster.local.");
        assert_eq!(
            zone.fqdn(&["web", "default", "svc"]).unwrap().to_string(),
            "web.default.svc.cluster.local."
        );
        assert!(Zone::parse(&"x".repeat(64)).is_none());
        assert!(zone.fqdn(&[&"x".repeat(64)]).is_none());
    }

    #[test]
    fn replace_swaps_the_whole_table_for_every_clone() {
        let records = DnsRecords::new("cluster.local");
        let reader = records.clone();
        records.replace(vec![service("Default", "Web", [10, 43, 0, 20])]);
        let first = reader.snapshot();
        assert!(first.service("default", "web").is_some());
        assert!(first.has_namespace("default"));
        records.replace(vec![service("other", "db", [10, 43, 0, 30])]);
        let second = reader.snapshot();
        assert!(second.service("default", "web").is_none());
        assert!(!second.has_namespace("default"));
        assert!(second.serial > first.serial);
        let mut twice = service("default", "db", [10, 43, 0, 40]);
        let endpoint = DnsEndpoint {
            ip: Ipv4Addr::new(10, 42, 0, 5),
            hostname: None,
        };
        twice.endpoints = vec![endpoint.clone(), endpoint.clone()];
        records.replace(vec![twice]);
        let third = reader.snapshot();
        assert_eq!(
            third.service("default", "db").unwrap().endpoints,
            [endpoint]
        );
        // The old snapshot is unchanged.
        assert!(first.service("default", "web").is_some());
    }

    #[test]
    fn endpoints_without_hostname_are_named_by_address() {
        let named = DnsEndpoint {
            ip: Ipv4Addr::new(10, 42, 0, 5),
            hostname: Some("Db-0".into()),
        };
        let unnamed = DnsEndpoint {
            ip: Ipv4Addr::new(10, 42, 0, 5),
            hostname: None,
        };
        assert_eq!(named.label(), "db-0");
        assert_eq!(unnamed.label(), "10-42-0-5");
    }
}
