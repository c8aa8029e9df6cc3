//! Watches against a real SQLite store: replay then live without gaps or duplicates
//! (from the in-memory ring and from the history table), prefix filtering, and slow
//! watchers closed without holding writers up.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use strata_store::{EventKind, SqliteOptions, SqliteStore, Store, StoreError, Watch};

fn open(dir: &tempfile::TempDir, options: SqliteOptions) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open_with(dir.path().join("state.db"), options).unwrap())
}

fn val(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

/// Reads events until one at `until` arrives; returns their revisions.
async fn revisions_until(watch: &mut Watch, until: i64) -> Vec<i64> {
    let mut seen = Vec::new();
    while seen.last() != Some(&until) {
        let event = watch.next().await.unwrap().unwrap();
        assert_eq!(event.revision, event.kv.mod_revision);
        seen.push(event.revision);
    }
    seen
}

/// 4 tasks write 100 keys each (create, update, delete mixed in) while a watch from
/// `from` (before some existing history) reads: it must see every revision after
/// `from` exactly once, in order.
async fn replay_then_live(options: SqliteOptions) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, options);
    for i in 0..50 {
        store
            .create(&format!("/w/pre/{i}"), val("x"))
            .await
            .unwrap();
    }
    let from = store.current_revision().await.unwrap() - 30;
    let mut watch = store.watch("/w/", from).await.unwrap();
    let mut writers = Vec::new();
    for task in 0..4 {
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            for i in 0..100 {
                let key = format!("/w/{task}/{i}");
                let kv = store.create(&key, val("a")).await.unwrap();
                if i % 3 == 0 {
                    store
                        .update(&key, val("b"), Some(kv.mod_revision))
                        .await
                        .unwrap();
                }
                if i % 5 == 0 {
                    store.delete(&key, None).await.unwrap();
                }
            }
        }));
    }
    // Read while the writers run, so replay and the switch to live race with them.
    let early = revisions_until(&mut watch, from + 100).await;
    for writer in writers {
        writer.await.unwrap();
    }
    let last = store.current_revision().await.unwrap();
    let mut seen = early;
    if last > from + 100 {
        seen.extend(revisions_until(&mut watch, last).await);
    }
    let expected: Vec<i64> = (from + 1..=last).collect();
    assert_eq!(seen.len(), expected.len(), "no gaps, no duplicates");
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_from_the_ring_then_goes_live() {
    replay_then_live(SqliteOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_from_history_when_the_ring_is_too_short() {
    // A ring of 8 events forces replay through SQLite and repeated attach attempts.
    replay_then_live(SqliteOptions {
        event_ring: 8,
        ..SqliteOptions::default()
    })
    .await;
}

#[tokio::test]
async fn watch_events_carry_kinds_values_and_previous_versions() {
    let dir = tempfile::tempdir().unwrap();
    // No ring: the replayed half comes from SQLite, the live half from memory; both
    // must look the same.
    let store = open(
        &dir,
        SqliteOptions {
            event_ring: 0,
            ..SqliteOptions::default()
        },
    );
    let start = store.current_revision().await.unwrap();
    let created = store.create("/e/k", val("1")).await.unwrap();
    let updated = store.update("/e/k", val("2"), None).await.unwrap();
    store.delete("/e/k", None).await.unwrap();
    let replayed = store.watch("/e/", start).await.unwrap();
    let live = store
        .watch("/e/", store.current_revision().await.unwrap())
        .await
        .unwrap();
    let created2 = store.create("/e/k", val("3")).await.unwrap();
    let updated2 = store.update("/e/k", val("4"), None).await.unwrap();
    store.delete("/e/k", None).await.unwrap();

    let mut replayed = replayed;
    let mut live = live;
    let mut events = Vec::new();
    for _ in 0..6 {
        events.push(replayed.next().await.unwrap().unwrap());
    }
    for _ in 0..3 {
        events.push(live.next().await.unwrap().unwrap());
    }
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    use EventKind::*;
    assert_eq!(
        kinds,
        vec![
            Create, Update, Delete, Create, Update, Delete, Create, Update, Delete
        ]
    );
    // The first three came from SQLite, the copies of the next three from memory.
    for (history, memory) in [
        (&events[3], &events[6]),
        (&events[4], &events[7]),
        (&events[5], &events[8]),
    ] {
        assert_eq!(history, memory);
    }
    assert_eq!(events[0].kv, created);
    assert_eq!(events[0].prev_kv, None);
    assert_eq!(events[1].kv, updated);
    assert_eq!(events[1].prev_kv, Some(created));
    assert_eq!(events[2].prev_kv, Some(updated));
    assert!(events[2].kv.value.is_empty());
    assert_eq!(events[4].kv, updated2);
    assert_eq!(events[4].prev_kv, Some(created2));
}

#[tokio::test]
async fn watch_sees_only_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, SqliteOptions::default());
    let from = store.current_revision().await.unwrap();
    let mut pods = store.watch("/registry/pods/", from).await.unwrap();
    store.create("/registry/podsx/a", val("x")).await.unwrap();
    store
        .create("/registry/services/a", val("x"))
        .await
        .unwrap();
    let pod = store
        .create("/registry/pods/default/a", val("x"))
        .await
        .unwrap();
    store.create("/registry/secrets/a", val("x")).await.unwrap();
    let pod2 = store
        .create("/registry/pods/other/b", val("x"))
        .await
        .unwrap();
    assert_eq!(pods.next().await.unwrap().unwrap().kv, pod);
    assert_eq!(pods.next().await.unwrap().unwrap().kv, pod2);
    // The same from history.
    let mut replay = store.watch("/registry/pods/", from).await.unwrap();
    assert_eq!(replay.next().await.unwrap().unwrap().kv, pod);
    assert_eq!(replay.next().await.unwrap().unwrap().kv, pod2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_is_closed_and_writers_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(
        &dir,
        SqliteOptions {
            watcher_buffer: 4,
            ..SqliteOptions::default()
        },
    );
    let from = store.current_revision().await.unwrap();
    let mut slow = store.watch("/s/", from).await.unwrap();
    // Attach the watcher to the live stream: it sees the first write.
    store.create("/s/0", val("x")).await.unwrap();
    assert_eq!(slow.next().await.unwrap().unwrap().revision, from + 1);
    let mut fast = store.watch("/s/", from + 1).await.unwrap();
    // 100 writes while the slow watcher reads nothing: every one is acknowledged.
    for i in 1..=100 {
        store.create(&format!("/s/{i}"), val("x")).await.unwrap();
        // The fast one keeps up.
        assert_eq!(fast.next().await.unwrap().unwrap().revision, from + 1 + i);
    }
    // The slow one gets what fit in its buffer, in order, then the error, then ends.
    let mut delivered = Vec::new();
    let err = loop {
        match slow.next().await.unwrap() {
            Ok(event) => delivered.push(event.revision),
            Err(err) => break err,
        }
    };
    assert!(
        matches!(err, StoreError::WatchLagged { ref prefix } if prefix == "/s/"),
        "{err:?}"
    );
    assert_eq!(delivered, (from + 2..from + 6).collect::<Vec<_>>());
    assert!(slow.next().await.is_none());
    // The fast watcher is unaffected.
    store.create("/s/last", val("x")).await.unwrap();
    assert_eq!(fast.next().await.unwrap().unwrap().kv.key, "/s/last");
}

#[tokio::test]
async fn watches_end_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, SqliteOptions::default());
    let mut watch = store
        .watch("/", store.current_revision().await.unwrap())
        .await
        .unwrap();
    store.create("/x", val("x")).await.unwrap();
    drop(store);
    assert!(watch.next().await.unwrap().is_ok());
    assert!(watch.next().await.is_none());
}
