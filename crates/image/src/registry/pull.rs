//! `pull`: manifest (and index) fetched and verified, platform chosen, config and
//! layers downloaded concurrently into the content store, resuming cut-off downloads
//! with `Range` requests, and the reference tagged last.

use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode};

use super::client::{Client, RegistryOptions};
use super::progress::{BlobOutcome, Progress};
use super::{Credentials, RegistryError, manifest_media_type};
use crate::digest::Digest;
use crate::images::{ImageStore, RefTarget};
use crate::manifest::{Descriptor, ImageManifest, Manifest, Platform, media_type};
use crate::reference::Reference;
use crate::store::{BlobWriter, ContentStore};

/// Manifests larger than this are refused (the distribution project uses 4 MiB too).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// How to reach the registry.
    pub registry: RegistryOptions,
    /// Credentials for the registry, if any.
    pub credentials: Option<Credentials>,
    /// The platform to choose from an index.
    pub platform: Platform,
    /// Blobs downloaded at the same time.
    pub max_concurrent: usize,
    /// Attempts per request before giving up on transient failures.
    pub max_attempts: u32,
    /// The pause after the first failed attempt; it doubles after each.
    pub initial_backoff: Duration,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            registry: RegistryOptions::default(),
            credentials: None,
            platform: Platform::host(),
            max_concurrent: 3,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(250),
        }
    }
}

impl PullOptions {
    fn backoff(&self, attempt: u32) -> Duration {
        self.initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct PullReport {
    /// The reference pulled (and tagged).
    pub reference: Reference,
    /// What it now names (the index, for a multi-platform image).
    pub target: RefTarget,
    /// The platform manifest chosen.
    pub manifest_digest: Digest,
    /// Each config and layer blob and whether it was downloaded.
    pub blobs: Vec<(Digest, BlobOutcome)>,
    /// Bytes downloaded for blobs (manifests not counted).
    pub bytes_downloaded: u64,
    /// Attempts retried after transient failures.
    pub retries: u32,
    /// False when the reference already named this image.
    pub updated: bool,
}

/// Every manifest type Strata reads, for `Accept`.
fn accept_manifests() -> String {
    [
        media_type::OCI_MANIFEST,
        media_type::OCI_INDEX,
        media_type::DOCKER_MANIFEST,
        media_type::DOCKER_MANIFEST_LIST,
    ]
    .join(", ")
}

/// Pulls `reference` into `store` and tags it. Blobs already in the store are not
/// downloaded again. Garbage collection is held off for the duration (a lease); a
/// failed pull leaves the blobs that were verified (a later pull reuses them) and
/// nothing of the blob that failed.
pub async fn pull(
    store: &ImageStore,
    reference: &Reference,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<PullReport, RegistryError> {
    let client = Client::connect(
        reference.registry(),
        &options.registry,
        options.credentials.clone(),
    )
    .await?;
    let repo = reference.repository();
    let scope = format!("repository:{repo}:pull");
    let wanted = match (reference.digest(), reference.tag_or_default()) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.to_string(),
        (None, None) => crate::reference::DEFAULT_TAG.to_string(),
    };
    let top = fetch_manifest(&client, repo, &scope, &wanted, reference.digest(), options).await?;
    let top_parsed = top.parse()?;
    let target = RefTarget {
        digest: top.digest.clone(),
        media_type: manifest_media_type(&top_parsed, top.content_type.as_deref()),
        size: top.bytes.len() as u64,
    };
    let (child, manifest) = match top_parsed {
        Manifest::Image(manifest) => (None, manifest),
        Manifest::Index(index) => {
            let chosen = index
                .select(&options.platform)
                .map_err(|source| RegistryError::Manifest {
                    digest: top.digest.clone(),
                    source,
                })?
                .clone();
            let child = fetch_manifest(
                &client,
                repo,
                &scope,
                &chosen.digest.to_string(),
                Some(&chosen.digest),
                options,
            )
            .await?;
            let manifest = match child.parse()? {
                Manifest::Image(m) => m,
                Manifest::Index(_) => {
                    return Err(RegistryError::Manifest {
                        digest: child.digest.clone(),
                        source: crate::manifest::ManifestError::UnsupportedMediaType(
                            "nested image index".to_string(),
                        ),
                    });
                }
            };
            (Some(child), manifest)
        }
    };
    let manifest_digest = child.as_ref().map_or(&top.digest, |c| &c.digest).clone();

    let _lease = store.lease()?;
    let results: Vec<(Digest, BlobOutcome, u64, u32)> =
        futures_util::stream::iter(blobs_of(&manifest))
            .map(|desc| {
                fetch_blob(
                    &client,
                    store.content(),
                    repo,
                    &scope,
                    desc,
                    options,
                    progress,
                )
            })
            .buffer_unordered(options.max_concurrent.max(1))
            .try_collect()
            .await?;

    for doc in child.iter().chain(std::iter::once(&top)) {
        store
            .content()
            .ingest(&doc.bytes[..], &doc.digest, Some(doc.bytes.len() as u64))
            .map_err(|source| RegistryError::Blob {
                digest: doc.digest.clone(),
                source,
            })?;
    }
    let previous = store.references()?.remove(&reference.to_string());
    store.tag(reference, &target)?;
    Ok(PullReport {
        reference: reference.clone(),
        updated: previous.as_ref() != Some(&target),
        target,
        manifest_digest,
        bytes_downloaded: results.iter().map(|r| r.2).sum(),
        retries: results.iter().map(|r| r.3).sum(),
        blobs: results.into_iter().map(|r| (r.0, r.1)).collect(),
    })
}

/// A WebAssembly module fetched from a registry.
#[derive(Debug, Clone)]
pub struct PulledModule {
    /// The digest of the manifest the reference named (the platform manifest, for an
    /// index).
    pub manifest_digest: Digest,
    /// The module layer's digest; the bytes were verified against it.
    pub layer_digest: Digest,
    /// The module.
    pub bytes: Vec<u8>,
    /// False when the layer was already in `cache` (only the manifest was fetched).
    pub downloaded: bool,
}

/// Fetches the WebAssembly module `reference` names: an OCI artifact whose layer is
/// `application/vnd.wasm.content.layer.v1+wasm` or `application/wasm` (an index is
/// resolved to its `wasip1/wasm` entry). The layer goes through `cache` (a content
/// store): one already there is not downloaded again, and a downloaded one is verified
/// against its digest and size before it is kept or returned. Manifests without a
/// module layer are refused with [`crate::ManifestError::NoWasmLayer`].
pub async fn pull_wasm_module(
    reference: &Reference,
    cache: &ContentStore,
    options: &PullOptions,
) -> Result<PulledModule, RegistryError> {
    let client = Client::connect(
        reference.registry(),
        &options.registry,
        options.credentials.clone(),
    )
    .await?;
    let repo = reference.repository();
    let scope = format!("repository:{repo}:pull");
    let wanted = match (reference.digest(), reference.tag_or_default()) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.to_string(),
        (None, None) => crate::reference::DEFAULT_TAG.to_string(),
    };
    let mut fetched =
        fetch_manifest(&client, repo, &scope, &wanted, reference.digest(), options).await?;
    let manifest = match fetched.parse()? {
        Manifest::Image(manifest) => manifest,
        Manifest::Index(index) => {
            let chosen = index
                .select(&crate::wasm::wasip1_platform())
                .map_err(|source| RegistryError::Manifest {
                    digest: fetched.digest.clone(),
                    source,
                })?
                .clone();
            fetched = fetch_manifest(
                &client,
                repo,
                &scope,
                &chosen.digest.to_string(),
                Some(&chosen.digest),
                options,
            )
            .await?;
            match fetched.parse()? {
                Manifest::Image(manifest) => manifest,
                Manifest::Index(_) => {
                    return Err(RegistryError::Manifest {
                        digest: fetched.digest.clone(),
                        source: crate::manifest::ManifestError::UnsupportedMediaType(
                            "nested image index".to_string(),
                        ),
                    });
                }
            }
        }
    };
    let layer = crate::wasm::module_layer(&manifest)
        .map_err(|source| RegistryError::Manifest {
            digest: fetched.digest.clone(),
            source,
        })?
        .clone();
    if layer.size > crate::wasm::MAX_MODULE_BYTES {
        return Err(client.protocol(format!(
            "module layer {} is {} bytes, more than the {} allowed",
            layer.digest,
            layer.size,
            crate::wasm::MAX_MODULE_BYTES
        )));
    }
    let (_, outcome, _, _) = fetch_blob(
        &client,
        cache,
        repo,
        &scope,
        &layer,
        options,
        &super::NoProgress,
    )
    .await?;
    let bytes = cache
        .read(&layer.digest)
        .map_err(|source| RegistryError::Blob {
            digest: layer.digest.clone(),
            source,
        })?;
    // The store verified the blob when it was written; a cached file could have been
    // changed since, so check again before handing it out.
    let actual = Digest::of(&bytes);
    let mismatch = if actual != layer.digest {
        Some(crate::store::StoreError::DigestMismatch {
            expected: layer.digest.clone(),
            actual,
        })
    } else if bytes.len() as u64 != layer.size {
        Some(crate::store::StoreError::SizeMismatch {
            digest: layer.digest.clone(),
            expected: layer.size,
            actual: bytes.len() as u64,
        })
    } else {
        None
    };
    if let Some(source) = mismatch {
        // Drop the bad copy so that the next pull downloads it afresh.
        let _ = cache.delete(&layer.digest);
        return Err(RegistryError::Blob {
            digest: layer.digest.clone(),
            source,
        });
    }
    Ok(PulledModule {
        manifest_digest: fetched.digest,
        layer_digest: layer.digest,
        bytes,
        downloaded: outcome == BlobOutcome::Downloaded,
    })
}

/// Config first, then layers, each once.
fn blobs_of(manifest: &ImageManifest) -> Vec<&Descriptor> {
    let mut out: Vec<&Descriptor> = Vec::new();
    for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
        if !out.iter().any(|d| d.digest == desc.digest) {
            out.push(desc);
        }
    }
    out
}

/// A manifest as fetched: its bytes, their digest, and the `Content-Type`.
struct Fetched {
    bytes: Vec<u8>,
    digest: Digest,
    content_type: Option<String>,
}

impl Fetched {
    fn parse(&self) -> Result<Manifest, RegistryError> {
        Manifest::parse(&self.bytes, self.content_type.as_deref()).map_err(|source| {
            RegistryError::Manifest {
                digest: self.digest.clone(),
                source,
            }
        })
    }
}

/// `GET /v2/<repo>/manifests/<tag or digest>`, verified against `pinned` and against
/// the registry's `Docker-Content-Digest`.
async fn fetch_manifest(
    client: &Client,
    repo: &str,
    scope: &str,
    wanted: &str,
    pinned: Option<&Digest>,
    options: &PullOptions,
) -> Result<Fetched, RegistryError> {
    let url = client.url(&format!("/v2/{repo}/manifests/{wanted}"))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_manifest_once(client, scope, &url).await {
            Err(err) if err.is_transient() && attempt < options.max_attempts => {
                tracing::warn!(%url, attempt, error = %err, "manifest fetch failed; retrying");
                tokio::time::sleep(options.backoff(attempt)).await;
            }
            Err(err) => return Err(err),
            Ok((bytes, content_type, announced)) => {
                let digest = Digest::of(&bytes);
                for expected in pinned.into_iter().chain(announced.as_ref()) {
                    if expected != &digest {
                        return Err(RegistryError::ManifestDigest {
                            expected: expected.clone(),
                            actual: digest,
                        });
                    }
                }
                return Ok(Fetched {
                    bytes,
                    digest,
                    content_type,
                });
            }
        }
    }
}

async fn fetch_manifest_once(
    client: &Client,
    scope: &str,
    url: &reqwest::Url,
) -> Result<(Vec<u8>, Option<String>, Option<Digest>), RegistryError> {
    let mut response = client
        .send(Some(scope), || {
            client
                .request(Method::GET, url.clone())
                .header(ACCEPT, accept_manifests())
        })
        .await?;
    if !response.status().is_success() {
        return Err(client.refused(response).await);
    }
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header(CONTENT_TYPE.as_str())
        .map(|t| t.split(';').next().unwrap_or_default().trim().to_string());
    // Registries that do not hash what they serve (or use another algorithm) are not
    // held to the header; a sha256 one must match.
    let announced = header("docker-content-digest").and_then(|d| d.parse::<Digest>().ok());
    if response
        .content_length()
        .is_some_and(|len| len > MAX_MANIFEST_BYTES as u64)
    {
        return Err(RegistryError::ManifestTooLarge {
            limit: MAX_MANIFEST_BYTES,
        });
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| client.interrupted(e))? {
        if bytes.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::ManifestTooLarge {
                limit: MAX_MANIFEST_BYTES,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, content_type, announced))
}

/// Downloads one blob unless it is stored; returns its outcome, the bytes moved and
/// the retries spent.
async fn fetch_blob(
    client: &Client,
    content: &ContentStore,
    repo: &str,
    scope: &str,
    desc: &Descriptor,
    options: &PullOptions,
    progress: &dyn Progress,
) -> Result<(Digest, BlobOutcome, u64, u32), RegistryError> {
    let digest = &desc.digest;
    if content.contains(digest) {
        progress.finished(digest, &BlobOutcome::AlreadyPresent);
        return Ok((digest.clone(), BlobOutcome::AlreadyPresent, 0, 0));
    }
    progress.started(digest, desc.size);
    let blob_error = |source| RegistryError::Blob {
        digest: digest.clone(),
        source,
    };
    // One writer for every attempt: a retry resumes where the last one stopped.
    let mut writer = content.writer(digest.hex()).map_err(blob_error)?;
    let mut moved = 0;
    let mut retries = 0;
    loop {
        let before = writer.size();
        let result = download(client, repo, scope, desc, &mut writer, progress).await;
        moved += writer.size().saturating_sub(before);
        match result {
            Ok(()) => break,
            Err(err) if err.is_transient() && retries + 1 < options.max_attempts => {
                retries += 1;
                tracing::warn!(%digest, offset = writer.size(), attempt = retries, error = %err, "blob download failed; resuming");
                progress.retrying(digest, retries, &err);
                tokio::time::sleep(options.backoff(retries)).await;
            }
            Err(err) => return Err(err),
        }
    }
    writer
        .commit(Some((digest, Some(desc.size))))
        .map_err(blob_error)?;
    progress.finished(digest, &BlobOutcome::Downloaded);
    Ok((digest.clone(), BlobOutcome::Downloaded, moved, retries))
}

/// One attempt: `GET` the blob from `writer.size()` on (a `Range` request when
/// resuming; a server that sends the whole blob again restarts the writer).
async fn download(
    client: &Client,
    repo: &str,
    scope: &str,
    desc: &Descriptor,
    writer: &mut BlobWriter<'_>,
    progress: &dyn Progress,
) -> Result<(), RegistryError> {
    let digest = &desc.digest;
    let blob_error = |source| RegistryError::Blob {
        digest: digest.clone(),
        source,
    };
    let url = client.url(&format!("/v2/{repo}/blobs/{digest}"))?;
    let offset = writer.size();
    if offset == desc.size && offset > 0 {
        return Ok(());
    }
    let mut response = client
        .send(Some(scope), || {
            let request = client.request(Method::GET, url.clone());
            if offset > 0 {
                request.header(RANGE, format!("bytes={offset}-"))
            } else {
                request
            }
        })
        .await?;
    match response.status() {
        StatusCode::OK => {
            if offset > 0 {
                writer.reset().map_err(blob_error)?;
            }
        }
        StatusCode::PARTIAL_CONTENT if offset > 0 => {
            let start = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split('-').next())
                .and_then(|v| v.parse::<u64>().ok());
            if start.is_some_and(|s| s != offset) {
                writer.reset().map_err(blob_error)?;
                return Err(client.protocol(format!(
                    "blob {digest}: asked for bytes from {offset}, got a range from {}",
                    start.unwrap_or_default()
                )));
            }
        }
        _ => return Err(client.refused(response).await),
    }
    while let Some(chunk) = response.chunk().await.map_err(|e| client.interrupted(e))? {
        if writer.size() + chunk.len() as u64 > desc.size {
            return Err(blob_error(crate::store::StoreError::TooLong {
                digest: digest.clone(),
                expected: desc.size,
            }));
        }
        writer.append(&chunk).map_err(blob_error)?;
        progress.advanced(digest, writer.size());
    }
    Ok(())
}
