//! The kubelet's atomic writer: the files of a configMap, secret, downwardAPI or
//! projected volume go to a fresh `..<time>` directory and the `..data` link is swapped
//! to it in one rename, so a container's bind mount of the volume directory always sees
//! one whole payload.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use super::translate::ConfigError;

/// The directory link that names the current payload of a volume.
pub const DATA_LINK: &str = "..data";

/// Longest file path in a payload (the kubelet's limit).
const MAX_PATH_BYTES: usize = 4096;
/// Longest path component in a payload.
const MAX_NAME_BYTES: usize = 255;

/// One file of a payload: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// The content.
    pub content: Vec<u8>,
    /// Permission bits (`mode`/`defaultMode`, masked to 0o7777 when written).
    pub mode: u32,
}

impl File {
    /// A file with `content` and `mode` (the API's `int32`, masked like the kubelet).
    pub fn new(content: impl Into<Vec<u8>>, mode: i32) -> Self {
        Self {
            content: content.into(),
            mode: mode as u32 & 0o7777,
        }
    }
}

/// A volume's payload: relative path → file.
pub type Payload = BTreeMap<PathBuf, File>;

/// Checks a payload path the way the kubelet's `validatePath` does: relative, not
/// empty, no `..` component nor one starting with `..` (those names are the writer's
/// own), within the length limits.
pub fn validate_path(path: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| Err(ConfigError(format!("invalid path {path:?}: {why}")));
    if path.is_empty() {
        return bad("must not be empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return bad("must be at most 4096 bytes");
    }
    let relative = Path::new(path);
    if relative.is_absolute() {
        return bad("must be relative");
    }
    for component in relative.components() {
        match component {
            Component::Normal(name) if name.to_string_lossy().starts_with("..") => {
                return bad("must not start with '..'");
            }
            Component::Normal(name) if name.len() > MAX_NAME_BYTES => {
                return bad("has a component longer than 255 bytes");
            }
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return bad("must not contain '..'"),
            Component::RootDir | Component::Prefix(_) => return bad("must be relative"),
        }
    }
    Ok(())
}

/// Writes `payload` into `dir` (created when missing): a fresh `..<time>` directory,
/// the `..data` link swapped to it in one rename, each visible top-level name a link
/// through `..data`, the previous payload removed. An unchanged payload is left alone.
pub fn write(dir: &Path, payload: &Payload) -> Result<(), ConfigError> {
    let fail = |err: std::io::Error| ConfigError(format!("cannot write {}: {err}", dir.display()));
    for path in payload.keys() {
        validate_path(&path.to_string_lossy())?;
    }
    let current = dir.join(DATA_LINK);
    let unchanged = payload.iter().all(|(path, file)| {
        let on_disk = current.join(path);
        std::fs::read(&on_disk).is_ok_and(|v| v == file.content)
            && std::fs::metadata(&on_disk)
                .is_ok_and(|m| m.permissions().mode() & 0o7777 == file.mode)
    }) && visible_names(dir) == top_names(payload);
    if unchanged && current.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(fail)?;
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let staging = dir.join(&stamp);
    std::fs::create_dir(&staging).map_err(fail)?;
    for (path, file) in payload {
        let target = staging.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::write(&target, &file.content).map_err(fail)?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode))
            .map_err(fail)?;
    }
    let old = std::fs::read_link(&current).ok();
    let next_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&next_link);
    std::os::unix::fs::symlink(&stamp, &next_link).map_err(fail)?;
    std::fs::rename(&next_link, &current).map_err(fail)?;
    let wanted = top_names(payload);
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
fn top_names(payload: &Payload) -> BTreeSet<OsString> {
    payload
        .keys()
        .filter_map(|p| p.components().find(|c| matches!(c, Component::Normal(_))))
        .map(|c| c.as_os_str().to_os_string())
        .collect()
}

/// The visible names in a volume directory (everything but the `..` entries).
fn visible_names(dir: &Path) -> BTreeSet<OsString> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !n.to_string_lossy().starts_with(".."))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, i32)]) -> Payload {
        files
            .iter()
            .map(|(path, content, mode)| (PathBuf::from(path), File::new(*content, *mode)))
            .collect()
    }

    #[test]
    fn payloads_are_swapped_atomically_inside_a_stable_directory() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("content");
        let v1 = payload(&[("index.html", "one", 0o644), ("sub/extra", "x", 0o644)]);
        write(&dir, &v1).unwrap();
        let inode = std::fs::metadata(&dir).unwrap().ino();
        assert_eq!(
            std::fs::read_to_string(dir.join("index.html")).unwrap(),
            "one"
        );
        assert_eq!(std::fs::read_to_string(dir.join("sub/extra")).unwrap(), "x");
        let first = std::fs::read_link(dir.join(DATA_LINK)).unwrap();
        // Same payload: nothing is rewritten.
        write(&dir, &v1).unwrap();
        assert_eq!(std::fs::read_link(dir.join(DATA_LINK)).unwrap(), first);
        // New payload: same directory, new content, removed names gone, old payload gone.
        let v2 = payload(&[("index.html", "two", 0o600)]);
        write(&dir, &v2).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().ino(), inode);
        assert_eq!(
            std::fs::read_to_string(dir.join("index.html")).unwrap(),
            "two"
        );
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(&first).exists());
        let mode = std::fs::metadata(dir.join("index.html")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn paths_may_not_climb_out_or_hide_among_the_writers_names() {
        for bad in [
            "",
            "/etc/passwd",
            "../escape",
            "a/../../b",
            "..data",
            "a/..x",
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?} passed");
        }
        for good in ["token", "a/b/c", "a.b", "x..y"] {
            assert!(validate_path(good).is_ok(), "{good:?} failed");
        }
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("content");
        assert!(write(&dir, &payload(&[("../escape", "x", 0o644)])).is_err());
        assert!(!root.path().join("escape").exists());
    }
}
