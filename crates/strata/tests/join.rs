#![allow(clippy::unwrap_used)]
//! `strata agent` joins a second node to a running `strata up`: `strata token create`
//! prints the join command, the agent pins the server's CA by hash, gets its kubelet
//! certificate signed, registers Ready, runs a pod bound to it, and serves `kubectl logs`
//! and `kubectl exec` for it through the API server; a restart reuses its certificate and
//! adopts the pod. A wrong token or CA hash makes it exit non-zero with a one-line error.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cloud::Cloud;
use common::strata_bin;

/// The joined node's name.
const JOINED: &str = "joined-node";

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: far}
spec:
  nodeSelector: {kubernetes.io/hostname: joined-node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo hello-from-the-joined-node; exec sleep 3600"]
"#;

/// A `strata agent` process with its own data dir; on drop deletes the pods bound to its
/// node (while it still runs), stops it, and removes whatever it left.
struct Agent {
    child: Option<Child>,
    data: tempfile::TempDir,
    kubeconfig: PathBuf,
    args: Vec<String>,
}

impl Agent {
    /// An agent that will not get far enough to need images.
    fn bare(cloud: &Cloud, args: Vec<String>) -> Agent {
        Agent {
            child: None,
            data: tempfile::Builder::new()
                .prefix("strata-agent-")
                .tempdir()
                .unwrap(),
            kubeconfig: cloud.data.path().join("kubeconfig.yaml"),
            args,
        }
    }

    /// An agent with the demo images in its data dir.
    fn new(cloud: &Cloud, args: Vec<String>) -> Agent {
        let agent = Agent::bare(cloud, args);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-images.sh");
        let built = Command::new("sh")
            .arg(script)
            .arg(strata_bin())
            .arg(agent.data.path())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(built.success(), "demo images");
        agent
    }

    fn command(&self) -> Command {
        let mut command = Command::new(strata_bin());
        command
            .arg("--data-dir")
            .arg(self.data.path())
            .arg("agent")
            .args(&self.args);
        command
    }

    /// Runs the agent to completion (for the failing cases).
    fn run_to_end(&self) -> Output {
        self.command().stdin(Stdio::null()).output().unwrap()
    }

    fn start(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        self.child = Some(
            self.command()
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    fn log_path(&self) -> PathBuf {
        self.data.path().join("agent.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGTERM, and the exit code.
    fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        child.wait().ok()?.code()
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
}

impl Drop for Agent {
    fn drop(&mut self) {
        let kubeconfig = self.kubeconfig.clone();
        let delete_pods = |how: &[&str]| {
            let _ = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["delete", "pods", "--field-selector"])
                .arg(format!("spec.nodeName={JOINED}"))
                .args(how)
                .output();
        };
        let running = self.child.is_some();
        if running {
            delete_pods(&["--grace-period=1", "--timeout=30s"]);
        }
        self.stop();
        if running {
            // Objects the agent did not get to delete would hold up the Cloud's cleanup;
            // their containers go below.
            delete_pods(&["--force", "--grace-period=0", "--wait=false"]);
        }
        common::cloud::remove_leftovers(self.data.path());
        if let Some(at) = self.args.iter().position(|a| a == "--bridge") {
            common::cloud::remove_node_network(&self.args[at + 1]);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `strata token create`'s join command, split into the arguments after `strata agent`.
fn join_args(cloud: &Cloud) -> Vec<String> {
    let out = Command::new(strata_bin())
        .arg("--data-dir")
        .arg(cloud.data.path())
        .args(["token", "create", "--node", JOINED])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    assert_eq!(words[..2], ["strata", "agent"], "{line}");
    for flag in ["--server", "--token", "--ca-cert-hash", "--node-name"] {
        assert!(words.iter().any(|w| w == flag), "{flag} missing in {line}");
    }
    let mut args = words[2..].to_vec();
    // A bridge of its own: the joined node shares this machine's network with the cloud's.
    args.extend(["--bridge".into(), format!("{}j", cloud.bridge)]);
    args.extend(["--cluster-cidr".into(), cloud.cluster_cidr.clone()]);
    args.extend(["--service-cidr".into(), cloud.service_cidr.clone()]);
    args
}

/// Replaces the value after `flag`.
fn with_value(args: &[String], flag: &str, value: &str) -> Vec<String> {
    let mut args = args.to_vec();
    let at = args.iter().position(|a| a == flag).unwrap();
    args[at + 1] = value.to_string();
    args
}

/// Drops `flag` and its value.
fn without(args: &[String], flag: &str) -> Vec<String> {
    let mut args = args.to_vec();
    let at = args.iter().position(|a| a == flag).unwrap();
    args.drain(at..at + 2);
    args
}

fn one_line_error(out: &Output) -> String {
    assert_ne!(out.status.code(), Some(0), "the command should fail");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    stderr
}

#[test]
fn an_agent_joins_runs_a_pod_and_serves_logs_and_exec() {
    let test = "an_agent_joins_runs_a_pod_and_serves_logs_and_exec";
    let Some(cloud) = Cloud::start(test) else {
        return;
    };
    let mut args = join_args(&cloud);
    args.extend(["--kubelet-port".into(), free_port().to_string()]);

    // A wrong token: one line, non-zero, and the node never registers.
    let wrong_token = Agent::bare(&cloud, with_value(&args, "--token", "not-the-token"));
    let err = one_line_error(&wrong_token.run_to_end());
    assert!(err.contains("rejected the token"), "{err}");
    // A CA hash that is not the server's: refused before the token is sent.
    let other_hash = format!("sha256:{}", "ab".repeat(32));
    let wrong_ca = Agent::bare(&cloud, with_value(&args, "--ca-cert-hash", &other_hash));
    let err = one_line_error(&wrong_ca.run_to_end());
    assert!(err.contains("no CA certificate with hash"), "{err}");
    // No way to verify the server at all: refused.
    let unpinned = without(&args, "--ca-cert-hash");
    let err = one_line_error(&Agent::bare(&cloud, unpinned).run_to_end());
    assert!(err.contains("refusing to trust an unknown server"), "{err}");
    assert!(!cloud.kubectl(&["get", "node", JOINED]).status.success());

    let mut agent = Agent::new(&cloud, args.clone());
    agent.start();
    let ready = |node: &str| {
        cloud
            .kubectl(&[
                "get",
                "node",
                node,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            ])
            .stdout
            == b"True"
    };
    wait_for(&agent, "the joined node to be Ready", || {
        ready(JOINED) && ready(common::cloud::NODE)
    });
    let nodes = cloud.ok(&["get", "nodes"]);
    assert!(
        nodes.contains(JOINED) && nodes.contains(common::cloud::NODE),
        "{nodes}"
    );
    let cert = std::fs::read(agent.data.path().join("node/kubelet.crt")).unwrap();

    cloud.apply(POD);
    wait_for(&agent, "the pod to run on the joined node", || {
        cloud.status_of("far", "main")["state"]["running"].is_object()
    });
    let pod = cloud.json(&["get", "pod", "far"]);
    assert_eq!(pod["spec"]["nodeName"], JOINED);
    // Its containers are the joined agent's, not strata up's.
    assert!(agent.strata(&["ps"]).lines().count() >= 2);

    // Logs and exec go API server -> joined node's kubelet API.
    wait_for(&agent, "kubectl logs", || {
        String::from_utf8_lossy(&cloud.kubectl(&["logs", "far"]).stdout)
            .contains("hello-from-the-joined-node")
    });
    let exec = cloud.ok(&["exec", "far", "--", "sh", "-c", "echo exec-$((6*7))"]);
    assert_eq!(exec.trim(), "exec-42");

    // A restart keeps the certificate and adopts the running pod. This time the CA comes
    // from a file instead of the hash.
    let restart_count = cloud.status_of("far", "main")["restartCount"].clone();
    assert_eq!(agent.stop(), Some(0), "{}", agent.log());
    agent.args = without(&agent.args, "--ca-cert-hash");
    agent.args.push("--ca-cert".into());
    agent.args.push(
        cloud
            .data
            .path()
            .join("pki/ca.crt")
            .to_string_lossy()
            .into_owned(),
    );
    agent.start();
    wait_for(&agent, "the agent to come back", || {
        agent
            .log()
            .matches(&format!("node {JOINED} joined"))
            .count()
            >= 2
    });
    assert_eq!(
        std::fs::read(agent.data.path().join("node/kubelet.crt")).unwrap(),
        cert,
        "the kubelet certificate was reissued"
    );
    std::thread::sleep(Duration::from_secs(3));
    let status = cloud.status_of("far", "main");
    assert!(status["state"]["running"].is_object(), "{status}");
    assert_eq!(status["restartCount"], restart_count, "{status}");
    let exec = cloud.ok(&["exec", "far", "--", "echo", "still-here"]);
    assert_eq!(exec.trim(), "still-here");

    cloud.ok(&["delete", "pod", "far", "--timeout=60s"]);
    assert!(
        agent.strata(&["ps"]).lines().count() <= 1,
        "{}",
        agent.strata(&["ps", "-a"])
    );
}

/// Polls `done` for up to 60 s; on timeout panics with the agent's log.
fn wait_for(agent: &Agent, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}\nagent log:\n{}", agent.log());
}

#[test]
fn token_create_needs_a_server_data_dir_and_a_valid_name() {
    let empty = tempfile::tempdir().unwrap();
    let run = |node: &str| {
        Command::new(strata_bin())
            .arg("--data-dir")
            .arg(empty.path())
            .args(["token", "create", "--node", node])
            .output()
            .unwrap()
    };
    let out = run("n2");
    let err = one_line_error(&out);
    assert!(
        err.contains("has `strata up` or `strata server` run"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    let err = one_line_error(&run("Not_A_Name"));
    assert!(err.contains("not a DNS subdomain"), "{err}");
    assert!(!empty.path().join("pki").exists(), "nothing is created");
}
