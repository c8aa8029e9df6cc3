//! The server side of WebSocket (RFC 6455) as the kubelet API needs it: the opening
//! handshake (`Sec-WebSocket-Accept`, subprotocol choice), reading masked client frames
//! into whole messages, and writing unmasked server frames. No extensions (the
//! `permessage-deflate` offer is ignored, as the RFC allows). [`tunnel`] carries a byte
//! stream in binary messages (how client-go tunnels SPDY through WebSocket).

use base64::Engine as _;
use http::{HeaderMap, Request, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Body, full};

/// The GUID the RFC appends to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Opcode of a continuation frame.
pub const CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const PONG: u8 = 0xA;

/// Largest message accepted from a client.
pub const MAX_MESSAGE: usize = 16 << 20;

/// Errors of reading frames.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The connection failed or ended in the middle of a frame.
    #[error("cannot read a WebSocket frame")]
    Io(#[source] std::io::Error),
    /// The peer broke the protocol.
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A message was larger than [`MAX_MESSAGE`].
    #[error("WebSocket message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
}

/// True when the request asks to upgrade to WebSocket.
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    header_has_token(headers, http::header::UPGRADE, "websocket")
        && headers.contains_key(http::header::SEC_WEBSOCKET_KEY)
}

/// True when the comma-separated header `name` holds `token` (case-insensitively).
pub fn header_has_token(headers: &HeaderMap, name: http::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The `Sec-WebSocket-Accept` value for the client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The first of `supported` (in our order of preference) that the client offered in
/// `Sec-WebSocket-Protocol`.
pub fn choose_protocol(headers: &HeaderMap, supported: &[&'static str]) -> Option<&'static str> {
    let offered: Vec<String> = headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    supported
        .iter()
        .copied()
        .find(|p| offered.iter().any(|o| o == p))
}

/// The `101 Switching Protocols` answer to the WebSocket upgrade `req`, speaking
/// `protocol` (checked beforehand with [`is_upgrade`] and [`choose_protocol`]).
pub fn switching_response<B>(req: &Request<B>, protocol: &'static str) -> Response<Body> {
    let key = req
        .headers()
        .get(http::header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    headers.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static(protocol),
    );
    if let Ok(accept) = http::HeaderValue::from_str(&accept_key(key)) {
        headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// One server frame: FIN set, unmasked.
pub fn encode(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

/// A close frame with status `code` (1000 is a normal closure).
pub fn close_frame(code: u16) -> Vec<u8> {
    encode(CLOSE, &code.to_be_bytes())
}

/// A whole message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A binary message.
    Binary(Vec<u8>),
    /// A text message.
    Text(Vec<u8>),
    /// A ping: answer with a pong carrying the same bytes.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// The client closes the connection.
    Close,
}

struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, limit: usize) -> Result<Frame, WsError> {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).await.map_err(WsError::Io)?;
    let fin = head[0] & 0x80 != 0;
    if head[0] & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set without an extension"));
    }
    let opcode = head[0] & 0x0F;
    let masked = head[1] & 0x80 != 0;
    if !masked {
        return Err(WsError::Protocol("client frames must be masked"));
    }
    let len = match head[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            reader.read_exact(&mut b).await.map_err(WsError::Io)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            reader.read_exact(&mut b).await.map_err(WsError::Io)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if opcode >= CLOSE && (len > 125 || !fin) {
        return Err(WsError::Protocol(
            "control frames are short and not fragmented",
        ));
    }
    let len = usize::try_from(len).map_err(|_| WsError::TooLarge)?;
    if len > limit {
        return Err(WsError::TooLarge);
    }
    let mut mask = [0u8; 4];
    reader.read_exact(&mut mask).await.map_err(WsError::Io)?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await.map_err(WsError::Io)?;
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    Ok(Frame {
        fin,
        opcode,
        payload,
    })
}

/// Reads whole messages from a client connection.
pub struct MessageReader<R> {
    reader: R,
    /// A fragmented message being assembled: its opcode and bytes so far.
    partial: Option<(u8, Vec<u8>)>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// Reads from `reader` (the upgraded connection's read half).
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            partial: None,
        }
    }

    /// The next message; control frames come as soon as they arrive, also between the
    /// fragments of a data message. A connection that ends between messages is a `Close`.
    pub async fn next(&mut self) -> Result<Message, WsError> {
        let data = &mut self.partial;
        loop {
            let frame = match read_frame(&mut self.reader, MAX_MESSAGE).await {
                Ok(frame) => frame,
                Err(WsError::Io(err))
                    if data.is_none() && err.kind() == std::io::ErrorKind::UnexpectedEof =>
                {
                    return Ok(Message::Close);
                }
                Err(err) => return Err(err),
            };
            match frame.opcode {
                PING => return Ok(Message::Ping(frame.payload)),
                PONG => return Ok(Message::Pong),
                CLOSE => return Ok(Message::Close),
                TEXT | BINARY if data.is_none() => *data = Some((frame.opcode, frame.payload)),
                CONTINUATION => match data.as_mut() {
                    Some((_, bytes)) => {
                        if bytes.len() + frame.payload.len() > MAX_MESSAGE {
                            return Err(WsError::TooLarge);
                        }
                        bytes.extend_from_slice(&frame.payload);
                    }
                    None => return Err(WsError::Protocol("continuation without a message")),
                },
                TEXT | BINARY => {
                    return Err(WsError::Protocol("new message inside a fragmented one"));
                }
                _ => return Err(WsError::Protocol("unknown opcode")),
            }
            if frame.fin
                && let Some((opcode, bytes)) = data.take()
            {
                return Ok(if opcode == TEXT {
                    Message::Text(bytes)
                } else {
                    Message::Binary(bytes)
                });
            }
        }
    }
}

/// A masked client frame, as a client (or a test) sends it.
pub fn encode_masked(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = encode(opcode, payload);
    if !fin {
        frame[0] &= 0x7F;
    }
    frame[1] |= 0x80;
    let start = frame.len() - payload.len();
    let masked: Vec<u8> = payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ mask[i % 4])
        .collect();
    frame.truncate(start);
    frame.extend_from_slice(&mask);
    frame.extend_from_slice(&masked);
    frame
}

/// Spawns the task that writes queued frames to `write` in order, and shuts it down once
/// every sender is gone (or stops at the first failure). Returns the queue and the task.
pub fn spawn_writer<W>(mut write: W) -> (mpsc::Sender<Vec<u8>>, JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(32);
    let task = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            if write.write_all(&frame).await.is_err() || write.flush().await.is_err() {
                return;
            }
        }
        let _ = write.shutdown().await;
    });
    (frames, task)
}

/// Bytes the tunnel reads from its local end per binary message.
const TUNNEL_CHUNK: usize = 32 << 10;

/// Carries a byte stream over the WebSocket connection `io` and returns its local end:
/// what is written there goes out in binary messages, and the payloads of the client's
/// binary messages can be read from it (message boundaries mean nothing). Pings are
/// answered. The client's close (or a broken connection) is the local end's EOF; the
/// local end's EOF sends a normal close.
pub fn tunnel<IO>(io: IO) -> DuplexStream
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (local, remote) = tokio::io::duplex(2 * TUNNEL_CHUNK);
    let (ws_read, ws_write) = tokio::io::split(io);
    let (mut from_local, mut to_local) = tokio::io::split(remote);
    let (frames, _) = spawn_writer(ws_write);
    let out = frames.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; TUNNEL_CHUNK];
        while let Ok(n @ 1..) = from_local.read(&mut buf).await {
            if out.send(encode(BINARY, &buf[..n])).await.is_err() {
                return;
            }
        }
        let _ = out.send(close_frame(1000)).await;
    });
    tokio::spawn(async move {
        let mut reader = MessageReader::new(ws_read);
        loop {
            match reader.next().await {
                Ok(Message::Binary(bytes)) => {
                    if to_local.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Ok(Message::Ping(payload)) => {
                    let _ = frames.send(encode(PONG, &payload)).await;
                }
                Ok(Message::Text(_) | Message::Pong) => {}
                Ok(Message::Close) | Err(_) => break,
            }
        }
        let _ = to_local.shutdown().await;
    });
    local
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn protocols_are_chosen_in_our_order() {
        let mut headers = HeaderMap::new();
        headers.append(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            "v4.channel.k8s.io, v5.channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(
            choose_protocol(&headers, &["v5.channel.k8s.io", "v4.channel.k8s.io"]),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(choose_protocol(&headers, &["base64.channel.k8s.io"]), None);
    }

    #[test]
    fn frame_lengths_use_the_three_encodings() {
        assert_eq!(encode(BINARY, b"hi"), [0x82, 2, b'h', b'i']);
        let medium = encode(BINARY, &[0u8; 300]);
        assert_eq!(&medium[..4], &[0x82, 126, 1, 44]);
        let large = encode(BINARY, &vec![0u8; 70_000]);
        assert_eq!(&large[..2], &[0x82, 127]);
        assert_eq!(u64::from_be_bytes(large[2..10].try_into().unwrap()), 70_000);
    }

    #[tokio::test]
    async fn fragmented_masked_messages_are_joined_and_pings_interleave() {
        let mask = [1, 2, 3, 4];
        let mut wire = encode_masked(false, BINARY, b"hel", mask);
        wire.extend(encode_masked(true, PING, b"p", mask));
        wire.extend(encode_masked(true, CONTINUATION, &[b'l'; 200], mask));
        wire.extend(encode_masked(true, CLOSE, &1000u16.to_be_bytes(), mask));
        let mut reader = MessageReader::new(&wire[..]);
        assert_eq!(reader.next().await.unwrap(), Message::Ping(b"p".to_vec()));
        let mut expected = b"hel".to_vec();
        expected.extend(vec![b'l'; 200]);
        assert_eq!(reader.next().await.unwrap(), Message::Binary(expected));
        assert_eq!(reader.next().await.unwrap(), Message::Close);
        assert_eq!(reader.next().await.unwrap(), Message::Close);
    }

    #[tokio::test]
    async fn unmasked_and_oversized_frames_are_refused() {
        let wire = encode(BINARY, b"x");
        let err = MessageReader::new(&wire[..]).next().await.unwrap_err();
        assert!(matches!(err, WsError::Protocol(_)));
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        let err = MessageReader::new(&huge[..]).next().await.unwrap_err();
        assert!(matches!(err, WsError::TooLarge));
    }

    #[tokio::test]
    async fn the_tunnel_joins_binary_messages_and_answers_pings() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let mut local = tunnel(server);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let mask = [5, 6, 7, 8];
        let mut wire = encode_masked(true, BINARY, b"SPDY", mask);
        wire.extend(encode_masked(true, PING, b"p", mask));
        wire.extend(encode_masked(true, BINARY, b"/3.1", mask));
        wire.extend(encode_masked(true, CLOSE, &1000u16.to_be_bytes(), mask));
        client_write.write_all(&wire).await.unwrap();
        let mut got = Vec::new();
        local.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"SPDY/3.1");
        local.write_all(b"reply").await.unwrap();
        drop(local);
        let mut frames = Vec::new();
        client_read.read_to_end(&mut frames).await.unwrap();
        let mut expected = encode(PONG, b"p");
        expected.extend(encode(BINARY, b"reply"));
        expected.extend(close_frame(1000));
        assert_eq!(frames, expected);
    }
}
