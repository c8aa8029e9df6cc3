//! The monitor of a detached container (Strata's conmon): a process of its own (the
//! `strata __monitor` command) that becomes a session leader, creates and starts the
//! container with its output going to pipes, tells whoever spawned it whether that worked,
//! then copies output into the CRI log, waits for the container's exit and records it
//! (removing the container if asked to). Because it outlives whoever started it, a
//! container's exit is recorded even while the agent (or `strata up`) is down.

use super::StrataCommand;
use std::io::{BufRead as _, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio as ProcessStdio};
use std::sync::{Arc, Mutex};

use strata_runtime::console::ConsoleSocket;
use strata_runtime::{ContainerId, CreateOptions, Exit, Stdio, wait_for_exit};

use super::attach::{self, Input, StdioMode};
use super::logfile::{LogWriter, Stream, copy_chunks, copy_stream};
use super::store::{ContainerError, ExitRecord, Store};

/// The first line the monitor writes when the container started.
pub const READY: &str = "started";

/// Starts a monitor for the prepared container `id` and waits until it reports that the
/// container started; when it did not, the container is removed and the monitor's
/// one-line reason returned.
pub fn spawn(
    store: &Store,
    id: &ContainerId,
    command: &StrataCommand,
) -> Result<(), ContainerError> {
    let Some((program, args)) = command.argv.split_first() else {
        return Err(ContainerError::Monitor("empty monitor command".into()));
    };
    let mut child = Command::new(program)
        .args(args)
        .arg("__monitor")
        .arg(id.as_str())
        .stdin(ProcessStdio::null())
        .stdout(ProcessStdio::piped())
        .stderr(ProcessStdio::null())
        .spawn()
        .map_err(|err| {
            ContainerError::Monitor(format!("cannot start the container monitor: {err}"))
        })?;
    let mut report = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut report);
    }
    if report.trim() != READY {
        let _ = child.wait();
    } else {
        // The monitor lives on as its own session; reap it in the background so it
        // never lingers as a zombie of a long-running parent.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }
    check_report(store, id, report.trim())
}

/// Judges a monitor's first line: [`READY`], or else the container is removed and the
/// line (the monitor's one-line reason) returned as the error.
pub fn check_report(store: &Store, id: &ContainerId, report: &str) -> Result<(), ContainerError> {
    if report == READY {
        return Ok(());
    }
    let _ = store.remove(id, true);
    if report.is_empty() {
        return Err(ContainerError::Monitor(format!(
            "the container monitor exited without starting {id}"
        )));
    }
    Err(ContainerError::Monitor(report.to_string()))
}

/// Runs the monitor for a prepared container; its stdout is the report pipe. Returns the
/// exit code of the monitor process.
pub fn run(store: &Store, id: &ContainerId) -> Result<u8, ContainerError> {
    nix::unistd::setsid()
        .map_err(|err| ContainerError::Monitor(format!("cannot start a new session: {err}")))?;
    let (pid, copiers) = match start(store, id) {
        Ok(started) => started,
        Err(err) => {
            let _ = store.remove(id, true);
            println!("{}", one_line(&err));
            return Ok(1);
        }
    };
    println!("{READY}");
    let _ = std::io::stdout().flush();
    detach_stdio();

    let exit = wait_for_exit(pid);
    for copier in copiers {
        let _ = copier.join();
    }
    finish(store, id, exit?)?;
    Ok(0)
}

/// An error and its causes on one line, `a: b: c`, skipping causes already spelled out.
pub fn one_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

type Copier = std::thread::JoinHandle<()>;

fn start(store: &Store, id: &ContainerId) -> Result<(i32, Vec<Copier>), ContainerError> {
    let meta = store.meta(id)?;
    let log_path = store.log_path(id);
    let rotation = meta.log_rotation.unwrap_or_default();
    let log = Arc::new(Mutex::new(
        LogWriter::with_rotation(&log_path, rotation).map_err(|source| ContainerError::Io {
            action: "open",
            path: log_path.clone(),
            source,
        })?,
    ));
    let mode = meta.stdio;
    let (pid, outputs, input) = if mode.tty {
        on_terminal(store, id, mode)?
    } else {
        on_pipes(store, id, mode)?
    };
    if let Some(input) = input {
        let dir = store.dir(id);
        attach::listen(&dir, input).map_err(|source| ContainerError::Io {
            action: "listen for attached clients on",
            path: attach::socket_path(&dir),
            source,
        })?;
    }
    store.runtime().start(id)?;
    let copiers = outputs
        .into_iter()
        .map(|(fd, stream)| {
            let log = Arc::clone(&log);
            let file = std::fs::File::from(fd);
            if mode.tty {
                std::thread::spawn(move || copy_chunks(file, stream, &log))
            } else {
                std::thread::spawn(move || copy_stream(file, stream, &log))
            }
        })
        .collect();
    Ok((pid, copiers))
}

/// The container's init PID, the output streams to copy into the log, and where
/// attached input goes (when the container takes any).
type Created = (i32, Vec<(OwnedFd, Stream)>, Option<Input>);

fn pipe() -> Result<(OwnedFd, OwnedFd), ContainerError> {
    nix::unistd::pipe()
        .map_err(|err| ContainerError::Monitor(format!("cannot create a pipe: {err}")))
}

/// Creates the container with pipes for stdout and stderr, and for stdin when it takes
/// input (else `/dev/null`).
fn on_pipes(store: &Store, id: &ContainerId, mode: StdioMode) -> Result<Created, ContainerError> {
    let (out_read, out_write) = pipe()?;
    let (err_read, err_write) = pipe()?;
    let (stdin, input) = if mode.stdin {
        let (read, write) = pipe()?;
        let input = Input {
            stdin: Some(write),
            terminal: None,
            once: mode.stdin_once,
        };
        (read, Some(input))
    } else {
        let null: OwnedFd = std::fs::File::open("/dev/null")
            .map_err(|source| ContainerError::Io {
                action: "open",
                path: "/dev/null".into(),
                source,
            })?
            .into();
        (null, None)
    };
    let options = CreateOptions {
        stdio: Stdio {
            stdin: Some(stdin),
            stdout: Some(out_write),
            stderr: Some(err_write),
        },
        ..Default::default()
    };
    let state = store.runtime().create(id, &store.dir(id), options)?;
    let outputs = vec![(out_read, Stream::Stdout), (err_read, Stream::Stderr)];
    Ok((state.pid, outputs, input))
}

/// Creates the container on a terminal: its output (stdout and stderr alike) is logged
/// as stdout, and attached clients type into it and size it.
fn on_terminal(
    store: &Store,
    id: &ContainerId,
    mode: StdioMode,
) -> Result<Created, ContainerError> {
    let socket_path = store.dir(id).join("console.sock");
    let console = ConsoleSocket::bind(&socket_path)
        .map_err(|err| ContainerError::Monitor(format!("cannot make a console socket: {err}")))?;
    let options = CreateOptions {
        console_socket: Some(socket_path),
        ..Default::default()
    };
    let state = store.runtime().create(id, &store.dir(id), options)?;
    let master = console
        .receive_master()
        .map_err(|err| ContainerError::Monitor(format!("cannot receive the terminal: {err}")))?;
    drop(console);
    let copy = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|err| ContainerError::Monitor(format!("cannot share the terminal: {err}")))
    };
    let input = Input {
        stdin: if mode.stdin {
            Some(copy(&master)?)
        } else {
            None
        },
        terminal: Some(copy(&master)?),
        once: mode.stdin_once,
    };
    Ok((state.pid, vec![(master, Stream::Stdout)], Some(input)))
}

/// Points stdin/stdout/stderr at /dev/null so the parent's pipe can close.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..=2 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
}

/// Records the exit of `id` and removes it when asked to.
pub fn finish(store: &Store, id: &ContainerId, exit: Exit) -> Result<ExitRecord, ContainerError> {
    let _ = std::fs::remove_file(attach::socket_path(&store.dir(id)));
    let oom_killed = store
        .runtime()
        .stats(id)
        .map(|stats| stats.memory.oom_kills > 0)
        .unwrap_or(false);
    let record = ExitRecord {
        code: exit.code(),
        signal: match exit {
            Exit::Signal(signal) => Some(signal.as_str().to_string()),
            Exit::Code(_) => None,
        },
        oom_killed,
        finished: chrono::Utc::now(),
    };
    let Ok(meta) = store.meta(id) else {
        // `strata rm -f` removed the container while it ran: nothing left to record.
        return Ok(record);
    };
    if meta.auto_remove {
        store.remove(id, true)?;
    } else {
        store.record_exit(id, &record)?;
        // Stopped containers keep their directory (logs, exit) but release their cgroup.
        store.runtime().delete(id, true)?;
    }
    Ok(record)
}
