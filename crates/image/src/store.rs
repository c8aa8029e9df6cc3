//! The content-addressed blob store: `<root>/blobs/sha256/<hex>`.
//!
//! A blob is streamed into `<root>/ingest/` while it is hashed and counted, and is
//! renamed into `blobs/` only when its digest and size match what the caller expected
//! (from a manifest or a registry). A mismatched or interrupted write leaves nothing in
//! `blobs/`, and its temporary file is removed. Blobs are immutable once stored.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The content hashed to another digest.
    #[error("blob content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The digest the caller expected.
        expected: Digest,
        /// The digest of what was read.
        actual: Digest,
    },
    /// The content had another length.
    #[error("blob {digest} is {actual} bytes long, expected {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The size the caller expected.
        expected: u64,
        /// The bytes read.
        actual: u64,
    },
    /// More bytes arrived than the expected size allows.
    #[error("blob {digest} is longer than the expected {expected} bytes")]
    TooLong {
        /// The blob.
        digest: Digest,
        /// The size the caller expected.
        expected: u64,
    },
    /// The blob is not in the store.
    #[error("blob {0} is not in the store")]
    NotFound(Digest),
    /// A file operation failed.
    #[error("{operation} {path}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn io(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        operation,
        path,
        source,
    }
}

/// A blob store rooted at one directory.
#[derive(Debug)]
pub struct ContentStore {
    root: PathBuf,
}

static INGEST_COUNTER: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    /// Opens (creating) the store at `root`. Ingest files left by processes that no
    /// longer run are removed; those of live processes (a concurrent pull) are kept.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let store = Self { root };
        let blobs = store.root.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).map_err(io("cannot create", &blobs))?;
        let ingest = store.ingest_dir();
        std::fs::create_dir_all(&ingest).map_err(io("cannot create", &ingest))?;
        let entries = std::fs::read_dir(&ingest).map_err(io("cannot list", &ingest))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let writer_alive = name
                .split('-')
                .nth(1)
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
            if !writer_alive {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(store)
    }

    fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    /// Where the blob `digest` lives (whether or not it is stored).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// True if the blob is stored.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Streams `content` into the store, verifying it against `expected` (and
    /// `expected_size`, when known). Returns the blob's size.
    pub fn ingest(
        &self,
        mut content: impl Read,
        expected: &Digest,
        expected_size: Option<u64>,
    ) -> Result<u64, StoreError> {
        if self.contains(expected) {
            // Content-addressed: the stored copy is the same bytes. Drain nothing.
            let size = std::fs::metadata(self.path(expected))
                .map_err(io("cannot inspect", &self.path(expected)))?
                .len();
            return Ok(size);
        }
        let mut writer = self.writer(expected.hex())?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = content
                .read(&mut buf)
                .map_err(io("cannot read content for", &writer.tmp))?;
            if n == 0 {
                break;
            }
            if let Some(limit) = expected_size
                && writer.size + n as u64 > limit
            {
                return Err(StoreError::TooLong {
                    digest: expected.clone(),
                    expected: limit,
                });
            }
            writer
                .write_all(&buf[..n])
                .map_err(io("cannot write", &writer.tmp))?;
        }
        let (_, size) = writer.commit(Some((expected, expected_size)))?;
        Ok(size)
    }

    /// A writer for content whose digest is learnt as it is written (a layer Strata
    /// builds). Nothing is visible until [`BlobWriter::commit`]; dropping the writer
    /// discards what was written. `label` only names the temporary file.
    pub fn writer(&self, label: &str) -> Result<BlobWriter<'_>, StoreError> {
        let tmp = self.ingest_dir().join(format!(
            "{label}-{}-{}",
            std::process::id(),
            INGEST_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&tmp).map_err(io("cannot create", &tmp))?;
        Ok(BlobWriter {
            store: self,
            out: Some(BufWriter::new(file)),
            tmp,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Stores `bytes` under their own digest (for content Strata writes itself).
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of(bytes);
        self.ingest(bytes, &digest, Some(bytes.len() as u64))?;
        Ok(digest)
    }

    /// Reads a whole blob (for manifests and configs; layers are streamed from [`Self::path`]).
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.path(digest);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound(digest.clone()))
            }
            Err(err) => Err(io("cannot read", &path)(err)),
        }
    }

    /// Removes a blob (absent blobs are fine).
    pub fn delete(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io("cannot remove", &path)(err)),
        }
    }

    /// Every stored blob, sorted (files whose names are not digests are ignored).
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.root.join("blobs/sha256");
        let entries = std::fs::read_dir(&dir).map_err(io("cannot list", &dir))?;
        let mut digests: Vec<Digest> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                format!("sha256:{}", name.to_string_lossy()).parse().ok()
            })
            .collect();
        digests.sort();
        Ok(digests)
    }
}

/// A blob being written into the store; see [`ContentStore::writer`].
#[derive(Debug)]
pub struct BlobWriter<'s> {
    store: &'s ContentStore,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    hasher: Sha256,
    size: u64,
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| std::io::Error::other("blob writer already committed"))?;
        let n = out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl BlobWriter<'_> {
    /// Bytes written so far. A download that was cut off resumes from here (an HTTP
    /// `Range: bytes=N-` request): the writer stays valid across attempts, and what was
    /// written so far stays hashed and on disk until [`Self::commit`] or drop.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `bytes` (an I/O error names the temporary file).
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self.tmp.clone();
        self.write_all(bytes).map_err(io("cannot write", &tmp))
    }

    /// Discards what was written, to start over (a server that ignored a range request
    /// and sent the whole blob again).
    pub fn reset(&mut self) -> Result<(), StoreError> {
        let out = self.out.take().ok_or_else(|| StoreError::Io {
            operation: "cannot reset",
            path: self.tmp.clone(),
            source: std::io::Error::other("blob writer already committed"),
        })?;
        // Buffered bytes belong to the discarded content: drop them unwritten.
        let (mut file, _unwritten) = out.into_parts();
        file.set_len(0).map_err(io("cannot truncate", &self.tmp))?;
        std::io::Seek::rewind(&mut file).map_err(io("cannot rewind", &self.tmp))?;
        self.out = Some(BufWriter::new(file));
        self.hasher = Sha256::new();
        self.size = 0;
        Ok(())
    }

    /// Makes the blob visible under its digest, after checking it against `expected`
    /// (digest and optional size) when given. Returns the digest and size.
    pub fn commit(
        mut self,
        expected: Option<(&Digest, Option<u64>)>,
    ) -> Result<(Digest, u64), StoreError> {
        let out = self.out.take().ok_or_else(|| StoreError::Io {
            operation: "cannot commit twice",
            path: self.tmp.clone(),
            source: std::io::Error::other("blob writer already committed"),
        })?;
        let file = out.into_inner().map_err(|e| StoreError::Io {
            operation: "cannot write",
            path: self.tmp.clone(),
            source: e.into_error(),
        })?;
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if let Some((expected, expected_size)) = expected {
            if &actual != expected {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
            if let Some(expected_size) = expected_size
                && self.size != expected_size
            {
                return Err(StoreError::SizeMismatch {
                    digest: expected.clone(),
                    expected: expected_size,
                    actual: self.size,
                });
            }
        }
        file.sync_all().map_err(io("cannot sync", &self.tmp))?;
        let target = self.store.path(&actual);
        std::fs::rename(&self.tmp, &target).map_err(io("cannot store", &target))?;
        Ok((actual, self.size))
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        // After a commit the file has been renamed away and this is a no-op; otherwise
        // (never committed, or the commit failed) nothing of it may stay.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path().join("content")).unwrap();
        (dir, store)
    }

    fn ingest_files(store: &ContentStore) -> usize {
        std::fs::read_dir(store.ingest_dir()).unwrap().count()
    }

    #[test]
    fn verified_blobs_are_stored_and_read_back() {
        let (_dir, store) = store();
        let digest = store.put(b"hello layer").unwrap();
        assert!(store.contains(&digest));
        assert_eq!(store.read(&digest).unwrap(), b"hello layer");
        assert_eq!(store.list().unwrap(), vec![digest.clone()]);
        // Storing the same content again is a no-op.
        assert_eq!(
            store
                .ingest(&b"hello layer"[..], &digest, Some(11))
                .unwrap(),
            11
        );
        store.delete(&digest).unwrap();
        assert!(matches!(store.read(&digest), Err(StoreError::NotFound(_))));
        assert_eq!(ingest_files(&store), 0);
    }

    #[test]
    fn a_wrong_digest_or_size_leaves_nothing() {
        let (_dir, store) = store();
        let claimed = Digest::of(b"what the manifest says");
        let err = store
            .ingest(&b"something else"[..], &claimed, None)
            .unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }), "{err}");
        assert!(!store.contains(&claimed));

        let right = Digest::of(b"12345");
        let short = store.ingest(&b"12345"[..], &right, Some(6)).unwrap_err();
        assert!(
            matches!(short, StoreError::SizeMismatch { actual: 5, .. }),
            "{short}"
        );
        let long = store.ingest(&b"12345"[..], &right, Some(4)).unwrap_err();
        assert!(matches!(long, StoreError::TooLong { .. }), "{long}");
        assert!(!store.contains(&right));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(ingest_files(&store), 0, "temporary files are removed");
    }

    #[test]
    fn a_failing_reader_leaves_nothing() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("connection reset"));
                }
                self.0 -= 1;
                buf[0] = b'x';
                Ok(1)
            }
        }
        let (_dir, store) = store();
        let digest = Digest::of(b"xxxxxxxx");
        let err = store.ingest(Broken(3), &digest, None).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err}");
        assert!(!store.contains(&digest));
        assert_eq!(ingest_files(&store), 0);
    }

    #[test]
    fn a_blob_writer_commits_under_the_digest_it_learnt() {
        let (_dir, store) = store();
        let mut writer = store.writer("layer").unwrap();
        writer.write_all(b"built ").unwrap();
        writer.write_all(b"layer").unwrap();
        assert_eq!(ingest_files(&store), 1);
        let (digest, size) = writer.commit(None).unwrap();
        assert_eq!(digest, Digest::of(b"built layer"));
        assert_eq!(size, 11);
        assert_eq!(store.read(&digest).unwrap(), b"built layer");

        let mut abandoned = store.writer("layer").unwrap();
        abandoned.write_all(b"half").unwrap();
        drop(abandoned);
        let mut wrong = store.writer("layer").unwrap();
        wrong.write_all(b"other").unwrap();
        assert!(wrong.commit(Some((&digest, None))).is_err());
        assert_eq!(ingest_files(&store), 0);
        assert_eq!(store.list().unwrap(), vec![digest]);
    }

    #[test]
    fn a_writer_resumes_across_attempts_and_can_start_over() {
        let (_dir, store) = store();
        let mut writer = store.writer("pull").unwrap();
        writer.write_all(b"first ").unwrap();
        // A second attempt appends where the first stopped.
        assert_eq!(writer.size(), 6);
        writer.write_all(b"attempt").unwrap();
        let expected = Digest::of(b"whole blob");
        writer.reset().unwrap();
        assert_eq!(writer.size(), 0);
        writer.write_all(b"whole ").unwrap();
        writer.write_all(b"blob").unwrap();
        let (digest, size) = writer.commit(Some((&expected, Some(10)))).unwrap();
        assert_eq!((digest, size), (expected.clone(), 10));
        assert_eq!(store.read(&expected).unwrap(), b"whole blob");
        assert_eq!(ingest_files(&store), 0);
    }

    #[test]
    fn ingest_files_of_dead_writers_are_cleared_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("content");
        drop(ContentStore::open(&root).unwrap());
        // pid_max is at most 2^22, so this writer cannot be alive.
        std::fs::write(root.join("ingest/abc-999999999-0"), b"partial").unwrap();
        let live = format!("abc-{}-7", std::process::id());
        std::fs::write(root.join("ingest").join(&live), b"in flight").unwrap();
        let store = ContentStore::open(&root).unwrap();
        let left: Vec<String> = std::fs::read_dir(store.ingest_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(left, vec![live]);
    }
}
