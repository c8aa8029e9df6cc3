//! The scheduler against a real API server: Node objects carry allocatable and a Ready
//! condition, as an agent registers them; pods are created through the API and the tests
//! watch where (and whether) they get bound.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn binds_to_the_node_that_fits() {
    let c = start().await;
    create_node(&c.client, node("small", "1", "2Gi", 110)).await;
    create_node(&c.client, node("big", "4", "8Gi", 110)).await;
    create_pod(&c.client, pod("web-1", "2", "1Gi")).await;
    assert_eq!(bound_node(&c.client, "web-1").await, "big");
    let (kind, message) = event(&c.client, "web-1", "Scheduled").await;
    assert_eq!(kind, "Normal");
    assert_eq!(message, "Successfully assigned default/web-1 to big");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_too_big_waits_and_lands_when_a_bigger_node_joins() {
    let c = start().await;
    create_node(&c.client, node("node1", "2", "1Gi", 110)).await;
    let mut cp = node("cp", "4", "16Gi", 110);
    cp["spec"]["taints"] =
        json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]);
    create_node(&c.client, cp).await;
    create_pod(&c.client, pod("web-1", "500m", "2Gi")).await;
    let expected = "0/2 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }.";
    let (reason, message) = unschedulable(&c.client, "web-1").await;
    assert_eq!(
        (reason.as_str(), message.as_str()),
        ("Unschedulable", expected)
    );
    let (kind, message) = event(&c.client, "web-1", "FailedScheduling").await;
    assert_eq!((kind.as_str(), message.as_str()), ("Warning", expected));
    let pods = Api::<Pod>::namespaced(c.client.clone(), "default");
    let still = pods.get("web-1").await.unwrap();
    assert!(still.spec.unwrap().node_name.is_none(), "stays pending");

    create_node(&c.client, node("node2", "2", "4Gi", 110)).await;
    assert_eq!(bound_node(&c.client, "web-1").await, "node2");
}

#[tokio::test(flavor = "multi_thread")]
async fn taints_tolerations_node_selectors_and_readiness() {
    let c = start().await;
    let mut gpu = node("gpu", "4", "8Gi", 110);
    gpu["metadata"]["labels"]["accel"] = json!("gpu");
    gpu["spec"]["taints"] = json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
    create_node(&c.client, gpu).await;
    create_node(&c.client, node("plain", "4", "8Gi", 110)).await;
    let mut down = node("down", "64", "256Gi", 110);
    down["status"]["conditions"][0]["status"] = json!("False");
    create_node(&c.client, down).await;

    let mut picky = pod("picky", "100m", "64Mi");
    picky["spec"]["nodeSelector"] = json!({"accel": "gpu"});
    create_pod(&c.client, picky.clone()).await;
    let mut tolerant = picky.clone();
    tolerant["metadata"]["name"] = json!("tolerant");
    tolerant["spec"]["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    create_pod(&c.client, tolerant).await;
    for i in 0..3 {
        create_pod(&c.client, pod(&format!("plain-{i}"), "100m", "64Mi")).await;
    }

    assert_eq!(bound_node(&c.client, "tolerant").await, "gpu");
    for i in 0..3 {
        assert_eq!(
            bound_node(&c.client, &format!("plain-{i}")).await,
            "plain",
            "the gpu taint and the not-ready node keep plain pods off"
        );
    }
    let (_, message) = unschedulable(&c.client, "picky").await;
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint {dedicated: gpu}, \
         1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }."
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_of_a_replicaset_spread_over_nodes() {
    let c = start().await;
    for n in ["n1", "n2", "n3"] {
        create_node(&c.client, node(n, "8", "16Gi", 110)).await;
    }
    let rs: ReplicaSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .unwrap();
    let rs = Api::<ReplicaSet>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &rs)
        .await
        .unwrap();
    let uid = rs.metadata.uid.unwrap();
    for i in 0..6 {
        let mut p = pod(&format!("web-{i}"), "100m", "128Mi");
        p["metadata"]["labels"] = json!({"app": "web"});
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "web", "uid": uid, "controller": true}]);
        create_pod(&c.client, p).await;
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        *per_node
            .entry(bound_node(&c.client, &format!("web-{i}")).await)
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|&n| n == 2), "{per_node:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_pods_at_once_onto_room_for_forty() {
    let c = start().await;
    for n in 0..4 {
        create_node(&c.client, node(&format!("n{n}"), "1", "4Gi", 110)).await;
    }
    let creates = (0..50).map(|i| {
        let client = c.client.clone();
        async move { create_pod(&client, pod(&format!("p-{i:02}"), "100m", "64Mi")).await }
    });
    futures_util::future::join_all(creates).await;

    let pods = Api::<Pod>::namespaced(c.client.clone(), "default");
    let settled = eventually("40 bound and 10 unschedulable", || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        let bound = list
            .items
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
            .count();
        let refused = list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c.type_ == "PodScheduled" && c.status == "False")
                    })
                    && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none()
            })
            .count();
        (bound + refused == 50 && refused > 0).then_some(list.items)
    })
    .await;
    let mut per_node: HashMap<String, usize> = HashMap::new();
    let mut pending = 0;
    for p in &settled {
        match p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            Some(n) => *per_node.entry(n).or_default() += 1,
            None => pending += 1,
        }
    }
    assert_eq!(pending, 10, "{per_node:?}");
    assert!(
        per_node.values().all(|&n| n == 10),
        "no node overcommitted: {per_node:?}"
    );
    for p in settled
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
    {
        let (_, message) = unschedulable(&c.client, p.metadata.name.as_deref().unwrap()).await;
        assert_eq!(message, "0/4 nodes are available: 4 Insufficient cpu.");
    }
}
