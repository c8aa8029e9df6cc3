//! Every acknowledged write survives SIGKILL of the process.
//!
//! The test re-executes its own binary, running only `write_storm_child` with
//! `STRATA_STORE_STORM_DB` set: that child writes from several tasks and prints
//! `ACK <key> <revision>` after each acknowledged write. The parent kills it with
//! SIGKILL while it writes, reopens the store and checks every acknowledged write.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_store::{SqliteStore, Store};

const DB_ENV: &str = "STRATA_STORE_STORM_DB";
const TASKS: usize = 8;

/// The child side: runs only when re-executed by the parent test.
#[test]
#[ignore = "child process of acknowledged_writes_survive_sigkill"]
fn write_storm_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/storm/{task}/{i}");
                    let kv = store
                        .create(&key, Bytes::from(vec![b'x'; 256]))
                        .await
                        .unwrap();
                    ack(&key, kv.mod_revision);
                    // Every third key is updated too: an acknowledged update must
                    // survive as well.
                    if i % 3 == 0 {
                        let kv = store
                            .update(&key, Bytes::from_static(b"updated"), Some(kv.mod_revision))
                            .await
                            .unwrap();
                        ack(&key, kv.mod_revision);
                    }
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

/// Prints one acknowledgement and flushes it before the next write starts.
fn ack(key: &str, revision: i64) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ACK {key} {revision}").unwrap();
    out.flush().unwrap();
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "write_storm_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());

    // Let it write for about a second (and at least until some writes are
    // acknowledged), then kill it mid-storm.
    let started = Instant::now();
    let mut acks: Vec<(String, i64)> = Vec::new();
    let mut line = Vec::new();
    let mut killed = false;
    loop {
        if !killed && started.elapsed() > Duration::from_secs(1) && acks.len() >= 100 {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
        line.clear();
        if stdout.read_until(b'\n', &mut line).unwrap() == 0 {
            break;
        }
        // A line cut short by the kill has no newline and proves nothing.
        if line.last() != Some(&b'\n') {
            continue;
        }
        let text = String::from_utf8(line.clone()).unwrap();
        let mut parts = text.split_whitespace();
        if parts.next() != Some("ACK") {
            continue; // the test harness's own output
        }
        let key = parts.next().unwrap().to_owned();
        let revision: i64 = parts.next().unwrap().parse().unwrap();
        acks.push((key, revision));
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child stopped on its own: {status:?}");
    assert!(acks.len() >= 100);

    // Revisions are unique, and each task's acknowledged revisions increase.
    let unique: HashSet<i64> = acks.iter().map(|(_, rev)| *rev).collect();
    assert_eq!(
        unique.len(),
        acks.len(),
        "two acknowledged writes share a revision"
    );
    let mut per_task: HashMap<&str, i64> = HashMap::new();
    for (key, revision) in &acks {
        let task = key.rsplit_once('/').unwrap().0;
        let last = per_task.insert(task, *revision).unwrap_or(0);
        assert!(
            *revision > last,
            "{key} acknowledged at {revision} after {last}"
        );
    }

    let store = SqliteStore::open(&path).unwrap();
    let current = store.current_revision().await.unwrap();
    let max_acked = acks.iter().map(|(_, rev)| *rev).max().unwrap();
    assert!(
        current >= max_acked,
        "revision went back: {current} < {max_acked}"
    );
    for (key, revision) in &acks {
        let kv = store.get(key).await.unwrap();
        let kv = kv.unwrap_or_else(|| panic!("acknowledged {key} at {revision} is gone"));
        assert!(
            kv.mod_revision >= *revision,
            "{key} is at {} < acknowledged {revision}",
            kv.mod_revision
        );
    }
    let next = store.create("/after/restart", Bytes::new()).await.unwrap();
    assert_eq!(next.mod_revision, current + 1);
    eprintln!(
        "{} acknowledged writes survived SIGKILL (store revision {current})",
        acks.len()
    );
}
