//! The node's service proxy (kube-proxy's job): watches Services, Endpoints and this
//! node's pods and keeps this node's nftables table equal to them through `strata-net`'s
//! service rules (cluster IPs, node ports, and the pods' host ports, [`host_ports`]), and
//! the node's cluster DNS records with them ([`crate::cluster_dns`]). After a short pause
//! that gathers a burst of changes, the difference from the table last written is
//! applied in one transaction; the first write (and the one after a failed write)
//! rebuilds the whole table, so a restarted agent rebuilds it from the API state. The
//! rules stay when the agent stops, so running pods keep their services.

pub mod host_ports;

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::Resource;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use strata_client::events::EventType;
use strata_net::services::{self, Endpoint, Protocol, ProxyConfig, Ruleset, ServicePort};

use crate::Context;

/// How long changes are gathered before the table is rebuilt.
const SETTLE: Duration = Duration::from_millis(100);
/// How soon a failed rebuild is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// The nftables table of the node whose bridge is `bridge`.
pub fn table_name(bridge: &str) -> String {
    if bridge == crate::network::DEFAULT_BRIDGE {
        "strata".into()
    } else {
        format!("strata_{bridge}")
    }
}

/// Runs the proxy until the future is dropped.
pub async fn run(ctx: Arc<Context>) {
    let Some(network) = ctx.network.get() else {
        return;
    };
    if let Err(err) = network.route_to_bridge(ctx.options.service_cidr).await {
        tracing::warn!(error = %crate::containers::monitor::one_line(&err), "cannot route the service range onto the bridge");
    }
    let config = ProxyConfig {
        table: table_name(network.bridge()),
        bridge: network.bridge().to_string(),
        cluster_cidr: ctx.options.cluster_cidr,
        node_link: node_link(&ctx.options.node_ip).await,
    };
    let gateway = network.gateway();
    let dns = crate::cluster_dns::start(gateway, &ctx.options).await;
    let _dns_server = dns
        .as_ref()
        .map(|(_, task)| crate::AbortOnDrop(task.abort_handle()));
    let (services, service_writer) = reflector::store::<Service>();
    let (endpoints, endpoints_writer) = reflector::store::<Endpoints>();
    let (pods, pods_writer) = reflector::store::<Pod>();
    let service_events = reflected(&ctx, watcher::Config::default(), service_writer);
    let endpoint_events = reflected(&ctx, watcher::Config::default(), endpoints_writer);
    let pod_events = reflected(
        &ctx,
        watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.options.node_name)),
        pods_writer,
    );
    // The watches fill the caches only while polled: a task of their own drives them and
    // says when something changed.
    let (changed, mut changes) = tokio::sync::mpsc::channel::<()>(1);
    let driver = crate::AbortOnDrop::of(tokio::spawn(async move {
        let mut events = std::pin::pin!(futures_util::stream::select(
            futures_util::stream::select(service_events, endpoint_events),
            pod_events
        ));
        while events.next().await.is_some() {
            let _ = changed.try_send(());
        }
    }));
    let _ = services.wait_until_ready().await;
    let _ = endpoints.wait_until_ready().await;
    let _ = pods.wait_until_ready().await;
    let mut applied: Option<Ruleset> = None;
    let mut reported = HashSet::new();
    loop {
        let mut ports = service_ports(&services, &endpoints);
        if let Some((records, _)) = &dns {
            records.replace(crate::cluster_dns::records_of(&services, &endpoints));
            ports.extend(crate::cluster_dns::dns_rules(
                ctx.options.cluster_dns,
                gateway,
            ));
        }
        let local_pods = pods.state();
        let (host_ports, conflicts) = host_ports::host_ports_of(local_pods.iter().map(Arc::as_ref));
        report_conflicts(&ctx, conflicts, &mut reported).await;
        let ruleset = Ruleset::new(&config, &ports, &host_ports);
        let script = match &applied {
            Some(previous) => ruleset.update_from(previous),
            None => ruleset.script(),
        };
        if !script.is_empty() {
            let written = tokio::task::spawn_blocking(move || services::apply(&script)).await;
            match written {
                Ok(Ok(())) => applied = Some(ruleset),
                Ok(Err(err)) => {
                    // The next try rewrites the whole table, whatever the kernel holds.
                    applied = None;
                    tracing::warn!(error = %err, "cannot write the service rules");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
                Err(err) => {
                    applied = None;
                    tracing::warn!(error = %err, "the service rules task failed");
                }
            }
        }
        if changes.recv().await.is_none() {
            break;
        }
        // Gather the rest of a burst before rebuilding.
        tokio::time::sleep(SETTLE).await;
        while changes.try_recv().is_ok() {}
    }
    drop(driver);
}

/// A watch of every `K` (matching `config`) that keeps `writer`'s cache; yields once per
/// event.
fn reflected<K>(
    ctx: &Context,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
) -> impl futures_util::Stream<Item = ()> + Send + use<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    watcher(Api::<K>::all(ctx.client.clone()), config)
        .default_backoff()
        .reflect(writer)
        .map(|_| ())
}

/// A warning event on each pod whose host port lost to an older pod's, once per claim.
async fn report_conflicts(
    ctx: &Context,
    conflicts: Vec<host_ports::Conflict>,
    reported: &mut HashSet<(String, String)>,
) {
    for conflict in conflicts {
        let key = (
            conflict.pod.metadata.uid.clone().unwrap_or_default(),
            conflict.message.clone(),
        );
        if reported.insert(key) {
            ctx.recorder
                .publish(
                    &conflict.pod.object_ref(&()),
                    EventType::Warning,
                    "HostPortConflict",
                    &conflict.message,
                )
                .await;
        }
    }
}

/// The interface of the node's address, made to forward (pods of other nodes come in
/// there); `None` for loopback or when it cannot be found.
async fn node_link(node_ip: &str) -> Option<String> {
    let address: Ipv4Addr = node_ip
        .parse()
        .ok()
        .filter(|ip: &Ipv4Addr| !ip.is_loopback())?;
    match strata_net::routes::enable_forwarding_on(address).await {
        Ok(link) => link,
        Err(err) => {
            tracing::warn!(error = %err, "cannot let the node's interface forward to pods");
            None
        }
    }
}

/// Every service port with a cluster IP or node port, with its ready endpoints.
fn service_ports(services: &Store<Service>, endpoints: &Store<Endpoints>) -> Vec<ServicePort> {
    let endpoints = by_service(endpoints);
    services
        .state()
        .iter()
        .flat_map(|service| {
            let key = (service.namespace().unwrap_or_default(), service.name_any());
            ports_of(service, endpoints.get(&key).map(Arc::as_ref))
        })
        .collect()
}

/// The cached Endpoints by `(namespace, name)` of their Service (shared with the DNS
/// records).
pub(crate) fn by_service(
    endpoints: &Store<Endpoints>,
) -> BTreeMap<(String, String), Arc<Endpoints>> {
    endpoints
        .state()
        .into_iter()
        .map(|e| ((e.namespace().unwrap_or_default(), e.name_any()), e))
        .collect()
}

/// The ports of one service, with the ready addresses of its Endpoints that serve them.
pub fn ports_of(service: &Service, endpoints: Option<&Endpoints>) -> Vec<ServicePort> {
    let Some(spec) = service.spec.as_ref() else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let cluster_ip = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    // Kubernetes' default affinity timeout: three hours.
    let affinity_seconds = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(10_800)
    });
    spec.ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let protocol = Protocol::parse(port.protocol.as_deref().unwrap_or("TCP"))?;
            let number = u16::try_from(port.port).ok()?;
            let node_port = port
                .node_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0);
            if cluster_ip.is_none() && node_port.is_none() {
                return None;
            }
            let port_name = port.name.clone().unwrap_or_default();
            let serving = endpoints
                .and_then(|e| e.subsets.as_ref())
                .into_iter()
                .flatten()
                .flat_map(|subset| {
                    let target = subset.ports.iter().flatten().find(|p| {
                        p.name.clone().unwrap_or_default() == port_name
                            && Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))
                                == Some(protocol)
                    });
                    let target = target.and_then(|p| u16::try_from(p.port).ok());
                    subset
                        .addresses
                        .iter()
                        .flatten()
                        .filter_map(move |address| {
                            Some(Endpoint {
                                ip: address.ip.parse().ok()?,
                                port: target?,
                            })
                        })
                })
                .collect();
            Some(ServicePort {
                name: format!(
                    "{namespace}/{name}:{}",
                    if port_name.is_empty() {
                        number.to_string()
                    } else {
                        port_name
                    }
                ),
                cluster_ip,
                port: number,
                protocol,
                node_port,
                endpoints: serving,
                affinity_seconds,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_ip_affinity_carries_its_timeout() {
        let affinity = |spec: serde_json::Value| {
            let service: Service = serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "shop"}, "spec": spec}))
            .unwrap();
            let endpoints: Endpoints = serde_json::from_value(json!({
                "metadata": {"name": "web", "namespace": "shop"},
                "subsets": [{"addresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 8080}]}]}))
            .unwrap();
            ports_of(&service, Some(&endpoints))[0].affinity_seconds
        };
        let port = json!([{"port": 80}]);
        let ip = "10.43.0.20";
        assert_eq!(affinity(json!({"ports": port, "clusterIP": ip})), None);
        assert_eq!(
            affinity(json!({"ports": port, "clusterIP": ip, "sessionAffinity": "ClientIP"})),
            Some(10_800)
        );
        assert_eq!(
            affinity(
                json!({"ports": port, "clusterIP": ip, "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 30}}})
            ),
            Some(30)
        );
    }

    #[test]
    fn ports_pair_with_the_endpoint_ports_of_the_same_name() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.20", "ports": [
                {"name": "http", "port": 80, "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP"}]}}))
        .unwrap();
        let endpoints: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "subsets": [{"addresses": [{"ip": "10.42.0.5"}], "notReadyAddresses": [{"ip": "10.42.0.9"}],
                         "ports": [{"name": "http", "port": 8080}, {"name": "dns", "port": 5353, "protocol": "UDP"}]}]})).unwrap();
        let ports = ports_of(&service, Some(&endpoints));
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].name, "shop/web:http");
        assert_eq!(ports[0].node_port, Some(30080));
        assert_eq!(
            ports[0].endpoints,
            vec![Endpoint {
                ip: "10.42.0.5".parse().unwrap(),
                port: 8080
            }]
        );
        assert_eq!(ports[1].protocol, Protocol::Udp);
        assert_eq!(ports[1].endpoints[0].port, 5353);
    }

    #[test]
    fn headless_external_and_unallocated_services_get_no_rules() {
        let headless: Service = serde_json::from_value(json!({"metadata": {"name": "h"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}))
        .unwrap();
        assert!(ports_of(&headless, None).is_empty());
        let external: Service = serde_json::from_value(json!({"metadata": {"name": "x"},
            "spec": {"type": "ExternalName", "externalName": "db.example", "ports": [{"port": 80}]}})).unwrap();
        assert!(ports_of(&external, None).is_empty());
        let no_endpoints: Service = serde_json::from_value(json!({"metadata": {"name": "e"},
            "spec": {"clusterIP": "10.43.0.9", "ports": [{"port": 80}]}}))
        .unwrap();
        let ports = ports_of(&no_endpoints, None);
        assert_eq!(ports.len(), 1);
        assert!(ports[0].endpoints.is_empty());
    }
}
