//! The `default/kubernetes` Service, how pods find the API server (kube-apiserver's
//! bootstrap controller keeps it): cluster IP the first address of the service CIDR (a
//! SAN of the serving certificate), port 443 (`https`) to the API server's port, and
//! Endpoints naming the API server's address when pods can reach it, i.e. when it is not
//! loopback (and the same in an EndpointSlice). Created on every start if missing; the
//! Endpoints and the slice follow the listen address.

use std::net::{IpAddr, SocketAddr};

use serde_json::{Value, json};
use strata_api::resources::Resource;
use strata_store::{Store, StoreError};

use crate::services::ServiceCidr;
use crate::status::ApiError;
use crate::storage;

/// The Service's name (in `default`).
pub const NAME: &str = "kubernetes";
/// The Service's port.
pub const PORT: u16 = 443;

/// The `kubernetes` Service's cluster IP for `cidr`: its first address.
pub fn cluster_ip(cidr: ServiceCidr) -> IpAddr {
    IpAddr::V4(cidr.address(1))
}

/// The address pods reach the API server on: `listen` when it names one, else the first
/// IPv4 `--tls-san` (how other hosts are told to reach a server on 0.0.0.0); never a
/// loopback address, which a pod cannot reach.
pub fn advertised(listen: SocketAddr, tls_sans: &[String]) -> Option<IpAddr> {
    let usable = |ip: &IpAddr| ip.is_ipv4() && !ip.is_loopback() && !ip.is_unspecified();
    if usable(&listen.ip()) {
        return Some(listen.ip());
    }
    if !listen.ip().is_unspecified() {
        return None;
    }
    tls_sans
        .iter()
        .filter_map(|san| san.trim().parse::<IpAddr>().ok())
        .find(usable)
}

/// Creates the Service if missing and brings its Endpoints and EndpointSlice in line with
/// `advertised`.
pub async fn bootstrap(
    store: &dyn Store,
    cidr: ServiceCidr,
    api_port: u16,
    advertised: Option<IpAddr>,
) -> Result<(), ApiError> {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": NAME,
            "namespace": "default",
            "labels": {"component": "apiserver", "provider": "kubernetes"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip(cidr).to_string(),
            "ports": [{"name": "https", "protocol": "TCP", "port": PORT, "targetPort": api_port}],
            "sessionAffinity": "None",
        },
    });
    create_if_missing(store, resource("", "v1", "services")?, service).await?;
    let (subsets, slice_endpoints) = match advertised {
        Some(ip) => (
            json!([{
                "addresses": [{"ip": ip.to_string()}],
                "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}],
            }]),
            json!([{"addresses": [ip.to_string()], "conditions": {"ready": true}}]),
        ),
        None => (json!([]), json!([])),
    };
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": NAME,
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": subsets,
    });
    keep(
        store,
        resource("", "v1", "endpoints")?,
        endpoints,
        &["subsets"],
    )
    .await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": NAME,
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": NAME},
        },
        "addressType": "IPv4",
        "endpoints": slice_endpoints,
        "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}],
    });
    keep(
        store,
        resource("discovery.k8s.io", "v1", "endpointslices")?,
        slice,
        &["endpoints", "ports"],
    )
    .await
}

/// Creates `object` if missing, else brings its `fields` in line with it.
async fn keep(
    store: &dyn Store,
    resource: &'static Resource,
    object: Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    let key = storage::key(resource, Some("default"), NAME);
    let Some(kv) = store.get(&key).await? else {
        return create_if_missing(store, resource, object).await;
    };
    let mut stored = storage::decode(&kv)?;
    if fields.iter().all(|f| stored.get(*f) == object.get(*f)) {
        return Ok(());
    }
    for field in fields {
        stored[*field] = object.get(*field).cloned().unwrap_or(Value::Null);
    }
    match store
        .update(&key, storage::encode(&stored), Some(kv.mod_revision))
        .await
    {
        // Someone else changed it meanwhile: theirs stands.
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

fn resource(group: &str, version: &str, plural: &str) -> Result<&'static Resource, ApiError> {
    strata_api::resources::find(group, version, plural)
        .ok_or_else(|| ApiError::Internal(format!("the {plural} resource is not served")))
}

async fn create_if_missing(
    store: &dyn Store,
    resource: &'static Resource,
    object: Value,
) -> Result<(), ApiError> {
    storage::create_built_in(store, resource, Some("default"), NAME, object).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_address_is_never_loopback() {
        let sans = vec!["strata.example".to_string(), "192.168.7.2".to_string()];
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(advertised(at("127.0.0.1:6443"), &sans), None);
        assert_eq!(
            advertised(at("10.1.2.3:6443"), &sans),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            advertised(at("0.0.0.0:6443"), &sans),
            Some("192.168.7.2".parse().unwrap())
        );
        assert_eq!(advertised(at("0.0.0.0:6443"), &[]), None);
    }

    #[test]
    fn the_cluster_ip_is_the_first_address_of_the_range() {
        let cidr: ServiceCidr = "10.99.128.0/17".parse().unwrap();
        assert_eq!(cluster_ip(cidr), "10.99.128.1".parse::<IpAddr>().unwrap());
    }
}
