//! Strata's benchmarks live in `benches/`; each runs Strata and its peers side by side
//! in one run and prints ratios. See `docs/benchmarks.md` for figures. This library holds
//! what they share with the `oci-order` tool.

use std::path::{Path, PathBuf};

use strata_runtime::ContainerConfig;

/// Errors making the benchmark bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The busybox rootfs or a directory could not be made.
    #[error("cannot build the busybox bundle: {0}")]
    Io(#[from] std::io::Error),
    /// Strata's default spec could not be written.
    #[error("cannot write the bundle's config.json: {0}")]
    Config(String),
}

/// The bundle every runtime benchmark (and `oci-order`) runs: busybox from Debian's
/// busybox-static, `/bin/true` in Strata's default spec (default seccomp profile,
/// Docker's capabilities, fresh namespaces), made in `work/bundle`, its containers in
/// the cgroup `cgroups_path`.
pub fn lifecycle_bundle(work: &Path, cgroups_path: &str) -> Result<PathBuf, BundleError> {
    let bundle = work.join("bundle");
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    strata_testkit::build_busybox_rootfs(&rootfs)?;
    let mut config = ContainerConfig::new("rootfs", vec!["/bin/true".to_string()]);
    config.cgroups_path = PathBuf::from(cgroups_path);
    config
        .to_oci()
        .map_err(|err| BundleError::Config(err.to_string()))?
        .save(bundle.join("config.json"))
        .map_err(|err| BundleError::Config(err.to_string()))?;
    Ok(bundle)
}
