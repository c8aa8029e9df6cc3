//! The few kernel calls nix has no safe wrapper for.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// Reads the window size of the terminal `fd` (TIOCGWINSZ).
pub fn window_size(fd: BorrowedFd<'_>) -> std::io::Result<WindowSize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `fd` is a valid open descriptor for the borrow's lifetime, TIOCGWINSZ
    // writes exactly one `winsize` through the pointer, which points to a live local.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(WindowSize {
        rows: size.ws_row,
        cols: size.ws_col,
    })
}

/// Sets the window size of the terminal `fd` (TIOCSWINSZ).
pub fn set_window_size(fd: BorrowedFd<'_>, size: WindowSize) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `fd` is a valid open descriptor for the borrow's lifetime; TIOCSWINSZ only
    // reads one `winsize` through the pointer, which points to a live local.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    if rc == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of a descriptor just received through SCM_RIGHTS.
pub fn adopt_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the kernel installed `fd` in this process's table while delivering the
    // SCM_RIGHTS message; nothing else refers to it, so exactly one owner is created.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Sets the loopback interface of the calling thread's network namespace up
/// (SIOCGIFFLAGS then SIOCSIFFLAGS with IFF_UP), as CNI's loopback plugin does.
pub fn loopback_up() -> std::io::Result<()> {
    let socket = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(std::io::Error::from)?;
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *slot = *byte as libc::c_char;
    }
    // SAFETY: `socket` is an open descriptor; SIOCGIFFLAGS reads the NUL-terminated name
    // and writes the flags into the `ifreq` the pointer refers to, a live local.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut request) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member of the union just above.
    unsafe { request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads the `ifreq`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &request) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Forks the calling process: `Some(child pid)` in the parent, `None` in the child.
///
/// Callers must be single-threaded (the fork server checks): only the calling thread
/// exists in the child, so a lock another thread held would never be released there.
pub fn fork() -> nix::Result<Option<i32>> {
    // SAFETY: the callers are single-threaded processes (the fork server verifies it,
    // its test forks before starting any work in the child), so the child is a complete
    // copy with no lock held by a vanished thread.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Some(child.as_raw())),
        nix::unistd::ForkResult::Child => Ok(None),
    }
}

/// Ignores SIGCHLD (`true`: the kernel reaps children, no zombies) or restores its
/// default disposition (`false`).
pub fn reap_children_automatically(automatic: bool) {
    use nix::sys::signal::{SigHandler, Signal, signal};
    let handler = if automatic {
        SigHandler::SigIgn
    } else {
        SigHandler::SigDfl
    };
    // SAFETY: SIG_IGN and SIG_DFL are dispositions, not handler functions, so no code
    // runs in signal context and nothing can be reentered.
    let _ = unsafe { signal(Signal::SIGCHLD, handler) };
}
