//! Real `kubectl rollout status/history/undo`, `kubectl wait` and `kubectl delete
//! --cascade` against the controllers. Skipped (with a SKIP line) when kubectl is not
//! on PATH.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cluster, eventually, kubectl, kubectl_missing, mark_all_ready};

const MANIFEST: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: kc
spec:
  replicas: 2
  selector:
    matchLabels: {app: kc}
  template:
    metadata:
      labels: {app: kc}
    spec:
      containers:
      - name: busybox
        image: localhost/busybox:1
";

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_rollout_status_history_and_undo() {
    if kubectl_missing("kubectl_rollout_status_history_and_undo") {
        return;
    }
    let c = cluster().await;
    let config = c.server.kubeconfig_path().to_path_buf();
    let manifest = c.server.data_dir().join("kc.yaml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let (ok, text) = kubectl(&config, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(ok, "{text}");
    // `rollout status` blocks until done: run it while the test plays the kubelet.
    let status = |config: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            kubectl(
                &config,
                &["rollout", "status", "deployment/kc", "--timeout=60s"],
            )
        })
    };
    let waiting = status(config.clone());
    eventually("rollout status to finish", || async {
        mark_all_ready(&c.client, "app=kc").await;
        waiting.is_finished().then_some(())
    })
    .await;
    let (ok, text) = waiting.await.unwrap();
    assert!(ok && text.contains("successfully rolled out"), "{text}");

    let (ok, text) = kubectl(
        &config,
        &[
            "set",
            "image",
            "deployment/kc",
            "busybox=localhost/busybox:2",
        ],
    );
    assert!(ok, "{text}");
    let waiting = status(config.clone());
    eventually("the second rollout", || async {
        mark_all_ready(&c.client, "app=kc").await;
        waiting.is_finished().then_some(())
    })
    .await;
    let (ok, text) = waiting.await.unwrap();
    assert!(ok && text.contains("successfully rolled out"), "{text}");

    let (ok, history) = kubectl(&config, &["rollout", "history", "deployment/kc"]);
    assert!(ok, "{history}");
    assert!(history.contains('1') && history.contains('2'), "{history}");

    let (ok, text) = kubectl(&config, &["rollout", "undo", "deployment/kc"]);
    assert!(ok && text.contains("rolled back"), "{text}");
    let waiting = status(config.clone());
    eventually("the rollback", || async {
        mark_all_ready(&c.client, "app=kc").await;
        waiting.is_finished().then_some(())
    })
    .await;
    let (ok, text) = waiting.await.unwrap();
    assert!(ok && text.contains("successfully rolled out"), "{text}");
    let (_, image) = kubectl(
        &config,
        &[
            "get",
            "deployment/kc",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert_eq!(image, "localhost/busybox:1");
    let (ok, history) = kubectl(&config, &["rollout", "history", "deployment/kc"]);
    assert!(ok && history.contains('3'), "{history}");
}

const JOB: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: kw
spec:
  completions: 2
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: localhost/busybox:latest
";

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_waits_for_a_job_to_complete() {
    if kubectl_missing("kubectl_waits_for_a_job_to_complete") {
        return;
    }
    let c = cluster().await;
    let config = c.server.kubeconfig_path().to_path_buf();
    let manifest = c.server.data_dir().join("kw.yaml");
    std::fs::write(&manifest, JOB).unwrap();
    let (ok, text) = kubectl(&config, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(ok, "{text}");
    let waiting = tokio::task::spawn_blocking(move || {
        kubectl(
            &config,
            &[
                "wait",
                "--for=condition=complete",
                "job/kw",
                "--timeout=60s",
            ],
        )
    });
    eventually("kubectl wait to return", || async {
        for pod in common::live_pods(&c.client, "job-name=kw").await {
            if strata_controllers::pods::is_active(&pod) {
                common::finish(&c.client, &pod, "Succeeded").await;
            }
        }
        waiting.is_finished().then_some(())
    })
    .await;
    let (ok, text) = waiting.await.unwrap();
    assert!(ok && text.contains("job.batch/kw condition met"), "{text}");
}

const DAEMON_SET: &str = "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: kd
spec:
  selector:
    matchLabels: {app: kd}
  template:
    metadata:
      labels: {app: kd}
    spec:
      containers:
      - name: main
        image: localhost/busybox:1
";

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_rollout_status_of_a_daemon_set() {
    if kubectl_missing("kubectl_rollout_status_of_a_daemon_set") {
        return;
    }
    let c = cluster().await;
    for name in ["n1", "n2"] {
        let node: k8s_openapi::api::core::v1::Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        kube::Api::<k8s_openapi::api::core::v1::Node>::all(c.client.clone())
            .create(&Default::default(), &node)
            .await
            .unwrap();
    }
    let config = c.server.kubeconfig_path().to_path_buf();
    let manifest = c.server.data_dir().join("kd.yaml");
    std::fs::write(&manifest, DAEMON_SET).unwrap();
    let (ok, text) = kubectl(&config, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(ok, "{text}");
    let waiting = tokio::task::spawn_blocking(move || {
        kubectl(
            &config,
            &["rollout", "status", "daemonset/kd", "--timeout=60s"],
        )
    });
    eventually("kubectl rollout status to return", || async {
        mark_all_ready(&c.client, "app=kd").await;
        waiting.is_finished().then_some(())
    })
    .await;
    let (ok, text) = waiting.await.unwrap();
    assert!(
        ok && text.contains("daemon set \"kd\" successfully rolled out"),
        "{text}"
    );
}

/// `app=<name>` ReplicaSets and pods that exist (being deleted or not), each with how
/// many owner references it has.
async fn owned(client: &kube::Client, app: &str) -> Vec<(String, usize)> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::core::v1::Pod;
    use kube::ResourceExt;
    use kube::api::{Api, ListParams};
    let selector = ListParams::default().labels(&format!("app={app}"));
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut found: Vec<(String, usize)> = sets
        .list(&selector)
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| (format!("rs/{}", s.name_any()), s.owner_references().len()))
        .collect();
    found.extend(
        pods.list(&selector)
            .await
            .unwrap()
            .items
            .iter()
            .map(|p| (format!("pod/{}", p.name_any()), p.owner_references().len())),
    );
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_delete_cascades_in_the_background_the_foreground_or_not_at_all() {
    if kubectl_missing("kubectl_delete_cascades_in_the_background_the_foreground_or_not_at_all") {
        return;
    }
    let c = cluster().await;
    let config = c.server.kubeconfig_path().to_path_buf();
    for app in ["bg", "fg", "keep"] {
        let manifest = c.server.data_dir().join(format!("{app}.yaml"));
        std::fs::write(&manifest, MANIFEST.replace("kc", app)).unwrap();
        let (ok, text) = kubectl(&config, &["apply", "-f", manifest.to_str().unwrap()]);
        assert!(ok, "{text}");
        eventually(&format!("the {app} replica set and its 2 pods"), || async {
            (owned(&c.client, app).await.len() == 3).then_some(())
        })
        .await;
    }

    let (ok, text) = kubectl(&config, &["delete", "deployment", "bg"]);
    assert!(ok, "{text}");
    eventually("the bg replica set and pods to go", || async {
        owned(&c.client, "bg").await.is_empty().then_some(())
    })
    .await;

    // Foreground: kubectl returns once the deployment is gone, which is after its
    // replica set and pods.
    let (ok, text) = kubectl(
        &config,
        &[
            "delete",
            "deployment",
            "fg",
            "--cascade=foreground",
            "--timeout=60s",
        ],
    );
    assert!(ok, "{text}");
    assert!(owned(&c.client, "fg").await.is_empty());

    // Orphan: the replica set stays, without its owner reference; its pods keep theirs.
    let (ok, text) = kubectl(
        &config,
        &[
            "delete",
            "deployment",
            "keep",
            "--cascade=orphan",
            "--timeout=60s",
        ],
    );
    assert!(ok, "{text}");
    let left = owned(&c.client, "keep").await;
    assert_eq!(left.len(), 3, "{left:?}");
    for (name, owners) in left {
        let expected = usize::from(name.starts_with("pod/"));
        assert_eq!(owners, expected, "{name}");
    }
}
