//! Shared helpers of the integration tests: a server with the controllers running,
//! polling with a deadline, and playing the kubelet by marking pods ready.
#![allow(clippy::unwrap_used, dead_code)]

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use strata_controllers::ControllerOptions;
use strata_testkit::cluster::TestApiServer;

/// A test API server with the controllers of this crate running against it.
pub struct Cluster {
    pub server: TestApiServer,
    pub client: kube::Client,
    controllers: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.controllers.abort();
    }
}

pub async fn cluster() -> Cluster {
    cluster_with(ControllerOptions::default()).await
}

/// A test API server with the controllers running with `options`.
pub async fn cluster_with(options: ControllerOptions) -> Cluster {
    // `RUST_LOG=strata_controllers=debug` shows what the controllers do (off by default).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let server = TestApiServer::start().await;
    let client = server.admin_client().await;
    let c = client.clone();
    let controllers = tokio::spawn(async move {
        let _ = strata_controllers::run(c, options).await;
    });
    Cluster {
        server,
        client,
        controllers,
    }
}

/// Polls `check` until it returns `Some`, failing after 60 s with `what` (a bound
/// against hangs, not a timing assertion: a watch that fell behind under load restarts
/// with back-off).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pods matching `selector` in `default`, not being deleted.
pub async fn live_pods(client: &kube::Client, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Plays the kubelet: marks the pod Running and Ready.
pub async fn mark_ready(client: &kube::Client, pod: &Pod) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap());
    let now = Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
    }});
    let _ = api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await;
}

/// Plays the kubelet: the pod's container exited and the pod is `phase` (`Succeeded`
/// or `Failed`).
pub async fn finish(client: &kube::Client, pod: &Pod, phase: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap());
    let now = Timestamp::now().to_string();
    let code = if phase == "Succeeded" { 0 } else { 1 };
    let status = json!({"status": {
        "phase": phase,
        "containerStatuses": [{"name": "main", "image": "x", "imageID": "", "ready": false,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "finishedAt": now}}}],
    }});
    api.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .unwrap();
}

pub fn is_ready(pod: &Pod) -> bool {
    strata_controllers::pods::is_ready(pod)
}

/// Marks every live pod matching `selector` ready.
pub async fn mark_all_ready(client: &kube::Client, selector: &str) {
    for pod in live_pods(client, selector).await {
        if !is_ready(&pod) {
            mark_ready(client, &pod).await;
        }
    }
}

/// A pod template for `app` running `image`.
pub fn template(app: &str, image: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": image}]},
    })
}

/// True (after printing `SKIP <test>: …`) when kubectl is not installed.
pub fn kubectl_missing(test: &str) -> bool {
    let missing = std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err();
    if missing {
        println!("SKIP {test}: kubectl is not installed");
    }
    missing
}

/// Runs kubectl with `kubeconfig`: whether it succeeded, and its stdout and stderr.
pub fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
