//! Watch fan-out: one in-memory event stream fed by the writer after each commit,
//! a bounded ring of recent events, and per-watcher bounded channels.
//!
//! A watch first replays what it missed (from the ring when the ring still holds it,
//! else from the `history` table, page by page), then attaches to the live stream
//! under the same lock the writer publishes under, so no event falls between the two.
//! Events carry their revision and each revision is one event, so a watcher drops any
//! live event at or before the last one it queued: no duplicates either.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::stream;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::Shared;
use super::read::{self, Readers};
use crate::error::StoreError;
use crate::store::Watch;
use crate::types::{Event, Revision};

/// How many events one history read returns.
const HISTORY_PAGE: usize = 1000;

/// The live side of the watch machinery, owned by [`Shared`] behind a mutex.
pub(crate) struct Hub {
    ring: VecDeque<Arc<Event>>,
    ring_capacity: usize,
    /// The revision of the last published event (the store's revision at open
    /// before any).
    last: Revision,
    watchers: Vec<Slot>,
    watcher_buffer: usize,
    /// Set when the writer stops: no event will follow.
    closed: bool,
}

/// One live watcher, as the hub sees it.
struct Slot {
    prefix: String,
    events: mpsc::Sender<Arc<Event>>,
    lagged: Arc<AtomicBool>,
}

/// One live watcher, as its stream sees it.
struct Live {
    events: mpsc::Receiver<Arc<Event>>,
    lagged: Arc<AtomicBool>,
}

impl Hub {
    pub(crate) fn new(last: Revision, ring_capacity: usize, watcher_buffer: usize) -> Self {
        Hub {
            ring: VecDeque::with_capacity(ring_capacity),
            ring_capacity,
            last,
            watchers: Vec::new(),
            watcher_buffer: watcher_buffer.max(1),
            closed: false,
        }
    }

    /// Publishes committed events, in revision order. Never blocks: a watcher whose
    /// buffer is full is dropped and told it lagged.
    pub(crate) fn publish(&mut self, events: Vec<Arc<Event>>) {
        for event in events {
            self.watchers.retain(|slot| {
                if !event.kv.key.starts_with(&slot.prefix) {
                    return true;
                }
                match slot.events.try_send(Arc::clone(&event)) {
                    Ok(()) => true,
                    Err(TrySendError::Full(_)) => {
                        slot.lagged.store(true, Ordering::Release);
                        tracing::warn!(prefix = %slot.prefix, revision = event.revision, "closing a watcher that fell behind");
                        false
                    }
                    Err(TrySendError::Closed(_)) => false,
                }
            });
            self.last = event.revision;
            if self.ring_capacity > 0 {
                if self.ring.len() == self.ring_capacity {
                    self.ring.pop_front();
                }
                self.ring.push_back(event);
            }
        }
    }

    /// Ends every watch (the writer is shutting down).
    pub(crate) fn close(&mut self) {
        self.watchers.clear();
        self.closed = true;
    }

    /// Attaches a watcher that has seen everything up to `seen`, if the ring still
    /// holds every event after it: returns those events (matching `prefix`) and the
    /// live channel that delivers the ones after them.
    fn attach(&mut self, prefix: &str, seen: Revision) -> Option<(Vec<Arc<Event>>, Live)> {
        let oldest = self.ring.front().map_or(self.last + 1, |e| e.revision);
        if seen + 1 < oldest {
            return None;
        }
        let replay = self
            .ring
            .iter()
            .filter(|e| e.revision > seen && e.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        let (tx, rx) = mpsc::channel(self.watcher_buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        // Once closed, the sender is dropped here and the watch ends after `replay`.
        if !self.closed {
            self.watchers.push(Slot {
                prefix: prefix.to_owned(),
                events: tx,
                lagged: Arc::clone(&lagged),
            });
        }
        Some((replay, Live { events: rx, lagged }))
    }
}

/// Where a watch stream is.
enum Phase {
    /// Catching up: from the ring if it reaches back far enough, else from SQLite.
    Replay,
    /// Attached to the hub.
    Live(Live),
    /// Ended (after an error, or the store shut down).
    Done,
}

/// The state a watch stream carries between events.
struct WatchState {
    prefix: String,
    /// The revision of the last event queued (or the watch's start).
    seen: Revision,
    pending: VecDeque<Arc<Event>>,
    phase: Phase,
    shared: Arc<Shared>,
    readers: Arc<Readers>,
}

/// Starts a watch on `prefix` for events after `from_revision`.
pub(crate) fn start(
    shared: Arc<Shared>,
    readers: Arc<Readers>,
    prefix: &str,
    from_revision: Revision,
) -> Result<Watch, StoreError> {
    let compacted = shared.compacted();
    if from_revision < compacted {
        return Err(StoreError::Compacted {
            requested: from_revision,
            compacted,
        });
    }
    let state = WatchState {
        prefix: prefix.to_owned(),
        seen: from_revision,
        pending: VecDeque::new(),
        phase: Phase::Replay,
        shared,
        readers,
    };
    Ok(Watch::new(Box::pin(stream::unfold(state, step))))
}

/// Produces the next event of a watch.
async fn step(mut state: WatchState) -> Option<(Result<Event, StoreError>, WatchState)> {
    loop {
        if let Some(event) = state.pending.pop_front() {
            return Some((Ok(Event::clone(&event)), state));
        }
        match &mut state.phase {
            Phase::Done => return None,
            Phase::Replay => {
                if let Err(err) = replay_more(&mut state).await {
                    state.phase = Phase::Done;
                    return Some((Err(err), state));
                }
            }
            Phase::Live(live) => match live.events.recv().await {
                Some(event) => {
                    if event.revision > state.seen {
                        state.seen = event.revision;
                        state.pending.push_back(event);
                    }
                }
                None => {
                    let lagged = live.lagged.load(Ordering::Acquire);
                    state.phase = Phase::Done;
                    if lagged {
                        let err = StoreError::WatchLagged {
                            prefix: state.prefix.clone(),
                        };
                        return Some((Err(err), state));
                    }
                    return None;
                }
            },
        }
    }
}

/// One step of catching up: attach to the hub if the ring reaches back to `seen`,
/// else queue the next page of history from SQLite.
async fn replay_more(state: &mut WatchState) -> Result<(), StoreError> {
    let attached = state.shared.hub().attach(&state.prefix, state.seen);
    if let Some((replay, live)) = attached {
        if let Some(last) = replay.last() {
            state.seen = last.revision;
        }
        state.pending.extend(replay);
        state.phase = Phase::Live(live);
        return Ok(());
    }
    let prefix = state.prefix.clone();
    let after = state.seen;
    let page = state
        .readers
        .run(&state.prefix, move |conn| {
            read::history_page(conn, &prefix, after, HISTORY_PAGE)
        })
        .await?;
    state.seen = page.covered_to;
    state.pending.extend(page.events.into_iter().map(Arc::new));
    Ok(())
}
