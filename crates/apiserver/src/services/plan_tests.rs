#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;

fn pools() -> Pools {
    Pools::new(ServiceCidr::default(), NodePortRange::default())
}

/// A Service as admission leaves it (type defaulted, protocols set).
fn service(spec: Value) -> Service {
    let mut spec = spec;
    if spec["type"].is_null() {
        spec["type"] = json!("ClusterIP");
    }
    if spec["ports"].is_null() {
        spec["ports"] = json!([{"port": 80, "protocol": "TCP"}]);
    }
    serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": spec})).unwrap()
}

fn spec(service: &Service) -> &ServiceSpec {
    service.spec.as_ref().unwrap()
}

fn node_ports_of(service: &Service) -> Vec<Option<i32>> {
    node_ports(spec(service))
}

fn create(pools: &mut Pools, body: Value) -> Result<(Service, Change), AllocError> {
    let mut new = service(body);
    allocate(pools, None, &mut new).map(|change| (new, change))
}

fn invalid(result: Result<(Service, Change), AllocError>) -> FieldError {
    match result {
        Err(AllocError::Invalid(mut errors)) => errors.remove(0),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn dynamic_ips_come_from_above_the_reserved_band_and_differ() {
    let mut pools = pools();
    let (a, change) = create(&mut pools, json!({})).unwrap();
    assert_eq!(spec(&a).cluster_ip.as_deref(), Some("10.43.0.16"));
    assert_eq!(spec(&a).cluster_ips, Some(vec!["10.43.0.16".to_string()]));
    assert_eq!(change.reserved.ip, Some(Ipv4Addr::new(10, 43, 0, 16)));
    assert!(change.released.is_empty());
    let (b, _) = create(&mut pools, json!({})).unwrap();
    assert_eq!(spec(&b).cluster_ip.as_deref(), Some("10.43.0.17"));
    assert_eq!(pools.used(), (2, 0));
}

#[test]
fn an_explicit_ip_is_checked_against_the_range_and_the_pool() {
    let mut pools = pools();
    // The reserved band is open to explicit requests: cluster DNS.
    let (dns, _) = create(&mut pools, json!({"clusterIP": "10.43.0.10"})).unwrap();
    assert_eq!(spec(&dns).cluster_ips, Some(vec!["10.43.0.10".to_string()]));

    let taken = invalid(create(&mut pools, json!({"clusterIP": "10.43.0.10"})));
    assert_eq!(taken.field, "spec.clusterIPs");
    assert_eq!(
        taken.detail,
        "failed to allocate IP 10.43.0.10: provided IP is already allocated"
    );
    for outside in ["10.44.0.1", "10.43.0.0", "10.43.255.255"] {
        let err = invalid(create(&mut pools, json!({"clusterIP": outside})));
        assert_eq!(err.field, "spec.clusterIPs");
        assert_eq!(
            err.detail,
            format!(
                "failed to allocate IP {outside}: the provided IP ({outside}) is not in the valid range. The range of valid IPs is 10.43.0.0/16"
            )
        );
    }
    let err = invalid(create(&mut pools, json!({"clusterIP": "bogus"})));
    assert_eq!(err.field, "spec.clusterIPs[0]");
    let err = invalid(create(&mut pools, json!({"clusterIP": "fd00::1"})));
    assert_eq!(err.detail, "IPv6 is not configured on this cluster");
    // clusterIPs alone is enough; a disagreeing pair is not.
    let (c, _) = create(&mut pools, json!({"clusterIPs": ["10.43.7.7"]})).unwrap();
    assert_eq!(spec(&c).cluster_ip.as_deref(), Some("10.43.7.7"));
    let err = invalid(create(
        &mut pools,
        json!({"clusterIP": "10.43.7.8", "clusterIPs": ["10.43.7.9"]}),
    ));
    assert_eq!(err.field, "spec.clusterIPs[0]");
    assert_eq!(pools.used(), (2, 0));
}

#[test]
fn headless_and_external_name_services_get_no_ip() {
    let mut pools = pools();
    let (headless, change) = create(&mut pools, json!({"clusterIP": "None"})).unwrap();
    assert_eq!(spec(&headless).cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec(&headless).cluster_ips, Some(vec!["None".to_string()]));
    assert!(change.reserved.is_empty());
    let (external, _) = create(
        &mut pools,
        json!({"type": "ExternalName", "externalName": "example.com", "ports": []}),
    )
    .unwrap();
    assert_eq!(spec(&external).cluster_ip, None);
    assert_eq!(pools.used(), (0, 0));
    let err = invalid(create(
        &mut pools,
        json!({"type": "NodePort", "clusterIP": "None"}),
    ));
    assert_eq!(err.detail, "may not be set to 'None' for NodePort services");
}

#[test]
fn node_ports_are_allocated_in_range_and_never_twice() {
    let mut pools = pools();
    let (a, change) = create(
        &mut pools,
        json!({"type": "NodePort", "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            {"name": "web", "port": 80, "protocol": "TCP", "nodePort": 30080},
        ]}),
    )
    .unwrap();
    // 53/UDP and 53/TCP share one node port.
    assert_eq!(node_ports_of(&a), [Some(30000), Some(30000), Some(30080)]);
    assert_eq!(change.reserved.node_ports, BTreeSet::from([30000, 30080]));

    let err = invalid(create(
        &mut pools,
        json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
    ));
    assert_eq!(err.field, "spec.ports[0].nodePort");
    assert_eq!(err.detail, "provided port is already allocated");
    let err = invalid(create(
        &mut pools,
        json!({"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 8080}]}),
    ));
    assert_eq!(
        err.detail,
        "provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    // The failed creates gave back the cluster IPs they had taken.
    assert_eq!(pools.used(), (1, 2));
}

#[test]
fn a_cluster_ip_service_may_not_carry_node_ports() {
    let mut pools = pools();
    let err = invalid(create(
        &mut pools,
        json!({"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
    ));
    assert_eq!(err.field, "spec.ports[0].nodePort");
    assert_eq!(err.detail, "may not be used when `type` is 'ClusterIP'");
}

#[test]
fn a_load_balancer_may_opt_out_of_node_ports() {
    let mut pools = pools();
    let (lb, _) = create(
        &mut pools,
        json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false}),
    )
    .unwrap();
    assert_eq!(node_ports_of(&lb), [None]);
}

#[test]
fn an_update_keeps_what_the_client_left_out_and_frees_what_the_type_drops() {
    let mut pools = pools();
    let (old, _) = create(&mut pools, json!({"type": "NodePort"})).unwrap();
    assert_eq!(node_ports_of(&old), [Some(30000)]);

    // kubectl replace without the allocated fields: they stay, nothing moves.
    let mut same = service(json!({"type": "NodePort"}));
    let change = allocate(&mut pools, Some(&old), &mut same).unwrap();
    assert_eq!(spec(&same).cluster_ip, spec(&old).cluster_ip);
    assert_eq!(node_ports_of(&same), [Some(30000)]);
    assert_eq!(change, Change::default());

    // NodePort -> ClusterIP (a patch of the type): the node port goes.
    let mut cluster_ip = old.clone();
    cluster_ip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
    let change = allocate(&mut pools, Some(&old), &mut cluster_ip).unwrap();
    assert_eq!(node_ports_of(&cluster_ip), [None]);
    assert_eq!(change.released.node_ports, BTreeSet::from([30000]));
    assert_eq!(change.released.ip, None);
    pools.release(&change.released);

    // ClusterIP -> NodePort: a new node port (the rotating cursor moves on).
    let mut node_port = cluster_ip.clone();
    node_port.spec.as_mut().unwrap().type_ = Some("NodePort".into());
    let change = allocate(&mut pools, Some(&cluster_ip), &mut node_port).unwrap();
    assert_eq!(node_ports_of(&node_port), [Some(30001)]);
    assert_eq!(change.reserved.node_ports, BTreeSet::from([30001]));

    // -> ExternalName: the cluster IP and node port are given back.
    let mut external = node_port.clone();
    let external_spec = external.spec.as_mut().unwrap();
    external_spec.type_ = Some("ExternalName".into());
    external_spec.external_name = Some("example.com".into());
    let change = allocate(&mut pools, Some(&node_port), &mut external).unwrap();
    assert_eq!(spec(&external).cluster_ip, None);
    assert_eq!(spec(&external).ip_families, None);
    assert_eq!(change.released, claims(&node_port));
}

#[test]
fn pools_report_claims_marked_twice() {
    let mut pools = pools();
    let (a, _) = create(&mut pools, json!({"type": "NodePort"})).unwrap();
    let mut fresh = Pools::new(ServiceCidr::default(), NodePortRange::default());
    assert!(fresh.mark(&claims(&a)).is_empty());
    assert_eq!(fresh.mark(&claims(&a)), claims(&a));
    assert_eq!(fresh.used(), pools.used());
    fresh.release(&claims(&a));
    assert_eq!(fresh.used(), (0, 0));
}
