//! WebAssembly modules as OCI artifacts, in the layout of the CNCF TAG Runtime "Wasm OCI
//! Artifact" specification: an OCI image manifest whose config is
//! `application/vnd.wasm.config.v0+json` and whose one layer is the module
//! (`application/vnd.wasm.content.layer.v1+wasm`). Building the documents and choosing
//! the module layer of a fetched manifest are pure; [`crate::registry`] moves them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::manifest::{Descriptor, ImageManifest, ManifestError, Platform, media_type};

/// The config media type of a Wasm OCI artifact.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type of a module (or component) in a Wasm OCI artifact.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// The generic wasm media type some tools (e.g. `oras push file.wasm:application/wasm`)
/// give the module layer; accepted when reading.
pub const GENERIC_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// Layer media types read as the module, preferred first.
pub const MODULE_LAYER_MEDIA_TYPES: [&str; 2] = [LAYER_MEDIA_TYPE, GENERIC_LAYER_MEDIA_TYPE];
/// Modules larger than this are refused when pulling (a registry cannot make us hold
/// more in memory).
pub const MAX_MODULE_BYTES: u64 = 256 * 1024 * 1024;

/// The artifact's config document (`application/vnd.wasm.config.v0+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// When the artifact was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: String,
    /// The WASI version the module targets: `wasip1` (preview 1) or `wasip2`.
    pub os: String,
    /// The digests of the artifact's layers, in order.
    #[serde(default)]
    pub layer_digests: Vec<Digest>,
}

/// The platform an index lists a wasip1 artifact under.
pub fn wasip1_platform() -> Platform {
    Platform {
        architecture: "wasm".to_string(),
        os: "wasip1".to_string(),
        variant: None,
        os_version: None,
    }
}

/// A document ready to push: its media type and bytes, with a descriptor of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// Media type, digest and size of [`Blob::bytes`].
    pub descriptor: Descriptor,
    /// The content.
    pub bytes: Vec<u8>,
}

impl Blob {
    /// `bytes` as content of `media_type`.
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Self {
        Self {
            descriptor: Descriptor::of(media_type, &bytes),
            bytes,
        }
    }
}

/// An artifact ready to push: an OCI image manifest, its config and its layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The manifest (`application/vnd.oci.image.manifest.v1+json`).
    pub manifest: Blob,
    /// The config, then the layers.
    pub blobs: Vec<Blob>,
}

impl Artifact {
    /// An artifact of `config` and `layers`, with manifest `annotations`.
    pub fn new(config: Blob, layers: Vec<Blob>, annotations: BTreeMap<String, String>) -> Self {
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            config: config.descriptor.clone(),
            layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
            annotations,
        };
        // Serializing plain strings, numbers and maps cannot fail.
        let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
        let mut blobs = vec![config];
        blobs.extend(layers);
        Self {
            manifest: Blob::new(media_type::OCI_MANIFEST, bytes),
            blobs,
        }
    }

    /// The Wasm OCI artifact of one WASI preview 1 `module` (binary WebAssembly), made
    /// at `created` (RFC 3339).
    pub fn wasm_module(module: Vec<u8>, created: &str) -> Self {
        let layer = Blob::new(LAYER_MEDIA_TYPE, module);
        let config = WasmConfig {
            created: Some(created.to_string()),
            author: None,
            architecture: "wasm".to_string(),
            os: "wasip1".to_string(),
            layer_digests: vec![layer.descriptor.digest.clone()],
        };
        let config = Blob::new(
            CONFIG_MEDIA_TYPE,
            serde_json::to_vec(&config).unwrap_or_default(),
        );
        let annotations = BTreeMap::from([(
            "org.opencontainers.image.created".to_string(),
            created.to_string(),
        )]);
        Self::new(config, vec![layer], annotations)
    }

    /// The in-memory blob `digest`, if it is one of this artifact's.
    pub fn blob(&self, digest: &Digest) -> Option<&Blob> {
        self.blobs.iter().find(|b| &b.descriptor.digest == digest)
    }
}

/// The layer of `manifest` that holds the module: the first whose media type is one of
/// [`MODULE_LAYER_MEDIA_TYPES`] (the Wasm OCI one preferred). Manifests without one
/// (container images, other artifacts) are refused, naming what they hold.
pub fn module_layer(manifest: &ImageManifest) -> Result<&Descriptor, ManifestError> {
    MODULE_LAYER_MEDIA_TYPES
        .iter()
        .find_map(|wanted| manifest.layers.iter().find(|l| l.media_type == *wanted))
        .ok_or_else(|| {
            let found: Vec<&str> = manifest
                .layers
                .iter()
                .map(|l| l.media_type.as_str())
                .collect();
            ManifestError::NoWasmLayer(if found.is_empty() {
                "no layers".to_string()
            } else {
                found.join(", ")
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn a_module_artifact_follows_the_wasm_oci_layout() {
        let artifact = Artifact::wasm_module(MODULE.to_vec(), "2024-05-01T12:00:00Z");
        assert_eq!(
            artifact.manifest.descriptor.media_type,
            media_type::OCI_MANIFEST
        );
        let json: serde_json::Value = serde_json::from_slice(&artifact.manifest.bytes).unwrap();
        assert_eq!(json["schemaVersion"], 2);
        assert_eq!(json["mediaType"], media_type::OCI_MANIFEST);
        assert_eq!(json["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(json["layers"].as_array().unwrap().len(), 1);
        assert_eq!(json["layers"][0]["mediaType"], LAYER_MEDIA_TYPE);
        assert_eq!(json["layers"][0]["size"], MODULE.len());
        let layer_digest = Digest::of(MODULE).to_string();
        assert_eq!(json["layers"][0]["digest"], layer_digest.as_str());

        let config_digest: Digest = json["config"]["digest"].as_str().unwrap().parse().unwrap();
        let config = artifact.blob(&config_digest).unwrap();
        assert_eq!(Digest::of(&config.bytes), config_digest);
        let config: serde_json::Value = serde_json::from_slice(&config.bytes).unwrap();
        assert_eq!(
            config,
            serde_json::json!({
                "created": "2024-05-01T12:00:00Z",
                "architecture": "wasm",
                "os": "wasip1",
                "layerDigests": [layer_digest],
            })
        );
        assert_eq!(artifact.blob(&Digest::of(MODULE)).unwrap().bytes, MODULE);
        assert_eq!(
            artifact.manifest.descriptor.digest,
            Digest::of(&artifact.manifest.bytes)
        );

        // What we write, we read back (and find the module in).
        let Manifest::Image(parsed) = Manifest::parse(&artifact.manifest.bytes, None).unwrap()
        else {
            panic!("an image manifest");
        };
        assert_eq!(module_layer(&parsed).unwrap().digest, Digest::of(MODULE));
    }

    fn manifest_with(layers: &[&str]) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            config: Descriptor::of(CONFIG_MEDIA_TYPE, b"{}"),
            layers: layers
                .iter()
                .enumerate()
                .map(|(i, t)| Descriptor::of(t, &[i as u8]))
                .collect(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn the_module_layer_is_the_wasm_one_and_other_manifests_are_refused() {
        let generic = manifest_with(&["text/plain", GENERIC_LAYER_MEDIA_TYPE]);
        assert_eq!(
            module_layer(&generic).unwrap().media_type,
            GENERIC_LAYER_MEDIA_TYPE
        );
        // The Wasm OCI type wins over the generic one, wherever it is.
        let both = manifest_with(&[GENERIC_LAYER_MEDIA_TYPE, LAYER_MEDIA_TYPE]);
        let chosen = module_layer(&both).unwrap();
        assert_eq!(chosen.media_type, LAYER_MEDIA_TYPE);
        assert_eq!(chosen.digest, Digest::of(&[1]));

        let image = manifest_with(&[media_type::OCI_LAYER_GZIP, media_type::OCI_LAYER_GZIP]);
        let refused = module_layer(&image).unwrap_err().to_string();
        assert!(refused.contains(LAYER_MEDIA_TYPE), "{refused}");
        assert!(
            refused.contains("application/vnd.oci.image.layer.v1.tar+gzip"),
            "{refused}"
        );
        let empty = module_layer(&manifest_with(&[])).unwrap_err().to_string();
        assert!(empty.contains("no layers"), "{empty}");
    }
}
