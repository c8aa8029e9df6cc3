//! What each frame from the peer does to a [`session`](super::session): new streams for
//! the application (or resets), data queued for stream readers, FINs and resets, window
//! growth, pings echoed, and the end of the session when the connection ends or breaks
//! the protocol (answered with GOAWAY).

use std::sync::Arc;

use tokio::io::AsyncRead;
use tokio::sync::mpsc;

use super::compress::HeaderDecompressor;
use super::frame::{self, FLAG_FIN, FLAG_UNIDIRECTIONAL, Frame, Headers};
use super::session::{
    FlowControl, STREAM_QUEUE, Shared, Stream, StreamReader, StreamState, StreamWriter,
};
use super::window::{MAX_WINDOW, ReceiveWindow, SendWindow};

/// GOAWAY status of a protocol error.
const GOAWAY_PROTOCOL_ERROR: u32 = 1;

/// Reads frames until the connection ends, then closes the session.
pub(super) async fn read_frames<R: AsyncRead + Unpin>(
    mut reader: R,
    shared: Arc<Shared>,
    accepted: mpsc::Sender<Stream>,
) {
    let mut decompressor = HeaderDecompressor::new();
    let mut accepted = Some(accepted);
    loop {
        let frame = match frame::read(&mut reader, &mut decompressor).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(err) => {
                tracing::debug!(error = %err, "SPDY session failed");
                let goaway = Frame::GoAway {
                    last_good: shared.lock().last_peer_stream,
                    status: GOAWAY_PROTOCOL_ERROR,
                };
                let _ = shared.send(goaway).await;
                break;
            }
        };
        let replies = match frame {
            Frame::SynStream {
                stream,
                flags,
                headers,
                ..
            } => open(&shared, &mut accepted, stream, flags, headers).await,
            Frame::Data {
                stream,
                flags,
                data,
            } => receive(&shared, stream, flags, data).await,
            Frame::Headers { stream, flags, .. } if flags & FLAG_FIN != 0 => {
                remote_fin(&shared, stream);
                Vec::new()
            }
            Frame::RstStream { stream, .. } => {
                shared.lock().streams.remove(&stream);
                shared.window_grown.notify_waiters();
                Vec::new()
            }
            Frame::Settings { entries, .. } => {
                settings(&shared, &entries);
                Vec::new()
            }
            // Pings the peer started (odd IDs from a client) are echoed.
            Frame::Ping { id } if id % 2 == 1 => vec![Frame::Ping { id }],
            Frame::GoAway { .. } => {
                accepted = None;
                Vec::new()
            }
            Frame::WindowUpdate { stream, delta } => {
                window_update(&shared, stream, delta);
                Vec::new()
            }
            Frame::Headers { .. } | Frame::SynReply { .. } | Frame::Ping { .. } => Vec::new(),
        };
        for reply in replies {
            let _ = shared.send(reply).await;
        }
    }
    close(&shared).await;
}

fn reset(stream: u32, status: u32) -> Vec<Frame> {
    vec![Frame::RstStream { stream, status }]
}

/// A SYN_STREAM: a new stream for the application, or a reset.
async fn open(
    shared: &Arc<Shared>,
    accepted: &mut Option<mpsc::Sender<Stream>>,
    id: u32,
    flags: u8,
    headers: Headers,
) -> Vec<Frame> {
    let (tx, inbound) = mpsc::channel(STREAM_QUEUE);
    {
        let mut state = shared.lock();
        if id % 2 == 0 || id <= state.last_peer_stream {
            return reset(id, frame::PROTOCOL_ERROR);
        }
        state.last_peer_stream = id;
        if accepted.is_none() || state.streams.len() >= shared.config.max_streams {
            return reset(id, frame::REFUSED_STREAM);
        }
        let remote_fin = flags & FLAG_FIN != 0;
        let stream = StreamState {
            send: SendWindow::new(state.initial_send),
            receive: ReceiveWindow::new(shared.config.receive_window),
            inbound: (!remote_fin).then_some(tx),
            local_fin: flags & FLAG_UNIDIRECTIONAL != 0,
            remote_fin,
        };
        state.streams.insert(id, stream);
    }
    let stream = Stream {
        id,
        headers,
        reader: StreamReader {
            id,
            inbound,
            shared: shared.clone(),
        },
        writer: StreamWriter {
            id,
            shared: shared.clone(),
        },
    };
    let delivered = match accepted {
        Some(accepted) => accepted.send(stream).await.is_ok(),
        None => false,
    };
    if !delivered {
        shared.lock().streams.remove(&id);
        return reset(id, frame::REFUSED_STREAM);
    }
    Vec::new()
}

/// A data frame: queued for the stream's reader (waiting while its queue is full).
async fn receive(shared: &Shared, id: u32, flags: u8, data: Vec<u8>) -> Vec<Frame> {
    let len = data.len();
    let route = {
        let mut state = shared.lock();
        let session_ok = state.receive.received(len);
        let enforced = shared.config.flow_control == FlowControl::Enforced;
        match state.streams.get_mut(&id) {
            None => Route::Gone,
            Some(stream) => {
                let stream_ok = stream.receive.received(len);
                if enforced && !(session_ok && stream_ok) {
                    state.streams.remove(&id);
                    Route::Overrun
                } else {
                    Route::Deliver(stream.inbound.clone())
                }
            }
        }
    };
    let delivered = match route {
        // A stream already reset or finished: drop the data, grant its room back.
        Route::Gone => return shared.consumed(id, len),
        Route::Overrun => return reset(id, frame::FLOW_CONTROL_ERROR),
        Route::Deliver(Some(tx)) if len > 0 => tx.send(data).await.is_ok(),
        Route::Deliver(_) => false,
    };
    let updates = if delivered || len == 0 {
        Vec::new()
    } else {
        shared.consumed(id, len)
    };
    if flags & FLAG_FIN != 0 {
        remote_fin(shared, id);
    }
    updates
}

/// Where a data frame goes.
enum Route {
    /// Its stream is not open (any more).
    Gone,
    /// It overran an enforced window.
    Overrun,
    /// To the stream's reader, if it still reads.
    Deliver(Option<mpsc::Sender<Vec<u8>>>),
}

fn remote_fin(shared: &Shared, id: u32) {
    let mut state = shared.lock();
    if let Some(stream) = state.streams.get_mut(&id) {
        stream.remote_fin = true;
        stream.inbound = None;
        Shared::forget_if_done(&mut state, id);
    }
}

fn settings(shared: &Shared, entries: &[frame::Setting]) {
    let mut state = shared.lock();
    for entry in entries {
        if entry.id == frame::SETTINGS_INITIAL_WINDOW_SIZE && i64::from(entry.value) <= MAX_WINDOW {
            let delta = i64::from(entry.value) - i64::from(state.initial_send);
            state.initial_send = entry.value;
            for stream in state.streams.values_mut() {
                let _ = stream.send.adjust(delta);
            }
        }
    }
    drop(state);
    shared.window_grown.notify_waiters();
}

fn window_update(shared: &Shared, id: u32, delta: u32) {
    let mut state = shared.lock();
    let delta = i64::from(delta);
    let grown = if id == 0 {
        state.send.adjust(delta).is_ok()
    } else {
        state
            .streams
            .get_mut(&id)
            .is_some_and(|s| s.send.adjust(delta).is_ok())
    };
    drop(state);
    if grown {
        shared.window_grown.notify_waiters();
    }
}

/// Ends the session: readers see the end of their data, writers fail, the writer stops.
async fn close(shared: &Shared) {
    {
        let mut state = shared.lock();
        state.closed = true;
        state.streams.clear();
    }
    shared.window_grown.notify_waiters();
    let _ = shared.out.send(None).await;
}
