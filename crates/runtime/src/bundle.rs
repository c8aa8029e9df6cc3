//! Loading and checking an OCI bundle before anything is created.
//!
//! Every problem a user can fix (a missing directory, malformed JSON, a missing rootfs,
//! a capability or rlimit this host cannot grant, an option Strata does not implement)
//! is found here and reported with the file and field it concerns, so a failed create
//! leaves nothing behind.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, PosixRlimitType, Spec};

/// Why a bundle cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle directory does not exist.
    #[error("bundle directory {0} does not exist")]
    Missing(PathBuf),
    /// `config.json` is missing or unreadable.
    #[error("cannot read {path}")]
    ReadConfig {
        /// Path of config.json.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not a valid runtime spec.
    #[error("{path} is not a valid OCI runtime config: {source}")]
    ParseConfig {
        /// Path of config.json.
        path: PathBuf,
        /// serde's error, with line and column.
        source: serde_json::Error,
    },
    /// The spec's version is not 1.x.
    #[error("{path}: ociVersion {version:?} is not supported (1.x is)")]
    Version {
        /// Path of config.json.
        path: PathBuf,
        /// The version given.
        version: String,
    },
    /// A required field is absent.
    #[error("{path}: {field} is required")]
    MissingField {
        /// Path of config.json.
        path: PathBuf,
        /// The field path, e.g. `root.path`.
        field: &'static str,
    },
    /// The root file system directory does not exist.
    #[error("root.path {0} does not exist or is not a directory")]
    RootfsMissing(PathBuf),
    /// A field holds a value Strata does not implement.
    #[error("{field}: {reason}")]
    Unsupported {
        /// The field path.
        field: String,
        /// What is unsupported.
        reason: String,
    },
    /// A capability is requested that this runtime does not hold itself.
    #[error(
        "process.capabilities.{set}: {cap} is not in this runtime's bounding set (the host withholds it), so no container can be given it"
    )]
    CapabilityUnavailable {
        /// The capability set named in the spec.
        set: &'static str,
        /// The capability.
        cap: String,
    },
    /// An rlimit's hard value exceeds the runtime's own and cannot be raised.
    #[error(
        "process.rlimits {kind}: hard limit {requested} exceeds this runtime's own hard limit {current}, and raising it needs CAP_SYS_RESOURCE, which the host withholds; ask for at most {current}"
    )]
    RlimitTooHigh {
        /// The rlimit type, e.g. RLIMIT_NOFILE.
        kind: String,
        /// The hard limit requested.
        requested: u64,
        /// The runtime's current hard limit.
        current: u64,
    },
}

/// A bundle whose config has been read and checked.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub path: PathBuf,
    /// The parsed spec.
    pub spec: Spec,
    /// Absolute path of the root file system.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Reads `<dir>/config.json` and checks it against this host.
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let path = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        if !path.is_dir() {
            return Err(BundleError::Missing(path));
        }
        let config_path = path.join("config.json");
        let file = File::open(&config_path).map_err(|source| BundleError::ReadConfig {
            path: config_path.clone(),
            source,
        })?;
        let spec: Spec = serde_json::from_reader(BufReader::new(file)).map_err(|source| {
            BundleError::ParseConfig {
                path: config_path.clone(),
                source,
            }
        })?;
        if !spec.version().starts_with("1.") {
            return Err(BundleError::Version {
                path: config_path,
                version: spec.version().clone(),
            });
        }
        let root = spec.root().as_ref().ok_or(BundleError::MissingField {
            path: config_path.clone(),
            field: "root.path",
        })?;
        if spec.process().is_none() {
            return Err(BundleError::MissingField {
                path: config_path,
                field: "process",
            });
        }
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            path.join(root.path())
        };
        if !rootfs.is_dir() {
            return Err(BundleError::RootfsMissing(rootfs));
        }
        check_supported(&spec)?;
        let host = HostPrivileges::current();
        check_capabilities(&spec, &host)?;
        check_rlimits(&spec, &host)?;
        Ok(Self { path, spec, rootfs })
    }
}

/// The absolute rootfs path a bundle's config names, read without the full checks of
/// [`Bundle::load`] (for `state`, which must stay cheap).
pub fn rootfs_of(bundle: &Path) -> Option<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Root {
        path: PathBuf,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        root: Root,
    }
    let file = File::open(bundle.join("config.json")).ok()?;
    let config: Config = serde_json::from_reader(BufReader::new(file)).ok()?;
    Some(if config.root.path.is_absolute() {
        config.root.path
    } else {
        bundle.join(config.root.path)
    })
}

fn check_supported(spec: &Spec) -> Result<(), BundleError> {
    let Some(linux) = spec.linux() else {
        return Err(BundleError::Unsupported {
            field: "linux".to_string(),
            reason: "only Linux containers are supported; the linux section is required"
                .to_string(),
        });
    };
    if linux.intel_rdt().is_some() {
        return Err(BundleError::Unsupported {
            field: "linux.intelRdt".to_string(),
            reason: "Intel RDT (resctrl) is not supported".to_string(),
        });
    }
    if let Some(propagation) = linux.rootfs_propagation()
        && !matches!(
            propagation.as_str(),
            "shared" | "slave" | "private" | "unbindable"
        )
    {
        return Err(BundleError::Unsupported {
            field: "linux.rootfsPropagation".to_string(),
            reason: format!("{propagation:?} is not one of shared, slave, private or unbindable"),
        });
    }
    let mut seen = HashSet::new();
    for (index, ns) in linux.namespaces().iter().flatten().enumerate() {
        if !seen.insert(ns.typ()) {
            return Err(BundleError::Unsupported {
                field: format!("linux.namespaces[{index}]"),
                reason: format!("namespace type {} is listed twice", ns.typ()),
            });
        }
    }
    if let Some(process) = spec.process()
        && process.args().as_ref().is_none_or(|args| args.is_empty())
    {
        return Err(BundleError::Unsupported {
            field: "process.args".to_string(),
            reason: "at least one argument (the program to run) is required".to_string(),
        });
    }
    Ok(())
}

/// What the runtime process itself may grant.
#[derive(Debug, Clone)]
pub struct HostPrivileges {
    /// The runtime's bounding set.
    pub bounding: HashSet<caps::Capability>,
    /// Whether the runtime holds CAP_SYS_RESOURCE effectively.
    pub sys_resource: bool,
}

impl HostPrivileges {
    /// Reads the current process's privileges.
    pub fn current() -> Self {
        let bounding = caps::read(None, caps::CapSet::Bounding).unwrap_or_default();
        let sys_resource = caps::has_cap(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_RESOURCE,
        )
        .unwrap_or(false);
        Self {
            bounding,
            sys_resource,
        }
    }
}

fn check_capabilities(spec: &Spec, host: &HostPrivileges) -> Result<(), BundleError> {
    let Some(caps) = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
    else {
        return Ok(());
    };
    let sets: [(&'static str, &Option<HashSet<Capability>>); 4] = [
        ("permitted", caps.permitted()),
        ("effective", caps.effective()),
        ("inheritable", caps.inheritable()),
        ("ambient", caps.ambient()),
    ];
    for (set, wanted) in sets {
        let mut wanted: Vec<_> = wanted.iter().flatten().collect();
        wanted.sort_by_key(|cap| cap.to_string());
        for cap in wanted {
            let host_cap = libcontainer::capabilities::CapabilityExt::to_cap(cap);
            if !host.bounding.contains(&host_cap) {
                return Err(BundleError::CapabilityUnavailable {
                    set,
                    cap: host_cap.to_string(),
                });
            }
        }
    }
    Ok(())
}

fn check_rlimits(spec: &Spec, host: &HostPrivileges) -> Result<(), BundleError> {
    if host.sys_resource {
        return Ok(());
    }
    let Some(rlimits) = spec.process().as_ref().and_then(|p| p.rlimits().as_ref()) else {
        return Ok(());
    };
    for rlimit in rlimits {
        let Some(resource) = nix_resource(rlimit.typ()) else {
            continue;
        };
        let Ok((_, current)) = nix::sys::resource::getrlimit(resource) else {
            continue;
        };
        if rlimit.hard() > current {
            return Err(BundleError::RlimitTooHigh {
                kind: rlimit.typ().to_string(),
                requested: rlimit.hard(),
                current,
            });
        }
    }
    Ok(())
}

fn nix_resource(typ: PosixRlimitType) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource;
    Some(match typ {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ContainerConfig;

    fn write_bundle(config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("config.json"), config).unwrap();
        dir
    }

    fn valid_config() -> String {
        let spec = ContainerConfig::new("rootfs", vec!["true".to_string()])
            .to_oci()
            .unwrap();
        serde_json::to_string(&spec).unwrap()
    }

    #[test]
    fn a_valid_bundle_loads_with_an_absolute_rootfs() {
        let dir = write_bundle(&valid_config());
        let bundle = Bundle::load(dir.path()).unwrap();
        assert_eq!(bundle.rootfs, dir.path().join("rootfs"));
    }

    #[test]
    fn malformed_json_names_the_file_and_position() {
        let dir = write_bundle("{\"ociVersion\": \"1.0.2\",");
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn missing_rootfs_and_missing_bundle_are_reported() {
        let dir = write_bundle(&valid_config());
        std::fs::remove_dir(dir.path().join("rootfs")).unwrap();
        assert!(matches!(
            Bundle::load(dir.path()),
            Err(BundleError::RootfsMissing(_))
        ));
        assert!(matches!(
            Bundle::load(&dir.path().join("nope")),
            Err(BundleError::Missing(_))
        ));
    }

    #[test]
    fn a_capability_outside_the_bounding_set_is_refused() {
        let mut config = ContainerConfig::new("rootfs", vec!["true".to_string()]);
        config.cap_add = vec![Capability::SysResource];
        let spec = config.to_oci().unwrap();
        let host = HostPrivileges {
            bounding: [caps::Capability::CAP_CHOWN].into_iter().collect(),
            sys_resource: false,
        };
        let err = check_capabilities(&spec, &host).unwrap_err().to_string();
        assert!(err.contains("process.capabilities.permitted"), "{err}");
    }

    #[test]
    fn raising_a_hard_rlimit_without_sys_resource_is_refused() {
        let mut spec = ContainerConfig::new("rootfs", vec!["true".to_string()])
            .to_oci()
            .unwrap();
        let mut process = spec.process().clone().unwrap();
        let rlimit = oci_spec::runtime::PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(u64::MAX)
            .hard(u64::MAX)
            .build()
            .unwrap();
        process.set_rlimits(Some(vec![rlimit]));
        spec.set_process(Some(process));
        let host = HostPrivileges {
            bounding: HashSet::new(),
            sys_resource: false,
        };
        match check_rlimits(&spec, &host) {
            Err(BundleError::RlimitTooHigh { kind, .. }) => assert_eq!(kind, "RLIMIT_NOFILE"),
            other => {
                // An unlimited hard limit on the test host cannot be exceeded.
                let (_, hard) =
                    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                        .unwrap();
                assert_eq!(hard, u64::MAX, "unexpected {other:?}");
            }
        }
    }
}
