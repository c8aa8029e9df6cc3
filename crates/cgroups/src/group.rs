//! Parent cgroups that hold the cgroups of several containers, like a pod's: created with
//! limits that bound all of them together (memory, CPU weight and quota, pids), and
//! removed with whatever empty cgroups are left below them. v1 writes each controller's
//! hierarchy; v2 writes the unified one and enables the controllers on the way down.

use std::path::{Path, PathBuf};

use crate::mode::{CGROUP_ROOT, CgroupMode, detect};

/// Limits of a parent cgroup; `None` leaves a figure unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupLimits {
    /// Memory limit in bytes.
    pub memory_bytes: Option<i64>,
    /// CPU weight as v1 shares (2..=262144; 1024 is one core's worth).
    pub cpu_shares: Option<u64>,
    /// CPU quota in microseconds per [`GroupLimits::cpu_period_us`].
    pub cpu_quota_us: Option<i64>,
    /// CFS period in microseconds (100 ms when unset).
    pub cpu_period_us: Option<u64>,
    /// Maximum number of processes.
    pub pids: Option<i64>,
}

/// Why a parent cgroup could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The layout could not be detected.
    #[error("cannot detect the cgroup layout")]
    Detect(#[from] crate::mode::DetectError),
    /// A directory or file of the cgroup could not be written.
    #[error("cannot {step} {path}")]
    Write {
        /// What was being done.
        step: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The default CFS period.
const CPU_PERIOD_US: u64 = 100_000;

/// Creates the cgroup at `path` (relative to the hierarchy roots, like OCI's
/// `cgroupsPath`) if needed and writes `limits` to it.
pub fn ensure(path: &Path, limits: &GroupLimits) -> Result<(), GroupError> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    if detect()?.uses_v1_controllers() {
        ensure_v1(relative, limits)
    } else {
        ensure_v2(relative, limits)
    }
}

fn write(path: PathBuf, value: String) -> Result<(), GroupError> {
    std::fs::write(&path, value).map_err(|source| GroupError::Write {
        step: "write",
        path,
        source,
    })
}

fn make_dir(path: &Path) -> Result<(), GroupError> {
    std::fs::create_dir_all(path).map_err(|source| GroupError::Write {
        step: "create",
        path: path.to_path_buf(),
        source,
    })
}

fn ensure_v1(relative: &Path, limits: &GroupLimits) -> Result<(), GroupError> {
    let mounts = v1_mounts();
    let mount_of = |controller: &str| {
        mounts
            .iter()
            .find(|(_, controllers)| controllers.iter().any(|c| c == controller))
            .map(|(mount, _)| mount.join(relative))
    };
    if let Some(dir) = mount_of("memory") {
        make_dir(&dir)?;
        let limit = limits
            .memory_bytes
            .map_or("-1".to_string(), |b| b.to_string());
        write(dir.join("memory.limit_in_bytes"), limit)?;
    }
    if let Some(dir) = mount_of("cpu") {
        make_dir(&dir)?;
        write(
            dir.join("cpu.shares"),
            limits
                .cpu_shares
                .unwrap_or(1024)
                .clamp(2, 262_144)
                .to_string(),
        )?;
        let period = limits.cpu_period_us.unwrap_or(CPU_PERIOD_US);
        write(dir.join("cpu.cfs_period_us"), period.to_string())?;
        let quota = limits.cpu_quota_us.filter(|q| *q > 0).unwrap_or(-1);
        write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
    }
    if let Some(dir) = mount_of("pids") {
        make_dir(&dir)?;
        let max = limits.pids.filter(|p| *p > 0);
        write(
            dir.join("pids.max"),
            max.map_or("max".into(), |p| p.to_string()),
        )?;
    }
    Ok(())
}

fn ensure_v2(relative: &Path, limits: &GroupLimits) -> Result<(), GroupError> {
    let root = Path::new(CGROUP_ROOT);
    let dir = root.join(relative);
    make_dir(&dir)?;
    // Each ancestor hands the controllers down (errors for controllers the kernel or
    // the parent lacks leave that limit unenforced, as for a container's cgroup).
    let mut ancestor = root.to_path_buf();
    for part in relative.components() {
        for controller in ["+cpu", "+memory", "+pids"] {
            let _ = std::fs::write(ancestor.join("cgroup.subtree_control"), controller);
        }
        ancestor.push(part);
    }
    let memory = limits
        .memory_bytes
        .map_or("max".to_string(), |b| b.to_string());
    write(dir.join("memory.max"), memory)?;
    // v1 shares 2..262144 map onto v2 weights 1..10000 (runc's conversion).
    let shares = limits.cpu_shares.unwrap_or(1024).clamp(2, 262_144);
    let weight = 1 + ((shares - 2) * 9999) / 262_142;
    write(dir.join("cpu.weight"), weight.to_string())?;
    let period = limits.cpu_period_us.unwrap_or(CPU_PERIOD_US);
    let quota = limits
        .cpu_quota_us
        .filter(|q| *q > 0)
        .map_or("max".to_string(), |q| q.to_string());
    write(dir.join("cpu.max"), format!("{quota} {period}"))?;
    let pids = limits.pids.filter(|p| *p > 0);
    write(
        dir.join("pids.max"),
        pids.map_or("max".into(), |p| p.to_string()),
    )?;
    Ok(())
}

/// Removes the cgroup at `path` and every cgroup below it, in every hierarchy; a cgroup
/// that is already gone is fine. Fails when one still holds processes.
pub fn remove(path: &Path) -> Result<(), GroupError> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let roots: Vec<PathBuf> = match detect()? {
        CgroupMode::Unified => vec![PathBuf::from(CGROUP_ROOT)],
        CgroupMode::Legacy | CgroupMode::Hybrid => {
            v1_mounts().into_iter().map(|(mount, _)| mount).collect()
        }
    };
    for root in roots {
        remove_tree(&root.join(relative))?;
    }
    Ok(())
}

/// rmdir of a cgroup directory and its child cgroups, deepest first (cgroup directories
/// hold only virtual files, which rmdir takes along).
fn remove_tree(dir: &Path) -> Result<(), GroupError> {
    let children = match std::fs::read_dir(dir) {
        Ok(children) => children,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(GroupError::Write {
                step: "list",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for child in children.flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&child.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(GroupError::Write {
            step: "remove",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// The v1 hierarchies: mount point and the controllers it carries (from mountinfo).
fn v1_mounts() -> Vec<(PathBuf, Vec<String>)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut right = right.split_whitespace();
            if right.next()? != "cgroup" {
                return None;
            }
            let mount = left.split_whitespace().nth(4)?;
            let options = right.nth(1)?;
            let controllers = options
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro" | "nosuid" | "nodev" | "noexec" | "relatime"))
                .map(str::to_string)
                .collect();
            Some((PathBuf::from(mount), controllers))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_gets_its_limits_and_goes_with_its_children() {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIP a_group_gets_its_limits_and_goes_with_its_children: needs root");
            return;
        }
        let path = PathBuf::from(format!("/strata-test-group-{}", std::process::id()));
        let limits = GroupLimits {
            memory_bytes: Some(64 << 20),
            cpu_shares: Some(512),
            cpu_quota_us: Some(50_000),
            cpu_period_us: None,
            pids: Some(100),
        };
        ensure(&path, &limits).unwrap();
        // Idempotent, and a child (a container's cgroup) may live below.
        ensure(&path, &limits).unwrap();
        let relative = path.strip_prefix("/").unwrap();
        let read = |file: &str| -> String {
            let dir = if detect().unwrap().uses_v1_controllers() {
                let controller = file.split('.').next().unwrap();
                v1_mounts()
                    .into_iter()
                    .find(|(_, c)| c.iter().any(|c| c == controller))
                    .unwrap()
                    .0
            } else {
                PathBuf::from(CGROUP_ROOT)
            };
            std::fs::read_to_string(dir.join(relative).join(file))
                .unwrap()
                .trim()
                .to_string()
        };
        if detect().unwrap().uses_v1_controllers() {
            assert_eq!(read("memory.limit_in_bytes"), (64 << 20).to_string());
            assert_eq!(read("cpu.shares"), "512");
            assert_eq!(read("cpu.cfs_quota_us"), "50000");
        } else {
            assert_eq!(read("memory.max"), (64 << 20).to_string());
            assert_eq!(read("cpu.max"), "50000 100000");
        }
        assert_eq!(read("pids.max"), "100");
        let child = path.join("container-a");
        ensure(&child, &GroupLimits::default()).unwrap();
        remove(&path).unwrap();
        remove(&path).unwrap();
        for (mount, _) in v1_mounts() {
            assert!(
                !mount.join(relative).exists(),
                "{} remains",
                mount.display()
            );
        }
    }
}
