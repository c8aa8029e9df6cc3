#![allow(clippy::unwrap_used)]
//! Workloads on `strata up`, driven by real kubectl: the multi-tier example deploys,
//! scales, heals, rolls out a new image and rolls back; probes gate readiness and restart
//! a container whose liveness fails (running its preStop hook); an unschedulable pod
//! says why; a projected volume shows config and downward API files and follows changes;
//! a pod finds its service account token, the cluster CA and its namespace.

mod common;

use std::path::PathBuf;

use common::cloud::Cloud;

/// Names and images of the pods of one app tier, e.g. `tier=web`.
fn pods_of(cloud: &Cloud, selector: &str) -> Vec<(String, String, bool)> {
    let list = cloud.json(&["get", "pods", "-l", selector]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                ready,
            )
        })
        .collect()
}

/// Waits until the tier has exactly `count` ready pods, all running `image`.
fn wait_for_tier(cloud: &Cloud, selector: &str, count: usize, image: &str) {
    cloud.wait_for(
        &format!("{count} ready pods of {selector} on {image}"),
        || {
            let pods = pods_of(cloud, selector);
            pods.len() == count && pods.iter().all(|(_, i, ready)| i == image && *ready)
        },
    );
}

#[test]
fn a_multi_tier_app_deploys_scales_heals_and_rolls_back() {
    let Some(cloud) = Cloud::start("a_multi_tier_app_deploys_scales_heals_and_rolls_back") else {
        return;
    };
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/multi-tier.yaml");
    cloud.ok(&["apply", "-f", example.to_str().unwrap()]);
    for tier in ["web", "cache", "worker"] {
        cloud.ok(&[
            "rollout",
            "status",
            &format!("deployment/{tier}"),
            "--timeout=120s",
        ]);
    }
    // The web pods are Ready because their HTTP readiness probe got the page.
    let latest = "localhost/httpd:latest";
    wait_for_tier(&cloud, "tier=web", 2, latest);
    let deployment = cloud.json(&["get", "deployment", "web"]);
    assert_eq!(deployment["status"]["availableReplicas"], 2, "{deployment}");

    // Scale up, then lose a pod: the ReplicaSet replaces it.
    cloud.ok(&["scale", "deployment/web", "--replicas=3"]);
    wait_for_tier(&cloud, "tier=web", 3, latest);
    let victim = pods_of(&cloud, "tier=web")[0].0.clone();
    cloud.ok(&["delete", "pod", &victim, "--wait=false"]);
    cloud.wait_for("the deleted web pod to be replaced", || {
        let pods = pods_of(&cloud, "tier=web");
        pods.len() == 3
            && pods
                .iter()
                .all(|(name, _, ready)| *name != victim && *ready)
    });

    // Roll out a new image, then undo it.
    cloud.strata(&["image", "tag", latest, "localhost/httpd:v2"]);
    let v2 = "localhost/httpd:v2";
    cloud.ok(&["set", "image", "deployment/web", &format!("httpd={v2}")]);
    cloud.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    wait_for_tier(&cloud, "tier=web", 3, v2);
    let history = cloud.ok(&["rollout", "history", "deployment/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    cloud.ok(&["rollout", "undo", "deployment/web"]);
    cloud.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    wait_for_tier(&cloud, "tier=web", 3, latest);

    // Scale down; the worker does its job meanwhile.
    cloud.ok(&["scale", "deployment/web", "--replicas=1"]);
    wait_for_tier(&cloud, "tier=web", 1, latest);
    let worker = &pods_of(&cloud, "tier=worker")[0].0;
    let status = cloud.status_of(worker, "worker");
    assert!(status["state"]["running"].is_object(), "{status}");
    assert_eq!(status["ready"], true, "{status}");
}

#[test]
fn probes_gate_readiness_and_restart_a_container_that_fails_liveness() {
    let Some(cloud) =
        Cloud::start("probes_gate_readiness_and_restart_a_container_that_fails_liveness")
    else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    cloud.apply(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: probed}}
spec:
  nodeName: test-node
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sh, -c, "touch /tmp/alive /tmp/ready; exec sleep 3600"]
    startupProbe:
      exec: {{command: [test, -f, /tmp/alive]}}
      periodSeconds: 1
    livenessProbe:
      exec: {{command: [test, -f, /tmp/alive]}}
      periodSeconds: 1
      failureThreshold: 2
    readinessProbe:
      exec: {{command: [test, -f, /tmp/ready]}}
      periodSeconds: 1
    lifecycle:
      preStop:
        exec: {{command: [sh, -c, "echo stopped-gracefully >> /out/prestop"]}}
    volumeMounts: [{{name: out, mountPath: /out}}]
  volumes:
  - name: out
    hostPath: {{path: {}, type: Directory}}
"#,
        out.path().display()
    ));
    let ready = || {
        cloud.json(&["get", "pod", "probed"])["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    };
    cloud.wait_for("the pod to be ready", ready);
    let first = cloud.status_of("probed", "app");
    assert_eq!(first["started"], true, "{first}");
    let id = first["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("strata://")
        .to_string();

    // Readiness fails: the pod leaves service but keeps running.
    cloud.strata(&["exec", &id, "rm", "/tmp/ready"]);
    cloud.wait_for("the pod to become unready", || !ready());
    let unready = cloud.status_of("probed", "app");
    assert_eq!(unready["ready"], false, "{unready}");
    assert_eq!(unready["restartCount"], 0, "{unready}");
    assert!(unready["state"]["running"].is_object(), "{unready}");

    // Liveness fails: the container is stopped (preStop first) and started again.
    cloud.strata(&["exec", &id, "rm", "/tmp/alive"]);
    cloud.wait_for("the container to be restarted", || {
        let s = cloud.status_of("probed", "app");
        s["restartCount"] == 1 && s["state"]["running"].is_object()
    });
    let prestop = std::fs::read_to_string(out.path().join("prestop")).unwrap_or_default();
    assert_eq!(prestop, "stopped-gracefully\n");
    let events = cloud.json(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=probed",
    ]);
    let said = |reason: &str, text: &str| {
        events["items"].as_array().unwrap().iter().any(|e| {
            e["reason"] == reason && e["message"].as_str().unwrap_or_default().contains(text)
        })
    };
    assert!(said("Unhealthy", "Liveness probe failed"), "{events}");
    assert!(said("Killing", "failed liveness probe"), "{events}");
    cloud.wait_for("the restarted container to be ready", ready);
}

#[test]
fn a_timed_out_exec_probe_leaves_no_process_behind() {
    let Some(cloud) = Cloud::start("a_timed_out_exec_probe_leaves_no_process_behind") else {
        return;
    };
    cloud.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: slow-probe}
spec:
  nodeName: test-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    readinessProbe:
      exec: {command: [sleep, "300"]}
      timeoutSeconds: 1
      periodSeconds: 2
"#,
    );
    let timed_out = || {
        let events = cloud.json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=slow-probe",
        ]);
        events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| {
                e["reason"] == "Unhealthy"
                    && e["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("timed out")
            })
            .map(|e| e["count"].as_i64().unwrap_or(1))
            .sum::<i64>()
            >= 3
    };
    cloud.wait_for("three probe timeouts", timed_out);
    // Each timed-out probe command was killed with its session: at most the one of the
    // probe running now is left, not one per timeout.
    let ps = cloud.ok(&["exec", "slow-probe", "--", "ps", "-o", "args"]);
    let probes = ps.lines().filter(|l| l.trim() == "sleep 300").count();
    assert!(probes <= 1, "probe commands linger:\n{ps}");
    let status = cloud.status_of("slow-probe", "app");
    assert_eq!(status["ready"], false, "{status}");
}

#[test]
fn an_unschedulable_pod_explains_itself() {
    let Some(cloud) = Cloud::start("an_unschedulable_pod_explains_itself") else {
        return;
    };
    cloud.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: picky}
spec:
  nodeSelector: {disktype: ssd}
  containers:
  - name: app
    image: localhost/busybox:latest
"#,
    );
    cloud.wait_for("the scheduler to give up on picky", || {
        let pod = cloud.json(&["get", "pod", "picky"]);
        pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
    });
    let described = cloud.ok(&["describe", "pod", "picky"]);
    assert!(described.contains("FailedScheduling"), "{described}");
    assert!(described.contains("0/1 nodes are available"), "{described}");
    assert!(described.contains("node affinity/selector"), "{described}");
    // Labelling the node makes it fit.
    cloud.ok(&["label", "node", common::cloud::NODE, "disktype=ssd"]);
    cloud.wait_for("picky to run", || {
        cloud.status_of("picky", "app")["state"].is_object()
            && cloud.json(&["get", "pod", "picky"])["spec"]["nodeName"] == common::cloud::NODE
    });
}

#[test]
fn a_projected_volume_shows_config_and_labels_and_follows_their_changes() {
    let Some(cloud) =
        Cloud::start("a_projected_volume_shows_config_and_labels_and_follows_their_changes")
    else {
        return;
    };
    cloud.apply(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {greeting: hello}
---
apiVersion: v1
kind: Pod
metadata:
  name: projected
  labels: {app: shop, tier: front}
spec:
  nodeName: test-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    resources: {limits: {memory: 64Mi}}
    volumeMounts: [{name: all, mountPath: /etc/all}]
  volumes:
  - name: all
    projected:
      defaultMode: 0440
      sources:
      - configMap:
          name: settings
          items: [{key: greeting, path: config/greeting}]
      - downwardAPI:
          items:
          - {path: labels, fieldRef: {fieldPath: metadata.labels}}
          - {path: name, fieldRef: {fieldPath: metadata.name}}
          - path: memory_mi
            resourceFieldRef: {containerName: app, resource: limits.memory, divisor: 1Mi}
---
apiVersion: v1
kind: Pod
metadata: {name: escaping}
spec:
  nodeName: test-node
  containers:
  - name: app
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
    volumeMounts: [{name: info, mountPath: /etc/info}]
  volumes:
  - name: info
    downwardAPI:
      items: [{path: ../../escape, fieldRef: {fieldPath: metadata.name}}]
"#,
    );
    cloud.wait_for("the projected pod to run", || {
        cloud.status_of("projected", "app")["state"]["running"].is_object()
    });
    let cat = |path: &str| {
        let out = cloud.kubectl(&["exec", "projected", "--", "cat", path]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(cat("/etc/all/config/greeting"), "hello");
    assert_eq!(cat("/etc/all/labels"), "app=\"shop\"\ntier=\"front\"");
    assert_eq!(cat("/etc/all/name"), "projected");
    assert_eq!(cat("/etc/all/memory_mi"), "64");
    let mode = cloud.ok(&[
        "exec",
        "projected",
        "--",
        "stat",
        "-L",
        "-c",
        "%a",
        "/etc/all/name",
    ]);
    assert_eq!(mode.trim(), "440");

    // Changes of the labels and of the ConfigMap reach the running container.
    cloud.ok(&["label", "pod", "projected", "tier=back", "--overwrite"]);
    cloud.ok(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data":{"greeting":"bonjour"}}"#,
    ]);
    cloud.wait_for("the new labels and greeting in the volume", || {
        cat("/etc/all/labels") == "app=\"shop\"\ntier=\"back\""
            && cat("/etc/all/config/greeting") == "bonjour"
    });

    // A path that climbs out is a FailedMount event, not a started container.
    cloud.wait_for("the escaping pod's FailedMount event", || {
        let events = cloud.json(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=escaping",
        ]);
        events["items"].as_array().into_iter().flatten().any(|e| {
            e["reason"] == "FailedMount"
                && e["message"].as_str().unwrap_or_default().contains("info")
        })
    });
    let waiting = cloud.status_of("escaping", "app");
    assert!(waiting["state"]["running"].is_null(), "{waiting}");
    assert!(!cloud.data.path().join("escape").exists());
}

#[test]
fn a_pod_finds_its_service_account_token_ca_and_namespace() {
    let Some(cloud) = Cloud::start("a_pod_finds_its_service_account_token_ca_and_namespace") else {
        return;
    };
    // A Service made before the pod shows in its environment as link variables.
    cloud.apply(
        "apiVersion: v1\nkind: Service\nmetadata: {name: robot-api}\nspec:\n  ports: [{name: http, port: 8080}]\n",
    );
    cloud.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: robot}
spec:
  nodeName: test-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: [sleep, "3600"]
"#,
    );
    cloud.wait_for("the robot pod to run", || {
        cloud.status_of("robot", "app")["state"]["running"].is_object()
    });
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let cat = |name: &str| cloud.ok(&["exec", "robot", "--", "cat", &format!("{dir}/{name}")]);
    assert_eq!(cat("namespace"), "default");
    // In-cluster clients find the API server through the `kubernetes` Service's variables.
    let service_ip = cloud.ok(&[
        "get",
        "svc",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let env = cloud.ok(&["exec", "robot", "--", "env"]);
    let link_ip = cloud.ok(&[
        "get",
        "svc",
        "robot-api",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    for expected in [
        format!("ROBOT_API_SERVICE_HOST={link_ip}"),
        "ROBOT_API_SERVICE_PORT_HTTP=8080".to_string(),
        format!("ROBOT_API_PORT_8080_TCP=tcp://{link_ip}:8080"),
        format!("KUBERNETES_SERVICE_HOST={service_ip}"),
        "KUBERNETES_SERVICE_PORT=443".to_string(),
        format!("KUBERNETES_PORT=tcp://{service_ip}:443"),
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "{expected} missing in:\n{env}"
        );
    }
    let ca = std::fs::read_to_string(cloud.data.path().join("pki/ca.crt")).unwrap();
    assert_eq!(cat("ca.crt"), ca);
    let token = cat("token");
    assert_eq!(token.split('.').count(), 3, "{token}");
    // The token is the pod's service account's, and the API server takes it.
    let server = cloud.ok(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let as_pod = |args: &[&str]| {
        std::process::Command::new("kubectl")
            .env("KUBECONFIG", cloud.data.path().join("none.yaml"))
            .arg(format!("--server={server}"))
            .arg(format!(
                "--certificate-authority={}",
                cloud.data.path().join("pki/ca.crt").display()
            ))
            .arg(format!("--token={token}"))
            .args(args)
            .output()
            .unwrap()
    };
    let who = as_pod(&["get", "--raw", "/api"]);
    assert!(
        who.status.success(),
        "{}",
        String::from_utf8_lossy(&who.stderr)
    );
    let pods = as_pod(&["get", "pods"]);
    let denied = String::from_utf8_lossy(&pods.stderr);
    assert!(
        denied.contains("system:serviceaccount:default:default"),
        "{denied}"
    );
}
