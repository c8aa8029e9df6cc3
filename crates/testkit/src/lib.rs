//! Test helpers shared by Strata's crates (dev-dependency only): guards that skip a
//! test with a printed reason when the machine cannot run it, a busybox root file
//! system built from Debian's `busybox-static`, and unique names for test objects.

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

/// Populates `root` with busybox (see [`BusyboxRootfs`]).
pub fn build_busybox_rootfs(root: &Path) -> std::io::Result<()> {
    for dir in [
        "bin",
        "sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "home/user",
        "var/www",
    ] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox"))?;
    let list = std::process::Command::new(BUSYBOX).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link)?;
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n",
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
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
