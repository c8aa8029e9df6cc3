//! A running `strata up` driven by real kubectl, for the end-to-end tests: a private
//! data dir with the demo images, free loopback ports (API server and kubelet API), and
//! cleanup of pods, containers and sandboxes on drop, also when a test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::strata_bin;

/// The node name the tests' `strata up` registers.
pub const NODE: &str = "test-node";

/// A running `strata up` on a free loopback port with the demo images.
pub struct Cloud {
    child: Option<Child>,
    /// The data directory.
    pub data: tempfile::TempDir,
    listen: String,
    /// The serverless gateway's address (a free loopback port of its own).
    gateway: String,
    /// The node's address (`--node-ip`), when not loopback.
    node_ip: Option<String>,
    /// More `strata up` flags.
    extra: Vec<String>,
    /// The cluster's pod range, of this cloud alone (tests run side by side).
    pub cluster_cidr: String,
    /// The cluster's service range, of this cloud alone.
    pub service_cidr: String,
    /// The bridge of this cloud's node.
    pub bridge: String,
}

/// A pod range, service range and bridge name no other cloud of this run uses.
fn network_of_its_own() -> (String, String, String) {
    static CLOUDS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CLOUDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = std::process::id();
    let octet = 100 + (pid + n) % 150;
    (
        format!("10.{octet}.0.0/17"),
        format!("10.{octet}.128.0/17"),
        format!("stu{}x{}", pid % 10_000, n % 100),
    )
}

impl Cloud {
    /// Starts `strata up`, or returns `None` after printing SKIP.
    pub fn start(test: &str) -> Option<Self> {
        Self::start_on(test, None)
    }

    /// Starts `strata up` with the API server and the node on `ip` (an address of a link
    /// the test made, so that other nodes can reach it), or on loopback.
    pub fn start_on(test: &str, ip: Option<&str>) -> Option<Self> {
        Self::start_with(test, ip, &[])
    }

    /// [`Cloud::start_on`] with more `strata up` flags.
    pub fn start_with(test: &str, ip: Option<&str>, extra: &[&str]) -> Option<Self> {
        if !strata_testkit::require_root(test) {
            return None;
        }
        if super::kubectl_missing(test) {
            return None;
        }
        let data = tempfile::Builder::new()
            .prefix("strata-up-")
            .tempdir()
            .unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-images.sh");
        let built = Command::new("sh")
            .arg(script)
            .arg(strata_bin())
            .arg(data.path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(built.success(), "demo images");
        let host = ip.unwrap_or("127.0.0.1");
        let port = std::net::TcpListener::bind((host, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let gateway_port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (cluster_cidr, service_cidr, bridge) = network_of_its_own();
        let mut cloud = Cloud {
            child: None,
            data,
            listen: format!("{host}:{port}"),
            gateway: format!("127.0.0.1:{gateway_port}"),
            node_ip: ip.map(str::to_string),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            cluster_cidr,
            service_cidr,
            bridge,
        };
        cloud.launch();
        Some(cloud)
    }

    /// Runs `strata up` and waits until its agent registered the node as Ready.
    pub fn launch(&mut self) {
        let log_path = self.data.path().join("up.log");
        let ups = || {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            text.matches(&format!("node {NODE} is up")).count()
        };
        let before = ups();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.data.path().join("up.log"))
            .unwrap();
        let child = Command::new(strata_bin())
            .arg("--data-dir")
            .arg(self.data.path())
            .args(["up", "--listen", &self.listen, "--node-name", NODE])
            .args(["--kubelet-port", "0"])
            .args([
                "--cluster-cidr",
                &self.cluster_cidr,
                "--bridge",
                &self.bridge,
            ])
            .args(["--service-cidr", &self.service_cidr])
            .args(["--gateway-listen", &self.gateway])
            .args(&self.extra)
            .args(match &self.node_ip {
                Some(ip) => vec!["--node-ip", ip, "--tls-san", ip],
                None => vec![],
            })
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // This process's agent registered (a Ready condition may be left from the last
        // run), and the node reports Ready.
        self.wait_for("the node to be Ready", || {
            ups() > before
                && self
                    .kubectl(&[
                        "get",
                        "node",
                        NODE,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                    ])
                    .stdout
                    == b"True"
        });
    }

    /// Stops `strata up` with SIGTERM (its pods keep running).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// The data dir.
    pub fn data_path(&self) -> &std::path::Path {
        self.data.path()
    }

    /// The serverless gateway's `host:port`.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Runs kubectl against this cloud.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.data.path().join("kubeconfig.yaml"))
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs kubectl, asserts success and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with `-o json` and parses the output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Runs the strata binary on this data dir and returns its stdout.
    pub fn strata(&self, args: &[&str]) -> String {
        let out = Command::new(strata_bin())
            .arg("--data-dir")
            .arg(self.data.path())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the strata binary on this data dir and returns its whole output.
    pub fn strata_output(&self, args: &[&str]) -> Output {
        Command::new(strata_bin())
            .arg("--data-dir")
            .arg(self.data.path())
            .args(args)
            .output()
            .unwrap()
    }

    /// Polls `done` for up to 60 s; on timeout panics with the pods and `strata up`'s log.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let pods = self.kubectl(&["get", "pods", "-A", "-o", "wide", "--show-labels"]);
        let log = std::fs::read_to_string(self.data.path().join("up.log")).unwrap_or_default();
        panic!(
            "timed out waiting for {what}\npods:\n{}\nstrata up:\n{log}",
            String::from_utf8_lossy(&pods.stdout)
        );
    }

    /// Writes `yaml` to the data dir and applies it.
    pub fn apply(&self, yaml: &str) -> String {
        let manifest = tempfile::Builder::new()
            .suffix(".yaml")
            .tempfile_in(self.data.path())
            .unwrap();
        std::fs::write(manifest.path(), yaml).unwrap();
        self.ok(&["apply", "-f", manifest.path().to_str().unwrap()])
    }

    /// The containerStatuses entry of `container` in pod `pod`.
    pub fn status_of(&self, pod: &str, container: &str) -> serde_json::Value {
        let pod = self.json(&["get", "pod", pod]);
        pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == container)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Owners first, so that nothing makes new pods while they go.
            let _ = self.kubectl(&[
                "delete",
                "deployments,replicasets,daemonsets,jobs",
                "--all",
                "--cascade=orphan",
                "--timeout=30s",
            ]);
            let _ = self.kubectl(&[
                "delete",
                "pods",
                "--all",
                "--grace-period=1",
                "--timeout=60s",
            ]);
        }
        self.stop();
        // Whatever is left (a failed test): remove containers, then sandboxes and pod
        // cgroups, then the bridge.
        remove_leftovers(self.data.path());
        remove_node_network(&self.bridge);
    }
}

/// Removes a node's bridge and service table (which outlive its agent by design).
pub fn remove_node_network(bridge: &str) {
    let _ = Command::new("/bin/busybox")
        .args(["ip", "link", "del", bridge])
        .output();
    let _ = strata_net::services::remove(&strata_agent::proxy::table_name(bridge));
}

/// Removes what a stopped node agent left under `data_dir` (after a failed test): its
/// containers, then the pods' sandboxes and cgroups.
pub fn remove_leftovers(data_dir: &std::path::Path) {
    let ps = Command::new(strata_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["ps", "-a"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for line in ps.lines().skip(1) {
        if let Some(id) = line.split_whitespace().next() {
            let _ = Command::new(strata_bin())
                .arg("--data-dir")
                .arg(data_dir)
                .args(["rm", "-f", id])
                .output();
        }
    }
    if let Ok(pods) = std::fs::read_dir(data_dir.join("pods")) {
        for pod in pods.flatten() {
            let _ = strata_runtime::Sandbox::at(pod.path().join("sandbox")).remove();
            let uid = pod.file_name().to_string_lossy().into_owned();
            for level in ["", "burstable", "besteffort"] {
                let group = std::path::Path::new("/strata/pods")
                    .join(level)
                    .join(format!("pod{uid}"));
                let _ = strata_cgroups::group::remove(&group);
            }
        }
    }
}
