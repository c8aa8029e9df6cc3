//! Shared harness of the end-to-end tests: a private data dir and busybox rootfs per
//! test, the real `strata` binary, and cleanup of every container on drop.

#![allow(dead_code, clippy::unwrap_used)]

pub mod cloud;
pub mod functions;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata_testkit::BusyboxRootfs;

/// The binary under test.
pub fn strata_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_strata"))
}

/// One test's Strata: its own data dir and root file system.
pub struct Harness {
    pub data: tempfile::TempDir,
    pub rootfs: BusyboxRootfs,
}

/// The result of one command, with helpers for assertions.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(out: Output) -> Self {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "unexpected exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    /// Panics unless the command succeeded.
    pub fn ok(self) -> Self {
        self.expect_code(0)
    }
}

impl Harness {
    /// A fresh harness, or `None` (after printing SKIP) when the machine can't run containers.
    pub fn new(test: &str) -> Option<Self> {
        if !strata_testkit::require_root(test) {
            return None;
        }
        Some(Self {
            data: strata_testkit::data_dir().expect("temp data dir"),
            rootfs: BusyboxRootfs::new().expect("busybox rootfs"),
        })
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Runs `strata --data-dir D <args>`.
    pub fn strata(&self, args: &[&str]) -> Run {
        Command::new(strata_bin())
            .arg("--data-dir")
            .arg(self.data.path())
            .args(args)
            .output()
            .expect("spawn strata")
            .into()
    }

    /// Runs `strata run --rootfs R <options> -- <command>`.
    pub fn run(&self, options: &[&str], command: &[&str]) -> Run {
        let rootfs = self.rootfs.path().to_str().expect("utf-8 path");
        let mut args = vec!["run", "--rootfs", rootfs];
        args.extend_from_slice(options);
        args.push("--");
        args.extend_from_slice(command);
        self.strata(&args)
    }

    /// Runs `strata run --rootfs R <options> -- <command>` with `input` on its stdin.
    /// A failed write is ignored: without -i, strata may exit before reading it.
    pub fn run_with_input(&self, options: &[&str], command: &[&str], input: &[u8]) -> Run {
        use std::io::Write;
        let mut child = Command::new(strata_bin())
            .arg("--data-dir")
            .arg(self.data.path())
            .args(["run", "--rootfs"])
            .arg(self.rootfs.path())
            .args(options)
            .arg("--")
            .args(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn strata");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input);
        }
        child.wait_with_output().expect("wait for strata").into()
    }

    /// Builds `localhost/busybox:latest` and `localhost/httpd:latest` with
    /// `scripts/demo-images.sh`, the recipe `make demo-images` uses.
    pub fn demo_images(&self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-images.sh");
        let out: Run = Command::new("sh")
            .arg(script)
            .arg(strata_bin())
            .arg(self.data.path())
            .output()
            .expect("run demo-images.sh")
            .into();
        out.ok();
    }

    /// IDs of every container `strata ps -a` lists.
    pub fn all_ids(&self) -> Vec<String> {
        self.strata(&["ps", "-a", "-q"])
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits (bounded) until `check` holds; returns whether it did.
    pub fn eventually(&self, mut check: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if check() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let ids = self.all_ids();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = self.strata(&args);
        }
        // Last resort when a removal failed: nothing may stay mounted under the data dir.
        let prefix = self.data.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for mount in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
            if mount.starts_with(&prefix) {
                let _ = Command::new("umount").args(["-l", mount]).status();
            }
        }
    }
}

/// True if `cgroup` (e.g. `/strata/ID`) exists in any v1 hierarchy or in cgroup2.
pub fn cgroup_exists(cgroup: &str) -> bool {
    let relative = cgroup.trim_start_matches('/');
    ["memory", "pids", "cpu", "freezer", "devices", "cpuset", ""]
        .iter()
        .any(|controller| {
            Path::new("/sys/fs/cgroup")
                .join(controller)
                .join(relative)
                .is_dir()
        })
}

/// True if any mount on the host lies under `path`.
pub fn host_has_mount_under(path: &Path) -> bool {
    let prefix = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|line| {
            line.split(' ')
                .nth(4)
                .is_some_and(|mount| mount.starts_with(&prefix))
        })
}

/// True (after printing `SKIP <test>: …`) when kubectl is not installed.
pub fn kubectl_missing(test: &str) -> bool {
    let missing = Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err();
    if missing {
        println!("SKIP {test}: kubectl is not installed");
    }
    missing
}
