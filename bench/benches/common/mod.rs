//! What the pod benchmarks share: a `strata up` on a fresh data dir, memory readings
//! from /proc, and small helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

pub fn flag(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A `/proc/<pid>/smaps_rollup` figure in KiB (`Rss:` or `Pss:`).
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Processes whose command line contains every one of `needles`.
pub fn processes_with(needles: &[&str]) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            needles.iter().all(|n| cmdline.contains(n))
        })
        .collect()
}

/// `strata up` on a free port with its own data dir and the demo images.
pub struct Up {
    /// The running `strata up`, while it runs.
    pub child: Option<Child>,
    /// Its data directory.
    pub data: tempfile::TempDir,
    strata: PathBuf,
    port: u16,
    extra: Vec<String>,
    /// The node's bridge and its pod and service ranges, of its own (not the defaults a
    /// real `strata up` on this machine would use), removed on drop.
    bridge: String,
    cluster_cidr: String,
    service_cidr: String,
}

impl Up {
    /// Builds the demo images into a fresh data dir and starts `strata up` with `extra`
    /// flags (after `--listen`, `--node-name bench-node`, `--kubelet-port 0`).
    pub fn start(strata: &Path, extra: &[&str]) -> Self {
        let data = tempfile::Builder::new()
            .prefix("strata-bench-pods-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let built = Command::new("sh")
            .arg(root.join("scripts/demo-images.sh"))
            .arg(strata)
            .arg(data.path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(built.success(), "demo images");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pid = std::process::id();
        let octet = 100 + pid % 150;
        let mut up = Self {
            child: None,
            data,
            strata: strata.to_path_buf(),
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            bridge: format!("stb{}", pid % 100_000),
            cluster_cidr: format!("10.{octet}.0.0/17"),
            service_cidr: format!("10.{octet}.128.0/17"),
        };
        up.launch();
        up
    }

    /// Starts (again) `strata up` on the same data dir and port.
    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.path().join("up.log"))
            .unwrap();
        let child = Command::new(&self.strata)
            .arg("--data-dir")
            .arg(self.data.path())
            .args(["up", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--gateway-listen", "127.0.0.1:0"])
            .args(["--node-name", "bench-node", "--kubelet-port", "0"])
            .args(["--bridge", &self.bridge])
            .args(["--cluster-cidr", &self.cluster_cidr])
            .args(["--service-cidr", &self.service_cidr])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Stops `strata up` (SIGTERM); its pods keep running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data.path().join("kubeconfig.yaml")
    }

    /// PSS and RSS (KiB) of `strata up`, and the summed PSS of its container monitors
    /// (and their fork server) and how many processes those are.
    pub fn memory(&self) -> (u64, u64, u64, usize) {
        let pid = self.child.as_ref().map_or(0, Child::id);
        let data = self.data.path().to_string_lossy().into_owned();
        let monitors = processes_with(&["__monitor", &data]);
        let monitor_pss = monitors.iter().map(|p| memory_kib(*p, "Pss:")).sum();
        (
            memory_kib(pid, "Pss:"),
            memory_kib(pid, "Rss:"),
            monitor_pss,
            monitors.len(),
        )
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop();
        let strata = self.data.path().to_path_buf();
        let bin = strata_bin();
        let ids = Command::new(&bin)
            .arg("--data-dir")
            .arg(&strata)
            .args(["ps", "-aq"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for id in ids.split_whitespace() {
            let _ = Command::new(&bin)
                .arg("--data-dir")
                .arg(&strata)
                .args(["rm", "-f", id])
                .output();
        }
        if let Ok(pods) = std::fs::read_dir(strata.join("pods")) {
            for pod in pods.flatten() {
                let _ = strata_runtime::Sandbox::at(pod.path().join("sandbox")).remove();
                let uid = pod.file_name().to_string_lossy().into_owned();
                for level in ["", "burstable", "besteffort"] {
                    let group = Path::new("/strata/pods")
                        .join(level)
                        .join(format!("pod{uid}"));
                    let _ = strata_cgroups::group::remove(&group);
                }
            }
        }
        // The bridge and service table outlive the agent by design.
        let _ = Command::new("/bin/busybox")
            .args(["ip", "link", "del", &self.bridge])
            .output();
        let _ = strata_net::services::remove(&strata_agent::proxy::table_name(&self.bridge));
    }
}

pub fn strata_bin() -> PathBuf {
    std::env::var_os("STRATA_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
            target.join("release/strata")
        })
}

/// A pod that sleeps for an hour, labelled `bench=startup`.
pub fn sleeper(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"bench": "startup"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "sleep", "image": "localhost/busybox:latest",
                "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]
            }]
        }
    }))
    .unwrap()
}

pub async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}
