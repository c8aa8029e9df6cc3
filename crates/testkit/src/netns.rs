//! Network namespaces made by a test ([`TestNetns`]): held by a bind mount of their nsfs
//! file in a temporary directory, as `ip netns add` does, and removed on drop, also when
//! the test fails. Threads that enter one do so through [`TestNetns::run`], which keeps
//! the switch on a thread of its own.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// A fresh network namespace with loopback up, removed on drop.
pub struct TestNetns {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl TestNetns {
    /// Makes the namespace. Panics when it cannot: this is test setup.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-netns-")
            .tempdir()
            .expect("temporary dir");
        let file = dir.path().join("net");
        std::fs::File::create(&file).expect("netns file");
        let target = file.clone();
        std::thread::spawn(move || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare the network namespace");
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .expect("hold the network namespace");
            let up = std::process::Command::new("/bin/busybox")
                .args(["ip", "link", "set", "lo", "up"])
                .status()
                .expect("busybox ip");
            assert!(up.success(), "loopback up");
        })
        .join()
        .expect("netns thread");
        Self { _dir: dir, file }
    }

    /// The namespace's file (what `setns` and netlink's `IFLA_NET_NS_FD` take).
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// Runs `f` on a thread inside the namespace and returns its result.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let file = std::fs::File::open(&self.file).expect("netns file");
        std::thread::spawn(move || {
            nix::sched::setns(&file, CloneFlags::CLONE_NEWNET).expect("enter the namespace");
            f()
        })
        .join()
        .expect("thread in the namespace")
    }
}

impl Default for TestNetns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.file, MntFlags::MNT_DETACH);
    }
}
