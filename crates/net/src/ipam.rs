//! Address management for one node subnet, kept on disk like CNI's host-local plugin so
//! that it survives agent restarts: one file per address in use, named by the address
//! and holding its owner (a pod UID). A file is made by a hard link, which fails when the
//! name exists, so an address is never handed out twice, also across processes; an
//! exclusive `flock` on the directory's lock file orders allocations between processes.
//! Allocation goes round-robin from the last address handed out, so a freed address is
//! not reused at once (a late packet for a deleted pod does not reach its successor).

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::cidr::Ipv4Net;

/// Errors of the address manager.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every address of the subnet is in use.
    #[error("no free address left in {0}")]
    Exhausted(Ipv4Net),
    /// The subnet is too small to hold a gateway and a pod.
    #[error("subnet {0} is too small for pods (it needs room for a gateway and a pod)")]
    TooSmall(Ipv4Net),
    /// An owner name that cannot be stored.
    #[error("invalid address owner {0:?}")]
    Owner(String),
    /// The directory could not be read or written.
    #[error("cannot {step} {path}")]
    Io {
        /// What was being done.
        step: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The addresses of one subnet: the first host address is the gateway (the bridge's), the
/// rest up to the one before broadcast go to pods.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    subnet: Ipv4Net,
}

const LOCK: &str = "lock";
const LAST: &str = "last-reserved";

impl Ipam {
    /// The manager of `subnet`, keeping its records in `root/<subnet>` (made if missing).
    pub fn open(root: &Path, subnet: Ipv4Net) -> Result<Self, IpamError> {
        if subnet.size() < 4 {
            return Err(IpamError::TooSmall(subnet));
        }
        let dir = root.join(subnet.to_string().replace('/', "_"));
        fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        Ok(Self { dir, subnet })
    }

    /// The subnet.
    pub fn subnet(&self) -> Ipv4Net {
        self.subnet
    }

    /// The gateway address (the subnet's first host address).
    pub fn gateway(&self) -> Ipv4Addr {
        // `open` checked the subnet holds at least four addresses.
        Ipv4Addr::from(u32::from(self.subnet.network()) + 1)
    }

    /// The address of `owner`: the one it holds, else a free one reserved for it now.
    pub fn allocate(&self, owner: &str) -> Result<Ipv4Addr, IpamError> {
        check_owner(owner)?;
        let _lock = self.lock()?;
        if let Some(ip) = self.find(owner)? {
            return Ok(ip);
        }
        let first = 2u32;
        let last = u32::try_from(self.subnet.size() - 2).unwrap_or(u32::MAX);
        let start = self.last_reserved().map_or(first, |n| n + 1);
        let count = last - first + 1;
        for step in 0..count {
            let offset = first + (start.saturating_sub(first) + step) % count;
            let Some(ip) = self.subnet.nth(offset) else {
                continue;
            };
            if self.reserve(ip, owner)? {
                let path = self.dir.join(LAST);
                fs::write(&path, ip.to_string()).map_err(io("write", &path))?;
                return Ok(ip);
            }
        }
        Err(IpamError::Exhausted(self.subnet))
    }

    /// The address `owner` holds, if any.
    pub fn lookup(&self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        self.find(owner)
    }

    /// Frees the address of `owner`; returns it, or `None` when it held none.
    pub fn release(&self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        let _lock = self.lock()?;
        let Some(ip) = self.find(owner)? else {
            return Ok(None);
        };
        let path = self.dir.join(ip.to_string());
        fs::remove_file(&path).map_err(io("remove", &path))?;
        Ok(Some(ip))
    }

    /// Every address in use with its owner, in address order.
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, IpamError> {
        let entries = fs::read_dir(&self.dir).map_err(io("read", &self.dir))?;
        let mut found = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io("read", &self.dir))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let path = entry.path();
            let owner = fs::read_to_string(&path).map_err(io("read", &path))?;
            found.push((ip, owner));
        }
        found.sort();
        Ok(found)
    }

    fn find(&self, owner: &str) -> Result<Option<Ipv4Addr>, IpamError> {
        Ok(self
            .allocations()?
            .into_iter()
            .find(|(_, held_by)| held_by == owner)
            .map(|(ip, _)| ip))
    }

    /// Records `ip` for `owner` unless it is taken; true when it was free.
    fn reserve(&self, ip: Ipv4Addr, owner: &str) -> Result<bool, IpamError> {
        let path = self.dir.join(ip.to_string());
        if path.exists() {
            return Ok(false);
        }
        // Written whole under a temporary name, then linked into place: the link fails if
        // the address is taken, and a crash never leaves a record without its owner.
        let temp = self.dir.join(format!(".{ip}.{}", std::process::id()));
        let mut file = fs::File::create(&temp).map_err(io("create", &temp))?;
        let written = file
            .write_all(owner.as_bytes())
            .and_then(|()| file.sync_all());
        let linked = written.and_then(|()| fs::hard_link(&temp, &path));
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(source) => Err(IpamError::Io {
                step: "record",
                path,
                source,
            }),
        }
    }

    fn last_reserved(&self) -> Option<u32> {
        let text = fs::read_to_string(self.dir.join(LAST)).ok()?;
        self.subnet.offset_of(text.trim().parse().ok()?)
    }

    fn lock(&self) -> Result<Flock<fs::File>, IpamError> {
        let path = self.dir.join(LOCK);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| IpamError::Io {
            step: "lock",
            path,
            source: errno.into(),
        })
    }
}

fn check_owner(owner: &str) -> Result<(), IpamError> {
    if owner.is_empty() || owner.len() > 253 || owner.chars().any(|c| c.is_control()) {
        return Err(IpamError::Owner(owner.to_string()));
    }
    Ok(())
}

fn io(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> IpamError {
    let path = path.to_path_buf();
    move |source| IpamError::Io { step, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn ipam(dir: &Path, cidr: &str) -> Ipam {
        Ipam::open(dir, cidr.parse().unwrap()).unwrap()
    }

    #[test]
    fn hands_out_each_address_once_and_keeps_owners_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = ipam(dir.path(), "10.42.7.0/29");
        assert_eq!(first.gateway(), Ipv4Addr::new(10, 42, 7, 1));
        let mut seen = HashSet::new();
        for pod in ["a", "b", "c", "d", "e"] {
            let ip = first.allocate(pod).unwrap();
            assert!(seen.insert(ip), "{ip} handed out twice");
            assert!(
                (2..=6).contains(&ip.octets()[3]),
                "{ip} is the gateway or broadcast"
            );
        }
        assert!(matches!(first.allocate("f"), Err(IpamError::Exhausted(_))));
        // A restarted agent sees the same owners and gets the same answers.
        let again = ipam(dir.path(), "10.42.7.0/29");
        assert_eq!(
            again.allocate("c").unwrap(),
            first.lookup("c").unwrap().unwrap()
        );
        assert_eq!(again.allocations().unwrap().len(), 5);
    }

    #[test]
    fn released_addresses_come_back_only_after_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = ipam(dir.path(), "10.42.0.0/24");
        let a = ipam.allocate("a").unwrap();
        assert_eq!(ipam.release("a").unwrap(), Some(a));
        assert_eq!(ipam.release("a").unwrap(), None);
        let b = ipam.allocate("b").unwrap();
        assert_ne!(a, b, "a freed address is not reused at once");
        assert_eq!(ipam.lookup("a").unwrap(), None);
    }

    #[test]
    fn concurrent_allocations_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let shared = ipam(dir.path(), "10.42.1.0/26");
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let ipam = shared.clone();
                std::thread::spawn(move || {
                    (0..7)
                        .map(|i| ipam.allocate(&format!("pod-{t}-{i}")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Ipv4Addr> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), all.len());
        assert_eq!(shared.allocations().unwrap().len(), 56);
    }

    #[test]
    fn rejects_bad_owners_and_tiny_subnets() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Ipam::open(dir.path(), "10.0.0.0/31".parse().unwrap()),
            Err(IpamError::TooSmall(_))
        ));
        let ipam = ipam(dir.path(), "10.42.0.0/24");
        assert!(matches!(ipam.allocate(""), Err(IpamError::Owner(_))));
        assert!(matches!(ipam.allocate("a\nb"), Err(IpamError::Owner(_))));
    }
}
