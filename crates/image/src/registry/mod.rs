//! The OCI distribution-spec client: `pull` and `push` images (and WebAssembly module
//! artifacts), `login` to registries.
//!
//! Registries are reached over HTTPS with the system's roots (plus
//! [`RegistryOptions::extra_roots`]). Plain HTTP is used only for registries listed as
//! insecure and, like Docker, for loopback ones (`localhost`, `127.0.0.0/8`, `::1`),
//! after HTTPS failed. Authentication is anonymous, basic, or the bearer-token flow
//! (401 challenge → token from the realm → retry), with tokens cached per scope.
//! `docker.io` is reached at `registry-1.docker.io`.

mod auth;
mod client;
mod error;
mod progress;
mod pull;
mod push;

pub use auth::{AuthFile, AuthFileError, Challenge, Credentials, registry_key};
pub use client::{Client, RegistryOptions, api_host};
pub use error::RegistryError;
pub use progress::{BlobOutcome, NoProgress, Progress};
pub use pull::{MAX_MANIFEST_BYTES, PullOptions, PullReport, PulledModule, pull, pull_wasm_module};
pub use push::{DEFAULT_CHUNK_SIZE, PushOptions, PushReport, push, push_artifact};

use crate::manifest::{Manifest, media_type};

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = crate::reference::DEFAULT_REGISTRY;

/// Checks `credentials` against `registry` (`GET /v2/`, or a token request when the
/// registry hands out tokens). Returns [`RegistryError::LoginFailed`] when they are
/// refused.
pub async fn login(
    registry: &str,
    credentials: &Credentials,
    options: &RegistryOptions,
) -> Result<(), RegistryError> {
    let client = Client::connect(registry, options, Some(credentials.clone())).await?;
    client.verify_login().await
}

/// The media type to record for a fetched manifest: the document's own, else the
/// `Content-Type` when it names a manifest type, else what the document's shape says.
fn manifest_media_type(parsed: &Manifest, content_type: Option<&str>) -> String {
    let own = match parsed {
        Manifest::Image(m) => m.media_type.as_deref(),
        Manifest::Index(i) => i.media_type.as_deref(),
    };
    let known = |t: &&str| media_type::MANIFESTS.contains(t) || media_type::INDEXES.contains(t);
    own.or(content_type.filter(known))
        .unwrap_or(parsed.media_type())
        .to_string()
}
