//! `push`: blobs the registry lacks are uploaded (in one request, or in chunks above
//! a threshold) or mounted from another repository of the same registry, then the
//! manifest is put; an index's manifests go before the index.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode, Url};

use super::client::{Client, RegistryOptions};
use super::progress::{BlobOutcome, Progress};
use super::{Credentials, RegistryError};
use crate::digest::Digest;
use crate::images::{ImageStore, RefTarget};
use crate::manifest::{Descriptor, ImageManifest, Manifest, Platform};
use crate::reference::Reference;
use crate::store::ContentStore;
use crate::wasm::Artifact;

/// Blobs up to this size go up in one request; larger ones in chunks of this size.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 * 1024 * 1024;

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// How to reach the registry.
    pub registry: RegistryOptions,
    /// Credentials for the registry, if any.
    pub credentials: Option<Credentials>,
    /// Monolithic upload up to this size, chunked (`PATCH`es of this size) above it.
    pub chunk_size: u64,
    /// Blobs uploaded at the same time.
    pub max_concurrent: usize,
    /// Attempts per blob before giving up on transient failures.
    pub max_attempts: u32,
    /// The pause after the first failed attempt; it doubles after each.
    pub initial_backoff: Duration,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            registry: RegistryOptions::default(),
            credentials: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_concurrent: 3,
            max_attempts: 3,
            initial_backoff: Duration::from_millis(250),
        }
    }
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushReport {
    /// Where the image went.
    pub reference: Reference,
    /// What the remote reference names now. For a local index whose other platforms
    /// were never pulled, this is the host platform's manifest alone.
    pub target: RefTarget,
    /// Each blob and what became of it.
    pub blobs: Vec<(Digest, BlobOutcome)>,
    /// Blob bytes sent.
    pub bytes_uploaded: u64,
}

/// Pushes the image `target` (a manifest or index in `store`) to `remote`. Blobs are
/// mounted from the image's other references on the same registry when the registry
/// has them there.
pub async fn push(
    store: &ImageStore,
    target: &RefTarget,
    remote: &Reference,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushReport, RegistryError> {
    let client = Client::connect(
        remote.registry(),
        &options.registry,
        options.credentials.clone(),
    )
    .await?;
    let mut mount_from: Vec<String> = Vec::new();
    for (name, t) in store.references()? {
        let Ok(other) = name.parse::<Reference>() else {
            continue;
        };
        if t.digest == target.digest
            && other.registry() == remote.registry()
            && other.repository() != remote.repository()
            && !mount_from.iter().any(|r| r == other.repository())
        {
            mount_from.push(other.repository().to_string());
        }
    }
    let pusher = Pusher {
        client: &client,
        blobs: Blobs::Store(store.content()),
        repo: remote.repository(),
        scope: format!("repository:{}:pull,push", remote.repository()),
        mount_from,
        options,
        progress,
    };
    let tag = manifest_reference(remote);

    let bytes = store.content().read(&target.digest)?;
    let parsed = Manifest::parse(&bytes, Some(&target.media_type)).map_err(|source| {
        RegistryError::Manifest {
            digest: target.digest.clone(),
            source,
        }
    })?;
    let mut report = PushReport {
        reference: remote.clone(),
        target: target.clone(),
        blobs: Vec::new(),
        bytes_uploaded: 0,
    };
    match parsed {
        Manifest::Image(manifest) => {
            pusher.image(&manifest, &mut report).await?;
            pusher.manifest(&tag, &bytes, target).await?;
        }
        Manifest::Index(index) => {
            let complete = index
                .manifests
                .iter()
                .all(|d| store.content().contains(&d.digest));
            let children: Vec<&Descriptor> =
                if complete {
                    index.manifests.iter().collect()
                } else {
                    // A pull stores only the chosen platform: push that one, as Docker does.
                    vec![index.select(&Platform::host()).map_err(|source| {
                        RegistryError::Manifest {
                            digest: target.digest.clone(),
                            source,
                        }
                    })?]
                };
            for child in &children {
                let child_bytes = store.content().read(&child.digest)?;
                let manifest = match Manifest::parse(&child_bytes, Some(&child.media_type)) {
                    Ok(Manifest::Image(m)) => m,
                    Ok(Manifest::Index(_)) => {
                        return Err(RegistryError::Manifest {
                            digest: child.digest.clone(),
                            source: crate::manifest::ManifestError::UnsupportedMediaType(
                                "nested image index".to_string(),
                            ),
                        });
                    }
                    Err(source) => {
                        return Err(RegistryError::Manifest {
                            digest: child.digest.clone(),
                            source,
                        });
                    }
                };
                pusher.image(&manifest, &mut report).await?;
                let child_target = RefTarget::from(*child);
                if complete {
                    pusher
                        .manifest(&child.digest.to_string(), &child_bytes, &child_target)
                        .await?;
                } else {
                    pusher.manifest(&tag, &child_bytes, &child_target).await?;
                    report.target = child_target;
                }
            }
            if complete {
                pusher.manifest(&tag, &bytes, target).await?;
            }
        }
    }
    Ok(report)
}

/// Where the blobs to push are read from.
#[derive(Clone, Copy)]
enum Blobs<'a> {
    /// The image store's content.
    Store(&'a ContentStore),
    /// An artifact built in memory.
    Memory(&'a Artifact),
}

impl<'a> Blobs<'a> {
    /// The file a blob is read from (for messages; in-memory blobs have none).
    fn path(&self, digest: &Digest) -> PathBuf {
        match self {
            Blobs::Store(content) => content.path(digest),
            Blobs::Memory(_) => PathBuf::from("(memory)"),
        }
    }

    fn open(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send + 'a>> {
        match *self {
            Blobs::Store(content) => Ok(Box::new(std::fs::File::open(content.path(digest))?)),
            Blobs::Memory(artifact) => match artifact.blob(digest) {
                Some(blob) => Ok(Box::new(&blob.bytes[..])),
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "not part of the artifact",
                )),
            },
        }
    }
}

/// What the manifest is put under: the tag, else the digest, else `latest`.
fn manifest_reference(remote: &Reference) -> String {
    match (remote.tag(), remote.digest()) {
        (Some(tag), _) => tag.to_string(),
        (None, Some(digest)) => digest.to_string(),
        (None, None) => crate::reference::DEFAULT_TAG.to_string(),
    }
}

/// Pushes an artifact built in memory (config, layers and manifest; see
/// [`crate::wasm::Artifact`]) to `remote`, blobs first. Blobs the repository already
/// has are not sent again.
pub async fn push_artifact(
    artifact: &Artifact,
    remote: &Reference,
    options: &PushOptions,
    progress: &dyn Progress,
) -> Result<PushReport, RegistryError> {
    let client = Client::connect(
        remote.registry(),
        &options.registry,
        options.credentials.clone(),
    )
    .await?;
    let pusher = Pusher {
        client: &client,
        blobs: Blobs::Memory(artifact),
        repo: remote.repository(),
        scope: format!("repository:{}:pull,push", remote.repository()),
        mount_from: Vec::new(),
        options,
        progress,
    };
    let target = RefTarget::from(&artifact.manifest.descriptor);
    let mut report = PushReport {
        reference: remote.clone(),
        target: target.clone(),
        blobs: Vec::new(),
        bytes_uploaded: 0,
    };
    let manifest = match Manifest::parse(&artifact.manifest.bytes, Some(&target.media_type)) {
        Ok(Manifest::Image(manifest)) => manifest,
        Ok(Manifest::Index(_)) => {
            return Err(RegistryError::Manifest {
                digest: target.digest.clone(),
                source: crate::manifest::ManifestError::UnsupportedMediaType(
                    "an index, not an artifact manifest".to_string(),
                ),
            });
        }
        Err(source) => {
            return Err(RegistryError::Manifest {
                digest: target.digest.clone(),
                source,
            });
        }
    };
    pusher.image(&manifest, &mut report).await?;
    pusher
        .manifest(
            &manifest_reference(remote),
            &artifact.manifest.bytes,
            &target,
        )
        .await?;
    Ok(report)
}

struct Pusher<'a> {
    client: &'a Client,
    blobs: Blobs<'a>,
    repo: &'a str,
    scope: String,
    mount_from: Vec<String>,
    options: &'a PushOptions,
    progress: &'a dyn Progress,
}

impl Pusher<'_> {
    /// Every blob of one image manifest.
    async fn image(
        &self,
        manifest: &ImageManifest,
        report: &mut PushReport,
    ) -> Result<(), RegistryError> {
        let mut blobs: Vec<&Descriptor> = Vec::new();
        for desc in std::iter::once(&manifest.config).chain(&manifest.layers) {
            // Foreign (non-distributable) layers are fetched from their URLs by
            // whoever pulls; registries do not take them.
            let foreign = !desc.urls.is_empty()
                && (desc.media_type.contains("foreign")
                    || desc.media_type.contains("nondistributable"));
            if !foreign
                && !blobs.iter().any(|d| d.digest == desc.digest)
                && !report.blobs.iter().any(|(d, _)| d == &desc.digest)
            {
                blobs.push(desc);
            }
        }
        let done: Vec<(Digest, BlobOutcome, u64)> = futures_util::stream::iter(blobs)
            .map(|desc| self.blob_with_retries(desc))
            .buffer_unordered(self.options.max_concurrent.max(1))
            .try_collect()
            .await?;
        for (digest, outcome, sent) in done {
            report.bytes_uploaded += sent;
            report.blobs.push((digest, outcome));
        }
        Ok(())
    }

    async fn blob_with_retries(
        &self,
        desc: &Descriptor,
    ) -> Result<(Digest, BlobOutcome, u64), RegistryError> {
        self.progress.started(&desc.digest, desc.size);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.blob(desc).await {
                Ok((outcome, sent)) => {
                    self.progress.finished(&desc.digest, &outcome);
                    return Ok((desc.digest.clone(), outcome, sent));
                }
                Err(err) if err.is_transient() && attempt < self.options.max_attempts => {
                    tracing::warn!(digest = %desc.digest, attempt, error = %err, "blob upload failed; retrying");
                    self.progress.retrying(&desc.digest, attempt, &err);
                    let pause = self
                        .options
                        .initial_backoff
                        .saturating_mul(2u32.saturating_pow(attempt - 1));
                    tokio::time::sleep(pause).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn blob_url(&self, path: &str) -> Result<Url, RegistryError> {
        self.client.url(&format!("/v2/{}/blobs/{path}", self.repo))
    }

    /// One attempt at one blob: HEAD, mount, or upload.
    async fn blob(&self, desc: &Descriptor) -> Result<(BlobOutcome, u64), RegistryError> {
        let client = self.client;
        let digest = &desc.digest;
        let url = self.blob_url(&digest.to_string())?;
        let head = client
            .send(Some(&self.scope), || {
                client.request(Method::HEAD, url.clone())
            })
            .await?;
        match head.status() {
            StatusCode::OK => return Ok((BlobOutcome::AlreadyExists, 0)),
            StatusCode::NOT_FOUND => {}
            _ => return Err(client.refused(head).await),
        }

        let mut location = None;
        for from in &self.mount_from {
            let mut url = self.blob_url("uploads/")?;
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from);
            let scope = format!("{} repository:{from}:pull", self.scope);
            let response = client
                .send(Some(&scope), || {
                    client
                        .request(Method::POST, url.clone())
                        .header(CONTENT_LENGTH, 0)
                })
                .await?;
            match response.status() {
                StatusCode::CREATED => {
                    return Ok((BlobOutcome::Mounted { from: from.clone() }, 0));
                }
                // The registry started an ordinary upload instead: keep the last one
                // for the upload, cancel the others before asking the next repository.
                StatusCode::ACCEPTED => {
                    let started = self.location(&response)?;
                    if let Some(abandoned) = location.replace(started) {
                        self.cancel_upload(abandoned).await;
                    }
                }
                _ => return Err(client.refused(response).await),
            }
        }
        let mut location = match location {
            Some(location) => location,
            None => {
                let url = self.blob_url("uploads/")?;
                let response = client
                    .send(Some(&self.scope), || {
                        client
                            .request(Method::POST, url.clone())
                            .header(CONTENT_LENGTH, 0)
                    })
                    .await?;
                if response.status() != StatusCode::ACCEPTED {
                    return Err(client.refused(response).await);
                }
                self.location(&response)?
            }
        };

        let path = self.blobs.path(digest);
        let read_error = |source| RegistryError::ReadBlob {
            digest: digest.clone(),
            path: path.clone(),
            source,
        };
        let mut file = self.blobs.open(digest).map_err(read_error)?;
        let chunk_size = self.options.chunk_size.max(1);
        let (body, outcome) = if desc.size <= chunk_size {
            let mut bytes = Vec::with_capacity(desc.size as usize);
            file.read_to_end(&mut bytes).map_err(read_error)?;
            (bytes, BlobOutcome::Uploaded)
        } else {
            let mut sent = 0u64;
            let mut chunks = 0;
            loop {
                let mut chunk = Vec::with_capacity(chunk_size as usize);
                (&mut file)
                    .take(chunk_size)
                    .read_to_end(&mut chunk)
                    .map_err(read_error)?;
                if chunk.is_empty() {
                    break;
                }
                let end = sent + chunk.len() as u64 - 1;
                let url = location.clone();
                let response = client
                    .send(Some(&self.scope), || {
                        client
                            .request(Method::PATCH, url.clone())
                            .header(CONTENT_TYPE, "application/octet-stream")
                            .header(CONTENT_RANGE, format!("{sent}-{end}"))
                            .body(chunk.clone())
                    })
                    .await?;
                if response.status() != StatusCode::ACCEPTED {
                    return Err(client.refused(response).await);
                }
                location = self.location(&response)?;
                sent = end + 1;
                chunks += 1;
                self.progress.advanced(digest, sent);
            }
            (Vec::new(), BlobOutcome::UploadedInChunks(chunks))
        };
        location
            .query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let response = client
            .send(Some(&self.scope), || {
                client
                    .request(Method::PUT, location.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(client.refused(response).await);
        }
        self.progress.advanced(digest, desc.size);
        Ok((outcome, desc.size))
    }

    /// Cancels an upload session (best effort: the registry expires it anyway).
    async fn cancel_upload(&self, location: Url) {
        let client = self.client;
        let result = client
            .send(Some(&self.scope), || {
                client.request(Method::DELETE, location.clone())
            })
            .await;
        if let Err(err) = result {
            tracing::debug!(error = %err, "cannot cancel an upload session");
        }
    }

    /// The upload URL a response points to (relative `Location`s resolve against it).
    fn location(&self, response: &Response) -> Result<Url, RegistryError> {
        let value = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| self.client.protocol("upload response without a Location"))?;
        response.url().join(value).map_err(|e| {
            self.client
                .protocol(format!("bad upload Location {value:?}: {e}"))
        })
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the document's media type.
    async fn manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        target: &RefTarget,
    ) -> Result<(), RegistryError> {
        let client = self.client;
        let url = client.url(&format!("/v2/{}/manifests/{reference}", self.repo))?;
        let response = client
            .send(Some(&self.scope), || {
                client
                    .request(Method::PUT, url.clone())
                    .header(CONTENT_TYPE, target.media_type.as_str())
                    .body(bytes.to_vec())
            })
            .await?;
        if response.status() != StatusCode::CREATED {
            return Err(client.refused(response).await);
        }
        let announced = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        if let Some(announced) = announced
            && announced != target.digest
        {
            return Err(RegistryError::ManifestDigest {
                expected: target.digest.clone(),
                actual: announced,
            });
        }
        Ok(())
    }
}
