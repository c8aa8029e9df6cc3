//! The user's side of a container terminal (`strata run -t`): raw mode on the local
//! terminal, and copying between it and the pty master the runtime handed over.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::thread::JoinHandle;

use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use strata_runtime::console::{set_window_size, window_size};

/// Puts stdin's terminal in raw mode until dropped (no-op when stdin is no terminal).
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    /// Enters raw mode if stdin is a terminal.
    pub fn enter() -> Self {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(original) = &saved {
            let mut raw = original.clone();
            cfmakeraw(&mut raw);
            let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        Self { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(original) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, original);
        }
    }
}

/// Gives the container's terminal the size of ours (when stdout is a terminal).
pub fn copy_window_size(master: &OwnedFd) {
    if let Ok(size) = window_size(std::io::stdout().as_fd()) {
        let _ = set_window_size(master.as_fd(), size);
    }
}

/// Starts copying master → stdout (and, with `interactive`, stdin → master). The
/// returned handle ends when the container side of the terminal is closed.
pub fn relay(master: OwnedFd, interactive: bool) -> std::io::Result<JoinHandle<()>> {
    let mut reader = std::fs::File::from(master);
    if interactive {
        let mut writer = reader.try_clone()?;
        // Detached on purpose: a read from our stdin cannot be interrupted, and the
        // thread dies with the process once the container has exited.
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || writer.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
    }
    Ok(std::thread::spawn(move || {
        let mut stdout = std::io::stdout().lock();
        let mut buf = [0u8; 8192];
        // EIO once every slave descriptor is closed: the container has exited.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                return;
            }
            let _ = stdout.flush();
        }
    }))
}
