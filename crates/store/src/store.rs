//! The `Store` trait the API server programs against, and the backend-neutral `Watch`.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures_core::Stream;

use crate::error::StoreError;
use crate::types::{Deleted, Event, KeyValue, ListOptions, ListResult, Revision};

/// A key-value store with etcd's MVCC semantics, as the Kubernetes API server uses it.
///
/// Every successful write bumps one global [`Revision`]; each key keeps the revision
/// that created it and the one that last changed it. Past revisions stay readable
/// (by [`list`](Store::list) and [`watch`](Store::watch)) until [`compact`](Store::compact)
/// drops them. The trait is object-safe: the API server holds an `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync {
    /// The current version of `key`, if it exists.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// The keys starting with `prefix`, in key order, at the latest or a past revision.
    async fn list(&self, prefix: &str, options: ListOptions) -> Result<ListResult, StoreError>;

    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue, StoreError>;

    /// Overwrites `key`. With `expected_mod_revision`, only if the key is still at that
    /// revision ([`StoreError::Conflict`] otherwise). Fails with
    /// [`StoreError::NotFound`] if the key does not exist.
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Option<Revision>,
    ) -> Result<KeyValue, StoreError>;

    /// Deletes `key`, with the same precondition as [`update`](Store::update), and
    /// returns its last version and the revision of the delete.
    async fn delete(
        &self,
        key: &str,
        expected_mod_revision: Option<Revision>,
    ) -> Result<Deleted, StoreError>;

    /// Every change to a key starting with `prefix` with a revision after
    /// `from_revision`, in revision order: first what history holds, then live changes,
    /// without gaps or duplicates. Fails with [`StoreError::Compacted`] when
    /// `from_revision` is before the compacted revision. A watcher that falls too far
    /// behind ends with [`StoreError::WatchLagged`] instead of slowing writers down.
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StoreError>;

    /// Drops the history at and before `revision`; the latest version of each live key
    /// is kept, so reads at any revision after `revision` still work.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// The revision of the last acknowledged write.
    async fn current_revision(&self) -> Result<Revision, StoreError>;
}

/// The boxed stream a backend implements a watch with.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;

/// A running watch: a stream of events that ends after the first error.
///
/// Dropping it cancels the watch.
pub struct Watch {
    events: EventStream,
}

impl Watch {
    /// Wraps a backend's event stream.
    pub fn new(events: EventStream) -> Self {
        Watch { events }
    }

    /// The next event; `None` once the watch has ended (after an error, or when the
    /// store shut down).
    pub async fn next(&mut self) -> Option<Result<Event, StoreError>> {
        std::future::poll_fn(|cx| self.events.as_mut().poll_next(cx)).await
    }
}

impl Stream for Watch {
    type Item = Result<Event, StoreError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}
