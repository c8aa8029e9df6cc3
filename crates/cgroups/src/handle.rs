//! A handle on one container's cgroup: statistics, member processes, freezing, removal.

use std::path::{Path, PathBuf};

use libcgroups::common::{
    AnyCgroupManager, CgroupConfig, CgroupManager, FreezerState, create_cgroup_manager,
};
use libcgroups::v1::ControllerType;

use crate::mode::{CGROUP_ROOT, CgroupMode, DetectError, detect};
use crate::stats::CgroupStats;

/// Why an operation on a cgroup failed; each variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The machine's cgroup layout could not be detected.
    #[error("cannot detect the cgroup layout")]
    Detect(#[from] DetectError),
    /// libcgroups could not build a manager for the path.
    #[error("cannot open cgroup {path}: {reason}")]
    Open {
        /// The cgroup path as given (relative to the hierarchy roots).
        path: PathBuf,
        /// libcgroups' description (its error type is not `Send + Sync` in every version).
        reason: String,
    },
    /// Reading statistics failed.
    #[error("cannot read statistics of cgroup {path}: {reason}")]
    Stats {
        /// The cgroup path.
        path: PathBuf,
        /// libcgroups' description.
        reason: String,
    },
    /// Listing member processes failed.
    #[error("cannot list the processes of cgroup {path}: {reason}")]
    Pids {
        /// The cgroup path.
        path: PathBuf,
        /// libcgroups' description.
        reason: String,
    },
    /// Writing the freezer state failed.
    #[error("cannot {action} cgroup {path}: {reason}")]
    Freezer {
        /// "freeze" or "thaw".
        action: &'static str,
        /// The cgroup path.
        path: PathBuf,
        /// libcgroups' description.
        reason: String,
    },
    /// Removing the cgroup directories failed.
    #[error("cannot remove cgroup {path}: {reason}")]
    Remove {
        /// The cgroup path.
        path: PathBuf,
        /// libcgroups' description.
        reason: String,
    },
}

/// One cgroup (in every v1 hierarchy, or in the unified one), addressed by its path
/// relative to the hierarchy roots, as OCI's `linux.cgroupsPath` names it.
pub struct Cgroup {
    path: PathBuf,
    mode: CgroupMode,
    manager: AnyCgroupManager,
}

impl Cgroup {
    /// Opens the cgroup at `path` (it need not exist yet; reading an absent one fails).
    pub fn open(path: &Path) -> Result<Self, CgroupError> {
        let mode = detect()?;
        let manager = create_cgroup_manager(CgroupConfig {
            cgroup_path: path.to_path_buf(),
            systemd_cgroup: false,
            container_name: String::new(),
        })
        .map_err(|err| CgroupError::Open {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            mode,
            manager,
        })
    }

    /// The cgroup path this handle addresses.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The layout the handle works in.
    pub fn mode(&self) -> CgroupMode {
        self.mode
    }

    /// Current resource figures: memory, CPU, pids and OOM kills.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let raw = self.manager.stats().map_err(|err| CgroupError::Stats {
            path: self.path.clone(),
            reason: err.to_string(),
        })?;
        Ok(CgroupStats::from_libcgroups(&raw, self.oom_kills()))
    }

    /// Process ids of every member of the cgroup (and its descendants).
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let pids = self
            .manager
            .get_all_pids()
            .map_err(|err| CgroupError::Pids {
                path: self.path.clone(),
                reason: err.to_string(),
            })?;
        Ok(pids.into_iter().map(|pid| pid.as_raw()).collect())
    }

    /// Freezes every process in the cgroup.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_freezer(FreezerState::Frozen, "freeze")
    }

    /// Thaws a frozen cgroup.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_freezer(FreezerState::Thawed, "thaw")
    }

    fn set_freezer(&self, state: FreezerState, action: &'static str) -> Result<(), CgroupError> {
        self.manager
            .freeze(state)
            .map_err(|err| CgroupError::Freezer {
                action,
                path: self.path.clone(),
                reason: err.to_string(),
            })
    }

    /// Removes the cgroup directories (the cgroup must hold no process).
    pub fn remove(&self) -> Result<(), CgroupError> {
        self.manager.remove().map_err(|err| CgroupError::Remove {
            path: self.path.clone(),
            reason: err.to_string(),
        })
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup
    /// (`oom_kill` in v1's `memory.oom_control` or v2's `memory.events`); 0 when unknown.
    pub fn oom_kills(&self) -> u64 {
        let (dir, file) = match self.mode {
            CgroupMode::Unified => (PathBuf::from(CGROUP_ROOT), "memory.events"),
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                match libcgroups::v1::util::get_subsystem_mount_point(&ControllerType::Memory) {
                    Ok(mount) => (mount, "memory.oom_control"),
                    Err(_) => return 0,
                }
            }
        };
        let relative = self.path.strip_prefix("/").unwrap_or(&self.path);
        std::fs::read_to_string(dir.join(relative).join(file))
            .map(|text| parse_oom_kill(&text))
            .unwrap_or(0)
    }

    /// True when the cgroup exists in the memory (v1) or unified (v2) hierarchy.
    pub fn exists(&self) -> bool {
        let relative = self.path.strip_prefix("/").unwrap_or(&self.path);
        match self.mode {
            CgroupMode::Unified => Path::new(CGROUP_ROOT).join(relative).is_dir(),
            CgroupMode::Legacy | CgroupMode::Hybrid => {
                libcgroups::v1::util::get_subsystem_mount_point(&ControllerType::Pids)
                    .map(|mount| mount.join(relative).is_dir())
                    .unwrap_or(false)
            }
        }
    }
}

/// Reads the `oom_kill N` line of `memory.oom_control` / `memory.events`.
fn parse_oom_kill(text: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_count_is_read_from_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        let v2 = "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v1), 3);
        assert_eq!(parse_oom_kill(v2), 2);
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), 0);
    }
}
