//! The single writer thread and its group commit.
//!
//! Callers queue typed requests; the writer takes every request waiting (up to a
//! batch limit), applies them in one SQLite transaction, each validated on its own
//! (a failed precondition fails only that write), commits once, then publishes the
//! events in revision order and acknowledges each caller. One fsync thus serves a
//! whole group, which is what lets many concurrent clients write quickly with
//! `synchronous=FULL`. If SQLite itself fails, the transaction rolls back and every
//! write in the group gets the error.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::Shared;
use super::schema::{self, KIND_CREATE, KIND_DELETE, KIND_UPDATE};
use crate::error::StoreError;
use crate::types::{Deleted, Event, EventKind, KeyValue, Revision};

/// A write the caller wants.
pub(crate) enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

impl Op {
    pub(crate) fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }
}

/// What a write did.
pub(crate) enum Outcome {
    Put(KeyValue),
    Deleted(Deleted),
}

/// A message to the writer thread.
pub(crate) enum Request {
    Write {
        op: Op,
        reply: oneshot::Sender<Result<Outcome, StoreError>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// A write waiting in the current group.
struct Pending {
    op: Op,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// The writer thread's state.
pub(crate) struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    revision: Revision,
    compacted: Revision,
    max_batch: usize,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        shared: Arc<Shared>,
        revisions: schema::Revisions,
        max_batch: usize,
    ) -> Self {
        Writer {
            conn,
            shared,
            revision: revisions.current,
            compacted: revisions.compacted,
            max_batch: max_batch.max(1),
        }
    }

    /// Serves requests until every sender is gone, then ends all watches.
    pub(crate) fn run(mut self, requests: Receiver<Request>) {
        // Live watches end however this returns, a panic included: no event follows.
        let _close_watches = CloseWatches(Arc::clone(&self.shared));
        let mut group = Vec::with_capacity(self.max_batch);
        while let Ok(first) = requests.recv() {
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Write { op, reply } => group.push(Pending { op, reply }),
                    Request::Compact { revision, reply } => {
                        // Writes queued before the compaction commit before it.
                        self.commit_group(&mut group);
                        let _ = reply.send(self.compact(revision));
                    }
                }
                if group.len() < self.max_batch {
                    next = requests.try_recv().ok();
                }
            }
            self.commit_group(&mut group);
        }
    }

    /// Applies, commits, publishes and acknowledges the writes in `group`.
    fn commit_group(&mut self, group: &mut Vec<Pending>) {
        if group.is_empty() {
            return;
        }
        match apply_group(&mut self.conn, self.revision, group) {
            Ok((revision, outcomes, events)) => {
                self.revision = revision;
                self.shared.revision.store(revision, Ordering::Release);
                self.shared.hub().publish(events);
                for (pending, outcome) in group.drain(..).zip(outcomes) {
                    let _ = pending.reply.send(outcome);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, writes = group.len(), "group commit failed");
                for pending in group.drain(..) {
                    let _ = pending.reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Drops history at and before `revision` except each key's newest version.
    fn compact(&mut self, revision: Revision) -> Result<(), StoreError> {
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        if revision <= self.compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: self.compacted,
            });
        }
        let compact_err = |source| StoreError::Compact {
            revision,
            source: Arc::new(source),
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(compact_err)?;
        // A row is still needed if it is its key's newest at or before `revision`
        // and not a delete: reads at later revisions and the prev_kv of later
        // events use it.
        tx.execute(
            "DELETE FROM history WHERE revision <= ?1 AND (kind = ?2 OR EXISTS ( \
                 SELECT 1 FROM history n WHERE n.key = history.key \
                 AND n.revision > history.revision AND n.revision <= ?1))",
            params![revision, KIND_DELETE],
        )
        .map_err(compact_err)?;
        schema::write_revision(&tx, "compacted", revision).map_err(compact_err)?;
        tx.commit().map_err(compact_err)?;
        self.compacted = revision;
        self.shared.compacted.store(revision, Ordering::Release);
        Ok(())
    }
}

/// Closes the hub when the writer thread ends.
struct CloseWatches(Arc<Shared>);

impl Drop for CloseWatches {
    fn drop(&mut self) {
        self.0.hub().close();
    }
}

type Applied = (Revision, Vec<Result<Outcome, StoreError>>, Vec<Arc<Event>>);

/// Applies a group in one transaction: returns the new revision, each write's
/// outcome and the events of those that succeeded.
fn apply_group(
    conn: &mut Connection,
    mut revision: Revision,
    group: &[Pending],
) -> Result<Applied, StoreError> {
    let commit_err = |source| StoreError::Commit {
        writes: group.len(),
        source: Arc::new(source),
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(commit_err)?;
    let mut outcomes = Vec::with_capacity(group.len());
    let mut events = Vec::with_capacity(group.len());
    for pending in group {
        let applied =
            apply(&tx, &pending.op, revision + 1).map_err(|source| StoreError::Write {
                key: pending.op.key().to_owned(),
                source: Arc::new(source),
            })?;
        match applied {
            Ok((outcome, event)) => {
                revision += 1;
                outcomes.push(Ok(outcome));
                events.push(Arc::new(event));
            }
            Err(rejected) => outcomes.push(Err(rejected)),
        }
    }
    if !events.is_empty() {
        schema::write_revision(&tx, "revision", revision).map_err(commit_err)?;
    }
    tx.commit().map_err(commit_err)?;
    Ok((revision, outcomes, events))
}

/// Applies one write at `revision`: `Ok(Err(_))` when its precondition fails.
fn apply(
    tx: &Transaction<'_>,
    op: &Op,
    revision: Revision,
) -> rusqlite::Result<Result<(Outcome, Event), StoreError>> {
    let key = op.key();
    let current = tx
        .prepare_cached("SELECT key, value, create_revision, mod_revision FROM kv WHERE key = ?1")?
        .query_row([key], |row| {
            Ok(KeyValue {
                key: row.get(0)?,
                value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
                create_revision: row.get(2)?,
                mod_revision: row.get(3)?,
            })
        })
        .optional()?;
    let (current, expected) = match (op, current) {
        (Op::Create { value, .. }, None) => {
            tx.prepare_cached(
                "INSERT INTO kv (key, value, create_revision, mod_revision) \
                 VALUES (?1, ?2, ?3, ?3)",
            )?
            .execute(params![key, value.as_ref(), revision])?;
            insert_history(tx, revision, key, KIND_CREATE, revision, None, Some(value))?;
            let kv = KeyValue {
                key: key.to_owned(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            };
            let event = Event {
                kind: EventKind::Create,
                kv: kv.clone(),
                prev_kv: None,
                revision,
            };
            return Ok(Ok((Outcome::Put(kv), event)));
        }
        (Op::Create { .. }, Some(_)) => {
            return Ok(Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            }));
        }
        (Op::Update { .. } | Op::Delete { .. }, None) => {
            return Ok(Err(StoreError::NotFound {
                key: key.to_owned(),
            }));
        }
        (Op::Update { expected, .. } | Op::Delete { expected, .. }, Some(current)) => {
            (current, *expected)
        }
    };
    if let Some(expected) = expected
        && expected != current.mod_revision
    {
        return Ok(Err(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            current: current.mod_revision,
        }));
    }
    let create_revision = current.create_revision;
    let prev = Some(current.mod_revision);
    if let Op::Update { value, .. } = op {
        tx.prepare_cached("UPDATE kv SET value = ?2, mod_revision = ?3 WHERE key = ?1")?
            .execute(params![key, value.as_ref(), revision])?;
        insert_history(
            tx,
            revision,
            key,
            KIND_UPDATE,
            create_revision,
            prev,
            Some(value),
        )?;
        let kv = KeyValue {
            key: key.to_owned(),
            value: value.clone(),
            create_revision,
            mod_revision: revision,
        };
        let event = Event {
            kind: EventKind::Update,
            kv: kv.clone(),
            prev_kv: Some(current),
            revision,
        };
        return Ok(Ok((Outcome::Put(kv), event)));
    }
    tx.prepare_cached("DELETE FROM kv WHERE key = ?1")?
        .execute([key])?;
    insert_history(tx, revision, key, KIND_DELETE, create_revision, prev, None)?;
    let event = Event {
        kind: EventKind::Delete,
        kv: KeyValue {
            key: key.to_owned(),
            value: Bytes::new(),
            create_revision: 0,
            mod_revision: revision,
        },
        prev_kv: Some(current.clone()),
        revision,
    };
    let deleted = Deleted {
        prev_kv: current,
        revision,
    };
    Ok(Ok((Outcome::Deleted(deleted), event)))
}

fn insert_history(
    tx: &Transaction<'_>,
    revision: Revision,
    key: &str,
    kind: i64,
    create_revision: Revision,
    prev_revision: Option<Revision>,
    value: Option<&Bytes>,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO history (revision, key, kind, create_revision, prev_revision, value) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        revision,
        key,
        kind,
        create_revision,
        prev_revision,
        value.map(|v| v.as_ref())
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(op: Op) -> (Pending, oneshot::Receiver<Result<Outcome, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        (Pending { op, reply }, answer)
    }

    fn create(key: &str) -> Op {
        Op::Create {
            key: key.to_owned(),
            value: Bytes::from_static(b"v"),
        }
    }

    #[test]
    fn a_failed_precondition_fails_only_its_own_write_in_a_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn =
            schema::open_writer(&dir.path().join("s.db"), schema::Synchronous::Full).unwrap();
        let ops = vec![
            create("/a"),
            create("/a"), // exists by now: rejected
            Op::Update {
                key: "/a".into(),
                value: Bytes::from_static(b"w"),
                expected: Some(2), // the create above is revision 2
            },
            Op::Delete {
                key: "/b".into(),
                expected: None,
            }, // missing: rejected
            Op::Update {
                key: "/a".into(),
                value: Bytes::from_static(b"x"),
                expected: Some(2), // stale after the update at 3
            },
            create("/b"),
        ];
        let group: Vec<Pending> = ops.into_iter().map(|op| pending(op).0).collect();
        let (revision, outcomes, events) = apply_group(&mut conn, 1, &group).unwrap();
        assert_eq!(revision, 4);
        let revisions: Vec<_> = events.iter().map(|e| e.revision).collect();
        assert_eq!(revisions, vec![2, 3, 4]);
        let failed: Vec<_> = outcomes
            .iter()
            .map(|o| match o {
                Ok(_) => "ok",
                Err(StoreError::AlreadyExists { .. }) => "exists",
                Err(StoreError::NotFound { .. }) => "missing",
                Err(StoreError::Conflict { current: 3, .. }) => "conflict at 3",
                Err(_) => "other",
            })
            .collect();
        assert_eq!(
            failed,
            vec!["ok", "exists", "ok", "missing", "conflict at 3", "ok"]
        );
        let stored = schema::read_revisions(&conn).unwrap();
        assert_eq!(stored.current, 4, "the group's revision is persisted");
        let history: i64 = conn
            .query_row("SELECT COUNT(*) FROM history", [], |row| row.get(0))
            .unwrap();
        assert_eq!(history, 3);
    }
}
