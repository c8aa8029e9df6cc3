//! Defaulting and validation of `discovery.k8s.io/v1` EndpointSlices, the essentials of
//! Kubernetes' `discovery/validation`: the address type, each endpoint's addresses for
//! it, the ports, and the size limits. Topology hints and zones are not checked.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};

use crate::field::FieldError;
use crate::kinds::Kind;
use crate::names::{NameRule, check_name, is_subdomain};

/// The address types a slice may have.
pub const ADDRESS_TYPES: [&str; 3] = ["IPv4", "IPv6", "FQDN"];
/// The protocols a port may have.
pub const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
/// Most endpoints one slice may hold.
pub const MAX_ENDPOINTS: usize = 1000;
/// Most ports one slice may have.
pub const MAX_PORTS: usize = 100;
/// Most addresses one endpoint may have.
pub const MAX_ADDRESSES: usize = 100;

/// Label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller (or user) that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";

/// What is wrong with `address` for `address_type`, as Kubernetes says it.
fn address_problem(address_type: &str, address: &str) -> Option<&'static str> {
    match address_type {
        "IPv4" => address
            .parse::<Ipv4Addr>()
            .is_err()
            .then_some("must be a valid IPv4 address"),
        "IPv6" => match address.parse::<Ipv6Addr>() {
            // Go reads an IPv4-mapped address as IPv4.
            Ok(ip) if ip.to_ipv4_mapped().is_none() => None,
            _ => Some("must be a valid IPv6 address"),
        },
        "FQDN" => {
            let name = address.strip_suffix('.').unwrap_or(address);
            if !name.contains('.') {
                Some("should be a domain with at least two segments separated by dots")
            } else if !is_subdomain(name) {
                Some(
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
                )
            } else {
                None
            }
        }
        // An unsupported address type is reported once, on `addressType`.
        _ => None,
    }
}

fn validate_endpoint(
    endpoint: &Endpoint,
    address_type: &str,
    at: &str,
    errors: &mut Vec<FieldError>,
) {
    let addresses = &endpoint.addresses;
    if addresses.is_empty() {
        errors.push(FieldError::required(
            format!("{at}.addresses"),
            "must contain at least 1 address",
        ));
    } else if addresses.len() > MAX_ADDRESSES {
        errors.push(FieldError::too_many(
            format!("{at}.addresses"),
            addresses.len(),
            MAX_ADDRESSES,
        ));
    }
    for (j, address) in addresses.iter().enumerate() {
        if let Some(problem) = address_problem(address_type, address) {
            errors.push(FieldError::invalid(
                format!("{at}.addresses[{j}]"),
                address,
                problem,
            ));
        }
    }
    if let Some(node) = &endpoint.node_name {
        errors.extend(check_name(
            node,
            NameRule::Subdomain,
            &format!("{at}.nodeName"),
        ));
    }
    if let Some(hostname) = &endpoint.hostname {
        errors.extend(check_name(
            hostname,
            NameRule::Label,
            &format!("{at}.hostname"),
        ));
    }
}

fn validate_ports(ports: &[EndpointPort], errors: &mut Vec<FieldError>) {
    if ports.len() > MAX_PORTS {
        errors.push(FieldError::too_many("ports", ports.len(), MAX_PORTS));
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let name = port.name.as_deref().unwrap_or_default();
        if !name.is_empty() {
            errors.extend(check_name(
                name,
                NameRule::Label,
                &format!("ports[{i}].name"),
            ));
        }
        if !names.insert(name) {
            errors.push(FieldError::duplicate(format!("ports[{i}].name"), name));
        }
        if let Some(number) = port.port
            && !(1..=65535).contains(&number)
        {
            errors.push(FieldError::invalid(
                format!("ports[{i}].port"),
                number,
                "must be between 1 and 65535, inclusive",
            ));
        }
        match port.protocol.as_deref() {
            None => errors.push(FieldError::required(format!("ports[{i}].protocol"), "")),
            Some(protocol) if !PROTOCOLS.contains(&protocol) => errors.push(
                FieldError::not_supported(format!("ports[{i}].protocol"), protocol, &PROTOCOLS),
            ),
            Some(_) => {}
        }
    }
}

impl Kind for EndpointSlice {
    /// Kubernetes defaults a port's name to `""` and its protocol to TCP.
    fn default(&mut self) {
        for port in self.ports.iter_mut().flatten() {
            port.name.get_or_insert_with(String::new);
            port.protocol.get_or_insert_with(|| "TCP".into());
        }
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        if !ADDRESS_TYPES.contains(&self.address_type.as_str()) {
            errors.push(FieldError::not_supported(
                "addressType",
                &self.address_type,
                &ADDRESS_TYPES,
            ));
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            errors.push(FieldError::too_many(
                "endpoints",
                self.endpoints.len(),
                MAX_ENDPOINTS,
            ));
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            validate_endpoint(
                endpoint,
                &self.address_type,
                &format!("endpoints[{i}]"),
                errors,
            );
        }
        validate_ports(self.ports.as_deref().unwrap_or_default(), errors);
    }

    fn validate_update(&self, old: &Self, errors: &mut Vec<FieldError>) {
        if self.address_type != old.address_type {
            errors.push(FieldError::invalid(
                "addressType",
                &self.address_type,
                "field is immutable",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn slice(value: Value) -> EndpointSlice {
        let mut object = json!({"metadata": {"name": "web-abcde"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.42.0.5"]}], "ports": [{"port": 8080}]});
        if let (Some(o), Some(extra)) = (object.as_object_mut(), value.as_object()) {
            o.extend(extra.clone());
        }
        let mut slice: EndpointSlice = serde_json::from_value(object).unwrap();
        Kind::default(&mut slice);
        slice
    }

    fn errors(slice: &EndpointSlice) -> Vec<String> {
        let mut errors = Vec::new();
        slice.validate(&mut errors);
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_plain_slice_is_defaulted_and_valid() {
        let s = slice(json!({}));
        assert!(errors(&s).is_empty(), "{:?}", errors(&s));
        let port = &s.ports.unwrap()[0];
        assert_eq!(port.name.as_deref(), Some(""));
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn addresses_must_fit_the_address_type() {
        let bad = slice(json!({"endpoints": [
            {"addresses": ["10.42.0.5", "fd00::1"]}, {"addresses": []}]}));
        assert_eq!(
            errors(&bad),
            [
                "endpoints[0].addresses[1]: Invalid value: \"fd00::1\": must be a valid IPv4 address",
                "endpoints[1].addresses: Required value: must contain at least 1 address",
            ]
        );
        let v6 = slice(json!({"addressType": "IPv6",
            "endpoints": [{"addresses": ["fd00::1", "::ffff:10.0.0.1"]}]}));
        assert_eq!(
            errors(&v6),
            [
                "endpoints[0].addresses[1]: Invalid value: \"::ffff:10.0.0.1\": must be a valid IPv6 address"
            ]
        );
        let fqdn = slice(json!({"addressType": "FQDN",
            "endpoints": [{"addresses": ["db.example.com", "localhost", "Bad.example"]}]}));
        let found = errors(&fqdn);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("endpoints[0].addresses[1]: Invalid value: \"localhost\""));
        assert!(found[1].starts_with("endpoints[0].addresses[2]"));
        let other = slice(json!({"addressType": "IPv5"}));
        assert_eq!(
            errors(&other),
            [
                "addressType: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\", \"FQDN\""
            ]
        );
    }

    #[test]
    fn ports_are_numbers_protocols_and_unique_labels() {
        let bad = slice(json!({"ports": [
            {"name": "http", "port": 0}, {"name": "http", "protocol": "ICMP"},
            {"name": "Web_UI", "port": 70000}]}));
        let found = errors(&bad);
        assert_eq!(
            found[0],
            "ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        );
        assert_eq!(found[1], "ports[1].name: Duplicate value: \"http\"");
        assert!(found[2].starts_with("ports[1].protocol: Unsupported value: \"ICMP\""));
        assert!(found[3].starts_with("ports[2].name: Invalid value: \"Web_UI\""));
        assert!(found[4].starts_with("ports[2].port: Invalid value: 70000"));
        assert_eq!(found.len(), 5);
        // Two unnamed ports share the name "".
        let unnamed = slice(json!({"ports": [{"port": 80}, {"port": 81}]}));
        assert_eq!(errors(&unnamed), ["ports[1].name: Duplicate value: \"\""]);
    }

    #[test]
    fn sizes_are_limited() {
        let endpoints: Vec<Value> = (0..1001)
            .map(|i| json!({"addresses": [format!("10.42.{}.{}", i / 250, i % 250)]}))
            .collect();
        let ports: Vec<Value> = (1..=101)
            .map(|p| json!({"name": format!("p{p}"), "port": p}))
            .collect();
        let big = slice(json!({"endpoints": endpoints, "ports": ports}));
        assert_eq!(
            errors(&big),
            [
                "endpoints: Too many: 1001: must have at most 1000 items",
                "ports: Too many: 101: must have at most 100 items",
            ]
        );
        let addresses: Vec<String> = (0..101).map(|i| format!("10.0.0.{i}")).collect();
        let many = slice(json!({"endpoints": [{"addresses": addresses}]}));
        assert_eq!(
            errors(&many),
            ["endpoints[0].addresses: Too many: 101: must have at most 100 items"]
        );
    }

    #[test]
    fn node_names_hostnames_and_the_address_type_on_update() {
        let bad = slice(json!({"endpoints": [{"addresses": ["10.42.0.5"],
            "nodeName": "Node_1", "hostname": "a.b"}]}));
        let found = errors(&bad);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("endpoints[0].nodeName: Invalid value"));
        assert!(found[1].starts_with("endpoints[0].hostname: Invalid value"));
        let old = slice(json!({}));
        let new = slice(json!({"addressType": "IPv6", "endpoints": [{"addresses": ["fd00::1"]}]}));
        let mut errors = Vec::new();
        new.validate_update(&old, &mut errors);
        assert_eq!(
            errors[0].to_string(),
            "addressType: Invalid value: \"IPv6\": field is immutable"
        );
    }
}
