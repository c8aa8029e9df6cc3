//! The containers of `strata run` and of pods: one directory each under
//! `<data-dir>/containers/<id>` holding the bundle's `config.json`, `meta.json` (what was
//! asked), `container.log` and, once the container has exited, `exit.json`. Runtime state
//! lives apart, under `<data-dir>/runtime`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_image::Digest;
use strata_runtime::{ContainerId, ContainerState, Runtime, RuntimeError, Signal, Spec, Status};

/// Errors of the container store.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The ID is not a valid container ID.
    #[error(transparent)]
    InvalidId(#[from] strata_runtime::InvalidId),
    /// A container with this ID exists already.
    #[error("a container named {0} exists already (remove it with `strata rm {0}`)")]
    Exists(String),
    /// No container has this ID.
    #[error("no such container: {0}")]
    NotFound(String),
    /// A file or directory of the store could not be used.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done ("read", "write", "create", "remove").
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file of the store holds something else than expected.
    #[error("{path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The root file system could not be released.
    #[error("cannot release the root file system of {id}")]
    Rootfs {
        /// The container.
        id: String,
        /// Cause.
        #[source]
        source: strata_image::rootfs::RootfsError,
    },
    /// The monitor could not be started or did not start the container.
    #[error("{0}")]
    Monitor(String),
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What the user asked for, kept for `ps` and the monitor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// Container ID (the name when one was given).
    pub id: String,
    /// The command.
    pub command: Vec<String>,
    /// Root file system directory.
    pub rootfs: PathBuf,
    /// The image the root file system comes from (none for `--rootfs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageUse>,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Remove the container when it exits.
    pub auto_remove: bool,
    /// The memory limit, to explain OOM kills.
    pub memory_limit: Option<i64>,
    /// Labels, e.g. the pod a container belongs to (like CRI's container labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When the log rotates (the default when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_rotation: Option<super::logfile::Rotation>,
    /// Standard streams: stdin kept open for attached clients, a terminal.
    #[serde(default, skip_serializing_if = "is_default")]
    pub stdio: super::attach::StdioMode,
}

fn is_default(mode: &super::attach::StdioMode) -> bool {
    *mode == super::attach::StdioMode::default()
}

/// The image a container runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageUse {
    /// The name the user gave.
    pub name: String,
    /// The image ID (config digest).
    pub id: Digest,
    /// The repository digest: keeps the image's blobs from garbage collection.
    pub digest: Digest,
}

/// How a container ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExitRecord {
    /// Exit code (128 + signal for a killed process).
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<String>,
    /// The kernel's OOM killer killed a process of the container.
    pub oom_killed: bool,
    /// When it ended.
    pub finished: DateTime<Utc>,
}

/// One container as `ps` shows it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What was asked.
    pub meta: Meta,
    /// Runtime state, when the runtime still knows the container.
    pub state: Option<ContainerState>,
    /// The exit record, once it exited.
    pub exit: Option<ExitRecord>,
}

impl Entry {
    /// True while the container's process runs (or is paused).
    pub fn is_running(&self) -> bool {
        matches!(
            self.state.as_ref().map(|s| s.status),
            Some(Status::Running | Status::Paused)
        )
    }
}

/// The container directories plus the runtime that runs them.
pub struct Store {
    dir: PathBuf,
    runtime: Runtime,
}

impl Store {
    /// Opens the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, ContainerError> {
        let dir = data_dir.join("containers");
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let runtime = Runtime::open(data_dir.join("runtime"))?;
        Ok(Self { dir, runtime })
    }

    /// The data dir the store lives in.
    pub fn data_dir(&self) -> &Path {
        self.dir.parent().unwrap_or(&self.dir)
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The directory (and OCI bundle) of a container.
    pub fn dir(&self, id: &ContainerId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    /// The log file of a container.
    pub fn log_path(&self, id: &ContainerId) -> PathBuf {
        self.dir(id).join("container.log")
    }

    /// Creates the directory of a new container `id` (failing if the ID is taken), lets
    /// `build` prepare its root file system there and describe it, then writes the
    /// bundle and metadata. When anything fails, nothing of the container stays.
    pub fn prepare<E: From<ContainerError>>(
        &self,
        id: &str,
        build: impl FnOnce(&Path) -> Result<(Meta, Spec), E>,
    ) -> Result<ContainerId, E> {
        let id = ContainerId::new(id.to_string()).map_err(ContainerError::from)?;
        let dir = self.dir(&id);
        if dir.exists() {
            return Err(ContainerError::Exists(id.to_string()).into());
        }
        std::fs::create_dir(&dir).map_err(io("create", &dir))?;
        let written = build(&dir).and_then(|(meta, spec)| {
            let config = dir.join("config.json");
            spec.save(&config)
                .map_err(|err| {
                    ContainerError::Io {
                        action: "write",
                        path: config.clone(),
                        source: std::io::Error::other(err.to_string()),
                    }
                    .into()
                })
                .and_then(|()| write_json(&dir.join("meta.json"), &meta).map_err(E::from))
        });
        if let Err(err) = written {
            let _ = strata_image::rootfs::release_rootfs(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(err);
        }
        Ok(id)
    }

    /// The metadata of a container.
    pub fn meta(&self, id: &ContainerId) -> Result<Meta, ContainerError> {
        let path = self.dir(id).join("meta.json");
        if !path.exists() {
            return Err(ContainerError::NotFound(id.to_string()));
        }
        read_json(&path)
    }

    /// Records how the container ended.
    pub fn record_exit(&self, id: &ContainerId, exit: &ExitRecord) -> Result<(), ContainerError> {
        write_json(&self.dir(id).join("exit.json"), exit)
    }

    /// The exit record, if the container has ended.
    pub fn exit(&self, id: &ContainerId) -> Option<ExitRecord> {
        read_json(&self.dir(id).join("exit.json")).ok()
    }

    /// Looks a container up.
    pub fn entry(&self, id: &ContainerId) -> Result<Entry, ContainerError> {
        let meta = self.meta(id)?;
        let state = match self.runtime.state(id) {
            Ok(state) => Some(state),
            Err(RuntimeError::NotFound(_)) => None,
            Err(err) => return Err(err.into()),
        };
        Ok(Entry {
            meta,
            state,
            exit: self.exit(id),
        })
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Result<Vec<Entry>, ContainerError> {
        let mut entries = Vec::new();
        let dirs = std::fs::read_dir(&self.dir).map_err(io("read", &self.dir))?;
        for dir in dirs.flatten() {
            let Some(name) = dir.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(id) = ContainerId::new(name) else {
                continue;
            };
            if let Ok(entry) = self.entry(&id) {
                entries.push(entry);
            }
        }
        entries.sort_by_key(|e| e.meta.created);
        Ok(entries)
    }

    /// Deletes the container from the runtime (killing it with `force`) and removes its
    /// directory.
    ///
    /// A running container is supervised by its monitor (or a foreground `strata run`),
    /// which records the exit when the process dies; removal waits for that, so the two
    /// never delete the same files at once.
    pub fn remove(&self, id: &ContainerId, force: bool) -> Result<(), ContainerError> {
        if force && self.entry(id).is_ok_and(|e| e.is_running()) {
            match self.runtime.kill(id, Signal::SIGKILL, true) {
                Ok(()) | Err(RuntimeError::NotFound(_) | RuntimeError::WrongState { .. }) => {}
                Err(err) => return Err(err.into()),
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline
                && self.dir(id).exists()
                && self.exit(id).is_none()
                && self.runtime.state(id).is_ok()
            {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        match self.runtime.delete(id, force) {
            Ok(()) | Err(RuntimeError::NotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
        let dir = self.dir(id);
        strata_image::rootfs::release_rootfs(&dir).map_err(|source| ContainerError::Rootfs {
            id: id.to_string(),
            source,
        })?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io("remove", &dir)(err)),
        }
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), ContainerError> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| ContainerError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("write", path))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ContainerError> {
    let bytes = std::fs::read(path).map_err(io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|source| ContainerError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}
