//! A container's root file system from an image: the image's layers unpacked once
//! into shared snapshots, then an overlayfs mount of those snapshots (read-only lower
//! layers) under the container's own writable upper directory. Where overlayfs cannot
//! be mounted (no kernel support, or an upper directory on a file system overlayfs
//! refuses), the layers are instead flattened into a private copy.
//!
//! Layout in the container directory: `rootfs/` (the mount point, or the copy),
//! `upper/` and `work/` (overlayfs only).

use std::io::Read;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::images::{Image, ImageError, ImageStore};
use crate::manifest::Descriptor;
use crate::snapshot::{SnapshotError, chain_ids};
use crate::unpack::{Compression, UnpackError, UnpackOptions, decoder, unpack_layer};

/// Why a root file system could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// The manifest and config disagree on the number of layers.
    #[error("image {image} lists {layers} layers but {diff_ids} diff IDs in its config")]
    LayerCount {
        /// The image ID.
        image: Digest,
        /// Layers in the manifest.
        layers: usize,
        /// Diff IDs in the config.
        diff_ids: usize,
    },
    /// A layer's media type is not one Strata can unpack.
    #[error("layer {digest} has media type {media_type:?}, which Strata cannot unpack")]
    LayerType {
        /// The layer.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// A layer blob is missing from the store.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Unpacking a layer failed.
    #[error("layer {digest}")]
    Unpack {
        /// The layer.
        digest: Digest,
        /// What went wrong.
        #[source]
        source: UnpackError,
    },
    /// The uncompressed layer does not hash to the config's diff ID.
    #[error(
        "layer {digest} unpacks to content with digest {actual}, but the image config says {expected}"
    )]
    DiffId {
        /// The layer.
        digest: Digest,
        /// The config's diff ID.
        expected: Digest,
        /// What the layer held.
        actual: Digest,
    },
    /// A directory operation failed.
    #[error("{operation} {path}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Mounting or unmounting failed.
    #[error("cannot {operation} {path}")]
    Mount {
        /// mount or unmount.
        operation: &'static str,
        /// The mount point.
        path: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
}

/// How a prepared root file system is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsKind {
    /// overlayfs over shared snapshots.
    Overlay,
    /// A private flattened copy.
    Copy,
}

/// Reads through `inner`, hashing every byte (the layer's uncompressed tar).
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn decompressed(
    store: &ImageStore,
    digest: &Digest,
    media_type: &str,
) -> Result<Box<dyn Read>, RootfsError> {
    let compression =
        Compression::from_media_type(media_type).map_err(|_| RootfsError::LayerType {
            digest: digest.clone(),
            media_type: media_type.to_string(),
        })?;
    let path = store.content().path(digest);
    let file = std::fs::File::open(&path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            RootfsError::Image(ImageError::Store(crate::store::StoreError::NotFound(
                digest.clone(),
            )))
        } else {
            RootfsError::Io {
                operation: "cannot open layer",
                path: path.clone(),
                source,
            }
        }
    })?;
    let file = std::io::BufReader::with_capacity(256 * 1024, file);
    decoder(file, compression).map_err(|source| RootfsError::Unpack {
        digest: digest.clone(),
        source,
    })
}

/// Unpacks `layer` (compressed as its media type says) into `dest` with `opts`,
/// checking the uncompressed content against `diff_id`.
fn unpack_verified(
    store: &ImageStore,
    layer: &Descriptor,
    diff_id: &Digest,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<(), RootfsError> {
    let mut reader = HashingReader {
        inner: decompressed(store, &layer.digest, &layer.media_type)?,
        hasher: Sha256::new(),
    };
    unpack_layer(&mut reader, Compression::None, dest, opts).map_err(|source| {
        RootfsError::Unpack {
            digest: layer.digest.clone(),
            source,
        }
    })?;
    let actual = Digest::from_hasher(reader.hasher);
    if &actual != diff_id {
        return Err(RootfsError::DiffId {
            digest: layer.digest.clone(),
            expected: diff_id.clone(),
            actual,
        });
    }
    Ok(())
}

/// The manifest and the config must list equally many layers.
fn check_layers(image: &Image) -> Result<(), RootfsError> {
    if image.manifest.layers.len() != image.config.rootfs.diff_ids.len() {
        return Err(RootfsError::LayerCount {
            image: image.id().clone(),
            layers: image.manifest.layers.len(),
            diff_ids: image.config.rootfs.diff_ids.len(),
        });
    }
    Ok(())
}

/// Makes sure every layer of `image` is unpacked into a snapshot; returns the snapshot
/// directories, base first.
pub fn prepare_snapshots(store: &ImageStore, image: &Image) -> Result<Vec<PathBuf>, RootfsError> {
    check_layers(image)?;
    prepare_layers(store, &image.manifest.layers, &image.config.rootfs.diff_ids)
}

/// Makes sure each of `layers` (with their `diff_ids`, base first, equally many) is
/// unpacked into a snapshot; returns the snapshot directories, base first.
pub fn prepare_layers(
    store: &ImageStore,
    layers: &[Descriptor],
    diff_ids: &[Digest],
) -> Result<Vec<PathBuf>, RootfsError> {
    let snapshots = store.snapshots();
    let chains = chain_ids(diff_ids);
    let mut dirs = Vec::with_capacity(chains.len());
    for ((layer, diff_id), chain) in layers.iter().zip(diff_ids).zip(&chains) {
        let dir = snapshots
            .create(chain, |fs| {
                unpack_verified(store, layer, diff_id, fs, &UnpackOptions::overlay())
            })
            .map_err(|e| match e {
                SnapshotError::Fill(inner) => inner,
                SnapshotError::Io { path, source } => RootfsError::Io {
                    operation: "cannot create snapshot",
                    path,
                    source,
                },
            })?;
        dirs.push(dir);
    }
    Ok(dirs)
}

fn create_dir(path: &Path) -> Result<(), RootfsError> {
    std::fs::create_dir_all(path).map_err(|source| RootfsError::Io {
        operation: "cannot create",
        path: path.to_path_buf(),
        source,
    })
}

/// Prepares `container_dir/rootfs` from `image`: an overlay mount when the kernel
/// allows it, else a flattened copy. Returns the root file system path and how it
/// was made. On error nothing stays mounted.
pub fn prepare_rootfs(
    store: &ImageStore,
    image: &Image,
    container_dir: &Path,
) -> Result<(PathBuf, RootfsKind), RootfsError> {
    let _lease = store.lease()?;
    let rootfs = container_dir.join("rootfs");
    create_dir(&rootfs)?;
    let lowers = prepare_snapshots(store, image)?;
    match mount_overlay(&lowers, container_dir) {
        Ok(()) => return Ok((rootfs, RootfsKind::Overlay)),
        Err(err) => {
            tracing::info!(error = %err, "overlayfs unavailable; copying the image's layers");
            for dir in ["upper", "work"] {
                let _ = std::fs::remove_dir_all(container_dir.join(dir));
            }
        }
    }
    let opts = UnpackOptions::flatten();
    for (layer, diff_id) in image
        .manifest
        .layers
        .iter()
        .zip(&image.config.rootfs.diff_ids)
    {
        unpack_verified(store, layer, diff_id, &rootfs, &opts)?;
    }
    Ok((rootfs, RootfsKind::Copy))
}

/// Unpacks `image`'s layers, in order, into the new directory `dest` (a flattened
/// root file system, what `umoci unpack` makes). On error `dest` is removed.
pub fn unpack_image(store: &ImageStore, image: &Image, dest: &Path) -> Result<(), RootfsError> {
    check_layers(image)?;
    std::fs::create_dir(dest).map_err(|source| RootfsError::Io {
        operation: "cannot create",
        path: dest.to_path_buf(),
        source,
    })?;
    let opts = UnpackOptions::flatten();
    for (layer, diff_id) in image
        .manifest
        .layers
        .iter()
        .zip(&image.config.rootfs.diff_ids)
    {
        if let Err(err) = unpack_verified(store, layer, diff_id, dest, &opts) {
            let _ = std::fs::remove_dir_all(dest);
            return Err(err);
        }
    }
    Ok(())
}

/// Mounts `container_dir/rootfs` as an overlay of `lowers` (base first) under a fresh
/// `container_dir/upper` (with `work/` beside it).
pub fn mount_overlay(lowers: &[PathBuf], container_dir: &Path) -> Result<(), RootfsError> {
    let rootfs = container_dir.join("rootfs");
    let upper = container_dir.join("upper");
    let work = container_dir.join("work");
    create_dir(&rootfs)?;
    create_dir(&upper)?;
    create_dir(&work)?;
    // overlayfs needs at least one lower layer; an image without layers gets an empty one.
    let empty = container_dir.join("empty");
    let lowerdir = if lowers.is_empty() {
        create_dir(&empty)?;
        empty.display().to_string()
    } else {
        // Topmost layer first.
        lowers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    };
    let options = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|source| RootfsError::Mount {
        operation: "mount overlay on",
        path: rootfs.clone(),
        source,
    })
}

/// Unmounts `container_dir/rootfs` if it is mounted (lazily, so a process still
/// holding it open cannot block removal). Safe to call on a copy or twice.
pub fn release_rootfs(container_dir: &Path) -> Result<(), RootfsError> {
    let rootfs = container_dir.join("rootfs");
    match nix::mount::umount2(&rootfs, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => Ok(()),
        Err(source) => Err(RootfsError::Mount {
            operation: "unmount",
            path: rootfs,
            source,
        }),
    }
}
