//! The pure part of Service allocation: what a Service version holds ([`Claims`]),
//! the in-use maps ([`Pools`]), and one write's allocation ([`allocate`]), with
//! Kubernetes' rules and messages.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use strata_api::FieldError;

use super::bitmap::Bitmap;
use super::range::{NodePortRange, RESERVED_LOW, ServiceCidr};

/// The cluster IP and node ports one Service version holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Claims {
    /// The cluster IP (none for headless and ExternalName Services).
    pub ip: Option<Ipv4Addr>,
    /// The node ports of its ports (one number may serve a TCP and a UDP port).
    pub node_ports: BTreeSet<i32>,
}

impl Claims {
    /// What `self` holds that `other` does not.
    fn minus(&self, other: &Claims) -> Claims {
        Claims {
            ip: self.ip.filter(|ip| other.ip != Some(*ip)),
            node_ports: self
                .node_ports
                .difference(&other.node_ports)
                .copied()
                .collect(),
        }
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ip.is_none() && self.node_ports.is_empty()
    }
}

/// What a stored Service holds.
pub(crate) fn claims(service: &Service) -> Claims {
    let Some(spec) = &service.spec else {
        return Claims::default();
    };
    let ip = if needs_cluster_ip(spec) {
        spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok())
    } else {
        None
    };
    let node_ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.node_port.filter(|np| *np > 0))
        .collect();
    Claims { ip, node_ports }
}

/// Why one write's allocation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AllocError {
    /// The Service asks for something it may not have (422).
    Invalid(Vec<FieldError>),
    /// Nothing is free in a range (Kubernetes answers 500 too).
    Full(&'static str),
}

impl From<FieldError> for AllocError {
    fn from(error: FieldError) -> Self {
        AllocError::Invalid(vec![error])
    }
}

/// What one write changed in the pools: what it took, and what the Service's
/// previous version held that the new one gives back (to release once the write is
/// stored).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Taken by this write.
    pub reserved: Claims,
    /// To free when the write is stored.
    pub released: Claims,
}

/// The in-use maps of the service CIDR and the NodePort range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pools {
    cidr: ServiceCidr,
    ports: NodePortRange,
    ips: Bitmap,
    node_ports: Bitmap,
}

impl Pools {
    /// Empty maps over `cidr` and `ports`.
    pub fn new(cidr: ServiceCidr, ports: NodePortRange) -> Self {
        Pools {
            cidr,
            ports,
            ips: Bitmap::new(cidr.size()),
            node_ports: Bitmap::new(ports.size()),
        }
    }

    /// The service CIDR.
    pub fn cidr(&self) -> ServiceCidr {
        self.cidr
    }

    /// The NodePort range.
    pub fn ports(&self) -> NodePortRange {
        self.ports
    }

    /// How many cluster IPs and node ports are in use.
    pub fn used(&self) -> (u32, u32) {
        (self.ips.used(), self.node_ports.used())
    }

    /// Marks what a stored Service holds (outside the ranges: ignored). Returns what
    /// was already marked: another stored Service holds it too.
    pub fn mark(&mut self, claims: &Claims) -> Claims {
        let mut taken = Claims::default();
        if let Some(ip) = claims.ip
            && let Some(offset) = self.cidr.offset(ip)
            && !self.ips.insert(offset)
        {
            taken.ip = Some(ip);
        }
        for &port in &claims.node_ports {
            if let Some(offset) = self.ports.offset(port)
                && !self.node_ports.insert(offset)
            {
                taken.node_ports.insert(port);
            }
        }
        taken
    }

    /// Frees what `claims` holds.
    pub fn release(&mut self, claims: &Claims) {
        if let Some(offset) = claims.ip.and_then(|ip| self.cidr.offset(ip)) {
            self.ips.remove(offset);
        }
        for offset in claims
            .node_ports
            .iter()
            .filter_map(|p| self.ports.offset(*p))
        {
            self.node_ports.remove(offset);
        }
    }
}

fn type_of(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or("ClusterIP")
}

/// Every type but ExternalName has a cluster IP (or is headless).
fn needs_cluster_ip(spec: &ServiceSpec) -> bool {
    type_of(spec) != "ExternalName"
}

fn needs_node_ports(spec: &ServiceSpec) -> bool {
    matches!(type_of(spec), "NodePort" | "LoadBalancer")
}

fn is_headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some("None")
}

fn node_ports(spec: &ServiceSpec) -> Vec<Option<i32>> {
    spec.ports.iter().flatten().map(|p| p.node_port).collect()
}

/// What Kubernetes does to an update before allocating: fields that belong to the
/// old type are dropped when the type changes and the client left them as they were
/// (`dropTypeDependentFields`), and allocated values the client left out are kept
/// (`patchAllocatedValues`), so that `kubectl replace` or a patch of the type works.
fn carry_over(old: &ServiceSpec, new: &mut ServiceSpec) {
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if new.cluster_ip == old.cluster_ip && new.cluster_ips == old.cluster_ips {
            new.cluster_ip = None;
            new.cluster_ips = None;
        }
        if new.ip_families == old.ip_families {
            new.ip_families = None;
        }
        if new.ip_family_policy == old.ip_family_policy {
            new.ip_family_policy = None;
        }
    }
    if needs_node_ports(old) && !needs_node_ports(new) && node_ports(old) == node_ports(new) {
        for port in new.ports.iter_mut().flatten() {
            port.node_port = None;
        }
    }
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if new.cluster_ip.as_deref().unwrap_or_default().is_empty() {
            new.cluster_ip.clone_from(&old.cluster_ip);
        }
        if new.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
            new.cluster_ips.clone_from(&old.cluster_ips);
        }
    }
    if needs_node_ports(old) && needs_node_ports(new) {
        let old_ports = old.ports.as_deref().unwrap_or_default();
        for port in new.ports.iter_mut().flatten() {
            if port.node_port.is_none() {
                port.node_port = old_ports
                    .iter()
                    .find(|o| o.port == port.port && o.protocol == port.protocol)
                    .and_then(|o| o.node_port);
            }
        }
    }
}

/// `clusterIP` and `clusterIPs[0]` name the same address; fields of other types are
/// refused.
fn check_shape(spec: &mut ServiceSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let ips = spec.cluster_ips.clone().unwrap_or_default();
    let ip = spec.cluster_ip.clone().unwrap_or_default();
    match ips.first() {
        Some(first) if ip.is_empty() => spec.cluster_ip = Some(first.clone()),
        Some(first) if *first != ip => errors.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            first,
            "must match `clusterIP` when present",
        )),
        _ => {}
    }
    if ips.len() > 1 {
        errors.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            spec.ip_family_policy.clone().unwrap_or_default(),
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
        ));
    }
    let kind = type_of(spec).to_string();
    if !needs_cluster_ip(spec) && !spec.cluster_ip.as_deref().unwrap_or_default().is_empty() {
        errors.push(FieldError::forbidden(
            "spec.clusterIPs",
            "may not be set for ExternalName services",
        ));
    }
    if needs_node_ports(spec) && is_headless(spec) {
        errors.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            "None",
            format!("may not be set to 'None' for {kind} services"),
        ));
    }
    if !needs_node_ports(spec) {
        for (i, port) in node_ports(spec).into_iter().enumerate() {
            if port.is_some() {
                errors.push(FieldError::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    format!("may not be used when `type` is '{kind}'"),
                ));
            }
        }
    }
    errors
}

/// Fills in the cluster IP and node ports of `new` (a Service being created, or
/// replacing `old`), taking from `pools` what `old` did not already hold. On error
/// nothing stays taken. The caller frees [`Change::released`] once the write is
/// stored, or [`Change::reserved`] if it is not.
pub(crate) fn allocate(
    pools: &mut Pools,
    old: Option<&Service>,
    new: &mut Service,
) -> Result<Change, AllocError> {
    let held = old.map(claims).unwrap_or_default();
    let Some(spec) = new.spec.as_mut() else {
        return Ok(Change::default());
    };
    if let Some(old_spec) = old.and_then(|o| o.spec.as_ref()) {
        carry_over(old_spec, spec);
    }
    let errors = check_shape(spec);
    if !errors.is_empty() {
        return Err(AllocError::Invalid(errors));
    }
    let mut reserved = Claims::default();
    let filled = fill_cluster_ip(pools, &held, spec, &mut reserved)
        .and_then(|()| fill_node_ports(pools, &held, spec, &mut reserved));
    if let Err(err) = filled {
        pools.release(&reserved);
        return Err(err);
    }
    Ok(Change {
        released: held.minus(&claims(new)),
        reserved,
    })
}

fn fill_cluster_ip(
    pools: &mut Pools,
    held: &Claims,
    spec: &mut ServiceSpec,
    reserved: &mut Claims,
) -> Result<(), AllocError> {
    if !needs_cluster_ip(spec) {
        return Ok(());
    }
    if is_headless(spec) {
        spec.cluster_ips = Some(vec!["None".into()]);
        return Ok(());
    }
    let asked = spec.cluster_ip.clone().unwrap_or_default();
    let ip = if asked.is_empty() {
        let offset = pools.ips.take_next(RESERVED_LOW).ok_or(AllocError::Full(
            "failed to allocate a serviceIP: range is full",
        ))?;
        let ip = pools.cidr.address(offset);
        reserved.ip = Some(ip);
        ip
    } else {
        let ip = match asked.parse::<IpAddr>() {
            Ok(IpAddr::V4(ip)) => ip,
            Ok(IpAddr::V6(_)) => {
                return Err(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    &asked,
                    "IPv6 is not configured on this cluster",
                )
                .into());
            }
            Err(_) => {
                return Err(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    &asked,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )
                .into());
            }
        };
        if held.ip != Some(ip) {
            let cidr = pools.cidr;
            let failed = |why: String| {
                AllocError::from(FieldError::invalid(
                    "spec.clusterIPs",
                    [asked.as_str()],
                    format!("failed to allocate IP {ip}: {why}"),
                ))
            };
            let offset = cidr.offset(ip).ok_or_else(|| {
                failed(format!(
                    "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}"
                ))
            })?;
            if !pools.ips.insert(offset) {
                return Err(failed("provided IP is already allocated".into()));
            }
            reserved.ip = Some(ip);
        }
        ip
    };
    spec.cluster_ip = Some(ip.to_string());
    spec.cluster_ips = Some(vec![ip.to_string()]);
    Ok(())
}

fn fill_node_ports(
    pools: &mut Pools,
    held: &Claims,
    spec: &mut ServiceSpec,
    reserved: &mut Claims,
) -> Result<(), AllocError> {
    if !needs_node_ports(spec) {
        return Ok(());
    }
    // A LoadBalancer may opt out of node ports; the ones it asks for it still gets.
    let dynamic =
        !(type_of(spec) == "LoadBalancer" && spec.allocate_load_balancer_node_ports == Some(false));
    // Kubernetes gives ports with the same number (53/TCP and 53/UDP) one node port.
    let mut by_port: BTreeMap<i32, i32> = BTreeMap::new();
    let range = pools.ports;
    let ports = spec.ports.as_deref_mut().unwrap_or_default();
    for (i, port) in ports.iter().enumerate() {
        let Some(node_port) = port.node_port else {
            continue;
        };
        by_port.entry(port.port).or_insert(node_port);
        if held.node_ports.contains(&node_port) || reserved.node_ports.contains(&node_port) {
            continue;
        }
        let invalid = |why: String| {
            AllocError::from(FieldError::invalid(
                format!("spec.ports[{i}].nodePort"),
                node_port,
                why,
            ))
        };
        let offset = range.offset(node_port).ok_or_else(|| {
            invalid(format!(
                "provided port is not in the valid range. The range of valid ports is {range}"
            ))
        })?;
        if !pools.node_ports.insert(offset) {
            return Err(invalid("provided port is already allocated".into()));
        }
        reserved.node_ports.insert(node_port);
    }
    for port in ports.iter_mut().filter(|p| p.node_port.is_none()) {
        if let Some(node_port) = by_port.get(&port.port) {
            port.node_port = Some(*node_port);
        } else if dynamic {
            let offset = pools.node_ports.take_next(0).ok_or(AllocError::Full(
                "failed to allocate a nodePort: range is full",
            ))?;
            let node_port = range.port(offset);
            reserved.node_ports.insert(node_port);
            by_port.insert(port.port, node_port);
            port.node_port = Some(node_port);
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
