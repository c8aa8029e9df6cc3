//! Detection of the machine's cgroup layout.

use std::fmt;
use std::path::Path;

use libcgroups::common::{CgroupSetup, GetCgroupSetupError, get_cgroup_setup_with_root};

/// The root under which cgroup file systems are mounted on Linux.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup hierarchy holds the resource controllers on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only cgroup v1 hierarchies are mounted.
    Legacy,
    /// cgroup v1 controllers plus a cgroup2 mount at `unified/`; limits go through v1.
    Hybrid,
    /// Pure cgroup v2 (the unified hierarchy owns every controller).
    Unified,
}

impl CgroupMode {
    /// True when resource limits are applied through the v1 controllers.
    pub fn uses_v1_controllers(self) -> bool {
        matches!(self, CgroupMode::Legacy | CgroupMode::Hybrid)
    }
}

impl fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupMode::Legacy => "cgroup v1",
            CgroupMode::Hybrid => "cgroup v1 (hybrid with a cgroup2 mount)",
            CgroupMode::Unified => "cgroup v2",
        })
    }
}

/// The cgroup layout could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// `/sys/fs/cgroup` (or the given root) does not exist.
    #[error("no cgroup file system is mounted at {0}")]
    NotMounted(String),
    /// The root exists but is neither tmpfs (v1) nor cgroup2.
    #[error("{0} is neither a cgroup2 mount nor a tmpfs holding cgroup v1 hierarchies")]
    Unrecognised(String),
    /// statfs on the root failed.
    #[error("cannot inspect {0}")]
    Inspect(String, #[source] std::io::Error),
}

/// Detects the cgroup layout under [`CGROUP_ROOT`].
pub fn detect() -> Result<CgroupMode, DetectError> {
    detect_at(Path::new(CGROUP_ROOT))
}

/// Detects the cgroup layout under `root` (tests point it at other mounts).
pub fn detect_at(root: &Path) -> Result<CgroupMode, DetectError> {
    let shown = root.display().to_string();
    match get_cgroup_setup_with_root(root) {
        Ok(CgroupSetup::Legacy) => Ok(CgroupMode::Legacy),
        Ok(CgroupSetup::Hybrid) => Ok(CgroupMode::Hybrid),
        Ok(CgroupSetup::Unified) => Ok(CgroupMode::Unified),
        Err(GetCgroupSetupError::NonDefault) => Err(DetectError::NotMounted(shown)),
        Err(GetCgroupSetupError::FailedToDetect) => Err(DetectError::Unrecognised(shown)),
        Err(GetCgroupSetupError::WrappedIo(err)) => Err(DetectError::Inspect(
            shown,
            std::io::Error::new(err.inner().kind(), err.to_string()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_root_is_reported_as_not_mounted() {
        let err = detect_at(Path::new("/nonexistent/cgroup")).unwrap_err();
        assert!(matches!(err, DetectError::NotMounted(_)), "{err}");
    }

    #[test]
    fn a_plain_directory_is_not_a_cgroup_root() {
        // A tempdir on the test's file system is neither cgroup2 nor (usually) tmpfs; when
        // it happens to be tmpfs it reads as an empty legacy layout, never as v2.
        let dir = tempfile::tempdir().unwrap();
        match detect_at(dir.path()) {
            Err(DetectError::Unrecognised(_)) | Ok(CgroupMode::Legacy) => {}
            other => panic!("unexpected detection result {other:?}"),
        }
    }

    #[test]
    fn this_machine_has_a_detectable_layout() {
        let mode = detect().expect("the test machine mounts cgroups");
        // Whatever the layout, the mode and the v1 question agree.
        assert_eq!(mode.uses_v1_controllers(), mode != CgroupMode::Unified);
    }
}
