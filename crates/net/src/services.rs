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
//! - egress is off: traffic from the bridge that leaves through another interface for an
//!   address outside the cluster's pod range is dropped, so pods never reach beyond the
//!   machine (and the cluster's other nodes), and what comes in on the link to the
//!   other nodes is forwarded only to the pods.
//!
//! [`render`] is pure: the whole table as one nft script that deletes the old table and
//! makes the new one, which `nft -f` applies as one transaction ([`apply`]), so packets
//! see either the old rules or the new ones, never a mix.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::cidr::Ipv4Net;
use crate::{NetError, short_hash};

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

    fn nft(self) -> &'static str {
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
#[derive(Debug, Clone)]
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

/// The whole table for `ports`, as one nft script (delete the old table, make the new).
pub fn render(config: &ProxyConfig, ports: &[ServicePort]) -> String {
    let table = &config.table;
    let mut ports: Vec<&ServicePort> = ports.iter().collect();
    ports.sort();
    let mut out = String::new();
    // `add` then `delete` makes the delete succeed on the first run too.
    let _ = writeln!(
        out,
        "add table ip {table}\ndelete table ip {table}\ntable ip {table} {{"
    );
    let mut service_ips = Vec::new();
    let mut node_ports = Vec::new();
    let mut rejected = Vec::new();
    let mut chains = String::new();
    let mut hairpins = Vec::new();
    for port in &ports {
        let chain = format!("svc-{}", short_hash(&port.name));
        let proto = port.protocol.nft();
        let mut endpoints = port.endpoints.clone();
        endpoints.sort();
        endpoints.dedup();
        if endpoints.is_empty() {
            if let Some(ip) = port.cluster_ip {
                rejected.push(format!(
                    "{ip} . {proto} . {} : goto reject-chain",
                    port.port
                ));
            }
            continue;
        }
        if let Some(ip) = port.cluster_ip {
            service_ips.push(format!("{ip} . {proto} . {} : goto {chain}", port.port));
        }
        if let Some(node_port) = port.node_port {
            node_ports.push(format!("{proto} . {node_port} : goto {chain}"));
        }
        hairpins.extend(endpoints.iter().map(|e| format!("{ip} . {ip}", ip = e.ip)));
        if let Some(seconds) = port.affinity_seconds {
            render_affinity(&mut chains, &chain, proto, &endpoints, seconds, &port.name);
            continue;
        }
        // One rule per service: DNAT to an endpoint picked by a map lookup, so the table
        // holds a chain per service, not per endpoint.
        let targets: Vec<String> = endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{i} : {} . {}", e.ip, e.port))
            .collect();
        let _ = writeln!(
            chains,
            "  chain {chain} {{\n    meta l4proto {proto} dnat ip to numgen random mod {} map {{ {} }} comment \"{}\"\n  }}",
            endpoints.len(),
            targets.join(", "),
            comment(&port.name)
        );
    }
    hairpins.sort();
    hairpins.dedup();
    let elements = |items: &[String]| {
        if items.is_empty() {
            String::new()
        } else {
            format!(" elements = {{ {} }}", items.join(", "))
        }
    };
    let _ = writeln!(
        out,
        "  map service-ips {{ type ipv4_addr . inet_proto . inet_service : verdict;{} }}",
        elements(&service_ips)
    );
    let _ = writeln!(
        out,
        "  map service-nodeports {{ type inet_proto . inet_service : verdict;{} }}",
        elements(&node_ports)
    );
    let _ = writeln!(
        out,
        "  map no-endpoint-services {{ type ipv4_addr . inet_proto . inet_service : verdict;{} }}",
        elements(&rejected)
    );
    let _ = writeln!(
        out,
        "  set hairpin {{ type ipv4_addr . ipv4_addr;{} }}",
        elements(&hairpins)
    );
    let bridge = &config.bridge;
    let cluster = config.cluster_cidr;
    // What comes in on the link to the other nodes may only go to the pods. Pods reach
    // beyond the pod range only a Service's endpoint on another node (e.g. the API
    // server behind `kubernetes`), never an address of their own choosing.
    let (endpoint_rule, link_rule) = match &config.node_link {
        Some(link) => (
            format!(
                "\n    iifname \"{bridge}\" oifname \"{link}\" ct status dnat accept comment \"service endpoints on other nodes\""
            ),
            format!(
                "\n    iifname \"{link}\" oifname != \"{bridge}\" drop comment \"the node link forwards only to pods\""
            ),
        ),
        None => (String::new(), String::new()),
    };
    let _ = write!(
        out,
        "  chain services {{
    ip daddr . meta l4proto . th dport vmap @service-ips
    fib daddr type local meta l4proto . th dport vmap @service-nodeports
  }}
  chain nat-prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    jump services
  }}
  chain nat-output {{
    type nat hook output priority -100; policy accept;
    jump services
  }}
  chain nat-postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ct status dnat ip saddr . ip daddr @hairpin masquerade
  }}
  chain reject-chain {{
    meta l4proto tcp reject with tcp reset
    reject
  }}
  chain filter-forward {{
    type filter hook forward priority filter; policy accept;
    ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services{endpoint_rule}
    iifname \"{bridge}\" oifname != \"{bridge}\" ip daddr != {cluster} drop comment \"no egress beyond the cluster\"{link_rule}
  }}
  chain filter-output {{
    type filter hook output priority filter; policy accept;
    ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
  }}
"
    );
    out.push_str(&chains);
    out.push_str("}\n");
    out
}

/// The chains of a service with client-IP affinity (as kube-proxy's nftables mode does
/// it): a set per endpoint of the clients recently sent there, with a timeout; a client
/// found in one goes to that endpoint, any other to a random one, which records it.
/// (The table is rebuilt on every change, so affinity starts afresh then.)
fn render_affinity(
    chains: &mut String,
    chain: &str,
    proto: &str,
    endpoints: &[Endpoint],
    seconds: u32,
    name: &str,
) {
    let seconds = seconds.max(1);
    let mut service_rules = String::new();
    let mut picks = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let set = format!("{chain}-clients-{i}");
        let target = format!("{chain}-ep-{i}");
        let _ = writeln!(
            chains,
            "  set {set} {{ type ipv4_addr; flags dynamic,timeout; timeout {seconds}s; }}\n  chain {target} {{\n    update @{set} {{ ip saddr }}\n    meta l4proto {proto} dnat ip to {}:{}\n  }}",
            endpoint.ip, endpoint.port
        );
        let _ = writeln!(service_rules, "    ip saddr @{set} goto {target}");
        picks.push(format!("{i} : goto {target}"));
    }
    let _ = writeln!(
        chains,
        "  chain {chain} {{\n{service_rules}    numgen random mod {} vmap {{ {} }} comment \"{}\"\n  }}",
        endpoints.len(),
        picks.join(", "),
        comment(name)
    );
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
fn comment(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .take(120)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProxyConfig {
        ProxyConfig {
            table: "strata".into(),
            bridge: "strata0".into(),
            cluster_cidr: "10.42.0.0/16".parse().unwrap(),
            node_link: Some("eth1".into()),
        }
    }

    fn port(name: &str, ip: [u8; 4], endpoints: &[([u8; 4], u16)]) -> ServicePort {
        ServicePort {
            name: name.into(),
            cluster_ip: Some(Ipv4Addr::from(ip)),
            port: 80,
            protocol: Protocol::Tcp,
            node_port: None,
            endpoints: endpoints
                .iter()
                .map(|(ip, port)| Endpoint {
                    ip: Ipv4Addr::from(*ip),
                    port: *port,
                })
                .collect(),
            affinity_seconds: None,
        }
    }

    #[test]
    fn pods_leave_the_pod_range_only_for_service_endpoints_across_the_node_link() {
        let script = render(&config(), &[]);
        let accept = script
            .find("iifname \"strata0\" oifname \"eth1\" ct status dnat accept")
            .expect(&script);
        let drop = script.find("no egress beyond the cluster").expect(&script);
        assert!(accept < drop, "{script}");
        let alone = render(
            &ProxyConfig {
                node_link: None,
                ..config()
            },
            &[],
        );
        assert!(!alone.contains("ct status dnat accept"), "{alone}");
    }

    #[test]
    fn one_map_entry_and_one_rule_per_service() {
        let mut web = port(
            "default/web:http",
            [10, 43, 0, 20],
            &[([10, 42, 0, 6], 8080), ([10, 42, 0, 5], 8080)],
        );
        web.node_port = Some(30080);
        let script = render(&config(), &[web]);
        let chain = format!("svc-{}", short_hash("default/web:http"));
        assert!(
            script.contains(&format!("10.43.0.20 . tcp . 80 : goto {chain}")),
            "{script}"
        );
        assert!(
            script.contains(&format!("tcp . 30080 : goto {chain}")),
            "{script}"
        );
        // Endpoints in address order, whatever order they came in; one rule picks one.
        assert!(
            script.contains(
                "dnat ip to numgen random mod 2 map { 0 : 10.42.0.5 . 8080, 1 : 10.42.0.6 . 8080 }"
            ),
            "{script}"
        );
        assert!(script.contains("elements = { 10.42.0.5 . 10.42.0.5, 10.42.0.6 . 10.42.0.6 }"));
    }

    #[test]
    fn services_without_endpoints_are_rejected_and_output_is_stable() {
        let empty = port("default/db:pg", [10, 43, 0, 30], &[]);
        let web = port(
            "default/web:http",
            [10, 43, 0, 20],
            &[([10, 42, 0, 5], 8080)],
        );
        let script = render(&config(), &[web.clone(), empty.clone()]);
        assert!(script.contains("10.43.0.30 . tcp . 80 : goto reject-chain"));
        assert!(!script.contains("10.43.0.30 . tcp . 80 : goto svc-"));
        assert_eq!(
            script,
            render(&config(), &[empty, web]),
            "order of input does not matter"
        );
        assert!(
            script.contains(
                "iifname \"strata0\" oifname != \"strata0\" ip daddr != 10.42.0.0/16 drop"
            )
        );
        assert!(script.starts_with("add table ip strata\ndelete table ip strata\n"));
        assert!(script.contains("iifname \"eth1\" oifname != \"strata0\" drop"));
    }

    #[test]
    fn comments_cannot_break_out_of_their_quotes() {
        assert_eq!(comment("a\"b\\c\nd"), "abcd");
    }
}
