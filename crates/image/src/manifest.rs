//! Image manifests and indexes: OCI image-spec v1 and Docker v2 schema 2, parsed
//! tolerantly into one shape, and platform selection from an index.
//!
//! Manifests are stored and pushed as the exact bytes they arrived as (their digest is
//! over those bytes); these types are for reading them and for writing new ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// Media types this crate reads or writes.
pub mod media_type {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI layer, uncompressed tar.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI layer, gzip.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI layer, zstd.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Docker v2 schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker layer (gzip).
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker foreign layer (never pushed; pulled from elsewhere).
    pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

    /// Every media type that names a single-image manifest.
    pub const MANIFESTS: [&str; 2] = [OCI_MANIFEST, DOCKER_MANIFEST];
    /// Every media type that names an index of manifests.
    pub const INDEXES: [&str; 2] = [OCI_INDEX, DOCKER_MANIFEST_LIST];
}

/// Why a manifest could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON of the expected shape.
    #[error("malformed {what}")]
    Malformed {
        /// What was being parsed (manifest, index, image config).
        what: &'static str,
        /// The JSON error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// A media type this crate cannot handle.
    #[error("unsupported manifest media type {0:?}")]
    UnsupportedMediaType(String),
    /// Schema version other than 2.
    #[error("unsupported manifest schemaVersion {0} (only 2 is supported)")]
    UnsupportedSchema(u32),
    /// A manifest fetched as a WebAssembly module has no module layer; the text lists
    /// the layer media types it does have.
    #[error(
        "not a WebAssembly module artifact: no layer of type application/vnd.wasm.content.layer.v1+wasm or application/wasm (it has {0})"
    )]
    NoWasmLayer(String),
    /// The index has no entry for the wanted platform.
    #[error("no manifest for platform {wanted} in the index (it has: {available})")]
    NoMatchingPlatform {
        /// The platform asked for.
        wanted: String,
        /// The platforms listed.
        available: String,
    },
}

/// A reference to content: media type, digest and size (OCI "descriptor").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The platform of a manifest listed in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Where to fetch a non-distributable layer from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

impl Descriptor {
    /// A descriptor for `bytes` of `media_type`.
    pub fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_string(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
            urls: Vec::new(),
        }
    }
}

/// An operating system and CPU architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in Go's spelling (`amd64`, `arm64`, …).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// CPU variant (`v8` for arm64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows only).
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// The platform of this machine, in Go's spelling.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            architecture: architecture.to_string(),
            os: "linux".to_string(),
            variant: None,
            os_version: None,
        }
    }

    fn matches(&self, listed: &Platform) -> bool {
        if self.os != listed.os || self.architecture != listed.architecture {
            return false;
        }
        match (&self.variant, &listed.variant) {
            (Some(wanted), Some(have)) => wanted == have,
            _ => true,
        }
    }
}

/// Why a string is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform {0:?} is not OS/ARCH[/VARIANT] (e.g. linux/amd64, linux/arm64/v8)")]
pub struct PlatformError(String);

impl std::str::FromStr for Platform {
    type Err = PlatformError;

    /// Parses `os/arch[/variant]` (Docker's `--platform`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = text.split('/').collect();
        let valid =
            |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch, rest @ ..] if rest.len() <= 1 && parts.iter().all(valid) => Ok(Self {
                architecture: arch.to_string(),
                os: os.to_string(),
                variant: rest.first().map(|v| v.to_string()),
                os_version: None,
            }),
            _ => Err(PlatformError(text.to_string())),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// A single-image manifest (OCI or Docker schema 2): config plus ordered layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type (optional in OCI, required by Docker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image configuration blob.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An index of manifests (OCI image index or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The listed manifests.
    pub manifests: Vec<Descriptor>,
    /// Free-form metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    /// The manifest for `platform`. Attestation manifests (platform `unknown/unknown`)
    /// never match.
    pub fn select(&self, platform: &Platform) -> Result<&Descriptor, ManifestError> {
        self.manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
            .ok_or_else(|| ManifestError::NoMatchingPlatform {
                wanted: platform.to_string(),
                available: self
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// What a manifest blob turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// One image.
    Image(ImageManifest),
    /// Several, one per platform.
    Index(ImageIndex),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

impl Manifest {
    /// Parses a manifest or index. `content_type` is what the registry (or the
    /// descriptor pointing here) said; the document's own `mediaType` wins when present,
    /// and an OCI document without either is told apart by its `manifests` field.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Malformed {
                what: "manifest",
                source,
            })?;
        if probe.schema_version != 2 {
            return Err(ManifestError::UnsupportedSchema(probe.schema_version));
        }
        let media_type = probe
            .media_type
            .as_deref()
            .or(content_type.filter(|t| !t.is_empty() && *t != "application/json"));
        let is_index = match media_type {
            Some(t) if media_type::INDEXES.contains(&t) => true,
            Some(t) if media_type::MANIFESTS.contains(&t) => false,
            Some(t) => return Err(ManifestError::UnsupportedMediaType(t.to_string())),
            None => probe.manifests.is_some(),
        };
        if is_index {
            serde_json::from_slice(bytes)
                .map(Manifest::Index)
                .map_err(|source| ManifestError::Malformed {
                    what: "image index",
                    source,
                })
        } else {
            serde_json::from_slice(bytes)
                .map(Manifest::Image)
                .map_err(|source| ManifestError::Malformed {
                    what: "image manifest",
                    source,
                })
        }
    }

    /// The media type to store and serve this document under.
    pub fn media_type(&self) -> &str {
        match self {
            Manifest::Image(m) => m.media_type.as_deref().unwrap_or(media_type::OCI_MANIFEST),
            Manifest::Index(i) => i.media_type.as_deref().unwrap_or(media_type::OCI_INDEX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKER: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
      "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1469,
        "digest": "sha256:9c7a54a9a43cca047013b82af109fe963fde787f63f9e016fdc3384500c2823d"},
      "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 2814559,
        "digest": "sha256:7264a8db6415046d36d16ba98b79778e18accee6ffa71850405994cffa9be7de"}]
    }"#;

    const INDEX: &str = r#"{
      "schemaVersion": 2,
      "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10,
         "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
         "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 11,
         "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 12,
         "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
         "platform": {"architecture": "unknown", "os": "unknown"}}
      ]
    }"#;

    #[test]
    fn docker_manifest_parses_with_its_layers() {
        let Manifest::Image(m) = Manifest::parse(DOCKER.as_bytes(), None).unwrap() else {
            panic!("expected an image manifest");
        };
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.config.size, 1469);
        assert_eq!(
            crate::unpack::Compression::from_media_type(&m.layers[0].media_type).ok(),
            Some(crate::unpack::Compression::Gzip)
        );
    }

    #[test]
    fn oci_index_without_media_type_is_told_apart_by_its_manifests() {
        let Manifest::Index(index) = Manifest::parse(INDEX.as_bytes(), None).unwrap() else {
            panic!("expected an index");
        };
        let amd64 = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
            os_version: None,
        };
        assert_eq!(index.select(&amd64).unwrap().size, 11);
        let arm = Platform {
            architecture: "arm64".into(),
            variant: Some("v8".into()),
            ..amd64.clone()
        };
        assert_eq!(index.select(&arm).unwrap().size, 10);
        let s390 = Platform {
            architecture: "s390x".into(),
            ..amd64
        };
        let err = index.select(&s390).unwrap_err().to_string();
        assert!(err.contains("linux/s390x"), "{err}");
        assert!(err.contains("linux/arm64/v8, linux/amd64"), "{err}");
    }

    #[test]
    fn platforms_parse_from_docker_spelling() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(
            "linux/amd64".parse::<Platform>().unwrap(),
            Platform::host_like("amd64")
        );
        for bad in [
            "linux",
            "linux/",
            "/amd64",
            "linux/arm64/v8/x",
            "linux/am d64",
        ] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    impl Platform {
        fn host_like(arch: &str) -> Self {
            Self {
                architecture: arch.into(),
                os: "linux".into(),
                variant: None,
                os_version: None,
            }
        }
    }

    #[test]
    fn unsupported_and_malformed_documents_are_refused() {
        let v1 = r#"{"schemaVersion": 1, "name": "x"}"#;
        assert!(matches!(
            Manifest::parse(v1.as_bytes(), None),
            Err(ManifestError::UnsupportedSchema(1))
        ));
        let odd = r#"{"schemaVersion": 2, "mediaType": "text/plain"}"#;
        assert!(matches!(
            Manifest::parse(odd.as_bytes(), None),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        let bad_digest = DOCKER.replace("sha256:9c7a", "sha256:zz7a");
        assert!(Manifest::parse(bad_digest.as_bytes(), None).is_err());
    }

    #[test]
    fn content_type_decides_when_the_document_is_silent() {
        let oci = r#"{"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
          "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111", "size": 2},
          "layers": []}"#;
        let parsed = Manifest::parse(oci.as_bytes(), Some(media_type::OCI_MANIFEST)).unwrap();
        assert_eq!(parsed.media_type(), media_type::OCI_MANIFEST);
    }
}
