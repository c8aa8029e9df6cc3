//! The service table as plain data ([`Ruleset`]): its maps' elements, the hairpin set,
//! the affinity sets and the per-service chains, plus the fixed chains that hook it into
//! the kernel. From it come the script that writes the whole table and the script that
//! turns the ruleset last written into this one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{Endpoint, HostPort, ProxyConfig, ServicePort, comment};
use crate::short_hash;

/// The maps of the table: name and type. Their elements are what changes.
const MAPS: [(&str, &str); 5] = [
    (
        SERVICE_IPS,
        "ipv4_addr . inet_proto . inet_service : verdict",
    ),
    (NODE_PORTS, "inet_proto . inet_service : verdict"),
    (
        NO_ENDPOINTS,
        "ipv4_addr . inet_proto . inet_service : verdict",
    ),
    (
        HOST_PORTS,
        "inet_proto . inet_service : ipv4_addr . inet_service",
    ),
    (
        HOST_PORTS_ON_IP,
        "ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service",
    ),
];
const SERVICE_IPS: &str = "service-ips";
const NODE_PORTS: &str = "service-nodeports";
const NO_ENDPOINTS: &str = "no-endpoint-services";
const HOST_PORTS: &str = "host-ports";
const HOST_PORTS_ON_IP: &str = "host-ports-on-ip";
/// The set of `endpoint . endpoint` pairs whose connections are masqueraded.
const HAIRPIN: &str = "hairpin";

/// One node's service table, as data. Build it with [`Ruleset::new`]; write it whole with
/// [`Ruleset::script`] or as the change from the last one written with
/// [`Ruleset::update_from`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    config: ProxyConfig,
    /// Map name → key → value.
    maps: BTreeMap<&'static str, BTreeMap<String, String>>,
    hairpin: BTreeSet<String>,
    /// Affinity set name → its declaration (the name encodes the declaration, so a set
    /// that changes gets a new name).
    sets: BTreeMap<String, String>,
    /// Per-service chain name → its rules.
    chains: BTreeMap<String, Vec<String>>,
}

impl Ruleset {
    /// The table for `ports` and `host_ports`. Of host ports that claim the same
    /// protocol, address and port, the first one listed wins (the caller lists the
    /// oldest pod first), so the table stays writable whatever the input.
    pub fn new(config: &ProxyConfig, ports: &[ServicePort], host_ports: &[HostPort]) -> Self {
        let mut ruleset = Self {
            config: config.clone(),
            maps: MAPS
                .iter()
                .map(|(name, _)| (*name, BTreeMap::new()))
                .collect(),
            hairpin: BTreeSet::new(),
            sets: BTreeMap::new(),
            chains: BTreeMap::new(),
        };
        let mut ports: Vec<&ServicePort> = ports.iter().collect();
        ports.sort();
        for port in ports {
            ruleset.add_service_port(port);
        }
        for host_port in host_ports {
            ruleset.add_host_port(host_port);
        }
        ruleset
    }

    fn add_service_port(&mut self, port: &ServicePort) {
        let chain = format!("svc-{}", short_hash(&port.name));
        let proto = port.protocol.nft();
        let mut endpoints = port.endpoints.clone();
        endpoints.sort();
        endpoints.dedup();
        let service_key = port
            .cluster_ip
            .map(|ip| format!("{ip} . {proto} . {}", port.port));
        if endpoints.is_empty() {
            if let Some(key) = service_key {
                self.map(NO_ENDPOINTS)
                    .insert(key, "goto reject-chain".into());
            }
            return;
        }
        if let Some(key) = service_key {
            self.map(SERVICE_IPS).insert(key, format!("goto {chain}"));
        }
        if let Some(node_port) = port.node_port {
            self.map(NODE_PORTS)
                .insert(format!("{proto} . {node_port}"), format!("goto {chain}"));
        }
        self.hairpin
            .extend(endpoints.iter().map(|e| format!("{ip} . {ip}", ip = e.ip)));
        let rules = match port.affinity_seconds {
            Some(seconds) => self.add_affinity(&chain, proto, &endpoints, seconds),
            // One rule per service: DNAT to an endpoint picked by a map lookup, so the
            // table holds a chain per service, not per endpoint.
            None => {
                let targets: Vec<String> = endpoints
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("{i} : {} . {}", e.ip, e.port))
                    .collect();
                vec![format!(
                    "meta l4proto {proto} dnat ip to numgen random mod {} map {{ {} }}",
                    endpoints.len(),
                    targets.join(", ")
                )]
            }
        };
        let mut rules = rules;
        if let Some(last) = rules.last_mut() {
            let _ = write!(last, " comment \"{}\"", comment(&port.name));
        }
        self.chains.insert(chain, rules);
    }

    /// The chains of a service with client-IP affinity (as kube-proxy's nftables mode
    /// does it): a set per endpoint of the clients recently sent there, with a timeout; a
    /// client found in one goes to that endpoint, any other to a random one, which
    /// records it. Sets and chains are named by the endpoint (and timeout), so an
    /// endpoint that stays keeps its clients when others come and go.
    fn add_affinity(
        &mut self,
        chain: &str,
        proto: &str,
        endpoints: &[Endpoint],
        seconds: u32,
    ) -> Vec<String> {
        let seconds = seconds.max(1);
        let mut rules = Vec::new();
        let mut picks = Vec::new();
        for (i, endpoint) in endpoints.iter().enumerate() {
            let id = short_hash(&format!("{}:{}/{seconds}", endpoint.ip, endpoint.port));
            let set = format!("{chain}-clients-{id}");
            let target = format!("{chain}-ep-{id}");
            self.sets.insert(
                set.clone(),
                format!("type ipv4_addr; flags dynamic,timeout; timeout {seconds}s;"),
            );
            self.chains.insert(
                target.clone(),
                vec![
                    format!("update @{set} {{ ip saddr }}"),
                    format!(
                        "meta l4proto {proto} dnat ip to {}:{}",
                        endpoint.ip, endpoint.port
                    ),
                ],
            );
            rules.push(format!("ip saddr @{set} goto {target}"));
            picks.push(format!("{i} : goto {target}"));
        }
        rules.push(format!(
            "numgen random mod {} vmap {{ {} }}",
            endpoints.len(),
            picks.join(", ")
        ));
        rules
    }

    fn add_host_port(&mut self, host_port: &HostPort) {
        let proto = host_port.protocol.nft();
        let (map, key) = match host_port.host_ip {
            Some(ip) if !ip.is_unspecified() => (
                HOST_PORTS_ON_IP,
                format!("{ip} . {proto} . {}", host_port.port),
            ),
            _ => (HOST_PORTS, format!("{proto} . {}", host_port.port)),
        };
        let target = format!("{} . {}", host_port.pod_ip, host_port.container_port);
        self.map(map).entry(key).or_insert(target);
        self.hairpin
            .insert(format!("{ip} . {ip}", ip = host_port.pod_ip));
    }

    fn map(&mut self, name: &'static str) -> &mut BTreeMap<String, String> {
        self.maps.entry(name).or_default()
    }

    /// The whole table as one nft script: delete the old table, make the new one.
    pub fn script(&self) -> String {
        let table = &self.config.table;
        let mut out = String::new();
        // `add` then `delete` makes the delete succeed on the first run too.
        let _ = writeln!(
            out,
            "add table ip {table}\ndelete table ip {table}\ntable ip {table} {{"
        );
        for (name, kind) in MAPS {
            let elements: Vec<String> = self.maps[name]
                .iter()
                .map(|(key, value)| format!("{key} : {value}"))
                .collect();
            let _ = writeln!(
                out,
                "  map {name} {{ type {kind};{} }}",
                elements_clause(&elements)
            );
        }
        let hairpin: Vec<String> = self.hairpin.iter().cloned().collect();
        let _ = writeln!(
            out,
            "  set {HAIRPIN} {{ type ipv4_addr . ipv4_addr;{} }}",
            elements_clause(&hairpin)
        );
        out.push_str(&fixed_chains(&self.config));
        for (name, declaration) in &self.sets {
            let _ = writeln!(out, "  set {name} {{ {declaration} }}");
        }
        for (name, rules) in &self.chains {
            let _ = writeln!(out, "  chain {name} {{");
            for rule in rules {
                let _ = writeln!(out, "    {rule}");
            }
            out.push_str("  }\n");
        }
        out.push_str("}\n");
        out
    }

    /// The script that turns `previous` (the ruleset last written to the kernel) into
    /// this one, in one transaction: new sets and chains first, then changed chains
    /// refilled, then map elements swapped, and last what nothing refers to any more
    /// removed. The whole table when the two differ in their configuration. Empty when
    /// nothing changed.
    pub fn update_from(&self, previous: &Ruleset) -> String {
        if previous.config != self.config {
            return self.script();
        }
        let table = &self.config.table;
        let mut out = String::new();
        for (name, declaration) in &self.sets {
            if !previous.sets.contains_key(name) {
                let _ = writeln!(out, "add set ip {table} {name} {{ {declaration} }}");
            }
        }
        for name in self.chains.keys() {
            if !previous.chains.contains_key(name) {
                let _ = writeln!(out, "add chain ip {table} {name}");
            }
        }
        for (name, rules) in &self.chains {
            match previous.chains.get(name) {
                Some(old) if old == rules => continue,
                Some(_) => {
                    let _ = writeln!(out, "flush chain ip {table} {name}");
                }
                None => {}
            }
            for rule in rules {
                let _ = writeln!(out, "add rule ip {table} {name} {rule}");
            }
        }
        for (name, _) in MAPS {
            let (old, new) = (&previous.maps[name], &self.maps[name]);
            let gone: Vec<String> = old
                .iter()
                .filter(|(key, value)| new.get(*key) != Some(value))
                .map(|(key, _)| key.clone())
                .collect();
            let added: Vec<String> = new
                .iter()
                .filter(|(key, value)| old.get(*key) != Some(value))
                .map(|(key, value)| format!("{key} : {value}"))
                .collect();
            // A key whose value changed is deleted before it is added again: nft refuses
            // to add an element over one with another value.
            element_command(&mut out, "delete", table, name, &gone);
            element_command(&mut out, "add", table, name, &added);
        }
        let gone: Vec<String> = previous
            .hairpin
            .difference(&self.hairpin)
            .cloned()
            .collect();
        let added: Vec<String> = self
            .hairpin
            .difference(&previous.hairpin)
            .cloned()
            .collect();
        element_command(&mut out, "delete", table, HAIRPIN, &gone);
        element_command(&mut out, "add", table, HAIRPIN, &added);
        for name in previous.chains.keys() {
            if !self.chains.contains_key(name) {
                let _ = writeln!(
                    out,
                    "flush chain ip {table} {name}\ndelete chain ip {table} {name}"
                );
            }
        }
        for name in previous.sets.keys() {
            if !self.sets.contains_key(name) {
                let _ = writeln!(out, "delete set ip {table} {name}");
            }
        }
        out
    }
}

fn elements_clause(items: &[String]) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!(" elements = {{ {} }}", items.join(", "))
    }
}

fn element_command(out: &mut String, verb: &str, table: &str, set: &str, items: &[String]) {
    if !items.is_empty() {
        let _ = writeln!(
            out,
            "{verb} element ip {table} {set} {{ {} }}",
            items.join(", ")
        );
    }
}

/// The chains that hook the maps into the kernel; they depend only on the configuration.
fn fixed_chains(config: &ProxyConfig) -> String {
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
    format!(
        "  chain host-ports {{
    ip daddr 127.0.0.0/8 return
    fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @{HOST_PORTS_ON_IP}
    fib daddr type local dnat ip to meta l4proto . th dport map @{HOST_PORTS}
  }}
  chain services {{
    ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}
    ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @{NODE_PORTS}
  }}
  chain nat-prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    jump host-ports
    jump services
  }}
  chain nat-output {{
    type nat hook output priority -100; policy accept;
    jump host-ports
    jump services
  }}
  chain nat-postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    ct status dnat ip saddr . ip daddr @{HAIRPIN} masquerade
  }}
  chain reject-chain {{
    meta l4proto tcp reject with tcp reset
    reject
  }}
  chain filter-forward {{
    type filter hook forward priority filter; policy accept;
    ct state new ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINTS}{endpoint_rule}
    iifname \"{bridge}\" oifname != \"{bridge}\" ip daddr != {cluster} drop comment \"no egress beyond the cluster\"{link_rule}
  }}
  chain filter-output {{
    type filter hook output priority filter; policy accept;
    ct state new ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINTS}
  }}
"
    )
}
