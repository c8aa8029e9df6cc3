//! Making images from what is on this machine: `import-rootfs` packs a directory into
//! a one-layer image, with Dockerfile-style `--change` instructions for its config.

use std::path::{Path, PathBuf};

use crate::config::{History, ImageConfig};
use crate::containerfile::{self, ContainerfileError};
use crate::images::{Image, ImageError, ImageStore};
use crate::pack::{PackError, pack_directory};
use crate::reference::Reference;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source directory is not usable.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// A `--change` instruction is invalid.
    #[error("--change {text:?}")]
    Change {
        /// The instruction.
        text: String,
        /// What is wrong.
        #[source]
        source: ContainerfileError,
    },
    /// Packing failed.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// Storing or tagging failed.
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// Packs `dir` into a one-layer image tagged `reference`, its config shaped by
/// `changes` (`CMD …`, `ENV …`, `EXPOSE …`, `WORKDIR …`, `USER …`, `LABEL …`,
/// `ENTRYPOINT …`, `VOLUME …`, `STOPSIGNAL …`).
pub fn import_rootfs(
    store: &ImageStore,
    dir: &Path,
    reference: &Reference,
    changes: &[String],
) -> Result<Image, ImportError> {
    if !dir.is_dir() {
        return Err(ImportError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let mut config = ImageConfig::for_host();
    config.created = Some(now_rfc3339());
    containerfile::set_env(
        &mut config.config.env,
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    for text in changes {
        let change = |source| ImportError::Change {
            text: text.clone(),
            source,
        };
        let step = containerfile::parse_instruction(text.trim(), 1).map_err(change)?;
        containerfile::apply_to_config(&step, &mut config).map_err(change)?;
    }
    let _lease = store.lease()?;
    let layer = pack_directory(dir, store.content())?;
    config.rootfs.diff_ids.push(layer.diff_id.clone());
    config.history.push(History {
        created: config.created.clone(),
        created_by: Some(format!("strata image import-rootfs {}", dir.display())),
        comment: None,
        empty_layer: false,
    });
    let target = store.write_image(&config, std::slice::from_ref(&layer.descriptor))?;
    store.tag(reference, &target)?;
    let mut image = store.load(&target)?;
    image.references.push(reference.to_string());
    Ok(image)
}

/// The current time in RFC 3339 (UTC, seconds), as image configs record it.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
