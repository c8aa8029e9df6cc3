//! Starting container monitors in bulk: the agent runs one fork server (the hidden
//! `strata __monitors` command) and asks it for a monitor per container, so every
//! monitor is a fork of one process that is already loaded and relocated. A monitor
//! exec'd afresh dirties ~0.9 MiB relocating the large `strata` executable before it
//! does anything; forked ones share those pages (see docs/benchmarks.md, density).
//!
//! Monitors stay separate processes that outlive the agent and the server: each is its
//! own session, and when the server ends (its agent stopped) they are re-parented like
//! any orphan. Whenever the fork server cannot be used, monitors are exec'd as before.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};

use strata_runtime::ContainerId;
use strata_runtime::forkserver::{self, ForkServerError};

use super::monitor;
use super::{ContainerError, Store, StrataCommand};

/// The hidden command that runs the fork server.
pub const SERVER_COMMAND: &str = "__monitors";

/// Starts monitors through a fork server, starting (and restarting) the server as needed.
#[derive(Debug)]
pub struct Launcher {
    command: StrataCommand,
    server: Mutex<Option<Server>>,
}

#[derive(Debug)]
struct Server {
    process: Option<Child>,
    socket: Option<OwnedFd>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing the socket ends the server; reap it once it has gone.
        drop(self.socket.take());
        if let Some(mut process) = self.process.take() {
            std::thread::spawn(move || process.wait());
        }
    }
}

impl Launcher {
    /// A launcher for monitors of the `strata` binary `command` names.
    pub fn new(command: StrataCommand) -> Self {
        Self {
            command,
            server: Mutex::new(None),
        }
    }

    /// Starts a monitor for the prepared container `id` and waits until it reports that
    /// the container started; when it did not, the container is removed and the
    /// monitor's one-line reason returned (as [`monitor::spawn`]).
    pub fn spawn(&self, store: &Store, id: &ContainerId) -> Result<(), ContainerError> {
        let (report, report_end) = nix::unistd::pipe()
            .map_err(|err| ContainerError::Monitor(format!("cannot create a pipe: {err}")))?;
        if let Err(err) = self.send(id, &report_end) {
            tracing::debug!(%id, "exec'ing the monitor: the fork server is unusable: {err}");
            drop((report, report_end));
            return monitor::spawn(store, id, &self.command);
        }
        drop(report_end);
        let mut line = String::new();
        let _ = BufReader::new(File::from(report)).read_line(&mut line);
        monitor::check_report(store, id, line.trim())
    }

    /// Hands `id` and the report pipe to the server, (re)starting it once if needed.
    fn send(&self, id: &ContainerId, report: &OwnedFd) -> Result<(), ContainerError> {
        let mut server = self.server.lock().unwrap_or_else(PoisonError::into_inner);
        for attempt in 0..2 {
            if server.is_none() {
                *server = Some(self.start_server()?);
            }
            let Some(socket) = server.as_ref().and_then(|s| s.socket.as_ref()) else {
                continue;
            };
            match forkserver::send(socket.as_fd(), id.as_str().as_bytes(), report.as_fd()) {
                Ok(()) => return Ok(()),
                Err(err) if attempt == 0 => {
                    tracing::debug!("restarting the monitor fork server: {err}");
                    *server = None;
                }
                Err(err) => return Err(fork_error(err)),
            }
        }
        Err(ContainerError::Monitor(
            "the monitor fork server keeps failing".into(),
        ))
    }

    fn start_server(&self) -> Result<Server, ContainerError> {
        let Some((program, args)) = self.command.argv.split_first() else {
            return Err(ContainerError::Monitor("empty monitor command".into()));
        };
        let (socket, server_end) = forkserver::socket_pair().map_err(fork_error)?;
        let process = Command::new(program)
            .args(args)
            .arg(SERVER_COMMAND)
            .stdin(Stdio::from(server_end))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|err| {
                ContainerError::Monitor(format!("cannot start the monitor fork server: {err}"))
            })?;
        Ok(Server {
            process: Some(process),
            socket: Some(socket),
        })
    }
}

fn fork_error(err: ForkServerError) -> ContainerError {
    ContainerError::Monitor(monitor::one_line(&err))
}

/// Runs the fork server (`strata __monitors`): its standard input is the socket the
/// launcher sends requests on. Each request becomes a monitor process, a fork of this
/// one, whose standard output is the request's report pipe. Returns when the launcher
/// closes the socket.
pub fn serve(store: &Store) -> Result<u8, ContainerError> {
    let socket = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|err| ContainerError::Monitor(format!("cannot take the server socket: {err}")))?;
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| ContainerError::Io {
            action: "open",
            path: "/dev/null".into(),
            source,
        })?;
    // Nothing is read from or written to the standard streams but by monitors' reports.
    let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
    forkserver::serve(socket, |payload, report| {
        let _ = nix::unistd::dup2(report.as_raw_fd(), 1);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 2);
        drop(report);
        let id = match std::str::from_utf8(payload)
            .map_err(|_| "the container ID is not UTF-8".to_string())
            .and_then(|id| ContainerId::new(id).map_err(|err| err.to_string()))
        {
            Ok(id) => id,
            Err(reason) => {
                println!("{reason}");
                return 1;
            }
        };
        match monitor::run(store, &id) {
            Ok(code) => i32::from(code),
            Err(_) => 1,
        }
    })
    .map_err(fork_error)?;
    Ok(0)
}
