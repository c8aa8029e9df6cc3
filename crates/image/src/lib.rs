//! OCI images for Strata (milestone 2, in progress).
//!
//! Landed so far: content digests, image references parsed the way the container
//! ecosystem parses them, a content-addressed blob store that verifies every blob
//! against its digest and size before it becomes visible, and the manifest, index and
//! config documents, layers and overlay snapshots, and the registry client
//! ([`registry`]: pull, push, login), and WebAssembly modules as OCI artifacts
//! ([`wasm`]). Builds follow.

pub mod archive;
pub mod build;
pub mod config;
pub mod containerfile;
pub mod digest;
pub mod images;
pub mod import;
pub mod manifest;
pub mod pack;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod snapshot;
pub mod store;
pub mod unpack;
pub mod users;
pub mod wasm;

pub use config::ImageConfig;
pub use digest::{Digest, DigestError};
pub use images::{GcReport, Image, ImageError, ImageStore, Lease, RefTarget};
pub use manifest::{
    Descriptor, ImageIndex, ImageManifest, Manifest, ManifestError, Platform, PlatformError,
};
pub use reference::{Reference, ReferenceError};
pub use registry::{RegistryError, RegistryOptions};
pub use snapshot::{Snapshots, chain_ids};
pub use store::{BlobWriter, ContentStore, StoreError};
pub use unpack::{
    Compression, UnpackError, UnpackOptions, UnpackStats, WhiteoutMode, unpack_layer,
};
