//! Events go through a bounded queue to one worker that writes a few at a time, like
//! client-go's event broadcaster (a queue of 1,000 that drops events when full): events are
//! best-effort, and writing them must never slow down or block bindings.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use strata_client::events::{EventType, Recorder};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Events queued at most before new ones are dropped (client-go's `maxQueuedEvents`).
pub const QUEUE_LENGTH: usize = 1000;
/// Events written concurrently by the worker.
const CONCURRENCY: usize = 4;

struct Item {
    object: ObjectReference,
    kind: EventType,
    reason: &'static str,
    message: String,
}

/// The sending side of the event queue; cheap to clone.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<Item>,
    dropped: Arc<AtomicU64>,
}

impl Events {
    /// Starts the worker in `tasks` (it ends when every [`Events`] is dropped).
    pub fn start(recorder: Recorder, tasks: &mut JoinSet<()>) -> Self {
        let (tx, rx) = mpsc::channel::<Item>(QUEUE_LENGTH);
        let recorder = Arc::new(recorder);
        tasks.spawn(async move {
            tokio_stream(rx)
                .for_each_concurrent(CONCURRENCY, |item| {
                    let recorder = Arc::clone(&recorder);
                    async move {
                        recorder
                            .publish(&item.object, item.kind, item.reason, &item.message)
                            .await;
                    }
                })
                .await;
        });
        Self {
            tx,
            dropped: Arc::default(),
        }
    }

    /// Queues an event; drops it (and counts it) when the queue is full.
    pub fn publish(
        &self,
        object: ObjectReference,
        kind: EventType,
        reason: &'static str,
        message: String,
    ) {
        let item = Item {
            object,
            kind,
            reason,
            message,
        };
        if self.tx.try_send(item).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "event queue full; dropping events");
            }
        }
    }
}

/// A receiver as a stream.
fn tokio_stream<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
