//! OCI images for Strata (milestone 2, in progress).
//!
//! Landed so far: content digests, image references parsed the way the container
//! ecosystem parses them, and a content-addressed blob store that verifies every blob
//! against its digest and size before it becomes visible. Manifests, layers, overlay
//! snapshots, the registry client and builds follow.

pub mod digest;
pub mod reference;
pub mod store;
pub mod unpack;

pub use digest::{Digest, DigestError};
pub use reference::{Reference, ReferenceError};
pub use store::{ContentStore, StoreError};
pub use unpack::{
    Compression, UnpackError, UnpackOptions, UnpackStats, WhiteoutMode, unpack_layer,
};
