//! WAL checkpoints on their own thread, so the writer never copies pages back into
//! the database file (and fsyncs it) in the middle of a group commit.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the threshold,
//! which turns into a latency spike for every write in that group. This thread runs
//! a `PASSIVE` checkpoint (which never blocks the writer or readers) at a fixed
//! interval, and once more when the writer stops. It cannot alone keep the WAL short:
//! under steady writes new frames arrive while it copies, so the WAL is never fully
//! copied and never restarts. The writer keeps a (raised) automatic checkpoint for
//! that, which finds little left to copy (see `schema::open_writer`).

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use rusqlite::Connection;

/// How often the WAL is checkpointed: at a few thousand writes per second of
/// 1 KiB objects this keeps it to some tens of MiB.
pub(crate) const INTERVAL: Duration = Duration::from_millis(500);

/// Checkpoints `path` every [`INTERVAL`] until `stop`'s sender is dropped.
pub(crate) fn run(path: PathBuf, stop: Receiver<()>) {
    let conn = match super::schema::open_checkpointer(&path) {
        Ok(conn) => conn,
        Err(err) => {
            tracing::warn!(error = %err, "cannot open the checkpoint connection; the WAL will grow until restart");
            return;
        }
    };
    loop {
        let stopping = match stop.recv_timeout(INTERVAL) {
            Err(RecvTimeoutError::Timeout) | Ok(()) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        if let Err(err) = checkpoint(&conn) {
            tracing::warn!(error = %err, path = %path.display(), "WAL checkpoint failed");
        }
        if stopping {
            return;
        }
    }
}

fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
