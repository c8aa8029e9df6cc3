//! The build context: resolving `COPY`/`ADD` sources inside it (never outside), a
//! content digest of what a step copies (the cache key ignores mtimes, as Docker's
//! does), and staging the files into a layer under their destination.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::BuildError;
use crate::digest::Digest;
use crate::pack::{LayerWriter, PackError};
use crate::unpack::Compression;

/// One resolved source and where it lands.
#[derive(Debug, Clone)]
pub(super) struct Placement {
    /// The file or directory in the context.
    pub source: PathBuf,
    /// Its path in the image (absolute, normalised, without the leading `/`).
    pub dest: PathBuf,
    /// For a directory: copy its contents to `dest` (Docker's rule for `COPY dir/ …`).
    pub contents_only: bool,
    /// `ADD` of a local archive: unpack it into `dest`.
    pub unpack_archive: bool,
}

fn outside(line: usize, source: &str) -> BuildError {
    BuildError::Step {
        line,
        message: format!("source {source:?} is outside the build context"),
    }
}

/// Joins `path` to `base` lexically, refusing to climb above it.
fn normalise_under(base: &Path, path: &str) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    let depth = out.components().count();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if out.components().count() <= depth {
                    return None;
                }
                out.pop();
            }
            Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// A `*`/`?` wildcard match of one path component.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard(&pattern[1..], name) || (!name.is_empty() && wildcard(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// Expands one source (with wildcards in its last component) to context paths.
fn expand(context: &Path, source: &str, line: usize) -> Result<Vec<PathBuf>, BuildError> {
    let joined = normalise_under(context, source).ok_or_else(|| outside(line, source))?;
    let name = joined
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let paths = if name.contains(['*', '?']) {
        let parent = joined.parent().unwrap_or(context);
        let mut matches: Vec<PathBuf> = std::fs::read_dir(parent)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| wildcard(name.as_bytes(), e.file_name().as_encoded_bytes()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        matches.sort();
        matches
    } else {
        vec![joined]
    };
    if paths.is_empty() {
        return Err(BuildError::Step {
            line,
            message: format!("no source files were specified by {source:?}"),
        });
    }
    for path in &paths {
        // Symlinks in the source path are followed, but only within the context.
        let real = std::fs::canonicalize(path).map_err(|_| BuildError::Step {
            line,
            message: format!("{source:?} does not exist in the build context"),
        })?;
        if !real.starts_with(context) {
            return Err(outside(line, source));
        }
    }
    Ok(paths)
}

/// A tar, or a gzip/zstd stream (assumed to hold a tar, as Docker assumes).
fn is_archive(path: &Path) -> bool {
    let mut head = [0u8; 262];
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let n = file.read(&mut head).unwrap_or(0);
    let head = &head[..n];
    matches!(
        Compression::detect(head),
        Ok(Compression::Gzip | Compression::Zstd)
    ) || (n >= 262 && &head[257..262] == b"ustar")
}

/// Resolves the sources of a COPY/ADD (`context` canonical) against `dest` (relative
/// to `workdir` unless absolute).
pub(super) fn place(
    context: &Path,
    sources: &[String],
    dest: &str,
    workdir: &str,
    add: bool,
    line: usize,
) -> Result<Vec<Placement>, BuildError> {
    let absolute = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{}/{dest}", workdir.trim_end_matches('/'))
    };
    let dest_path = normalise_under(Path::new(""), &absolute).unwrap_or_default();
    let mut expanded = Vec::new();
    for source in sources {
        if add && (source.starts_with("http://") || source.starts_with("https://")) {
            return Err(BuildError::Step {
                line,
                message: format!(
                    "ADD from a URL ({source}) is not supported; download it into the context"
                ),
            });
        }
        expanded.extend(expand(context, source, line)?);
    }
    let into_dir = dest.ends_with('/') || expanded.len() > 1 || dest == "." || dest.is_empty();
    let mut placements = Vec::new();
    for source in expanded {
        let meta = std::fs::metadata(&source).map_err(|e| BuildError::Step {
            line,
            message: format!("cannot read {}: {e}", source.display()),
        })?;
        if meta.is_dir() {
            placements.push(Placement {
                source,
                dest: dest_path.clone(),
                contents_only: true,
                unpack_archive: false,
            });
        } else if add && is_archive(&source) {
            placements.push(Placement {
                source,
                dest: dest_path.clone(),
                contents_only: false,
                unpack_archive: true,
            });
        } else {
            let target = if into_dir {
                dest_path.join(source.file_name().unwrap_or_default())
            } else {
                dest_path.clone()
            };
            placements.push(Placement {
                source,
                dest: target,
                contents_only: false,
                unpack_archive: false,
            });
        }
    }
    Ok(placements)
}

fn hash_tree(hasher: &mut Sha256, path: &Path, name: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    hasher.update(name.as_os_str().as_encoded_bytes());
    hasher.update(format!(
        "\0{:o}\0{}\0{}\0",
        meta.mode(),
        meta.uid(),
        meta.gid()
    ));
    if meta.file_type().is_symlink() {
        hasher.update(std::fs::read_link(path)?.as_os_str().as_encoded_bytes());
    } else if meta.is_file() {
        let mut file = std::fs::File::open(path)?;
        std::io::copy(&mut file, hasher)?;
    } else if meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for child in names {
            hash_tree(hasher, &path.join(&child), &name.join(&child))?;
        }
    }
    hasher.update(b"\n");
    Ok(())
}

/// A digest of everything the placements copy: names, modes, owners, content.
pub(super) fn content_digest(placements: &[Placement]) -> Result<Digest, BuildError> {
    let mut hasher = Sha256::new();
    for p in placements {
        hasher.update(p.dest.as_os_str().as_encoded_bytes());
        hash_tree(&mut hasher, &p.source, Path::new("")).map_err(|source| BuildError::Io {
            what: format!("cannot read {}", p.source.display()),
            source,
        })?;
    }
    Ok(Digest::from_hasher(hasher))
}

/// Writes the placements into `writer` (a new layer).
pub(super) fn stage(
    writer: &mut LayerWriter<'_>,
    placements: &[Placement],
) -> Result<(), BuildError> {
    for p in placements {
        if p.unpack_archive {
            restage_archive(writer, &p.source, &p.dest)?;
        } else if p.contents_only {
            writer.append_contents(&p.source, &p.dest)?;
        } else {
            writer.append_path(&p.source, &p.dest)?;
        }
    }
    Ok(())
}

/// Copies the entries of a local archive (`ADD app.tar.gz /srv/`) under `dest`.
/// Entry names that would climb out of `dest` are refused.
fn restage_archive(
    writer: &mut LayerWriter<'_>,
    archive: &Path,
    dest: &Path,
) -> Result<(), BuildError> {
    let io = |what: String| move |source| BuildError::Io { what, source };
    let file =
        std::fs::File::open(archive).map_err(io(format!("cannot open {}", archive.display())))?;
    let reader = crate::unpack::decoder(std::io::BufReader::new(file), Compression::Detect)
        .map_err(|e| BuildError::Io {
            what: format!("cannot read {}", archive.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
    let mut tar = tar::Archive::new(reader);
    let entries = tar
        .entries()
        .map_err(io(format!("cannot read {}", archive.display())))?;
    for entry in entries {
        let mut entry = entry.map_err(io(format!("cannot read {}", archive.display())))?;
        let name = entry
            .path()
            .map_err(io(format!("cannot read {}", archive.display())))?
            .into_owned();
        let target =
            normalise_under(dest, &name.to_string_lossy()).ok_or_else(|| BuildError::Io {
                what: format!(
                    "{}: entry {:?} climbs out of its destination",
                    archive.display(),
                    name
                ),
                source: std::io::Error::other("unsafe archive entry"),
            })?;
        let mut header = entry.header().clone();
        let append = match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry
                    .link_name()
                    .ok()
                    .flatten()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let link = if entry.header().entry_type() == tar::EntryType::Link {
                    normalise_under(dest, &link.to_string_lossy()).unwrap_or(link)
                } else {
                    link
                };
                writer.builder.append_link(&mut header, &target, link)
            }
            _ => writer.builder.append_data(&mut header, &target, &mut entry),
        };
        append.map_err(|source| {
            BuildError::Pack(PackError::Io {
                path: archive.to_path_buf(),
                source,
            })
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_follow_docker_rules() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(ctx.join("site/css")).unwrap();
        std::fs::write(ctx.join("site/index.html"), b"i").unwrap();
        std::fs::write(ctx.join("a.txt"), b"a").unwrap();
        std::fs::write(ctx.join("b.txt"), b"b").unwrap();

        let one = place(&ctx, &["a.txt".into()], "/etc/conf", "/", false, 1).unwrap();
        assert_eq!(one[0].dest, Path::new("etc/conf"));
        let into = place(&ctx, &["a.txt".into()], "rel/", "/app", false, 1).unwrap();
        assert_eq!(into[0].dest, Path::new("app/rel/a.txt"));
        let glob = place(&ctx, &["*.txt".into()], "/t", "/", false, 1).unwrap();
        let dests: Vec<_> = glob.iter().map(|p| p.dest.clone()).collect();
        assert_eq!(
            dests,
            vec![PathBuf::from("t/a.txt"), PathBuf::from("t/b.txt")]
        );
        let tree = place(&ctx, &["site".into()], "/www", "/", false, 1).unwrap();
        assert!(tree[0].contents_only);
        assert_eq!(tree[0].dest, Path::new("www"));
    }

    #[test]
    fn sources_outside_the_context_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = std::fs::canonicalize(dir.path()).unwrap().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink("../secret", ctx.join("link")).unwrap();
        for source in ["../secret", "link", "/../secret"] {
            let err = place(&ctx, &[source.into()], "/x", "/", false, 7).unwrap_err();
            assert!(err.to_string().contains("line 7"), "{err}");
            assert!(
                err.to_string().contains("outside the build context"),
                "{source}: {err}"
            );
        }
        let missing = place(&ctx, &["nope".into()], "/x", "/", false, 3).unwrap_err();
        assert!(missing.to_string().contains("does not exist"), "{missing}");
    }

    #[test]
    fn wildcards_match_like_shells() {
        assert!(wildcard(b"*.html", b"index.html"));
        assert!(wildcard(b"a?c", b"abc"));
        assert!(!wildcard(b"*.html", b"index.htm"));
        assert!(wildcard(b"*", b""));
    }
}
