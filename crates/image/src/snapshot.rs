//! Unpacked layers, shared read-only by every container of every image that has them:
//! `snapshots/<chain-id>/fs`, one directory per layer, named by the layer's chain ID
//! (OCI image-spec `config.md`: the chain ID names a layer *and everything under it*, so
//! the same tar on top of another base gets another snapshot).
//!
//! A snapshot is filled in `snapshots/.tmp-<pid>-<n>/` and renamed into place when
//! complete, so a crash mid-unpack never leaves a half snapshot under a real name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// The chain IDs of a layer stack given its diff IDs (base first):
/// `chain(0) = diff(0)`, `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut chains: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match chains.last() {
            None => diff.clone(),
            Some(parent) => {
                Digest::from_hasher(Sha256::new_with_prefix(format!("{parent} {diff}")))
            }
        };
        chains.push(next);
    }
    chains
}

/// The snapshot directory tree.
#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Snapshots {
    /// Snapshots under `root` (which must exist).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The unpacked content of the layer whose chain ID is `chain`.
    pub fn path(&self, chain: &Digest) -> PathBuf {
        self.root.join(chain.hex()).join("fs")
    }

    /// True when the snapshot is complete.
    pub fn exists(&self, chain: &Digest) -> bool {
        self.path(chain).is_dir()
    }

    /// Creates the snapshot `chain` by calling `fill` on an empty directory, unless it
    /// exists already. On error nothing of it stays. Two processes filling the same
    /// snapshot at once both succeed; the second rename loses and its copy is removed.
    pub fn create<E>(
        &self,
        chain: &Digest,
        fill: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathBuf, SnapshotError<E>> {
        let target = self.path(chain);
        if target.is_dir() {
            return Ok(target);
        }
        let temp = self.root.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let fs = temp.join("fs");
        let cleanup = |err| {
            let _ = std::fs::remove_dir_all(&temp);
            err
        };
        std::fs::create_dir_all(&fs).map_err(|source| {
            cleanup(SnapshotError::Io {
                path: fs.clone(),
                source,
            })
        })?;
        fill(&fs).map_err(|e| cleanup(SnapshotError::Fill(e)))?;
        let dir = self.root.join(chain.hex());
        match std::fs::rename(&temp, &dir) {
            Ok(()) => Ok(target),
            Err(_) if target.is_dir() => {
                let _ = std::fs::remove_dir_all(&temp);
                Ok(target)
            }
            Err(source) => Err(cleanup(SnapshotError::Io { path: dir, source })),
        }
    }

    /// Removes every snapshot not in `live`, and temporary directories of processes
    /// that are gone. Returns how many snapshots were removed.
    pub fn sweep(&self, live: &BTreeSet<Digest>) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let keep = if let Some(rest) = name.strip_prefix(".tmp-") {
                rest.split('-')
                    .next()
                    .is_some_and(|pid| Path::new("/proc").join(pid).exists())
            } else {
                match format!("sha256:{name}").parse::<Digest>() {
                    Ok(chain) => live.contains(&chain),
                    Err(_) => true, // not ours
                }
            };
            if !keep && std::fs::remove_dir_all(entry.path()).is_ok() && !name.starts_with('.') {
                removed += 1;
            }
        }
        removed
    }
}

/// Why a snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError<E> {
    /// Filling it failed.
    #[error("cannot unpack layer")]
    Fill(#[source] E),
    /// A directory operation failed.
    #[error("snapshot directory {path}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        assert_eq!(chains[1], Digest::of(format!("{a} {b}").as_bytes()));
        // The same layer on another base is another snapshot.
        assert_ne!(chain_ids(std::slice::from_ref(&b))[0], chains[1]);
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn a_failed_fill_leaves_nothing_and_sweep_keeps_live_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = Snapshots::new(dir.path().to_path_buf());
        let keep = Digest::of(b"keep");
        let drop_me = Digest::of(b"drop");
        let failed = snapshots.create(&drop_me, |fs| {
            std::fs::write(fs.join("partial"), b"x").unwrap();
            Err("layer is corrupt")
        });
        assert!(matches!(
            failed,
            Err(SnapshotError::Fill("layer is corrupt"))
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        for chain in [&keep, &drop_me] {
            let path = snapshots
                .create(chain, |fs| std::fs::write(fs.join("file"), b"x"))
                .unwrap();
            assert!(path.join("file").is_file());
        }
        // Existing snapshots are not refilled.
        snapshots
            .create(&keep, |_| Err::<(), _>("must not be called"))
            .unwrap();
        std::fs::create_dir(dir.path().join(".tmp-999999999-0")).unwrap();
        let removed = snapshots.sweep(&BTreeSet::from([keep.clone()]));
        assert_eq!(removed, 1);
        assert!(snapshots.exists(&keep));
        assert!(!snapshots.exists(&drop_me));
        assert!(!dir.path().join(".tmp-999999999-0").exists());
    }
}
