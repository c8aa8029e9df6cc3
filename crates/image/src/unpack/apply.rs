//! The entry loop: turns each archive entry into changes below the layer root.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fmt::Display;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;
use tar::EntryType;

use super::fs::{self, DirError, Root};
use super::path::RootedPath;
use super::{DeviceNodes, EntryProblem, UnpackError, UnpackOptions, UnpackStats, WhiteoutMode};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";
const PAX_XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";
/// Warnings logged one by one per layer; after that they are only counted, so a
/// hostile layer cannot flood the log.
const LOGGED_WARNINGS: u64 = 16;
const COPY_BUFFER_BYTES: usize = 128 * 1024;

/// How one entry failed, before the entry's name is attached.
enum Failure {
    Entry(EntryProblem, Option<io::Error>),
    Read(io::Error),
}

fn problem(problem: EntryProblem) -> Failure {
    Failure::Entry(problem, None)
}

/// Maps a system error to a failure of the named step.
fn step<E: Into<io::Error>>(what: &'static str) -> impl FnOnce(E) -> Failure {
    move |e| Failure::Entry(EntryProblem::Io(what), Some(e.into()))
}

fn dir_failure(error: DirError) -> Failure {
    match error {
        DirError::Symlink(e) => Failure::Entry(EntryProblem::ParentSymlink, Some(e)),
        DirError::NotDir(e) => Failure::Entry(EntryProblem::ParentNotDir, Some(e)),
        DirError::Io(e) => {
            Failure::Entry(EntryProblem::Io("resolving the parent directory"), Some(e))
        }
    }
}

/// The metadata of one entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn times(&self) -> Timestamps {
        Timestamps {
            last_access: self.mtime,
            last_modification: self.mtime,
        }
    }
}

pub(crate) struct Unpacker<'o> {
    root: Root,
    opts: &'o UnpackOptions,
    stats: UnpackStats,
    /// The current entry's name as written in the archive.
    current: Vec<u8>,
    /// Paths this layer put in place, with all their ancestors: whiteouts and opaque
    /// markers only hide what is *not* in here (content of lower layers).
    touched: HashSet<PathBuf>,
    /// Directory times, set once the whole layer is in place.
    dir_times: Vec<(RootedPath, Timestamps)>,
    /// The last parent directory resolved; dropped whenever a directory is removed.
    parent_cache: Option<(RootedPath, OwnedFd)>,
    buffer: Vec<u8>,
}

impl<'o> Unpacker<'o> {
    pub(crate) fn new(root: Root, opts: &'o UnpackOptions) -> Self {
        Self {
            root,
            opts,
            stats: UnpackStats::default(),
            current: Vec::new(),
            touched: HashSet::new(),
            dir_times: Vec::new(),
            parent_cache: None,
            buffer: vec![0; COPY_BUFFER_BYTES],
        }
    }

    pub(crate) fn run(mut self, stream: Box<dyn Read + '_>) -> Result<UnpackStats, UnpackError> {
        let mut archive = tar::Archive::new(stream);
        for entry in archive.entries().map_err(UnpackError::Read)? {
            let mut entry = entry.map_err(UnpackError::Read)?;
            self.current = entry.path_bytes().into_owned();
            self.stats.entries += 1;
            self.apply(&mut entry).map_err(|f| self.error(f))?;
        }
        self.set_dir_times()?;
        // Read what follows the end-of-archive marker so that a digest-verifying
        // reader underneath sees the whole blob.
        io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(UnpackError::Read)?;
        Ok(self.stats)
    }

    fn error(&self, failure: Failure) -> UnpackError {
        match failure {
            Failure::Read(e) => UnpackError::Read(e),
            Failure::Entry(problem, source) => UnpackError::Entry {
                path: String::from_utf8_lossy(&self.current).into_owned(),
                problem,
                source,
            },
        }
    }

    fn warn(&mut self, reason: impl Display) {
        self.stats.warnings += 1;
        if self.stats.warnings <= LOGGED_WARNINGS {
            tracing::warn!(entry = %String::from_utf8_lossy(&self.current), "{reason}");
            if self.stats.warnings == LOGGED_WARNINGS {
                tracing::warn!("further warnings for this layer are only counted");
            }
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Failure> {
        let mut kind = entry.header().entry_type();
        match kind {
            // Global PAX headers (e.g. from `git archive`) carry no file.
            EntryType::XGlobalHeader => return Ok(()),
            // Pre-POSIX archives mark directories with a trailing slash only.
            EntryType::Regular if self.current.ends_with(b"/") => kind = EntryType::Directory,
            EntryType::Directory
            | EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Char
            | EntryType::Block
            | EntryType::Fifo => {}
            other => {
                self.warn(format_args!(
                    "unsupported entry type {:?} skipped",
                    char::from(other.as_byte())
                ));
                return Ok(());
            }
        }
        let path = RootedPath::parse(&self.current).ok_or(problem(EntryProblem::Escapes))?;
        let Some((parent, name)) = path.split_last() else {
            if kind != EntryType::Directory {
                return Err(problem(EntryProblem::RootNotDir));
            }
            let meta = read_meta(entry)?;
            let root = self
                .root
                .fd()
                .try_clone_to_owned()
                .map_err(step("duplicating the root descriptor"))?;
            self.set_metadata(root.as_fd(), OsStr::new("."), &meta, false)?;
            self.dir_times.push((path, meta.times()));
            return Ok(());
        };
        if name.as_bytes().starts_with(WHITEOUT_PREFIX) {
            let name = name.to_owned();
            return self.whiteout(&parent, name.as_bytes());
        }
        let name = name.to_owned();
        let meta = read_meta(entry)?;
        let dir = self.take_parent(&parent)?;
        match kind {
            EntryType::Directory => self.directory(dir.as_fd(), &name, &meta, &path)?,
            EntryType::Symlink => self.symlink(entry, dir.as_fd(), &name, &meta)?,
            EntryType::Link => self.hardlink(entry, dir.as_fd(), &name, &path)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.special(entry, kind, dir.as_fd(), &name, &meta)?
            }
            _ => self.regular(entry, dir.as_fd(), &name, &meta)?,
        }
        self.touch(&path);
        self.parent_cache = Some((parent, dir));
        Ok(())
    }

    /// The parent directory of an entry, created when missing.
    fn take_parent(&mut self, parent: &RootedPath) -> Result<OwnedFd, Failure> {
        if let Some((cached, _)) = &self.parent_cache {
            if cached == parent {
                if let Some((_, fd)) = self.parent_cache.take() {
                    return Ok(fd);
                }
            }
        }
        self.root.ensure_dir(parent).map_err(dir_failure)
    }

    /// Records `path` and its ancestors as put in place by this layer.
    fn touch(&mut self, path: &RootedPath) {
        for p in path.self_and_ancestors() {
            if self.touched.contains(p) {
                break;
            }
            self.touched.insert(p.to_path_buf());
        }
    }

    /// Removes whatever is at `name` in `dir` unless `keep_dir` and it is a directory.
    /// Returns whether a directory was kept.
    fn clear_path(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        keep_dir: bool,
    ) -> Result<bool, Failure> {
        let Some(existing) = fs::lstat(dir, name).map_err(step("inspecting the existing path"))?
        else {
            return Ok(false);
        };
        if fs::is_dir(&existing) {
            if keep_dir {
                return Ok(true);
            }
            self.parent_cache = None;
        }
        fs::remove_all(dir, name).map_err(step("removing the existing path"))?;
        Ok(false)
    }

    fn directory(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
        path: &RootedPath,
    ) -> Result<(), Failure> {
        if !self.clear_path(dir, name, true)? {
            rfs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
                .map_err(step("creating the directory"))?;
        }
        self.set_metadata(dir, name, meta, false)?;
        self.dir_times.push((path.clone(), meta.times()));
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
    ) -> Result<(), Failure> {
        self.clear_path(dir, name, false)?;
        // Always a new inode: writing into an existing file would change every
        // hardlink to it in lower layers.
        let fd = rfs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(step("creating the file"))?;
        let mut file = std::fs::File::from(fd);
        loop {
            let n = match entry.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Read(e)),
            };
            self.stats.bytes += n as u64;
            if self
                .opts
                .max_bytes
                .is_some_and(|max| self.stats.bytes > max)
            {
                return Err(problem(EntryProblem::TooLarge));
            }
            file.write_all(&self.buffer[..n])
                .map_err(step("writing the file"))?;
        }
        drop(file);
        self.set_metadata(dir, name, meta, false)?;
        self.set_times(dir, name, meta)
    }

    fn symlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
    ) -> Result<(), Failure> {
        // The target is stored as written: it is only data until something resolves
        // it, and everything here resolves inside the root.
        let target = entry
            .link_name_bytes()
            .filter(|t| !t.is_empty())
            .ok_or(problem(EntryProblem::SymlinkWithoutTarget))?;
        self.clear_path(dir, name, false)?;
        rfs::symlinkat(OsStr::from_bytes(&target), dir, name)
            .map_err(step("creating the symlink"))?;
        self.set_metadata(dir, name, meta, true)?;
        self.set_times(dir, name, meta)
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        path: &RootedPath,
    ) -> Result<(), Failure> {
        let raw = entry
            .link_name_bytes()
            .filter(|t| !t.is_empty())
            .ok_or(problem(EntryProblem::LinkWithoutTarget))?;
        // Hardlink names are relative to the archive root, like entry names.
        let target = RootedPath::parse(&raw).ok_or(problem(EntryProblem::LinkTargetEscapes))?;
        if &target == path {
            return Ok(());
        }
        let (target_parent, target_name) = target
            .split_last()
            .ok_or(problem(EntryProblem::LinkTargetIsDir))?;
        let target_dir = self.root.open_dir(&target_parent).map_err(|e| match e {
            DirError::Io(e) if e.kind() == io::ErrorKind::NotFound => {
                Failure::Entry(EntryProblem::LinkTargetMissing, Some(e))
            }
            DirError::NotDir(e) => Failure::Entry(EntryProblem::LinkTargetMissing, Some(e)),
            other => dir_failure(other),
        })?;
        let target_stat = fs::lstat(target_dir.as_fd(), target_name)
            .map_err(step("inspecting the hardlink target"))?
            .ok_or(problem(EntryProblem::LinkTargetMissing))?;
        if fs::is_dir(&target_stat) {
            return Err(problem(EntryProblem::LinkTargetIsDir));
        }
        self.clear_path(dir, name, false)?;
        // No AT_SYMLINK_FOLLOW: a target that is a symlink is linked itself.
        rfs::linkat(&target_dir, target_name, dir, name, AtFlags::empty())
            .map_err(step("creating the hardlink"))
    }

    fn special<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        kind: EntryType,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
    ) -> Result<(), Failure> {
        let file_type = match kind {
            EntryType::Char => FileType::CharacterDevice,
            EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        // FIFOs have no device number, and writers often leave the fields empty.
        let (major, minor) = if file_type == FileType::Fifo {
            (0, 0)
        } else {
            let header = entry.header();
            let number = |n: std::io::Result<Option<u32>>| {
                n.map(Option::unwrap_or_default)
                    .map_err(step("reading the device number"))
            };
            (
                number(header.device_major())?,
                number(header.device_minor())?,
            )
        };
        self.clear_path(dir, name, false)?;
        match rfs::mknodat(
            dir,
            name,
            file_type,
            Mode::from_raw_mode(0o600),
            rfs::makedev(major, minor),
        ) {
            Ok(()) => {}
            Err(Errno::PERM) if self.opts.device_nodes == DeviceNodes::SkipIfNotPermitted => {
                self.warn("device node not permitted here, skipped");
                return Ok(());
            }
            Err(Errno::PERM) => {
                return Err(Failure::Entry(
                    EntryProblem::DeviceNotPermitted,
                    Some(Errno::PERM.into()),
                ));
            }
            Err(e) => return Err(step("creating the node")(e)),
        }
        self.set_metadata(dir, name, meta, false)?;
        self.set_times(dir, name, meta)
    }

    /// Owner, then mode (a chown clears setuid/setgid), then xattrs (a chown also
    /// clears `security.capability`). Times are set separately, last.
    fn set_metadata(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
        is_symlink: bool,
    ) -> Result<(), Failure> {
        if self.opts.preserve_ownership {
            let uid = linux_id(meta.uid)?;
            let gid = linux_id(meta.gid)?;
            rfs::chownat(
                dir,
                name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(step("setting the owner"))?;
        }
        if !is_symlink {
            // The last component was just created (or checked) as a non-symlink,
            // so following it is safe; Linux has no fchmodat(AT_SYMLINK_NOFOLLOW)
            // before fchmodat2.
            rfs::chmodat(
                dir,
                name,
                Mode::from_raw_mode(meta.mode & 0o7777),
                AtFlags::empty(),
            )
            .map_err(step("setting the mode"))?;
        }
        for (key, value) in &meta.xattrs {
            if key.starts_with(OVERLAY_XATTR_PREFIX) {
                self.warn(format_args!(
                    "xattr {} skipped: overlayfs metadata does not come from layers",
                    String::from_utf8_lossy(key)
                ));
                continue;
            }
            match fs::set_xattr(dir, name, OsStr::from_bytes(key), value) {
                Ok(()) => {}
                Err(e @ (Errno::NOTSUP | Errno::PERM | Errno::ACCESS | Errno::INVAL)) => {
                    self.warn(format_args!(
                        "xattr {} refused by the filesystem ({e}), skipped",
                        String::from_utf8_lossy(key)
                    ));
                }
                Err(e) => return Err(step("setting an extended attribute")(e)),
            }
        }
        Ok(())
    }

    fn set_times(&mut self, dir: BorrowedFd<'_>, name: &OsStr, meta: &Meta) -> Result<(), Failure> {
        rfs::utimensat(dir, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(step("setting the times"))
    }

    fn whiteout(&mut self, parent: &RootedPath, file_name: &[u8]) -> Result<(), Failure> {
        if file_name == OPAQUE_MARKER {
            self.stats.whiteouts += 1;
            return self.opaque(parent);
        }
        if file_name.starts_with(WHITEOUT_META_PREFIX) {
            // AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`), meaningless here.
            self.warn("unknown whiteout metadata entry skipped");
            return Ok(());
        }
        let target = &file_name[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." {
            return Err(problem(EntryProblem::InvalidWhiteout));
        }
        self.stats.whiteouts += 1;
        let target = OsStr::from_bytes(target);
        // A whiteout hides lower layers only; what this layer put there stays
        // (image-spec layer.md, "Whiteouts").
        if self.touched.contains(parent.join(target).as_path()) {
            return Ok(());
        }
        match self.opts.whiteouts {
            WhiteoutMode::Apply => {
                let dir = match self.root.open_dir(parent) {
                    Ok(dir) => dir,
                    // Nothing there to hide.
                    Err(DirError::NotDir(_)) => return Ok(()),
                    Err(DirError::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(other) => return Err(dir_failure(other)),
                };
                self.parent_cache = None;
                fs::remove_all(dir.as_fd(), target).map_err(step("removing the whited-out path"))
            }
            WhiteoutMode::Overlay => {
                let dir = self.root.ensure_dir(parent).map_err(dir_failure)?;
                self.touch(parent);
                self.clear_path(dir.as_fd(), target, false)?;
                // overlayfs reads a 0/0 character device as "deleted here".
                rfs::mknodat(
                    &dir,
                    target,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rfs::makedev(0, 0),
                )
                .map_err(step("creating the whiteout device"))
            }
        }
    }

    fn opaque(&mut self, dir_path: &RootedPath) -> Result<(), Failure> {
        let dir = self.root.ensure_dir(dir_path).map_err(dir_failure)?;
        self.touch(dir_path);
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => fs::set_xattr(
                dir.as_fd(),
                OsStr::new("."),
                OsStr::new(OVERLAY_OPAQUE_XATTR),
                b"y",
            )
            .map_err(step("marking the directory opaque")),
            WhiteoutMode::Apply => {
                let listing = fs::open_dir_for_listing(dir.as_fd(), OsStr::new("."))
                    .map_err(step("opening the opaque directory"))?;
                self.parent_cache = None;
                self.clear_lower(listing.as_fd(), dir_path)
            }
        }
    }

    /// Removes everything under `dir` (at `path`) that this layer did not put there.
    fn clear_lower(&mut self, dir: BorrowedFd<'_>, path: &RootedPath) -> Result<(), Failure> {
        let children = fs::list_dir(dir).map_err(step("listing the opaque directory"))?;
        for (name, is_dir) in children {
            let child = path.join(&name);
            if !self.touched.contains(child.as_path()) {
                fs::remove_all(dir, &name).map_err(step("clearing the opaque directory"))?;
            } else if is_dir {
                let sub = fs::open_dir_for_listing(dir, &name)
                    .map_err(step("opening the opaque directory"))?;
                self.clear_lower(sub.as_fd(), &child)?;
            }
        }
        Ok(())
    }

    /// Sets directory times once nothing will be created in them any more.
    fn set_dir_times(&mut self) -> Result<(), UnpackError> {
        for (path, times) in std::mem::take(&mut self.dir_times) {
            let failed = |source: io::Error| UnpackError::Entry {
                path: path.as_path().display().to_string(),
                problem: EntryProblem::Io("setting the directory times"),
                source: Some(source),
            };
            let (dir, name) = match path.split_last() {
                None => (
                    self.root.fd().try_clone_to_owned().map_err(&failed)?,
                    OsStr::new("."),
                ),
                Some((parent, name)) => match self.root.open_dir(&parent) {
                    Ok(dir) => (dir, name),
                    // Replaced or whited out by a later entry.
                    Err(_) => continue,
                },
            };
            match fs::lstat(dir.as_fd(), name).map_err(&failed)? {
                Some(stat) if fs::is_dir(&stat) => {}
                _ => continue,
            }
            rfs::utimensat(&dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| failed(e.into()))?;
        }
        Ok(())
    }
}

/// Reads mode, owner, time and xattrs from the header and the entry's PAX records
/// (which override the header's uid, gid and mtime when present).
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta, Failure> {
    let header_error = step("reading the entry header");
    let header = entry.header();
    let mode = header.mode().map_err(step("reading the entry header"))?;
    let mut uid = header.uid().map_err(step("reading the entry header"))?;
    let mut gid = header.gid().map_err(step("reading the entry header"))?;
    let seconds = header.mtime().map_err(step("reading the entry header"))?;
    let mut mtime = Timespec {
        tv_sec: i64::try_from(seconds).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let mut xattrs = Vec::new();
    if let Some(records) = entry.pax_extensions().map_err(header_error)? {
        for record in records {
            let record = record.map_err(step("reading the PAX records"))?;
            let key = record.key_bytes();
            let value = record.value_bytes();
            if let Some(xattr) = key.strip_prefix(PAX_XATTR_PREFIX) {
                xattrs.push((xattr.to_vec(), value.to_vec()));
                continue;
            }
            match key {
                b"uid" => {
                    uid = parse_decimal(value).ok_or(problem(EntryProblem::OwnerOutOfRange))?
                }
                b"gid" => {
                    gid = parse_decimal(value).ok_or(problem(EntryProblem::OwnerOutOfRange))?
                }
                b"mtime" => {
                    if let Some(t) = parse_pax_time(value) {
                        mtime = t;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

fn linux_id(id: u64) -> Result<u32, Failure> {
    // (uid_t)-1 means "leave unchanged" to chown, so it is no valid owner.
    u32::try_from(id)
        .ok()
        .filter(|id| *id != u32::MAX)
        .ok_or(problem(EntryProblem::OwnerOutOfRange))
}

fn parse_decimal(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Parses a PAX time such as `1700000000.123456789` or `-1.5`.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, fraction) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, digit) in fraction.bytes().take(9).enumerate() {
        if !digit.is_ascii_digit() {
            return None;
        }
        nanos += i64::from(digit - b'0') * 10_i64.pow(8 - i as u32);
    }
    Some(match (negative, nanos) {
        (false, _) => Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        },
        (true, 0) => Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        },
        (true, _) => Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nanos,
        },
    })
}

#[cfg(test)]
mod time_tests {
    use super::parse_pax_time;

    #[test]
    fn parses_pax_times() {
        let t = parse_pax_time(b"1700000000.5").expect("valid");
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        let t = parse_pax_time(b"12").expect("valid");
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        let t = parse_pax_time(b"-1.25").expect("valid");
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
        assert!(parse_pax_time(b"x").is_none());
    }
}
