//! Store benchmark: single-object creates per second with p50/p99 latency at 1 and 32
//! concurrent tasks (the API server's write path), for `synchronous=FULL` (the
//! default) and `NORMAL`, then list latency over 10,000 objects (latest, a past
//! revision, and paged by 500).
//!
//! Run: `cargo bench -p strata-bench --bench store` (add `-- --ops N` to change the
//! number of creates per run). The database lives in a tempdir under `$TMPDIR`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_store::{ListOptions, SqliteOptions, SqliteStore, Store, Synchronous};

/// A pod-sized JSON value (about 1 KiB).
fn pod(name: &str) -> Bytes {
    let padding = "x".repeat(900);
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"default","labels":{{"app":"bench"}}}},"spec":{{"containers":[{{"name":"c","image":"busybox","args":["{padding}"]}}]}}}}"#
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Creates `ops` objects from `tasks` concurrent tasks; prints throughput and latency.
async fn creates(label: &str, sync: Synchronous, tasks: usize, ops: usize) {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        synchronous: sync,
        ..SqliteOptions::default()
    };
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open_with(dir.path().join("state.db"), options).unwrap());
    let per_task = ops / tasks;
    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let name = format!("p-{task}-{i}");
                let value = pod(&name);
                let key = format!("/registry/pods/default/{name}");
                let t = Instant::now();
                store.create(&key, value).await.unwrap();
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(ops);
    for handle in handles {
        latencies.extend(handle.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let wal = std::fs::metadata(dir.path().join("state.db-wal")).map_or(0, |m| m.len());
    println!(
        "create  {label:<6} {tasks:>2} tasks  {:>6} ops  {:>8.0} creates/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms  (WAL {:.1} MiB)",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
        wal as f64 / (1024.0 * 1024.0),
    );
}

/// Times `runs` calls of `read`; prints p50 and p99.
async fn time_reads<F, Fut>(label: &str, runs: usize, mut read: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut latencies = Vec::with_capacity(runs);
    let mut items = 0;
    for _ in 0..runs {
        let t = Instant::now();
        items = read().await;
        latencies.push(t.elapsed());
    }
    latencies.sort();
    println!(
        "list    {label:<32} {items:>6} items  p50 {:>7.2} ms  p99 {:>7.2} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
    );
}

async fn lists(objects: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path().join("state.db")).unwrap());
    let mut handles = Vec::new();
    for task in 0..32 {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            for i in (task..objects).step_by(32) {
                let name = format!("p-{i:05}");
                store
                    .create(&format!("/registry/pods/default/{name}"), pod(&name))
                    .await
                    .unwrap();
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let snapshot = store.current_revision().await.unwrap();
    // Later writes, so the snapshot is a past revision read from history.
    for i in 0..1000 {
        let key = format!("/registry/pods/default/p-{i:05}");
        store.update(&key, pod("changed"), None).await.unwrap();
    }
    let prefix = "/registry/pods/";
    time_reads("latest, whole", 20, || async {
        store
            .list(prefix, ListOptions::default())
            .await
            .unwrap()
            .items
            .len()
    })
    .await;
    time_reads("past revision, whole", 20, || async {
        let options = ListOptions {
            revision: Some(snapshot),
            ..ListOptions::default()
        };
        store.list(prefix, options).await.unwrap().items.len()
    })
    .await;
    for (label, revision) in [
        ("latest, pages of 500", None),
        ("past revision, pages of 500", Some(snapshot)),
    ] {
        time_reads(label, 10, || async {
            let mut options = ListOptions {
                revision,
                limit: Some(500),
                ..ListOptions::default()
            };
            let mut total = 0;
            loop {
                let page = store.list(prefix, options.clone()).await.unwrap();
                total += page.items.len();
                if !page.more() {
                    break total;
                }
                options.revision = Some(page.revision);
                options.continue_after = page.items.last().map(|kv| kv.key.clone());
            }
        })
        .await;
    }
    time_reads("get one", 1000, || async {
        usize::from(
            store
                .get("/registry/pods/default/p-04242")
                .await
                .unwrap()
                .is_some(),
        )
    })
    .await;
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let ops: usize = args
        .iter()
        .position(|a| a == "--ops")
        .and_then(|i| args.get(i + 1))
        .map_or(20_000, |v| v.parse().expect("--ops N"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        for (label, sync) in [("FULL", Synchronous::Full), ("NORMAL", Synchronous::Normal)] {
            creates(label, sync, 1, (ops / 10).max(100)).await;
            creates(label, sync, 32, ops).await;
        }
        lists(10_000).await;
    });
}
