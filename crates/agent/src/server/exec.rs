//! `/exec/{ns}/{pod}/{container}?command=…`: runs a command in a running container over
//! an upgraded WebSocket connection ([`super::stream`]). The command runs in a session
//! process (`strata __exec`, see [`crate::containers::session`]) whose pipes are the
//! session's streams; with a terminal, sizes go to it through a FIFO. Query: `command`
//! (repeated), `stdin`/`input`, `stdout`/`output`, `stderr`/`error`, `tty` (both the
//! API's and the kubelet's names).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::channels::{self, Outcome, TerminalSize};
use super::pods::{self, Target};
use super::stream::{self, Streams};
use super::{Body, query_flag, query_values, status_response, websocket};
use crate::Context;
use crate::containers::session::{self, ExecRequest};

/// Which streams a session has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamFlags {
    /// The client sends stdin.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr (not with a terminal).
    pub stderr: bool,
    /// The command runs on a terminal.
    pub tty: bool,
}

impl StreamFlags {
    /// Reads the flags from a query.
    pub fn parse(query: Option<&str>) -> Self {
        let tty = query_flag(query, &["tty"]);
        Self {
            stdin: query_flag(query, &["stdin", "input"]),
            stdout: query_flag(query, &["stdout", "output"]),
            stderr: query_flag(query, &["stderr", "error"]) && !tty,
            tty,
        }
    }
}

/// Checks the WebSocket upgrade and builds the 101 response, or says why it is refused
/// (a 400).
pub fn handshake<B>(req: &Request<B>) -> Result<Response<Body>, &'static str> {
    if !websocket::is_upgrade(req.headers()) {
        return Err("this endpoint needs a WebSocket upgrade (v5.channel.k8s.io)");
    }
    let Some(protocol) = websocket::choose_protocol(req.headers(), channels::PROTOCOLS) else {
        return Err("no supported WebSocket subprotocol (v5.channel.k8s.io, v4.channel.k8s.io)");
    };
    Ok(websocket::switching_response(req, protocol))
}

/// Serves one exec request.
pub async fn serve(
    ctx: Arc<Context>,
    mut req: Request<Incoming>,
    target: Target,
) -> Response<Body> {
    let command = query_values(req.uri().query(), "command");
    if command.is_empty() {
        return status_response(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 command",
        );
    }
    let flags = StreamFlags::parse(req.uri().query());
    let attempts = match pods::find(&ctx, &target).await {
        Ok(attempts) => attempts,
        Err((code, message)) => return status_response(code, &message),
    };
    let Some(entry) = attempts.current().filter(|e| e.is_running()) else {
        let message = format!(
            "container {:?} in pod {:?} is not running",
            target.container, target.pod
        );
        return status_response(StatusCode::BAD_REQUEST, &message);
    };
    let response = match handshake(&req) {
        Ok(response) => response,
        Err(message) => return status_response(StatusCode::BAD_REQUEST, message),
    };
    let request = ExecRequest {
        container: entry.meta.id.clone(),
        command,
        tty: flags.tty,
        resize: None,
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(error = %err, "exec upgrade failed");
                return;
            }
        };
        let streams = start(&ctx, request, flags);
        stream::run(TokioIo::new(upgraded), streams).await;
    });
    response
}

/// A unique number for FIFO names.
static SESSIONS: AtomicU64 = AtomicU64::new(0);

/// Starts the session process and wires its pipes to [`Streams`].
fn start(ctx: &Context, request: ExecRequest, flags: StreamFlags) -> Streams {
    let (out_tx, output) = mpsc::channel::<(u8, Vec<u8>)>(16);
    let (outcome_tx, outcome) = oneshot::channel();
    match spawn_session(ctx, request, flags, out_tx, outcome_tx) {
        Ok((stdin, resize)) => Streams {
            output,
            stdin,
            resize,
            outcome,
        },
        Err((message, outcome_tx)) => {
            // A session that cannot start has no output, only its failure.
            let _ = outcome_tx.send(Outcome::Failed(message));
            Streams {
                output,
                stdin: None,
                resize: None,
                outcome,
            }
        }
    }
}

type Inputs = (
    Option<mpsc::Sender<Vec<u8>>>,
    Option<mpsc::Sender<TerminalSize>>,
);

fn spawn_session(
    ctx: &Context,
    mut request: ExecRequest,
    flags: StreamFlags,
    out_tx: mpsc::Sender<(u8, Vec<u8>)>,
    outcome_tx: oneshot::Sender<Outcome>,
) -> Result<Inputs, (String, oneshot::Sender<Outcome>)> {
    let mut resize_path = None;
    if flags.tty {
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let path = ctx
            .options
            .data_dir
            .join("containers")
            .join(&request.container)
            .join(format!("exec-{}-{n}.resize", std::process::id()));
        let mode = nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR;
        if let Err(err) = nix::unistd::mkfifo(&path, mode) {
            return Err((format!("cannot make the resize FIFO: {err}"), outcome_tx));
        }
        resize_path = Some(path.clone());
        request.resize = Some(path);
    }
    let argv = session::args(&ctx.options.strata, &request);
    let Some((program, args)) = argv.split_first() else {
        return Err(("empty session command".into(), outcome_tx));
    };
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .stdin(if flags.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(err) => {
            if let Some(path) = &resize_path {
                let _ = std::fs::remove_file(path);
            }
            let message = format!("cannot start the exec session: {err}");
            return Err((message, outcome_tx));
        }
    };
    let stdin = child.stdin.take().map(|mut pipe| {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(16);
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if pipe.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            // Dropping the pipe is the command's end of input.
        });
        tx
    });
    let resize = resize_path.map(|path| {
        let (tx, rx) = mpsc::channel::<TerminalSize>(8);
        tokio::spawn(write_sizes(path, rx));
        tx
    });
    let pumps = [
        child
            .stdout
            .take()
            .map(|pipe| tokio::spawn(pump(pipe, channels::STDOUT, out_tx.clone(), true))),
        child.stderr.take().map(|pipe| {
            // With a terminal, the session's own diagnostics appear on it.
            let (channel, wanted) = if flags.tty {
                (channels::STDOUT, true)
            } else {
                (channels::STDERR, flags.stderr)
            };
            tokio::spawn(pump(pipe, channel, out_tx.clone(), wanted))
        }),
    ];
    tokio::spawn(async move {
        let waited = tokio::select! {
            status = child.wait() => status,
            () = out_tx.closed() => {
                // The client left: end the session (and, with it, the command's terminal).
                let _ = child.start_kill();
                child.wait().await
            }
        };
        for pump in pumps.into_iter().flatten() {
            let _ = pump.await;
        }
        let outcome = match waited {
            Ok(status) => Outcome::Exited(exit_code(status)),
            Err(err) => Outcome::Failed(format!("cannot wait for the exec session: {err}")),
        };
        let _ = outcome_tx.send(outcome);
        drop(out_tx);
    });
    Ok((stdin, resize))
}

/// The shell convention: the code, or 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// Copies `pipe` to the output as `channel` (or discards it when not `wanted`).
async fn pump(
    mut pipe: impl AsyncRead + Unpin,
    channel: u8,
    out: mpsc::Sender<(u8, Vec<u8>)>,
    wanted: bool,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if wanted && out.send((channel, buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Writes terminal sizes as `<cols> <rows>` lines into the session's FIFO.
async fn write_sizes(path: std::path::PathBuf, mut sizes: mpsc::Receiver<TerminalSize>) {
    // Opened read-write so the open does not wait for the session to open its end.
    let opened = tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(&path);
    let mut fifo = match opened {
        Ok(fifo) => fifo,
        Err(err) => {
            tracing::debug!(error = %err, "cannot open the resize FIFO");
            let _ = std::fs::remove_file(&path);
            return;
        }
    };
    while let Some(size) = sizes.recv().await {
        let line = format!("{} {}\n", size.width, size.height);
        if fifo.write_all(line.as_bytes()).await.is_err() {
            break;
        }
    }
    // The session removes the FIFO once it opened it; this covers a session that never did.
    let _ = std::fs::remove_file(&path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_accept_both_spellings_and_tty_has_no_stderr() {
        let flags = StreamFlags::parse(Some("stdin=true&stdout=true&stderr=true"));
        assert_eq!(
            flags,
            StreamFlags {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        let flags = StreamFlags::parse(Some("input=1&output=1&error=1&tty=1"));
        assert!(flags.stdin && flags.stdout && flags.tty && !flags.stderr);
    }

    #[test]
    fn handshake_answers_the_key_and_protocol() {
        let req = Request::builder()
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-protocol", "v5.channel.k8s.io")
            .body(())
            .unwrap();
        let response = handshake(&req).unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            response.headers()["sec-websocket-accept"],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "v5.channel.k8s.io"
        );
        let plain = Request::builder().body(()).unwrap();
        assert!(handshake(&plain).is_err());
    }
}
