//! Pod volumes on the host, under `<pod dir>/volumes/<name>`: emptyDir (a directory, or
//! a tmpfs for `medium: Memory`), hostPath, and configMap/secret files (written to a new
//! directory and swapped in). Unsupported kinds are refused by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{KeyToPath, Pod};
use nix::mount::{MntFlags, MsFlags};

use super::translate::ConfigError;

/// Data of ConfigMaps or Secrets by name.
pub type Sources = BTreeMap<String, BTreeMap<String, String>>;

/// Prepares every volume of `pod` under `pod_dir`; returns the host path of each.
pub fn prepare(
    pod: &Pod,
    pod_dir: &Path,
    config_maps: &Sources,
    secrets: &Sources,
) -> Result<BTreeMap<String, PathBuf>, ConfigError> {
    let mut paths = BTreeMap::new();
    let io = |what: &str, path: &Path, err: std::io::Error| {
        ConfigError(format!("cannot {what} {}: {err}", path.display()))
    };
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
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
        } else if let Some((kind, data, name, optional, items, mode)) = volume
            .config_map
            .as_ref()
            .map(|s| {
                let name = s.name.clone();
                let data = config_maps.get(&name);
                (
                    "configmap",
                    data,
                    name,
                    s.optional,
                    s.items.as_deref(),
                    s.default_mode,
                )
            })
            .or_else(|| {
                volume.secret.as_ref().map(|s| {
                    let name = s.secret_name.clone().unwrap_or_default();
                    let data = secrets.get(&name);
                    (
                        "secret",
                        data,
                        name,
                        s.optional,
                        s.items.as_deref(),
                        s.default_mode,
                    )
                })
            })
        {
            if data.is_none() && optional != Some(true) {
                return Err(ConfigError(format!("{kind} {name:?} not found")));
            }
            write_files(&dir, data, items, mode.unwrap_or(0o644))?;
            dir
        } else {
            return Err(ConfigError(format!(
                "volume {:?}: only emptyDir, hostPath, configMap and secret volumes are supported",
                volume.name
            )));
        };
        paths.insert(volume.name.clone(), path);
    }
    Ok(paths)
}

/// Writes the keys (or the listed `items`) as files into `dir`, replacing what was there.
fn write_files(
    dir: &Path,
    data: Option<&BTreeMap<String, String>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |err: std::io::Error| ConfigError(format!("cannot write {}: {err}", dir.display()));
    let fresh = dir.with_extension("new");
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).map_err(fail)?;
    let empty = BTreeMap::new();
    let data = data.unwrap_or(&empty);
    let files: Vec<(String, &String, i32)> = match items {
        Some(items) => items
            .iter()
            .filter_map(|item| {
                data.get(&item.key)
                    .map(|v| (item.path.clone(), v, item.mode.unwrap_or(mode)))
            })
            .collect(),
        None => data.iter().map(|(k, v)| (k.clone(), v, mode)).collect(),
    };
    for (path, value, mode) in files {
        let relative = Path::new(&path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(ConfigError(format!(
                "item path {path:?} must be relative without '..'"
            )));
        }
        let file = fresh.join(relative);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::write(&file, value).map_err(fail)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode as u32 & 0o7777))
            .map_err(fail)?;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&fresh, dir).map_err(fail)
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
