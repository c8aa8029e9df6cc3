//! Pod volumes on the host, under `<pod dir>/volumes/<name>`: emptyDir (a directory, or
//! a tmpfs for `medium: Memory`), hostPath, and configMap, secret, downwardAPI and
//! projected files (written by [`atomic_writer`], rewritten on every sync so changes of
//! their sources reach running containers). Unsupported kinds are refused by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Pod, Volume};
use nix::mount::{MntFlags, MsFlags};

use super::atomic_writer;
use super::downward;
use super::projected::{self, VolumeInputs};
use super::translate::ConfigError;

pub use super::projected::Sources;

/// Why a volume could not be set up: the kubelet's `FailedMount` event message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
pub struct MountError {
    /// The volume's name.
    pub volume: String,
    /// What went wrong.
    #[source]
    pub source: ConfigError,
}

/// Prepares every volume of `pod` under `pod_dir`; returns the host path of each.
pub fn prepare(
    pod: &Pod,
    pod_dir: &Path,
    inputs: &VolumeInputs,
) -> Result<BTreeMap<String, PathBuf>, MountError> {
    let mut paths = BTreeMap::new();
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = prepare_one(pod, volume, pod_dir, inputs).map_err(|source| MountError {
            volume: volume.name.clone(),
            source,
        })?;
        paths.insert(volume.name.clone(), path);
    }
    Ok(paths)
}

/// Prepares one volume; returns its host path.
fn prepare_one(
    pod: &Pod,
    volume: &Volume,
    pod_dir: &Path,
    inputs: &VolumeInputs,
) -> Result<PathBuf, ConfigError> {
    let io = |what: &str, path: &Path, err: std::io::Error| {
        ConfigError(format!("cannot {what} {}: {err}", path.display()))
    };
    let dir = pod_dir.join("volumes").join(&volume.name);
    let path = if let Some(empty) = &volume.empty_dir {
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        if empty.medium.as_deref() == Some("Memory") && !is_mount_point(&dir) {
            let size = empty
                .size_limit
                .as_ref()
                .and_then(|q| strata_api::quantity::Quantity::parse(&q.0).ok())
                .map(|q| q.value())
                .map(|bytes| format!("size={bytes}"));
            nix::mount::mount(
                Some("tmpfs"),
                &dir,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                size.as_deref(),
            )
            .map_err(|e| io("mount a tmpfs on", &dir, e.into()))?;
        }
        dir
    } else if let Some(host) = &volume.host_path {
        let path = PathBuf::from(&host.path);
        match host.type_.as_deref().unwrap_or("") {
            "DirectoryOrCreate" => {
                std::fs::create_dir_all(&path).map_err(|e| io("create", &path, e))?
            }
            "Directory" if !path.is_dir() => {
                return Err(ConfigError(format!(
                    "hostPath {} is not a directory",
                    host.path
                )));
            }
            "File" if !path.is_file() => {
                return Err(ConfigError(format!("hostPath {} is not a file", host.path)));
            }
            _ => {}
        }
        path
    } else if let Some(map) = &volume.config_map {
        let payload = projected::key_payload(
            "configmap",
            &map.name,
            inputs.config_maps.get(&map.name),
            map.items.as_deref(),
            map.default_mode.unwrap_or(projected::DEFAULT_MODE),
            map.optional == Some(true),
        )?;
        atomic_writer::write(&dir, &payload)?;
        dir
    } else if let Some(secret) = &volume.secret {
        let name = secret.secret_name.clone().unwrap_or_default();
        let payload = projected::key_payload(
            "secret",
            &name,
            inputs.secrets.get(&name),
            secret.items.as_deref(),
            secret.default_mode.unwrap_or(projected::DEFAULT_MODE),
            secret.optional == Some(true),
        )?;
        atomic_writer::write(&dir, &payload)?;
        dir
    } else if let Some(api) = &volume.downward_api {
        let payload = downward::payload(
            pod,
            api.items.as_deref().unwrap_or_default(),
            api.default_mode.unwrap_or(projected::DEFAULT_MODE),
            &inputs.node,
        )?;
        atomic_writer::write(&dir, &payload)?;
        dir
    } else if let Some(projection) = &volume.projected {
        let payload = projected::projected_payload(pod, projection, inputs)?;
        atomic_writer::write(&dir, &payload)?;
        dir
    } else {
        return Err(ConfigError(format!(
            "volume {:?}: only emptyDir, hostPath, configMap, secret, downwardAPI and projected volumes are supported",
            volume.name
        )));
    };
    Ok(path)
}

/// Unmounts the pod's tmpfs volumes and removes its volume directories.
pub fn remove(pod_dir: &Path) {
    let volumes = pod_dir.join("volumes");
    if let Ok(entries) = std::fs::read_dir(&volumes) {
        for entry in entries.flatten() {
            let path = entry.path();
            while is_mount_point(&path) {
                if nix::mount::umount2(&path, MntFlags::MNT_DETACH).is_err() {
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&volumes);
}

fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(own), Some(Ok(parent))) = (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) else {
        return false;
    };
    own.dev() != parent.dev()
}
