#![allow(clippy::unwrap_used)]
//! `kubectl logs`, `exec`, `cp`, `attach` and `port-forward` against `strata up`, through
//! the API server's proxy to the node agent's kubelet API: log flags (`-f`, `--tail`,
//! `--previous`, `-c`, `--all-containers`, `--limit-bytes`), exit codes, piped stdin, a
//! terminal, copies both ways, attach until the container exits, HTTP through forwarded
//! ports (SPDY tunnelled in WebSocket and plain SPDY), and a kubelet API that only lets
//! the API server in.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::cloud::Cloud;

/// Longest wait for a line from a streaming kubectl (a bound against hangs, not a timing
/// assertion).
const LINE_WAIT: Duration = Duration::from_secs(60);

fn kubeconfig(cloud: &Cloud) -> PathBuf {
    cloud.data.path().join("kubeconfig.yaml")
}

fn kubectl_command(cloud: &Cloud, args: &[&str]) -> Command {
    let mut command = Command::new("kubectl");
    command
        .arg("--kubeconfig")
        .arg(kubeconfig(cloud))
        .args(args);
    command
}

/// kubectl with `input` on its stdin.
fn kubectl_input(cloud: &Cloud, args: &[&str], input: &[u8]) -> Output {
    let mut child = kubectl_command(cloud, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// The lines of `pipe`, read on a thread of their own.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// A kubectl whose stdout lines arrive on a channel; killed on drop.
struct Streaming {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Streaming {
    fn start(cloud: &Cloud, args: &[&str]) -> Self {
        let mut child = kubectl_command(cloud, args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = lines_of(child.stdout.take().unwrap());
        Self { child, lines }
    }

    /// Waits for a line equal to `wanted`, returning the lines before it.
    fn wait_line(&self, wanted: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(LINE_WAIT) {
                Ok(line) if line == wanted => return seen,
                Ok(line) => seen.push(line),
                Err(err) => panic!("no line {wanted:?} ({err}); got {seen:?}"),
            }
        }
    }

    /// Every remaining line, once kubectl has ended by itself; and its exit code.
    fn finish(mut self) -> (Vec<String>, Option<i32>) {
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(LINE_WAIT) {
                Ok(line) => rest.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(err) => panic!("kubectl did not end ({err}); got {rest:?}"),
            }
        }
        let code = self.child.wait().unwrap().code();
        (rest, code)
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn apply(cloud: &Cloud, name: &str, manifest: &str) {
    let path = cloud.data.path().join(format!("{name}.yaml"));
    std::fs::write(&path, manifest).unwrap();
    cloud.ok(&["apply", "-f", path.to_str().unwrap()]);
}

fn wait_running(cloud: &Cloud, pod: &str, container: &str) {
    cloud.wait_for(&format!("{pod}/{container} to run"), || {
        cloud.status_of(pod, container)["state"]["running"].is_object()
    });
}

const LOGS_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: logs}
spec:
  nodeName: test-node
  restartPolicy: OnFailure
  containers:
  - name: counter
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "i=0; while [ $i -lt 5 ]; do echo line-$i; i=$((i+1)); done; exec sleep 3600"]
  - name: errors
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo to-stderr >&2; exec sleep 3600"]
  - name: crasher
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "n=$(cat /data/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/n; echo attempt-$n; [ $n -ge 2 ] || exit 1; exec sleep 3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  - name: follower
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "echo before; while [ ! -f /data/go ]; do sleep 0.1; done; echo after-go; exit 0"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, emptyDir: {}}]
"#;

#[test]
fn logs_with_tail_previous_container_and_follow() {
    let Some(cloud) = Cloud::start("logs_with_tail_previous_container_and_follow") else {
        return;
    };
    apply(&cloud, "logs", LOGS_POD);
    wait_running(&cloud, "logs", "counter");
    wait_running(&cloud, "logs", "follower");
    cloud.wait_for("the crasher's second attempt", || {
        cloud.status_of("logs", "crasher")["restartCount"].as_i64() >= Some(1)
            && cloud.status_of("logs", "crasher")["state"]["running"].is_object()
    });

    // -c, stderr, --tail, --limit-bytes, --timestamps, --since.
    let all = cloud.ok(&["logs", "logs", "-c", "counter"]);
    assert_eq!(all, "line-0\nline-1\nline-2\nline-3\nline-4\n");
    wait_running(&cloud, "logs", "errors");
    assert_eq!(cloud.ok(&["logs", "logs", "-c", "errors"]), "to-stderr\n");
    let tail = cloud.ok(&["logs", "logs", "-c", "counter", "--tail=2"]);
    assert_eq!(tail, "line-3\nline-4\n");
    let limited = cloud.ok(&["logs", "logs", "-c", "counter", "--limit-bytes=8"]);
    assert_eq!(limited, "line-0\nl");
    let stamped = cloud.ok(&["logs", "logs", "-c", "counter", "--tail=1", "--timestamps"]);
    let (time, rest) = stamped.split_once(' ').unwrap();
    assert!(time.ends_with('Z') && time.contains('T'), "{stamped}");
    assert_eq!(rest, "line-4\n");
    assert_eq!(
        cloud.ok(&["logs", "logs", "-c", "counter", "--since=1h", "--tail=1"]),
        "line-4\n"
    );

    // --previous shows the attempt before the running one.
    assert_eq!(cloud.ok(&["logs", "logs", "-c", "crasher"]), "attempt-2\n");
    assert_eq!(
        cloud.ok(&["logs", "logs", "-c", "crasher", "--previous"]),
        "attempt-1\n"
    );
    let none = cloud.kubectl(&["logs", "logs", "-c", "counter", "--previous"]);
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("previous terminated container"),
        "{none:?}"
    );

    // --all-containers and errors.
    let every = cloud.ok(&["logs", "logs", "--all-containers"]);
    for line in ["line-4", "attempt-2", "before", "to-stderr"] {
        assert!(every.lines().any(|l| l == line), "{line} missing: {every}");
    }
    let unknown = cloud.kubectl(&["logs", "logs", "-c", "nope"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("container nope is not valid for pod logs"),
        "{unknown:?}"
    );
    let missing = cloud.kubectl(&["logs", "no-such-pod"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{missing:?}"
    );

    // -f streams what is there, then what comes, and ends when the container does.
    let follow = Streaming::start(&cloud, &["logs", "-f", "logs", "-c", "follower"]);
    assert!(follow.wait_line("before").is_empty());
    cloud.ok(&["exec", "logs", "-c", "follower", "--", "touch", "/data/go"]);
    let (rest, code) = follow.finish();
    assert_eq!(rest, ["after-go"]);
    assert_eq!(code, Some(0));
}

const SHELL_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: shell}
spec:
  nodeName: test-node
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
"#;

#[test]
fn exec_with_exit_codes_stdin_terminal_and_cp() {
    let Some(cloud) = Cloud::start("exec_with_exit_codes_stdin_terminal_and_cp") else {
        return;
    };
    apply(&cloud, "shell", SHELL_POD);
    wait_running(&cloud, "shell", "main");

    // Exit codes and both output streams; the only container is the default.
    let out = cloud.kubectl(&[
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("err\n"),
        "{out:?}"
    );
    assert_eq!(
        cloud.ok(&["exec", "shell", "-c", "main", "--", "hostname"]),
        "shell\n"
    );
    let failed = cloud.kubectl(&["exec", "shell", "--", "/no/such/program"]);
    assert!(!failed.status.success(), "{failed:?}");

    // Piped stdin, including its end (wc only answers after EOF) and a megabyte of it.
    let out = kubectl_input(
        &cloud,
        &["exec", "-i", "shell", "--", "wc", "-l"],
        b"a\nb\nc\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3", "{out:?}");
    let big = vec![b'x'; 1 << 20];
    let out = kubectl_input(&cloud, &["exec", "-i", "shell", "--", "wc", "-c"], &big);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1048576",
        "{out:?}"
    );

    // cp into the container and back out, a file and a directory.
    let local = cloud.data.path().join("to-pod.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    cloud.ok(&["cp", local.to_str().unwrap(), "shell:/tmp/in.txt"]);
    assert_eq!(
        cloud.ok(&["exec", "shell", "--", "cat", "/tmp/in.txt"]),
        "copied in\n"
    );
    cloud.ok(&[
        "exec",
        "shell",
        "--",
        "sh",
        "-c",
        "mkdir -p /tmp/d/sub && echo one > /tmp/d/a && echo two > /tmp/d/sub/b",
    ]);
    let back = cloud.data.path().join("from-pod");
    cloud.ok(&["cp", "shell:/tmp/d", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(back.join("a")).unwrap(), "one\n");
    assert_eq!(
        std::fs::read_to_string(back.join("sub/b")).unwrap(),
        "two\n"
    );

    // A terminal: kubectl needs one itself, so it runs under script(1).
    if Command::new("script").arg("--version").output().is_err() {
        println!("SKIP exec on a terminal: script(1) is not installed");
        return;
    }
    let inner = format!(
        "kubectl --kubeconfig {} exec -it shell -- sh -c 'tty; exit 4'",
        kubeconfig(&cloud).display()
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("/dev/pts/"),
        "{out:?}"
    );
}

const TICKER_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: ticker}
spec:
  nodeName: test-node
  restartPolicy: Never
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "while [ ! -f /tmp/stop ]; do echo tick; sleep 0.2; done; echo stopping; exit 0"]
"#;

#[test]
fn attach_streams_output_until_the_container_exits() {
    let Some(cloud) = Cloud::start("attach_streams_output_until_the_container_exits") else {
        return;
    };
    apply(&cloud, "ticker", TICKER_POD);
    wait_running(&cloud, "ticker", "main");
    let attached = Streaming::start(&cloud, &["attach", "ticker"]);
    attached.wait_line("tick");
    cloud.ok(&["exec", "ticker", "--", "touch", "/tmp/stop"]);
    attached.wait_line("stopping");
    let (_, code) = attached.finish();
    assert_eq!(code, Some(0));
}

#[test]
fn attach_and_run_with_stdin_and_a_terminal() {
    let Some(cloud) = Cloud::start("attach_and_run_with_stdin_and_a_terminal") else {
        return;
    };
    // `kubectl run -i --rm`: the pod is made with stdin (stdinOnce), kubectl attaches,
    // the piped input reaches the process, its answer comes back, the pod is removed.
    let out = kubectl_input(
        &cloud,
        &[
            "run",
            "asker",
            "-i",
            "--rm",
            "--restart=Never",
            "--image=localhost/busybox:latest",
            "--image-pull-policy=Never",
            "--",
            "sh",
            "-c",
            "read name; echo hello-$name",
        ],
        b"strata\n",
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello-strata"),
        "{out:?}"
    );
    assert!(out.status.success(), "{out:?}");
    cloud.wait_for("the --rm pod to go", || {
        !cloud.kubectl(&["get", "pod", "asker"]).status.success()
    });

    // A shell on a terminal, attached with -it under script(1): what is typed runs.
    if Command::new("script").arg("--version").output().is_err() {
        println!("SKIP attach on a terminal: script(1) is not installed");
        return;
    }
    apply(&cloud, "console", CONSOLE_POD);
    wait_running(&cloud, "console", "main");
    let inner = format!(
        "kubectl --kubeconfig {} attach -it console",
        kubeconfig(&cloud).display()
    );
    let mut script = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = script.stdin.take().unwrap();
    let lines = lines_of(script.stdout.take().unwrap());
    // Type until the shell answers (it may not be reading yet when the first line goes).
    let deadline = std::time::Instant::now() + LINE_WAIT;
    let mut seen = Vec::new();
    let answered = loop {
        let _ = stdin.write_all(b"echo $((6*7))-$(tty)\n");
        let _ = stdin.flush();
        match lines.recv_timeout(Duration::from_secs(1)) {
            Ok(line) if line.contains("42-/dev/pts/") => break true,
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break false,
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
    };
    let _ = stdin.write_all(b"exit 5\n");
    drop(stdin);
    let status = script.wait().unwrap();
    assert!(answered, "no answer from the attached shell: {seen:?}");
    let _ = status;
    cloud.wait_for("the shell to exit with 5", || {
        cloud.status_of("console", "main")["state"]["terminated"]["exitCode"] == 5
    });
}

const CONSOLE_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: console}
spec:
  nodeName: test-node
  restartPolicy: Never
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh]
    stdin: true
    tty: true
"#;

#[test]
fn the_kubelet_api_serves_only_the_api_server() {
    let Some(cloud) = Cloud::start("the_kubelet_api_serves_only_the_api_server") else {
        return;
    };
    let node = cloud.json(&["get", "node", common::cloud::NODE]);
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .unwrap();
    assert_ne!(port, 0);
    let pki = cloud.data.path().join("pki");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.join("ca.crt")).unwrap()).unwrap();
    let url = format!("https://127.0.0.1:{port}/containerLogs/default/x/y");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // The admin of the cluster is not the API server: 403.
        let mut pem = std::fs::read(pki.join("admin.crt")).unwrap();
        pem.extend(std::fs::read(pki.join("admin.key")).unwrap());
        let admin = reqwest::Client::builder()
            .add_root_certificate(ca.clone())
            .identity(reqwest::Identity::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        let answer = admin.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 403);
        // Without a client certificate the TLS handshake fails.
        let anonymous = reqwest::Client::builder()
            .add_root_certificate(ca.clone())
            .build()
            .unwrap();
        assert!(anonymous.get(&url).send().await.is_err());
        // The API server's identity gets through (and learns there is no such pod).
        let mut pem = std::fs::read(pki.join("apiserver-kubelet-client.crt")).unwrap();
        pem.extend(std::fs::read(pki.join("apiserver-kubelet-client.key")).unwrap());
        let apiserver = reqwest::Client::builder()
            .add_root_certificate(ca)
            .identity(reqwest::Identity::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        let answer = apiserver.get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 404);
    });
}

const WEB_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeName: test-node
      securityContext: {runAsUser: 0}
      containers:
      - name: httpd
        image: localhost/httpd:latest
        imagePullPolicy: IfNotPresent
        command: [sh, -c, "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && head -c 3000000 /dev/zero | tr '\\0' x > /tmp/www/big && exec httpd -f -h /tmp/www -p 8080"]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
"#;

/// A running `kubectl port-forward`: its local port and its stderr lines; killed on drop.
struct PortForward {
    child: Child,
    port: u16,
    errors: mpsc::Receiver<String>,
    /// Its stdout lines; kept to the end so that kubectl (which dies of SIGPIPE on a
    /// closed stdout) can print "Handling connection for …".
    output: mpsc::Receiver<String>,
}

impl PortForward {
    /// Forwards a random local port to `remote` of `target`, with or without the
    /// WebSocket tunnel (kubectl falls back to plain SPDY without it).
    fn start(cloud: &Cloud, target: &str, remote: u16, websockets: bool) -> Self {
        let mut child = kubectl_command(cloud, &["port-forward", target, &format!(":{remote}")])
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", websockets.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let errors = lines_of(child.stderr.take().unwrap());
        let lines = lines_of(child.stdout.take().unwrap());
        let mut forward = Self {
            child,
            port: 0,
            errors,
            output: lines,
        };
        loop {
            let line = forward
                .output
                .recv_timeout(LINE_WAIT)
                .unwrap_or_else(|err| {
                    let stderr: Vec<String> = forward.errors.try_iter().collect();
                    panic!("no Forwarding line ({err}): {stderr:?}")
                });
            // "Forwarding from 127.0.0.1:NNNN -> 8080"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                forward.port = rest.split_whitespace().next().unwrap().parse().unwrap();
                return forward;
            }
        }
    }

    /// Waits for a stderr line containing `wanted`.
    fn wait_error(&self, wanted: &str) -> String {
        loop {
            match self.errors.recv_timeout(LINE_WAIT) {
                Ok(line) if line.contains(wanted) => return line,
                Ok(_) => {}
                Err(err) => panic!("no stderr line with {wanted:?} ({err})"),
            }
        }
    }
}

/// One HTTP/1.0 GET through a forwarded port: the whole response.
fn get(port: u16, path: &str) -> std::io::Result<Vec<u8>> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(LINE_WAIT))?;
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: web\r\n\r\n")?;
    let mut response = Vec::new();
    tcp.read_to_end(&mut response)?;
    Ok(response)
}

/// The body of a successful GET through a forwarded port.
fn body(port: u16, path: &str) -> Vec<u8> {
    let response = get(port, path).unwrap();
    let text = String::from_utf8_lossy(&response[..response.len().min(200)]).into_owned();
    assert!(
        text.starts_with("HTTP/1.") && text.contains(" 200 "),
        "{text}"
    );
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    response[end + 4..].to_vec()
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let stderr: Vec<String> = self.errors.try_iter().collect();
            eprintln!("kubectl port-forward's stderr: {stderr:#?}");
        }
    }
}

#[test]
fn port_forward_carries_http_over_both_transports() {
    let Some(cloud) = Cloud::start("port_forward_carries_http_over_both_transports") else {
        return;
    };
    cloud.apply(WEB_DEPLOYMENT);
    let mut pod = String::new();
    cloud.wait_for("the web pod to run", || {
        pod = cloud.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ]);
        !pod.is_empty() && cloud.status_of(&pod, "httpd")["ready"] == true
    });
    let by_pod = format!("pod/{pod}");
    for (target, websockets) in [(by_pod.as_str(), true), ("deploy/web", false)] {
        let forward = PortForward::start(&cloud, target, 8080, websockets);
        let port = forward.port;
        // Requests one after the other, then several at once, and one larger than every
        // flow-control window.
        for _ in 0..3 {
            assert_eq!(body(port, "/"), b"hello\n", "{target}");
        }
        std::thread::scope(|scope| {
            let requests: Vec<_> = (0..8)
                .map(|_| scope.spawn(move || body(port, "/")))
                .collect();
            for request in requests {
                assert_eq!(request.join().unwrap(), b"hello\n");
            }
        });
        let big = body(port, "/big");
        assert_eq!(big.len(), 3_000_000, "{target}");
        assert!(big.iter().all(|&b| b == b'x'));
        // The forwarded port goes with kubectl.
        drop(forward);
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    // A port nothing listens on: kubectl reports the agent's error for the connection.
    // kubectl 1.32 then closes the whole session by itself ("lost connection to pod"), as
    // it does against a kubelet; the agent never ends a session over one connection.
    for websockets in [true, false] {
        let mut forward = PortForward::start(&cloud, &by_pod, 9, websockets);
        let response = get(forward.port, "/").unwrap_or_default();
        assert!(
            response.is_empty(),
            "{}",
            String::from_utf8_lossy(&response)
        );
        let line = forward.wait_error("error forwarding port 9");
        assert!(line.contains("refused"), "{line}");
        forward.wait_error("lost connection to pod");
        assert_eq!(forward.child.wait().unwrap().code(), Some(1));
    }

    // A pod that does not exist.
    let missing = cloud.kubectl(&["port-forward", "pod/nope", ":8080"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{missing:?}"
    );
}
