//! Resolving `user[:group]` (names or numbers, as `-u` and an image's `User` give
//! them) against the container's own `/etc/passwd` and `/etc/group`, the way Docker
//! does: a named user brings its primary group, home directory and supplementary
//! groups.

use std::path::Path;

/// Why a user could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// The user or group part of `user:group` is empty.
    #[error("user {0:?}: empty user or group")]
    Empty(String),
    /// A user name the container's `/etc/passwd` does not list.
    #[error("user {0:?} is not in the container's /etc/passwd")]
    UnknownUser(String),
    /// A group name the container's `/etc/group` does not list.
    #[error("group {0:?} is not in the container's /etc/group")]
    UnknownGroup(String),
}

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// UID.
    pub uid: u32,
    /// Primary GID.
    pub gid: u32,
    /// Supplementary groups listing the user by name in `/etc/group`.
    pub additional_gids: Vec<u32>,
    /// Home directory from `/etc/passwd` (for `HOME`), if the user is listed.
    pub home: Option<String>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Reads a file of the container's root file system. The path is fixed (`etc/…`) and
/// the file is only parsed, so a symlink in the image can at worst change which users
/// the container's own configuration names.
fn read_rootfs_file(rootfs: &Path, relative: &str) -> String {
    std::fs::read_to_string(rootfs.join(relative)).unwrap_or_default()
}

fn passwd(rootfs: &Path) -> Vec<PasswdEntry> {
    read_rootfs_file(rootfs, "etc/passwd")
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some(PasswdEntry {
                name: fields.first()?.to_string(),
                uid: fields.get(2)?.parse().ok()?,
                gid: fields.get(3)?.parse().ok()?,
                home: fields.get(5).map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn groups(rootfs: &Path) -> Vec<GroupEntry> {
    read_rootfs_file(rootfs, "etc/group")
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some(GroupEntry {
                name: fields.first()?.to_string(),
                gid: fields.get(2)?.parse().ok()?,
                members: fields
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `spec` (`user`, `uid`, `user:group`, `uid:gid`, …) in `rootfs`.
pub fn resolve(spec: &str, rootfs: &Path) -> Result<ResolvedUser, UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(UserError::Empty(spec.to_string()));
    }
    let users = passwd(rootfs);
    let (uid, entry) = match user.parse::<u32>() {
        Ok(uid) => (uid, users.iter().find(|e| e.uid == uid)),
        Err(_) => {
            let entry = users
                .iter()
                .find(|e| e.name == user)
                .ok_or_else(|| UserError::UnknownUser(user.to_string()))?;
            (entry.uid, Some(entry))
        }
    };
    let all_groups = groups(rootfs);
    let gid = match group {
        Some("") => return Err(UserError::Empty(spec.to_string())),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                all_groups
                    .iter()
                    .find(|e| e.name == g)
                    .ok_or_else(|| UserError::UnknownGroup(g.to_string()))?
                    .gid
            }
        },
        None => entry.map(|e| e.gid).unwrap_or(0),
    };
    let additional_gids = match (group, entry) {
        (None, Some(e)) => all_groups
            .iter()
            .filter(|g| g.members.contains(&e.name) && g.gid != gid)
            .map(|g| g.gid)
            .collect(),
        _ => Vec::new(),
    };
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry.map(|e| e.home.clone()).filter(|h| !h.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nlogs:x:4:www,other\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn names_and_numbers_resolve_like_docker() {
        let dir = rootfs();
        let www = resolve("www", dir.path()).unwrap();
        assert_eq!((www.uid, www.gid), (33, 33));
        assert_eq!(www.additional_gids, vec![4]);
        assert_eq!(www.home.as_deref(), Some("/var/www"));
        let numeric = resolve("1000:1000", dir.path()).unwrap();
        assert_eq!((numeric.uid, numeric.gid, numeric.home), (1000, 1000, None));
        let mixed = resolve("33:logs", dir.path()).unwrap();
        assert_eq!((mixed.uid, mixed.gid), (33, 4));
        assert!(mixed.additional_gids.is_empty());
        assert_eq!(
            resolve("0", dir.path()).unwrap().home.as_deref(),
            Some("/root")
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        let dir = rootfs();
        let err = resolve("nobody", dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("\"nobody\" is not in the container's /etc/passwd"),
            "{err}"
        );
        assert!(resolve("www:staff", dir.path()).is_err());
        assert!(resolve(":0", dir.path()).is_err());
    }
}
