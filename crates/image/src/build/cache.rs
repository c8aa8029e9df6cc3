//! The build layer cache: `build-cache/<key>.json` under the images root says which
//! layer (or none) a step with that key produced. An entry whose layer blob has been
//! garbage-collected is a miss.

use serde::{Deserialize, Serialize};

use super::BuildError;
use crate::digest::Digest;
use crate::images::ImageStore;
use crate::manifest::Descriptor;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    layer: Option<Descriptor>,
    diff_id: Option<Digest>,
}

fn path(store: &ImageStore, key: &Digest) -> std::path::PathBuf {
    store
        .root()
        .join("build-cache")
        .join(format!("{}.json", key.hex()))
}

/// The layer a step with `key` produced before (`Some(None)` for a step that changed
/// nothing), if it is still available.
pub(super) fn lookup(store: &ImageStore, key: &Digest) -> Option<Option<(Descriptor, Digest)>> {
    let bytes = std::fs::read(path(store, key)).ok()?;
    let entry: Entry = serde_json::from_slice(&bytes).ok()?;
    match (entry.layer, entry.diff_id) {
        (Some(layer), Some(diff_id)) if store.content().contains(&layer.digest) => {
            Some(Some((layer, diff_id)))
        }
        (None, None) => Some(None),
        _ => None,
    }
}

/// Records what the step with `key` produced.
pub(super) fn store(
    store: &ImageStore,
    key: &Digest,
    layer: &Option<(Descriptor, Digest)>,
) -> Result<(), BuildError> {
    let target = path(store, key);
    let io = |source| BuildError::Io {
        what: format!("cannot write the build cache entry {}", target.display()),
        source,
    };
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let entry = Entry {
        layer: layer.as_ref().map(|(d, _)| d.clone()),
        diff_id: layer.as_ref().map(|(_, id)| id.clone()),
    };
    let tmp = target.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, serde_json::to_vec(&entry).unwrap_or_default()).map_err(io)?;
    std::fs::rename(&tmp, &target).map_err(io)
}
