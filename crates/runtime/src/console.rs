//! A container's terminal: with `process.terminal`, the runtime makes a pty inside the
//! container and sends its master end over an AF_UNIX "console socket" (SCM_RIGHTS),
//! as runc does; the caller relays between the master and the user's terminal.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

pub use crate::sys::{WindowSize, set_window_size, window_size};

/// Why the terminal could not be received.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// Binding the socket failed.
    #[error("cannot listen on console socket {path}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Accepting the runtime's connection failed.
    #[error("the runtime did not connect to console socket {0}")]
    Accept(PathBuf, #[source] std::io::Error),
    /// Receiving the message failed.
    #[error("cannot receive the terminal from console socket {0}")]
    Receive(PathBuf, #[source] nix::Error),
    /// The message held no file descriptor.
    #[error("the runtime sent no terminal over console socket {0}")]
    NoDescriptor(PathBuf),
}

/// A listening console socket.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Listens at `path` (which must not exist).
    pub fn bind(path: &Path) -> Result<Self, ConsoleError> {
        let listener = UnixListener::bind(path).map_err(|source| ConsoleError::Bind {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// The socket's path, to pass as `console_socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and receives the pty master.
    pub fn receive_master(&self) -> Result<OwnedFd, ConsoleError> {
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| ConsoleError::Accept(self.path.clone(), e))?;
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| ConsoleError::Receive(self.path.clone(), e))?;
        let cmsgs = message
            .cmsgs()
            .map_err(|e| ConsoleError::Receive(self.path.clone(), e))?;
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmRights(fds) = cmsg
                && let Some(&fd) = fds.first()
            {
                // The kernel installed this descriptor in our table for us alone.
                return Ok(crate::sys::adopt_received_fd(fd));
            }
        }
        Err(ConsoleError::NoDescriptor(self.path.clone()))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
