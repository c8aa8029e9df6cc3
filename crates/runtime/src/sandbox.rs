//! Pod sandboxes: network, IPC and UTS namespaces that outlive any one container, kept
//! as bind mounts of their nsfs files in a directory (as `ip netns add` does), so that
//! every container of a pod joins the same ones and they survive restarts of both the
//! containers and the agent. Kubernetes runtimes hold them with a "pause" process; a
//! bind mount holds them without a process.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// The namespaces a sandbox shares, in the order they are made.
const KINDS: [(&str, CloneFlags); 3] = [
    ("net", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
];

/// Errors of making or removing a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A step failed.
    #[error("cannot {step} for the sandbox in {dir}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// The sandbox directory.
        dir: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The namespace files of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The directory holding the `net`, `ipc` and `uts` files.
    pub dir: PathBuf,
}

impl Sandbox {
    /// The sandbox kept in `dir` (which may not exist yet).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The network namespace file.
    pub fn net(&self) -> PathBuf {
        self.dir.join("net")
    }

    /// The IPC namespace file.
    pub fn ipc(&self) -> PathBuf {
        self.dir.join("ipc")
    }

    /// The UTS namespace file.
    pub fn uts(&self) -> PathBuf {
        self.dir.join("uts")
    }

    /// True when all three namespaces are held (a bind mount sits on each file).
    pub fn exists(&self) -> bool {
        KINDS.iter().all(|(name, _)| is_nsfs(&self.dir.join(name)))
    }

    /// Makes fresh namespaces with `hostname` and loopback up, unless they exist already.
    /// On failure nothing of the sandbox stays.
    pub fn create(&self, hostname: &str) -> Result<(), SandboxError> {
        if self.exists() {
            return Ok(());
        }
        let result = self.make(hostname);
        if result.is_err() {
            let _ = self.remove();
        }
        result
    }

    fn make(&self, hostname: &str) -> Result<(), SandboxError> {
        let step = |step: &'static str| {
            let dir = self.dir.clone();
            move |source: std::io::Error| SandboxError::Step { step, dir, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(step("create the directory"))?;
        for (name, _) in KINDS {
            std::fs::File::create(self.dir.join(name)).map_err(step("create a namespace file"))?;
        }
        let dir = self.dir.clone();
        let hostname = hostname.to_string();
        // unshare() changes the calling thread only; a thread of its own keeps the
        // caller's namespaces untouched, and ends (dropping its references) once the
        // bind mounts hold the namespaces.
        let made = std::thread::spawn(move || -> Result<(), (&'static str, std::io::Error)> {
            let flags = KINDS
                .iter()
                .fold(CloneFlags::empty(), |all, (_, f)| all | *f);
            nix::sched::unshare(flags).map_err(|e| ("unshare namespaces", e.into()))?;
            nix::unistd::sethostname(&hostname).map_err(|e| ("set the hostname", e.into()))?;
            crate::sys::loopback_up().map_err(|e| ("set loopback up", e))?;
            for (name, _) in KINDS {
                let source = format!("/proc/thread-self/ns/{name}");
                nix::mount::mount(
                    Some(source.as_str()),
                    &dir.join(name),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| ("bind-mount a namespace", e.into()))?;
            }
            Ok(())
        })
        .join();
        match made {
            Ok(Ok(())) => Ok(()),
            Ok(Err((what, source))) => Err(step(what)(source)),
            Err(_) => Err(step("make namespaces")(std::io::Error::other(
                "the namespace thread panicked",
            ))),
        }
    }

    /// Opens a TCP connection to `addr` from inside the sandbox's network namespace (how
    /// the agent reaches a pod's ports before pods have addresses of their own: probes,
    /// port forwarding). The socket stays in the sandbox's namespace after this returns.
    pub fn connect(
        &self,
        addr: std::net::SocketAddr,
        timeout: std::time::Duration,
    ) -> std::io::Result<std::net::TcpStream> {
        let net = std::fs::File::open(self.net())?;
        if !is_nsfs(&self.net()) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no network namespace is held at {}", self.net().display()),
            ));
        }
        // setns() moves the calling thread only; a short-lived thread of its own leaves
        // the caller in its namespace.
        std::thread::spawn(move || {
            nix::sched::setns(&net, CloneFlags::CLONE_NEWNET)?;
            std::net::TcpStream::connect_timeout(&addr, timeout)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the connecting thread panicked")))
    }

    /// Releases the namespaces and removes the directory; a sandbox that is already gone
    /// is fine.
    pub fn remove(&self) -> Result<(), SandboxError> {
        for (name, _) in KINDS {
            let path = self.dir.join(name);
            while is_nsfs(&path) {
                if let Err(err) = nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
                    return Err(SandboxError::Step {
                        step: "unmount a namespace",
                        dir: self.dir.clone(),
                        source: err.into(),
                    });
                }
            }
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SandboxError::Step {
                step: "remove the directory",
                dir: self.dir.clone(),
                source,
            }),
        }
    }
}

/// True when `path` is a namespace file (a bind mount of nsfs).
fn is_nsfs(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(path).is_ok_and(|fs| fs.filesystem_type().0 == NSFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_held_and_released() {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIP namespaces_are_held_and_released: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::at(dir.path().join("sb"));
        sandbox.create("pod-a").unwrap();
        assert!(sandbox.exists());
        let host = std::fs::read_link("/proc/self/ns/net").unwrap();
        let held = std::fs::metadata(sandbox.net()).unwrap();
        let ours = std::fs::metadata("/proc/self/ns/net").unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(
            held.ino(),
            ours.ino(),
            "the sandbox got the host's network namespace"
        );
        assert_eq!(std::fs::read_link("/proc/self/ns/net").unwrap(), host);
        // A listener on the host's loopback is not reachable from the sandbox's.
        let host_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = host_listener.local_addr().unwrap().port();
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let timeout = std::time::Duration::from_secs(2);
        let refused = sandbox.connect(addr, timeout).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(std::net::TcpStream::connect_timeout(&addr, timeout).is_ok());
        // One inside it is.
        let net = std::fs::File::open(sandbox.net()).unwrap();
        let inside = std::thread::spawn(move || {
            nix::sched::setns(&net, CloneFlags::CLONE_NEWNET).unwrap();
            std::net::TcpListener::bind("127.0.0.1:0").unwrap()
        })
        .join()
        .unwrap();
        let inside_addr = inside.local_addr().unwrap();
        assert!(sandbox.connect(inside_addr, timeout).is_ok());
        drop(inside);
        sandbox.create("pod-a").unwrap();
        sandbox.remove().unwrap();
        assert!(!sandbox.dir.exists());
        sandbox.remove().unwrap();
    }
}
