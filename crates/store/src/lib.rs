//! Strata's durable store: the [`Store`] trait the API server programs against, with
//! etcd's MVCC semantics (one global revision, per-key create and mod revisions,
//! reads at past revisions, watch from a revision, compaction), and its embedded
//! default backend on SQLite. An etcd backend will implement the same trait.

/// The one error type of every store operation.
pub mod error;
/// The SQLite backend: WAL file, group-committing writer, in-memory watch fan-out.
pub mod sqlite;
/// The `Store` trait and the backend-neutral `Watch` stream.
pub mod store;
/// Key-value versions, list options and pages, watch events.
pub mod types;

pub use error::StoreError;
pub use sqlite::{SqliteOptions, SqliteStore, Synchronous};
pub use store::{EventStream, Store, Watch};
pub use types::{Deleted, Event, EventKind, KeyValue, ListOptions, ListResult, Revision};
