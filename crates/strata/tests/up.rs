#![allow(clippy::unwrap_used)]
//! `strata up` driven by real kubectl: a pod bound to the node runs its init container,
//! shares a volume and the pod's namespaces, reports a crash-looping container with its
//! exit code and back-off, restarts a killed container with restartCount incremented,
//! reports an OOM kill, keeps running containers across a restart of `strata up`, and
//! leaves nothing behind when the pod is deleted.

mod common;

use std::time::Duration;

use common::cloud::Cloud;

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
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(container_pid(&cloud, &format!("{uid}-httpd-0"))),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    cloud.wait_for("httpd to be restarted", || {
        let s = cloud.status_of("web", "httpd");
        s["restartCount"] == 1 && s["state"]["running"].is_object()
    });
    let httpd = cloud.status_of("web", "httpd");
    assert_eq!(httpd["lastState"]["terminated"]["exitCode"], 137, "{httpd}");
    // Its monitor is a fork of the agent's monitor fork server, not a fresh exec.
    let pid = container_pid(&cloud, &format!("{uid}-httpd-1"));
    let monitor = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:").map(|p| p.trim().to_string()))
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{monitor}/cmdline")).unwrap();
    assert!(
        cmdline.split(|b| *b == 0).any(|arg| arg == b"__monitors"),
        "the monitor of httpd is {:?}",
        String::from_utf8_lossy(&cmdline)
    );

    // A restart of strata up adopts the running container: same ID, same count.
    cloud.stop();
    cloud.launch();
    std::thread::sleep(Duration::from_secs(3));
    let after = cloud.status_of("web", "httpd");
    assert_eq!(after["containerID"], httpd["containerID"], "{after}");
    assert_eq!(after["restartCount"], 1);
    assert!(after["state"]["running"].is_object(), "{after}");

    // A container that ends while strata up is down has its exit recorded by its
    // monitor, and reported (then restarted) when strata up is back.
    cloud.stop();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(container_pid(&cloud, &format!("{uid}-httpd-1"))),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    cloud.launch();
    cloud.wait_for("httpd's exit while down to be reported", || {
        let s = cloud.status_of("web", "httpd");
        s["restartCount"] == 2 && s["state"]["running"].is_object()
    });
    let back = cloud.status_of("web", "httpd");
    assert_eq!(back["lastState"]["terminated"]["exitCode"], 137, "{back}");
    assert_eq!(
        back["lastState"]["terminated"]["containerID"], httpd["containerID"],
        "{back}"
    );

    // Deleting the pod removes its containers, volumes and sandbox.
    cloud.ok(&["delete", "pod", "web", "--grace-period=1", "--timeout=60s"]);
    assert!(!cloud.strata(&["ps", "-a"]).contains(&uid));
    assert!(!cloud.data.path().join("pods").join(&uid).exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&uid), "mounts of the pod remain");
    for root in [
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup",
    ] {
        for level in ["", "burstable", "besteffort"] {
            let dir = std::path::Path::new(root)
                .join("strata/pods")
                .join(level)
                .join(format!("pod{uid}"));
            assert!(!dir.exists(), "{} remains", dir.display());
        }
    }
}

/// The host PID of the running container `id`, from `strata ps`.
fn container_pid(cloud: &Cloud, id: &str) -> i32 {
    let ps = cloud.strata(&["ps"]);
    let line = ps
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("{id} is not running:\n{ps}"));
    line.split_whitespace().last().unwrap().parse().unwrap()
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
    // The pod's cgroup (Burstable: a memory limit, no CPU one) bounds the pod too.
    let uid = cloud.json(&["get", "pod", "hog"])["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let group = format!("strata/pods/burstable/pod{uid}");
    let limit = [
        format!("/sys/fs/cgroup/memory/{group}/memory.limit_in_bytes"),
        format!("/sys/fs/cgroup/{group}/memory.max"),
    ]
    .iter()
    .find_map(|file| std::fs::read_to_string(file).ok())
    .unwrap_or_default();
    assert_eq!(limit.trim(), (32 << 20).to_string());
    assert_eq!(
        cloud.json(&["get", "pod", "hog"])["status"]["qosClass"],
        "Burstable"
    );
}
