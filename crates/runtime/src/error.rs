//! The runtime's error type: one variant per failed step, carrying the container.

use std::path::PathBuf;

use libcontainer::error::LibcontainerError;

use crate::bundle::BundleError;
use crate::id::InvalidId;
use crate::state::Status;

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container ID is not valid.
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    /// The bundle cannot be run.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The state root cannot be created or read.
    #[error("cannot use state directory {path}")]
    Root {
        /// The runtime root.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A container with this ID exists already.
    #[error("container {0} already exists")]
    AlreadyExists(String),
    /// No container has this ID.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The operation is not allowed in the container's current status.
    #[error("container {id} is {status}; {operation} needs it {needed}")]
    WrongState {
        /// The container.
        id: String,
        /// Its status.
        status: Status,
        /// The operation refused.
        operation: &'static str,
        /// The statuses the operation accepts, in words.
        needed: &'static str,
    },
    /// libcontainer failed at this operation.
    #[error("{operation} of container {id} failed: {detail}")]
    Container {
        /// The operation.
        operation: &'static str,
        /// The container.
        id: String,
        /// libcontainer's error chain, flattened (its messages are mostly `transparent`).
        detail: String,
        /// The error itself (boxed: it is large, and errors should be cheap to move).
        #[source]
        source: Box<LibcontainerError>,
    },
    /// Reading or changing the container's cgroup failed.
    #[error("cgroup of container {id}")]
    Cgroup {
        /// The container.
        id: String,
        /// The cgroup error.
        #[source]
        source: strata_cgroups::CgroupError,
    },
    /// A signal name or number is not valid.
    #[error("{0:?} is not a signal name or number")]
    BadSignal(String),
    /// Waiting for a process failed.
    #[error("cannot wait for process {pid}")]
    Wait {
        /// The process.
        pid: i32,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A process spec for exec is invalid.
    #[error("process spec {path}: {reason}")]
    ProcessSpec {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl RuntimeError {
    /// Wraps a libcontainer error for `operation` on `id`, keeping its whole chain.
    pub(crate) fn container(operation: &'static str, id: &str, source: LibcontainerError) -> Self {
        let detail = flatten(&source);
        Self::Container {
            operation,
            id: id.to_string(),
            detail,
            source: Box::new(source),
        }
    }
}

/// Joins an error and its sources with ": ", dropping repeated messages.
pub(crate) fn flatten(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}
