//! The Endpoints of a Service as a pure function of the Service and the pods of its
//! namespace, as Kubernetes' endpoints controller computes them: pods the selector
//! matches that have an address and are not terminating; ready ones in `addresses`, the
//! rest in `notReadyAddresses` (all ready when `publishNotReadyAddresses`); each service
//! port resolved against the pod (a named `targetPort` looks up the container port of
//! that name); pods with the same resolved ports share one subset.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service, ServicePort,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::pods;

/// A pod's ports for the service's ports: (name, number, protocol) each.
type ResolvedPorts = Vec<(String, i32, String)>;

/// The selector of a service that manages its endpoints (`None`: no or empty selector;
/// such services' Endpoints are the user's).
pub fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// True when `pod` is one the service selects.
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pods::labels(&pod.metadata);
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The subsets of the service's Endpoints, in a stable order.
pub fn subsets(service: &Service, pods: &[&Pod]) -> Vec<EndpointSubset> {
    let Some(selector) = selector(service) else {
        return Vec::new();
    };
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses.unwrap_or(false);
    let ports = spec.ports.unwrap_or_default();
    // Keyed by the resolved ports, so pods with the same ports share a subset.
    let mut groups: BTreeMap<ResolvedPorts, (Vec<EndpointAddress>, Vec<EndpointAddress>)> =
        BTreeMap::new();
    for pod in pods.iter().filter(|p| selects(selector, p)) {
        let Some(ip) = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        if pods::is_terminating(&pod.metadata) || is_finished(pod) {
            continue;
        }
        let resolved: Option<ResolvedPorts> = ports
            .iter()
            .map(|port| {
                target_port(port, pod).map(|number| {
                    (
                        port.name.clone().unwrap_or_default(),
                        number,
                        port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    )
                })
            })
            .collect();
        // A pod lacking a named port the service targets is left out, as Kubernetes does.
        let Some(mut resolved) = resolved else {
            continue;
        };
        resolved.sort();
        let address = EndpointAddress {
            ip,
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
            hostname: None,
        };
        let (ready, not_ready) = groups.entry(resolved).or_default();
        if publish_not_ready || pods::is_ready(pod) {
            ready.push(address);
        } else {
            not_ready.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (mut ready, mut not_ready))| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then(|| {
                    ports
                        .into_iter()
                        .map(|(name, port, protocol)| EndpointPort {
                            name: (!name.is_empty()).then_some(name),
                            port,
                            protocol: Some(protocol),
                            app_protocol: None,
                        })
                        .collect()
                }),
            }
        })
        .collect()
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The pod's port for a service port: `targetPort` as a number, a named container port,
/// or (no targetPort) the service port itself.
pub(crate) fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(number)) => Some(*number),
        Some(IntOrString::String(name)) => match name.parse::<i32>() {
            Ok(number) => Some(number),
            Err(_) => pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec}),
        )
        .unwrap()
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, port_name: &str, port: i32) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": port_name, "containerPort": port}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .unwrap()
    }

    #[test]
    fn ready_and_not_ready_pods_with_resolved_ports() {
        let svc = service(json!({"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}));
        let a = pod("a", Some("10.42.0.5"), true, "http", 8080);
        let b = pod("b", Some("10.42.0.6"), false, "http", 8080);
        let c = pod("c", Some("10.42.0.7"), true, "http", 9090);
        let no_ip = pod("d", None, true, "http", 8080);
        let other: Pod =
            serde_json::from_value(json!({"metadata": {"name": "x", "namespace": "default",
            "labels": {"app": "db"}}, "status": {"podIP": "10.42.0.9"}}))
            .unwrap();
        let subsets = subsets(&svc, &[&a, &b, &c, &no_ip, &other]);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let first = &subsets[0];
        assert_eq!(first.ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(
            first.ports.as_ref().unwrap()[0].name.as_deref(),
            Some("http")
        );
        assert_eq!(first.addresses.as_ref().unwrap()[0].ip, "10.42.0.5");
        assert_eq!(
            first.not_ready_addresses.as_ref().unwrap()[0].ip,
            "10.42.0.6"
        );
        assert_eq!(
            first.addresses.as_ref().unwrap()[0]
                .target_ref
                .as_ref()
                .unwrap()
                .name
                .as_deref(),
            Some("a")
        );
        assert_eq!(subsets[1].ports.as_ref().unwrap()[0].port, 9090);
    }

    #[test]
    fn terminating_pods_missing_ports_and_selectorless_services() {
        let svc = service(json!({"selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": "metrics"}]}));
        let a = pod("a", Some("10.42.0.5"), true, "http", 8080);
        assert!(
            subsets(&svc, &[&a]).is_empty(),
            "a pod without the named port is left out"
        );
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}],
            "publishNotReadyAddresses": true}));
        let mut gone = pod("g", Some("10.42.0.8"), true, "http", 8080);
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            ));
        let slow = pod("s", Some("10.42.0.9"), false, "http", 8080);
        let subsets_now = subsets(&svc, &[&gone, &slow]);
        assert_eq!(subsets_now.len(), 1);
        assert_eq!(
            subsets_now[0].addresses.as_ref().unwrap().len(),
            1,
            "published though not ready"
        );
        assert_eq!(subsets_now[0].ports.as_ref().unwrap()[0].port, 80);
        let manual = service(json!({"ports": [{"port": 80}]}));
        assert!(selector(&manual).is_none());
    }
}
