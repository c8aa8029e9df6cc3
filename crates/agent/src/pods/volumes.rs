//! Pod volumes on the host, under `<pod dir>/volumes/<name>`: emptyDir (a directory, or
//! a tmpfs for `medium: Memory`), hostPath, and configMap/secret files (the kubelet's
//! atomic writer layout: a `..data` link swapped to each new payload). Unsupported kinds are refused by name.

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

/// The directory link that names the current payload of a configMap/secret volume.
const DATA_LINK: &str = "..data";

/// Writes the keys (or the listed `items`) as files into `dir` the way the kubelet's
/// atomic writer does, so that a container's bind mount of `dir` sees updates: the
/// payload goes to a fresh `..<time>` directory, the `..data` link is swapped to it in
/// one rename, and each visible name is a link through `..data`. Unchanged data is left
/// alone.
fn write_files(
    dir: &Path,
    data: Option<&BTreeMap<String, String>>,
    items: Option<&[KeyToPath]>,
    mode: i32,
) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |err: std::io::Error| ConfigError(format!("cannot write {}: {err}", dir.display()));
    let empty = BTreeMap::new();
    let data = data.unwrap_or(&empty);
    let files: BTreeMap<PathBuf, (&String, i32)> = match items {
        Some(items) => items
            .iter()
            .filter_map(|item| {
                data.get(&item.key)
                    .map(|v| (PathBuf::from(&item.path), (v, item.mode.unwrap_or(mode))))
            })
            .collect(),
        None => data
            .iter()
            .map(|(k, v)| (PathBuf::from(k), (v, mode)))
            .collect(),
    };
    let files: BTreeMap<PathBuf, (&String, u32)> = files
        .into_iter()
        .map(|(path, (value, mode))| (path, (value, mode as u32 & 0o7777)))
        .collect();
    for path in files.keys() {
        let bad = path.is_absolute()
            || path.components().any(|c| {
                matches!(c, std::path::Component::ParentDir)
                    || c.as_os_str().to_string_lossy().starts_with("..")
            });
        if bad || path.as_os_str().is_empty() {
            return Err(ConfigError(format!(
                "item path {:?} must be relative without '..'",
                path.display()
            )));
        }
    }
    let current = dir.join(DATA_LINK);
    let unchanged = files.iter().all(|(path, (value, mode))| {
        let file = current.join(path);
        std::fs::read(&file).is_ok_and(|v| v == value.as_bytes())
            && std::fs::metadata(&file).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
    }) && visible_names(dir) == top_names(&files);
    if unchanged && current.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(fail)?;
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let payload = dir.join(&stamp);
    std::fs::create_dir(&payload).map_err(fail)?;
    for (path, (value, mode)) in &files {
        let file = payload.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::write(&file, value).map_err(fail)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode)).map_err(fail)?;
    }
    let old = std::fs::read_link(&current).ok();
    let next_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&next_link);
    std::os::unix::fs::symlink(&stamp, &next_link).map_err(fail)?;
    std::fs::rename(&next_link, &current).map_err(fail)?;
    let wanted = top_names(&files);
    for name in visible_names(dir).difference(&wanted) {
        let _ = std::fs::remove_file(dir.join(name));
    }
    for name in &wanted {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_LINK).join(name), &link).map_err(fail)?;
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

/// The first component of each file path: the names a container sees in the volume.
fn top_names<V>(files: &BTreeMap<PathBuf, V>) -> std::collections::BTreeSet<std::ffi::OsString> {
    files
        .keys()
        .filter_map(|p| p.components().next())
        .map(|c| c.as_os_str().to_os_string())
        .collect()
}

/// The visible names in a volume directory (everything but the `..` entries).
fn visible_names(dir: &Path) -> std::collections::BTreeSet<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().starts_with(".."))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_are_swapped_atomically_inside_a_stable_directory() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("content");
        let v1 = BTreeMap::from([
            ("index.html".to_string(), "one".to_string()),
            ("extra".to_string(), "x".to_string()),
        ]);
        write_files(&dir, Some(&v1), None, 0o644).unwrap();
        let inode = std::fs::metadata(&dir).unwrap().ino();
        assert_eq!(
            std::fs::read_to_string(dir.join("index.html")).unwrap(),
            "one"
        );
        let payload = std::fs::read_link(dir.join(DATA_LINK)).unwrap();
        // Same data: nothing is rewritten.
        write_files(&dir, Some(&v1), None, 0o644).unwrap();
        assert_eq!(std::fs::read_link(dir.join(DATA_LINK)).unwrap(), payload);
        // New data: same directory, new content, removed keys gone, old payload gone.
        let v2 = BTreeMap::from([("index.html".to_string(), "two".to_string())]);
        write_files(&dir, Some(&v2), None, 0o600).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().ino(), inode);
        assert_eq!(
            std::fs::read_to_string(dir.join("index.html")).unwrap(),
            "two"
        );
        assert!(std::fs::symlink_metadata(dir.join("extra")).is_err());
        assert!(!dir.join(&payload).exists());
        let mode = std::fs::metadata(dir.join("index.html")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Item paths may not climb out.
        let items = [KeyToPath {
            key: "index.html".into(),
            path: "../escape".into(),
            mode: None,
        }];
        assert!(write_files(&dir, Some(&v2), Some(&items), 0o644).is_err());
        assert!(!root.path().join("escape").exists());
    }
}
