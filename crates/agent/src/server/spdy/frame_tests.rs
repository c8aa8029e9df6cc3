//! Round trips of every frame type, header compression across frames, and malformed
//! input refused without panics.

use super::*;

fn headers(pairs: &[(&str, &str)]) -> Headers {
    Headers(
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    )
}

fn every_frame() -> Vec<Frame> {
    let pf = headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]);
    vec![
        Frame::Data {
            stream: 1,
            flags: FLAG_FIN,
            data: b"hello".to_vec(),
        },
        Frame::SynStream {
            stream: 3,
            associated: 1,
            priority: 7,
            flags: FLAG_UNIDIRECTIONAL,
            headers: pf.clone(),
        },
        Frame::SynReply {
            stream: 3,
            flags: 0,
            headers: Headers::default(),
        },
        Frame::Headers {
            stream: 3,
            flags: FLAG_FIN,
            headers: pf,
        },
        Frame::RstStream {
            stream: 5,
            status: CANCEL,
        },
        Frame::Settings {
            flags: 1,
            entries: vec![Setting {
                flags: 1,
                id: SETTINGS_INITIAL_WINDOW_SIZE,
                value: 1 << 20,
            }],
        },
        Frame::Ping { id: 7 },
        Frame::GoAway {
            last_good: 9,
            status: 0,
        },
        Frame::WindowUpdate {
            stream: 0,
            delta: 1 << 30,
        },
    ]
}

#[tokio::test]
async fn every_frame_round_trips_through_one_compression_stream() {
    let mut compressor = HeaderCompressor::new().unwrap();
    let mut wire = Vec::new();
    for frame in every_frame() {
        wire.extend(encode(&frame, &mut compressor).unwrap());
    }
    let mut decompressor = HeaderDecompressor::new();
    let mut reader = &wire[..];
    for expected in every_frame() {
        let got = read(&mut reader, &mut decompressor).await.unwrap();
        assert_eq!(got, Some(expected));
    }
    assert_eq!(read(&mut reader, &mut decompressor).await.unwrap(), None);
}

#[test]
fn heads_follow_the_draft() {
    let mut compressor = HeaderCompressor::new().unwrap();
    let ping = encode(&Frame::Ping { id: 1 }, &mut compressor).unwrap();
    assert_eq!(ping, [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
    let data = Frame::Data {
        stream: 5,
        flags: FLAG_FIN,
        data: vec![9],
    };
    assert_eq!(
        encode(&data, &mut compressor).unwrap(),
        [0, 0, 0, 5, 1, 0, 0, 1, 9]
    );
}

#[test]
fn unknown_control_types_are_skipped() {
    let mut decompressor = HeaderDecompressor::new();
    let head = [0x80, 3, 0, 10, 0, 0, 0, 0];
    assert_eq!(decode(head, &[], &mut decompressor).unwrap(), None);
}

#[test]
fn malformed_frames_are_refused() {
    let mut d = HeaderDecompressor::new();
    let cases: &[([u8; 8], &[u8])] = &[
        // Data on stream 0; another version; short or wrong-sized control frames.
        ([0, 0, 0, 0, 0, 0, 0, 1], b"x"),
        ([0x80, 2, 0, 6, 0, 0, 0, 4], &[0, 0, 0, 1]),
        ([0x80, 3, 0, 1, 0, 0, 0, 4], &[0, 0, 0, 1]),
        ([0x80, 3, 0, 3, 0, 0, 0, 8], &[0, 0, 0, 1, 0, 0, 0, 0]),
        ([0x80, 3, 0, 3, 0, 0, 0, 4], &[0, 0, 0, 1]),
        ([0x80, 3, 0, 4, 0, 0, 0, 4], &[0xff, 0xff, 0xff, 0xff]),
        ([0x80, 3, 0, 6, 0, 0, 0, 2], &[0, 1]),
        ([0x80, 3, 0, 7, 0, 0, 0, 3], &[0, 0, 1]),
        ([0x80, 3, 0, 9, 0, 0, 0, 8], &[0, 0, 0, 1, 0, 0, 0, 0]),
        // A SYN_REPLY whose header block is not zlib data.
        ([0x80, 3, 0, 2, 0, 0, 0, 8], &[0, 0, 0, 1, 1, 2, 3, 4]),
    ];
    for (head, payload) in cases {
        assert!(decode(*head, payload, &mut d).is_err(), "{head:?}");
    }
}

#[tokio::test]
async fn oversized_and_truncated_frames_are_refused() {
    let mut d = HeaderDecompressor::new();
    let huge = [0, 0, 0, 1, 0, 0xff, 0xff, 0xff];
    let err = read(&mut &huge[..], &mut d).await.unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { .. }));
    let truncated = [0, 0, 0, 1, 0, 0, 0, 9, 1, 2];
    let err = read(&mut &truncated[..], &mut d).await.unwrap_err();
    assert!(matches!(err, FrameError::Io(_)));
}

#[test]
fn header_blocks_with_lying_lengths_are_refused() {
    assert!(parse_block(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(parse_block(&[0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(parse_block(&[0, 0, 0, 1, 0, 0, 0, 1, b'A', 0, 0, 0, 0]).is_err());
    let ok = encode_block(&headers(&[("port", "80")]));
    assert_eq!(parse_block(&ok).unwrap().get("port"), Some("80"));
}

#[test]
fn random_bytes_never_panic() {
    // A small deterministic generator: no dependency, same bytes every run.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let mut d = HeaderDecompressor::new();
        let kind = (next() % 12) as u8;
        let head = [0x80, 3, 0, kind, 0, 0, 0, 0];
        let len = (next() % 40) as usize;
        let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let _ = decode(head, &payload, &mut d);
        let _ = parse_block(&payload);
    }
}
