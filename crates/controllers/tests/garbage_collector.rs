//! The garbage collector and the namespace controller against a real API server: the
//! three propagation policies, and a namespace emptied before it goes. ConfigMaps play
//! owners and dependents so no workload controller acts on them.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cluster, eventually};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Creates ConfigMap `name` in `default`, owned by `owners` (blockOwnerDeletion set),
/// holding `finalizers`.
async fn config_map(
    client: &kube::Client,
    name: &str,
    owners: &[&ConfigMap],
    finalizers: &[&str],
) -> ConfigMap {
    let refs: Vec<_> = owners
        .iter()
        .map(|o| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.name_any(),
                   "uid": o.uid().unwrap(), "blockOwnerDeletion": true})
        })
        .collect();
    let object: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default", "ownerReferences": refs,
                     "finalizers": finalizers},
    }))
    .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &object).await.unwrap()
}

async fn gone(api: &Api<ConfigMap>, name: &str) {
    eventually(&format!("{name} to go"), || async {
        api.get_opt(name).await.unwrap().is_none().then_some(())
    })
    .await;
}

async fn drop_finalizers(api: &Api<ConfigMap>, name: &str) {
    let patch = json!({"metadata": {"finalizers": null}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn background_deletion_collects_dependents_no_owner_keeps() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let owner = config_map(&c.client, "bg-owner", &[], &[]).await;
    let other = config_map(&c.client, "bg-other", &[], &[]).await;
    let child = config_map(&c.client, "bg-child", &[&owner], &[]).await;
    config_map(&c.client, "bg-grandchild", &[&child], &[]).await;
    config_map(&c.client, "bg-shared", &[&owner, &other], &[]).await;

    api.delete("bg-owner", &DeleteParams::background())
        .await
        .unwrap();
    gone(&api, "bg-child").await;
    gone(&api, "bg-grandchild").await;
    // Kept by its other owner; the reference to the gone one is dropped.
    let shared = eventually("bg-shared to lose its dangling reference", || async {
        let shared = api.get("bg-shared").await.unwrap();
        (shared.owner_references().len() == 1).then_some(shared)
    })
    .await;
    assert_eq!(shared.owner_references()[0].name, "bg-other");
}

#[tokio::test(flavor = "multi_thread")]
async fn foreground_deletion_waits_for_blocking_dependents() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let owner = config_map(&c.client, "fg-owner", &[], &[]).await;
    let child = config_map(&c.client, "fg-child", &[&owner], &[]).await;
    config_map(&c.client, "fg-held", &[&child], &["test.strata.dev/hold"]).await;

    api.delete("fg-owner", &DeleteParams::foreground())
        .await
        .unwrap();
    // The held grandchild is marked; the child waits for it in the foreground, the
    // owner for the child.
    eventually("fg-held to be marked for deletion", || async {
        let held = api.get("fg-held").await.unwrap();
        held.metadata.deletion_timestamp.is_some().then_some(())
    })
    .await;
    let child = api.get("fg-child").await.unwrap();
    assert!(child.finalizers().iter().any(|f| f == "foregroundDeletion"));
    let owner = api.get("fg-owner").await.unwrap();
    assert!(owner.metadata.deletion_timestamp.is_some());

    drop_finalizers(&api, "fg-held").await;
    gone(&api, "fg-held").await;
    gone(&api, "fg-child").await;
    gone(&api, "fg-owner").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn orphan_deletion_releases_dependents() {
    let c = cluster().await;
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let owner = config_map(&c.client, "or-owner", &[], &[]).await;
    config_map(&c.client, "or-child-1", &[&owner], &[]).await;
    config_map(&c.client, "or-child-2", &[&owner], &[]).await;

    api.delete("or-owner", &DeleteParams::orphan())
        .await
        .unwrap();
    gone(&api, "or-owner").await;
    for name in ["or-child-1", "or-child-2"] {
        let child = api.get(name).await.unwrap();
        assert!(child.owner_references().is_empty(), "{name} still owned");
        assert!(child.metadata.deletion_timestamp.is_none());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_namespace_deletes_its_content_first() {
    let c = cluster().await;
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(c.client.clone(), "doomed");
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "doomed");
    let map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "held", "finalizers": ["test.strata.dev/hold"]},
    }))
    .unwrap();
    maps.create(&PostParams::default(), &map).await.unwrap();
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();

    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the secret to go", || async {
        secrets.get_opt("s").await.unwrap().is_none().then_some(())
    })
    .await;
    eventually("the held map to be marked", || async {
        let held = maps.get("held").await.unwrap();
        held.metadata.deletion_timestamp.is_some().then_some(())
    })
    .await;
    // The namespace stays Terminating and says what holds it.
    let status = eventually("the namespace to name the finalizer left", || async {
        let status = namespaces.get("doomed").await.unwrap().status.unwrap();
        let held = status.conditions.iter().flatten().any(|c| {
            c.type_ == "NamespaceFinalizersRemaining"
                && c.status == "True"
                && c.message
                    .as_deref()
                    .is_some_and(|m| m.contains("test.strata.dev/hold in 1"))
        });
        held.then_some(status)
    })
    .await;
    assert_eq!(status.phase.as_deref(), Some("Terminating"));
    drop_finalizers(&maps, "held").await;
    eventually("the namespace to go", || async {
        namespaces
            .get_opt("doomed")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}
