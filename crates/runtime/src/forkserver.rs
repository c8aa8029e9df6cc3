//! A fork server: a single-threaded process that forks one child per request, handing
//! each child the file descriptor that came with its request. The children start as
//! copies of a process that is already loaded, relocated and initialised, so the pages
//! it dirtied getting there (the dynamic loader's relocations of a large executable,
//! the allocator's first arena) stay shared instead of being made again, privately, by
//! every child — the Android zygote's idea, for Strata's per-container monitors.
//!
//! Requests travel over a `SOCK_SEQPACKET` socket pair: one message is one request (a
//! payload of at most [`MAX_PAYLOAD`] bytes) with exactly one descriptor attached by
//! `SCM_RIGHTS`. The server ends when the client closes its end.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};

/// The largest payload a request may carry.
pub const MAX_PAYLOAD: usize = 4096;

/// Errors of the fork server and its client.
#[derive(Debug, thiserror::Error)]
pub enum ForkServerError {
    /// The socket pair could not be created.
    #[error("cannot create the fork server's socket pair")]
    Socket(#[source] Errno),
    /// A request was longer than [`MAX_PAYLOAD`].
    #[error("a fork server request of {0} bytes is longer than {MAX_PAYLOAD}")]
    TooLong(usize),
    /// Sending a request failed (typically: the server is gone).
    #[error("cannot send to the fork server")]
    Send(#[source] Errno),
    /// Receiving a request failed.
    #[error("the fork server cannot receive requests")]
    Receive(#[source] Errno),
    /// The server process has more than one thread, so forking it is not safe.
    #[error("a fork server must be single-threaded, but this process has {0} threads")]
    Threaded(usize),
    /// fork(2) failed.
    #[error("the fork server cannot fork")]
    Fork(#[source] Errno),
}

/// A connected pair of sockets: the client's end and the server's end, both close-on-exec
/// (hand the server's end to the server process as one of its standard descriptors).
pub fn socket_pair() -> Result<(OwnedFd, OwnedFd), ForkServerError> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ForkServerError::Socket)
}

/// Sends one request: `payload` with `fd` attached. The server forks a child for it.
pub fn send(
    socket: BorrowedFd<'_>,
    payload: &[u8],
    fd: BorrowedFd<'_>,
) -> Result<(), ForkServerError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(ForkServerError::TooLong(payload.len()));
    }
    let fds = [fd.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(payload)];
    loop {
        match sendmsg::<()>(
            socket.as_raw_fd(),
            &iov,
            &control,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(ForkServerError::Send(err)),
        }
    }
}

/// Serves requests on `socket` until its peer closes it. For each request the server
/// forks; the child closes the server's socket, runs `child(payload, fd)` and exits with
/// the value it returns; the server closes its copy of `fd` and goes on. Children are
/// reaped by the kernel (SIGCHLD is ignored here and set back to its default in each
/// child, so children can wait for processes of their own).
///
/// The calling process must be single-threaded: a fork copies only the calling thread,
/// and anything another thread held locked would stay locked in the child forever.
pub fn serve(
    socket: OwnedFd,
    mut child: impl FnMut(&[u8], OwnedFd) -> i32,
) -> Result<(), ForkServerError> {
    let threads = thread_count();
    if threads > 1 {
        return Err(ForkServerError::Threaded(threads));
    }
    crate::sys::reap_children_automatically(true);
    let mut payload = vec![0u8; MAX_PAYLOAD];
    loop {
        let Some((len, fd)) = receive(socket.as_raw_fd(), &mut payload)? else {
            return Ok(());
        };
        let Some(fd) = fd else {
            // A request must carry a descriptor; without one there is nothing to serve.
            continue;
        };
        // SAFETY of the fork is argued in `sys::fork`: this process is single-threaded
        // (checked above; nothing here starts threads).
        match crate::sys::fork().map_err(ForkServerError::Fork)? {
            Some(_child_pid) => drop(fd),
            None => {
                crate::sys::reap_children_automatically(false);
                drop(socket);
                let code = child(&payload[..len], fd);
                std::process::exit(code);
            }
        }
    }
}

/// Receives one request; `None` when the client has closed its end.
fn receive(
    socket: RawFd,
    payload: &mut [u8],
) -> Result<Option<(usize, Option<OwnedFd>)>, ForkServerError> {
    loop {
        let mut iov = [IoSliceMut::new(payload)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let message = match recvmsg::<()>(
            socket,
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(message) => message,
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(ForkServerError::Receive(err)),
        };
        let truncated = message
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        let len = message.bytes;
        let mut received = None;
        for cmsg in message.cmsgs().map_err(ForkServerError::Receive)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // The kernel installed each descriptor in our table for us alone.
                    let owned = crate::sys::adopt_received_fd(fd);
                    if received.is_none() {
                        received = Some(owned);
                    }
                }
            }
        }
        if len == 0 && received.is_none() {
            return Ok(None);
        }
        if truncated {
            // Too long to be a request of ours: drop it (and any descriptor) whole.
            continue;
        }
        return Ok(Some((len, received)));
    }
}

/// Threads of this process, from /proc/self/status (1 when it cannot be read: the
/// check then errs on the side of the caller, who asked for a fork server).
fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use std::os::fd::AsFd as _;

    #[test]
    fn each_request_gets_a_child_with_its_descriptor() {
        let (client, server) = socket_pair().expect("socket pair");
        // The server runs in a forked process of its own: the test harness is threaded.
        let server_pid = match crate::sys::fork().expect("fork") {
            None => {
                drop(client);
                let served = serve(server, |payload, fd| {
                    let mut out = std::fs::File::from(fd);
                    let reply = format!("child got {}", String::from_utf8_lossy(payload));
                    std::io::Write::write_all(&mut out, reply.as_bytes()).map_or(1, |_| 0)
                });
                std::process::exit(if served.is_ok() { 0 } else { 2 });
            }
            Some(pid) => pid,
        };
        drop(server);
        for word in ["one", "two"] {
            let (read, write) = nix::unistd::pipe().expect("pipe");
            send(client.as_fd(), word.as_bytes(), write.as_fd()).expect("send");
            drop(write);
            let mut reply = String::new();
            std::fs::File::from(read)
                .read_to_string(&mut reply)
                .expect("read reply");
            assert_eq!(reply, format!("child got {word}"));
        }
        let too_long = vec![b'x'; MAX_PAYLOAD + 1];
        assert!(matches!(
            send(client.as_fd(), &too_long, client.as_fd()),
            Err(ForkServerError::TooLong(_))
        ));
        drop(client);
        let exit = crate::process::wait_for_exit(server_pid).expect("wait for the server");
        assert_eq!(exit, crate::process::Exit::Code(0), "server ends on EOF");
    }

    #[test]
    fn a_threaded_process_is_refused() {
        let (_client, server) = socket_pair().expect("socket pair");
        let _other = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(2)));
        assert!(matches!(
            serve(server, |_, _| 0),
            Err(ForkServerError::Threaded(n)) if n > 1
        ));
    }
}
