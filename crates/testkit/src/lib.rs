//! Test helpers shared by Strata's crates (dev-dependency only): guards that skip a
//! test with a printed reason when the machine cannot run it, a busybox root file
//! system built from Debian's `busybox-static`, unique names for test objects, and a
//! real OCI registry (`docker-registry`) on loopback ([`registry::TestRegistry`]), and a real
//! API server in-process with kube-rs clients ([`cluster::TestApiServer`]), and network
//! namespaces a test makes and removes ([`netns::TestNetns`]), and the example
//! `wasi:http` component ([`wasm::hello_http`]).

pub mod cluster;
pub mod netns;
pub mod registry;
pub mod wasm;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Returns `true` when the test may go on; otherwise prints `SKIP <test>: <reason>`.
/// Use as `if !testkit::require_root("name") { return; }`.
pub fn require_root(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP {test}: needs root (containers, cgroups and mounts)");
        return false;
    }
    if !Path::new(BUSYBOX).exists() {
        println!("SKIP {test}: {BUSYBOX} is missing (apt-get install busybox-static)");
        return false;
    }
    true
}

/// A busybox root file system in a temporary directory: `/bin/busybox` plus a symlink
/// per applet, `/etc/passwd` and `/etc/group` with root, nobody and a user 1000, and the
/// empty mount points a container needs. Removed on drop.
pub struct BusyboxRootfs {
    dir: tempfile::TempDir,
}

impl BusyboxRootfs {
    /// Builds the root file system.
    pub fn new() -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("strata-rootfs-")
            .tempdir()?;
        build_busybox_rootfs(dir.path())?;
        Ok(Self { dir })
    }

    /// The root file system directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Populates `root` with busybox (see [`BusyboxRootfs`]) by running
/// `scripts/busybox-rootfs.sh`, the one recipe the demo images and `make up` use too.
pub fn build_busybox_rootfs(root: &Path) -> std::io::Result<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-rootfs.sh");
    let output = std::process::Command::new("sh")
        .arg(&script)
        .arg(root)
        .output()?;
    if !output.status.success() {
        return Err(std::io::Error::other(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// A name unique to this process and call, for containers, cgroups and directories.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary Strata data directory, removed on drop.
pub fn data_dir() -> std::io::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix("strata-data-").tempdir()
}
