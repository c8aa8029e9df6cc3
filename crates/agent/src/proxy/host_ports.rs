//! Pods' `hostPort`s on this node (the CNI portmap plugin's job): which of the node's
//! running pods claim which host port, for the service table, and which claims lose to
//! an older pod's (the scheduler keeps them apart; a pod bound by name skips it).

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;
use strata_net::services::{HostPort, Protocol};

/// A claim that lost to another pod's: the pod and why, for an event.
#[derive(Debug, Clone)]
pub struct Conflict {
    /// The pod whose port is not served.
    pub pod: Pod,
    /// `protocol/port` and who holds it.
    pub message: String,
}

/// The host ports of `pods` (oldest pod first), and the claims that conflict with an
/// older pod's (same protocol and port, and the same address or either on every
/// address, as the scheduler's NodePorts filter counts them).
pub fn host_ports_of<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
) -> (Vec<HostPort>, Vec<Conflict>) {
    let mut pods: Vec<&Pod> = pods.into_iter().collect();
    pods.sort_by(|a, b| {
        let key = |p: &Pod| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.namespace.clone(),
                p.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut held: Vec<(HostPort, String)> = Vec::new();
    let mut conflicts = Vec::new();
    for pod in pods {
        let Some(pod_ip) = serving_ip(pod) else {
            continue;
        };
        let name = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        for claim in claims(pod, pod_ip) {
            match held.iter().find(|(other, _)| overlaps(other, &claim)) {
                Some((other, holder)) => conflicts.push(Conflict {
                    pod: pod.clone(),
                    message: format!(
                        "host port {}/{} is held by pod {holder}; this pod's port {} is not served there",
                        other.protocol.name(),
                        claim.port,
                        claim.container_port
                    ),
                }),
                None => held.push((claim, name.clone())),
            }
        }
    }
    (held.into_iter().map(|(port, _)| port).collect(), conflicts)
}

/// The address a pod's host ports lead to: its pod IP while it runs on the pod network
/// (host-network pods bind the node's ports themselves).
fn serving_ip(pod: &Pod) -> Option<Ipv4Addr> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    status.pod_ip.as_deref()?.parse().ok()
}

/// The pod's host port claims: of its containers and of its sidecar init containers
/// (`restartPolicy: Always`), which run beside them.
fn claims(pod: &Pod, pod_ip: Ipv4Addr) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|port| {
            let host_port = u16::try_from(port.host_port?).ok().filter(|p| *p != 0)?;
            Some(HostPort {
                protocol: Protocol::parse(port.protocol.as_deref().unwrap_or("TCP"))?,
                host_ip: port
                    .host_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
                    .filter(|ip| !ip.is_unspecified()),
                port: host_port,
                pod_ip,
                container_port: u16::try_from(port.container_port).ok()?,
            })
        })
        .collect()
}

fn overlaps(a: &HostPort, b: &HostPort) -> bool {
    a.protocol == b.protocol
        && a.port == b.port
        && match (a.host_ip, b.host_ip) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, created: &str, ip: Option<&str>, ports: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"containers": [{"name": "c", "image": "i", "ports": ports}]},
            "status": {"phase": "Running", "podIP": ip}
        }))
        .unwrap()
    }

    #[test]
    fn the_older_pod_keeps_the_port_and_the_younger_is_reported() {
        let older = pod(
            "older",
            "2026-01-01T00:00:00Z",
            Some("10.42.0.5"),
            json!([{"containerPort": 80, "hostPort": 8080}]),
        );
        let younger = pod(
            "younger",
            "2026-01-02T00:00:00Z",
            Some("10.42.0.6"),
            json!([{"containerPort": 81, "hostPort": 8080, "hostIP": "192.168.1.2"},
                   {"containerPort": 53, "hostPort": 8080, "protocol": "UDP"}]),
        );
        let (ports, conflicts) = host_ports_of([younger, older].iter());
        assert_eq!(ports.len(), 2, "{ports:?}");
        assert_eq!(ports[0].pod_ip, Ipv4Addr::new(10, 42, 0, 5));
        assert_eq!(ports[0].host_ip, None);
        assert_eq!(ports[1].protocol, Protocol::Udp, "another protocol is free");
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].pod.metadata.name.as_deref(), Some("younger"));
        assert!(
            conflicts[0]
                .message
                .contains("TCP/8080 is held by pod default/older"),
            "{}",
            conflicts[0].message
        );
    }

    #[test]
    fn pods_without_an_ip_on_the_host_network_or_finished_claim_nothing() {
        let ports = json!([{"containerPort": 80, "hostPort": 8080}]);
        let waiting = pod("waiting", "2026-01-01T00:00:00Z", None, ports.clone());
        let mut host = pod(
            "host",
            "2026-01-01T00:00:00Z",
            Some("10.0.0.1"),
            ports.clone(),
        );
        host.spec.as_mut().unwrap().host_network = Some(true);
        let mut done = pod(
            "done",
            "2026-01-01T00:00:00Z",
            Some("10.42.0.7"),
            ports.clone(),
        );
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let no_host_port = pod(
            "plain",
            "2026-01-01T00:00:00Z",
            Some("10.42.0.8"),
            json!([{"containerPort": 80}, {"containerPort": 81, "hostPort": 0}]),
        );
        let (claimed, conflicts) = host_ports_of([waiting, host, done, no_host_port].iter());
        assert!(claimed.is_empty(), "{claimed:?}");
        assert!(conflicts.is_empty());
    }

    #[test]
    fn specific_addresses_apart_do_not_conflict() {
        let a = pod(
            "a",
            "2026-01-01T00:00:00Z",
            Some("10.42.0.5"),
            json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "192.168.1.2"}]),
        );
        let b = pod(
            "b",
            "2026-01-02T00:00:00Z",
            Some("10.42.0.6"),
            json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "192.168.1.3"}]),
        );
        let (claimed, conflicts) = host_ports_of([a, b].iter());
        assert_eq!(claimed.len(), 2);
        assert!(conflicts.is_empty());
    }
}
