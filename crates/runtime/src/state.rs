//! The state of a container as the OCI runtime spec and runc report it.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use libcontainer::container::ContainerStatus;
use serde::Serialize;

/// The OCI version this runtime reports.
pub const OCI_VERSION: &str = "1.2.0";

/// A container's lifecycle status (the spec's four plus runc's `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is in progress.
    Creating,
    /// Created; the user program has not started.
    Created,
    /// The user program is running.
    Running,
    /// Frozen through the cgroup freezer.
    Paused,
    /// The user program has exited.
    Stopped,
}

impl Status {
    /// True if `start` is allowed.
    pub fn can_start(self) -> bool {
        self == Status::Created
    }
    /// True if `kill` is allowed.
    pub fn can_kill(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }
    /// True if `delete` without force is allowed.
    pub fn can_delete(self) -> bool {
        matches!(self, Status::Stopped | Status::Created)
    }
}

impl From<ContainerStatus> for Status {
    fn from(status: ContainerStatus) -> Self {
        match status {
            ContainerStatus::Creating => Status::Creating,
            ContainerStatus::Created => Status::Created,
            ContainerStatus::Running => Status::Running,
            ContainerStatus::Paused => Status::Paused,
            ContainerStatus::Stopped => Status::Stopped,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// The state document of `state` (the OCI fields plus runc's extras).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    /// OCI version of the runtime.
    pub oci_version: String,
    /// Container ID.
    pub id: String,
    /// Lifecycle status.
    pub status: Status,
    /// PID of the container's init process on the host (0 once stopped).
    pub pid: i32,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// The user that created the container.
    pub owner: String,
    /// Annotations from config.json.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}
