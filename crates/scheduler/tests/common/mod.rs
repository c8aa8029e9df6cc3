//! Shared setup of the scheduler's integration tests: a real in-process API server, the
//! scheduler running against it, Node objects as an agent would register them, and polling
//! with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use strata_scheduler::{SchedulerOptions, run};
use strata_testkit::cluster::TestApiServer;

/// How long any expectation may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A running API server and scheduler; the scheduler stops on drop.
pub struct Cluster {
    pub server: TestApiServer,
    pub client: kube::Client,
    scheduler: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.scheduler.abort();
    }
}

/// Starts the API server and the scheduler.
pub async fn start() -> Cluster {
    let server = TestApiServer::start().await;
    let client = server.admin_client().await;
    let for_scheduler = client.clone();
    let scheduler = tokio::spawn(async move {
        if let Err(e) = run(for_scheduler, SchedulerOptions::default()).await {
            panic!("scheduler stopped: {e}");
        }
    });
    Cluster {
        server,
        client,
        scheduler,
    }
}

/// A Ready node with `cpu`, `memory` and `pods` allocatable, and extra fields merged in.
pub fn node(name: &str, cpu: &str, memory: &str, pods: u32) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": pods.to_string()},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods.to_string()},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
        }
    })
}

/// A pod with one container requesting `cpu` and `memory`.
pub fn pod(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
    })
}

/// Creates a Node from JSON.
pub async fn create_node(client: &kube::Client, node: Value) {
    let node: Node = serde_json::from_value(node).unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
}

/// Creates a Pod in `default` from JSON.
pub async fn create_pod(client: &kube::Client, pod: Value) {
    let pod: Pod = serde_json::from_value(pod).unwrap();
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

/// Polls `check` until it returns `Some`, failing the test after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until pod `name` is bound; returns its node.
pub async fn bound_node(client: &kube::Client, name: &str) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    eventually(&format!("{name} bound"), || async {
        let pod = pods.get(name).await.ok()?;
        pod.spec?.node_name.filter(|n| !n.is_empty())
    })
    .await
}

/// Waits until pod `name` has `PodScheduled=False`; returns (reason, message).
pub async fn unschedulable(client: &kube::Client, name: &str) -> (String, String) {
    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    eventually(&format!("{name} marked unschedulable"), || async {
        let pod = pods.get(name).await.ok()?;
        let condition = pod
            .status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
        Some((condition.reason?, condition.message?))
    })
    .await
}

/// Waits for an event with `reason` about pod `name`; returns (type, message).
pub async fn event(client: &kube::Client, name: &str, reason: &str) -> (String, String) {
    let events = Api::<Event>::namespaced(client.clone(), "default");
    eventually(&format!("{reason} event for {name}"), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find_map(|e| {
            (e.involved_object.name.as_deref() == Some(name) && e.reason.as_deref() == Some(reason))
                .then(|| (e.type_.unwrap_or_default(), e.message.unwrap_or_default()))
        })
    })
    .await
}
