//! API server load benchmark: the real HTTPS server (in this process, on a temp SQLite
//! store) and N concurrent HTTPS clients with a bearer token, like kubectl or a
//! controller would talk to it. Reports throughput and p50/p99 per verb (create, get,
//! update, list), events seen by a concurrent watch, list latency of 10k pods, and the
//! process's RSS after 10k (and, with `--objects 100000`, 100k) objects.
//!
//! Run: `cargo bench -p strata-bench --bench api [-- --clients 32 --seconds 5 --objects 10000]`.
//! The figures that matter against Kubernetes' own SLO are the p99s; this machine is
//! noisy, so compare runs made together.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use strata_apiserver::rest::{ApiState, router};
use strata_apiserver::{Server, ServerConfig, namespaces};
use strata_store::{SqliteStore, Store};

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

fn report(verb: &str, mut latencies: Vec<Duration>, elapsed: Duration) {
    latencies.sort();
    println!(
        "{verb:<8} {:>8.0}/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} requests)",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.len()
    );
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

struct Target {
    client: reqwest::Client,
    base: String,
    token: String,
}

impl Target {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn configmap(name: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"bench": "yes"}}, "data": {"k": "v".repeat(200)}})
}

fn pod(name: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}]}]}})
}

/// Runs `op(client, i)` from `clients` tasks for `seconds`; returns latencies.
async fn storm<F, Fut>(
    target: Arc<Target>,
    clients: usize,
    seconds: u64,
    op: F,
) -> (Vec<Duration>, Duration)
where
    F: Fn(Arc<Target>, usize, usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (target, stop, op) = (target.clone(), stop.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if !op(target.clone(), c, i).await {
                    panic!("request failed");
                }
                latencies.push(t.elapsed());
                i += 1;
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    (all, start.elapsed())
}

async fn create_many(
    target: Arc<Target>,
    ns: &str,
    total: usize,
    clients: usize,
    make: fn(&str) -> serde_json::Value,
    plural: &str,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (target, next, ns, plural) = (
            target.clone(),
            next.clone(),
            ns.to_string(),
            plural.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let response = target
                    .client
                    .post(target.url(&format!("/api/v1/namespaces/{ns}/{plural}")))
                    .bearer_auth(&target.token)
                    .json(&make(&format!("obj-{i}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status().as_u16(), 201);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

async fn create_namespace(target: &Target, name: &str) {
    let response = target
        .client
        .post(target.url("/api/v1/namespaces"))
        .bearer_auth(&target.token)
        .json(&serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let clients = flag(&args, "--clients", 32);
    let seconds = flag(&args, "--seconds", 5) as u64;
    let objects = flag(&args, "--objects", 10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("state.db")).unwrap());
        namespaces::bootstrap(store.as_ref()).await.unwrap();
        let server = Server::bind(ServerConfig::new(dir.path(), "127.0.0.1:0".parse::<SocketAddr>().unwrap()))
            .await
            .unwrap();
        let base = server.url();
        let token = server.tokens().admin_token().unwrap();
        let ca = std::fs::read(server.pki().ca_cert_path()).unwrap();
        let state = Arc::new(ApiState {
            store: store.clone(),
            kubelet: None,
            sa_tokens: Some(server.sa_tokens().clone()),
            // The bench runs as system:masters, which RBAC never consults.
            rbac: None,
            // The bench writes configmaps only; no Service needs an address.
            services: Arc::new(strata_apiserver::services::ServiceAllocator::new(
                Default::default(),
                Default::default(),
            )),
        });
        tokio::spawn(server.serve(router(state), std::future::pending()));
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .pool_max_idle_per_host(clients)
            .build()
            .unwrap();
        let target = Arc::new(Target { client, base, token });
        println!("API server benchmark: {clients} clients, {seconds} s per verb, HTTPS + bearer token, SQLite (FULL sync)");

        // A watch on configmaps counts events while the create storm runs.
        let watched = Arc::new(AtomicUsize::new(0));
        {
            let (target, watched) = (target.clone(), watched.clone());
            tokio::spawn(async move {
                let mut response = target
                    .client
                    .get(target.url("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1"))
                    .bearer_auth(&target.token)
                    .send()
                    .await
                    .unwrap();
                while let Ok(Some(chunk)) = response.chunk().await {
                    watched.fetch_add(chunk.iter().filter(|b| **b == b'\n').count(), Ordering::Relaxed);
                }
            });
        }
        let (creates, elapsed) = storm(target.clone(), clients, seconds, |t, c, i| async move {
            t.client
                .post(t.url("/api/v1/namespaces/default/configmaps"))
                .bearer_auth(&t.token)
                .json(&configmap(&format!("cm-{c}-{i}")))
                .send()
                .await
                .map(|r| r.status().as_u16() == 201)
                .unwrap_or(false)
        })
        .await;
        let created = creates.len();
        report("create", creates, elapsed);
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!("watch    {} events seen for {created} creates", watched.load(Ordering::Relaxed));

        let (gets, elapsed) = storm(target.clone(), clients, seconds, |t, c, i| async move {
            t.client
                .get(t.url(&format!("/api/v1/namespaces/default/configmaps/cm-{c}-{}", i % 50)))
                .bearer_auth(&t.token)
                .send()
                .await
                .map(|r| r.status().as_u16() == 200)
                .unwrap_or(false)
        })
        .await;
        report("get", gets, elapsed);

        let (updates, elapsed) = storm(target.clone(), clients, seconds, |t, c, i| async move {
            // Each client updates its own object (read-modify-write with the version).
            let url = t.url(&format!("/api/v1/namespaces/default/configmaps/cm-{c}-0"));
            let Ok(current) = t.client.get(&url).bearer_auth(&t.token).send().await else {
                return false;
            };
            let Ok(mut object) = current.json::<serde_json::Value>().await else {
                return false;
            };
            object["data"]["k"] = serde_json::json!(format!("v{i}"));
            t.client
                .put(&url)
                .bearer_auth(&t.token)
                .json(&object)
                .send()
                .await
                .map(|r| r.status().as_u16() == 200)
                .unwrap_or(false)
        })
        .await;
        report("update", updates, elapsed);

        // 10k pods (or --objects), then list them all.
        create_namespace(&target, "pods").await;
        let t0 = Instant::now();
        create_many(target.clone(), "pods", objects, clients, pod, "pods").await;
        println!("seeded   {objects} pods in {:.1} s", t0.elapsed().as_secs_f64());
        println!(
            "rss      {:.1} MiB after seeding, before any list (server and load generator in one process)",
            rss_mib()
        );
        let mut lists = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let response = target
                .client
                .get(target.url("/api/v1/namespaces/pods/pods"))
                .bearer_auth(&target.token)
                .send()
                .await
                .unwrap();
            let body = response.bytes().await.unwrap();
            lists.push(t.elapsed());
            assert!(body.len() > objects * 100);
        }
        lists.sort();
        println!(
            "list     {objects} pods: p50 {:.1} ms, max {:.1} ms (5 runs, whole JSON response read)",
            percentile(&lists, 0.5).as_secs_f64() * 1e3,
            lists.last().unwrap().as_secs_f64() * 1e3
        );
        println!(
            "rss      {:.1} MiB after the lists (whole responses are built in memory) with {} objects stored",
            rss_mib(),
            objects + created
        );
    });
}
