//! The DaemonSet controller against a real API server (with the default scheduler in
//! one test); the tests play the kubelet by marking pods ready.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cluster, eventually, live_pods, mark_all_ready};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use strata_controllers::daemonset::placement::target_node;

async fn create_node(client: &kube::Client, name: &str, labels: Value, taints: Value) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        },
    }))
    .unwrap();
    Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
}

fn daemon_set(name: &str, strategy: Value, node_selector: Value) -> DaemonSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": strategy,
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": node_selector,
                         "containers": [{"name": "main", "image": "localhost/busybox:1"}]}},
        },
    }))
    .unwrap()
}

/// The nodes the live pods of `app` target, sorted.
async fn targets(client: &kube::Client, app: &str) -> Vec<String> {
    let mut nodes: Vec<String> = live_pods(client, &format!("app={app}"))
        .await
        .iter()
        .filter_map(|p| target_node(p).map(str::to_string))
        .collect();
    nodes.sort();
    nodes
}

async fn wait_targets(client: &kube::Client, app: &str, want: &[&str]) -> Vec<Pod> {
    eventually(&format!("pods of {app} on {want:?}"), || async {
        (targets(client, app).await == want).then_some(())
    })
    .await;
    live_pods(client, &format!("app={app}")).await
}

fn image(pod: &Pod) -> String {
    pod.spec.as_ref().unwrap().containers[0]
        .image
        .clone()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_pod_per_eligible_node_bound_by_the_scheduler() {
    let c = cluster().await;
    let scheduler_client = c.client.clone();
    let scheduler = tokio::spawn(async move {
        let _ = strata_scheduler::run(scheduler_client, Default::default()).await;
    });
    create_node(&c.client, "a", json!({"role": "worker"}), json!([])).await;
    let gpu = json!([{"key": "gpu", "effect": "NoSchedule"}]);
    create_node(&c.client, "b", json!({"role": "worker"}), gpu).await;
    let cordoned = json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]);
    create_node(&c.client, "c", json!({"role": "worker"}), cordoned).await;
    create_node(&c.client, "d", json!({"role": "db"}), json!([])).await;
    let sets: Api<DaemonSet> = Api::namespaced(c.client.clone(), "default");
    sets.create(
        &PostParams::default(),
        &daemon_set(
            "agent",
            json!({"type": "RollingUpdate"}),
            json!({"role": "worker"}),
        ),
    )
    .await
    .unwrap();
    // b's taint is not tolerated; c's is, automatically; d is not a worker.
    let placed = wait_targets(&c.client, "agent", &["a", "c"]).await;
    for pod in &placed {
        let tolerations = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
        assert!(
            tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("node.kubernetes.io/unschedulable"))
        );
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("DaemonSet", Some(true))
        );
    }
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    eventually("the scheduler binding each pod to its node", || async {
        let bound = live_pods(&c.client, "app=agent").await.iter().all(|p| {
            p.spec.as_ref().unwrap().node_name.as_deref() == target_node(p)
                && p.spec.as_ref().unwrap().node_name.is_some()
        });
        bound.then_some(())
    })
    .await;
    mark_all_ready(&c.client, "app=agent").await;
    eventually("status counts", || async {
        let ds = sets.get("agent").await.unwrap();
        let s = ds.status.clone()?;
        (s.desired_number_scheduled == 2
            && s.current_number_scheduled == 2
            && s.number_ready == 2
            && s.number_available == Some(2)
            && s.updated_number_scheduled == Some(2)
            && s.number_misscheduled == 0
            && s.observed_generation == ds.metadata.generation)
            .then_some(())
    })
    .await;

    // A node that becomes a worker gets a pod; one that stops being one loses it.
    let nodes: Api<Node> = Api::all(c.client.clone());
    let role = |r: &str| Patch::Merge(json!({"metadata": {"labels": {"role": r}}}));
    nodes
        .patch("d", &PatchParams::default(), &role("worker"))
        .await
        .unwrap();
    nodes
        .patch("a", &PatchParams::default(), &role("db"))
        .await
        .unwrap();
    eventually("pods following the labels", || async {
        let live: Vec<Pod> = pods
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let mut on: Vec<&str> = live.iter().filter_map(target_node).collect();
        on.sort();
        (on == ["c", "d"]).then_some(())
    })
    .await;
    scheduler.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_update_replaces_every_pod() {
    let c = cluster().await;
    for n in ["a", "b", "c"] {
        create_node(&c.client, n, json!({}), json!([])).await;
    }
    let sets: Api<DaemonSet> = Api::namespaced(c.client.clone(), "default");
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}});
    sets.create(
        &PostParams::default(),
        &daemon_set("roll", strategy, json!({})),
    )
    .await
    .unwrap();
    let first = wait_targets(&c.client, "roll", &["a", "b", "c"]).await;
    mark_all_ready(&c.client, "app=roll").await;
    let image = |tag: &str| {
        Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
            {"name": "main", "image": format!("localhost/busybox:{tag}")}]}}}}))
    };
    sets.patch("roll", &PatchParams::default(), &image("2"))
        .await
        .unwrap();
    eventually("every node on the new template", || async {
        mark_all_ready(&c.client, "app=roll").await;
        let live = live_pods(&c.client, "app=roll").await;
        let done = live.len() == 3
            && live.iter().all(|p| self::image(p) == "localhost/busybox:2")
            && live
                .iter()
                .all(|p| first.iter().all(|f| f.uid() != p.uid()));
        done.then_some(())
    })
    .await;
    assert_eq!(targets(&c.client, "roll").await, ["a", "b", "c"]);
    eventually("all updated and available", || async {
        // The last replacement may have come after the last marking above.
        mark_all_ready(&c.client, "app=roll").await;
        let s = sets.get("roll").await.unwrap().status?;
        (s.updated_number_scheduled == Some(3) && s.number_available == Some(3)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_delete_updates_a_pod_only_when_it_is_deleted() {
    let c = cluster().await;
    for n in ["a", "b"] {
        create_node(&c.client, n, json!({}), json!([])).await;
    }
    let sets: Api<DaemonSet> = Api::namespaced(c.client.clone(), "default");
    sets.create(
        &PostParams::default(),
        &daemon_set("lazy", json!({"type": "OnDelete"}), json!({})),
    )
    .await
    .unwrap();
    let first = wait_targets(&c.client, "lazy", &["a", "b"]).await;
    let patch = Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "localhost/busybox:2"}]}}}}));
    let updated = sets
        .patch("lazy", &PatchParams::default(), &patch)
        .await
        .unwrap();
    eventually("the controller seeing the new generation", || async {
        let s = sets.get("lazy").await.unwrap().status?;
        (s.observed_generation == updated.metadata.generation).then_some(())
    })
    .await;
    let now = live_pods(&c.client, "app=lazy").await;
    assert!(now.iter().all(|p| image(p) == "localhost/busybox:1"));
    assert_eq!(
        sets.get("lazy")
            .await
            .unwrap()
            .status
            .unwrap()
            .updated_number_scheduled,
        Some(0)
    );
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.delete(&first[0].name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let node = target_node(&first[0]).unwrap().to_string();
    eventually("a replacement on the new template", || async {
        live_pods(&c.client, "app=lazy")
            .await
            .into_iter()
            .find(|p| target_node(p) == Some(node.as_str()) && image(p) == "localhost/busybox:2")
    })
    .await;
}
