//! Real `kubectl rollout status/history/undo` against the controllers. Skipped (with a
//! SKIP line) when kubectl is not on PATH.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{cluster, eventually, mark_all_ready};

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("kubectl")
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
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        eprintln!("SKIP: kubectl is not on PATH");
        return;
    }
    let c = cluster().await;
    let config = c.server.kubeconfig_path().to_path_buf();
    // `kubectl create deployment` sends protobuf, which the API server does not read;
    // `apply` sends JSON.
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
