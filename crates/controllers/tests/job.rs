//! The Job controller against a real API server; the tests play the kubelet by
//! finishing pods.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{cluster, cluster_with, eventually, finish, live_pods};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use strata_controllers::ControllerOptions;
use strata_controllers::job::FailureBackoff;

fn job(name: &str, spec: Value) -> Job {
    let mut full = json!({
        "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "localhost/busybox:latest"}]}},
    });
    if let (Some(full), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
        full.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": full,
    }))
    .unwrap()
}

async fn create(client: &kube::Client, job: &Job) -> Job {
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), job).await.unwrap()
}

/// Live pods of Job `name` that are still running (not finished).
async fn running_pods(client: &kube::Client, name: &str) -> Vec<Pod> {
    live_pods(client, &format!("batch.kubernetes.io/job-name={name}"))
        .await
        .into_iter()
        .filter(strata_controllers::pods::is_active)
        .collect()
}

async fn wait_running(client: &kube::Client, name: &str, n: usize) -> Vec<Pod> {
    eventually(&format!("{n} running pods of job {name}"), || async {
        let pods = running_pods(client, name).await;
        (pods.len() == n).then_some(pods)
    })
    .await
}

/// Waits for condition `type_` to be `True` on Job `name`; returns the Job.
async fn wait_condition(client: &kube::Client, name: &str, type_: &str) -> Job {
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    eventually(&format!("condition {type_} on job {name}"), || async {
        let job = jobs.get(name).await.unwrap();
        let conditions = job.status.as_ref()?.conditions.as_ref()?;
        conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
            .then_some(job.clone())
    })
    .await
}

fn reason(job: &Job, type_: &str) -> String {
    let conditions = job.status.as_ref().unwrap().conditions.as_ref().unwrap();
    let c = conditions.iter().find(|c| c.type_ == type_).unwrap();
    c.reason.clone().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_its_completions_in_parallel_and_completes() {
    let c = cluster().await;
    let created = create(
        &c.client,
        &job("pi", json!({"completions": 3, "parallelism": 2})),
    )
    .await;
    let uid = created.uid().unwrap();
    let first = wait_running(&c.client, "pi", 2).await;
    for pod in &first {
        let labels = pod.labels();
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(labels["controller-uid"], uid);
        assert_eq!(labels["batch.kubernetes.io/job-name"], "pi");
        assert_eq!(labels["job-name"], "pi");
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Job", uid.as_str())
        );
        assert_eq!(owner.controller, Some(true));
        assert!(pod.name_any().starts_with("pi-"), "{}", pod.name_any());
    }
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    eventually("status with 2 active and a start time", || async {
        let s = jobs.get("pi").await.unwrap().status?;
        (s.active == Some(2) && s.start_time.is_some() && s.ready == Some(0)).then_some(())
    })
    .await;

    finish(&c.client, &first[0], "Succeeded").await;
    // One done, two to go: a third pod joins the one still running.
    let second = eventually("a replacement for the finished pod", || async {
        let pods = running_pods(&c.client, "pi").await;
        (pods.len() == 2 && pods.iter().all(|p| p.name_any() != first[0].name_any()))
            .then_some(pods)
    })
    .await;
    for pod in &second {
        finish(&c.client, pod, "Succeeded").await;
    }
    let done = wait_condition(&c.client, "pi", "Complete").await;
    let status = done.status.clone().unwrap();
    assert_eq!(status.succeeded, Some(3));
    assert_eq!(status.active, None);
    assert!(status.completion_time.is_some());
    assert_eq!(reason(&done, "SuccessCriteriaMet"), "CompletionsReached");
    assert_eq!(reason(&done, "Complete"), "CompletionsReached");
    // No pod beyond the three completions was ever made.
    let all: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let made = all
        .list(&ListParams::default().labels("job-name=pi"))
        .await
        .unwrap()
        .items;
    assert_eq!(made.len(), 3);

    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    eventually("a Completed event", || async {
        let list = events.list(&ListParams::default()).await.unwrap().items;
        list.iter()
            .any(|e| e.reason.as_deref() == Some("Completed"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn indexed_pods_carry_their_completion_index() {
    let c = cluster().await;
    create(
        &c.client,
        &job(
            "idx",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        ),
    )
    .await;
    let pods = wait_running(&c.client, "idx", 3).await;
    let mut indexes: Vec<String> = Vec::new();
    for pod in &pods {
        let index = pod.annotations()["batch.kubernetes.io/job-completion-index"].clone();
        assert_eq!(
            pod.labels()["batch.kubernetes.io/job-completion-index"],
            index
        );
        assert!(pod.name_any().starts_with(&format!("idx-{index}-")));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(
            spec.hostname.as_deref(),
            Some(format!("idx-{index}").as_str())
        );
        let env = spec.containers[0].env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
        indexes.push(index);
    }
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);

    // Index 1 fails: it is retried as index 1.
    let one = pods
        .iter()
        .find(|p| p.annotations()["batch.kubernetes.io/job-completion-index"] == "1")
        .unwrap();
    finish(&c.client, one, "Failed").await;
    let retry = eventually("index 1 again", || async {
        running_pods(&c.client, "idx").await.into_iter().find(|p| {
            p.annotations()["batch.kubernetes.io/job-completion-index"] == "1"
                && p.name_any() != one.name_any()
        })
    })
    .await;
    for pod in running_pods(&c.client, "idx").await {
        finish(&c.client, &pod, "Succeeded").await;
    }
    assert!(retry.name_any().starts_with("idx-1-"));
    let done = wait_condition(&c.client, "idx", "Complete").await;
    let status = done.status.unwrap();
    assert_eq!(status.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(status.failed, Some(1));
}

/// Controllers whose failure back-off is short enough for a test.
fn fast_backoff() -> ControllerOptions {
    ControllerOptions {
        job_failure_backoff: FailureBackoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(1),
        },
        ..ControllerOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_pods_are_retried_until_the_backoff_limit() {
    let c = cluster_with(fast_backoff()).await;
    create(
        &c.client,
        &job("flaky", json!({"completions": 1, "backoffLimit": 1})),
    )
    .await;
    let first = wait_running(&c.client, "flaky", 1).await;
    finish(&c.client, &first[0], "Failed").await;
    let second = eventually("a retry", || async {
        running_pods(&c.client, "flaky")
            .await
            .into_iter()
            .find(|p| p.name_any() != first[0].name_any())
    })
    .await;
    finish(&c.client, &second, "Failed").await;
    let failed = wait_condition(&c.client, "flaky", "Failed").await;
    assert_eq!(reason(&failed, "FailureTarget"), "BackoffLimitExceeded");
    assert_eq!(reason(&failed, "Failed"), "BackoffLimitExceeded");
    assert_eq!(failed.status.as_ref().unwrap().failed, Some(2));
    assert!(running_pods(&c.client, "flaky").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_active_deadline_stops_pods_and_fails_the_job() {
    let c = cluster().await;
    create(
        &c.client,
        &job(
            "slow",
            json!({"completions": 1, "parallelism": 2, "activeDeadlineSeconds": 2}),
        ),
    )
    .await;
    wait_running(&c.client, "slow", 1).await;
    let failed = wait_condition(&c.client, "slow", "Failed").await;
    assert_eq!(reason(&failed, "Failed"), "DeadlineExceeded");
    assert!(running_pods(&c.client, "slow").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn suspending_deletes_pods_and_resuming_recreates_them() {
    let c = cluster().await;
    create(
        &c.client,
        &job("nap", json!({"completions": 2, "parallelism": 2})),
    )
    .await;
    wait_running(&c.client, "nap", 2).await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let suspend = |on: bool| json!({"spec": {"suspend": on}});
    jobs.patch("nap", &PatchParams::default(), &Patch::Merge(suspend(true)))
        .await
        .unwrap();
    let suspended = wait_condition(&c.client, "nap", "Suspended").await;
    assert_eq!(reason(&suspended, "Suspended"), "JobSuspended");
    wait_running(&c.client, "nap", 0).await;
    jobs.patch(
        "nap",
        &PatchParams::default(),
        &Patch::Merge(suspend(false)),
    )
    .await
    .unwrap();
    wait_running(&c.client, "nap", 2).await;
    // The controller creates the pods first and then writes the Job's status.
    eventually("the Suspended condition to say JobResumed", || async {
        let resumed = jobs.get("nap").await.unwrap();
        (reason(&resumed, "Suspended") == "JobResumed").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_job_goes_after_its_ttl() {
    let c = cluster().await;
    create(
        &c.client,
        &job(
            "brief",
            json!({"completions": 1, "ttlSecondsAfterFinished": 0}),
        ),
    )
    .await;
    let pods = wait_running(&c.client, "brief", 1).await;
    finish(&c.client, &pods[0], "Succeeded").await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    eventually("the job deleted", || async {
        jobs.get_opt("brief").await.unwrap().is_none().then_some(())
    })
    .await;
    eventually("its pod collected", || async {
        live_pods(&c.client, "job-name=brief")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}
