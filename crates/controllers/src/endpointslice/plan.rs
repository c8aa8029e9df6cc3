//! The EndpointSlices of a Service as a pure function of the Service, the pods of its
//! namespace and the slices it has, as Kubernetes' EndpointSlice controller computes
//! them: one endpoint per selected pod that has an IPv4 address and has not finished
//! (terminating pods stay, marked `terminating`, neither `ready` nor routable by
//! default); the service's ports resolved per pod (a named `targetPort` the pod lacks
//! drops that port for the pod); pods with the same resolved ports share slices of up
//! to [`MAX_ENDPOINTS_PER_SLICE`]. A service that selects nothing keeps one empty
//! placeholder slice. [`changes`] turns that into the creates, updates and deletes
//! that bring the existing slices there, reusing slices before creating new ones.
//!
//! Limits: IPv4 only (Strata's pod network has no IPv6); no zones or topology hints
//! (endpoints carry `nodeName` only).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use strata_api::endpointslice::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL};

use crate::endpoints::plan::{selector, selects, target_port};
use crate::pods;

/// The `endpointslice.kubernetes.io/managed-by` value of the slices this controller owns.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Label marking the slices of a headless service (`clusterIP: None`).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Most endpoints one slice holds: the API's limit (kube-controller-manager's
/// `--max-endpoints-per-slice` defaults to 100).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 1000;
/// The only address type this controller writes.
pub const ADDRESS_TYPE: &str = "IPv4";

/// One write that brings a service's slices to what it should have.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Create this slice (named by `generateName`).
    Create(EndpointSlice),
    /// Replace the slice of this name (its `resourceVersion` is the one read).
    Update(EndpointSlice),
    /// Delete the slice of this name.
    Delete(String),
}

/// The content of one slice: its ports and endpoints.
#[derive(Debug, Clone, PartialEq)]
struct Content {
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
}

/// A pod's resolved ports, the key pods share slices by: (name, port, protocol,
/// appProtocol) each, sorted.
type PortKey = Vec<(String, i32, String, Option<String>)>;

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut key: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_default(),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

fn ports_of(key: &PortKey) -> Vec<EndpointPort> {
    key.iter()
        .map(|(name, port, protocol, app_protocol)| EndpointPort {
            name: Some(name.clone()),
            port: Some(*port),
            protocol: Some(protocol.clone()),
            app_protocol: app_protocol.clone(),
        })
        .collect()
}

/// The pod's IPv4 address: from `podIPs`, else `podIP`.
fn ipv4(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .chain(status.pod_ip.as_deref())
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .map(str::to_string)
}

fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The endpoint of `pod` for `service`, with Kubernetes' conditions: `serving` is the
/// pod's readiness, `terminating` its deletion timestamp, and `ready` is serving and
/// not terminating (always, with `publishNotReadyAddresses`).
fn endpoint(service: &Service, pod: &Pod, ip: String) -> Endpoint {
    let serving = pods::is_ready(pod);
    let terminating = pods::is_terminating(&pod.metadata);
    let publish = service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false);
    let spec = pod.spec.as_ref();
    // The hostname is the pod's when its subdomain is this service (Kubernetes'
    // ShouldSetHostname), so that DNS can name it.
    let hostname = spec
        .filter(|s| s.subdomain.as_deref() == service.metadata.name.as_deref())
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty());
    Endpoint {
        addresses: vec![ip],
        conditions: Some(EndpointConditions {
            ready: Some(publish || (serving && !terminating)),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname,
        node_name: spec.and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What the service's slices should hold, in a stable order: per resolved port set,
/// the endpoints in chunks of at most [`MAX_ENDPOINTS_PER_SLICE`]; one empty slice when
/// no pod is selected; nothing for a service without a selector.
fn desired(service: &Service, pods: &[&Pod]) -> Vec<(PortKey, Vec<Content>)> {
    let Some(selector) = selector(service) else {
        return Vec::new();
    };
    let service_ports = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let mut groups: BTreeMap<PortKey, Vec<Endpoint>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| selects(selector, p)) {
        if is_finished(pod) {
            continue;
        }
        let Some(ip) = ipv4(pod) else {
            continue;
        };
        let key: PortKey = service_ports
            .iter()
            .filter_map(|port| {
                let number = target_port(port, pod)?;
                Some((
                    port.name.clone().unwrap_or_default(),
                    number,
                    port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port.app_protocol.clone(),
                ))
            })
            .collect();
        let mut key = key;
        key.sort();
        groups
            .entry(key)
            .or_default()
            .push(endpoint(service, pod, ip));
    }
    if groups.is_empty() {
        return vec![(
            PortKey::new(),
            vec![Content {
                ports: Vec::new(),
                endpoints: Vec::new(),
            }],
        )];
    }
    groups
        .into_iter()
        .map(|(key, mut endpoints)| {
            endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
            let ports = ports_of(&key);
            let chunks = endpoints
                .chunks(MAX_ENDPOINTS_PER_SLICE)
                .map(|chunk| Content {
                    ports: ports.clone(),
                    endpoints: chunk.to_vec(),
                })
                .collect();
            (key, chunks)
        })
        .collect()
}

/// The labels of the service's slices: the service's own (but for the ones the
/// controller sets), the service name, the manager, and the headless mark.
fn labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = service
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| {
            ![SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL].contains(&k.as_str())
        })
        .collect();
    labels.insert(
        SERVICE_NAME_LABEL.into(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let headless = service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None");
    if headless {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

/// The controller reference to the service every slice carries.
fn owner(service: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: service.metadata.name.clone().unwrap_or_default(),
        uid: service.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// True when `slice` is one this controller keeps for `service`: labelled for it,
/// managed by this controller, and controlled by this very service (not a deleted
/// namesake).
pub fn belongs_to(slice: &EndpointSlice, service: &Service) -> bool {
    let labels = pods::labels(&slice.metadata);
    let owned = slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == service.metadata.uid.as_ref());
    labels.get(SERVICE_NAME_LABEL) == service.metadata.name.as_ref()
        && labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && owned
}

/// `slice` (a new one when `None`) holding `content` for `service`.
fn write(service: &Service, existing: Option<&EndpointSlice>, content: Content) -> EndpointSlice {
    let mut metadata = existing
        .map(|s| s.metadata.clone())
        .unwrap_or_else(|| ObjectMeta {
            // Kubernetes falls back to `endpointslice-` for prefixes that cannot name one;
            // a service name (an RFC 1035 label) always can.
            generate_name: Some(format!(
                "{}-",
                service.metadata.name.as_deref().unwrap_or("endpointslice")
            )),
            namespace: service.metadata.namespace.clone(),
            ..Default::default()
        });
    metadata.labels = Some(labels(service));
    metadata.owner_references = Some(vec![owner(service)]);
    EndpointSlice {
        metadata,
        address_type: ADDRESS_TYPE.into(),
        endpoints: content.endpoints,
        ports: Some(content.ports),
    }
}

/// True when `slice` already is what `write` would make of it.
fn up_to_date(service: &Service, slice: &EndpointSlice, content: &Content) -> bool {
    slice.address_type == ADDRESS_TYPE
        && slice.endpoints == content.endpoints
        && port_key(slice.ports.as_deref().unwrap_or_default()) == port_key(&content.ports)
        && slice.metadata.labels.as_ref() == Some(&labels(service))
        && slice.metadata.owner_references.as_deref() == Some(&[owner(service)][..])
}

/// The writes that turn `existing` (the slices in the service's namespace) into what
/// `service` should have. Slices of the service that are not wanted are deleted;
/// a service without a selector gets no changes at all (its slices are its users').
pub fn changes(service: &Service, pods: &[&Pod], existing: &[&EndpointSlice]) -> Vec<Change> {
    if selector(service).is_none() {
        return Vec::new();
    }
    let mut mine: Vec<&EndpointSlice> = existing
        .iter()
        .copied()
        .filter(|s| belongs_to(s, service) && s.address_type == ADDRESS_TYPE)
        .collect();
    mine.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut by_key: BTreeMap<PortKey, Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in &mine {
        by_key
            .entry(port_key(slice.ports.as_deref().unwrap_or_default()))
            .or_default()
            .push(slice);
    }
    let mut changes = Vec::new();
    let mut unplaced: Vec<Content> = Vec::new();
    for (key, contents) in desired(service, pods) {
        let mut same_ports = by_key.remove(&key).unwrap_or_default().into_iter();
        for content in contents {
            match same_ports.next() {
                Some(slice) if up_to_date(service, slice, &content) => {}
                Some(slice) => changes.push(Change::Update(write(service, Some(slice), content))),
                None => unplaced.push(content),
            }
        }
        // Leftovers of this port set are reused below or deleted.
        by_key.entry(key).or_default().extend(same_ports);
    }
    // Slices whose ports no longer occur are rewritten for the new port sets before
    // any slice is created, so a port change keeps the slice's name.
    let mut spare = by_key.into_values().flatten();
    for content in unplaced {
        match spare.next() {
            Some(slice) => changes.push(Change::Update(write(service, Some(slice), content))),
            None => changes.push(Change::Create(write(service, None, content))),
        }
    }
    changes.extend(spare.filter_map(|s| s.metadata.name.clone().map(Change::Delete)));
    changes
}

#[cfg(test)]
mod tests;
