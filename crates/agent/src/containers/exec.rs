//! Commands run inside a running container with their output captured (exec probes and
//! lifecycle hooks), through an exec session process like `kubectl exec`'s (see
//! [`super::session`]), never forked from the multi-threaded agent itself.

use std::process::Stdio;
use std::time::Duration;

use strata_runtime::ContainerId;
use tokio::io::AsyncReadExt;

use super::session::{self, ExecRequest};
use super::{ContainerError, StrataCommand};

/// At most this much of a command's output is kept (Kubernetes keeps 10 KiB of probe
/// output too).
pub const MAX_OUTPUT: usize = 10 * 1024;

/// How long a timed-out session gets to kill its command and exit.
const SESSION_GRACE: Duration = Duration::from_secs(2);

/// How a captured command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// It exited with this code; its stdout and stderr, interleaved, at most
    /// [`MAX_OUTPUT`] bytes.
    Exited {
        /// Exit code (128 + signal when killed).
        code: i32,
        /// What it wrote.
        output: Vec<u8>,
    },
    /// It did not end within the timeout and was killed.
    TimedOut,
}

/// Runs `argv` in container `id` and waits for it at most `timeout`.
pub async fn run_captured(
    strata: &StrataCommand,
    id: &ContainerId,
    argv: &[String],
    timeout: Duration,
) -> Result<ExecOutcome, ContainerError> {
    let request = ExecRequest {
        container: id.to_string(),
        command: argv.to_vec(),
        tty: false,
        resize: None,
    };
    let args = session::args(strata, &request);
    let Some((program, args)) = args.split_first() else {
        return Err(ContainerError::Monitor("empty strata command".into()));
    };
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|err| ContainerError::Monitor(format!("cannot make an output pipe: {err}")))?;
    let writer_err = writer
        .try_clone()
        .map_err(|err| ContainerError::Monitor(format!("cannot make an output pipe: {err}")))?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|err| ContainerError::Monitor(format!("cannot start an exec session: {err}")))?;
    // The parent's copies of the pipe's write end went with `command`.
    drop(command);
    let mut reader = tokio::net::unix::pipe::Receiver::from_owned_fd(reader)
        .map_err(|err| ContainerError::Monitor(format!("cannot read the output pipe: {err}")))?;
    let collect = async {
        let mut output = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_OUTPUT.saturating_sub(output.len());
                    output.extend_from_slice(&chunk[..n.min(room)]);
                }
            }
        }
        let status = child.wait().await;
        (output, status)
    };
    let finished = tokio::time::timeout(timeout, collect).await;
    if finished.is_err() {
        // The session kills its command on SIGTERM (a SIGKILL would orphan the command
        // inside the container); give it a moment, then kill_on_drop has the last word.
        if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = tokio::time::timeout(SESSION_GRACE, child.wait()).await;
        }
    }
    match finished {
        Ok((output, Ok(status))) => {
            use std::os::unix::process::ExitStatusExt;
            let code = status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(-1);
            Ok(ExecOutcome::Exited { code, output })
        }
        Ok((_, Err(err))) => Err(ContainerError::Monitor(format!(
            "cannot wait for the exec session: {err}"
        ))),
        Err(_) => Ok(ExecOutcome::TimedOut),
    }
}
