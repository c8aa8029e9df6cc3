//! The container lifecycle: create, start, state, kill, delete, and what runc adds
//! (list, ps, pause, resume, stats, exec).
//!
//! State lives under one root directory, one subdirectory per container, written by
//! youki's libcontainer. Every operation checks the container's status first, so a
//! request the OCI spec forbids (starting a running container, deleting a running one
//! without force, killing a stopped one) fails with a clear error and changes nothing.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;
use strata_cgroups::{Cgroup, CgroupStats};

use crate::bundle::Bundle;
use crate::error::RuntimeError;
use crate::id::ContainerId;
use crate::state::{ContainerState, OCI_VERSION, Status};

/// The standard streams handed to a container process (absent: inherited).
#[derive(Debug, Default)]
pub struct Stdio {
    /// Standard input.
    pub stdin: Option<OwnedFd>,
    /// Standard output.
    pub stdout: Option<OwnedFd>,
    /// Standard error.
    pub stderr: Option<OwnedFd>,
}

/// Options of `create`.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// Write the container's init PID here.
    pub pid_file: Option<PathBuf>,
    /// Send the terminal's master fd to this AF_UNIX socket (when `process.terminal`).
    pub console_socket: Option<PathBuf>,
    /// Pass this many extra fds (from 3 on) into the container.
    pub preserve_fds: i32,
    /// Use chroot-like MS_MOVE instead of pivot_root (for ramfs roots).
    pub no_pivot: bool,
    /// Standard streams of the container process.
    pub stdio: Stdio,
}

/// Options of `exec`: a further process in a running container.
#[derive(Debug, Default)]
pub struct ExecOptions {
    /// argv (ignored when `process_file` is set).
    pub args: Vec<String>,
    /// Extra environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// User ID.
    pub uid: Option<u32>,
    /// Group ID.
    pub gid: Option<u32>,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// A `process.json` (OCI `process` object) describing the process instead.
    pub process_file: Option<PathBuf>,
    /// Write the process's PID here.
    pub pid_file: Option<PathBuf>,
    /// Console socket for a terminal.
    pub console_socket: Option<PathBuf>,
    /// Return without waiting (the caller does not become the parent that waits).
    pub detach: bool,
    /// Allow exec into a paused container.
    pub ignore_paused: bool,
    /// Standard streams of the process.
    pub stdio: Stdio,
}

/// An OCI runtime rooted at one state directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
}

impl Runtime {
    /// Opens the state root, creating it (mode 0700) if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let root = root.into();
        if !root.is_dir() {
            std::fs::create_dir_all(&root)
                .and_then(|()| set_private(&root))
                .map_err(|source| RuntimeError::Root {
                    path: root.clone(),
                    source,
                })?;
        }
        let root = std::fs::canonicalize(&root).map_err(|source| RuntimeError::Root {
            path: root.clone(),
            source,
        })?;
        Ok(Self { root })
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn container_dir(&self, id: &ContainerId) -> PathBuf {
        self.root.join(id.as_str())
    }

    fn builder(&self, id: &ContainerId) -> Result<ContainerBuilder, RuntimeError> {
        ContainerBuilder::new(id.to_string(), SyscallType::default())
            .with_executor(DefaultExecutor {})
            .with_root_path(&self.root)
            .map_err(|e| RuntimeError::container("setup", id.as_str(), e))
    }

    /// Creates a container from the bundle at `bundle`: namespaces, cgroup, mounts and
    /// hooks are set up and the init process waits for [`Runtime::start`].
    ///
    /// On any failure nothing remains: no state directory, cgroup or process.
    pub fn create(
        &self,
        id: &ContainerId,
        bundle: &Path,
        options: CreateOptions,
    ) -> Result<ContainerState, RuntimeError> {
        if self.container_dir(id).exists() {
            return Err(RuntimeError::AlreadyExists(id.to_string()));
        }
        let bundle = Bundle::load(bundle)?;
        let mut builder = self
            .builder(id)?
            .with_pid_file(options.pid_file.as_ref())
            .map_err(|e| RuntimeError::container("create", id.as_str(), e))?
            .with_console_socket(options.console_socket.as_ref())
            .with_preserved_fds(options.preserve_fds);
        builder = with_stdio(builder, options.stdio);
        let result = builder
            .validate_id()
            .and_then(|b| {
                b.as_init(&bundle.path)
                    .with_systemd(false)
                    .with_detach(true)
                    .with_no_pivot(options.no_pivot)
                    .build()
            })
            .map_err(|e| RuntimeError::container("create", id.as_str(), e));
        match result {
            Ok(container) => Ok(describe(&container, bundle.rootfs)),
            Err(err) => {
                self.remove_leftovers(id, &bundle);
                Err(err)
            }
        }
    }

    /// Removes what a failed create may have left: the state dir and the cgroup.
    fn remove_leftovers(&self, id: &ContainerId, bundle: &Bundle) {
        let dir = self.container_dir(id);
        if dir.exists()
            && let Err(err) = std::fs::remove_dir_all(&dir)
        {
            tracing::warn!(container = %id, path = %dir.display(), "cannot remove state: {err}");
        }
        let cgroup_path = libcontainer_cgroup_path(bundle, id);
        if let Ok(cgroup) = Cgroup::open(&cgroup_path)
            && cgroup.exists()
        {
            kill_every_process(&cgroup);
            if let Err(err) = cgroup.remove() {
                tracing::warn!(container = %id, "cannot remove cgroup: {err}");
            }
        }
    }

    fn load(&self, id: &ContainerId) -> Result<Container, RuntimeError> {
        let dir = self.container_dir(id);
        if !dir.join("state.json").exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        Container::load(dir).map_err(|e| RuntimeError::container("load", id.as_str(), e))
    }

    /// Runs the user program of a created container.
    pub fn start(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let mut container = self.load(id)?;
        let status = Status::from(container.status());
        if !status.can_start() {
            return Err(wrong_state(id, status, "start", "created"));
        }
        container
            .start()
            .map_err(|e| RuntimeError::container("start", id.as_str(), e))
    }

    /// The container's state document.
    pub fn state(&self, id: &ContainerId) -> Result<ContainerState, RuntimeError> {
        let container = self.load(id)?;
        let rootfs = crate::bundle::rootfs_of(container.bundle()).unwrap_or_default();
        Ok(describe(&container, rootfs))
    }

    /// Sends `signal` to the init process (or, with `all`, to every process).
    pub fn kill(&self, id: &ContainerId, signal: Signal, all: bool) -> Result<(), RuntimeError> {
        let mut container = self.load(id)?;
        let status = Status::from(container.status());
        if !(status.can_kill() || all && status == Status::Stopped) {
            return Err(wrong_state(
                id,
                status,
                "kill",
                "created, running or paused",
            ));
        }
        container
            .kill(signal, all)
            .map_err(|e| RuntimeError::container("kill", id.as_str(), e))
    }

    /// Deletes a container: runs poststop hooks and removes its cgroup, mounts and state.
    /// A running container needs `force` (then every process of it is killed first).
    ///
    /// With `force`, a container whose creator died half-way (state `creating`, maybe no
    /// init PID, maybe processes still in its cgroup) is cleaned up too.
    pub fn delete(&self, id: &ContainerId, force: bool) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id);
        let mut container = match self.load(id) {
            Ok(container) => container,
            // A create killed before its state was complete: state.json missing or torn.
            Err(err) if force && dir.exists() => {
                return match remove_half_created(id, &self.root, &dir) {
                    Ok(()) => {
                        tracing::warn!(container = %id, "removed a half-created container: {err}");
                        Ok(())
                    }
                    // Not half-created after all: another process (the monitor of a
                    // detached container) was deleting it, and finished first.
                    Err(_) if !dir.exists() => Ok(()),
                    Err(other) => Err(other),
                };
            }
            Err(err) => return Err(err),
        };
        let status = Status::from(container.status());
        if !force && !status.can_delete() {
            return Err(wrong_state(
                id,
                status,
                "delete",
                "stopped or created (or use --force)",
            ));
        }
        // Only a forced delete needs the cgroup here (libcontainer opens its own).
        let cgroup = force
            .then(|| container.spec().ok())
            .flatten()
            .and_then(|config| Cgroup::open(&config.cgroup_path).ok());
        // The creator died part-way: its forks may not have joined the cgroup yet. The
        // saved status tells (a refreshed one reads `stopped` while no init PID is known).
        let saved = libcontainer::container::state::State::load(&dir).map(|s| s.status);
        if force
            && matches!(
                saved,
                Ok(libcontainer::container::ContainerStatus::Creating)
            )
        {
            kill_orphans_of_create(&self.root, id);
        }
        if let Some(cgroup) = &cgroup {
            kill_every_process(cgroup);
        }
        match container.delete(force) {
            Ok(()) => Ok(()),
            // Another process (e.g. the monitor of a detached container) deleted it
            // at the same time: the work is done.
            Err(_) if !dir.exists() => Ok(()),
            Err(err) if force => {
                // libcontainer gave up (e.g. its config was never written, or the cgroup
                // was still busy): finish the job here rather than leave debris.
                tracing::warn!(container = %id, "completing a forced delete: {}", crate::error::flatten(&err));
                if let Some(cgroup) = &cgroup {
                    kill_every_process(cgroup);
                    cgroup.remove().map_err(|source| RuntimeError::Cgroup {
                        id: id.to_string(),
                        source,
                    })?;
                }
                match remove_state_dir(&dir) {
                    Err(RuntimeError::Root { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Ok(())
                    }
                    other => other,
                }
            }
            Err(err) => Err(RuntimeError::container("delete", id.as_str(), err)),
        }
    }

    /// Every container under the root, sorted by ID.
    pub fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let entries = std::fs::read_dir(&self.root).map_err(|source| RuntimeError::Root {
            path: self.root.clone(),
            source,
        })?;
        let mut states = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(id) = ContainerId::new(name) else {
                continue;
            };
            match self.state(&id) {
                Ok(state) => states.push(state),
                Err(RuntimeError::NotFound(_)) => {}
                Err(err) => tracing::warn!(container = %id, "skipping unreadable state: {err}"),
            }
        }
        states.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(states)
    }

    fn cgroup(&self, id: &ContainerId) -> Result<Cgroup, RuntimeError> {
        let container = self.load(id)?;
        let config = container
            .spec()
            .map_err(|e| RuntimeError::container("read config", id.as_str(), e))?;
        Cgroup::open(&config.cgroup_path).map_err(|source| RuntimeError::Cgroup {
            id: id.to_string(),
            source,
        })
    }

    /// PIDs (host view) of every process in the container.
    pub fn pids(&self, id: &ContainerId) -> Result<Vec<i32>, RuntimeError> {
        let mut pids = self
            .cgroup(id)?
            .pids()
            .map_err(|source| RuntimeError::Cgroup {
                id: id.to_string(),
                source,
            })?;
        pids.sort_unstable();
        Ok(pids)
    }

    /// Resource figures from the container's cgroup.
    pub fn stats(&self, id: &ContainerId) -> Result<CgroupStats, RuntimeError> {
        self.cgroup(id)?
            .stats()
            .map_err(|source| RuntimeError::Cgroup {
                id: id.to_string(),
                source,
            })
    }

    /// Freezes every process of a running container.
    pub fn pause(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let mut container = self.load(id)?;
        let status = Status::from(container.status());
        if status != Status::Running {
            return Err(wrong_state(id, status, "pause", "running"));
        }
        container
            .pause()
            .map_err(|e| RuntimeError::container("pause", id.as_str(), e))
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let mut container = self.load(id)?;
        let status = Status::from(container.status());
        if status != Status::Paused {
            return Err(wrong_state(id, status, "resume", "paused"));
        }
        container
            .resume()
            .map_err(|e| RuntimeError::container("resume", id.as_str(), e))
    }

    /// Starts a further process inside a running container and returns its host PID.
    /// Unless `detach`, the process is a child of the caller, who may wait for it.
    pub fn exec(&self, id: &ContainerId, options: ExecOptions) -> Result<i32, RuntimeError> {
        let container = self.load(id)?;
        let status = Status::from(container.status());
        if status != Status::Running && !(options.ignore_paused && status == Status::Paused) {
            return Err(wrong_state(id, status, "exec", "running"));
        }
        // Like runc: what the caller leaves unset comes from the container's own process
        // (user, groups, working directory), not from root in `/`.
        let mut options = options;
        if options.process_file.is_none()
            && let Ok(spec) = Spec::load(container.bundle().join("config.json"))
            && let Some(process) = spec.process()
        {
            let user = process.user();
            if options.uid.is_none() {
                options.uid = Some(user.uid());
                if options.additional_gids.is_empty() {
                    options.additional_gids = user.additional_gids().clone().unwrap_or_default();
                }
            }
            if options.gid.is_none() {
                options.gid = Some(user.gid());
            }
            if options.cwd.is_none() {
                options.cwd = Some(process.cwd().clone());
            }
        }
        let mut builder = self
            .builder(id)?
            .with_pid_file(options.pid_file.as_ref())
            .map_err(|e| RuntimeError::container("exec", id.as_str(), e))?
            .with_console_socket(options.console_socket.as_ref());
        builder = with_stdio(builder, options.stdio);
        let env: HashMap<String, String> = options
            .env
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let pid = builder
            .as_tenant()
            .with_env(env)
            .with_cwd(options.cwd.as_ref())
            .with_container_args(options.args)
            .with_process(options.process_file.as_ref())
            .with_user(options.uid)
            .with_group(options.gid)
            .with_additional_gids(options.additional_gids)
            .with_detach(options.detach)
            .with_ignore_paused(options.ignore_paused)
            .build()
            .map_err(|e| RuntimeError::container("exec", id.as_str(), e))?;
        Ok(pid.as_raw())
    }
}

fn with_stdio(mut builder: ContainerBuilder, stdio: Stdio) -> ContainerBuilder {
    if let Some(fd) = stdio.stdin {
        builder = builder.with_stdin(fd);
    }
    if let Some(fd) = stdio.stdout {
        builder = builder.with_stdout(fd);
    }
    if let Some(fd) = stdio.stderr {
        builder = builder.with_stderr(fd);
    }
    builder
}

fn wrong_state(
    id: &ContainerId,
    status: Status,
    operation: &'static str,
    needed: &'static str,
) -> RuntimeError {
    RuntimeError::WrongState {
        id: id.to_string(),
        status,
        operation,
        needed,
    }
}

/// The cgroup path libcontainer derives for a bundle (its default is `/youki/<id>`).
fn libcontainer_cgroup_path(bundle: &Bundle, id: &ContainerId) -> PathBuf {
    let configured = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone());
    libcontainer::utils::get_cgroup_path(&configured, id.as_str())
}

fn describe(container: &Container, rootfs: PathBuf) -> ContainerState {
    let status = Status::from(container.status());
    let pid = match status {
        Status::Stopped => 0,
        _ => container.pid().map(|p| p.as_raw()).unwrap_or(0),
    };
    ContainerState {
        oci_version: OCI_VERSION.to_string(),
        id: container.id().to_string(),
        status,
        pid,
        bundle: container.bundle().clone(),
        rootfs,
        created: container.created(),
        owner: container
            .creator()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default(),
        annotations: container.state.annotations.clone().unwrap_or_default(),
    }
}

/// Cleans up after a `create` that died before its state was complete: its forks, the
/// cgroup named in libcontainer's saved config (if it got that far), the state dir.
fn remove_half_created(id: &ContainerId, root: &Path, dir: &Path) -> Result<(), RuntimeError> {
    kill_orphans_of_create(root, id);
    if let Ok(config) = libcontainer::config::YoukiConfig::load(dir)
        && let Ok(cgroup) = Cgroup::open(&config.cgroup_path)
    {
        kill_every_process(&cgroup);
        if cgroup.exists() {
            cgroup.remove().map_err(|source| RuntimeError::Cgroup {
                id: id.to_string(),
                source,
            })?;
        }
    }
    remove_state_dir(dir)
}

/// SIGKILLs a `create` of `id` that is still running or died part-way, and every fork
/// of it that has not joined the container's cgroup, then waits (bounded) until they are
/// gone. Forks carry their creator's argv (naming the ID, the `create`/`run` command and
/// the state root when one was given); libcontainer renames them `youki:[1:INTER]` and
/// `youki:[2:INIT]` but only once they run.
///
/// Note for maintainers: libcontainer sets no parent-death signal on these forks, so a
/// SIGKILLed creator can leave an intermediate that goes on to make the cgroup and an
/// init that waits for `start` forever; this scan is the backstop until that is fixed.
fn kill_orphans_of_create(root: &Path, id: &ContainerId) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id() as i32;
    let root = root.to_string_lossy();
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect();
        let names_id = argv.iter().any(|arg| arg == id.as_str());
        let creates = argv.iter().any(|arg| arg == "create" || arg == "run");
        let other_root = argv
            .iter()
            .position(|arg| arg == "--root")
            .and_then(|i| argv.get(i + 1))
            .is_some_and(|given| {
                std::fs::canonicalize(given).map_or(true, |p| p.to_string_lossy() != root)
            });
        if names_id && creates && !other_root {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            killed.push(pid);
        }
    }
    for _ in 0..200 {
        if killed.iter().all(|pid| !is_alive(*pid)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// True while `pid` exists and is not a zombie.
fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// SIGKILLs every process in `cgroup` until it is empty (bounded: 5 s).
fn kill_every_process(cgroup: &Cgroup) {
    for _ in 0..500 {
        let pids = cgroup.pids().unwrap_or_default();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    tracing::warn!(cgroup = %cgroup.path().display(), "processes survived SIGKILL for 5 s");
}

fn remove_state_dir(dir: &Path) -> Result<(), RuntimeError> {
    std::fs::remove_dir_all(dir).map_err(|source| RuntimeError::Root {
        path: dir.to_path_buf(),
        source,
    })
}

fn set_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}
