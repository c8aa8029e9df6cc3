//! Packing a directory into a gzip-compressed layer blob (the reverse of unpacking):
//! used by `image import-rootfs` and by build steps.
//!
//! Entries are written in sorted order with their mode, ownership and mtime; symlinks
//! are stored as links (never followed), files with several links become tar hardlinks
//! to the first path seen, and device nodes and fifos keep their type and numbers.
//! Sockets are skipped (they cannot be archived). Extended attributes are not packed yet.
//!
//! An overlayfs upper directory (what a build step changed) packs with
//! [`PackMode::OverlayUpper`]: its whiteouts (0/0 character devices) become `.wh.<name>`
//! entries and its opaque directories (`trusted.overlay.opaque=y`) get a
//! `.wh..wh..opq` entry, as the OCI layer format spells deletions.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::manifest::{Descriptor, media_type};
use crate::store::{ContentStore, StoreError};

/// Why a directory could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// Reading the directory or writing the archive failed.
    #[error("cannot pack {path}")]
    Io {
        /// The file being packed.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Storing the blob failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A packed layer: the blob's descriptor and the digest of its uncompressed tar.
#[derive(Debug, Clone)]
pub struct PackedLayer {
    /// The compressed blob as stored.
    pub descriptor: Descriptor,
    /// The uncompressed tar's digest (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
}

/// Hashes everything written through it (the diff ID of the uncompressed tar).
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// What the directory being packed is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackMode {
    /// A plain tree: everything in it is content.
    Plain,
    /// An overlayfs upper directory: whiteouts and opaque markers become OCI whiteouts.
    OverlayUpper,
}

/// Packs the content of `dir` (not `dir` itself) into a gzip layer in `store`.
pub fn pack_directory(dir: &Path, store: &ContentStore) -> Result<PackedLayer, PackError> {
    pack(dir, PackMode::Plain, store)
}

/// Packs `dir` as `mode` says into a gzip layer in `store`.
pub fn pack(dir: &Path, mode: PackMode, store: &ContentStore) -> Result<PackedLayer, PackError> {
    pack_with(store, mode, None, |writer| {
        writer.append_contents(dir, Path::new(""))
    })
}

/// The writer [`pack_with`] hands out: tar → diff-ID hash → gzip → blob.
pub(crate) type LayerWriter<'s> =
    TreeWriter<HashingWriter<flate2::write::GzEncoder<crate::store::BlobWriter<'s>>>>;

/// Makes a gzip layer blob in `store` from whatever `fill` appends (owned by `owner`
/// when given).
pub(crate) fn pack_with<'s>(
    store: &'s ContentStore,
    mode: PackMode,
    owner: Option<(u64, u64)>,
    fill: impl FnOnce(&mut LayerWriter<'s>) -> Result<(), PackError>,
) -> Result<PackedLayer, PackError> {
    let blob = store.writer("layer")?;
    let gzip = flate2::write::GzEncoder::new(blob, flate2::Compression::fast());
    let hashing = HashingWriter {
        inner: gzip,
        hasher: Sha256::new(),
    };
    let mut writer = TreeWriter::new(hashing, mode, owner);
    fill(&mut writer)?;
    let finish_err = |source| PackError::Io {
        path: PathBuf::from("(the layer being written)"),
        source,
    };
    let hashing = writer.builder.into_inner().map_err(finish_err)?;
    let diff_id = Digest::from_hasher(hashing.hasher);
    let blob = hashing.inner.finish().map_err(finish_err)?;
    let (digest, size) = blob.commit(None)?;
    Ok(PackedLayer {
        descriptor: Descriptor {
            media_type: media_type::OCI_LAYER_GZIP.to_string(),
            digest,
            size,
            platform: None,
            annotations: Default::default(),
            urls: Vec::new(),
        },
        diff_id,
    })
}

type Links = std::collections::HashMap<(u64, u64), PathBuf>;

/// True if `path` carries overlayfs's opaque-directory marker.
fn is_opaque_dir(path: &Path) -> bool {
    let mut value = [0u8; 4];
    matches!(
        rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut value[..]),
        Ok(1) if value[0] == b'y'
    )
}

/// A header for content Strata makes up (not copied from a file): owned by root,
/// mtime 0. Every numeric field is set — tar readers refuse empty ones.
pub(crate) fn synthetic_header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

fn empty_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
) -> Result<(), PackError> {
    let mut header = synthetic_header(tar::EntryType::Regular, 0, 0o644);
    builder
        .append_data(&mut header, name, std::io::empty())
        .map_err(|source| PackError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Writes files and trees into a tar under chosen names: the one place that turns
/// file metadata into tar headers (used for layers and for build-context staging).
pub(crate) struct TreeWriter<W: Write> {
    /// The archive being written.
    pub(crate) builder: tar::Builder<W>,
    mode: PackMode,
    owner: Option<(u64, u64)>,
    links: Links,
}

impl<W: Write> TreeWriter<W> {
    /// A writer packing as `mode` says, with every entry owned by `owner` when given.
    pub(crate) fn new(out: W, mode: PackMode, owner: Option<(u64, u64)>) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        Self {
            builder,
            mode,
            owner,
            links: Links::new(),
        }
    }

    /// Appends the contents of directory `dir` (not `dir` itself), named under `prefix`.
    pub(crate) fn append_contents(&mut self, dir: &Path, prefix: &Path) -> Result<(), PackError> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(dir))?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            if self.mode == PackMode::OverlayUpper {
                let meta = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
                if meta.file_type().is_char_device() && meta.rdev() == 0 {
                    let mut whiteout = std::ffi::OsString::from(".wh.");
                    whiteout.push(&name);
                    empty_entry(&mut self.builder, &path, &prefix.join(whiteout))?;
                    continue;
                }
            }
            self.append_path(&path, &prefix.join(&name))?;
        }
        Ok(())
    }

    /// Appends `path` named `name`; a directory brings its contents along.
    pub(crate) fn append_path(&mut self, path: &Path, name: &Path) -> Result<(), PackError> {
        let meta = std::fs::symlink_metadata(path).map_err(io_err(path))?;
        let kind = meta.file_type();
        if kind.is_socket() {
            return Ok(());
        }
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_mode(meta.mode() & 0o7777);
        if let Some((uid, gid)) = self.owner {
            header.set_uid(uid);
            header.set_gid(gid);
        }
        let builder = &mut self.builder;
        if !kind.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                return builder
                    .append_link(&mut header, name, first)
                    .map_err(io_err(path));
            }
            self.links.insert(key, name.to_path_buf());
        }
        if kind.is_symlink() {
            let target = std::fs::read_link(path).map_err(io_err(path))?;
            header.set_size(0);
            builder
                .append_link(&mut header, name, target)
                .map_err(io_err(path))
        } else if kind.is_file() {
            let file = File::open(path).map_err(io_err(path))?;
            builder
                .append_data(&mut header, name, file)
                .map_err(io_err(path))
        } else if kind.is_dir() {
            header.set_size(0);
            builder
                .append_data(&mut header, name, std::io::empty())
                .map_err(io_err(path))?;
            if self.mode == PackMode::OverlayUpper && is_opaque_dir(path) {
                empty_entry(builder, path, &name.join(".wh..wh..opq"))?;
            }
            self.append_contents(path, name)
        } else {
            // Character and block devices, fifos.
            let rdev = meta.rdev();
            header.set_size(0);
            header
                .set_device_major(nix::sys::stat::major(rdev) as u32)
                .and_then(|()| header.set_device_minor(nix::sys::stat::minor(rdev) as u32))
                .map_err(io_err(path))?;
            builder
                .append_data(&mut header, name, std::io::empty())
                .map_err(io_err(path))
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PackError {
    let path = path.to_path_buf();
    move |source| PackError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_directory_packs_into_a_layer_whose_diff_id_is_its_tar() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("bin")).unwrap();
        std::fs::write(tree.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        std::fs::hard_link(tree.join("bin/tool"), tree.join("bin/tool2")).unwrap();
        std::os::unix::fs::symlink("/bin/tool", tree.join("link")).unwrap();
        let store = ContentStore::open(dir.path().join("store")).unwrap();

        let layer = pack_directory(&tree, &store).unwrap();
        let blob = std::fs::read(store.path(&layer.descriptor.digest)).unwrap();
        assert_eq!(Digest::of(&blob), layer.descriptor.digest);
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(&blob[..])
            .read_to_end(&mut tar_bytes)
            .unwrap();
        assert_eq!(Digest::of(&tar_bytes), layer.diff_id);

        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let entries: Vec<(String, tar::EntryType, Option<String>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                    e.link_name().unwrap().map(|l| l.display().to_string()),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("bin".into(), tar::EntryType::Directory, None),
                ("bin/tool".into(), tar::EntryType::Regular, None),
                (
                    "bin/tool2".into(),
                    tar::EntryType::Link,
                    Some("bin/tool".into())
                ),
                (
                    "link".into(),
                    tar::EntryType::Symlink,
                    Some("/bin/tool".into())
                ),
            ]
        );
        // Packing the same tree again gives the same layer.
        assert_eq!(
            pack_directory(&tree, &store).unwrap().diff_id,
            layer.diff_id
        );
    }

    #[test]
    fn an_overlay_upper_dir_packs_its_whiteouts_the_oci_way() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(upper.join("etc/opaque")).unwrap();
        std::fs::write(upper.join("etc/opaque/new"), b"n").unwrap();
        let whiteout = upper.join("etc/removed");
        let made = rustix::fs::mknodat(
            rustix::fs::CWD,
            &whiteout,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        );
        let marked = rustix::fs::lsetxattr(
            upper.join("etc/opaque"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        );
        if made.is_err() || marked.is_err() {
            println!(
                "SKIP an_overlay_upper_dir_packs_its_whiteouts: needs root for mknod and trusted xattrs"
            );
            return;
        }
        let store = ContentStore::open(dir.path().join("store")).unwrap();
        let layer = pack(&upper, PackMode::OverlayUpper, &store).unwrap();
        let blob = std::fs::read(store.path(&layer.descriptor.digest)).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
        let names: Vec<(String, tar::EntryType)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("etc".into(), tar::EntryType::Directory),
                ("etc/opaque".into(), tar::EntryType::Directory),
                ("etc/opaque/.wh..wh..opq".into(), tar::EntryType::Regular),
                ("etc/opaque/new".into(), tar::EntryType::Regular),
                ("etc/.wh.removed".into(), tar::EntryType::Regular),
            ]
        );
    }
}
