//! The database layout, connection settings and the persisted revision counters.
//!
//! Tables:
//! - `kv`: the current version of every live key (what `get` and latest `list` read);
//! - `history`: one row per write, keyed by its revision (what past reads and watch
//!   replay read), until compaction drops rows that no revision after it needs;
//! - `meta`: the current and the compacted revision, so both survive restarts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction};

use crate::error::StoreError;
use crate::types::Revision;

/// `user_version` of the layout below.
const SCHEMA_VERSION: i64 = 1;

/// A fresh store's revision (etcd starts at 1 too; Kubernetes treats
/// `resourceVersion` "0" as "any", so no object may carry it).
pub(crate) const INITIAL_REVISION: Revision = 1;

/// `history.kind` values.
pub(crate) const KIND_CREATE: i64 = 0;
pub(crate) const KIND_UPDATE: i64 = 1;
pub(crate) const KIND_DELETE: i64 = 2;

/// How long a connection waits for another one's lock (a previous store on the same
/// file still shutting down, or a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// WAL pages after which a commit on the writer checkpoints (SQLite's default is
/// 1000; the checkpoint thread has copied most of them by then).
const WRITER_CHECKPOINT_PAGES: i64 = 4000;

/// Size the WAL file is truncated to after a restart.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key TEXT NOT NULL UNIQUE,
    value BLOB NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    revision INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER,
    value BLOB
);
CREATE INDEX IF NOT EXISTS history_key_revision ON history (key, revision, kind);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// SQLite's `synchronous` setting for the writer connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync the WAL on every commit: acknowledged writes survive a process kill and
    /// a power loss or kernel crash.
    #[default]
    Full,
    /// fsync only at checkpoints: acknowledged writes survive a process kill (the WAL
    /// is in the OS page cache), but the last commits may be lost on power loss or a
    /// kernel crash. The database itself stays consistent either way.
    Normal,
}

/// Opens the writer connection, creating the schema and the revision rows if needed.
pub(crate) fn open_writer(path: &Path, sync: Synchronous) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source: Arc::new(source),
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Incompatible {
            path: path.to_path_buf(),
            reason: format!("journal_mode is {mode}, not wal"),
        });
    }
    let sync = match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(open_err)?;
    // The checkpoint thread copies most WAL pages back off the commit path; the
    // writer's own (rarer) checkpoint then has little left to copy, and since no
    // commit runs during it, it completes, so the next commit restarts the WAL from
    // its start. The size limit trims the file after such a restart.
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
        .map_err(open_err)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
        .map_err(open_err)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(open_err)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Incompatible {
            path: path.to_path_buf(),
            reason: format!("schema version {version} is newer than this build's {SCHEMA_VERSION}"),
        });
    }
    conn.execute_batch(SCHEMA).map_err(open_err)?;
    conn.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', ?1), ('compacted', 0)",
        [INITIAL_REVISION],
    )
    .map_err(open_err)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(open_err)?;
    Ok(conn)
}

/// Opens a read-only connection to an existing store.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source: Arc::new(source),
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    Ok(conn)
}

/// Opens the connection the checkpoint thread uses. It needs write access to the
/// file, but never writes rows; it syncs like the writer (FULL) when it copies pages.
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source: Arc::new(source),
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    Ok(conn)
}

/// The persisted current and compacted revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Revisions {
    pub(crate) current: Revision,
    pub(crate) compacted: Revision,
}

/// Reads both revision counters (inside the caller's transaction, so they match the
/// rows it reads next).
pub(crate) fn read_revisions(conn: &Connection) -> rusqlite::Result<Revisions> {
    let get = |name: &str| -> rusqlite::Result<Revision> {
        let value = conn
            .prepare_cached("SELECT value FROM meta WHERE name = ?1")?
            .query_row([name], |row| row.get(0))
            .optional()?;
        Ok(value.unwrap_or(0))
    };
    Ok(Revisions {
        current: get("revision")?.max(INITIAL_REVISION),
        compacted: get("compacted")?,
    })
}

/// Persists a revision counter.
pub(crate) fn write_revision(
    tx: &Transaction<'_>,
    name: &str,
    value: Revision,
) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")?
        .execute(rusqlite::params![name, value])?;
    Ok(())
}
