//! A SPDY/3.1 session on the server side of a connection: a reader task that decodes
//! frames and hands the streams the peer opens to [`Incoming::accept`], and a writer
//! task that owns the header compressor so that header blocks are compressed in wire
//! order. Streams are read and written through [`StreamReader`] and [`StreamWriter`];
//! a stream is forgotten once both sides finished it or either reset it. When the
//! connection ends every reader sees the end of its data and every write fails.
//!
//! Flow control: receive windows are granted back as the application consumes data;
//! send windows are honoured only with [`FlowControl::Enforced`]. Kubernetes' SPDY
//! library (moby/spdystream) neither sends WINDOW_UPDATE nor honours it, so a server
//! for kubectl uses [`FlowControl::Advisory`]: memory stays bounded by each stream's
//! short queue, and a full queue stops reading the connection (TCP back-pressure).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use super::compress::HeaderCompressor;
use super::dispatch;
use super::frame::{self, FLAG_FIN, Frame, Headers};
use super::window::{DEFAULT_WINDOW, ReceiveWindow, SendWindow};

/// Largest data frame this side sends.
const MAX_DATA_FRAME: usize = 32 << 10;
/// Data frames queued per stream before the reader waits for the application.
pub(super) const STREAM_QUEUE: usize = 4;
/// Frames queued for the writer.
const OUT_QUEUE: usize = 64;

/// Whether the peer takes part in flow control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControl {
    /// Sending waits for window; a peer that overruns our window has its stream reset.
    Enforced,
    /// Windows are tracked and granted, but neither side's is waited for or enforced.
    Advisory,
}

/// How a session behaves.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Most streams open at once; more are refused.
    pub max_streams: usize,
    /// The receive window of each stream and of the session.
    pub receive_window: u32,
    /// Whether windows are enforced.
    pub flow_control: FlowControl,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_streams: 256,
            receive_window: DEFAULT_WINDOW,
            flow_control: FlowControl::Enforced,
        }
    }
}

/// Errors of using a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The session's connection has ended.
    #[error("the SPDY session has ended")]
    SessionClosed,
    /// This side finished the stream, or either side reset it.
    #[error("the SPDY stream is closed")]
    StreamClosed,
}

/// A stream the peer opened.
pub struct Stream {
    /// Its ID (odd: opened by the client).
    pub id: u32,
    /// The headers of its SYN_STREAM.
    pub headers: Headers,
    /// Its incoming data.
    pub reader: StreamReader,
    /// Its outgoing side.
    pub writer: StreamWriter,
}

/// The streams of a session, as the peer opens them.
pub struct Incoming {
    streams: mpsc::Receiver<Stream>,
}

impl Incoming {
    /// The next stream; `None` once the session ended or the peer went away.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.streams.recv().await
    }
}

/// What the session knows of one open stream.
pub(super) struct StreamState {
    pub(super) send: SendWindow,
    pub(super) receive: ReceiveWindow,
    pub(super) inbound: Option<mpsc::Sender<Vec<u8>>>,
    pub(super) local_fin: bool,
    pub(super) remote_fin: bool,
}

/// The session's state, shared by its tasks and stream handles.
pub(super) struct State {
    pub(super) streams: HashMap<u32, StreamState>,
    pub(super) send: SendWindow,
    pub(super) receive: ReceiveWindow,
    pub(super) initial_send: u32,
    pub(super) last_peer_stream: u32,
    pub(super) closed: bool,
}

/// What the reader, the writer and every stream handle share.
pub(super) struct Shared {
    pub(super) config: Config,
    state: Mutex<State>,
    pub(super) window_grown: Notify,
    /// Frames for the writer; `None` stops it.
    pub(super) out: mpsc::Sender<Option<Frame>>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) async fn send(&self, frame: Frame) -> Result<(), StreamError> {
        self.out
            .send(Some(frame))
            .await
            .map_err(|_| StreamError::SessionClosed)
    }

    /// Forgets `id` once both sides are done with it.
    pub(super) fn forget_if_done(state: &mut State, id: u32) {
        if state
            .streams
            .get(&id)
            .is_some_and(|s| s.local_fin && s.remote_fin)
        {
            state.streams.remove(&id);
        }
    }

    /// Grants back consumed bytes: the WINDOW_UPDATE frames to send.
    pub(super) fn consumed(&self, id: u32, n: usize) -> Vec<Frame> {
        let mut state = self.lock();
        let mut updates = Vec::new();
        if let Some(delta) = state.receive.consumed(n) {
            updates.push(Frame::WindowUpdate { stream: 0, delta });
        }
        if let Some(stream) = state.streams.get_mut(&id)
            && !stream.remote_fin
            && let Some(delta) = stream.receive.consumed(n)
        {
            updates.push(Frame::WindowUpdate { stream: id, delta });
        }
        updates
    }
}

/// The incoming data of a stream.
pub struct StreamReader {
    pub(super) id: u32,
    pub(super) inbound: mpsc::Receiver<Vec<u8>>,
    pub(super) shared: Arc<Shared>,
}

impl StreamReader {
    /// The next chunk; `None` at the peer's FIN, a reset, or the end of the session.
    pub async fn read(&mut self) -> Option<Vec<u8>> {
        let chunk = self.inbound.recv().await?;
        for update in self.shared.consumed(self.id, chunk.len()) {
            let _ = self.shared.send(update).await;
        }
        Some(chunk)
    }
}

/// The outgoing side of a stream; clones write to the same stream.
#[derive(Clone)]
pub struct StreamWriter {
    pub(super) id: u32,
    pub(super) shared: Arc<Shared>,
}

impl StreamWriter {
    /// Accepts the stream (SYN_REPLY without headers); send it before any data.
    pub async fn reply(&self) -> Result<(), StreamError> {
        self.shared
            .send(Frame::SynReply {
                stream: self.id,
                flags: 0,
                headers: Headers::default(),
            })
            .await
    }

    /// Sends `data`, in frames the send windows allow.
    pub async fn write(&self, mut data: &[u8]) -> Result<(), StreamError> {
        while !data.is_empty() {
            let n = self.reserve(data.len().min(MAX_DATA_FRAME)).await?;
            let (chunk, rest) = data.split_at(n);
            self.shared
                .send(Frame::Data {
                    stream: self.id,
                    flags: 0,
                    data: chunk.to_vec(),
                })
                .await?;
            data = rest;
        }
        Ok(())
    }

    /// Waits until up to `wanted` bytes may be sent and spends them.
    async fn reserve(&self, wanted: usize) -> Result<usize, StreamError> {
        loop {
            let grown = self.shared.window_grown.notified();
            tokio::pin!(grown);
            grown.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return Err(StreamError::SessionClosed);
                }
                let enforced = self.shared.config.flow_control == FlowControl::Enforced;
                let session_available = state.send.available();
                let stream = state
                    .streams
                    .get_mut(&self.id)
                    .filter(|s| !s.local_fin)
                    .ok_or(StreamError::StreamClosed)?;
                let n = if enforced {
                    stream.send.take(wanted.min(session_available))
                } else {
                    stream.send.spend(wanted);
                    wanted
                };
                if n > 0 {
                    state.send.spend(n);
                    return Ok(n);
                }
            }
            grown.await;
        }
    }

    /// Ends this side of the stream (an empty data frame with FIN).
    pub async fn finish(&self) -> Result<(), StreamError> {
        {
            let mut state = self.shared.lock();
            let stream = state
                .streams
                .get_mut(&self.id)
                .filter(|s| !s.local_fin)
                .ok_or(StreamError::StreamClosed)?;
            stream.local_fin = true;
            Shared::forget_if_done(&mut state, self.id);
        }
        self.shared
            .send(Frame::Data {
                stream: self.id,
                flags: FLAG_FIN,
                data: Vec::new(),
            })
            .await
    }

    /// Ends the stream abnormally with `status` ([`frame::CANCEL`], …).
    pub async fn reset(&self, status: u32) -> Result<(), StreamError> {
        self.shared.lock().streams.remove(&self.id);
        self.shared
            .send(Frame::RstStream {
                stream: self.id,
                status,
            })
            .await
    }
}

/// Starts a session on `io`; the streams the peer opens come out of the returned
/// [`Incoming`].
pub fn start<IO>(io: IO, config: Config) -> Incoming
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (out, frames) = mpsc::channel(OUT_QUEUE);
    let shared = Arc::new(Shared {
        config,
        state: Mutex::new(State {
            streams: HashMap::new(),
            send: SendWindow::new(DEFAULT_WINDOW),
            receive: ReceiveWindow::new(config.receive_window),
            initial_send: DEFAULT_WINDOW,
            last_peer_stream: 0,
            closed: false,
        }),
        window_grown: Notify::new(),
        out,
    });
    let (accepted, streams) = mpsc::channel(16);
    tokio::spawn(write_frames(write, frames));
    tokio::spawn(dispatch::read_frames(read, shared, accepted));
    Incoming { streams }
}

/// Encodes and writes frames in order until told to stop (`None`) or the connection fails.
async fn write_frames<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut frames: mpsc::Receiver<Option<Frame>>,
) {
    let mut compressor = match HeaderCompressor::new() {
        Ok(compressor) => compressor,
        Err(err) => {
            tracing::warn!(error = %err, "cannot start SPDY header compression");
            return;
        }
    };
    while let Some(Some(frame)) = frames.recv().await {
        let bytes = match frame::encode(&frame, &mut compressor) {
            Ok(bytes) => bytes,
            Err(err) => {
                tracing::warn!(error = %err, "cannot encode a SPDY frame");
                break;
            }
        };
        if writer.write_all(&bytes).await.is_err() {
            break;
        }
        if frames.is_empty() && writer.flush().await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
