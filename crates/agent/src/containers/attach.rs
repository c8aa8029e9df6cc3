//! Input to a running container's main process (`kubectl attach -i`, `kubectl run -it`):
//! the monitor of a container whose spec asks for `stdin` (or a `tty`) keeps the write
//! end of its stdin (or its terminal's master) and listens on `attach.sock` in the
//! container's directory (mode 0600). Whoever attaches sends [frames](Frame): input
//! bytes and terminal sizes. With `stdinOnce`, stdin is closed when the first attached
//! client leaves, as Kubernetes does. Output is not relayed here: attached clients read
//! the container's log from the moment they attach.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_runtime::console::{WindowSize, set_window_size};

/// The socket's file name in the container's directory.
pub const SOCKET: &str = "attach.sock";

/// How a container's standard streams are set up (Kubernetes' `stdin`, `stdinOnce`,
/// `tty`); all off by default: stdin is `/dev/null`, output goes through pipes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdioMode {
    /// Keep stdin open for attached clients.
    #[serde(default)]
    pub stdin: bool,
    /// Close stdin when the first attached client leaves.
    #[serde(default)]
    pub stdin_once: bool,
    /// Run the main process on a terminal.
    #[serde(default)]
    pub tty: bool,
}

impl StdioMode {
    /// Whether the monitor listens for attached clients.
    pub fn attachable(&self) -> bool {
        self.stdin || self.tty
    }
}

/// One message from an attached client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes for the process's stdin.
    Input(Vec<u8>),
    /// The client's terminal size.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
}

const INPUT: u8 = 0;
const RESIZE: u8 = 1;
/// The largest frame payload accepted.
const MAX_FRAME: usize = 1 << 20;

impl Frame {
    /// The frame on the wire: a kind byte, a big-endian u32 length, the payload.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload) = match self {
            Frame::Input(bytes) => (INPUT, bytes.clone()),
            Frame::Resize { cols, rows } => {
                let mut size = cols.to_be_bytes().to_vec();
                size.extend_from_slice(&rows.to_be_bytes());
                (RESIZE, size)
            }
        };
        let mut out = Vec::with_capacity(payload.len() + 5);
        out.push(kind);
        out.extend_from_slice(
            &u32::try_from(payload.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&payload);
        out
    }

    /// Reads one frame; `None` at the end of the stream or on a malformed frame.
    pub fn read(from: &mut impl Read) -> Option<Frame> {
        let mut header = [0u8; 5];
        from.read_exact(&mut header).ok()?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_FRAME {
            return None;
        }
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).ok()?;
        match (header[0], payload.as_slice()) {
            (INPUT, _) => Some(Frame::Input(payload)),
            (RESIZE, [c0, c1, r0, r1]) => Some(Frame::Resize {
                cols: u16::from_be_bytes([*c0, *c1]),
                rows: u16::from_be_bytes([*r0, *r1]),
            }),
            _ => None,
        }
    }
}

/// Where attached input goes.
pub struct Input {
    /// The process's stdin (the pipe's write end, or the terminal's master).
    pub stdin: Option<OwnedFd>,
    /// The terminal's master, for sizes.
    pub terminal: Option<OwnedFd>,
    /// Close stdin when the first client leaves.
    pub once: bool,
}

/// The socket path of the container whose directory is `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET)
}

/// Binds the socket in `dir` and serves attached clients, one at a time, on a thread of
/// its own for as long as the monitor lives.
pub fn listen(dir: &Path, input: Input) -> std::io::Result<()> {
    let path = socket_path(dir);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::spawn(move || serve(listener, input));
    Ok(())
}

fn serve(listener: UnixListener, mut input: Input) {
    let mut stdin = input.stdin.take().map(std::fs::File::from);
    for connection in listener.incoming() {
        let Ok(mut connection) = connection else {
            continue;
        };
        while let Some(frame) = Frame::read(&mut connection) {
            match frame {
                Frame::Input(bytes) => {
                    if let Some(pipe) = stdin.as_mut()
                        && pipe.write_all(&bytes).is_err()
                    {
                        // The process closed its stdin: later input has nowhere to go.
                        stdin = None;
                    }
                }
                Frame::Resize { cols, rows } => {
                    if let Some(terminal) = &input.terminal {
                        let _ = set_window_size(
                            std::os::fd::AsFd::as_fd(terminal),
                            WindowSize { rows, cols },
                        );
                    }
                }
            }
        }
        if input.once {
            // stdinOnce: the process sees the end of its input.
            stdin = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_end_the_stream() {
        let frames = [
            Frame::Input(b"echo hi\n".to_vec()),
            Frame::Resize {
                cols: 120,
                rows: 40,
            },
            Frame::Input(Vec::new()),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut reader = wire.as_slice();
        for frame in &frames {
            assert_eq!(Frame::read(&mut reader).as_ref(), Some(frame));
        }
        assert_eq!(Frame::read(&mut reader), None);
        // A resize of the wrong length, an unknown kind, a frame too long.
        for bad in [
            vec![RESIZE, 0, 0, 0, 1, 7],
            vec![9, 0, 0, 0, 0],
            vec![INPUT, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert_eq!(Frame::read(&mut bad.as_slice()), None, "{bad:?}");
        }
    }

    #[test]
    fn input_reaches_the_pipe_and_stdin_once_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (read, write) = nix::unistd::pipe().unwrap();
        listen(
            dir.path(),
            Input {
                stdin: Some(write),
                terminal: None,
                once: true,
            },
        )
        .unwrap();
        let mode = std::fs::metadata(socket_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        {
            let mut client =
                std::os::unix::net::UnixStream::connect(socket_path(dir.path())).unwrap();
            client
                .write_all(&Frame::Input(b"hello ".to_vec()).encode())
                .unwrap();
            client
                .write_all(&Frame::Input(b"world".to_vec()).encode())
                .unwrap();
        }
        // The client left: with stdinOnce the pipe reaches its end after the input.
        let mut got = String::new();
        std::fs::File::from(read).read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello world");
    }
}
