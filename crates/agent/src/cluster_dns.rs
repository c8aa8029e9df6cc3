//! The node's cluster DNS: a `strata-net` DNS server on the bridge's gateway address
//! (port 53), reached by pods as the cluster DNS address through a DNAT rule of the
//! service proxy, and fed by the proxy from the same Services and Endpoints caches. Each
//! node answers for itself, so DNS keeps working on a node cut off from the others. Other
//! names are refused, or forwarded from the node to [`AgentOptions::dns_upstreams`].

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use strata_net::dns::{DnsEndpoint, DnsPort, DnsRecords, DnsServer, DnsService, Upstreams};
use strata_net::services::{Endpoint, Protocol, ServicePort};

use crate::AgentOptions;

/// The port DNS is served on.
pub const DNS_PORT: u16 = 53;

/// Starts the DNS server on `gateway` for the options' cluster domain, forwarding other
/// names to their DNS upstreams; `None` (logged) when the port cannot be bound.
pub async fn start(
    gateway: Ipv4Addr,
    options: &AgentOptions,
) -> Option<(DnsRecords, tokio::task::JoinHandle<()>)> {
    let records = DnsRecords::new(&options.cluster_domain);
    let upstreams = upstreams(&options.dns_upstreams, options.cluster_dns);
    match DnsServer::bind(SocketAddr::from((gateway, DNS_PORT)), records.clone()).await {
        Ok(server) => {
            let server = server.with_upstreams(upstreams);
            Some((records, tokio::spawn(server.serve())))
        }
        Err(err) => {
            tracing::warn!(error = %crate::containers::monitor::one_line(&err), "cannot serve cluster DNS");
            None
        }
    }
}

/// The upstream servers of `given`, less the cluster DNS address itself: its DNAT rule
/// leads back to this node's server, so every query would go round in a loop. The server
/// leaves out its own address in the same way.
fn upstreams(given: &[SocketAddr], cluster_dns: Ipv4Addr) -> Upstreams {
    let own = SocketAddr::from((cluster_dns, DNS_PORT));
    let servers: Vec<SocketAddr> = given
        .iter()
        .copied()
        .filter(|server| {
            let is_own = *server == own;
            if is_own {
                tracing::warn!(%server, "the cluster DNS address cannot be its own upstream; not using it");
            }
            !is_own
        })
        .collect();
    if !servers.is_empty() {
        let list: Vec<String> = servers.iter().map(SocketAddr::to_string).collect();
        tracing::info!(upstreams = %list.join(", "), "cluster DNS forwards names outside the cluster domain");
    }
    Upstreams::new(servers)
}

/// The rules that send the cluster DNS address to this node's server, over UDP and TCP.
pub fn dns_rules(cluster_dns: Ipv4Addr, gateway: Ipv4Addr) -> Vec<ServicePort> {
    [Protocol::Udp, Protocol::Tcp]
        .into_iter()
        .map(|protocol| ServicePort {
            name: format!("kube-system/cluster-dns:{protocol:?}"),
            cluster_ip: Some(cluster_dns),
            port: DNS_PORT,
            protocol,
            node_port: None,
            endpoints: vec![Endpoint {
                ip: gateway,
                port: DNS_PORT,
            }],
            affinity_seconds: None,
        })
        .collect()
}

/// The DNS records of every service: its cluster IP, or for a headless one its ready
/// endpoints (with their hostnames) and their ports.
pub fn records_of(services: &Store<Service>, endpoints: &Store<Endpoints>) -> Vec<DnsService> {
    let endpoints = crate::proxy::by_service(endpoints);
    services
        .state()
        .iter()
        .filter_map(|service| {
            let key = (service.namespace().unwrap_or_default(), service.name_any());
            record_of(service, endpoints.get(&key).map(Arc::as_ref))
        })
        .collect()
}

/// One service's records (`None`: an ExternalName service, or one without an address yet).
pub fn record_of(service: &Service, endpoints: Option<&Endpoints>) -> Option<DnsService> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let cluster_ip = match spec.cluster_ip.as_deref() {
        Some("None") => None,
        Some(ip) => Some(ip.parse::<Ipv4Addr>().ok()?),
        None => return None,
    };
    let subsets = endpoints
        .and_then(|e| e.subsets.clone())
        .unwrap_or_default();
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let protocol = Protocol::parse(port.protocol.as_deref().unwrap_or("TCP"))?;
            let name = port.name.clone().unwrap_or_default();
            // A headless service's SRV records carry the endpoints' port.
            let number = match cluster_ip {
                Some(_) => port.port,
                None => subsets
                    .iter()
                    .flat_map(|s| s.ports.iter().flatten())
                    .find(|p| p.name.clone().unwrap_or_default() == name)
                    .map_or(port.port, |p| p.port),
            };
            Some(DnsPort {
                name,
                protocol,
                port: u16::try_from(number).ok()?,
            })
        })
        .collect();
    let endpoints = subsets
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .filter_map(|address| {
            Some(DnsEndpoint {
                ip: address.ip.parse().ok()?,
                hostname: address.hostname.clone(),
            })
        })
        .collect();
    Some(DnsService {
        namespace: service.namespace().unwrap_or_default(),
        name: service.name_any(),
        cluster_ip,
        ports,
        endpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn headless_services_list_their_ready_endpoints_and_ports() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "targetPort": 15432}]}})).unwrap();
        let endpoints: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "shop"},
            "subsets": [{"addresses": [{"ip": "10.42.0.5", "hostname": "db-0"}],
                         "notReadyAddresses": [{"ip": "10.42.0.6"}],
                         "ports": [{"name": "pg", "port": 15432}]}]}))
        .unwrap();
        let record = record_of(&service, Some(&endpoints)).unwrap();
        assert_eq!(record.cluster_ip, None);
        assert_eq!(record.ports[0].port, 15432);
        assert_eq!(
            record.endpoints,
            vec![DnsEndpoint {
                ip: "10.42.0.5".parse().unwrap(),
                hostname: Some("db-0".into())
            }]
        );
    }

    #[test]
    fn cluster_ip_services_keep_their_port_and_unaddressed_ones_are_skipped() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})).unwrap();
        let record = record_of(&service, None).unwrap();
        assert_eq!(record.cluster_ip, Some("10.43.0.20".parse().unwrap()));
        assert_eq!(record.ports[0].port, 80);
        let pending: Service =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {"ports": []}}))
                .unwrap();
        assert!(record_of(&pending, None).is_none());
        let rules = dns_rules("10.43.0.10".parse().unwrap(), "10.42.0.1".parse().unwrap());
        assert_eq!(rules.len(), 2);
        assert!(
            rules
                .iter()
                .all(|r| r.port == 53 && r.endpoints[0].port == 53)
        );
    }

    #[test]
    fn the_cluster_dns_address_is_no_upstream() {
        let forwarded = upstreams(
            &[
                "10.43.0.10:53".parse().unwrap(),
                "10.43.0.10:5353".parse().unwrap(),
                "192.0.2.53:53".parse().unwrap(),
            ],
            "10.43.0.10".parse().unwrap(),
        );
        assert_eq!(
            forwarded.servers(),
            [
                "10.43.0.10:5353".parse::<SocketAddr>().unwrap(),
                "192.0.2.53:53".parse().unwrap()
            ]
        );
    }
}
