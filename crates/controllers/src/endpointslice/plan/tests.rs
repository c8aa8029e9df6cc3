//! Unit tests of the slice plan.

use super::*;
use serde_json::{Value, json};

fn service(spec: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
                     "labels": {"tier": "front"}},
        "spec": spec,
    }))
    .unwrap()
}

fn web() -> Service {
    service(json!({"selector": {"app": "web"},
        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}))
}

fn pod(name: &str, ip: &str, ready: bool, port: i32) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c",
            "ports": [{"name": "http", "containerPort": port}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
    }))
    .unwrap()
}

fn terminating(mut pod: Pod) -> Pod {
    pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    pod
}

fn created(changes: &[Change]) -> Vec<&EndpointSlice> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Create(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// A created slice as the API server would store it, named `name`.
fn stored(mut slice: EndpointSlice, name: &str) -> EndpointSlice {
    slice.metadata.name = Some(name.into());
    slice.metadata.resource_version = Some("1".into());
    slice
}

fn conditions(e: &Endpoint) -> (bool, bool, bool) {
    let c = e.conditions.clone().unwrap();
    (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
}

#[test]
fn one_slice_with_an_endpoint_per_pod_and_kubernetes_conditions() {
    let svc = web();
    let (a, b, c) = (
        pod("a", "10.42.0.5", true, 8080),
        pod("b", "10.42.0.6", false, 8080),
        terminating(pod("c", "10.42.0.7", true, 8080)),
    );
    let mut other = pod("x", "10.42.0.9", true, 8080);
    other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
    let changes = changes(&svc, &[&c, &b, &a, &other], &[]);
    let slices = created(&changes);
    assert_eq!(slices.len(), 1, "{changes:?}");
    let slice = slices[0];
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(slice.address_type, "IPv4");
    let labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(labels[SERVICE_NAME_LABEL], "web");
    assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
    assert_eq!(labels["tier"], "front");
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Service", "svc-uid")
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    let ports = slice.ports.as_ref().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(
        (
            ports[0].name.as_deref(),
            ports[0].port,
            ports[0].protocol.as_deref()
        ),
        (Some("http"), Some(8080), Some("TCP"))
    );
    let e = &slice.endpoints;
    assert_eq!(e.len(), 3);
    assert_eq!(e[0].addresses, ["10.42.0.5"]);
    assert_eq!(conditions(&e[0]), (true, true, false));
    assert_eq!(conditions(&e[1]), (false, false, false), "not ready");
    assert_eq!(conditions(&e[2]), (false, true, true), "terminating");
    assert_eq!(e[0].node_name.as_deref(), Some("n1"));
    let target = e[0].target_ref.as_ref().unwrap();
    assert_eq!(
        (
            target.kind.as_deref(),
            target.name.as_deref(),
            target.uid.as_deref()
        ),
        (Some("Pod"), Some("a"), Some("uid-a"))
    );
}

#[test]
fn publish_not_ready_makes_every_endpoint_ready() {
    let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}],
        "publishNotReadyAddresses": true}));
    let b = pod("b", "10.42.0.6", false, 8080);
    let slices = changes(&svc, &[&b], &[]);
    assert_eq!(
        conditions(&created(&slices)[0].endpoints[0]),
        (true, false, false)
    );
}

#[test]
fn pods_with_different_ports_get_different_slices() {
    let svc = web();
    let a = pod("a", "10.42.0.5", true, 8080);
    let b = pod("b", "10.42.0.6", true, 9090);
    let changes = changes(&svc, &[&a, &b], &[]);
    let slices = created(&changes);
    assert_eq!(slices.len(), 2);
    let port = |s: &EndpointSlice| s.ports.as_ref().unwrap()[0].port;
    assert_eq!((port(slices[0]), port(slices[1])), (Some(8080), Some(9090)));
    assert_eq!(slices[1].endpoints[0].addresses, ["10.42.0.6"]);
}

#[test]
fn a_service_selecting_nothing_keeps_an_empty_placeholder() {
    let svc = web();
    let changes_now = changes(&svc, &[], &[]);
    let slices = created(&changes_now);
    assert_eq!(slices.len(), 1);
    assert!(slices[0].endpoints.is_empty());
    assert_eq!(slices[0].ports.as_deref(), Some(&[][..]));
    // Once stored, nothing more is to be done.
    let placeholder = stored(slices[0].clone(), "web-abcde");
    assert!(changes(&svc, &[], &[&placeholder]).is_empty());
    // A pod arrives: the placeholder is rewritten, keeping its name.
    let a = pod("a", "10.42.0.5", true, 8080);
    let next = changes(&svc, &[&a], &[&placeholder]);
    assert_eq!(next.len(), 1, "{next:?}");
    let Change::Update(updated) = &next[0] else {
        panic!("{next:?}");
    };
    assert_eq!(updated.metadata.name.as_deref(), Some("web-abcde"));
    assert_eq!(updated.metadata.resource_version.as_deref(), Some("1"));
    assert_eq!(updated.endpoints.len(), 1);
}

#[test]
fn up_to_date_slices_are_left_and_stale_or_surplus_ones_fixed() {
    let svc = web();
    let a = pod("a", "10.42.0.5", true, 8080);
    let first = changes(&svc, &[&a], &[]);
    let slice = stored(created(&first)[0].clone(), "web-abcde");
    assert!(changes(&svc, &[&a], &[&slice]).is_empty());

    // Readiness changes: one update.
    let a_unready = pod("a", "10.42.0.5", false, 8080);
    let update = changes(&svc, &[&a_unready], &[&slice]);
    assert!(matches!(&update[..], [Change::Update(s)] if !conditions(&s.endpoints[0]).0));

    // A duplicate slice (e.g. a lost race) is deleted.
    let twin = stored(slice.clone(), "web-zzzzz");
    assert_eq!(
        changes(&svc, &[&a], &[&twin, &slice]),
        [Change::Delete("web-zzzzz".into())]
    );

    // Slices of a deleted namesake, of other services or managers are not this one's.
    let mut old = stored(slice.clone(), "web-old00");
    old.metadata.owner_references.as_mut().unwrap()[0].uid = "old-uid".into();
    let mut theirs = stored(slice.clone(), "web-mine0");
    theirs
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert(MANAGED_BY_LABEL.into(), "someone-else".into());
    assert!(!belongs_to(&old, &svc) && !belongs_to(&theirs, &svc));
    assert!(changes(&svc, &[&a], &[&slice, &old, &theirs]).is_empty());
}

#[test]
fn finished_pods_pods_without_ipv4_and_selectorless_services() {
    let svc = web();
    let mut done = pod("d", "10.42.0.8", false, 8080);
    done.status.as_mut().unwrap().phase = Some("Succeeded".into());
    let mut v6 = pod("v", "fd00::1", true, 8080);
    v6.status.as_mut().unwrap().pod_ips = None;
    let slices = changes(&svc, &[&done, &v6], &[]);
    assert!(created(&slices)[0].endpoints.is_empty(), "{slices:?}");
    // A pod lacking the named port still serves the service's other ports.
    let two = service(json!({"selector": {"app": "web"}, "ports": [
        {"name": "http", "port": 80, "targetPort": "http"},
        {"name": "metrics", "port": 9100, "targetPort": "metrics"}]}));
    let a = pod("a", "10.42.0.5", true, 8080);
    let slices = changes(&two, &[&a], &[]);
    let ports = created(&slices)[0].ports.clone().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("http"));
    let manual = service(json!({"ports": [{"port": 80}]}));
    let user_slice = stored(created(&changes(&svc, &[&a], &[]))[0].clone(), "x");
    assert!(changes(&manual, &[&a], &[&user_slice]).is_empty());
}

#[test]
fn more_than_a_slice_of_endpoints_is_split() {
    let svc = web();
    let pods: Vec<Pod> = (0..MAX_ENDPOINTS_PER_SLICE + 1)
        .map(|i| {
            pod(
                &format!("p{i}"),
                &format!("10.42.{}.{}", i / 250, i % 250 + 1),
                true,
                8080,
            )
        })
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    let changes = changes(&svc, &refs, &[]);
    let slices = created(&changes);
    assert_eq!(slices.len(), 2);
    assert_eq!(slices[0].endpoints.len(), MAX_ENDPOINTS_PER_SLICE);
    assert_eq!(slices[1].endpoints.len(), 1);
}

#[test]
fn headless_services_mark_their_slices() {
    let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None",
        "ports": [{"port": 80}]}));
    let mut a = pod("a", "10.42.0.5", true, 8080);
    if let Some(spec) = a.spec.as_mut() {
        spec.hostname = Some("a".into());
        spec.subdomain = Some("web".into());
    }
    let slices = changes(&svc, &[&a], &[]);
    let slice = created(&slices)[0];
    assert_eq!(slice.metadata.labels.as_ref().unwrap()[HEADLESS_LABEL], "");
    assert_eq!(slice.endpoints[0].hostname.as_deref(), Some("a"));
}
