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
