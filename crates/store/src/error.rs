//! The store's one error type: what the caller did wrong (missing key, revision
//! conflict, compacted history) apart from what broke underneath (SQLite, the writer).

use std::path::PathBuf;
use std::sync::Arc;

/// Everything a [`Store`](crate::Store) operation can fail with.
///
/// The first group of variants are answers the API server turns into Kubernetes
/// statuses (409, 404, 410); the rest are failures of the backend. Causes are shared
/// (`Arc`) because one failed group commit fails every write in the group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// `create` found the key already present.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// `update` or `delete` found no such key.
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The caller's expected `mod_revision` is not the key's current one.
    #[error("key {key} is at revision {current}, not the expected {expected}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: i64,
        /// The key's current `mod_revision`.
        current: i64,
    },
    /// A read or watch asked for history at or before the compacted revision.
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The store's compacted revision.
        compacted: i64,
    },
    /// A read or compaction named a revision the store has not reached yet.
    #[error("revision {requested} is in the future (current revision {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The store's current revision.
        current: i64,
    },
    /// A watcher fell more than its buffer behind the writers and was closed;
    /// the caller re-lists or re-watches from the last revision it saw.
    #[error("watch on {prefix} closed: the watcher fell too far behind")]
    WatchLagged {
        /// The watched prefix.
        prefix: String,
    },
    /// Opening or preparing the database file failed.
    #[error("opening store {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// The database file cannot be used by this build.
    #[error("store {path} is incompatible: {reason}")]
    Incompatible {
        /// The database file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// Starting the writer or checkpoint thread failed.
    #[error("starting a background thread of store {path}")]
    SpawnThread {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A read of `key` (a key or a prefix) failed.
    #[error("reading {key}")]
    Read {
        /// The key or prefix being read.
        key: String,
        /// The cause.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// Applying a write to `key` failed; its whole group commit was rolled back.
    #[error("writing {key}")]
    Write {
        /// The key being written (the first write of the group that failed).
        key: String,
        /// The cause.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// Committing a group of writes failed; none of them took effect.
    #[error("committing a group of {writes} writes")]
    Commit {
        /// How many writes the group held.
        writes: usize,
        /// The cause.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// Dropping history up to `revision` failed.
    #[error("compacting up to revision {revision}")]
    Compact {
        /// The revision asked for.
        revision: i64,
        /// The cause.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// Replaying history for a watch on `prefix` failed.
    #[error("replaying history for a watch on {prefix}")]
    WatchReplay {
        /// The watched prefix.
        prefix: String,
        /// The cause.
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// The writer thread is gone (the store is shutting down, or it panicked).
    #[error("the store's writer stopped before answering a write to {key}")]
    WriterStopped {
        /// The key of the write left unanswered.
        key: String,
    },
    /// A blocking read task was cancelled or panicked.
    #[error("the read of {key} did not finish")]
    ReadTask {
        /// The key or prefix being read.
        key: String,
    },
}
