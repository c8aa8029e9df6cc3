//! Reads: a small pool of read-only connections used from `spawn_blocking`, and the
//! queries behind `get`, `list` and watch replay. Each read runs in one SQLite read
//! transaction, so the revision it reports matches the rows it returns (WAL readers
//! see a snapshot and never wait for the writer).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::schema::{self, KIND_CREATE, KIND_DELETE, KIND_UPDATE};
use crate::error::StoreError;
use crate::types::{Event, EventKind, KeyValue, ListOptions, ListResult, Revision, prefix_end};

/// Read-only connections, opened on demand and kept for reuse.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl Readers {
    pub(crate) fn new(path: PathBuf, max_idle: usize) -> Self {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// Runs `read` on a pooled connection on tokio's blocking pool. `key` names the
    /// read in errors.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, key: &str, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let popped = readers
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut conn = match popped {
                Some(conn) => conn,
                None => schema::open_reader(&readers.path)?,
            };
            let result = read(&mut conn);
            let mut idle = readers.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < readers.max_idle {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::ReadTask {
            key: key.to_owned(),
        })?
    }
}

fn read_err(key: &str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
    move |source| StoreError::Read {
        key: key.to_owned(),
        source: Arc::new(source),
    }
}

/// `key, value, create_revision, mod_revision` as a [`KeyValue`].
fn key_value(row: &Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key: row.get(0)?,
        value: Bytes::from(row.get::<_, Vec<u8>>(1)?),
        create_revision: row.get(2)?,
        mod_revision: row.get(3)?,
    })
}

/// The current version of `key`.
pub(crate) fn get(conn: &Connection, key: &str) -> Result<Option<KeyValue>, StoreError> {
    conn.prepare_cached("SELECT key, value, create_revision, mod_revision FROM kv WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row([key], key_value).optional())
        .map_err(read_err(key))
}

/// The key range a list reads: after `continue_after` (or from `prefix`), before the
/// end of the prefix. Renders the `WHERE` terms for a column named `key`.
struct Range {
    start: String,
    start_exclusive: bool,
    end: Option<String>,
}

impl Range {
    fn new(prefix: &str, continue_after: Option<&str>) -> Self {
        match continue_after {
            Some(after) if after >= prefix => Range {
                start: after.to_owned(),
                start_exclusive: true,
                end: prefix_end(prefix),
            },
            _ => Range {
                start: prefix.to_owned(),
                start_exclusive: false,
                end: prefix_end(prefix),
            },
        }
    }

    /// `key >= ?1 [AND key < ?2]` (`>` when exclusive); the end is always bound as
    /// `?2` (NULL when unbounded) so parameter numbers stay fixed.
    fn sql(&self, column: &str) -> String {
        let op = if self.start_exclusive { ">" } else { ">=" };
        match self.end {
            Some(_) => format!("{column} {op} ?1 AND {column} < ?2"),
            None => format!("{column} {op} ?1 AND ?2 IS NULL"),
        }
    }
}

/// One page of the keys under `prefix`.
pub(crate) fn list(
    conn: &mut Connection,
    prefix: &str,
    options: &ListOptions,
) -> Result<ListResult, StoreError> {
    let tx = conn.transaction().map_err(read_err(prefix))?;
    let revisions = schema::read_revisions(&tx).map_err(read_err(prefix))?;
    let at = match options.revision {
        None | Some(0) => revisions.current,
        Some(at) => at,
    };
    if at > revisions.current {
        return Err(StoreError::FutureRevision {
            requested: at,
            current: revisions.current,
        });
    }
    if at < revisions.compacted {
        return Err(StoreError::Compacted {
            requested: at,
            compacted: revisions.compacted,
        });
    }
    let latest = at == revisions.current;
    let limit = options.limit.filter(|&n| n > 0);
    let range = Range::new(prefix, options.continue_after.as_deref());
    // One row more than asked tells whether more follow.
    let fetch = limit.map_or(-1, |n| i64::try_from(n).map_or(-1, |n| n.saturating_add(1)));
    let mut items = tx
        .prepare_cached(&range_sql(latest, &range, false))
        .and_then(|mut stmt| {
            stmt.query_map(
                params![range.start, range.end, fetch, at, KIND_DELETE],
                key_value,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(read_err(prefix))?;
    let mut remaining = 0;
    if let Some(limit) = limit
        && items.len() > limit
    {
        items.truncate(limit);
        let rest = Range {
            start: items.last().map(|kv| kv.key.clone()).unwrap_or_default(),
            start_exclusive: true,
            end: range.end,
        };
        let counted: i64 = tx
            .prepare_cached(&range_sql(latest, &rest, true))
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![rest.start, rest.end, fetch, at, KIND_DELETE],
                    |row| row.get(0),
                )
            })
            .map_err(read_err(prefix))?;
        remaining = u64::try_from(counted).unwrap_or(0);
    }
    Ok(ListResult {
        items,
        revision: at,
        remaining,
    })
}

/// The query of a list page (or, with `count`, of how many items a range holds).
/// Parameters: `?1`/`?2` the range, `?3` the row limit, `?4` the revision, `?5` the
/// delete kind (unused ones are compared with themselves so every query takes the
/// same five). Latest reads come from `kv`. Past ones group each key's history rows
/// at or before `?4` and keep the newest unless it is a delete: SQLite takes the bare
/// columns of a `MAX()` aggregate from the row holding the maximum, and the
/// `(key, revision, kind)` index lets it do so in key order without a sort.
fn range_sql(latest: bool, range: &Range, count: bool) -> String {
    if latest {
        let terms = range.sql("key");
        let checks = "?4 = ?4 AND ?5 = ?5";
        return if count {
            format!("SELECT COUNT(*) FROM kv WHERE {terms} AND ?3 = ?3 AND {checks}")
        } else {
            format!(
                "SELECT key, value, create_revision, mod_revision FROM kv \
                 WHERE {terms} AND {checks} ORDER BY key LIMIT ?3"
            )
        };
    }
    let terms = range.sql("h.key");
    let newest = format!(
        "FROM history h WHERE {terms} AND h.revision <= ?4 \
         GROUP BY h.key HAVING h.kind != ?5"
    );
    if count {
        format!("SELECT COUNT(*) FROM (SELECT h.kind, MAX(h.revision) {newest}) WHERE ?3 = ?3")
    } else {
        format!(
            "SELECT h.key, h.value, h.create_revision, MAX(h.revision), h.kind {newest} \
             ORDER BY h.key LIMIT ?3"
        )
    }
}

/// A page of history for a watch: the events after a revision, and how far the page
/// covers (every event up to `covered_to` that matches is in `events`).
pub(crate) struct HistoryPage {
    pub(crate) events: Vec<Event>,
    pub(crate) covered_to: Revision,
}

/// Up to `limit` events under `prefix` after revision `after`, oldest first.
pub(crate) fn history_page(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    limit: usize,
) -> Result<HistoryPage, StoreError> {
    let replay_err = |source| StoreError::WatchReplay {
        prefix: prefix.to_owned(),
        source: Arc::new(source),
    };
    let tx = conn.transaction().map_err(replay_err)?;
    let revisions = schema::read_revisions(&tx).map_err(replay_err)?;
    if after < revisions.compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted: revisions.compacted,
        });
    }
    let range = Range::new(prefix, None);
    let sql = format!(
        "SELECT h.revision, h.key, h.kind, h.create_revision, h.value, \
                p.revision, p.create_revision, p.value \
         FROM history h LEFT JOIN history p ON p.revision = h.prev_revision \
         WHERE h.revision > ?3 AND h.revision <= ?4 AND {} \
         ORDER BY h.revision LIMIT ?5",
        range.sql("h.key")
    );
    let limit_sql = i64::try_from(limit).unwrap_or(i64::MAX);
    let events = tx
        .prepare_cached(&sql)
        .and_then(|mut stmt| {
            stmt.query_map(
                params![range.start, range.end, after, revisions.current, limit_sql],
                history_event,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(replay_err)?;
    let covered_to = if events.len() < limit {
        revisions.current
    } else {
        events.last().map_or(revisions.current, |e| e.revision)
    };
    Ok(HistoryPage { events, covered_to })
}

/// A `history` row (joined with its previous version) as a watch [`Event`].
fn history_event(row: &Row<'_>) -> rusqlite::Result<Event> {
    let revision: Revision = row.get(0)?;
    let key: String = row.get(1)?;
    let kind: i64 = row.get(2)?;
    let value: Option<Vec<u8>> = row.get(4)?;
    let prev_revision: Option<Revision> = row.get(5)?;
    let prev_kv = match prev_revision {
        Some(prev_revision) => Some(KeyValue {
            key: key.clone(),
            value: Bytes::from(row.get::<_, Option<Vec<u8>>>(7)?.unwrap_or_default()),
            create_revision: row.get(6)?,
            mod_revision: prev_revision,
        }),
        None => None,
    };
    let (kind, kv) = match kind {
        KIND_DELETE => (
            EventKind::Delete,
            KeyValue {
                key,
                value: Bytes::new(),
                create_revision: 0,
                mod_revision: revision,
            },
        ),
        KIND_CREATE | KIND_UPDATE => (
            if kind == KIND_CREATE {
                EventKind::Create
            } else {
                EventKind::Update
            },
            KeyValue {
                key,
                value: Bytes::from(value.unwrap_or_default()),
                create_revision: row.get(3)?,
                mod_revision: revision,
            },
        ),
        other => {
            return Err(rusqlite::Error::IntegralValueOutOfRange(2, other));
        }
    };
    Ok(Event {
        kind,
        kv,
        prev_kv,
        revision,
    })
}
