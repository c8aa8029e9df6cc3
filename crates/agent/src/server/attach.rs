//! `/attach/{ns}/{pod}/{container}`: the running container's main process, from now on,
//! over the same WebSocket channel protocol as exec, until the container exits.
//!
//! Output comes from the container's log (stdout on channel 1, stderr on 2; with a
//! terminal everything on 1). Input and terminal sizes go to the container's monitor
//! through its attach socket (see [`crate::containers::attach`]) when the container was
//! made with `stdin` (or `tty`); otherwise, as in Kubernetes, input is dropped.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{mpsc, oneshot};

use super::channels::{self, Outcome, TerminalSize};
use super::exec::{StreamFlags, handshake};
use super::pods::{self, Target};
use super::stream::{self, Streams};
use super::{Body, status_response};
use crate::Context;
use crate::containers::attach::{self, Frame};
use crate::containers::logfile::Stream;
use crate::containers::logread::{self, LogOptions};

/// How often the log is polled for more.
const POLL: Duration = Duration::from_millis(100);

/// Serves one attach request.
pub async fn serve(
    ctx: Arc<Context>,
    mut req: Request<Incoming>,
    target: Target,
) -> Response<Body> {
    let flags = StreamFlags::parse(req.uri().query());
    let attempts = match pods::find(&ctx, &target).await {
        Ok(attempts) => attempts,
        Err((code, message)) => return status_response(code, &message),
    };
    let Some(entry) = attempts.current().filter(|e| e.is_running()).cloned() else {
        let message = format!(
            "container {:?} in pod {:?} is not running",
            target.container, target.pod
        );
        return status_response(StatusCode::BAD_REQUEST, &message);
    };
    let id = match pods::id_of(&entry) {
        Ok(id) => id,
        Err((code, message)) => return status_response(code, &message),
    };
    let response = match handshake(&req) {
        Ok(response) => response,
        Err(message) => return status_response(StatusCode::BAD_REQUEST, message),
    };
    let input = if (flags.stdin || flags.tty) && entry.meta.stdio.attachable() {
        let socket = attach::socket_path(&ctx.containers.dir(&id));
        match tokio::net::UnixStream::connect(&socket).await {
            Ok(stream) => Some(stream),
            Err(err) => {
                let message = format!("cannot attach to the input of {id}: {err}");
                return status_response(StatusCode::INTERNAL_SERVER_ERROR, &message);
            }
        }
    } else {
        None
    };
    let path = ctx.containers.log_path(&id);
    let rotation = entry.meta.log_rotation.unwrap_or_default();
    let from_now = LogOptions {
        tail_lines: Some(0),
        ..Default::default()
    };
    let follower = match logread::read(&path, rotation, &from_now) {
        Ok((_, follower)) => follower,
        Err(err) => {
            let message = format!("cannot read the output of {id}: {err}");
            return status_response(StatusCode::INTERNAL_SERVER_ERROR, &message);
        }
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let (out_tx, output) = mpsc::channel(16);
        let (outcome_tx, outcome) = oneshot::channel();
        let (stdin_tx, stdin_rx) = mpsc::channel::<Vec<u8>>(4);
        let (resize_tx, resize_rx) = mpsc::channel::<TerminalSize>(4);
        tokio::spawn(forward_input(input, stdin_rx, resize_rx));
        std::thread::spawn(move || {
            let outcome = relay(&ctx, &id, follower, flags, &out_tx);
            let _ = outcome_tx.send(outcome);
        });
        let streams = Streams {
            output,
            stdin: flags.stdin.then_some(stdin_tx),
            resize: flags.tty.then_some(resize_tx),
            outcome,
        };
        stream::run(TokioIo::new(upgraded), streams).await;
    });
    response
}

/// Sends the client's input and terminal sizes to the monitor's attach socket (or drops
/// them when the container takes no input) until the client stops sending.
async fn forward_input(
    mut socket: Option<tokio::net::UnixStream>,
    mut stdin: mpsc::Receiver<Vec<u8>>,
    mut resize: mpsc::Receiver<TerminalSize>,
) {
    let mut stdin_open = true;
    let mut resize_open = true;
    while stdin_open || resize_open {
        let frame = tokio::select! {
            bytes = stdin.recv(), if stdin_open => match bytes {
                Some(bytes) => Frame::Input(bytes),
                None => {
                    // The client closed its stdin: leaving ends an attach session, which
                    // closes the process's stdin when it is stdinOnce.
                    stdin_open = false;
                    socket = None;
                    continue;
                }
            },
            size = resize.recv(), if resize_open => match size {
                Some(size) => Frame::Resize { cols: size.width, rows: size.height },
                None => {
                    resize_open = false;
                    continue;
                }
            },
        };
        if let Some(stream) = socket.as_mut()
            && stream.write_all(&frame.encode()).await.is_err()
        {
            socket = None;
        }
    }
}

/// Sends new log records as output until the container exits or the client leaves.
fn relay(
    ctx: &Context,
    id: &strata_runtime::ContainerId,
    mut follower: logread::Follower,
    flags: StreamFlags,
    out: &mpsc::Sender<(u8, Vec<u8>)>,
) -> Outcome {
    loop {
        let entry = ctx.containers.entry(id).ok();
        let running = entry.as_ref().is_some_and(|e| e.is_running());
        let records = match follower.poll_records() {
            Ok(records) => records,
            Err(err) => return Outcome::Failed(format!("cannot read the output of {id}: {err}")),
        };
        for record in records {
            let channel = match record.stream {
                Stream::Stderr if !flags.tty => channels::STDERR,
                _ => channels::STDOUT,
            };
            let wanted = if channel == channels::STDERR {
                flags.stderr
            } else {
                flags.stdout
            };
            if !wanted {
                continue;
            }
            let mut bytes = record.content;
            if !record.partial {
                bytes.push(b'\n');
            }
            if out.blocking_send((channel, bytes)).is_err() {
                return Outcome::Exited(0);
            }
        }
        if !running {
            let code = ctx.containers.exit(id).map_or(0, |e| e.code);
            return Outcome::Exited(code);
        }
        if out.is_closed() {
            return Outcome::Exited(0);
        }
        std::thread::sleep(POLL);
    }
}
