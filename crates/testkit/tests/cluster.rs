#![allow(clippy::unwrap_used)]
//! The in-process API server serves real kube-rs clients, and node identities may write
//! the status of Pods bound to them (the store-backed node authorizer) but no others.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use strata_testkit::cluster::TestApiServer;

fn pod(name: &str, node: Option<&str>) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_write_the_status_of_their_own_pods_only() {
    let server = TestApiServer::start().await;
    let admin: Api<Pod> = Api::namespaced(server.admin_client().await, "default");
    admin
        .create(&PostParams::default(), &pod("mine", Some("n1")))
        .await
        .unwrap();
    admin
        .create(&PostParams::default(), &pod("theirs", Some("n2")))
        .await
        .unwrap();

    let node: Api<Pod> = Api::namespaced(server.node_client("n1").await, "default");
    let status = Patch::Merge(serde_json::json!({"status": {"phase": "Running"}}));
    let patched = node
        .patch_status("mine", &PatchParams::default(), &status)
        .await
        .unwrap();
    assert_eq!(patched.status.unwrap().phase.as_deref(), Some("Running"));
    match node
        .patch_status("theirs", &PatchParams::default(), &status)
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403),
        other => panic!("a node patched another node's pod: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn patches_without_a_resource_version_all_land_under_contention() {
    use k8s_openapi::api::core::v1::ConfigMap;
    let server = TestApiServer::start().await;
    let maps: Api<ConfigMap> = Api::namespaced(server.admin_client().await, "default");
    let map: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "counter"}})).unwrap();
    maps.create(&PostParams::default(), &map).await.unwrap();
    // Concurrent patches race between read and write; none may be lost or refused.
    let writers = (0..8).map(|i| {
        let maps = maps.clone();
        tokio::spawn(async move {
            let patch = serde_json::json!({"data": {format!("k{i}"): "v"}});
            maps.patch("counter", &PatchParams::default(), &Patch::Merge(&patch))
                .await
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap().unwrap();
    }
    let data = maps.get("counter").await.unwrap().data.unwrap_or_default();
    assert_eq!(data.len(), 8, "{data:?}");
    // A patch naming a stale resourceVersion is a precondition: 409.
    let stale = serde_json::json!({"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}});
    match maps
        .patch("counter", &PatchParams::default(), &Patch::Merge(&stale))
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
        other => panic!("a stale patch was applied: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binding_checks_the_pod_uid_and_marks_the_pod_scheduled() {
    let server = TestApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.admin_client().await, "default");
    let created = pods
        .create(&PostParams::default(), &pod("p", None))
        .await
        .unwrap();
    let uid = created.metadata.uid.unwrap();
    let binding = |uid: &str| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "p", "uid": uid, "annotations": {"why": "test"}},
            "target": {"kind": "Node", "name": "n1"}
        })
    };
    // A binding meant for an earlier pod of the same name is refused.
    match pods
        .create_subresource::<_, serde_json::Value>(
            "binding",
            "p",
            &PostParams::default(),
            &binding("old-uid"),
        )
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
        other => panic!("a stale binding was accepted: {other:?}"),
    }
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        "p",
        &PostParams::default(),
        &binding(&uid),
    )
    .await
    .unwrap();
    let bound = pods.get("p").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("n1"));
    assert_eq!(
        bound
            .metadata
            .annotations
            .unwrap_or_default()
            .get("why")
            .map(String::as_str),
        Some("test")
    );
    let conditions = bound.status.unwrap().conditions.unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "PodScheduled" && c.status == "True"),
        "{conditions:?}"
    );
}
