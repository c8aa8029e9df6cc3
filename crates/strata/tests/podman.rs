//! podman drives `strata-runc` as its OCI runtime (`podman --runtime`), with an image
//! made by `podman import` of the busybox rootfs, so no registry is needed.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Run, strata_bin};
use strata_testkit::BusyboxRootfs;

/// This machine's sandbox lacks CAP_SYS_RESOURCE, and podman 4.3 asks for rlimits above
/// the runtime's own hard limits unless told otherwise.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
];

struct Podman {
    runtime: PathBuf,
    image: String,
    _links: tempfile::TempDir,
}

impl Podman {
    fn new(test: &str) -> Option<Self> {
        if !strata_testkit::require_root(test) {
            return None;
        }
        if Command::new("podman").arg("--version").output().is_err() {
            println!("SKIP {test}: podman is not installed (apt-get install podman)");
            return None;
        }
        // argv[0] dispatch: a symlink named strata-runc makes the binary a plain runtime.
        let links = tempfile::tempdir().unwrap();
        let runtime = links.path().join("strata-runc");
        std::os::unix::fs::symlink(strata_bin(), &runtime).unwrap();
        let rootfs = BusyboxRootfs::new().unwrap();
        let image = format!(
            "localhost/{}:latest",
            strata_testkit::unique_name("strata-test")
        );
        let tarball = links.path().join("rootfs.tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs.path())
            .arg("-cf")
            .arg(&tarball)
            .arg(".")
            .status()
            .unwrap();
        assert!(tar.success(), "tar of the busybox rootfs failed");
        let import = Command::new("podman")
            .arg("import")
            .arg(&tarball)
            .arg(&image)
            .output()
            .unwrap();
        assert!(
            import.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&import.stderr)
        );
        Some(Self {
            runtime,
            image,
            _links: links,
        })
    }

    fn podman(&self, args: &[&str]) -> Run {
        Command::new("podman")
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
            .into()
    }

    fn run(&self, extra: &[&str], command: &[&str]) -> Run {
        // No network: podman's default one is a NAT bridge (cni-podman0 and iptables
        // tables) that would outlive the test, and nothing here needs one.
        let mut args = vec!["run", "--network", "none"];
        args.extend_from_slice(&ULIMITS);
        args.extend_from_slice(extra);
        args.push(&self.image);
        args.extend_from_slice(command);
        self.podman(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[test]
fn podman_runs_containers_through_strata_runc() {
    let Some(p) = Podman::new("podman_runs_containers_through_strata_runc") else {
        return;
    };
    p.run(&["--rm"], &["true"]).ok();
    let out = p
        .run(
            &["--rm", "--hostname", "podbox"],
            &["sh", "-c", "echo $$ $(hostname); exit 3"],
        )
        .expect_code(3);
    assert_eq!(out.stdout, "1 podbox\n");

    // -t: conmon passes a console socket; the runtime sends it the terminal's master fd.
    let tty = p.run(&["--rm", "-t"], &["sh", "-c", "tty"]).ok();
    assert!(tty.stdout.trim().starts_with("/dev/pts/"), "{tty:?}");

    // A detached container, exec into it, stop and remove it.
    let name = strata_testkit::unique_name("podman");
    p.run(&["-d", "--name", &name], &["sleep", "60"]).ok();
    let exec = p
        .podman(&[
            "exec",
            &name,
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '",
        ])
        .ok();
    assert_eq!(exec.stdout, "sleep 60 ");
    p.podman(&["rm", "-f", &name]).ok();
}

#[test]
fn podman_shows_strata_runc_errors() {
    let Some(p) = Podman::new("podman_shows_strata_runc_errors") else {
        return;
    };
    // Without the ulimit flags podman asks for an RLIMIT_NOFILE the host cannot grant.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    if hard >= 1 << 20 {
        println!("SKIP podman_shows_strata_runc_errors: this host grants podman's rlimits");
        return;
    }
    let out = p.podman(&["run", "--network", "none", "--rm", &p.image, "true"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("RLIMIT_NOFILE"), "{}", out.stderr);
}
