//! Sessions driven by a scripted client over an in-memory connection.

use std::time::Duration;

use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

use super::*;
use crate::server::spdy::compress::HeaderDecompressor;
use crate::server::spdy::frame::{CANCEL, FLOW_CONTROL_ERROR, PROTOCOL_ERROR};

/// The client end: its own compression streams, as a real peer has.
struct Client {
    read: ReadHalf<DuplexStream>,
    write: WriteHalf<DuplexStream>,
    compressor: HeaderCompressor,
    decompressor: HeaderDecompressor,
}

impl Client {
    fn start(config: Config) -> (Self, Incoming) {
        let (client, server) = tokio::io::duplex(1 << 20);
        let incoming = start(server, config);
        let (read, write) = tokio::io::split(client);
        let client = Self {
            read,
            write,
            compressor: HeaderCompressor::new().unwrap(),
            decompressor: HeaderDecompressor::new(),
        };
        (client, incoming)
    }

    async fn send(&mut self, frame: Frame) {
        let bytes = frame::encode(&frame, &mut self.compressor).unwrap();
        self.write.write_all(&bytes).await.unwrap();
    }

    async fn open(&mut self, stream: u32, kind: &str) {
        let headers = Headers(vec![("streamtype".into(), kind.into())]);
        self.send(Frame::SynStream {
            stream,
            associated: 0,
            priority: 0,
            flags: 0,
            headers,
        })
        .await;
    }

    async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(
            Duration::from_secs(5),
            frame::read(&mut self.read, &mut self.decompressor),
        )
        .await
        .expect("a frame in time")
        .unwrap()
    }

    async fn data(&mut self, stream: u32, flags: u8, data: &[u8]) {
        let data = data.to_vec();
        self.send(Frame::Data {
            stream,
            flags,
            data,
        })
        .await;
    }
}

fn advisory() -> Config {
    Config {
        flow_control: FlowControl::Advisory,
        ..Config::default()
    }
}

#[tokio::test]
async fn streams_open_carry_data_both_ways_and_finish() {
    let (mut client, mut incoming) = Client::start(Config::default());
    client.open(1, "error").await;
    client.open(3, "data").await;
    client.send(Frame::Ping { id: 1 }).await;
    let first = incoming.accept().await.unwrap();
    let mut second = incoming.accept().await.unwrap();
    assert_eq!(
        (first.id, first.headers.get("streamtype")),
        (1, Some("error"))
    );
    assert_eq!(second.headers.get("streamtype"), Some("data"));
    assert_eq!(client.next().await, Some(Frame::Ping { id: 1 }));

    second.writer.reply().await.unwrap();
    assert!(matches!(
        client.next().await,
        Some(Frame::SynReply { stream: 3, .. })
    ));
    client.data(3, FLAG_FIN, b"request").await;
    assert_eq!(second.reader.read().await.unwrap(), b"request");
    assert_eq!(second.reader.read().await, None, "the client's FIN");
    second.writer.write(b"response").await.unwrap();
    second.writer.finish().await.unwrap();
    let data = |flags, data: &[u8]| {
        Some(Frame::Data {
            stream: 3,
            flags,
            data: data.to_vec(),
        })
    };
    assert_eq!(client.next().await, data(0, b"response"));
    assert_eq!(client.next().await, data(FLAG_FIN, b""));
    assert_eq!(
        second.writer.write(b"late").await,
        Err(StreamError::StreamClosed)
    );

    // The end of the connection ends the session.
    drop(client);
    assert!(incoming.accept().await.is_none());
    assert_eq!(
        first.writer.write(b"x").await,
        Err(StreamError::SessionClosed)
    );
}

#[tokio::test]
async fn enforced_send_windows_wait_for_window_updates() {
    let (mut client, mut incoming) = Client::start(Config::default());
    client.open(1, "data").await;
    let stream = incoming.accept().await.unwrap();
    let writer = stream.writer.clone();
    let sending = tokio::spawn(async move { writer.write(&vec![7u8; 100_000]).await });
    let mut received = 0;
    while received < 65_536 {
        match client.next().await {
            Some(Frame::Data { data, .. }) => received += data.len(),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(received, 65_536, "exactly the initial window");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!sending.is_finished());
    client
        .send(Frame::WindowUpdate {
            stream: 0,
            delta: 40_000,
        })
        .await;
    client
        .send(Frame::WindowUpdate {
            stream: 1,
            delta: 40_000,
        })
        .await;
    while received < 100_000 {
        if let Some(Frame::Data { data, .. }) = client.next().await {
            received += data.len();
        }
    }
    sending.await.unwrap().unwrap();
}

#[tokio::test]
async fn consumed_data_is_granted_back_and_overruns_are_reset() {
    let (mut client, mut incoming) = Client::start(Config::default());
    client.open(1, "data").await;
    let mut stream = incoming.accept().await.unwrap();
    client.data(1, 0, &[1u8; 40_000]).await;
    assert_eq!(stream.reader.read().await.unwrap().len(), 40_000);
    assert_eq!(
        client.next().await,
        Some(Frame::WindowUpdate {
            stream: 0,
            delta: 40_000
        })
    );
    assert_eq!(
        client.next().await,
        Some(Frame::WindowUpdate {
            stream: 1,
            delta: 40_000
        })
    );
    // More than the window without waiting: the stream is reset.
    client.data(1, 0, &[1u8; 60_000]).await;
    client.data(1, 0, &[1u8; 60_000]).await;
    let mut saw_reset = false;
    while let Some(frame) = client.next().await {
        if frame
            == (Frame::RstStream {
                stream: 1,
                status: FLOW_CONTROL_ERROR,
            })
        {
            saw_reset = true;
            break;
        }
    }
    assert!(saw_reset);
}

#[tokio::test]
async fn advisory_flow_control_neither_waits_nor_resets() {
    let (mut client, mut incoming) = Client::start(advisory());
    client.open(1, "data").await;
    let mut stream = incoming.accept().await.unwrap();
    stream.writer.write(&vec![0u8; 200_000]).await.unwrap();
    for _ in 0..3 {
        client.data(1, 0, &[1u8; 60_000]).await;
    }
    for _ in 0..3 {
        assert_eq!(stream.reader.read().await.unwrap().len(), 60_000);
    }
}

#[tokio::test]
async fn bad_stream_ids_resets_and_closed_streams_are_handled() {
    let (mut client, mut incoming) = Client::start(advisory());
    client.open(2, "even").await;
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream: 2,
            status: PROTOCOL_ERROR
        })
    );
    client.open(5, "data").await;
    let mut stream = incoming.accept().await.unwrap();
    client.open(3, "lower").await;
    assert_eq!(
        client.next().await,
        Some(Frame::RstStream {
            stream: 3,
            status: PROTOCOL_ERROR
        })
    );
    client
        .send(Frame::RstStream {
            stream: 5,
            status: CANCEL,
        })
        .await;
    assert_eq!(stream.reader.read().await, None);
    assert_eq!(
        stream.writer.write(b"x").await,
        Err(StreamError::StreamClosed)
    );
    // Data for a stream that is gone is dropped.
    client.data(5, 0, b"late").await;
    client.send(Frame::Ping { id: 3 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 3 }));
}

#[tokio::test]
async fn a_malformed_frame_ends_the_session_with_goaway() {
    let (mut client, mut incoming) = Client::start(advisory());
    client
        .write
        .write_all(&[0x80, 3, 0, 6, 0, 0, 0, 2, 0, 1])
        .await
        .unwrap();
    assert!(matches!(
        client.next().await,
        Some(Frame::GoAway { status: 1, .. })
    ));
    assert!(incoming.accept().await.is_none());
    assert_eq!(client.next().await, None, "the server closed its side");
}
