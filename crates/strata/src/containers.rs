//! The containers of `strata run`: one directory each under `<data-dir>/containers/<id>`
//! holding the bundle's `config.json`, `meta.json` (what was asked), `container.log`
//! and, once the container has exited, `exit.json`. Runtime state lives apart, under
//! `<data-dir>/runtime`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strata_image::Digest;
use strata_runtime::{ContainerId, ContainerState, Runtime, RuntimeError, Signal, Spec, Status};

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
    pub fn open(data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join("containers");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let runtime = Runtime::open(data_dir.join("runtime"))?;
        Ok(Self { dir, runtime })
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
    pub fn prepare(
        &self,
        id: &str,
        build: impl FnOnce(&Path) -> Result<(Meta, Spec)>,
    ) -> Result<ContainerId> {
        let id = ContainerId::new(id.to_string())?;
        let dir = self.dir(&id);
        if dir.exists() {
            bail!("a container named {id} exists already (remove it with `strata rm {id}`)");
        }
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let written = build(&dir).and_then(|(meta, spec)| {
            spec.save(dir.join("config.json"))
                .context("cannot write config.json")
                .and_then(|()| write_json(&dir.join("meta.json"), &meta))
        });
        if let Err(err) = written {
            let _ = strata_image::rootfs::release_rootfs(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(err);
        }
        Ok(id)
    }

    /// The metadata of a container.
    pub fn meta(&self, id: &ContainerId) -> Result<Meta> {
        let path = self.dir(id).join("meta.json");
        if !path.exists() {
            bail!("no such container: {id}");
        }
        read_json(&path)
    }

    /// Records how the container ended.
    pub fn record_exit(&self, id: &ContainerId, exit: &ExitRecord) -> Result<()> {
        write_json(&self.dir(id).join("exit.json"), exit)
    }

    /// The exit record, if the container has ended.
    pub fn exit(&self, id: &ContainerId) -> Option<ExitRecord> {
        read_json(&self.dir(id).join("exit.json")).ok()
    }

    /// Looks a container up.
    pub fn entry(&self, id: &ContainerId) -> Result<Entry> {
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
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let dirs = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read {}", self.dir.display()))?;
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
    pub fn remove(&self, id: &ContainerId, force: bool) -> Result<()> {
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
        strata_image::rootfs::release_rootfs(&dir)
            .with_context(|| format!("cannot release the root file system of {id}"))?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err).with_context(|| format!("cannot remove {}", dir.display())),
        }
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))
}
