//! One `exec`/`attach` session on an upgraded WebSocket connection: client messages go to
//! the command's stdin and terminal size, the command's output goes out on its channels,
//! and when the output has ended the outcome is sent on the error channel and the
//! connection closed normally (which kubectl reads as the end of every stream). Pings are
//! answered. When the client goes away first, the [`Streams`] output receiver is dropped,
//! which tells the producer to stop.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::channels::{self, Incoming, Outcome, TerminalSize};
use super::websocket::{self, Message, MessageReader};

/// The command's side of a session.
pub struct Streams {
    /// Output chunks with their channel; ends when the command's output has ended.
    pub output: mpsc::Receiver<(u8, Vec<u8>)>,
    /// Where stdin goes (dropped: end of input), when the client sends stdin.
    pub stdin: Option<mpsc::Sender<Vec<u8>>>,
    /// Where terminal sizes go, with a terminal.
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// How the command ended, sent once the output has ended.
    pub outcome: oneshot::Receiver<Outcome>,
}

/// Runs the session until the command ended and the client has been told, or the client
/// went away.
pub async fn run<IO>(io: IO, mut streams: Streams)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (frames, writer) = websocket::spawn_writer(write);
    let mut reader = tokio::spawn(read_client(
        MessageReader::new(read),
        frames.clone(),
        streams.stdin.take(),
        streams.resize.take(),
    ));
    let mut client_gone = false;
    loop {
        tokio::select! {
            chunk = streams.output.recv() => match chunk {
                Some((channel, bytes)) => {
                    let frame = websocket::encode(websocket::BINARY, &channels::data(channel, &bytes));
                    if frames.send(frame).await.is_err() {
                        client_gone = true;
                        break;
                    }
                }
                None => break,
            },
            _ = &mut reader, if !client_gone => {
                client_gone = true;
                break;
            }
        }
    }
    if !client_gone {
        let outcome = streams
            .outcome
            .await
            .unwrap_or_else(|_| Outcome::Failed("the session ended without an outcome".into()));
        let status = channels::data(channels::ERROR, &channels::status(&outcome));
        let _ = frames
            .send(websocket::encode(websocket::BINARY, &status))
            .await;
        let _ = frames.send(websocket::close_frame(1000)).await;
    }
    drop(streams.output);
    drop(frames);
    reader.abort();
    let _ = writer.await;
}

/// Reads client messages until the client closes: stdin, end of stdin, sizes, pings.
async fn read_client<R: AsyncRead + Unpin>(
    mut reader: MessageReader<R>,
    frames: mpsc::Sender<Vec<u8>>,
    mut stdin: Option<mpsc::Sender<Vec<u8>>>,
    resize: Option<mpsc::Sender<TerminalSize>>,
) {
    loop {
        let message = match reader.next().await {
            Ok(message) => message,
            Err(err) => {
                tracing::debug!(error = %err, "exec client stream failed");
                return;
            }
        };
        match message {
            Message::Binary(bytes) => match channels::parse(&bytes) {
                Some(Incoming::Data {
                    channel: channels::STDIN,
                    bytes,
                }) => {
                    if let Some(tx) = &stdin
                        && !bytes.is_empty()
                        && tx.send(bytes).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Some(Incoming::Data {
                    channel: channels::RESIZE,
                    bytes,
                }) => {
                    if let Some(tx) = &resize {
                        for size in channels::parse_sizes(&bytes) {
                            let _ = tx.send(size).await;
                        }
                    }
                }
                Some(Incoming::Close(channels::STDIN)) => stdin = None,
                _ => {}
            },
            Message::Ping(payload) => {
                let _ = frames
                    .send(websocket::encode(websocket::PONG, &payload))
                    .await;
            }
            Message::Text(_) | Message::Pong => {}
            Message::Close => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads server frames (unmasked) from `bytes`: (opcode, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while bytes.len() >= 2 {
            let opcode = bytes[0] & 0x0F;
            let (len, head) = match bytes[1] {
                126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
                127 => (
                    usize::try_from(u64::from_be_bytes(bytes[2..10].try_into().unwrap())).unwrap(),
                    10,
                ),
                n => (usize::from(n), 2),
            };
            out.push((opcode, bytes[head..head + len].to_vec()));
            bytes = &bytes[head + len..];
        }
        out
    }

    #[tokio::test]
    async fn output_then_status_then_close_and_stdin_flows_in() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (out_tx, output) = mpsc::channel(4);
        let (stdin_tx, mut stdin_rx) = mpsc::channel(4);
        let (outcome_tx, outcome) = oneshot::channel();
        let session = tokio::spawn(run(
            server,
            Streams {
                output,
                stdin: Some(stdin_tx),
                resize: None,
                outcome,
            },
        ));
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let mask = [9, 8, 7, 6];
        client_write
            .write_all(&websocket::encode_masked(
                true,
                websocket::BINARY,
                &[channels::STDIN, b'a', b'b'],
                mask,
            ))
            .await
            .unwrap();
        client_write
            .write_all(&websocket::encode_masked(
                true,
                websocket::PING,
                b"hb",
                mask,
            ))
            .await
            .unwrap();
        client_write
            .write_all(&websocket::encode_masked(
                true,
                websocket::BINARY,
                &[channels::CLOSE, channels::STDIN],
                mask,
            ))
            .await
            .unwrap();
        assert_eq!(stdin_rx.recv().await.unwrap(), b"ab");
        assert_eq!(stdin_rx.recv().await, None, "stdin is closed");
        out_tx
            .send((channels::STDOUT, b"out".to_vec()))
            .await
            .unwrap();
        out_tx
            .send((channels::STDERR, b"err".to_vec()))
            .await
            .unwrap();
        drop(out_tx);
        outcome_tx.send(Outcome::Exited(3)).unwrap();
        session.await.unwrap();
        let mut wire = Vec::new();
        client_read.read_to_end(&mut wire).await.unwrap();
        let got = frames(&wire);
        assert_eq!(got[0], (websocket::PONG, b"hb".to_vec()));
        assert_eq!(got[1], (websocket::BINARY, b"\x01out".to_vec()));
        assert_eq!(got[2], (websocket::BINARY, b"\x02err".to_vec()));
        assert_eq!(got[3].1[0], channels::ERROR);
        let status: serde_json::Value = serde_json::from_slice(&got[3].1[1..]).unwrap();
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(got[4], (websocket::CLOSE, 1000u16.to_be_bytes().to_vec()));
    }

    #[tokio::test]
    async fn a_client_that_leaves_drops_the_output_receiver() {
        let (client, server) = tokio::io::duplex(1024);
        let (out_tx, output) = mpsc::channel(4);
        let (_outcome_tx, outcome) = oneshot::channel();
        let session = tokio::spawn(run(
            server,
            Streams {
                output,
                stdin: None,
                resize: None,
                outcome,
            },
        ));
        drop(client);
        session.await.unwrap();
        assert!(out_tx.is_closed());
    }
}
