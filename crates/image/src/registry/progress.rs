//! Progress of a pull or push, reported per blob. The library only reports; the CLI
//! draws bars (or prints lines when stderr is not a terminal).

use crate::digest::Digest;

/// What became of one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// Pull: already in the local store, not downloaded.
    AlreadyPresent,
    /// Pull: downloaded and verified.
    Downloaded,
    /// Push: the registry already had it in the target repository.
    AlreadyExists,
    /// Push: the registry linked it from another repository (cross-repo mount).
    Mounted {
        /// The repository it came from.
        from: String,
    },
    /// Push: uploaded in one request.
    Uploaded,
    /// Push: uploaded in this many chunks.
    UploadedInChunks(usize),
}

/// Receives progress events; every method has a do-nothing default. Calls for
/// different blobs may interleave (blobs move concurrently).
pub trait Progress: Sync {
    /// Work on a blob of `size` bytes starts.
    fn started(&self, digest: &Digest, size: u64) {
        let _ = (digest, size);
    }
    /// `done` bytes of the blob have moved so far.
    fn advanced(&self, digest: &Digest, done: u64) {
        let _ = (digest, done);
    }
    /// An attempt failed and the transfer will resume after a pause.
    fn retrying(&self, digest: &Digest, attempt: u32, error: &super::RegistryError) {
        let _ = (digest, attempt, error);
    }
    /// The blob is done.
    fn finished(&self, digest: &Digest, outcome: &BlobOutcome) {
        let _ = (digest, outcome);
    }
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {}
