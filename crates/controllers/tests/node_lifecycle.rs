//! The node lifecycle controller against a real API server; the tests play a node
//! agent that renews its Lease and then stops.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{cluster_with, eventually};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use strata_controllers::ControllerOptions;

fn options() -> ControllerOptions {
    ControllerOptions {
        node_grace_period: Duration::from_secs(2),
        ..ControllerOptions::default()
    }
}

async fn create_ready_node(client: &kube::Client, name: &str) {
    let now = Timestamp::now().to_string();
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "lastHeartbeatTime": now, "lastTransitionTime": now}]},
    }))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
}

/// Plays the agent's heartbeat: renews the node's Lease every 200 ms while `alive`.
fn heartbeat(
    client: kube::Client,
    name: &str,
    alive: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let name = name.to_string();
    tokio::spawn(async move {
        let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        loop {
            if alive.load(Ordering::SeqCst) {
                let spec = json!({"holderIdentity": name, "leaseDurationSeconds": 40,
                                  "renewTime": MicroTime(Timestamp::now())});
                if leases.get_opt(&name).await.unwrap().is_some() {
                    let patch = Patch::Merge(json!({"spec": spec}));
                    leases
                        .patch(&name, &PatchParams::default(), &patch)
                        .await
                        .unwrap();
                } else {
                    let lease: Lease =
                        serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))
                            .unwrap();
                    leases.create(&PostParams::default(), &lease).await.unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// A pod bound to `node` with `tolerations` (the API adds its 300 s defaults).
async fn bound_pod(client: &kube::Client, name: &str, node: &str, tolerations: Value) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "tolerations": tolerations,
                 "containers": [{"name": "main", "image": "localhost/busybox:latest"}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

/// True when the pod is being deleted or gone.
async fn evicted(client: &kube::Client, name: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.get_opt(name)
        .await
        .unwrap()
        .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
}

fn taints(node: &Node) -> Vec<(String, String)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.effect))
        .collect()
}

async fn events_with_reason(client: &kube::Client, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.unwrap().items;
    list.into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_node_is_tainted_unreachable_and_its_pods_evicted_by_toleration() {
    let c = cluster_with(options()).await;
    let agent = c.server.node_client("n1").await;
    create_ready_node(&c.client, "n1").await;
    let alive = Arc::new(AtomicBool::new(true));
    let beating = heartbeat(agent.clone(), "n1", alive.clone());
    let unreachable = |seconds: Value| {
        json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": seconds}])
    };
    bound_pod(&c.client, "at-once", "n1", unreachable(json!(0))).await;
    bound_pod(&c.client, "after-a-second", "n1", unreachable(json!(1))).await;
    bound_pod(&c.client, "forever", "n1", unreachable(Value::Null)).await;
    bound_pod(&c.client, "defaults", "n1", json!([])).await;
    // The agent reported "forever" Ready.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let ready_status = json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(
        "forever",
        &PatchParams::default(),
        &Patch::Merge(ready_status),
    )
    .await
    .unwrap();
    let nodes: Api<Node> = Api::all(c.client.clone());
    // While the lease is renewed, the node stays Ready and untainted.
    eventually("the lease seen", || async {
        let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-node-lease");
        leases.get_opt("n1").await.unwrap().map(|_| ())
    })
    .await;
    assert!(taints(&nodes.get("n1").await.unwrap()).is_empty());

    alive.store(false, Ordering::SeqCst);
    let node = eventually("the node marked unreachable", || async {
        let node = nodes.get("n1").await.unwrap();
        (taints(&node).len() == 2).then_some(node)
    })
    .await;
    let mut keys = taints(&node);
    keys.sort();
    let key = "node.kubernetes.io/unreachable".to_string();
    assert_eq!(
        keys,
        [
            (key.clone(), "NoExecute".into()),
            (key, "NoSchedule".into())
        ]
    );
    let conditions = node.status.unwrap().conditions.unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("Unknown", Some("NodeStatusUnknown"))
    );
    // Its Ready pods turn not ready, so their endpoints stop taking traffic.
    let reason = eventually("the pod marked not ready", || async {
        let pod = pods.get("forever").await.unwrap();
        let ready = pod
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.status == "False").then_some(ready.reason)
    })
    .await;
    assert_eq!(reason.as_deref(), Some("NodeNotReady"));
    eventually("the pod tolerating 0 s evicted", || async {
        evicted(&c.client, "at-once").await.then_some(())
    })
    .await;
    eventually("the pod tolerating 1 s evicted", || async {
        evicted(&c.client, "after-a-second").await.then_some(())
    })
    .await;
    assert!(!evicted(&c.client, "forever").await);
    assert!(
        !evicted(&c.client, "defaults").await,
        "300 s have not passed"
    );
    assert!(
        !events_with_reason(&c.client, "NodeNotReady")
            .await
            .is_empty()
    );
    let evictions = events_with_reason(&c.client, "TaintManagerEviction").await;
    assert!(
        evictions
            .iter()
            .any(|e| e.message.as_deref() == Some("Marking for deletion Pod default/at-once")),
        "{evictions:?}"
    );

    // The agent comes back: lease renewed, Ready reported; the taints go.
    alive.store(true, Ordering::SeqCst);
    let now = Timestamp::now().to_string();
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
        "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    Api::<Node>::all(agent)
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(ready))
        .await
        .unwrap();
    eventually("the taints removed", || async {
        taints(&nodes.get("n1").await.unwrap())
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(!evicted(&c.client, "forever").await);
    beating.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_no_execute_taint_evicts_pods_that_do_not_tolerate_it() {
    let c = cluster_with(options()).await;
    let agent = c.server.node_client("n2").await;
    create_ready_node(&c.client, "n2").await;
    let beating = heartbeat(agent, "n2", Arc::new(AtomicBool::new(true)));
    bound_pod(&c.client, "plain", "n2", json!([])).await;
    let gpu = json!([{"key": "gpu", "operator": "Exists", "effect": "NoExecute"}]);
    bound_pod(&c.client, "gpu-job", "n2", gpu).await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let taint = json!({"spec": {"taints": [{"key": "gpu", "effect": "NoExecute"}]}});
    nodes
        .patch("n2", &PatchParams::default(), &Patch::Merge(taint))
        .await
        .unwrap();
    eventually("the untolerating pod evicted", || async {
        evicted(&c.client, "plain").await.then_some(())
    })
    .await;
    assert!(!evicted(&c.client, "gpu-job").await);
    assert_eq!(
        taints(&nodes.get("n2").await.unwrap()).len(),
        1,
        "the node stays Ready"
    );
    beating.abort();
}
