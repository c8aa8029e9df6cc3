//! The embedded default backend: one SQLite file in WAL mode.
//!
//! Writes go through one writer thread with group commit (`writer`); reads use a
//! small pool of read-only connections on tokio's blocking pool (`read`); watches
//! are fed from memory by the writer (`watch`); a checkpoint thread keeps the WAL
//! short without stalling commits (`checkpoint`).
//!
//! Durability: with the default [`Synchronous::Full`], a write is acknowledged only
//! after its transaction's WAL frames are fsynced, so it survives a process kill and
//! a power loss. With [`Synchronous::Normal`] it survives a process kill (the WAL
//! is written before the acknowledgement) but not necessarily a power loss.
//!
//! Limitations: history grows until [`Store::compact`] is called (nothing compacts
//! on its own; the API server compacts periodically, as kube-apiserver does).
//! Compaction runs on the writer thread in one transaction, so writes wait while it
//! runs. Listing at a past revision scans that revision's history rows in the range,
//! so it costs more than a latest list.

mod checkpoint;
mod read;
mod schema;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;

pub use schema::Synchronous;

use crate::error::StoreError;
use crate::store::{Store, Watch};
use crate::types::{Deleted, KeyValue, ListOptions, ListResult, Revision};
use read::Readers;
use watch::Hub;
use writer::{Op, Outcome, Request, Writer};

/// Tuning for [`SqliteStore::open_with`]; [`Default`] suits the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// How hard each commit syncs (default [`Synchronous::Full`]).
    pub synchronous: Synchronous,
    /// Most writes one group commit takes (default 512).
    pub max_batch: usize,
    /// Recent events kept in memory, so watches from a recent revision don't read
    /// SQLite (default 10,000).
    pub event_ring: usize,
    /// Events a watcher may have unread before it is closed with
    /// [`StoreError::WatchLagged`] (default 10,000).
    pub watcher_buffer: usize,
    /// Idle read connections kept open (default 4).
    pub idle_readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            max_batch: 512,
            event_ring: 10_000,
            watcher_buffer: 10_000,
            idle_readers: 4,
        }
    }
}

/// State shared by the store handle, the writer thread and watch streams.
pub(crate) struct Shared {
    hub: Mutex<Hub>,
    /// The revision of the last committed write.
    revision: AtomicI64,
    compacted: AtomicI64,
}

impl Shared {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while publishing leaves the hub consistent enough to go on: the
        // ring and watcher list are only ever appended to or trimmed.
        self.hub.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }
}

/// The SQLite-backed [`Store`]. Cheap to clone; the writer thread stops once every
/// clone is dropped (after answering the writes already queued).
#[derive(Clone)]
pub struct SqliteStore {
    requests: Sender<Request>,
    shared: Arc<Shared>,
    readers: Arc<Readers>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("revision", &self.shared.revision.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the store at `path` with default options.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), strata_store::StoreError> {
    /// use strata_store::{SqliteStore, Store};
    /// let store = SqliteStore::open("/var/lib/strata/state.db")?;
    /// let kv = store.create("/registry/pods/default/nginx", "{}".into()).await?;
    /// assert_eq!(kv.create_revision, kv.mod_revision);
    /// # Ok(()) }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (or creates) the store at `path`. Blocks while SQLite opens the file
    /// and recovers its WAL; call it before serving, or from `spawn_blocking`.
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let conn = schema::open_writer(&path, options.synchronous)?;
        let revisions = schema::read_revisions(&conn).map_err(|source| StoreError::Open {
            path: path.clone(),
            source: Arc::new(source),
        })?;
        let shared = Arc::new(Shared {
            hub: Mutex::new(Hub::new(
                revisions.current,
                options.event_ring,
                options.watcher_buffer,
            )),
            revision: AtomicI64::new(revisions.current),
            compacted: AtomicI64::new(revisions.compacted),
        });
        let spawn_err = |source| StoreError::SpawnThread {
            path: path.clone(),
            source: Arc::new(source),
        };
        // The writer holds `stop_checkpoints`: when it ends, the checkpointer ends.
        let (stop_checkpoints, checkpoint_stop) = mpsc::channel::<()>();
        let checkpoint_path = path.clone();
        std::thread::Builder::new()
            .name("strata-store-checkpoint".into())
            .spawn(move || checkpoint::run(checkpoint_path, checkpoint_stop))
            .map_err(spawn_err)?;
        let (requests, queue) = mpsc::channel();
        let writer = Writer::new(conn, Arc::clone(&shared), revisions, options.max_batch);
        std::thread::Builder::new()
            .name("strata-store-writer".into())
            .spawn(move || {
                writer.run(queue);
                drop(stop_checkpoints);
            })
            .map_err(spawn_err)?;
        Ok(SqliteStore {
            requests,
            shared,
            readers: Arc::new(Readers::new(path, options.idle_readers)),
        })
    }

    /// Queues `op` for the writer and waits for its answer.
    async fn write(&self, op: Op) -> Result<Outcome, StoreError> {
        let stopped = StoreError::WriterStopped {
            key: op.key().to_owned(),
        };
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Write { op, reply })
            .map_err(|_| stopped.clone())?;
        answer.await.map_err(|_| stopped)?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let owned = key.to_owned();
        self.readers
            .run(key, move |conn| read::get(conn, &owned))
            .await
    }

    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError> {
        let owned = prefix.to_owned();
        self.readers
            .run(prefix, move |conn| read::list(conn, &owned, &options))
            .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError> {
        let op = Op::Create {
            key: key.to_owned(),
            value,
        };
        match self.write(op).await? {
            Outcome::Put(kv) => Ok(kv),
            Outcome::Deleted(_) => unreachable!("a create never deletes"),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, StoreError> {
        let op = Op::Update {
            key: key.to_owned(),
            value,
            expected: expected_mod_revision,
        };
        match self.write(op).await? {
            Outcome::Put(kv) => Ok(kv),
            Outcome::Deleted(_) => unreachable!("an update never deletes"),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<Deleted, StoreError> {
        let op = Op::Delete {
            key: key.to_owned(),
            expected: expected_mod_revision,
        };
        match self.write(op).await? {
            Outcome::Deleted(deleted) => Ok(deleted),
            Outcome::Put(_) => unreachable!("a delete never puts"),
        }
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError> {
        watch::start(
            Arc::clone(&self.shared),
            Arc::clone(&self.readers),
            prefix,
            from_revision,
        )
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let stopped = || StoreError::WriterStopped {
            key: format!("(compaction to {revision})"),
        };
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Compact { revision, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }
}
