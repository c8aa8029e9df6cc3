//! The image index over the content store: which references name which manifests,
//! resolving a name (reference, digest or image-ID prefix) to a runnable image, and
//! garbage collection of blobs no image needs.
//!
//! Layout under the images root: `blobs/` and `ingest/` (the [`ContentStore`]),
//! `refs.json` (reference → manifest descriptor) and `snapshots/`. Writers of
//! `refs.json` hold an exclusive `flock` on `refs.lock` and replace the file by rename;
//! importers and pullers hold a shared lock on `gc.lock` (a [`Lease`]) while their
//! blobs are not yet referenced, and garbage collection takes it exclusively.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::manifest::{Descriptor, ImageManifest, Manifest, ManifestError, Platform, media_type};
use crate::reference::Reference;
use crate::snapshot::{Snapshots, chain_ids};
use crate::store::{ContentStore, StoreError};

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image by that name.
    #[error("image {0:?} not found")]
    NotFound(String),
    /// An ID prefix matched several images.
    #[error("image ID prefix {prefix:?} is ambiguous ({count} images match)")]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// How many images match.
        count: usize,
    },
    /// A blob operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored manifest or config could not be read.
    #[error("image document {digest}")]
    Document {
        /// The blob.
        digest: Digest,
        /// What is wrong with it.
        #[source]
        source: ManifestError,
    },
    /// The reference index could not be read or written.
    #[error("image index {path}")]
    Index {
        /// `refs.json`.
        path: PathBuf,
        /// The I/O or JSON error.
        #[source]
        source: std::io::Error,
    },
    /// A lock could not be taken.
    #[error("cannot lock {path}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
}

/// What a reference points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefTarget {
    /// The manifest or index digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size.
    pub size: u64,
}

impl From<&Descriptor> for RefTarget {
    fn from(d: &Descriptor) -> Self {
        Self {
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
            size: d.size,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RefsFile {
    #[serde(default)]
    refs: BTreeMap<String, RefTarget>,
}

/// An image resolved to one platform: its manifest and config.
#[derive(Debug, Clone)]
pub struct Image {
    /// What the name points at (an index or a manifest); its digest is the image's
    /// repository digest.
    pub target: RefTarget,
    /// The platform manifest's digest (equal to `digest` unless it came from an index).
    pub manifest_digest: Digest,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config's digest: the image ID, as Docker shows it.
    pub config_digest: Digest,
    /// The config.
    pub config: ImageConfig,
    /// References naming this image.
    pub references: Vec<String>,
}

impl Image {
    /// The repository digest (of the manifest or index the name points at).
    pub fn digest(&self) -> &Digest {
        &self.target.digest
    }

    /// The image ID (config digest).
    pub fn id(&self) -> &Digest {
        &self.config_digest
    }

    /// Compressed size of config and layers.
    pub fn size(&self) -> u64 {
        self.manifest.config.size + self.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    }
}

/// Holds off garbage collection while blobs are being added (see the module doc).
#[derive(Debug)]
pub struct Lease {
    _lock: Flock<File>,
}

/// What garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs: usize,
    /// Bytes those blobs held.
    pub bytes: u64,
    /// Snapshot directories deleted.
    pub snapshots: usize,
}

/// The image index and the blobs under it.
#[derive(Debug)]
pub struct ImageStore {
    root: PathBuf,
    content: ContentStore,
}

fn lock(path: &Path, arg: FlockArg) -> Result<Flock<File>, ImageError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| ImageError::Index {
            path: path.to_path_buf(),
            source,
        })?;
    Flock::lock(file, arg).map_err(|(_, source)| ImageError::Lock {
        path: path.to_path_buf(),
        source,
    })
}

impl ImageStore {
    /// Opens (creating) the image store at `root` (normally `<data-dir>/images`).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        let content = ContentStore::open(&root)?;
        let snapshots = root.join("snapshots");
        std::fs::create_dir_all(&snapshots).map_err(|source| ImageError::Index {
            path: snapshots,
            source,
        })?;
        Ok(Self { root, content })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blobs.
    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// Holds off garbage collection until dropped.
    pub fn lease(&self) -> Result<Lease, ImageError> {
        Ok(Lease {
            _lock: lock(&self.root.join("gc.lock"), FlockArg::LockShared)?,
        })
    }

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    fn read_refs(&self) -> Result<RefsFile, ImageError> {
        let path = self.refs_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Index {
                path,
                source: e.into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RefsFile::default()),
            Err(source) => Err(ImageError::Index { path, source }),
        }
    }

    fn update_refs<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, RefTarget>) -> T,
    ) -> Result<T, ImageError> {
        let _guard = lock(&self.root.join("refs.lock"), FlockArg::LockExclusive)?;
        let mut refs = self.read_refs()?;
        let result = change(&mut refs.refs);
        let path = self.refs_path();
        let tmp = self.root.join(format!("refs.json.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let bytes = serde_json::to_vec_pretty(&refs)?;
            let file = File::create(&tmp)?;
            std::io::Write::write_all(&mut &file, &bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            ImageError::Index { path, source }
        })?;
        Ok(result)
    }

    /// Points `reference` at `target` (replacing what it named before).
    pub fn tag(&self, reference: &Reference, target: &RefTarget) -> Result<(), ImageError> {
        self.update_refs(|refs| {
            refs.insert(reference.to_string(), target.clone());
        })
    }

    /// Removes `reference`; returns what it pointed at, if it existed.
    pub fn untag(&self, reference: &Reference) -> Result<Option<RefTarget>, ImageError> {
        self.update_refs(|refs| refs.remove(&reference.to_string()))
    }

    /// Every reference and its target.
    pub fn references(&self) -> Result<BTreeMap<String, RefTarget>, ImageError> {
        Ok(self.read_refs()?.refs)
    }

    fn document(&self, digest: &Digest) -> Result<Vec<u8>, ImageError> {
        Ok(self.content.read(digest)?)
    }

    /// Loads the image `target` names, choosing this machine's platform from an index.
    pub fn load(&self, target: &RefTarget) -> Result<Image, ImageError> {
        let bytes = self.document(&target.digest)?;
        let parsed = Manifest::parse(&bytes, Some(&target.media_type)).map_err(|source| {
            ImageError::Document {
                digest: target.digest.clone(),
                source,
            }
        })?;
        let (manifest_digest, manifest) = match parsed {
            Manifest::Image(m) => (target.digest.clone(), m),
            Manifest::Index(index) => {
                // This machine's platform; an image pulled for another one
                // (`pull --platform`) has only that platform's manifest stored.
                let chosen = match index.select(&Platform::host()) {
                    Ok(host) if self.content.contains(&host.digest) => host,
                    selected => match index
                        .manifests
                        .iter()
                        .find(|d| self.content.contains(&d.digest))
                    {
                        Some(stored) => stored,
                        None => {
                            let host = selected.map_err(|source| ImageError::Document {
                                digest: target.digest.clone(),
                                source,
                            })?;
                            return Err(StoreError::NotFound(host.digest.clone()).into());
                        }
                    },
                };
                let bytes = self.document(&chosen.digest)?;
                match Manifest::parse(&bytes, Some(&chosen.media_type)) {
                    Ok(Manifest::Image(m)) => (chosen.digest.clone(), m),
                    Ok(Manifest::Index(_)) => {
                        return Err(ImageError::Document {
                            digest: chosen.digest.clone(),
                            source: ManifestError::UnsupportedMediaType(
                                "nested image index".to_string(),
                            ),
                        });
                    }
                    Err(source) => {
                        return Err(ImageError::Document {
                            digest: chosen.digest.clone(),
                            source,
                        });
                    }
                }
            }
        };
        let config_digest = manifest.config.digest.clone();
        let config = ImageConfig::parse(&self.document(&config_digest)?).map_err(|source| {
            ImageError::Document {
                digest: config_digest.clone(),
                source,
            }
        })?;
        Ok(Image {
            target: target.clone(),
            manifest_digest,
            manifest,
            config_digest,
            config,
            references: Vec::new(),
        })
    }

    /// Stores `config` and an OCI manifest over it and `layers` (already in the
    /// store); returns the manifest's target, ready to [`Self::tag`].
    pub fn write_image(
        &self,
        config: &ImageConfig,
        layers: &[Descriptor],
    ) -> Result<RefTarget, ImageError> {
        self.write_manifest(&config.to_bytes(), layers)
    }

    /// Stores `config_bytes` as they are (the image ID is their digest) and an OCI
    /// manifest over them and `layers` (already in the store).
    pub fn write_manifest(
        &self,
        config_bytes: &[u8],
        layers: &[Descriptor],
    ) -> Result<RefTarget, ImageError> {
        self.content.put(config_bytes)?;
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            config: Descriptor::of(media_type::OCI_CONFIG, config_bytes),
            layers: layers.to_vec(),
            annotations: BTreeMap::new(),
        };
        // Plain data with string keys: serialising cannot fail.
        let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
        self.content.put(&bytes)?;
        Ok(RefTarget::from(&Descriptor::of(
            media_type::OCI_MANIFEST,
            &bytes,
        )))
    }

    /// Every tagged image, one entry per image with all its references, newest first.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let mut by_digest: BTreeMap<Digest, Image> = BTreeMap::new();
        for (name, target) in self.references()? {
            if let Some(image) = by_digest.get_mut(&target.digest) {
                image.references.push(name);
                continue;
            }
            let mut image = self.load(&target)?;
            image.references.push(name);
            by_digest.insert(target.digest.clone(), image);
        }
        let mut images: Vec<Image> = by_digest.into_values().collect();
        images.sort_by(|a, b| b.config.created.cmp(&a.config.created));
        Ok(images)
    }

    /// Resolves what a user typed: a reference (`busybox`, `localhost/httpd:1`,
    /// `repo@sha256:…`), or an image ID or unique ID prefix (`3f57d9401f8d`).
    pub fn resolve(&self, name: &str) -> Result<Image, ImageError> {
        let refs = self.references()?;
        if let Ok(reference) = name.parse::<Reference>() {
            if let Some(target) = refs.get(&reference.to_string()) {
                let mut image = self.load(target)?;
                image.references = names_of(&refs, &target.digest);
                return Ok(image);
            }
            if let Some(digest) = reference.digest()
                && let Some((_, target)) = refs.iter().find(|(_, t)| &t.digest == digest)
            {
                let mut image = self.load(target)?;
                image.references = names_of(&refs, digest);
                return Ok(image);
            }
        }
        let prefix = name.strip_prefix("sha256:").unwrap_or(name);
        let is_hex = prefix.len() >= 4 && prefix.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            let matching: Vec<Image> = self
                .list()?
                .into_iter()
                .filter(|i| {
                    i.config_digest.hex().starts_with(prefix)
                        || i.target.digest.hex().starts_with(prefix)
                })
                .collect();
            let ids: BTreeSet<&Digest> = matching.iter().map(|i| &i.config_digest).collect();
            match ids.len() {
                0 => {}
                1 => {
                    return matching
                        .into_iter()
                        .next()
                        .ok_or_else(|| ImageError::NotFound(name.into()));
                }
                count => {
                    return Err(ImageError::Ambiguous {
                        prefix: name.to_string(),
                        count,
                    });
                }
            }
        }
        Err(ImageError::NotFound(name.to_string()))
    }

    /// Deletes every blob and snapshot that neither a reference nor one of `roots`
    /// (manifest or index digests of images in use, e.g. by containers) needs.
    pub fn collect_garbage(&self, roots: &[Digest]) -> Result<GcReport, ImageError> {
        let _gc = lock(&self.root.join("gc.lock"), FlockArg::LockExclusive)?;
        let mut live: BTreeSet<Digest> = BTreeSet::new();
        let mut chains: BTreeSet<Digest> = BTreeSet::new();
        let mut targets: Vec<(Digest, String)> = self
            .references()?
            .into_values()
            .map(|t| (t.digest, t.media_type))
            .collect();
        targets.extend(
            roots
                .iter()
                .filter(|d| self.content.contains(d))
                .map(|d| (d.clone(), String::new())),
        );
        for (digest, media_type) in targets {
            self.mark(&digest, &media_type, &mut live, &mut chains);
        }
        let mut report = GcReport::default();
        for digest in self.content.list()? {
            if live.contains(&digest) {
                continue;
            }
            let size = std::fs::metadata(self.content.path(&digest))
                .map(|m| m.len())
                .unwrap_or(0);
            self.content.delete(&digest)?;
            report.blobs += 1;
            report.bytes += size;
        }
        report.snapshots = self.snapshots().sweep(&chains);
        Ok(report)
    }

    /// The unpacked layers.
    pub fn snapshots(&self) -> Snapshots {
        Snapshots::new(self.root.join("snapshots"))
    }

    /// Marks a manifest or index and everything it references as live; records the
    /// chain IDs of each image's layers. Unreadable documents keep only themselves.
    fn mark(
        &self,
        digest: &Digest,
        media_type: &str,
        live: &mut BTreeSet<Digest>,
        chains: &mut BTreeSet<Digest>,
    ) {
        if !live.insert(digest.clone()) {
            return;
        }
        let Ok(bytes) = self.content.read(digest) else {
            return;
        };
        let content_type = (!media_type.is_empty()).then_some(media_type);
        match Manifest::parse(&bytes, content_type) {
            Ok(Manifest::Index(index)) => {
                for child in &index.manifests {
                    if self.content.contains(&child.digest) {
                        self.mark(&child.digest, &child.media_type, live, chains);
                    }
                }
            }
            Ok(Manifest::Image(manifest)) => {
                live.insert(manifest.config.digest.clone());
                live.extend(manifest.layers.iter().map(|l| l.digest.clone()));
                if let Ok(config) = self
                    .content
                    .read(&manifest.config.digest)
                    .map_err(ImageError::from)
                    .and_then(|b| {
                        ImageConfig::parse(&b).map_err(|source| ImageError::Document {
                            digest: manifest.config.digest.clone(),
                            source,
                        })
                    })
                {
                    chains.extend(chain_ids(&config.rootfs.diff_ids));
                }
            }
            Err(_) => {}
        }
    }
}

fn names_of(refs: &BTreeMap<String, RefTarget>, digest: &Digest) -> Vec<String> {
    refs.iter()
        .filter(|(_, t)| &t.digest == digest)
        .map(|(n, _)| n.clone())
        .collect()
}
