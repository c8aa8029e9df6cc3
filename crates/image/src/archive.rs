//! Image archives: `export` writes what `docker save` writes since Docker 25 — an OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) plus Docker's
//! `manifest.json` — so Docker, podman, skopeo and Strata can all load it; `import`
//! reads that, a plain OCI image-layout tarball, or a legacy `docker save` archive
//! (`<id>/layer.tar`, `<id>.json`, `manifest.json`), optionally gzip-compressed.
//!
//! Import extracts the archive into a private temporary directory first (archive
//! members are flat, so only plain relative names are accepted; anything else is
//! refused), then ingests every blob verified against its digest.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::images::{ImageError, ImageStore, RefTarget};
use crate::manifest::{Descriptor, ImageIndex, Manifest, ManifestError, media_type};
use crate::reference::{Reference, ReferenceError};
use crate::store::StoreError;

/// Why an archive could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading or writing the archive failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A member name that could escape the extraction directory.
    #[error("archive member {0:?} is not a plain relative path")]
    UnsafeMember(String),
    /// Neither an OCI layout nor a docker-save archive.
    #[error(
        "the archive has neither index.json (OCI image layout) nor manifest.json (docker save)"
    )]
    UnknownFormat,
    /// A document in the archive is malformed.
    #[error("{file} in the archive")]
    Document {
        /// The member.
        file: String,
        /// What is wrong.
        #[source]
        source: ManifestError,
    },
    /// A document names a file the archive lacks.
    #[error("the archive lacks {0}, which its manifest names")]
    Missing(String),
    /// A tag in the archive is not a valid reference.
    #[error("tag {name:?} in the archive")]
    BadTag {
        /// The tag.
        name: String,
        /// Why it is invalid.
        #[source]
        source: ReferenceError,
    },
    /// Storing failed (including blobs that do not match their digests).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The image store failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ArchiveError {
    let what = what.into();
    move |source| ArchiveError::Io { what, source }
}

/// One entry of Docker's `manifest.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image an import brought in.
#[derive(Debug, Clone)]
pub struct Imported {
    /// What it points at.
    pub target: RefTarget,
    /// The references it was tagged with.
    pub references: Vec<String>,
}

/// Writes the images `references` name as an archive to `out`.
pub fn export(
    store: &ImageStore,
    references: &[Reference],
    out: impl Write,
) -> Result<(), ArchiveError> {
    let mut builder = tar::Builder::new(out);
    let mut written: std::collections::BTreeSet<Digest> = Default::default();
    let mut index = ImageIndex {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.to_string()),
        manifests: Vec::new(),
        annotations: BTreeMap::new(),
    };
    let mut docker_manifest = Vec::new();
    let refs = store.references()?;
    for reference in references {
        let name = reference.to_string();
        let target = refs
            .get(&name)
            .ok_or_else(|| ImageError::NotFound(name.clone()))?;
        let image = store.load(target)?;
        let mut blobs = vec![target.digest.clone()];
        if image.manifest_digest != target.digest {
            blobs.push(image.manifest_digest.clone());
        }
        blobs.push(image.config_digest.clone());
        blobs.extend(image.manifest.layers.iter().map(|l| l.digest.clone()));
        for digest in blobs {
            if written.insert(digest.clone()) {
                append_blob(&mut builder, store, &digest)?;
            }
        }
        let mut descriptor = Descriptor {
            media_type: target.media_type.clone(),
            digest: target.digest.clone(),
            size: target.size,
            platform: None,
            annotations: BTreeMap::new(),
            urls: Vec::new(),
        };
        descriptor
            .annotations
            .insert("io.containerd.image.name".into(), name.clone());
        if let Some(tag) = reference.tag() {
            descriptor
                .annotations
                .insert("org.opencontainers.image.ref.name".into(), tag.to_string());
        }
        index.manifests.push(descriptor);
        docker_manifest.push(DockerManifestEntry {
            config: blob_path(&image.config_digest),
            repo_tags: reference.tag().map(|_| vec![name.clone()]),
            layers: image
                .manifest
                .layers
                .iter()
                .map(|l| blob_path(&l.digest))
                .collect(),
        });
    }
    append_bytes(
        &mut builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    append_bytes(&mut builder, "index.json", &to_json(&index))?;
    append_bytes(&mut builder, "manifest.json", &to_json(&docker_manifest))?;
    builder
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(io_err("cannot finish the archive"))
}

/// JSON of plain data with string keys, which cannot fail to serialise.
fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

fn header(size: u64) -> tar::Header {
    crate::pack::synthetic_header(tar::EntryType::Regular, size, 0o644)
}

fn append_bytes<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> Result<(), ArchiveError> {
    builder
        .append_data(&mut header(bytes.len() as u64), name, bytes)
        .map_err(io_err(format!("cannot write {name} to the archive")))
}

fn append_blob<W: Write>(
    builder: &mut tar::Builder<W>,
    store: &ImageStore,
    digest: &Digest,
) -> Result<(), ArchiveError> {
    let path = store.content().path(digest);
    let file = File::open(&path).map_err(|_| StoreError::NotFound(digest.clone()))?;
    let size = file
        .metadata()
        .map_err(io_err(format!("cannot inspect {}", path.display())))?
        .len();
    builder
        .append_data(&mut header(size), blob_path(digest), file)
        .map_err(io_err(format!("cannot write blob {digest} to the archive")))
}

/// Reads an archive from `input` into `store`. Images are tagged with the names the
/// archive carries; `tag` names the single image of an archive that carries none (or
/// replaces the name of a single-image archive).
pub fn import(
    store: &ImageStore,
    input: impl Read,
    tag: Option<&Reference>,
) -> Result<Vec<Imported>, ArchiveError> {
    let _lease = store.lease()?;
    let temp = tempdir_in(store.root())?;
    extract_flat(input, temp.path())?;
    let dir = temp.path();
    let images = if dir.join("index.json").is_file() {
        import_oci_layout(store, dir)?
    } else if dir.join("manifest.json").is_file() {
        import_docker_legacy(store, dir)?
    } else {
        return Err(ArchiveError::UnknownFormat);
    };
    let mut imported = Vec::new();
    let single = images.len() == 1;
    for (target, names) in images {
        let names: Vec<Reference> = match (tag, single) {
            (Some(tag), true) => vec![tag.clone()],
            _ => names
                .iter()
                .map(|n| {
                    n.parse().map_err(|source| ArchiveError::BadTag {
                        name: n.clone(),
                        source,
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        for name in &names {
            store.tag(name, &target)?;
        }
        imported.push(Imported {
            target,
            references: names.iter().map(Reference::to_string).collect(),
        });
    }
    Ok(imported)
}

/// A temporary directory removed on drop (inside the store, so blobs can be renamed).
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir_in(root: &Path) -> Result<TempDir, ArchiveError> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = root.join("ingest").join(format!(
        "import-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&path).map_err(io_err(format!("cannot create {}", path.display())))?;
    Ok(TempDir(path))
}

/// Extracts regular files and directories with plain relative names; refuses others.
fn extract_flat(input: impl Read, dest: &Path) -> Result<(), ArchiveError> {
    // docker save | gzip (or zstd) is as welcome as a plain tar.
    let reader = crate::unpack::decoder(BufReader::new(input), crate::unpack::Compression::Detect)
        .map_err(|e| ArchiveError::Io {
            what: "cannot read the archive".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(io_err("cannot read the archive"))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("cannot read the archive"))?;
        let name = entry
            .path()
            .map_err(io_err("cannot read a member name"))?
            .into_owned();
        let display = name.display().to_string();
        let plain = name
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !plain || name.as_os_str().is_empty() {
            return Err(ArchiveError::UnsafeMember(display));
        }
        let target = dest.join(&name);
        match entry.header().entry_type() {
            tar::EntryType::Directory => std::fs::create_dir_all(&target)
                .map_err(io_err(format!("cannot extract {display}")))?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io_err(format!("cannot extract {display}")))?;
                }
                let mut file = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(io_err(format!("cannot extract {display}")))?;
                std::io::copy(&mut entry, &mut file)
                    .map_err(io_err(format!("cannot extract {display}")))?;
            }
            // Legacy docker-save archives link identical layers; treat as a copy.
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(io_err("cannot read a link name"))?
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let base = name.parent().unwrap_or(Path::new(""));
                let resolved = normalize(&base.join(&link)).ok_or_else(|| {
                    ArchiveError::UnsafeMember(format!("{display} -> {}", link.display()))
                })?;
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io_err(format!("cannot extract {display}")))?;
                }
                std::fs::copy(dest.join(&resolved), &target)
                    .map_err(io_err(format!("cannot extract {display}")))?;
            }
            _ => return Err(ArchiveError::UnsafeMember(display)),
        }
    }
    Ok(())
}

/// Resolves `.` and `..` lexically; `None` if the path leaves its root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn read_member(dir: &Path, name: &str) -> Result<Vec<u8>, ArchiveError> {
    std::fs::read(dir.join(name)).map_err(|_| ArchiveError::Missing(name.to_string()))
}

type Found = Vec<(RefTarget, Vec<String>)>;

fn import_oci_layout(store: &ImageStore, dir: &Path) -> Result<Found, ArchiveError> {
    let blobs = dir.join("blobs/sha256");
    if let Ok(entries) = std::fs::read_dir(&blobs) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(digest) = format!("sha256:{name}").parse::<Digest>() else {
                continue;
            };
            let file =
                File::open(entry.path()).map_err(io_err(format!("cannot read blob {name}")))?;
            store.content().ingest(file, &digest, None)?;
        }
    }
    let index_bytes = read_member(dir, "index.json")?;
    let index = match Manifest::parse(&index_bytes, Some(media_type::OCI_INDEX)) {
        Ok(Manifest::Index(index)) => index,
        Ok(Manifest::Image(_)) => {
            return Err(ArchiveError::Document {
                file: "index.json".into(),
                source: ManifestError::UnsupportedMediaType("a manifest, not an index".into()),
            });
        }
        Err(source) => {
            return Err(ArchiveError::Document {
                file: "index.json".into(),
                source,
            });
        }
    };
    // Docker's manifest.json carries full names when index.json has only tags.
    let docker_names: BTreeMap<String, Vec<String>> = read_member(dir, "manifest.json")
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<DockerManifestEntry>>(&b).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.config, e.repo_tags.unwrap_or_default()))
        .collect();
    let mut found = Vec::new();
    for descriptor in &index.manifests {
        if !store.content().contains(&descriptor.digest) {
            return Err(ArchiveError::Missing(blob_path(&descriptor.digest)));
        }
        let target = RefTarget::from(descriptor);
        let image = store.load(&target)?;
        for layer in &image.manifest.layers {
            if !store.content().contains(&layer.digest) {
                return Err(ArchiveError::Missing(blob_path(&layer.digest)));
            }
        }
        let mut names = Vec::new();
        if let Some(full) = descriptor.annotations.get("io.containerd.image.name") {
            names.push(full.clone());
        } else if let Some(tags) = docker_names.get(&blob_path(&image.config_digest)) {
            names.extend(tags.iter().cloned());
        } else if let Some(tag) = descriptor
            .annotations
            .get("org.opencontainers.image.ref.name")
            .filter(|t| t.parse::<Reference>().is_ok() && t.contains(['/', ':']))
        {
            // A full reference in ref.name (skopeo and podman write those).
            names.push(tag.clone());
        }
        found.push((target, names));
    }
    Ok(found)
}

fn import_docker_legacy(store: &ImageStore, dir: &Path) -> Result<Found, ArchiveError> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&read_member(dir, "manifest.json")?).map_err(|source| {
            ArchiveError::Document {
                file: "manifest.json".into(),
                source: ManifestError::Malformed {
                    what: "docker save manifest",
                    source,
                },
            }
        })?;
    let mut found = Vec::new();
    for entry in entries {
        let config_bytes = read_member(dir, &entry.config)?;
        let config =
            ImageConfig::parse(&config_bytes).map_err(|source| ArchiveError::Document {
                file: entry.config.clone(),
                source,
            })?;
        let mut layers = Vec::new();
        for (layer, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let path = dir.join(layer);
            let file = File::open(&path).map_err(|_| ArchiveError::Missing(layer.clone()))?;
            let size = file
                .metadata()
                .map_err(io_err(format!("cannot read {layer}")))?
                .len();
            // Legacy layers are uncompressed tars: the blob digest is the diff ID.
            store.content().ingest(file, diff_id, Some(size))?;
            layers.push(Descriptor {
                media_type: media_type::OCI_LAYER.to_string(),
                digest: diff_id.clone(),
                size,
                platform: None,
                annotations: BTreeMap::new(),
                urls: Vec::new(),
            });
        }
        if layers.len() != config.rootfs.diff_ids.len() || layers.len() != entry.layers.len() {
            return Err(ArchiveError::Missing(format!(
                "layers of {} ({} listed, {} in its config)",
                entry.config,
                entry.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let target = store.write_manifest(&config_bytes, &layers)?;
        found.push((target, entry.repo_tags.unwrap_or_default()));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::import_rootfs;

    fn store_with_image(dir: &Path) -> (ImageStore, crate::images::Image) {
        let store = ImageStore::open(dir.join("images")).unwrap();
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/hello"), b"hi").unwrap();
        let image = import_rootfs(
            &store,
            &src,
            &"localhost/app:1".parse().unwrap(),
            &["CMD [\"cat\", \"/etc/hello\"]".into()],
        )
        .unwrap();
        (store, image)
    }

    #[test]
    fn export_then_import_restores_the_same_image_and_name() {
        let dir = tempfile::tempdir().unwrap();
        let (store, image) = store_with_image(dir.path());
        let mut archive = Vec::new();
        export(&store, &["localhost/app:1".parse().unwrap()], &mut archive).unwrap();

        let other = ImageStore::open(dir.path().join("other")).unwrap();
        let imported = import(&other, &archive[..], None).unwrap();
        assert_eq!(imported.len(), 1);
        assert_eq!(imported[0].references, vec!["localhost/app:1"]);
        let loaded = other.resolve("localhost/app:1").unwrap();
        assert_eq!(loaded.digest(), image.digest());
        assert_eq!(loaded.id(), image.id());
        assert_eq!(loaded.config.command_line(&[]), vec!["cat", "/etc/hello"]);

        // Gzip-compressed archives load too, and a tag renames a single image.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&archive).unwrap();
        let gz = gz.finish().unwrap();
        let renamed: Reference = "localhost/renamed:2".parse().unwrap();
        import(&other, &gz[..], Some(&renamed)).unwrap();
        assert_eq!(
            other.resolve("localhost/renamed:2").unwrap().id(),
            image.id()
        );
        // Nothing is left in the ingest area.
        let ingest = std::fs::read_dir(dir.path().join("other/ingest"))
            .unwrap()
            .count();
        assert_eq!(ingest, 0);
    }

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, bytes) in members {
            let mut h = header(bytes.len() as u64);
            // Bypass the builder's own path checks to write hostile names as given.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            builder.append(&h, *bytes).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn legacy_docker_save_archives_load() {
        let layer = {
            let mut b = tar::Builder::new(Vec::new());
            let data = b"legacy\n";
            b.append_data(&mut header(data.len() as u64), "etc/legacy", &data[..])
                .unwrap();
            b.into_inner().unwrap()
        };
        let diff_id = Digest::of(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        let manifest = r#"[{"Config":"cfg.json","RepoTags":["localhost/legacy:1"],"Layers":["abc/layer.tar"]}]"#;
        let archive = tar_of(&[
            ("manifest.json", manifest.as_bytes()),
            ("cfg.json", config.as_bytes()),
            ("abc/layer.tar", &layer),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("images")).unwrap();
        import(&store, &archive[..], None).unwrap();
        let image = store.resolve("localhost/legacy:1").unwrap();
        assert_eq!(image.id(), &Digest::of(config.as_bytes()));
        assert_eq!(image.manifest.layers[0].digest, diff_id);
        assert_eq!(image.manifest.layers[0].media_type, media_type::OCI_LAYER);
    }

    #[test]
    fn hostile_or_corrupt_archives_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path().join("images")).unwrap();
        for name in ["../escape", "/etc/passwd", "a/../../b"] {
            let archive = tar_of(&[(name, b"x")]);
            let err = import(&store, &archive[..], None).unwrap_err();
            assert!(
                matches!(err, ArchiveError::UnsafeMember(_)),
                "{name}: {err}"
            );
        }
        assert!(!dir.path().join("escape").exists());

        let blob = b"not what the name says";
        let wrong = format!("blobs/sha256/{}", Digest::of(b"other").hex());
        let archive = tar_of(&[
            (wrong.as_str(), &blob[..]),
            ("index.json", br#"{"schemaVersion":2,"manifests":[]}"#),
        ]);
        let err = import(&store, &archive[..], None).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Store(StoreError::DigestMismatch { .. })),
            "{err}"
        );
        let err = import(&store, &tar_of(&[("hello.txt", b"x")])[..], None).unwrap_err();
        assert!(matches!(err, ArchiveError::UnknownFormat), "{err}");
        assert!(store.content().list().unwrap().is_empty());
        let ingest = std::fs::read_dir(dir.path().join("images/ingest"))
            .unwrap()
            .count();
        assert_eq!(ingest, 0);
    }
}
