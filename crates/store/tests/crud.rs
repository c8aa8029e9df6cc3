//! Reads and writes against a real SQLite store in a tempdir: preconditions, list
//! pagination, reads at past revisions, compaction and reopening.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use strata_store::{ListOptions, SqliteStore, Store, StoreError};

fn open(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(dir.path().join("state.db")).unwrap())
}

fn val(s: &str) -> Bytes {
    Bytes::from(s.to_owned())
}

#[tokio::test]
async fn create_get_update_delete_with_preconditions() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let start = store.current_revision().await.unwrap();
    assert_eq!(start, 1, "a fresh store is at revision 1");
    let key = "/registry/pods/default/nginx";

    let created = store.create(key, val("v1")).await.unwrap();
    assert_eq!(created.mod_revision, start + 1);
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(store.get(key).await.unwrap(), Some(created.clone()));

    let err = store.create(key, val("again")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyExists { key: ref k } if k == key),
        "{err:?}"
    );
    assert_eq!(
        store.current_revision().await.unwrap(),
        start + 1,
        "a failed write bumps nothing"
    );

    let updated = store
        .update(key, val("v2"), Some(created.mod_revision))
        .await
        .unwrap();
    assert_eq!(updated.mod_revision, start + 2);
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.value, val("v2"));

    // A stale resourceVersion conflicts and names the current one.
    let err = store
        .update(key, val("v3"), Some(created.mod_revision))
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict {
            key: k,
            expected,
            current,
        } => {
            assert_eq!(
                (k.as_str(), expected, current),
                (key, created.mod_revision, updated.mod_revision)
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.get(key).await.unwrap().unwrap().value, val("v2"));

    // No precondition: unconditional update.
    let forced = store.update(key, val("v3"), None).await.unwrap();
    assert_eq!(forced.mod_revision, start + 3);

    let err = store
        .delete(key, Some(updated.mod_revision))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    let deleted = store.delete(key, Some(forced.mod_revision)).await.unwrap();
    assert_eq!(deleted.prev_kv, forced);
    assert_eq!(deleted.revision, start + 4);
    assert_eq!(store.get(key).await.unwrap(), None);

    let err = store.update(key, val("gone"), None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    let err = store.delete(key, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");

    // Re-creating a deleted key starts a new lifetime.
    let again = store.create(key, val("v4")).await.unwrap();
    assert_eq!(again.create_revision, start + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cas_updates_let_exactly_one_win() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let kv = store.create("/k", val("0")).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .update("/k", val(&i.to_string()), Some(kv.mod_revision))
                .await
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict { current, .. }) => assert_eq!(current, kv.mod_revision + 1),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(store.current_revision().await.unwrap(), kv.mod_revision + 1);
}

#[tokio::test]
async fn list_filters_by_prefix_and_pages_with_continue() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for i in 0..10 {
        store
            .create(&format!("/registry/pods/default/p{i:02}"), val("x"))
            .await
            .unwrap();
    }
    store
        .create("/registry/pods/kube-system/dns", val("x"))
        .await
        .unwrap();
    store
        .create("/registry/podsx/default/other", val("x"))
        .await
        .unwrap();
    store
        .create("/registry/pods/default", val("not under the prefix"))
        .await
        .unwrap();

    let all = store
        .list("/registry/pods/default/", ListOptions::default())
        .await
        .unwrap();
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys.len(), 10);
    assert_eq!(keys[0], "/registry/pods/default/p00");
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "key order: {keys:?}");
    assert_eq!(all.remaining, 0);
    assert_eq!(all.revision, store.current_revision().await.unwrap());

    let pods = store
        .list("/registry/pods/", ListOptions::default())
        .await
        .unwrap();
    // 10 + kube-system/dns + "/registry/pods/default" itself; not /registry/podsx/.
    assert_eq!(pods.items.len(), 12);
    assert!(
        pods.items
            .iter()
            .all(|kv| kv.key.starts_with("/registry/pods/"))
    );

    // Page through 4 at a time at the first page's revision while writes go on.
    let mut options = ListOptions {
        limit: Some(4),
        ..ListOptions::default()
    };
    let mut seen = Vec::new();
    let mut remainders = Vec::new();
    loop {
        let page = store
            .list("/registry/pods/default/", options.clone())
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|kv| kv.key.clone()));
        remainders.push(page.remaining);
        if !page.more() {
            break;
        }
        store
            .create(
                &format!("/registry/pods/default/p{:02}", 50 + seen.len()),
                val("late"),
            )
            .await
            .unwrap();
        options.revision = Some(page.revision);
        options.continue_after = page.items.last().map(|kv| kv.key.clone());
    }
    let expected: Vec<_> = (0..10)
        .map(|i| format!("/registry/pods/default/p{i:02}"))
        .collect();
    assert_eq!(
        seen, expected,
        "pages read one snapshot, without the later creates"
    );
    assert_eq!(remainders, vec![6, 2, 0]);

    let empty = store
        .list("/registry/nothing/", ListOptions::default())
        .await
        .unwrap();
    assert!(empty.items.is_empty());
}

#[tokio::test]
async fn list_at_a_past_revision_reads_that_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a1 = store.create("/r/a", val("a1")).await.unwrap();
    let b1 = store.create("/r/b", val("b1")).await.unwrap();
    let snapshot = b1.mod_revision;
    let a2 = store.update("/r/a", val("a2"), None).await.unwrap();
    let b_deleted = store.delete("/r/b", None).await.unwrap();
    store.create("/r/c", val("c1")).await.unwrap();

    // At the delete's revision, b's newest version is the delete: b is absent.
    let after_delete = store
        .list(
            "/r/",
            ListOptions {
                revision: Some(b_deleted.revision),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(after_delete.items, vec![a2]);

    let past = store
        .list(
            "/r/",
            ListOptions {
                revision: Some(snapshot),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(past.revision, snapshot);
    assert_eq!(past.items, vec![a1.clone(), b1]);

    let older = store
        .list(
            "/r/",
            ListOptions {
                revision: Some(a1.mod_revision),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(older.items, vec![a1]);

    let limited = store
        .list(
            "/r/",
            ListOptions {
                revision: Some(snapshot),
                limit: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((limited.items.len(), limited.remaining), (1, 1));

    let now = store.list("/r/", ListOptions::default()).await.unwrap();
    let values: Vec<_> = now.items.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(values, vec![val("a2"), val("c1")]);

    let future = now.revision + 1;
    let err = store
        .list(
            "/r/",
            ListOptions {
                revision: Some(future),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");
}

#[tokio::test]
async fn compaction_keeps_later_snapshots_and_refuses_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let kept = store.create("/c/kept", val("old")).await.unwrap();
    store.create("/c/gone", val("x")).await.unwrap();
    store.update("/c/gone", val("y"), None).await.unwrap();
    let deleted = store.delete("/c/gone", None).await.unwrap();
    let changed = store.create("/c/changed", val("1")).await.unwrap();
    let compact_at = changed.mod_revision;
    store.update("/c/changed", val("2"), None).await.unwrap();

    store.compact(compact_at).await.unwrap();

    let err = store
        .list(
            "/c/",
            ListOptions {
                revision: Some(compact_at - 1),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Compacted { requested, compacted } if requested == compact_at - 1 && compacted == compact_at),
        "{err:?}"
    );
    let err = store.watch("/c/", compact_at - 1).await.unwrap_err();
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
    let err = store.compact(compact_at).await.unwrap_err();
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
    let err = store
        .compact(store.current_revision().await.unwrap() + 1)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::FutureRevision { .. }), "{err:?}");

    // The snapshot at the compacted revision is whole: the newest version of every
    // key at that point survived, the deleted key stays deleted.
    let at = store
        .list(
            "/c/",
            ListOptions {
                revision: Some(compact_at),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at.items, vec![changed.clone(), kept]);
    assert!(deleted.revision < compact_at);

    // A watch from the compacted revision still gets the update after it, with its
    // previous version.
    let mut watch = store.watch("/c/", compact_at).await.unwrap();
    let event = watch.next().await.unwrap().unwrap();
    assert_eq!(event.revision, compact_at + 1);
    assert_eq!(event.prev_kv, Some(changed));
}

#[tokio::test]
async fn reopening_keeps_data_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let (kv, revision) = {
        let store = open(&dir);
        let kv = store.create("/keep/me", val("data")).await.unwrap();
        store.create("/keep/other", val("x")).await.unwrap();
        store.delete("/keep/other", None).await.unwrap();
        store.compact(kv.mod_revision).await.unwrap();
        (kv, store.current_revision().await.unwrap())
    };
    let store = open(&dir);
    assert_eq!(store.current_revision().await.unwrap(), revision);
    assert_eq!(store.get("/keep/me").await.unwrap(), Some(kv.clone()));
    assert_eq!(store.get("/keep/other").await.unwrap(), None);
    let err = store
        .watch("/keep/", kv.mod_revision - 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Compacted { .. }),
        "compaction survives too: {err:?}"
    );
    let next = store.create("/keep/new", val("y")).await.unwrap();
    assert_eq!(
        next.mod_revision,
        revision + 1,
        "revisions go on from where they were"
    );
}
