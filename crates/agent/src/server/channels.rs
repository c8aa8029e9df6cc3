//! The channel protocol of `kubectl exec`/`attach` over WebSocket (`v4.channel.k8s.io`
//! and `v5.channel.k8s.io`): every binary message starts with a channel byte — 0 stdin,
//! 1 stdout, 2 stderr, 3 error (one `metav1.Status` JSON when the command ends), 4
//! terminal resize (JSON `{"Width":…,"Height":…}`) — and v5 adds 255, "close the channel
//! named by the next byte" (how a client says its stdin ended).

use serde::Deserialize;
use serde_json::json;

/// Channel of the command's standard input.
pub const STDIN: u8 = 0;
/// Channel of its standard output.
pub const STDOUT: u8 = 1;
/// Channel of its standard error.
pub const STDERR: u8 = 2;
/// Channel of the final status.
pub const ERROR: u8 = 3;
/// Channel of terminal sizes.
pub const RESIZE: u8 = 4;
/// v5: closes the channel named by the following byte.
pub const CLOSE: u8 = 255;

/// Version 5 of the protocol (with [`CLOSE`]).
pub const V5: &str = "v5.channel.k8s.io";
/// Version 4.
pub const V4: &str = "v4.channel.k8s.io";
/// The versions served, preferred first.
pub const PROTOCOLS: &[&str] = &[V5, V4];

/// A message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Bytes for a channel.
    Data {
        /// The channel.
        channel: u8,
        /// The bytes (may be empty).
        bytes: Vec<u8>,
    },
    /// The client will send no more on this channel.
    Close(u8),
}

/// Parses one binary message; `None` for an empty or malformed one.
pub fn parse(message: &[u8]) -> Option<Incoming> {
    let (&channel, rest) = message.split_first()?;
    if channel == CLOSE {
        return rest.first().map(|&c| Incoming::Close(c));
    }
    Some(Incoming::Data {
        channel,
        bytes: rest.to_vec(),
    })
}

/// The payload of a message carrying `bytes` on `channel`.
pub fn data(channel: u8, bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(bytes.len() + 1);
    message.push(channel);
    message.extend_from_slice(bytes);
    message
}

/// A terminal size as the client sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The sizes in the bytes of a resize message (one JSON object each).
pub fn parse_sizes(bytes: &[u8]) -> Vec<TerminalSize> {
    serde_json::Deserializer::from_slice(bytes)
        .into_iter::<TerminalSize>()
        .map_while(Result::ok)
        .collect()
}

/// How a command ended, as the error channel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this code (0 is success).
    Exited(i32),
    /// It could not run.
    Failed(String),
}

/// The `metav1.Status` JSON of `outcome`: `Success`, or `Failure` with reason
/// `NonZeroExitCode` and an `ExitCode` cause holding the code (what kubectl turns into its
/// own exit code), or `Failure` with a message.
pub fn status(outcome: &Outcome) -> Vec<u8> {
    let value = match outcome {
        Outcome::Exited(0) => json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": "InternalError",
            "code": 500,
        }),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_by_channel() {
        assert_eq!(
            parse(&[STDIN, b'h', b'i']),
            Some(Incoming::Data {
                channel: STDIN,
                bytes: b"hi".to_vec()
            })
        );
        assert_eq!(parse(&[CLOSE, STDIN]), Some(Incoming::Close(STDIN)));
        assert_eq!(parse(&[CLOSE]), None);
        assert_eq!(parse(&[]), None);
        assert_eq!(data(STDERR, b"x"), [2, b'x']);
    }

    #[test]
    fn resize_messages_may_hold_several_sizes() {
        let sizes = parse_sizes(br#"{"Width":80,"Height":24}{"Width":100,"Height":40}"#);
        assert_eq!(
            sizes,
            [
                TerminalSize {
                    width: 80,
                    height: 24
                },
                TerminalSize {
                    width: 100,
                    height: 40
                }
            ]
        );
        assert!(parse_sizes(b"garbage").is_empty());
    }

    #[test]
    fn statuses_carry_the_exit_code_as_kubectl_reads_it() {
        let ok: serde_json::Value = serde_json::from_slice(&status(&Outcome::Exited(0))).unwrap();
        assert_eq!(ok["status"], "Success");
        let three: serde_json::Value =
            serde_json::from_slice(&status(&Outcome::Exited(3))).unwrap();
        assert_eq!(three["reason"], "NonZeroExitCode");
        assert_eq!(three["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(three["details"]["causes"][0]["message"], "3");
        let failed: serde_json::Value =
            serde_json::from_slice(&status(&Outcome::Failed("no such container".into()))).unwrap();
        assert_eq!(failed["message"], "no such container");
    }
}
