//! Scheduler throughput: the real API server in this process (temp SQLite store, HTTPS),
//! 1,000 Ready Node objects, then 10,000 pods, with `strata_scheduler::run` binding them.
//! Prints pods/s from the first pod create to the last binding seen on a watch, and the
//! p50/p99 of create → bound per pod.
//!
//! Run: `cargo bench -p strata-bench --bench scheduler [-- --nodes 1000 --pods 10000 --backlog]`.
//! With `--backlog` the pods are all created before the scheduler starts, which measures the
//! scheduler alone (latencies then include the wait for it to start).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use strata_scheduler::{SchedulerOptions, run};
use strata_testkit::cluster::TestApiServer;

fn flag(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn node(name: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "allocatable": {"cpu": "4", "memory": "16Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}]
        }
    }))
    .unwrap()
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]}
    }))
    .unwrap()
}

/// Creates `count` objects with `make(i)` from `concurrency` tasks; records each start time.
async fn create_all<K, F>(
    api: Api<K>,
    count: usize,
    concurrency: usize,
    make: F,
    started: Option<Arc<Mutex<HashMap<String, Instant>>>>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    F: Fn(usize) -> (String, K),
{
    futures_util::stream::iter((0..count).map(|i| {
        let (name, object) = make(i);
        let api = api.clone();
        let started = started.clone();
        async move {
            if let Some(started) = started {
                started.lock().unwrap().insert(name, Instant::now());
            }
            api.create(&PostParams::default(), &object).await.unwrap();
        }
    }))
    .buffer_unordered(concurrency)
    .collect::<Vec<()>>()
    .await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes = flag(&args, "--nodes", 1000);
    let pods = flag(&args, "--pods", 10_000);
    let backlog = args.iter().any(|a| a == "--backlog");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let server = TestApiServer::start().await;
        let client = server.admin_client().await;

        let t = Instant::now();
        create_all(Api::<Node>::all(client.clone()), nodes, 32, |i| {
            let name = format!("node-{i:04}");
            (name.clone(), node(&name))
        }, None)
        .await;
        println!("{nodes} nodes created in {:.2} s", t.elapsed().as_secs_f64());

        // Observer: the first time each pod is seen bound.
        let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let (all_bound_tx, all_bound_rx) = tokio::sync::oneshot::channel::<Instant>();
        let observer = {
            let bound = Arc::clone(&bound);
            let api = Api::<Pod>::namespaced(client.clone(), "default");
            tokio::spawn(async move {
                let mut tx = Some(all_bound_tx);
                let mut events = watcher::watcher(api, watcher::Config::default())
                    .default_backoff()
                    .boxed();
                while let Ok(Some(event)) = events.try_next().await {
                    let (watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = event else {
                        continue;
                    };
                    if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                        let now = Instant::now();
                        let mut bound = bound.lock().unwrap();
                        bound.entry(p.metadata.name.unwrap_or_default()).or_insert(now);
                        if bound.len() == pods {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(now);
                            }
                        }
                    }
                }
            })
        };

        let start_scheduler = || {
            let client = client.clone();
            tokio::spawn(async move { run(client, SchedulerOptions::default()).await })
        };
        let started: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let first_create = Instant::now();
        let scheduler = if backlog {
            create_all(Api::<Pod>::namespaced(client.clone(), "default"), pods, 32, |i| {
                let name = format!("pod-{i:05}");
                (name.clone(), pod(&name))
            }, Some(Arc::clone(&started)))
            .await;
            println!("{pods} pods created in {:.2} s", first_create.elapsed().as_secs_f64());
            start_scheduler()
        } else {
            let scheduler = start_scheduler();
            create_all(Api::<Pod>::namespaced(client.clone(), "default"), pods, 32, |i| {
                let name = format!("pod-{i:05}");
                (name.clone(), pod(&name))
            }, Some(Arc::clone(&started)))
            .await;
            println!("{pods} pods created in {:.2} s", first_create.elapsed().as_secs_f64());
            scheduler
        };
        let scheduling_start = if backlog { Instant::now() } else { first_create };
        let last = tokio::time::timeout(Duration::from_secs(600), all_bound_rx)
            .await
            .expect("all pods bound within 10 minutes")
            .unwrap();
        let elapsed = last - scheduling_start;
        let mut latencies: Vec<Duration> = {
            let started = started.lock().unwrap();
            let bound = bound.lock().unwrap();
            bound
                .iter()
                .filter_map(|(name, at)| started.get(name).map(|s| at.saturating_duration_since(*s)))
                .collect()
        };
        latencies.sort();
        println!(
            "scheduler ({}): {pods} pods on {nodes} nodes bound in {:.2} s = {:.0} pods/s; create→bound p50 {:.0} ms, p99 {:.0} ms",
            if backlog { "backlog" } else { "streaming" },
            elapsed.as_secs_f64(),
            pods as f64 / elapsed.as_secs_f64(),
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        );
        // Scheduled events are best-effort (dropped when the scheduler's event queue is
        // full, like client-go's); count the ones written once their queue has drained.
        let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), "default");
        let mut written = 0;
        loop {
            let list = events.list(&kube::api::ListParams::default()).await.unwrap();
            let now = list
                .items
                .iter()
                .filter(|e| e.reason.as_deref() == Some("Scheduled"))
                .count();
            if now == written && now > 0 {
                break;
            }
            written = now;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("Scheduled events written: {written} of {pods} (the rest dropped by the full event queue)");
        scheduler.abort();
        observer.abort();
        drop(server);
    });
}
