//! Applies OCI image layers (tar, optionally gzip or zstd compressed) to a directory.
//!
//! # Behaviour
//!
//! [`unpack_layer`] reads one layer and applies it *on top of* whatever `dest`
//! already holds, following image-spec `layer.md`:
//!
//! - Regular files, directories, symlinks, hardlinks, character and block devices and
//!   FIFOs are created with their mode (setuid, setgid and sticky included), owner
//!   (when [`UnpackOptions::with_preserve_ownership`] is on, the default), extended
//!   attributes from `SCHILY.xattr.*` PAX records, and modification time. Directory
//!   times are set after the whole layer is applied, so later entries don't disturb them.
//! - An entry replaces what is at its path, except that a directory entry over an
//!   existing directory keeps the contents and only updates its metadata. Files are
//!   always written to a fresh inode, so hardlinks from lower layers are never
//!   written through.
//! - Whiteouts (`.wh.<name>`) and opaque markers (`.wh..wh..opq`) hide content of
//!   *lower* layers only, whichever order they appear in within the archive. What
//!   [`WhiteoutMode`] says to do with them differs between flattening into one
//!   directory and building overlayfs layer directories.
//!
//! # Hostile archives
//!
//! No entry can create or change anything outside `dest`. Names are normalised
//! lexically (`/etc/x` is `dest/etc/x`; names whose `..` climbs above the root are
//! refused), and every parent directory is resolved with `openat2(RESOLVE_IN_ROOT)`, so
//! a symlink in a parent (`a -> /`, `a -> ../..`, chains) is resolved as if `dest` were
//! `/` — the way the container will see it — or, with [`ParentSymlinks::Reject`],
//! refused. The entry's own last component is never followed. Hardlink targets and
//! whiteouts are resolved the same way. Extended attributes in the `trusted.overlay.`
//! namespace are dropped with a warning: they would let a layer steer overlayfs.
//!
//! # Limitations
//!
//! - On error, `dest` is left partly written; the caller removes it (extract into a
//!   temporary directory and rename it into place on success).
//! - There is no default limit on the bytes written; set one with
//!   [`UnpackOptions::with_max_bytes`] against decompression bombs. The number of
//!   entries is not limited.
//! - Device nodes, whiteout devices and ownership need privileges (root here);
//!   `trusted.*` xattrs need `CAP_SYS_ADMIN`.
//! - `LIBARCHIVE.xattr.*` records and POSIX ACLs are not applied. Xattrs go through
//!   `/proc/self/fd` (no `*xattrat` calls before Linux 6.13), so `/proc` must be mounted.
//! - Which paths a whiteout or opaque marker must keep (those of the same layer) is
//!   decided by archive name. An entry written through a symlinked parent
//!   (`lib/x` with `lib -> usr/lib`) is not recognised as `usr/lib/x` by an opaque
//!   marker on `usr/lib` in the same layer. Real layers do not mix the two spellings.
//! - Removing a directory tree holds one descriptor per level, so trees deeper than
//!   the open-file limit cannot be replaced or whited out.

mod apply;
mod compression;
mod fs;
mod path;
#[cfg(test)]
mod tests;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use compression::{Compression, decoder};

/// What to do with whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Delete what the whiteout names from `dest`, which holds the lower layers
    /// already: for flattening a chain of layers into one directory.
    #[default]
    Apply,
    /// Record whiteouts the way overlayfs reads them, for a layer extracted into its
    /// own empty directory: `.wh.name` becomes a 0/0 character device `name`, and
    /// `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory (as containerd does).
    Overlay,
}

/// How to treat symlinks met among the *parent* directories of an entry. The entry's
/// own last component is never followed in either mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParentSymlinks {
    /// Follow them, resolved as if `dest` were `/` (`RESOLVE_IN_ROOT`): `a -> /` then
    /// `a/etc/passwd` writes `dest/etc/passwd`. This is what containerd does.
    #[default]
    FollowInRoot,
    /// Refuse any entry whose parent path goes through a symlink.
    Reject,
}

/// What to do when creating a device node is not permitted (`EPERM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceNodes {
    /// Fail the unpack.
    #[default]
    Require,
    /// Skip the node and count a warning (for unprivileged unpacking).
    SkipIfNotPermitted,
}

/// Options for [`unpack_layer`]. The default flattens ([`WhiteoutMode::Apply`]).
///
/// ```
/// use strata_image::unpack::{UnpackOptions, WhiteoutMode};
/// let opts = UnpackOptions::overlay().with_max_bytes(8 << 30);
/// assert_eq!(opts.whiteouts(), WhiteoutMode::Overlay);
/// ```
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    whiteouts: WhiteoutMode,
    parent_symlinks: ParentSymlinks,
    device_nodes: DeviceNodes,
    preserve_ownership: bool,
    max_bytes: Option<u64>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self::flatten()
    }
}

impl UnpackOptions {
    /// For applying layers in order into one directory: whiteouts delete.
    pub fn flatten() -> Self {
        Self {
            whiteouts: WhiteoutMode::Apply,
            parent_symlinks: ParentSymlinks::FollowInRoot,
            device_nodes: DeviceNodes::Require,
            preserve_ownership: true,
            max_bytes: None,
        }
    }

    /// For extracting each layer into its own empty directory used as an overlayfs
    /// layer: whiteouts become overlayfs whiteouts.
    pub fn overlay() -> Self {
        Self {
            whiteouts: WhiteoutMode::Overlay,
            ..Self::flatten()
        }
    }

    /// Sets how symlinks among parent directories are treated.
    #[must_use]
    pub fn with_parent_symlinks(mut self, parent_symlinks: ParentSymlinks) -> Self {
        self.parent_symlinks = parent_symlinks;
        self
    }

    /// Sets what happens when device nodes may not be created.
    #[must_use]
    pub fn with_device_nodes(mut self, device_nodes: DeviceNodes) -> Self {
        self.device_nodes = device_nodes;
        self
    }

    /// Whether to apply the archive's uid/gid (`lchown`); on by default. Off leaves
    /// every entry owned by the unpacking user.
    #[must_use]
    pub fn with_preserve_ownership(mut self, preserve: bool) -> Self {
        self.preserve_ownership = preserve;
        self
    }

    /// Fails the unpack once regular-file contents exceed `bytes` in total.
    #[must_use]
    pub fn with_max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// The whiteout mode.
    pub fn whiteouts(&self) -> WhiteoutMode {
        self.whiteouts
    }
}

/// What one [`unpack_layer`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Archive entries read, whiteouts included.
    pub entries: u64,
    /// Bytes of regular-file contents written.
    pub bytes: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Things skipped with a warning (an xattr the filesystem refused, a device node
    /// not permitted with [`DeviceNodes::SkipIfNotPermitted`], an unsupported entry type).
    pub warnings: u64,
}

/// Why an archive entry was refused or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryProblem {
    /// The name climbs above the layer root.
    #[error("path escapes the layer root")]
    Escapes,
    /// A hardlink's target name climbs above the layer root.
    #[error("hardlink target escapes the layer root")]
    LinkTargetEscapes,
    /// A hardlink's target is not in `dest`.
    #[error("hardlink target does not exist in the layer root")]
    LinkTargetMissing,
    /// A hardlink's target is a directory.
    #[error("hardlink target is a directory")]
    LinkTargetIsDir,
    /// A hardlink entry without a target.
    #[error("hardlink has no target")]
    LinkWithoutTarget,
    /// A symlink entry without a target.
    #[error("symlink has no target")]
    SymlinkWithoutTarget,
    /// A parent is a symlink and [`ParentSymlinks::Reject`] is set.
    #[error("a parent directory is a symlink")]
    ParentSymlink,
    /// A parent exists and is not a directory.
    #[error("a parent path is not a directory")]
    ParentNotDir,
    /// A whiteout that names nothing (`.wh.`, `.wh..`).
    #[error("whiteout names no file")]
    InvalidWhiteout,
    /// A non-directory entry for the layer root itself.
    #[error("only a directory can stand for the layer root")]
    RootNotDir,
    /// A uid or gid that does not fit a Linux id.
    #[error("owner id out of range")]
    OwnerOutOfRange,
    /// Device nodes may not be created here.
    #[error("creating device nodes is not permitted")]
    DeviceNotPermitted,
    /// [`UnpackOptions::with_max_bytes`] was exceeded.
    #[error("layer contents exceed the byte limit")]
    TooLarge,
    /// A filesystem step failed; the text names the step.
    #[error("{0}")]
    Io(&'static str),
}

/// Errors from [`unpack_layer`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// The destination could not be opened as a directory.
    #[error("opening the destination directory {}", path.display())]
    OpenDest {
        /// The destination.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The layer stream could not be read or decompressed, or is not a valid tar.
    #[error("reading the layer stream")]
    Read(#[source] io::Error),
    /// The zstd decoder could not be set up.
    #[error("setting up the zstd decoder")]
    Decompressor(#[source] io::Error),
    /// The stream uses a compression OCI layers do not use.
    #[error("unsupported layer compression {0}")]
    UnsupportedCompression(&'static str),
    /// The media type is not a known layer type.
    #[error("unsupported layer media type {0:?}")]
    UnsupportedMediaType(String),
    /// One archive entry was refused or failed.
    #[error("layer entry {path:?}: {problem}")]
    Entry {
        /// The entry's name as written in the archive (lossily decoded).
        path: String,
        /// What went wrong.
        problem: EntryProblem,
        /// The system error behind it, if any.
        #[source]
        source: Option<io::Error>,
    },
}

impl UnpackError {
    /// The archive name of the entry this error is about, if any.
    pub fn entry_path(&self) -> Option<&str> {
        match self {
            Self::Entry { path, .. } => Some(path),
            _ => None,
        }
    }

    /// What went wrong with the entry, if this error is about one.
    pub fn entry_problem(&self) -> Option<EntryProblem> {
        match self {
            Self::Entry { problem, .. } => Some(*problem),
            _ => None,
        }
    }
}

/// Applies one layer read from `reader` on top of the existing directory `dest`.
///
/// `compression` is usually [`Compression::Detect`] or the one
/// [`Compression::from_media_type`] gives. After the archive's end the rest of the
/// stream is read and discarded, so a digest-verifying reader sees every byte.
///
/// On error, `dest` may be partly written: the caller removes it.
///
/// ```no_run
/// use strata_image::unpack::{unpack_layer, Compression, UnpackOptions};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let blob = std::fs::File::open("layer.tar.gz")?;
/// let stats = unpack_layer(blob, Compression::Detect, "/tmp/rootfs".as_ref(), &UnpackOptions::flatten())?;
/// println!("{} entries, {} bytes", stats.entries, stats.bytes);
/// # Ok(()) }
/// ```
pub fn unpack_layer(
    reader: impl Read,
    compression: Compression,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root =
        fs::Root::open(dest, opts.parent_symlinks).map_err(|source| UnpackError::OpenDest {
            path: dest.to_path_buf(),
            source,
        })?;
    let stream = compression::decoder(reader, compression)?;
    apply::Unpacker::new(root, opts).run(stream)
}
