//! The monitor of a detached container (Strata's conmon): it becomes a session leader,
//! creates and starts the container with its output going to pipes, tells the waiting
//! `strata run -d` whether that worked, then copies output into the CRI log, waits for
//! the container's exit and records it (removing the container if `--rm` was asked).

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use strata_runtime::{ContainerId, CreateOptions, Exit, Stdio, wait_for_exit};

use crate::containers::{ExitRecord, Store};
use crate::logfile::{LogWriter, Stream, copy_stream};

/// The first line the monitor writes when the container started.
pub const READY: &str = "started";

/// Runs the monitor for a prepared container; its stdout is the report pipe.
pub fn run(store: &Store, id: &ContainerId) -> Result<u8> {
    nix::unistd::setsid().context("cannot start a new session")?;
    let (pid, copiers) = match start(store, id) {
        Ok(started) => started,
        Err(err) => {
            let _ = store.remove(id, true);
            println!("{}", crate::output::one_line(&err));
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

type Copier = std::thread::JoinHandle<()>;

fn start(store: &Store, id: &ContainerId) -> Result<(i32, Vec<Copier>)> {
    let log = Arc::new(Mutex::new(
        LogWriter::open(&store.log_path(id)).context("cannot open the container log")?,
    ));
    let (out_read, out_write) = nix::unistd::pipe().context("cannot create a pipe")?;
    let (err_read, err_write) = nix::unistd::pipe().context("cannot create a pipe")?;
    let null: OwnedFd = std::fs::File::open("/dev/null")
        .context("cannot open /dev/null")?
        .into();
    let options = CreateOptions {
        stdio: Stdio {
            stdin: Some(null),
            stdout: Some(out_write),
            stderr: Some(err_write),
        },
        ..Default::default()
    };
    let state = store.runtime().create(id, &store.dir(id), options)?;
    store.runtime().start(id)?;
    let copiers = [(out_read, Stream::Stdout), (err_read, Stream::Stderr)]
        .into_iter()
        .map(|(fd, stream)| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || copy_stream(std::fs::File::from(fd), stream, &log))
        })
        .collect();
    Ok((state.pid, copiers))
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
pub fn finish(store: &Store, id: &ContainerId, exit: Exit) -> Result<ExitRecord> {
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
