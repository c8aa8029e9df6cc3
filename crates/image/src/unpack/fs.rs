//! Filesystem operations scoped to the layer root.
//!
//! Every parent directory is resolved with `openat2(2)` and `RESOLVE_IN_ROOT`, so a
//! symlink met on the way (`a -> /`, `a -> ../../..`, chains of them) is resolved as if
//! the layer root were `/` and can never lead outside it. The last component of an
//! entry is then handled with `*at` calls relative to that directory that never follow
//! it. With [`ParentSymlinks::Reject`] `RESOLVE_NO_SYMLINKS` is added and any symlink
//! among the parents is an error instead.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};

use super::ParentSymlinks;
use super::path::RootedPath;

/// How often `openat2` is retried when the kernel answers `EAGAIN` (it does so with
/// `RESOLVE_IN_ROOT` when a rename raced the lookup).
const OPENAT2_RETRIES: usize = 16;

/// Why a directory inside the root could not be resolved or created.
#[derive(Debug)]
pub(crate) enum DirError {
    /// A parent component is a symlink and symlinks are refused.
    Symlink(io::Error),
    /// A component exists and is not a directory (or is a dangling symlink).
    NotDir(io::Error),
    /// Any other failure.
    Io(io::Error),
}

/// The destination directory, opened once; all lookups go through it.
pub(crate) struct Root {
    fd: OwnedFd,
    resolve: ResolveFlags,
}

impl Root {
    /// Opens `dest`, which must be an existing directory.
    pub(crate) fn open(dest: &Path, parents: ParentSymlinks) -> io::Result<Self> {
        let fd = rfs::open(
            dest,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        if parents == ParentSymlinks::Reject {
            resolve |= ResolveFlags::NO_SYMLINKS;
        }
        Ok(Self { fd, resolve })
    }

    /// The root directory itself.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the existing directory `path` as an `O_PATH` descriptor, resolving it
    /// inside the root.
    pub(crate) fn open_dir(&self, path: &RootedPath) -> Result<OwnedFd, DirError> {
        let mut attempts = 0;
        loop {
            match rfs::openat2(
                &self.fd,
                path.as_relative(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                self.resolve,
            ) {
                Ok(fd) => return Ok(fd),
                Err(rustix::io::Errno::AGAIN) if attempts < OPENAT2_RETRIES => attempts += 1,
                Err(e) => return Err(classify(e, self.resolve)),
            }
        }
    }

    /// Opens directory `path`, creating missing components with mode 0755.
    pub(crate) fn ensure_dir(&self, path: &RootedPath) -> Result<OwnedFd, DirError> {
        // Fast path: usually the directory is there already.
        let mut missing_from = match self.open_dir(path) {
            Ok(fd) => return Ok(fd),
            Err(DirError::Io(e)) if e.kind() == io::ErrorKind::NotFound => path.depth(),
            Err(other) => return Err(other),
        };
        // Find the deepest existing ancestor, iteratively so that deep hostile paths
        // cost no stack.
        let mut dir = loop {
            missing_from -= 1;
            match self.open_dir(&path.prefix(missing_from)) {
                Ok(fd) => break fd,
                Err(DirError::Io(e)) if e.kind() == io::ErrorKind::NotFound && missing_from > 0 => {
                }
                Err(other) => return Err(other),
            }
        };
        for name in path.components().skip(missing_from) {
            match rfs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                // Exists but did not resolve: a dangling symlink, refused below.
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(DirError::Io(e.into())),
            }
            dir = rfs::openat(
                &dir,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| match e {
                rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP => DirError::NotDir(e.into()),
                other => DirError::Io(other.into()),
            })?;
        }
        Ok(dir)
    }
}

fn classify(errno: rustix::io::Errno, resolve: ResolveFlags) -> DirError {
    match errno {
        rustix::io::Errno::LOOP if resolve.contains(ResolveFlags::NO_SYMLINKS) => {
            DirError::Symlink(errno.into())
        }
        rustix::io::Errno::NOTDIR => DirError::NotDir(errno.into()),
        other => DirError::Io(other.into()),
    }
}

/// `lstat` of `name` in `dir`; `None` when nothing is there.
pub(crate) fn lstat(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<rfs::Stat>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(stat)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// True when `stat` describes a directory.
pub(crate) fn is_dir(stat: &rfs::Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::Directory
}

/// Opens directory `name` in `dir` for reading its entries, without following a symlink.
pub(crate) fn open_dir_for_listing(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names in a directory opened with [`open_dir_for_listing`], without `.` and `..`,
/// each with whether it is a directory.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<(OsString, bool)>> {
    use std::os::unix::ffi::OsStrExt;
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name).to_os_string();
        let is_dir = match entry.file_type() {
            FileType::Directory => true,
            FileType::Unknown => lstat(dir, &name)?.is_some_and(|s| is_dir(&s)),
            _ => false,
        };
        names.push((name, is_dir));
    }
    Ok(names)
}

/// Removes `name` in `dir` and, when it is a directory, everything below it. Missing is fine.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let Some(stat) = lstat(dir, name)? else {
        return Ok(());
    };
    if is_dir(&stat) {
        let child = open_dir_for_listing(dir, name)?;
        for (grandchild, _) in list_dir(child.as_fd())? {
            remove_all(child.as_fd(), &grandchild)?;
        }
        rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?;
    } else {
        rfs::unlinkat(dir, name, AtFlags::empty())?;
    }
    Ok(())
}

/// A path that names `name` inside the already-resolved directory `dir`, for the
/// xattr calls, which have no `*at` form before Linux 6.13. `/proc/self/fd/N` jumps
/// straight to `dir`, and `name` is one component that the `l*xattr` calls do not follow.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    path.push(name);
    path
}

/// Sets one extended attribute on `name` in `dir` without following a final symlink.
pub(crate) fn set_xattr(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    key: &OsStr,
    value: &[u8],
) -> rustix::io::Result<()> {
    rfs::lsetxattr(proc_path(dir, name), key, value, rfs::XattrFlags::empty())
}
