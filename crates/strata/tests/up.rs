#![allow(clippy::unwrap_used)]
//! `strata up` driven by real kubectl: a pod bound to the node runs its init container,
//! shares a volume and the pod's namespaces, reports a crash-looping container with its
//! exit code and back-off, restarts a killed container with restartCount incremented,
//! reports an OOM kill, keeps running containers across a restart of `strata up`, and
//! leaves nothing behind when the pod is deleted.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::strata_bin;

const NODE: &str = "test-node";

/// A running `strata up` on a free loopback port with the demo images.
struct Cloud {
    child: Option<Child>,
    data: tempfile::TempDir,
    listen: String,
}

impl Cloud {
    fn start(test: &str) -> Option<Self> {
        if !strata_testkit::require_root(test) {
            return None;
        }
        if common::kubectl_missing(test) {
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cloud = Cloud {
            child: None,
            data,
            listen: format!("127.0.0.1:{port}"),
        };
        cloud.launch();
        Some(cloud)
    }

    fn launch(&mut self) {
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

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.data.path().join("kubeconfig.yaml"))
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn strata(&self, args: &[&str]) -> String {
        let out = Command::new(strata_bin())
            .arg("--data-dir")
            .arg(self.data.path())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if done() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let log = std::fs::read_to_string(self.data.path().join("up.log")).unwrap_or_default();
        panic!("timed out waiting for {what}\n{log}");
    }

    fn status_of(&self, pod: &str, container: &str) -> serde_json::Value {
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
            let _ = self.kubectl(&[
                "delete",
                "pods",
                "--all",
                "--grace-period=1",
                "--timeout=60s",
            ]);
        }
        self.stop();
        // Whatever is left (a failed test): remove containers, then sandboxes.
        for line in self.strata(&["ps", "-a"]).lines().skip(1) {
            if let Some(id) = line.split_whitespace().next() {
                let _ = Command::new(strata_bin())
                    .arg("--data-dir")
                    .arg(self.data.path())
                    .args(["rm", "-f", id])
                    .output();
            }
        }
        if let Ok(pods) = std::fs::read_dir(self.data.path().join("pods")) {
            for pod in pods.flatten() {
                let _ = strata_runtime::Sandbox::at(pod.path().join("sandbox")).remove();
            }
        }
    }
}

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  nodeName: test-node
  initContainers:
  - name: init
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo made-by-init > /work/index.html"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: httpd
    image: localhost/httpd:latest
    imagePullPolicy: IfNotPresent
    volumeMounts: [{name: work, mountPath: /var/www}]
  - name: probe
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "sleep 1; wget -qO- http://127.0.0.1:8080/ && echo $(MY_NAME) && exit 3"]
    env: [{name: MY_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
  volumes: [{name: work, emptyDir: {}}]
"#;

#[test]
fn pods_run_restart_and_survive_a_restart_of_strata_up() {
    let Some(mut cloud) = Cloud::start("pods_run_restart_and_survive_a_restart_of_strata_up")
    else {
        return;
    };
    let manifest = cloud.data.path().join("pod.yaml");
    std::fs::write(&manifest, POD).unwrap();
    cloud.ok(&["apply", "-f", manifest.to_str().unwrap()]);

    // The init container's file is served by httpd to the other container over the
    // pod's shared loopback; that container exits 3 and is restarted with back-off.
    cloud.wait_for("web to run", || {
        cloud.status_of("web", "httpd")["state"]["running"].is_object()
    });
    cloud.wait_for("the probe container to restart", || {
        cloud.status_of("web", "probe")["restartCount"].as_i64() >= Some(1)
    });
    let probe = cloud.status_of("web", "probe");
    let ended = if probe["state"]["terminated"].is_object() {
        &probe["state"]["terminated"]
    } else {
        &probe["lastState"]["terminated"]
    };
    assert_eq!(ended["exitCode"], 3, "{probe}");
    assert_eq!(ended["reason"], "Error", "{probe}");
    let logs = std::fs::read_to_string(
        cloud
            .data
            .path()
            .join("containers")
            .join(
                probe["containerID"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("strata://"),
            )
            .join("container.log"),
    )
    .unwrap_or_default();
    let pod = cloud.json(&["get", "pod", "web"]);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let first_log = std::fs::read_to_string(
        cloud
            .data
            .path()
            .join("containers")
            .join(format!("{uid}-probe-0"))
            .join("container.log"),
    )
    .unwrap_or(logs);
    assert!(first_log.contains("made-by-init"), "{first_log}");
    assert!(first_log.contains(" web"), "{first_log}");
    assert_eq!(pod["status"]["phase"], "Running");
    assert_eq!(
        pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );

    // Kill httpd's process: it comes back with restartCount 1 and the kill as lastState.
    let ps = cloud.strata(&["ps"]);
    let line = ps
        .lines()
        .find(|l| l.starts_with(&format!("{uid}-httpd-0")))
        .unwrap();
    let pid: i32 = line.split_whitespace().last().unwrap().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    cloud.wait_for("httpd to be restarted", || {
        let s = cloud.status_of("web", "httpd");
        s["restartCount"] == 1 && s["state"]["running"].is_object()
    });
    let httpd = cloud.status_of("web", "httpd");
    assert_eq!(httpd["lastState"]["terminated"]["exitCode"], 137, "{httpd}");

    // A restart of strata up adopts the running container: same ID, same count.
    cloud.stop();
    cloud.launch();
    std::thread::sleep(Duration::from_secs(3));
    let after = cloud.status_of("web", "httpd");
    assert_eq!(after["containerID"], httpd["containerID"], "{after}");
    assert_eq!(after["restartCount"], 1);
    assert!(after["state"]["running"].is_object(), "{after}");

    // Deleting the pod removes its containers, volumes and sandbox.
    cloud.ok(&["delete", "pod", "web", "--grace-period=1", "--timeout=60s"]);
    assert!(!cloud.strata(&["ps", "-a"]).contains(&uid));
    assert!(!cloud.data.path().join("pods").join(&uid).exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&uid), "mounts of the pod remain");
}

#[test]
fn an_oom_killed_container_is_reported_as_such() {
    let Some(cloud) = Cloud::start("an_oom_killed_container_is_reported_as_such") else {
        return;
    };
    let manifest = cloud.data.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  nodeName: test-node
  restartPolicy: Never
  containers:
  - name: hog
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"]
    resources: {limits: {memory: 32Mi}}
"#,
    )
    .unwrap();
    cloud.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    cloud.wait_for("the hog to end", || {
        cloud.json(&["get", "pod", "hog"])["status"]["phase"] == "Failed"
    });
    let hog = cloud.status_of("hog", "hog");
    assert_eq!(hog["state"]["terminated"]["reason"], "OOMKilled", "{hog}");
    assert_eq!(
        cloud.json(&["get", "pod", "hog"])["status"]["qosClass"],
        "Burstable"
    );
}
