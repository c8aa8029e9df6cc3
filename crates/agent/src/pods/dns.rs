//! A pod's name resolution files, as the kubelet writes them: `/etc/resolv.conf` by the
//! pod's `dnsPolicy` and `dnsConfig` (the cluster DNS with the namespace's search path
//! and `ndots:5`, or the node's own file), and `/etc/hosts` with the pod's address,
//! hostname (and FQDN under its `subdomain`) and `hostAliases`. Pure functions; the
//! worker writes the files into the pod's directory and every container mounts them.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

/// The cluster's DNS service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// Its address (the service range's tenth: 10.43.0.10 by default).
    pub ip: Ipv4Addr,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
}

/// Kubernetes' limits: at most 3 name servers and 32 search domains.
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The pod's `/etc/resolv.conf`; `host` is the node's own file.
pub fn resolv_conf(pod: &Pod, dns: &ClusterDns, host: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let (mut servers, mut searches, mut options) = match policy {
        "ClusterFirst" if !host_network => cluster(dns, namespace),
        "ClusterFirstWithHostNet" => cluster(dns, namespace),
        "None" => (Vec::new(), Vec::new(), Vec::new()),
        // Default, and ClusterFirst with hostNetwork: the node's own resolution.
        _ => parse_host(host),
    };
    if let Some(config) = &spec.dns_config {
        servers.extend(config.nameservers.iter().flatten().cloned());
        searches.extend(config.searches.iter().flatten().cloned());
        for option in config.options.iter().flatten() {
            let Some(name) = option.name.clone() else {
                continue;
            };
            let text = match &option.value {
                Some(value) => format!("{name}:{value}"),
                None => name.clone(),
            };
            options.retain(|o: &String| o.split(':').next() != Some(name.as_str()));
            options.push(text);
        }
    }
    dedup(&mut servers);
    dedup(&mut searches);
    servers.truncate(MAX_NAMESERVERS);
    searches.truncate(MAX_SEARCHES);
    let mut out = String::new();
    for server in &servers {
        let _ = writeln!(out, "nameserver {server}");
    }
    if !searches.is_empty() {
        let _ = writeln!(out, "search {}", searches.join(" "));
    }
    if !options.is_empty() {
        let _ = writeln!(out, "options {}", options.join(" "));
    }
    out
}

fn cluster(dns: &ClusterDns, namespace: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let domain = &dns.domain;
    (
        vec![dns.ip.to_string()],
        vec![
            format!("{namespace}.svc.{domain}"),
            format!("svc.{domain}"),
            domain.clone(),
        ],
        vec!["ndots:5".to_string()],
    )
}

/// Name servers, search domains and options of a resolv.conf.
fn parse_host(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut servers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                searches = words.map(str::to_string).collect();
            }
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    (servers, searches, options)
}

fn dedup(items: &mut Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    items.retain(|item| seen.insert(item.clone()));
}

/// The pod's `/etc/hosts`: loopback, the pod's address with its names, host aliases.
pub fn hosts(pod: &Pod, pod_ip: &str, domain: &str) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let hostname = spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| name.chars().take(63).collect());
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    if !pod_ip.is_empty() {
        match spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
            Some(subdomain) => {
                let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
                let _ = writeln!(
                    out,
                    "{pod_ip}\t{hostname}.{subdomain}.{namespace}.svc.{domain}\t{hostname}"
                );
            }
            None => {
                let _ = writeln!(out, "{pod_ip}\t{hostname}");
            }
        }
    }
    let aliases = spec.host_aliases.unwrap_or_default();
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            let names = alias.hostnames.unwrap_or_default();
            if !names.is_empty() {
                let _ = writeln!(out, "{}\t{}", alias.ip, names.join("\t"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dns() -> ClusterDns {
        ClusterDns {
            ip: Ipv4Addr::new(10, 43, 0, 10),
            domain: "cluster.local".into(),
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "web-0", "namespace": "shop"}, "spec": spec}),
        )
        .unwrap()
    }

    const HOST: &str = "# host\nnameserver 192.0.2.53\nsearch corp.example\noptions edns0\n";

    #[test]
    fn cluster_first_points_at_the_cluster_dns_with_the_namespace_search_path() {
        let text = resolv_conf(&pod(json!({"containers": []})), &dns(), HOST);
        assert_eq!(
            text,
            "nameserver 10.43.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_default_none_and_dns_config() {
        let host_net = resolv_conf(
            &pod(json!({"containers": [], "hostNetwork": true})),
            &dns(),
            HOST,
        );
        assert_eq!(
            host_net,
            "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n"
        );
        let with_host_net = resolv_conf(
            &pod(
                json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
            ),
            &dns(),
            HOST,
        );
        assert!(with_host_net.starts_with("nameserver 10.43.0.10\n"));
        let custom = resolv_conf(
            &pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
                "nameservers": ["1.2.3.4"], "searches": ["a.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}})),
            &dns(),
            HOST,
        );
        assert_eq!(
            custom,
            "nameserver 1.2.3.4\nsearch a.example\noptions ndots:2 edns0\n"
        );
        // dnsConfig options override the policy's by name.
        let merged = resolv_conf(
            &pod(
                json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}),
            ),
            &dns(),
            HOST,
        );
        assert!(merged.ends_with("options ndots:1\n"), "{merged}");
    }

    #[test]
    fn hosts_names_the_pod_and_its_aliases() {
        let text = hosts(
            &pod(
                json!({"containers": [], "hostname": "db", "subdomain": "dbs",
                "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]}),
            ),
            "10.42.0.7",
            "cluster.local",
        );
        assert!(text.contains("127.0.0.1\tlocalhost\n"));
        assert!(
            text.contains("10.42.0.7\tdb.dbs.shop.svc.cluster.local\tdb\n"),
            "{text}"
        );
        assert!(text.contains("10.1.2.3\tfoo.local\tbar.local\n"));
        let plain = hosts(
            &pod(json!({"containers": []})),
            "10.42.0.8",
            "cluster.local",
        );
        assert!(plain.contains("10.42.0.8\tweb-0\n"));
    }
}
