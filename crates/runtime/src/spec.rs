//! Plain-Rust container settings turned into an OCI runtime `config.json`.
//!
//! `strata run` (and later the agent) describe a container with [`ContainerConfig`];
//! [`ContainerConfig::to_oci`] makes the spec with Strata's secure defaults: Docker's
//! default capability set, the default seccomp profile, `no_new_privileges`, masked and
//! read-only kernel paths, and fresh pid, mount, uts, ipc, cgroup (and network) namespaces.

use std::path::PathBuf;

use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCpu, LinuxMemory, LinuxNamespace, LinuxNamespaceType,
    LinuxPids, LinuxResources, Mount, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec,
    User,
};

use crate::seccomp;

/// Capabilities a container gets unless told otherwise (Docker's default set).
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::AuditWrite,
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Mknod,
    Capability::NetBindService,
    Capability::NetRaw,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

/// The default `PATH` inside containers.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How the container is networked (pod networking arrives with the `net` crate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// A fresh network namespace with only loopback.
    #[default]
    None,
    /// The host's network namespace.
    Host,
}

/// A bind mount from the host into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Absolute host path.
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: PathBuf,
    /// Mount read-only.
    pub read_only: bool,
}

/// Resource limits, applied through cgroups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceLimits {
    /// Memory limit in bytes (swap is limited to the same figure, so no swap is used).
    pub memory_bytes: Option<i64>,
    /// CPU limit in cores (0.5 = half a core), as a CFS quota over a 100 ms period.
    pub cpus: Option<f64>,
    /// Relative CPU weight (cgroup v1 shares, 2..=262144).
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on, in cpuset syntax (`0-1,3`).
    pub cpuset_cpus: Option<String>,
    /// Maximum number of processes.
    pub pids: Option<i64>,
}

/// The CFS period used for `--cpus`, microseconds (Docker's and Kubernetes' value).
pub const CPU_PERIOD_US: u64 = 100_000;

/// What a container runs and how it is confined, in plain types.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    /// The root file system directory.
    pub rootfs: PathBuf,
    /// Mount the root file system read-only.
    pub read_only_rootfs: bool,
    /// argv of the container's process.
    pub args: Vec<String>,
    /// Environment (`KEY=VALUE`); `PATH` is added when missing.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub cwd: String,
    /// User ID of the process.
    pub uid: u32,
    /// Group ID of the process.
    pub gid: u32,
    /// Supplementary group IDs.
    pub additional_gids: Vec<u32>,
    /// Hostname inside the container's UTS namespace.
    pub hostname: Option<String>,
    /// Host paths bound into the container.
    pub bind_mounts: Vec<BindMount>,
    /// Network mode.
    pub network: NetworkMode,
    /// cgroup limits.
    pub limits: ResourceLimits,
    /// The cgroup path (relative to the hierarchy roots); empty: the runtime's default.
    pub cgroups_path: PathBuf,
    /// Capabilities added to [`DEFAULT_CAPABILITIES`].
    pub cap_add: Vec<Capability>,
    /// Capabilities removed from [`DEFAULT_CAPABILITIES`].
    pub cap_drop: Vec<Capability>,
    /// Apply no seccomp filter at all.
    pub seccomp_unconfined: bool,
    /// Allocate a terminal for the process.
    pub terminal: bool,
    /// `oom_score_adj` of the process.
    pub oom_score_adj: Option<i32>,
    /// A pod sandbox whose network, IPC and UTS namespaces the container joins (then
    /// `network` and `hostname` do not apply; the sandbox has them).
    pub sandbox: Option<crate::Sandbox>,
}

impl ContainerConfig {
    /// A config running `args` in `rootfs` with every default.
    pub fn new(rootfs: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            rootfs: rootfs.into(),
            read_only_rootfs: false,
            args,
            env: Vec::new(),
            cwd: "/".to_string(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            hostname: None,
            bind_mounts: Vec::new(),
            network: NetworkMode::None,
            limits: ResourceLimits::default(),
            cgroups_path: PathBuf::new(),
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            seccomp_unconfined: false,
            terminal: false,
            oom_score_adj: None,
            sandbox: None,
        }
    }

    /// The capability set the process ends up with.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut caps: Vec<Capability> = DEFAULT_CAPABILITIES
            .iter()
            .chain(self.cap_add.iter())
            .filter(|cap| !self.cap_drop.contains(cap))
            .copied()
            .collect();
        caps.sort_by_key(|cap| cap.to_string());
        caps.dedup();
        caps
    }

    /// Builds the OCI runtime spec.
    pub fn to_oci(&self) -> Result<Spec, OciSpecError> {
        let mut spec = Spec::default();
        // 1.0.2: the version every runtime in use accepts (crun 1.8 refuses newer ones).
        spec.set_version("1.0.2".to_string());
        if self.sandbox.is_none() {
            spec.set_hostname(self.hostname.clone().or_else(|| Some("strata".to_string())));
        } else {
            spec.set_hostname(None);
        }

        let mut root = Root::default();
        root.set_path(self.rootfs.clone());
        root.set_readonly(Some(self.read_only_rootfs));
        spec.set_root(Some(root));

        spec.set_process(Some(self.process()?));

        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for bind in &self.bind_mounts {
            let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
            if bind.read_only {
                options.push("ro".to_string());
            }
            let mut mount = Mount::default();
            mount.set_destination(bind.destination.clone());
            mount.set_typ(Some("bind".to_string()));
            mount.set_source(Some(bind.source.clone()));
            mount.set_options(Some(options));
            mounts.push(mount);
        }
        spec.set_mounts(Some(mounts));

        let mut linux = spec.linux().clone().unwrap_or_default();
        let namespaces = [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Cgroup,
        ]
        .into_iter()
        .chain((self.network == NetworkMode::None).then_some(LinuxNamespaceType::Network))
        .filter(|typ| {
            // Joined below instead.
            self.sandbox.is_none()
                || !matches!(
                    typ,
                    LinuxNamespaceType::Uts | LinuxNamespaceType::Ipc | LinuxNamespaceType::Network
                )
        })
        .map(|typ| {
            let mut ns = LinuxNamespace::default();
            ns.set_typ(typ);
            ns
        })
        .chain(self.sandbox.iter().flat_map(|sandbox| {
            [
                (LinuxNamespaceType::Network, sandbox.net()),
                (LinuxNamespaceType::Ipc, sandbox.ipc()),
                (LinuxNamespaceType::Uts, sandbox.uts()),
            ]
            .into_iter()
            .filter(|(typ, _)| {
                *typ != LinuxNamespaceType::Network || self.network == NetworkMode::None
            })
            .map(|(typ, path)| {
                let mut ns = LinuxNamespace::default();
                ns.set_typ(typ);
                ns.set_path(Some(path));
                ns
            })
        }))
        .collect();
        linux.set_namespaces(Some(namespaces));
        if !self.cgroups_path.as_os_str().is_empty() {
            linux.set_cgroups_path(Some(self.cgroups_path.clone()));
        }
        linux.set_resources(Some(self.resources()));
        if !self.seccomp_unconfined {
            let sys_admin = self.capabilities().contains(&Capability::SysAdmin);
            linux.set_seccomp(Some(seccomp::default_profile(sys_admin)?));
        }
        spec.set_linux(Some(linux));
        Ok(spec)
    }

    fn process(&self) -> Result<Process, OciSpecError> {
        let mut process = Process::default();
        process.set_terminal(Some(self.terminal));
        process.set_args(Some(self.args.clone()));
        let mut env = self.env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.to_string());
        }
        if self.terminal && !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".to_string());
        }
        process.set_env(Some(env));
        process.set_cwd(PathBuf::from(&self.cwd));
        let mut user = User::default();
        user.set_uid(self.uid);
        user.set_gid(self.gid);
        if !self.additional_gids.is_empty() {
            user.set_additional_gids(Some(self.additional_gids.clone()));
        }
        process.set_user(user);
        process.set_no_new_privileges(Some(true));
        process.set_oom_score_adj(self.oom_score_adj);

        let caps: std::collections::HashSet<Capability> = self.capabilities().into_iter().collect();
        let mut capabilities = LinuxCapabilities::default();
        capabilities.set_bounding(Some(caps.clone()));
        capabilities.set_effective(Some(caps.clone()));
        capabilities.set_permitted(Some(caps));
        capabilities.set_inheritable(None);
        capabilities.set_ambient(None);
        process.set_capabilities(Some(capabilities));

        let nofile = PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(1024u64)
            .hard(current_hard_nofile())
            .build()?;
        process.set_rlimits(Some(vec![nofile]));
        Ok(process)
    }

    fn resources(&self) -> LinuxResources {
        let limits = &self.limits;
        let mut resources = LinuxResources::default();
        if let Some(bytes) = limits.memory_bytes {
            let mut memory = LinuxMemory::default();
            memory.set_limit(Some(bytes));
            memory.set_swap(Some(bytes));
            resources.set_memory(Some(memory));
        }
        if limits.cpus.is_some() || limits.cpu_shares.is_some() || limits.cpuset_cpus.is_some() {
            let mut cpu = LinuxCpu::default();
            if let Some(cpus) = limits.cpus {
                cpu.set_period(Some(CPU_PERIOD_US));
                cpu.set_quota(Some((cpus * CPU_PERIOD_US as f64).round() as i64));
            }
            cpu.set_shares(limits.cpu_shares);
            cpu.set_cpus(limits.cpuset_cpus.clone());
            resources.set_cpu(Some(cpu));
        }
        if let Some(max) = limits.pids {
            let mut pids = LinuxPids::default();
            pids.set_limit(max);
            resources.set_pids(Some(pids));
        }
        resources
    }
}

/// The runtime's own hard `RLIMIT_NOFILE`: a container may not be given more without
/// `CAP_SYS_RESOURCE`, which some hosts withhold.
fn current_hard_nofile() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, hard)| hard)
        .unwrap_or(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerConfig {
        ContainerConfig::new("/rootfs", vec!["sh".to_string()])
    }

    #[test]
    fn defaults_are_confined() {
        let spec = config().to_oci().unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.no_new_privileges(), Some(true));
        let caps = process.capabilities().as_ref().unwrap();
        let bounding = caps.bounding().as_ref().unwrap();
        assert!(!bounding.contains(&Capability::SysAdmin));
        assert!(bounding.contains(&Capability::Chown));
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_some());
        let types: Vec<_> = linux
            .namespaces()
            .iter()
            .flatten()
            .map(|n| n.typ())
            .collect();
        assert!(types.contains(&LinuxNamespaceType::Network));
        assert!(types.contains(&LinuxNamespaceType::Pid));
        assert!(linux.masked_paths().as_ref().is_some_and(|p| !p.is_empty()));
    }

    #[test]
    fn limits_become_cgroup_resources() {
        let mut cfg = config();
        cfg.limits = ResourceLimits {
            memory_bytes: Some(64 << 20),
            cpus: Some(0.5),
            pids: Some(20),
            ..Default::default()
        };
        let spec = cfg.to_oci().unwrap();
        let resources = spec.linux().as_ref().unwrap().resources().clone().unwrap();
        assert_eq!(resources.memory().unwrap().limit(), Some(64 << 20));
        assert_eq!(resources.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(
            resources.cpu().as_ref().unwrap().period(),
            Some(CPU_PERIOD_US)
        );
        assert_eq!(resources.pids().unwrap().limit(), 20);
    }

    #[test]
    fn host_network_shares_the_namespace_and_caps_can_change() {
        let mut cfg = config();
        cfg.network = NetworkMode::Host;
        cfg.cap_add = vec![Capability::SysAdmin];
        cfg.cap_drop = vec![Capability::NetRaw];
        let caps = cfg.capabilities();
        assert!(caps.contains(&Capability::SysAdmin));
        assert!(!caps.contains(&Capability::NetRaw));
        let spec = cfg.to_oci().unwrap();
        let linux = spec.linux().as_ref().unwrap();
        assert!(
            !linux
                .namespaces()
                .iter()
                .flatten()
                .any(|n| n.typ() == LinuxNamespaceType::Network)
        );
    }
}
