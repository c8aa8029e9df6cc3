//! Exec sessions (`kubectl exec`): each runs in a process of its own (the `strata __exec`
//! command), never in the agent, because the runtime forks and forking a multi-threaded
//! async process is unsafe. The session process joins the container with the command,
//! its standard streams being the session's (pipes from the agent), waits for it and
//! exits with its exit code. With a terminal it receives the pty master over a console
//! socket, relays it to its own stdin/stdout, and applies window sizes that the agent
//! writes as `<cols> <rows>` lines into a FIFO.
//!
//! Exit codes: the command's own, 128 + signal when a signal killed it, and
//! [`SESSION_FAILED`] (with the reason on stderr) when the command could not be started.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::wait::{WaitStatus, waitpid};
use strata_runtime::console::{ConsoleSocket, WindowSize, set_window_size};
use strata_runtime::{ContainerId, ExecOptions, Spec, wait_for_exit};

use super::StrataCommand;
use super::store::{ContainerError, Store};

/// Exit code of a session whose command could not be started (like a shell's 126).
pub const SESSION_FAILED: u8 = 126;

/// The full argument vector of the session process for `request`.
pub fn args(strata: &StrataCommand, request: &ExecRequest) -> Vec<OsString> {
    let mut argv = strata.argv.clone();
    argv.push("__exec".into());
    if request.tty {
        argv.push("--tty".into());
    }
    if let Some(fifo) = &request.resize {
        argv.push("--resize".into());
        argv.push(fifo.into());
    }
    argv.push(request.container.clone().into());
    argv.push("--".into());
    argv.extend(request.command.iter().map(OsString::from));
    argv
}

/// What a session runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    /// The container ID.
    pub container: String,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Run the command on a terminal.
    pub tty: bool,
    /// The FIFO carrying window sizes (with `tty`).
    pub resize: Option<PathBuf>,
}

/// Runs a session in this process (the `strata __exec` command): returns the exit code.
pub fn run(store: &Store, request: &ExecRequest) -> Result<u8, ContainerError> {
    let id = ContainerId::new(request.container.clone())?;
    store.meta(&id)?;
    if request.command.is_empty() {
        return Err(ContainerError::Monitor("no command given".into()));
    }
    if request.tty {
        return run_on_terminal(store, &id, request);
    }
    let pid = store.runtime().exec(
        &id,
        ExecOptions {
            args: request.command.clone(),
            ..Default::default()
        },
    )?;
    kill_on_terminate(pid);
    let exit = wait_for_exit(pid)?;
    Ok(u8::try_from(exit.code()).unwrap_or(255))
}

/// Makes SIGTERM to this session kill its command (`pid`, inside the container) rather
/// than the session alone: the agent sends it when a probe or hook times out, and a
/// command that outlived its session would linger in the container. (The mask is set
/// after the command started, so the command does not inherit it.)
fn kill_on_terminate(pid: i32) {
    use nix::sys::signal::{SigSet, Signal, kill};
    let mut terminate = SigSet::empty();
    terminate.add(Signal::SIGTERM);
    if terminate.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        if terminate.wait().is_ok() {
            let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
    });
}

fn run_on_terminal(
    store: &Store,
    id: &ContainerId,
    request: &ExecRequest,
) -> Result<u8, ContainerError> {
    let resize = request
        .resize
        .as_ref()
        .map(|path| {
            let fifo = std::fs::File::open(path).map_err(io("open", path));
            let _ = std::fs::remove_file(path);
            fifo
        })
        .transpose()?;
    // The command is started detached (the runtime needs that for a console socket);
    // as a subreaper this process still becomes its parent and can wait for it.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|err| ContainerError::Monitor(format!("cannot become a subreaper: {err}")))?;
    let me = std::process::id();
    let process_file = store.dir(id).join(format!("exec-{me}.json"));
    write_process(store, id, &request.command, &process_file)?;
    let socket_path = std::env::temp_dir().join(format!("strata-exec-{me}.sock"));
    let _ = std::fs::remove_file(&socket_path);
    let console = ConsoleSocket::bind(&socket_path)
        .map_err(|err| ContainerError::Monitor(format!("cannot make a console socket: {err}")))?;
    let started = store.runtime().exec(
        id,
        ExecOptions {
            process_file: Some(process_file.clone()),
            console_socket: Some(console.path().to_path_buf()),
            detach: true,
            ..Default::default()
        },
    );
    let _ = std::fs::remove_file(&process_file);
    let pid = started?;
    let master = console
        .receive_master()
        .map_err(|err| ContainerError::Monitor(format!("cannot receive the terminal: {err}")))?;
    drop(console);
    if let Some(fifo) = resize
        && let Ok(target) = master.try_clone()
    {
        std::thread::spawn(move || apply_sizes(fifo, &target));
    }
    let output = relay(master)?;
    let code = wait_for(pid)?;
    let _ = output.join();
    Ok(code)
}

/// The container's own process with `command` and a terminal, written as a process file.
fn write_process(
    store: &Store,
    id: &ContainerId,
    command: &[String],
    path: &Path,
) -> Result<(), ContainerError> {
    let config = store.dir(id).join("config.json");
    let spec = Spec::load(&config).map_err(|err| ContainerError::Io {
        action: "read",
        path: config.clone(),
        source: std::io::Error::other(err.to_string()),
    })?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| ContainerError::Monitor("the container has no process".into()))?;
    process.set_args(Some(command.to_vec()));
    process.set_terminal(Some(true));
    if let Some(env) = process.env_mut() {
        if !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".into());
        }
    }
    let bytes = serde_json::to_vec(&process).map_err(|source| ContainerError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(path, bytes).map_err(io("write", path))
}

/// Copies stdin → master (detached: a read of stdin cannot be interrupted) and
/// master → stdout until the terminal closes.
fn relay(master: OwnedFd) -> Result<std::thread::JoinHandle<()>, ContainerError> {
    let mut reader = std::fs::File::from(master);
    let mut writer = reader
        .try_clone()
        .map_err(io("duplicate", Path::new("the terminal")))?;
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 || writer.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    Ok(std::thread::spawn(move || {
        let mut stdout = std::io::stdout().lock();
        let mut buf = [0u8; 8192];
        // EIO once every slave descriptor is closed: the command has exited.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).is_err() || stdout.flush().is_err() {
                return;
            }
        }
    }))
}

/// Applies each `<cols> <rows>` line of `fifo` to the terminal.
fn apply_sizes(fifo: std::fs::File, master: &OwnedFd) {
    for line in BufReader::new(fifo).lines() {
        let Ok(line) = line else { return };
        if let Some(size) = parse_size(&line) {
            let _ = set_window_size(master.as_fd(), size);
        }
    }
}

/// Parses a `<cols> <rows>` line.
pub fn parse_size(line: &str) -> Option<WindowSize> {
    let mut parts = line.split_whitespace();
    let cols = parts.next()?.parse().ok()?;
    let rows = parts.next()?.parse().ok()?;
    Some(WindowSize { rows, cols })
}

/// Waits until `pid` (reparented to this subreaper) ends, reaping the runtime's helpers.
fn wait_for(pid: i32) -> Result<u8, ContainerError> {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => {
                return Ok(u8::try_from(code).unwrap_or(255));
            }
            Ok(WaitStatus::Signaled(p, signal, _)) if p.as_raw() == pid => {
                return Ok(u8::try_from(128 + signal as i32).unwrap_or(255));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => {
                return Err(ContainerError::Monitor(format!(
                    "cannot wait for the command: {err}"
                )));
            }
        }
    }
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_carry_terminal_fifo_and_command() {
        let strata = StrataCommand {
            argv: vec!["strata".into()],
        };
        let args = args(
            &strata,
            &ExecRequest {
                container: "c1".into(),
                command: vec!["sh".into(), "-c".into(), "--tty".into()],
                tty: true,
                resize: Some("/run/f".into()),
            },
        );
        let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
        assert_eq!(
            args,
            [
                "strata", "__exec", "--tty", "--resize", "/run/f", "c1", "--", "sh", "-c", "--tty"
            ]
        );
    }

    #[test]
    fn sizes_parse() {
        let size = parse_size("120 40").unwrap();
        assert_eq!((size.cols, size.rows), (120, 40));
        assert!(parse_size("120").is_none());
        assert!(parse_size("x y").is_none());
    }
}
