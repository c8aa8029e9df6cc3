//! The Deployment controller against a real API server (with the ReplicaSet controller
//! running too); the tests play the kubelet by marking pods ready.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use common::{cluster, eventually, live_pods, mark_all_ready, template};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

fn deployment(name: &str, replicas: i32, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": template(name, "localhost/busybox:1"),
        },
    }))
    .unwrap()
}

async fn sets_of(client: &kube::Client, app: &str) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
}

fn image_of(rs: &ReplicaSet) -> String {
    rs.spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

fn revision(rs: &ReplicaSet) -> String {
    rs.annotations()
        .get("deployment.kubernetes.io/revision")
        .cloned()
        .unwrap_or_default()
}

/// Waits until the deployment has rolled out as `kubectl rollout status` decides it,
/// marking pods ready meanwhile.
async fn rolled_out(client: &kube::Client, name: &str) -> Deployment {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    eventually(&format!("{name} rolled out"), || async {
        mark_all_ready(client, &format!("app={name}")).await;
        let d = api.get(name).await.unwrap();
        let s = d.status.clone()?;
        let desired = d.spec.as_ref()?.replicas?;
        (d.metadata.generation <= s.observed_generation
            && s.updated_replicas == Some(desired)
            && s.replicas == Some(desired)
            && s.available_replicas == Some(desired))
        .then_some(d)
    })
    .await
}

/// Patches the deployment, retrying on 409 (see `set_image`).
async fn patch(api: &Api<Deployment>, name: &str, patch: Patch<Value>) {
    eventually("a deployment patch", || async {
        api.patch(name, &PatchParams::default(), &patch).await.ok()
    })
    .await;
}

async fn set_image(client: &kube::Client, name: &str, image: &str) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}});
    api.patch(name, &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_update_with_max_unavailable_zero_never_drops_below_desired() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    api.create(&PostParams::default(), &deployment("web", 3, strategy))
        .await
        .unwrap();
    let d = rolled_out(&c.client, "web").await;
    assert_eq!(d.metadata.generation, Some(1));
    let first = sets_of(&c.client, "web").await;
    assert_eq!(first.len(), 1);
    let hash = first[0].labels().get("pod-template-hash").cloned().unwrap();
    assert_eq!(first[0].name_any(), format!("web-{hash}"));
    assert_eq!(revision(&first[0]), "1");

    // Watch available pods (ready, not terminating) for the whole rollout.
    let min_seen = Arc::new(AtomicI32::new(i32::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let synced = Arc::new(AtomicBool::new(false));
    let watcher_task = {
        let (client, min_seen, stop, synced) = (
            c.client.clone(),
            min_seen.clone(),
            stop.clone(),
            synced.clone(),
        );
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client, "default");
            let mut stream = watcher(pods, watcher::Config::default().labels("app=web"))
                .default_backoff()
                .boxed();
            let mut ready: std::collections::BTreeMap<String, bool> = Default::default();
            while let Some(Ok(event)) = stream.next().await {
                match event {
                    watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                        let live = pod.metadata.deletion_timestamp.is_none();
                        ready.insert(pod.name_any(), live && common::is_ready(&pod));
                    }
                    watcher::Event::Delete(pod) => {
                        ready.remove(&pod.name_any());
                    }
                    watcher::Event::InitDone => synced.store(true, Ordering::SeqCst),
                    watcher::Event::Init => continue,
                }
                if !synced.load(Ordering::SeqCst) {
                    continue;
                }
                let count = i32::try_from(ready.values().filter(|r| **r).count()).unwrap();
                min_seen.fetch_min(count, Ordering::SeqCst);
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
        })
    };
    // The watch starts from a list of the 3 ready pods.
    eventually("the watch to list the pods", || async {
        synced.load(Ordering::SeqCst).then_some(())
    })
    .await;
    set_image(&c.client, "web", "localhost/busybox:2").await;
    let d = rolled_out(&c.client, "web").await;
    stop.store(true, Ordering::SeqCst);
    watcher_task.abort();
    assert!(d.metadata.generation >= Some(2));
    let sets = sets_of(&c.client, "web").await;
    let new = sets
        .iter()
        .find(|s| image_of(s) == "localhost/busybox:2")
        .unwrap();
    let old = sets
        .iter()
        .find(|s| image_of(s) == "localhost/busybox:1")
        .unwrap();
    assert_eq!((revision(new).as_str(), revision(old).as_str()), ("2", "1"));
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));
    let pods = eventually("old pods gone", || async {
        let pods = live_pods(&c.client, "app=web").await;
        (pods.len() == 3).then_some(pods)
    })
    .await;
    let new_hash = new.labels().get("pod-template-hash");
    assert!(
        pods.iter()
            .all(|p| p.labels().get("pod-template-hash") == new_hash)
    );
    let min = min_seen.load(Ordering::SeqCst);
    assert!(
        min >= 3,
        "available pods dropped to {min} during the rollout"
    );
    let d = api.get("web").await.unwrap();
    let conditions = d.status.unwrap().conditions.unwrap();
    let progressing = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );
    assert_eq!(
        d.metadata.annotations.unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn recreate_removes_old_pods_before_creating_new_ones() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    api.create(
        &PostParams::default(),
        &deployment("rc", 2, json!({"type": "Recreate"})),
    )
    .await
    .unwrap();
    rolled_out(&c.client, "rc").await;
    set_image(&c.client, "rc", "localhost/busybox:2").await;
    // Until the new set has pods, no new pod may exist beside an old one.
    let d = eventually("recreate rolled out", || async {
        let pods = live_pods(&c.client, "app=rc").await;
        let images: std::collections::BTreeSet<String> = pods
            .iter()
            .map(|p| {
                p.spec.as_ref().unwrap().containers[0]
                    .image
                    .clone()
                    .unwrap()
            })
            .collect();
        assert!(images.len() <= 1, "old and new pods at once: {images:?}");
        mark_all_ready(&c.client, "app=rc").await;
        let d = api.get("rc").await.unwrap();
        let s = d.status.clone()?;
        (images.contains("localhost/busybox:2")
            && s.updated_replicas == Some(2)
            && s.available_replicas == Some(2)
            && s.replicas == Some(2))
        .then_some(d)
    })
    .await;
    assert_eq!(d.annotations()["deployment.kubernetes.io/revision"], "2");
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_by_copying_an_old_template_reuses_its_replica_set() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &deployment("rb", 2, json!({})))
        .await
        .unwrap();
    rolled_out(&c.client, "rb").await;
    set_image(&c.client, "rb", "localhost/busybox:2").await;
    rolled_out(&c.client, "rb").await;
    let sets = sets_of(&c.client, "rb").await;
    assert_eq!(sets.len(), 2);
    let old = sets.iter().find(|s| revision(s) == "1").unwrap().clone();
    // What `kubectl rollout undo` does: copy the old template (without the hash label).
    let mut template = old.spec.clone().unwrap().template.unwrap();
    template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .remove("pod-template-hash");
    let undo = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    patch(
        &api,
        "rb",
        Patch::Json(serde_json::from_value(undo).unwrap()),
    )
    .await;
    rolled_out(&c.client, "rb").await;
    let sets = sets_of(&c.client, "rb").await;
    assert_eq!(sets.len(), 2, "no third replica set");
    let reused = sets
        .iter()
        .find(|s| s.name_any() == old.name_any())
        .unwrap();
    assert_eq!(revision(reused), "3");
    assert_eq!(
        reused.annotations()["deployment.kubernetes.io/revision-history"],
        "1"
    );
    assert_eq!(reused.spec.as_ref().unwrap().replicas, Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_deployment_scales_but_does_not_roll() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &deployment("pz", 2, json!({})))
        .await
        .unwrap();
    rolled_out(&c.client, "pz").await;
    let pause = json!({"spec": {"paused": true}});
    patch(&api, "pz", Patch::Merge(pause)).await;
    set_image(&c.client, "pz", "localhost/busybox:2").await;
    let scale = json!({"spec": {"replicas": 4}});
    eventually("the scale patch", || async {
        api.patch_scale("pz", &PatchParams::default(), &Patch::Merge(scale.clone()))
            .await
            .ok()
    })
    .await;
    // Paused with a new template: the old set scales, nothing is "updated".
    let d = eventually("4 available pods while paused", || async {
        mark_all_ready(&c.client, "app=pz").await;
        let d = api.get("pz").await.unwrap();
        let s = d.status.clone()?;
        (s.observed_generation == d.metadata.generation && s.available_replicas == Some(4))
            .then_some(d)
    })
    .await;
    assert_eq!(d.status.as_ref().unwrap().updated_replicas, Some(0));
    let conditions = d.status.unwrap().conditions.unwrap();
    let progressing = conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(progressing.reason.as_deref(), Some("DeploymentPaused"));
    let sets = sets_of(&c.client, "pz").await;
    assert_eq!(sets.len(), 1, "paused: no new replica set");
    assert_eq!(image_of(&sets[0]), "localhost/busybox:1");
    assert_eq!(sets[0].spec.as_ref().unwrap().replicas, Some(4));
    // Resumed: it rolls.
    let resume = json!({"spec": {"paused": false}});
    patch(&api, "pz", Patch::Merge(resume)).await;
    eventually("the rollout after resume", || async {
        let sets = sets_of(&c.client, "pz").await;
        sets.iter()
            .any(|s| image_of(s) == "localhost/busybox:2")
            .then_some(())
    })
    .await;
    rolled_out(&c.client, "pz").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_that_never_get_ready_exceed_the_progress_deadline() {
    let c = cluster().await;
    let api: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let mut d = deployment("slow", 1, json!({}));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(2);
    api.create(&PostParams::default(), &d).await.unwrap();
    let d = eventually("ProgressDeadlineExceeded", || async {
        let d = api.get("slow").await.unwrap();
        let conditions = d.status.clone()?.conditions?;
        conditions
            .iter()
            .any(|c| {
                c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
            .then_some(d)
    })
    .await;
    let conditions = d.status.unwrap().conditions.unwrap();
    let available = conditions.iter().find(|c| c.type_ == "Available").unwrap();
    assert_eq!(
        available.reason.as_deref(),
        Some("MinimumReplicasUnavailable")
    );
}
