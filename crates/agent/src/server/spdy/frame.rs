//! SPDY/3.1 frames on the wire: an 8-byte head (control bit, version and type, or a
//! stream ID; flags; 24-bit length) and a payload. Control frames that carry headers
//! (SYN_STREAM, SYN_REPLY, HEADERS) hold a name/value block compressed with
//! [`super::compress`]. Every length is checked against the payload and bounded before
//! anything is allocated; a malformed frame is an error, never a panic.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::compress::{CompressionError, HeaderCompressor, HeaderDecompressor};

/// The protocol version in control frames.
pub const VERSION: u16 = 3;
/// Largest payload accepted (the format allows 16 MiB; peers send far smaller frames).
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Largest decompressed header block accepted.
pub const MAX_HEADER_BLOCK: usize = 64 << 10;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// Flag of the last frame a side sends on a stream.
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM flag: the receiver may not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status: the peer broke the protocol.
pub const PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM status: a frame for a stream that is not open.
pub const INVALID_STREAM: u32 = 2;
/// RST_STREAM status: the stream was refused before any processing.
pub const REFUSED_STREAM: u32 = 3;
/// RST_STREAM status: the stream is no longer needed.
pub const CANCEL: u32 = 5;
/// RST_STREAM status: the sender overran the flow-control window.
pub const FLOW_CONTROL_ERROR: u32 = 7;

/// SETTINGS ID of the initial per-stream window size.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// A header block: lowercase names with their values (several values joined by NUL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Flags (persist, persisted).
    pub flags: u8,
    /// The 24-bit ID.
    pub id: u32,
    /// The value.
    pub value: u32,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Stream data.
    Data {
        /// The stream.
        stream: u32,
        /// [`FLAG_FIN`] and others.
        flags: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Opens a stream.
    SynStream {
        /// The new stream.
        stream: u32,
        /// The stream it is associated to (0: none).
        associated: u32,
        /// Priority, 0 (highest) to 7.
        priority: u8,
        /// [`FLAG_FIN`], [`FLAG_UNIDIRECTIONAL`].
        flags: u8,
        /// Its headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream.
        stream: u32,
        /// [`FLAG_FIN`].
        flags: u8,
        /// Its headers.
        headers: Headers,
    },
    /// Ends a stream abnormally.
    RstStream {
        /// The stream.
        stream: u32,
        /// Why ([`PROTOCOL_ERROR`], [`CANCEL`], …).
        status: u32,
    },
    /// Session settings.
    Settings {
        /// Flags (0x01: clear persisted settings).
        flags: u8,
        /// The entries.
        entries: Vec<Setting>,
    },
    /// A ping, answered with the same ID.
    Ping {
        /// Odd from clients, even from servers.
        id: u32,
    },
    /// The sender will accept no more streams.
    GoAway {
        /// The last stream it accepted.
        last_good: u32,
        /// 0 OK, 1 protocol error, 2 internal error.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream: u32,
        /// [`FLAG_FIN`].
        flags: u8,
        /// The headers.
        headers: Headers,
    },
    /// Grows a send window (stream 0: the session's).
    WindowUpdate {
        /// The stream, or 0.
        stream: u32,
        /// Bytes added, 1 to 2^31-1.
        delta: u32,
    },
}

/// Errors of reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection failed in the middle of a frame.
    #[error("cannot read a SPDY frame")]
    Io(#[source] std::io::Error),
    /// A payload larger than [`MAX_PAYLOAD`].
    #[error("SPDY frame of {len} bytes exceeds the limit of {MAX_PAYLOAD}")]
    TooLarge {
        /// The announced length.
        len: usize,
    },
    /// A control frame of another protocol version.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// A frame that breaks the format.
    #[error("malformed SPDY {kind} frame: {reason}")]
    Malformed {
        /// The frame type.
        kind: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A header block that cannot be (de)compressed.
    #[error("bad SPDY header block")]
    Compression(#[source] CompressionError),
}

fn malformed(kind: &'static str, reason: &'static str) -> FrameError {
    FrameError::Malformed { kind, reason }
}

/// Reads the next frame; `None` when the connection ends between frames. Control
/// frames of unknown types are skipped, as the protocol asks.
pub async fn read<R: AsyncRead + Unpin>(
    reader: &mut R,
    headers: &mut HeaderDecompressor,
) -> Result<Option<Frame>, FrameError> {
    loop {
        let mut head = [0u8; 8];
        match reader.read_exact(&mut head).await {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(err) => return Err(FrameError::Io(err)),
        }
        let len = usize::try_from(u32::from_be_bytes([0, head[5], head[6], head[7]]))
            .map_err(|_| FrameError::TooLarge { len: usize::MAX })?;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge { len });
        }
        let mut payload = vec![0u8; len];
        reader
            .read_exact(&mut payload)
            .await
            .map_err(FrameError::Io)?;
        if let Some(frame) = decode(head, &payload, headers)? {
            return Ok(Some(frame));
        }
    }
}

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes one frame from its head and payload; `None` for an unknown control type.
pub fn decode(
    head: [u8; 8],
    payload: &[u8],
    headers: &mut HeaderDecompressor,
) -> Result<Option<Frame>, FrameError> {
    let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let flags = head[4];
    if first & 0x8000_0000 == 0 {
        if first == 0 {
            return Err(malformed("data", "stream 0"));
        }
        let data = payload.to_vec();
        return Ok(Some(Frame::Data {
            stream: first,
            flags,
            data,
        }));
    }
    let version = ((first >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let id = |kind: &'static str, at: usize| match word(payload, at) {
        Some(w) if w & 0x7fff_ffff != 0 => Ok(w & 0x7fff_ffff),
        Some(_) => Err(malformed(kind, "stream 0")),
        None => Err(malformed(kind, "too short")),
    };
    let exact = |kind: &'static str, len: usize| {
        if payload.len() == len {
            Ok(())
        } else {
            Err(malformed(kind, "wrong length"))
        }
    };
    let frame = match (first & 0xffff) as u16 {
        SYN_STREAM => {
            let stream = id("SYN_STREAM", 0)?;
            let associated = word(payload, 4).unwrap_or_default() & 0x7fff_ffff;
            let Some(block) = payload.get(10..) else {
                return Err(malformed("SYN_STREAM", "too short"));
            };
            Frame::SynStream {
                stream,
                associated,
                priority: payload[8] >> 5,
                flags,
                headers: read_block(headers, block)?,
            }
        }
        SYN_REPLY | HEADERS => {
            let kind = if (first & 0xffff) as u16 == SYN_REPLY {
                "SYN_REPLY"
            } else {
                "HEADERS"
            };
            let stream = id(kind, 0)?;
            let block = read_block(headers, payload.get(4..).unwrap_or_default())?;
            if kind == "SYN_REPLY" {
                Frame::SynReply {
                    stream,
                    flags,
                    headers: block,
                }
            } else {
                Frame::Headers {
                    stream,
                    flags,
                    headers: block,
                }
            }
        }
        RST_STREAM => {
            exact("RST_STREAM", 8)?;
            let stream = id("RST_STREAM", 0)?;
            let status = word(payload, 4).unwrap_or_default();
            if status == 0 {
                return Err(malformed("RST_STREAM", "status 0"));
            }
            Frame::RstStream { stream, status }
        }
        SETTINGS => {
            let count = word(payload, 0).ok_or(malformed("SETTINGS", "too short"))?;
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            if count.checked_mul(8).and_then(|n| n.checked_add(4)) != Some(payload.len()) {
                return Err(malformed("SETTINGS", "wrong length"));
            }
            let entries = payload[4..]
                .chunks_exact(8)
                .map(|e| Setting {
                    flags: e[0],
                    id: u32::from_be_bytes([0, e[1], e[2], e[3]]),
                    value: u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
                })
                .collect();
            Frame::Settings { flags, entries }
        }
        PING => {
            exact("PING", 4)?;
            Frame::Ping {
                id: word(payload, 0).unwrap_or_default(),
            }
        }
        GOAWAY => {
            exact("GOAWAY", 8)?;
            Frame::GoAway {
                last_good: word(payload, 0).unwrap_or_default() & 0x7fff_ffff,
                status: word(payload, 4).unwrap_or_default(),
            }
        }
        WINDOW_UPDATE => {
            exact("WINDOW_UPDATE", 8)?;
            let stream = word(payload, 0).unwrap_or_default() & 0x7fff_ffff;
            let delta = word(payload, 4).unwrap_or_default() & 0x7fff_ffff;
            if delta == 0 {
                return Err(malformed("WINDOW_UPDATE", "delta 0"));
            }
            Frame::WindowUpdate { stream, delta }
        }
        _ => return Ok(None),
    };
    Ok(Some(frame))
}

fn read_block(
    decompressor: &mut HeaderDecompressor,
    compressed: &[u8],
) -> Result<Headers, FrameError> {
    let block = decompressor
        .decompress(compressed, MAX_HEADER_BLOCK)
        .map_err(FrameError::Compression)?;
    parse_block(&block)
}

/// Parses an uncompressed name/value block.
pub fn parse_block(block: &[u8]) -> Result<Headers, FrameError> {
    let bad = |reason| malformed("header block", reason);
    let count = word(block, 0).ok_or(bad("too short"))?;
    let mut at = 4;
    let mut text = || -> Result<String, FrameError> {
        let len = word(block, at).ok_or(bad("truncated"))?;
        let start = at + 4;
        let end = start
            .checked_add(usize::try_from(len).map_err(|_| bad("length overflow"))?)
            .ok_or(bad("length overflow"))?;
        let bytes = block.get(start..end).ok_or(bad("truncated"))?;
        at = end;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad("not UTF-8"))
    };
    let mut pairs = Vec::new();
    for _ in 0..count {
        let name = text()?;
        let value = text()?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("empty or uppercase name"));
        }
        pairs.push((name, value));
    }
    Ok(Headers(pairs))
}

/// The uncompressed name/value block of `headers`.
pub fn encode_block(headers: &Headers) -> Vec<u8> {
    let len = |s: &str| u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes();
    let mut block = Vec::new();
    let count = u32::try_from(headers.0.len()).unwrap_or(u32::MAX);
    block.extend_from_slice(&count.to_be_bytes());
    for (name, value) in &headers.0 {
        block.extend_from_slice(&len(name));
        block.extend_from_slice(name.as_bytes());
        block.extend_from_slice(&len(value));
        block.extend_from_slice(value.as_bytes());
    }
    block
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    if payload.len() > 0x00ff_ffff {
        return Err(FrameError::TooLarge { len: payload.len() });
    }
    let mut frame = Vec::with_capacity(payload.len() + 8);
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    let len = (payload.len() as u32).to_be_bytes();
    frame.extend_from_slice(&[flags, len[1], len[2], len[3]]);
    frame.extend_from_slice(payload);
    Ok(frame)
}

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// Encodes `frame`, compressing its headers (frames must then be sent in this order).
pub fn encode(frame: &Frame, compressor: &mut HeaderCompressor) -> Result<Vec<u8>, FrameError> {
    let mut block = |headers: &Headers| {
        compressor
            .compress(&encode_block(headers))
            .map_err(FrameError::Compression)
    };
    match frame {
        Frame::Data {
            stream,
            flags,
            data,
        } => {
            if data.len() > 0x00ff_ffff {
                return Err(FrameError::TooLarge { len: data.len() });
            }
            let mut out = Vec::with_capacity(data.len() + 8);
            out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
            let len = (data.len() as u32).to_be_bytes();
            out.extend_from_slice(&[*flags, len[1], len[2], len[3]]);
            out.extend_from_slice(data);
            Ok(out)
        }
        Frame::SynStream {
            stream,
            associated,
            priority,
            flags,
            headers,
        } => {
            let mut payload = words(&[*stream, *associated]);
            payload.extend_from_slice(&[(priority & 0x07) << 5, 0]);
            payload.extend(block(headers)?);
            control(SYN_STREAM, *flags, &payload)
        }
        Frame::SynReply {
            stream,
            flags,
            headers,
        } => {
            let mut payload = words(&[*stream]);
            payload.extend(block(headers)?);
            control(SYN_REPLY, *flags, &payload)
        }
        Frame::Headers {
            stream,
            flags,
            headers,
        } => {
            let mut payload = words(&[*stream]);
            payload.extend(block(headers)?);
            control(HEADERS, *flags, &payload)
        }
        Frame::RstStream { stream, status } => control(RST_STREAM, 0, &words(&[*stream, *status])),
        Frame::Settings { flags, entries } => {
            let mut payload = words(&[entries.len() as u32]);
            for entry in entries {
                payload.extend_from_slice(
                    &((u32::from(entry.flags) << 24) | (entry.id & 0x00ff_ffff)).to_be_bytes(),
                );
                payload.extend_from_slice(&entry.value.to_be_bytes());
            }
            control(SETTINGS, *flags, &payload)
        }
        Frame::Ping { id } => control(PING, 0, &words(&[*id])),
        Frame::GoAway { last_good, status } => control(GOAWAY, 0, &words(&[*last_good, *status])),
        Frame::WindowUpdate { stream, delta } => {
            control(WINDOW_UPDATE, 0, &words(&[*stream, *delta]))
        }
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
