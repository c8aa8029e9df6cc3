//! The node IPAM controller against a real API server: new nodes get distinct pod
//! subnets from the cluster range, a deleted node's subnet is handed out again, and an
//! exhausted range leaves the node without one and says so in an event.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::{cluster_with, eventually};
use k8s_openapi::api::core::v1::{Event, Node};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use strata_controllers::ControllerOptions;
use strata_controllers::node_ipam::PodRange;

async fn create_node(nodes: &Api<Node>, name: &str) {
    let node: Node = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
}

async fn subnet_of(nodes: &Api<Node>, name: &str) -> String {
    eventually(&format!("node {name} to get a pod subnet"), || async {
        let node = nodes.get(name).await.ok()?;
        let spec = node.spec?;
        let cidr = spec.pod_cidr?;
        assert_eq!(spec.pod_cidrs, Some(vec![cidr.clone()]));
        Some(cidr)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_get_distinct_subnets_and_freed_ones_come_back() {
    let options = ControllerOptions {
        pod_range: PodRange {
            cluster: "10.60.0.0/22".parse().unwrap(),
            node_prefix: 24,
        },
        ..ControllerOptions::default()
    };
    let cluster = cluster_with(options).await;
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    for name in ["a", "b", "c"] {
        create_node(&nodes, name).await;
    }
    let mut subnets = HashSet::new();
    for name in ["a", "b", "c"] {
        let subnet = subnet_of(&nodes, name).await;
        assert!(
            subnet.starts_with("10.60.") && subnet.ends_with(".0/24"),
            "{subnet}"
        );
        assert!(subnets.insert(subnet.clone()), "{subnet} given twice");
    }
    let freed = subnet_of(&nodes, "b").await;
    nodes.delete("b", &DeleteParams::default()).await.unwrap();
    create_node(&nodes, "d").await;
    create_node(&nodes, "e").await;
    let d = subnet_of(&nodes, "d").await;
    let e = subnet_of(&nodes, "e").await;
    assert_ne!(d, e);
    assert!(
        [&d, &e].contains(&&freed),
        "the freed {freed} is reused by d ({d}) or e ({e})"
    );

    // Four /24s in a /22, all held: the next node waits and is told why.
    create_node(&nodes, "f").await;
    let events: Api<Event> = Api::namespaced(cluster.client.clone(), "default");
    let message = eventually("a CIDRNotAvailable event for f", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("CIDRNotAvailable")
                    && e.involved_object.name.as_deref() == Some("f")
            })
            .and_then(|e| e.message)
    })
    .await;
    assert!(message.contains("10.60.0.0/22"), "{message}");
    assert_eq!(
        nodes.get("f").await.unwrap().spec.and_then(|s| s.pod_cidr),
        None
    );
    // A node leaves; f gets its subnet.
    nodes.delete("a", &DeleteParams::default()).await.unwrap();
    let f = subnet_of(&nodes, "f").await;
    assert!(f.starts_with("10.60."), "{f}");
}
