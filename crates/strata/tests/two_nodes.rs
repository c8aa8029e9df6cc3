#![allow(clippy::unwrap_used)]
//! Two nodes on one machine: `strata up` on a veth link the test makes, and a second node
//! (`strata agent`) in a network namespace of the test's own at the link's other end.
//! Pods on both reach each other across the nodes (host-gw routes), a Service balances
//! over endpoints on both, and either node's pods resolve it by name. When the second
//! node stops, its pod leaves the Service once the node counts as unreachable. Every address is
//! on the test's link, bridges or namespaces; all of it goes when the test ends.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cloud::{Cloud, NODE};
use common::strata_bin;
use strata_testkit::netns::TestNetns;

const SECOND: &str = "second-node";

/// The link between the nodes and the second node's agent; removed on drop.
struct SecondNode {
    netns: TestNetns,
    link: String,
    data: tempfile::TempDir,
    agent: Option<Child>,
}

impl Drop for SecondNode {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let pid = nix::unistd::Pid::from_raw(agent.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = agent.wait();
        }
        common::cloud::remove_leftovers(self.data.path());
        let _ = Command::new("/bin/busybox")
            .args(["ip", "link", "del", &self.link])
            .output();
        let _ = &self.netns;
    }
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `ip …` inside the namespace, through nsenter.
fn ip_in(netns: &TestNetns, args: &[&str]) {
    run(Command::new("nsenter")
        .arg(format!("--net={}", netns.path().display()))
        .arg("/bin/busybox")
        .arg("ip")
        .args(args));
}

const PODS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#;

fn pod(name: &str, node: &str, labels: &str, command: &str) -> String {
    format!(
        r#"
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{{labels}}}}}
spec:
  nodeName: {node}
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{command}"]
"#
    )
}

/// An HTTP GET through nc inside `pod`; the response, or empty.
fn fetch(cloud: &Cloud, pod: &str, host: &str, port: u16) -> String {
    let command = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} {port}");
    String::from_utf8_lossy(
        &cloud
            .kubectl(&["exec", pod, "--", "sh", "-c", &command])
            .stdout,
    )
    .into_owned()
}

fn pod_ip(cloud: &Cloud, pod: &str) -> String {
    cloud
        .ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
        .trim()
        .to_string()
}

#[test]
fn pods_and_services_span_two_nodes() {
    let test = "pods_and_services_span_two_nodes";
    if !strata_testkit::require_root(test) || common::kubectl_missing(test) {
        return;
    }
    if Command::new("nsenter").arg("--version").output().is_err() {
        println!("SKIP {test}: nsenter is missing (apt-get install util-linux)");
        return;
    }
    // The link: 172.30.<n>.1 here, .2 in the second node's namespace.
    let n = 100 + std::process::id() % 100;
    let link = format!("stl{}", std::process::id() % 100_000);
    let peer = format!("{link}p");
    let (first_ip, second_ip) = (format!("172.30.{n}.1"), format!("172.30.{n}.2"));
    let mut second = SecondNode {
        netns: TestNetns::new(),
        link: link.clone(),
        data: tempfile::Builder::new()
            .prefix("strata-second-")
            .tempdir()
            .unwrap(),
        agent: None,
    };
    let host_ip = |args: &[&str]| run(Command::new("ip").args(args));
    host_ip(&["link", "add", &link, "type", "veth", "peer", "name", &peer]);
    let netns_path = second.netns.path().display().to_string();
    host_ip(&["link", "set", &peer, "netns", &netns_path]);
    host_ip(&["addr", "add", &format!("{first_ip}/30"), "dev", &link]);
    host_ip(&["link", "set", &link, "up"]);
    ip_in(
        &second.netns,
        &["addr", "add", &format!("{second_ip}/30"), "dev", &peer],
    );
    ip_in(&second.netns, &["link", "set", &peer, "up"]);

    // A short grace period: the test stops the second node and waits for it to count
    // as unreachable.
    let Some(cloud) = Cloud::start_with(
        test,
        Some(&first_ip),
        &["--node-monitor-grace-period", "5s"],
    ) else {
        return;
    };
    // The second node: demo images, a join token, and its agent in the namespace.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo-images.sh");
    run(Command::new("sh")
        .arg(script)
        .arg(strata_bin())
        .arg(second.data.path())
        .stdout(Stdio::null()));
    let join = run(Command::new(strata_bin())
        .arg("--data-dir")
        .arg(cloud.data.path())
        .args(["token", "create", "--node", SECOND]));
    let line = String::from_utf8(join.stdout).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..2], ["strata", "agent"], "{line}");
    let log = std::fs::File::create(second.data.path().join("agent.log")).unwrap();
    second.agent = Some(
        Command::new("nsenter")
            .arg(format!("--net={netns_path}"))
            .arg(strata_bin())
            .arg("--data-dir")
            .arg(second.data.path())
            .args(&words[1..])
            .args(["--node-ip", &second_ip, "--kubelet-port", "0"])
            .args(["--bridge", &format!("{}b", cloud.bridge)])
            .args(["--cluster-cidr", &cloud.cluster_cidr])
            .args(["--service-cidr", &cloud.service_cidr])
            .env("STRATA_LOG", "strata_agent=info,strata_net=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    cloud.wait_for("the second node to be Ready with a pod subnet", || {
        let ready = cloud.kubectl(&[
            "get",
            "node",
            SECOND,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status} {.spec.podCIDR}",
        ]);
        let text = String::from_utf8_lossy(&ready.stdout).into_owned();
        text.starts_with("True ") && text.len() > 5
    });

    let serve =
        "mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";
    let mut manifest = PODS.to_string();
    manifest += &pod("web-1", NODE, "app: web", serve);
    manifest += &pod("web-2", SECOND, "app: web", serve);
    manifest += &pod("client-1", NODE, "role: client", "sleep 3600");
    manifest += &pod("client-2", SECOND, "role: client", "sleep 3600");
    cloud.apply(&manifest);
    for name in ["web-1", "web-2", "client-1", "client-2"] {
        cloud.wait_for(&format!("{name} to run"), || {
            cloud.status_of(name, "main")["state"]["running"].is_object()
                && !pod_ip(&cloud, name).is_empty()
        });
    }
    let (web_1, web_2) = (pod_ip(&cloud, "web-1"), pod_ip(&cloud, "web-2"));
    assert_ne!(
        web_1.rsplit_once('.').unwrap().0,
        web_2.rsplit_once('.').unwrap().0,
        "one subnet per node"
    );

    // Pod to pod across the nodes, both ways.
    let reached = (0..30).any(|_| {
        let ok = fetch(&cloud, "client-1", &web_2, 8080).contains("web-2");
        if !ok {
            std::thread::sleep(Duration::from_secs(1));
        }
        ok
    });
    if !reached {
        let routes = run(Command::new("ip").args(["route"]));
        let inside = run(Command::new("nsenter")
            .arg(format!("--net={netns_path}"))
            .args(["ip", "route"]));
        panic!(
            "client-1 did not reach web-2 ({web_2}) on the other node\nroutes here:\n{}\nroutes there:\n{}\nsecond agent:\n{}",
            String::from_utf8_lossy(&routes.stdout),
            String::from_utf8_lossy(&inside.stdout),
            std::fs::read_to_string(second.data.path().join("agent.log")).unwrap_or_default()
        );
    }
    assert!(fetch(&cloud, "client-2", &web_1, 8080).contains("web-1"));

    // The Service balances over both nodes' endpoints, from either node.
    let cluster_ip = cloud.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    for client in ["client-1", "client-2"] {
        let mut seen = (false, false);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(seen.0 && seen.1) {
            assert!(
                Instant::now() < deadline,
                "{client} reached only {seen:?} of web-1, web-2"
            );
            let page = fetch(&cloud, client, &cluster_ip, 80);
            seen.0 |= page.contains("web-1");
            seen.1 |= page.contains("web-2");
        }
    }
    // DNS on the second node answers for the cluster too.
    let lookup = cloud.ok(&[
        "exec",
        "client-2",
        "--",
        "nslookup",
        "web.default.svc.cluster.local",
    ]);
    assert!(
        lookup.contains(&format!("Address: {cluster_ip}")),
        "{lookup}"
    );

    // Pods on either node reach the API server as kubernetes.default.svc:443: the
    // `kubernetes` Service's Endpoints name the address the API server listens on. (The
    // pods have no TLS client that works here, busybox wget's crashes; a plain-text
    // request gets the server's TLS alert record, 0x15 0x03 …, which proves the way.)
    let slice = cloud.ok(&[
        "get",
        "endpointslice",
        "kubernetes",
        "-o",
        "jsonpath={.endpoints[0].addresses[0]}",
    ]);
    assert_eq!(slice, first_ip, "the kubernetes EndpointSlice");
    for client in ["client-1", "client-2"] {
        cloud.wait_for(&format!("{client} to reach the API server"), || {
            let out = cloud.kubectl(&[
                "exec",
                client,
                "--",
                "sh",
                "-c",
                "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 kubernetes.default.svc 443 | od -An -tx1",
            ]);
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .take(2)
                .eq(["15", "03"])
        });
    }

    // The second node stops: it goes unreachable, web-2 stops taking traffic, and the
    // Service leads to web-1 alone.
    if let Some(mut agent) = second.agent.take() {
        let pid = nix::unistd::Pid::from_raw(agent.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        agent.wait().unwrap();
    }
    cloud.wait_for("the endpoints of web to hold web-1 alone", || {
        let ready = cloud.ok(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ]);
        ready.trim() == web_1
    });
    // (The proxy rewrites its rules a moment after the endpoints change; an exec that
    // fails on a loaded machine answers nothing, which is no evidence either way.)
    cloud.wait_for("the Service to lead to web-1", || {
        fetch(&cloud, "client-1", &cluster_ip, 80).contains("web-1")
    });
    let mut answered = 0;
    for _ in 0..10 {
        let page = fetch(&cloud, "client-1", &cluster_ip, 80);
        assert!(
            !page.contains("web-2"),
            "the stopped node's pod still takes traffic: {page}"
        );
        answered += usize::from(page.contains("web-1"));
    }
    assert!(answered > 0, "web-1 stopped answering through the Service");
    // Pods of the stopped node go from the API at once; their containers with `second`.
    for pod in ["web-2", "client-2"] {
        cloud.ok(&["delete", "pod", pod, "--force", "--grace-period=0"]);
    }
    cloud.ok(&[
        "delete",
        "pods",
        "--all",
        "--grace-period=1",
        "--timeout=60s",
    ]);
    drop(second);
}
