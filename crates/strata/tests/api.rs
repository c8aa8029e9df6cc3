#![allow(clippy::unwrap_used)]
//! `strata server` driven by real kubectl: apply (twice), get (json, wide, tables),
//! label, annotate, the three patch types, server-side apply and managedFields,
//! scale, edit, diff, watch, errors as Kubernetes words them, foreground cascading
//! deletion and namespace deletion (with the controllers running beside the server, as
//! kube-controller-manager runs beside kube-apiserver), and service account tokens
//! (TokenRequest, what they may do, when they stop working).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::strata_bin;

/// A running `strata server` on a free loopback port; SIGTERM and wait on drop.
struct ApiServer {
    child: Child,
    data: tempfile::TempDir,
    url: String,
}

impl ApiServer {
    fn start(test: &str) -> Option<Self> {
        if common::kubectl_missing(test) {
            return None;
        }
        let data = tempfile::Builder::new()
            .prefix("strata-api-")
            .tempdir()
            .unwrap();
        Some(Self::start_in(data))
    }

    /// SIGKILLs the server (no shutdown at all) and starts a new one on the same data.
    /// The bearer token of the first (admin) entry of the server's token file.
    fn admin_token(&self) -> String {
        let tokens: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.data.path().join("pki/tokens.json")).unwrap(),
        )
        .unwrap();
        tokens["tokens"][0]["token"].as_str().unwrap().to_string()
    }

    /// An HTTPS client that trusts the server's CA.
    fn https_client(&self) -> reqwest::Client {
        let ca = std::fs::read(self.data.path().join("pki/ca.crt")).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap()
    }

    fn kill_and_restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let spare = tempfile::Builder::new()
            .prefix("strata-api-")
            .tempdir()
            .unwrap();
        let data = std::mem::replace(&mut self.data, spare);
        drop(self);
        Self::start_in(data)
    }

    fn start_in(data: tempfile::TempDir) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(data.path().join("server.log"))
            .unwrap();
        let child = Command::new(strata_bin())
            .arg("--data-dir")
            .arg(data.path())
            .args(["server", "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let server = ApiServer {
            child,
            data,
            url: format!("https://{listen}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if server.kubeconfig().exists()
                && server
                    .kubectl(&["get", "--raw", "/readyz"])
                    .status
                    .success()
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("strata server did not come up: {}", server.log());
    }

    fn kubeconfig(&self) -> PathBuf {
        self.data.path().join("kubeconfig.yaml")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("server.log")).unwrap_or_default()
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .unwrap()
    }

    /// kubectl that must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl that must fail; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(!out.status.success(), "kubectl {args:?} should have failed");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn apply(&self, manifest: &str) -> String {
        let file = self.data.path().join("manifest.yaml");
        std::fs::write(&file, manifest).unwrap();
        self.ok(&["apply", "-f", file.to_str().unwrap()])
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Strata's controllers (among them the garbage collector and the namespace controller)
/// running against a server as API clients with its admin kubeconfig, the part
/// kube-controller-manager plays; `strata server` alone runs none. Stopped on drop.
struct Controllers {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Controllers {
    fn start(server: &ApiServer) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let kubeconfig = kube::config::Kubeconfig::read_from(server.kubeconfig()).unwrap();
        let client = runtime.block_on(async {
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .unwrap();
            kube::Client::try_from(config).unwrap()
        });
        runtime.spawn(async move {
            let _ = strata_controllers::run(client, Default::default()).await;
        });
        Self {
            runtime: Some(runtime),
        }
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

const MANIFEST: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
      - name: sidecar
        image: busybox
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  color: blue
"#;

fn jsonpath(server: &ApiServer, args: &[&str], path: &str) -> String {
    let mut all = args.to_vec();
    let expr = format!("jsonpath={path}");
    all.extend(["-o", &expr]);
    server.ok(&all)
}

#[test]
fn kubectl_manages_objects_like_on_kubernetes() {
    let Some(s) = ApiServer::start("kubectl_manages_objects_like_on_kubernetes") else {
        return;
    };
    let first = s.apply(MANIFEST);
    assert_eq!(first.matches(" created").count(), 4, "{first}");
    let second = s.apply(MANIFEST);
    assert_eq!(second.matches(" unchanged").count(), 4, "{second}");

    // Defaults and server-owned metadata.
    let deploy: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "deploy", "web", "-n", "shop", "-o", "json"])).unwrap();
    assert_eq!(deploy["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        deploy["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );
    assert_eq!(deploy["metadata"]["generation"], 1);
    assert_eq!(deploy["metadata"]["uid"].as_str().unwrap().len(), 36);
    let wide = s.ok(&["get", "deploy", "-n", "shop", "-o", "wide"]);
    assert!(
        wide.starts_with("NAME   READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS"),
        "{wide}"
    );
    assert!(
        wide.contains("web,sidecar   nginx:1.25,busybox   app=web"),
        "{wide}"
    );

    // A changed manifest: diff shows it, apply merges it by container name.
    let changed = MANIFEST
        .replace("nginx:1.25", "nginx:1.26")
        .replace("replicas: 2", "replicas: 3");
    let file = s.data.path().join("changed.yaml");
    std::fs::write(&file, &changed).unwrap();
    let diff = s.kubectl(&["diff", "-f", file.to_str().unwrap()]);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "kubectl diff exits 1 on differences"
    );
    assert!(String::from_utf8_lossy(&diff.stdout).contains("+  replicas: 3"));
    s.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(
        jsonpath(
            &s,
            &["get", "deploy", "web", "-n", "shop"],
            "{.spec.replicas} {.spec.template.spec.containers[*].image} {.metadata.generation}"
        ),
        "3 nginx:1.26 busybox 2"
    );

    // label, annotate, strategic / JSON / merge patches, scale, edit.
    s.ok(&["label", "deploy", "web", "-n", "shop", "tier=front"]);
    s.ok(&["annotate", "deploy", "web", "-n", "shop", "note=hi"]);
    s.ok(&["patch", "deploy", "web", "-n", "shop", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#]);
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "-n",
        "shop",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
    ]);
    s.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"data":{"size":"xl"}}"#,
    ]);
    s.ok(&["scale", "deploy", "web", "-n", "shop", "--replicas=5"]);
    assert_eq!(
        jsonpath(
            &s,
            &["get", "deploy", "web", "-n", "shop"],
            "{.spec.replicas} {.spec.template.spec.containers[*].image} {.metadata.labels.tier} {.metadata.annotations.note}"
        ),
        "5 nginx:1.26 busybox:1.36 front hi"
    );
    let edit = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args(["edit", "cm", "settings", "-n", "shop"])
        .env("KUBE_EDITOR", "sed -i s/color:\\ blue/color:\\ red/")
        .output()
        .unwrap();
    assert!(
        edit.status.success(),
        "{}",
        String::from_utf8_lossy(&edit.stderr)
    );
    assert_eq!(
        jsonpath(
            &s,
            &["get", "cm", "settings", "-n", "shop"],
            "{.data.color}/{.data.size}"
        ),
        "red/xl"
    );

    // Discovery as kubectl uses it.
    let resources = s.ok(&["api-resources"]);
    assert!(
        resources.contains("deployments")
            && resources.contains("deploy")
            && resources.contains("apps/v1"),
        "{resources}"
    );
    let describe = s.ok(&["describe", "deploy", "web", "-n", "shop"]);
    assert!(
        describe.contains("Replicas:               5 desired"),
        "{describe}"
    );
}

const SSA_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
"#;

/// The managers of an object, as `manager/operation` strings.
fn managers_of(server: &ApiServer, name: &str) -> Vec<String> {
    let object: serde_json::Value = serde_json::from_str(&server.ok(&[
        "get",
        "deploy",
        name,
        "-o",
        "json",
        "--show-managed-fields",
    ]))
    .unwrap();
    object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["manager"].as_str().unwrap_or(""),
                e["operation"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn kubectl_server_side_apply_owns_fields_like_on_kubernetes() {
    let Some(s) = ApiServer::start("kubectl_server_side_apply_owns_fields_like_on_kubernetes")
    else {
        return;
    };
    let file = s.data.path().join("deploy.yaml");
    let file_arg = file.to_str().unwrap();
    let ssa = |manifest: &str, extra: &[&str]| {
        std::fs::write(&file, manifest).unwrap();
        let mut args = vec!["apply", "--server-side", "-f", file_arg];
        args.extend(extra);
        s.kubectl(&args)
    };
    let created = ssa(SSA_DEPLOYMENT, &[]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(
        String::from_utf8_lossy(&created.stdout).contains("deployment.apps/web serverside-applied"),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    assert_eq!(managers_of(&s, "web"), ["kubectl/Apply"]);

    // A new image, then a label dropped from the file: applied, and removed.
    let newer = SSA_DEPLOYMENT.replace("nginx:1.25", "nginx:1.26");
    assert!(ssa(&newer, &[]).status.success());
    let without_tier = newer.replace("{app: web, tier: front}", "{app: web}");
    assert!(ssa(&without_tier, &[]).status.success());
    assert_eq!(
        jsonpath(
            &s,
            &["get", "deploy", "web"],
            "{.spec.template.spec.containers[0].image} {.metadata.labels}"
        ),
        r#"nginx:1.26 {"app":"web"}"#
    );

    // kubectl scale takes spec.replicas; applying another count conflicts.
    s.ok(&["scale", "deploy", "web", "--replicas=5"]);
    assert!(managers_of(&s, "web").contains(&"kubectl/Update".to_string()));
    let conflict = ssa(&without_tier, &[]);
    assert!(!conflict.status.success());
    let stderr = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        stderr.contains("Apply failed with 1 conflict: conflict with \"kubectl\"")
            && stderr.contains(".spec.replicas"),
        "{stderr}"
    );
    assert_eq!(
        jsonpath(&s, &["get", "deploy", "web"], "{.spec.replicas}"),
        "5"
    );
    // --force-conflicts wins, and the scaler owns nothing more.
    let forced = ssa(&without_tier, &["--force-conflicts"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    assert_eq!(
        jsonpath(&s, &["get", "deploy", "web"], "{.spec.replicas}"),
        "2"
    );
    assert_eq!(managers_of(&s, "web"), ["kubectl/Apply"]);

    // managedFields stay out of kubectl's YAML and tables, and do not trip Strict
    // validation when an object read back is replaced.
    let yaml = s.ok(&["get", "deploy", "web", "-o", "yaml"]);
    assert!(!yaml.contains("managedFields"), "{yaml}");
    let shown = s.ok(&[
        "get",
        "deploy",
        "web",
        "-o",
        "yaml",
        "--show-managed-fields",
    ]);
    assert!(shown.contains("f:replicas: {}"), "{shown}");
    let table = s.ok(&["get", "deploy"]);
    assert!(table.starts_with("NAME"), "{table}");
    let json_file = s.data.path().join("read-back.json");
    std::fs::write(&json_file, s.ok(&["get", "deploy", "web", "-o", "json"])).unwrap();
    s.ok(&["replace", "-f", json_file.to_str().unwrap()]);

    // Client-side apply first. A server-side apply of a change then conflicts with
    // the client-side manager, as on Kubernetes; applying the same content is no
    // conflict, and kubectl then moves that manager's fields to its applier
    // (a JSON patch of managedFields), after which changes land.
    let csa = without_tier.replace("name: web\n  labels", "name: csa\n  labels");
    std::fs::write(&file, &csa).unwrap();
    s.ok(&["apply", "-f", file_arg]);
    assert_eq!(managers_of(&s, "csa"), ["kubectl-client-side-apply/Update"]);
    let changed = csa.replace("nginx:1.26", "nginx:1.27");
    let conflict = ssa(&changed, &[]);
    let stderr = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        stderr.contains("conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.template.spec.containers[name=\"web\"].image"),
        "{stderr}"
    );
    let same = ssa(&csa, &[]);
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    // kubectl keeps the last-applied annotation current under its own applier. (Both
    // are appliers; between them the older comes first, which depends on the clock.)
    let mut managers = managers_of(&s, "csa");
    managers.sort();
    assert_eq!(managers, ["kubectl-last-applied/Apply", "kubectl/Apply"]);
    let upgraded = ssa(&changed, &[]);
    assert!(
        upgraded.status.success(),
        "{}",
        String::from_utf8_lossy(&upgraded.stderr)
    );
    assert_eq!(
        jsonpath(
            &s,
            &["get", "deploy", "csa"],
            "{.spec.template.spec.containers[0].image}"
        ),
        "nginx:1.27"
    );
}

#[test]
fn errors_read_like_kubernetes_and_nothing_half_happens() {
    let Some(s) = ApiServer::start("errors_read_like_kubernetes") else {
        return;
    };
    let bad_name = s.fails(&[
        "run",
        "--dry-run=server",
        "-o",
        "name",
        "Bad_Name",
        "--image=x",
    ]);
    assert!(
        bad_name.contains("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{bad_name}"
    );
    let file = s.data.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    image: x\n    imagee: typo\n",
    )
    .unwrap();
    let unknown = s.fails(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        unknown.contains("unknown field \"spec.containers[0].imagee\""),
        "{unknown}"
    );
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n",
    )
    .unwrap();
    let missing = s.fails(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        missing.contains("spec.containers[0].image: Required value"),
        "{missing}"
    );
    let not_found = s.fails(&["get", "deploy", "nope"]);
    assert!(
        not_found.contains("deployments.apps \"nope\" not found"),
        "{not_found}"
    );
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: ghost}\n",
    )
    .unwrap();
    let no_ns = s.fails(&["apply", "-f", file.to_str().unwrap()]);
    assert!(no_ns.contains("namespaces \"ghost\" not found"), "{no_ns}");
    assert!(
        s.ok(&["get", "pods", "-A", "-o", "name"]).trim().is_empty(),
        "nothing was created"
    );

    // Stale resourceVersion: 409 Conflict.
    std::fs::write(&file, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: default}\ndata: {a: '1'}\n").unwrap();
    s.ok(&["apply", "-f", file.to_str().unwrap()]);
    let stale = s.ok(&["get", "cm", "c", "-o", "json"]);
    s.ok(&[
        "patch",
        "cm",
        "c",
        "--type=merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    std::fs::write(&file, stale.replace("\"a\": \"1\"", "\"a\": \"3\"")).unwrap();
    let conflict = s.fails(&["replace", "-f", file.to_str().unwrap()]);
    assert!(
        conflict.contains("the object has been modified"),
        "{conflict}"
    );
    assert_eq!(jsonpath(&s, &["get", "cm", "c"], "{.data.a}"), "2");

    // Requests without valid credentials are refused.
    let stranger = Command::new("kubectl")
        .args([
            "--kubeconfig",
            "/dev/null",
            "--server",
            &s.url,
            "--insecure-skip-tls-verify",
            "--token",
            "not-a-token",
            "get",
            "pods",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!stranger.status.success());
    let said = String::from_utf8_lossy(&stranger.stderr);
    assert!(said.contains("Unauthorized"), "{said}");
}

#[test]
fn explain_and_validation_use_the_openapi_schemas() {
    let Some(s) = ApiServer::start("explain_and_validation_use_the_openapi_schemas") else {
        return;
    };
    let strategy = s.ok(&["explain", "deployment.spec.strategy"]);
    assert!(
        strategy.contains("FIELD: strategy <DeploymentStrategy>")
            && strategy.contains("rollingUpdate\t<RollingUpdateDeployment>")
            && strategy.contains("type\t<string>")
            && strategy.contains("enum: Recreate, RollingUpdate")
            && strategy.contains("Can be \"Recreate\" or \"RollingUpdate\""),
        "{strategy}"
    );
    let image = s.ok(&["explain", "pods.spec.containers.image"]);
    assert!(
        image.contains("FIELD: image <string>") && image.contains("Container image name"),
        "{image}"
    );
    let port = s.ok(&["explain", "svc.spec.ports.targetPort"]);
    assert!(port.contains("FIELD: targetPort <IntOrString>"), "{port}");
    let limits = s.ok(&[
        "explain",
        "deploy.spec.template.spec.containers.resources.limits",
    ]);
    assert!(limits.contains("<map[string]Quantity>"), "{limits}");
    let lease = s.ok(&[
        "explain",
        "leases.spec",
        "--api-version=coordination.k8s.io/v1",
    ]);
    assert!(lease.contains("holderIdentity\t<string>"), "{lease}");

    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: web, image: IMAGE}\n";
    let file = s.data.path().join("deploy.yaml");
    let path = file.to_str().unwrap();
    for (image, said) in [("nginx", "created"), ("nginx:2", "configured")] {
        std::fs::write(&file, deployment.replace("IMAGE", image)).unwrap();
        let out = s.ok(&["apply", "--validate=true", "-f", path]);
        assert!(
            out.contains(&format!("deployment.apps/web {said}")),
            "{out}"
        );
    }
    assert_eq!(
        jsonpath(
            &s,
            &["get", "deploy", "web"],
            "{.spec.template.spec.containers[0].image}"
        ),
        "nginx:2"
    );
    std::fs::write(
        &file,
        deployment
            .replace("IMAGE", "nginx:2")
            .replace("spec:\n  selector", "spec:\n  replicaz: 3\n  selector"),
    )
    .unwrap();
    for validate in ["--validate=strict", "--validate=true"] {
        let unknown = s.fails(&["apply", validate, "-f", path]);
        assert!(
            unknown.contains("unknown field \"spec.replicaz\""),
            "{validate}: {unknown}"
        );
    }
    let warned = s.kubectl(&["apply", "--validate=warn", "-f", path]);
    assert!(warned.status.success());
    assert!(
        String::from_utf8_lossy(&warned.stderr).contains("unknown field \"spec.replicaz\""),
        "{warned:?}"
    );
}

/// Every `$ref` anywhere in `value`.
fn json_refs<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => out.push(r),
                    _ => json_refs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| json_refs(v, out)),
        _ => {}
    }
}

#[test]
fn openapi_v2_is_served_as_json_converted_from_v3() {
    let Some(s) = ApiServer::start("openapi_v2_is_served_as_json_converted_from_v3") else {
        return;
    };
    let doc: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/openapi/v2"])).unwrap();
    assert_eq!(doc["swagger"], "2.0");
    let definitions = doc["definitions"].as_object().unwrap();
    assert_eq!(
        definitions["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "", "version": "v1", "kind": "Pod"}])
    );
    let mut refs = Vec::new();
    json_refs(&doc, &mut refs);
    assert!(refs.len() > 100, "{}", refs.len());
    for r in refs {
        let name = r.strip_prefix("#/definitions/").unwrap_or(r);
        assert!(definitions.contains_key(name), "unresolved {r}");
    }
    let post = &doc["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"];
    let body = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["in"] == "body")
        .unwrap();
    assert_eq!(
        body["schema"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Pod"
    );

    // client-go's OpenAPISchema asks for protobuf only: gnostic's openapi.v2.Document.
    let token = s.admin_token();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (status, content_type, body) = runtime.block_on(async {
        let response = s
            .https_client()
            .get(format!("{}/openapi/v2", s.url))
            .bearer_auth(&token)
            .header(
                "Accept",
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            )
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        (status, content_type, response.bytes().await.unwrap())
    });
    assert_eq!(status, 200);
    // As kube-apiserver's: client-go cannot parse the `@` of the requested media type.
    assert_eq!(content_type, "application/octet-stream");
    // Field 1 (swagger) is "2.0".
    assert!(body.starts_with(b"\x0a\x032.0"), "{:?}", &body[..16]);
}

#[test]
fn kubectl_explain_reads_openapi_v2_protobuf() {
    let Some(s) = ApiServer::start("kubectl_explain_reads_openapi_v2_protobuf") else {
        return;
    };
    // plaintext-openapiv2 makes kubectl fetch /openapi/v2 as protobuf and walk the
    // gnostic models: pods -> spec ($ref PodSpec) -> containers (array of Container).
    let out = s.ok(&[
        "explain",
        "pods.spec.containers",
        "--output=plaintext-openapiv2",
    ]);
    assert!(out.contains("KIND:") && out.contains("Pod"), "{out}");
    // v2 explain names a referenced kind `Object`, as against kube-apiserver.
    assert!(out.contains("RESOURCE: containers <[]Object>"), "{out}");
    assert!(out.contains("A single application container"), "{out}");
    assert!(out.contains("FIELDS:"), "{out}");
    assert!(out.contains("image\t<string>"), "{out}");
    let image = s.ok(&[
        "explain",
        "pods.spec.containers.image",
        "--output=plaintext-openapiv2",
    ]);
    assert!(image.contains("FIELD:    image <string>"), "{image}");
}

#[test]
fn kubectl_discovers_the_api_in_two_requests() {
    let Some(s) = ApiServer::start("kubectl_discovers_the_api_in_two_requests") else {
        return;
    };
    let cache = s.data.path().join("kube-cache");
    let cache_dir = format!("--cache-dir={}", cache.display());
    let out = s.kubectl(&[&cache_dir, "get", "deploy", "-A", "-v=6"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let discovery: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"Response\" verb=\"GET\"") && !l.contains("/deployments"))
        .collect();
    assert_eq!(
        discovery.len(),
        2,
        "one request each for /api and /apis: {log}"
    );
    assert!(
        discovery[0].contains("/api?") && discovery[1].contains("/apis?"),
        "{discovery:?}"
    );
    let resources = s.ok(&[&cache_dir, "api-resources", "-o", "wide"]);
    let deployments = resources
        .lines()
        .find(|l| l.starts_with("deployments "))
        .unwrap_or_default();
    for word in ["deploy", "apps/v1", "true", "Deployment", "watch", "all"] {
        assert!(deployments.contains(word), "{word}: {resources}");
    }
    let all = s.ok(&[
        &cache_dir,
        "api-resources",
        "--categories=all",
        "-o",
        "name",
    ]);
    assert!(all.contains("pods") && !all.contains("configmaps"), "{all}");
    assert!(
        s.ok(&[&cache_dir, "get", "ns", "default", "-o", "name"])
            .contains("namespace/default")
    );
    // Clients that don't ask for aggregated discovery get the plain documents.
    let groups = s.ok(&["get", "--raw", "/apis"]);
    assert!(groups.contains("\"kind\":\"APIGroupList\""), "{groups}");
}

#[test]
fn watch_deletion_cascades_and_namespaces() {
    let Some(s) = ApiServer::start("watch_deletion_cascades_and_namespaces") else {
        return;
    };
    let _controllers = Controllers::start(&s);
    s.apply(MANIFEST);
    // A watch sees objects created after it started.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(s.kubeconfig())
        .args(["get", "cm", "-n", "shop", "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Lines as kubectl prints them; the initial list shows the watch is established.
    let (lines, seen_lines) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match seen_lines.recv_timeout(left) {
                Ok(line) if line == name => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        false
    };
    assert!(
        wait_for("configmap/settings"),
        "the watch lists what exists"
    );
    let later = s.data.path().join("later.yaml");
    std::fs::write(
        &later,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later, namespace: shop}\n",
    )
    .unwrap();
    s.ok(&["apply", "-f", later.to_str().unwrap()]);
    assert!(wait_for("configmap/later"), "the watch sees a later create");
    let _ = watch.kill();
    let _ = watch.wait();

    // Foreground deletion waits for blocking dependents (ownerReferences with
    // blockOwnerDeletion) and removes them.
    let uid = jsonpath(
        &s,
        &["get", "deploy", "web", "-n", "shop"],
        "{.metadata.uid}",
    );
    let owned = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  namespace: shop\n  ownerReferences:\n  - {{apiVersion: apps/v1, kind: Deployment, name: web, uid: {uid}, blockOwnerDeletion: true}}\n"
    );
    s.apply(&owned);
    s.ok(&[
        "delete",
        "deploy",
        "web",
        "-n",
        "shop",
        "--cascade=foreground",
        "--timeout=20s",
    ]);
    let left = s.ok(&["get", "cm", "-n", "shop", "-o", "name"]);
    assert!(!left.contains("owned"), "{left}");
    assert!(
        s.ok(&["get", "deploy", "-n", "shop", "-o", "name"])
            .trim()
            .is_empty()
    );

    // Deleting a namespace deletes what is in it.
    s.ok(&["delete", "ns", "shop", "--timeout=30s"]);
    let namespaces = s.ok(&["get", "ns", "-o", "name"]);
    assert!(!namespaces.contains("shop"), "{namespaces}");
    let key_count = s.ok(&["get", "cm,svc", "-A", "-o", "name"]);
    assert!(
        !key_count.contains("settings") && !key_count.contains("service/web"),
        "{key_count}"
    );
}

/// Creates configmaps from 8 tasks over HTTPS until killed; returns each
/// acknowledged (task, name, resourceVersion) in acknowledgement order.
async fn write_storm(
    url: String,
    client: reqwest::Client,
    token: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(usize, String, i64)>>>,
) {
    let mut tasks = Vec::new();
    for task in 0..8 {
        let (client, url, token, stop, acked) = (
            client.clone(),
            url.clone(),
            token.clone(),
            stop.clone(),
            acked.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("storm-{task}-{i}");
                i += 1;
                let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": i.to_string()}});
                let sent = client
                    .post(format!("{url}/api/v1/namespaces/default/configmaps"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status().as_u16() != 201 {
                    break;
                }
                let Ok(object) = response.json::<serde_json::Value>().await else { break };
                let rv = object["metadata"]["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap();
                acked.lock().unwrap().push((task, name, rv));
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

#[test]
fn acknowledged_writes_survive_sigkill_of_the_server() {
    let Some(s) = ApiServer::start("acknowledged_writes_survive_sigkill") else {
        return;
    };
    let token = s.admin_token();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let storm = runtime.spawn(write_storm(
        s.url.clone(),
        s.https_client(),
        token,
        stop.clone(),
        acked.clone(),
    ));
    // Kill mid-storm, once a good number of writes were acknowledged.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = s.kill_and_restart();
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(storm).unwrap();
    let acked = acked.lock().unwrap().clone();
    println!("{} creates acknowledged before SIGKILL", acked.len());
    assert!(
        acked.len() >= 20,
        "too few writes before the kill: {}",
        acked.len()
    );

    let listed: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "configmaps", "-n", "default", "-o", "json"])).unwrap();
    let stored: std::collections::HashMap<String, i64> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cm| {
            (
                cm["metadata"]["name"].as_str().unwrap().to_string(),
                cm["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            )
        })
        .collect();
    let mut last_per_task = [0i64; 8];
    let mut seen = std::collections::HashSet::new();
    for (task, name, rv) in &acked {
        assert_eq!(
            stored.get(name),
            Some(rv),
            "acknowledged {name} at {rv} is missing or changed after the kill"
        );
        assert!(
            *rv > last_per_task[*task],
            "revisions go forward within a task"
        );
        last_per_task[*task] = *rv;
        assert!(seen.insert(*rv), "revision {rv} acknowledged twice");
    }
}

const PYTHON_CLIENT: &str = r#"
import sys
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
apps = client.AppsV1Api()
ns = "py"
core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
cm = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg", labels={"app": "py"}), data={"k": "v"}))
assert cm.metadata.resource_version
listed = core.list_namespaced_config_map(ns, label_selector="app=py")
assert [c.metadata.name for c in listed.items] == ["cfg"], listed.items
# Changes after the list, then a watch from the list's resourceVersion replays them.
core.patch_namespaced_config_map("cfg", ns, {"data": {"k": "w"}})
core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="second")))
w = watch.Watch()
seen = []
for event in w.stream(core.list_namespaced_config_map, ns, resource_version=listed.metadata.resource_version, timeout_seconds=5):
    if event["object"].metadata.name == "kube-root-ca.crt":
        continue  # the server's own, made for every new namespace
    seen.append((event["type"], event["object"].metadata.name))
    if len(seen) == 2:
        w.stop()
deploy = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1DeploymentSpec(
        replicas=1,
        selector=client.V1LabelSelector(match_labels={"app": "web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "web"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx")]))))
apps.create_namespaced_deployment(ns, deploy)
apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 3}})
assert apps.read_namespaced_deployment("web", ns).spec.replicas == 3
try:
    core.read_namespaced_config_map("nope", ns)
    raise SystemExit("expected 404")
except client.exceptions.ApiException as e:
    assert e.status == 404, e.status
core.delete_namespaced_config_map("cfg", ns)
print("seen", seen)
print("ok")
"#;

/// kubectl's `create` subcommands use client-go's typed clients, which send Kubernetes
/// protobuf: what they create reads back as JSON with every field they set, and
/// invalid objects get Kubernetes' field errors.
#[test]
fn kubectl_create_subcommands_send_protobuf_and_work() {
    let Some(s) = ApiServer::start("kubectl_create_subcommands_send_protobuf_and_work") else {
        return;
    };
    s.ok(&["create", "namespace", "proto"]);
    // The request really is protobuf (-v=8 prints the request headers).
    let out = s.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.27",
        "--replicas=0",
        "--port=80",
        "-n",
        "proto",
        "-v=8",
    ]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "{log}"
    );
    let deploy: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "deploy", "web", "-n", "proto", "-o", "json"]))
            .unwrap();
    assert_eq!(deploy["spec"]["replicas"], 0, "{deploy}");
    assert_eq!(deploy["spec"]["selector"]["matchLabels"]["app"], "web");
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.27", "{deploy}");
    assert_eq!(container["ports"][0]["containerPort"], 80, "{deploy}");
    assert_eq!(deploy["metadata"]["namespace"], "proto");
    assert!(
        deploy["metadata"]["creationTimestamp"].is_string(),
        "{deploy}"
    );

    s.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=color=blue",
        "-n",
        "proto",
    ]);
    assert_eq!(
        jsonpath(&s, &["get", "cm", "cfg", "-n", "proto"], "{.data.color}"),
        "blue"
    );
    s.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cr3t",
        "-n",
        "proto",
    ]);
    assert_eq!(
        jsonpath(
            &s,
            &["get", "secret", "creds", "-n", "proto"],
            "{.data.password}"
        ),
        "czNjcjN0"
    );
    s.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "--tcp=80:8080",
        "-n",
        "proto",
    ]);
    assert_eq!(
        jsonpath(
            &s,
            &["get", "svc", "web", "-n", "proto"],
            "{.spec.ports[0].name} {.spec.ports[0].targetPort}"
        ),
        "80-8080 8080"
    );
    s.ok(&[
        "create",
        "job",
        "once",
        "--image=busybox",
        "-n",
        "proto",
        "--",
        "echo",
        "hi",
    ]);
    assert_eq!(
        jsonpath(
            &s,
            &["get", "job", "once", "-n", "proto"],
            "{.spec.template.spec.containers[0].command}"
        ),
        r#"["echo","hi"]"#
    );
    s.ok(&["create", "serviceaccount", "robot", "-n", "proto"]);
    assert_eq!(
        jsonpath(
            &s,
            &["get", "sa", "robot", "-n", "proto"],
            "{.metadata.name}"
        ),
        "robot"
    );

    // Validation errors come back as for JSON, and nothing is created.
    let error = s.fails(&[
        "create",
        "deployment",
        "Bad_Name",
        "--image=x",
        "-n",
        "proto",
    ]);
    assert!(
        error.contains(r#"metadata.name: Invalid value: "Bad_Name""#),
        "{error}"
    );
    let error = s.fails(&["create", "namespace", "proto"]);
    assert!(error.contains("already exists"), "{error}");
}

#[test]
fn the_python_kubernetes_client_works() {
    let Some(s) = ApiServer::start("the_python_kubernetes_client_works") else {
        return;
    };
    let venv = std::env::var("STRATA_VENV").unwrap_or_else(|_| "/var/tmp/strata-venv".into());
    let python = PathBuf::from(venv).join("bin/python");
    if !python.exists() {
        println!(
            "SKIP the_python_kubernetes_client_works: {} is missing (scripts/python-deps.sh installs it)",
            python.display()
        );
        return;
    }
    let out = Command::new(python)
        .arg("-c")
        .arg(PYTHON_CLIENT)
        .arg(s.kubeconfig())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("seen [('ADDED', 'cfg'), ('MODIFIED', 'cfg')]")
            || stdout.contains("seen [('MODIFIED', 'cfg')"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

#[test]
fn the_kube_rs_client_works() {
    use futures_util::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
    use kube::runtime::watcher;

    let Some(s) = ApiServer::start("the_kube_rs_client_works") else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(s.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

        // A watcher (list + watch, as controllers use it) sees what is created later.
        let mut events =
            watcher(cms.clone(), watcher::Config::default().labels("app=kube")).boxed();
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "from-kube", "labels": {"app": "kube"}},
            "data": {"a": "1"}
        }))
        .unwrap();
        let created = cms.create(&PostParams::default(), &cm).await.unwrap();
        let rv = created.metadata.resource_version.clone().unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = events.next().await {
                match event.unwrap() {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o)
                        if o.metadata.name.as_deref() == Some("from-kube") =>
                    {
                        return true;
                    }
                    _ => {}
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        assert!(seen, "the watcher saw the created configmap");

        let listed = cms
            .list(&ListParams::default().labels("app=kube"))
            .await
            .unwrap();
        assert_eq!(listed.items.len(), 1);
        let patched = cms
            .patch(
                "from-kube",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {"b": "2"}})),
            )
            .await
            .unwrap();
        assert_eq!(patched.data.unwrap().len(), 2);

        // A replace carrying the old resourceVersion is a 409 Conflict.
        let mut stale = created.clone();
        stale.metadata.resource_version = Some(rv);
        let err = cms
            .replace("from-kube", &PostParams::default(), &stale)
            .await
            .unwrap_err();
        match err {
            kube::Error::Api(status) => assert_eq!(status.code, 409),
            other => panic!("expected a 409, got {other:?}"),
        }
        cms.delete("from-kube", &DeleteParams::default())
            .await
            .unwrap();
        let gone = cms.get("from-kube").await.unwrap_err();
        match gone {
            kube::Error::Api(status) => assert_eq!(status.code, 404),
            other => panic!("expected a 404, got {other:?}"),
        }
    });
}

#[test]
fn service_account_tokens_are_issued_checked_and_scoped() {
    let Some(s) = ApiServer::start("service_account_tokens_are_issued_checked_and_scoped") else {
        return;
    };
    // Every namespace gets its default ServiceAccount and the cluster CA.
    s.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n");
    let ca = std::fs::read_to_string(s.data.path().join("pki/ca.crt")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let account = s.kubectl(&["get", "sa", "default", "-n", "shop"]);
        let root = s.kubectl(&[
            "get",
            "cm",
            "kube-root-ca.crt",
            "-n",
            "shop",
            "-o",
            r"jsonpath={.data.ca\.crt}",
        ]);
        if account.status.success() && String::from_utf8_lossy(&root.stdout) == ca {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no namespace defaults: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // New pods run as `default` with the token volume mounted.
    s.apply(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: shop}
spec:
  containers: [{name: app, image: busybox}]
"#,
    );
    let spec = jsonpath(
        &s,
        &["get", "pod", "app", "-n", "shop"],
        "{.spec.serviceAccountName} {.spec.volumes[0].name} {.spec.containers[0].volumeMounts[0].mountPath}",
    );
    let parts: Vec<&str> = spec.split(' ').collect();
    assert_eq!(parts[0], "default", "{spec}");
    assert!(parts[1].starts_with("kube-api-access-"), "{spec}");
    assert_eq!(parts[2], "/var/run/secrets/kubernetes.io/serviceaccount");
    // A ServiceAccount that opts out of automounting: its pods get no token volume.
    s.apply(
        r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: quiet, namespace: shop}
automountServiceAccountToken: false
---
apiVersion: v1
kind: Pod
metadata: {name: quiet, namespace: shop}
spec:
  serviceAccountName: quiet
  containers: [{name: app, image: busybox}]
"#,
    );
    let quiet = jsonpath(
        &s,
        &["get", "pod", "quiet", "-n", "shop"],
        "{.spec.volumes}",
    );
    assert_eq!(quiet, "", "{quiet}");

    // TokenRequest, plain and bound to the pod (kubectl sends protobuf), and as JSON; a
    // too short lifetime is refused.
    let token = s.ok(&["create", "token", "default", "-n", "shop"]);
    let token = token.trim();
    let bound = s.ok(&[
        "create",
        "token",
        "default",
        "-n",
        "shop",
        "--duration=20m",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "app",
    ]);
    let bound = bound.trim();
    let claims = |token: &str| -> serde_json::Value {
        use base64::Engine as _;
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    let bound_claims = claims(bound);
    assert_eq!(bound_claims["sub"], "system:serviceaccount:shop:default");
    assert_eq!(bound_claims["kubernetes.io"]["pod"]["name"], "app");
    let lifetime = bound_claims["exp"].as_i64().unwrap() - bound_claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 1200, "{bound_claims}");
    let elsewhere = s.ok(&[
        "create",
        "token",
        "default",
        "-n",
        "shop",
        "--audience=vault",
    ]);
    assert_eq!(
        claims(elsewhere.trim())["aud"],
        serde_json::json!(["vault"])
    );
    let file = s.data.path().join("token-request.json");
    std::fs::write(&file, r#"{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","spec":{"expirationSeconds":60}}"#).unwrap();
    let short = s.kubectl(&[
        "create",
        "--raw",
        "/api/v1/namespaces/shop/serviceaccounts/default/token",
        "-f",
        file.to_str().unwrap(),
    ]);
    let short = String::from_utf8_lossy(&short.stderr);
    assert!(short.contains("less than 10 minutes"), "{short}");

    // The token's holder is the service account: discovery, nothing more (no RBAC
    // binding names it).
    let ca_file = s.data.path().join("pki/ca.crt");
    let as_token = |token: &str, args: &[&str]| {
        Command::new("kubectl")
            .env("KUBECONFIG", s.data.path().join("none.yaml"))
            .arg(format!("--server={}", s.url))
            .arg(format!("--certificate-authority={}", ca_file.display()))
            .arg(format!("--token={token}"))
            .args(args)
            .output()
            .unwrap()
    };
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).into_owned();
    for t in [token, bound] {
        let api = as_token(t, &["get", "--raw", "/api"]);
        assert!(api.status.success(), "{}", stderr(&api));
        // Nothing is bound to it: not even its own ServiceAccount is readable.
        let me = as_token(t, &["get", "sa", "default", "-n", "shop"]);
        assert!(!me.status.success(), "{}", stderr(&me));
        let pods = as_token(t, &["get", "pods", "-n", "shop"]);
        assert!(!pods.status.success());
        assert!(
            stderr(&pods).contains(
                r#"User "system:serviceaccount:shop:default" cannot list resource "pods""#
            ),
            "{}",
            stderr(&pods)
        );
    }
    let garbage = as_token("a.b.c", &["get", "--raw", "/api"]);
    assert!(
        stderr(&garbage).contains("Unauthorized"),
        "{}",
        stderr(&garbage)
    );
    let garbage = as_token(elsewhere.trim(), &["get", "--raw", "/api"]);
    assert!(
        stderr(&garbage).contains("Unauthorized"),
        "{}",
        stderr(&garbage)
    );

    // A bound token dies with its pod; a token dies with its ServiceAccount.
    s.ok(&[
        "delete",
        "pod",
        "app",
        "-n",
        "shop",
        "--grace-period=0",
        "--force",
    ]);
    let gone = as_token(bound, &["get", "--raw", "/api"]);
    assert!(stderr(&gone).contains("Unauthorized"), "{}", stderr(&gone));
    assert!(as_token(token, &["get", "--raw", "/api"]).status.success());
    s.ok(&["delete", "sa", "default", "-n", "shop"]);
    let gone = as_token(token, &["get", "--raw", "/api"]);
    assert!(stderr(&gone).contains("Unauthorized"), "{}", stderr(&gone));
}

/// RBAC as kubectl uses it: a service account gets what the roles bound to it allow, in
/// the namespace of the binding; the default ClusterRoles exist; nobody grants more than
/// they hold.
#[test]
fn rbac_grants_what_bound_roles_allow_and_stops_escalation() {
    let Some(s) = ApiServer::start("rbac_grants_what_bound_roles_allow_and_stops_escalation")
    else {
        return;
    };
    let roles = s.ok(&["get", "clusterroles", "-o", "name"]);
    for role in ["cluster-admin", "admin", "edit", "view"] {
        assert!(
            roles.contains(&format!("clusterrole.rbac.authorization.k8s.io/{role}\n")),
            "{roles}"
        );
    }
    s.ok(&["create", "namespace", "team"]);
    s.ok(&["create", "serviceaccount", "dev", "-n", "team"]);
    let token = s.ok(&["create", "token", "dev", "-n", "team"]);
    let ca_file = s.data.path().join("pki/ca.crt");
    let as_dev = |args: &[&str]| {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", s.data.path().join("none.yaml"))
            .arg(format!("--server={}", s.url))
            .arg(format!("--certificate-authority={}", ca_file.display()))
            .arg(format!("--token={}", token.trim()))
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = as_dev(&["get", "pods", "-n", "team"]);
    assert!(
        !ok && text
            .contains(r#"User "system:serviceaccount:team:dev" cannot list resource "pods""#),
        "{text}"
    );
    let (ok, text) = as_dev(&["auth", "can-i", "list", "pods", "-n", "team"]);
    assert!(!ok && text.trim() == "no", "{text}");

    // A binding applies at once, in its namespace only.
    s.ok(&[
        "create",
        "rolebinding",
        "dev-edit",
        "--clusterrole=edit",
        "--serviceaccount=team:dev",
        "-n",
        "team",
    ]);
    let (ok, text) = as_dev(&["get", "pods", "-n", "team"]);
    assert!(ok, "{text}");
    let (ok, text) = as_dev(&["auth", "can-i", "create", "deployments.apps", "-n", "team"]);
    assert!(ok && text.trim() == "yes", "{text}");
    let (ok, text) = as_dev(&["auth", "can-i", "--list", "-n", "team"]);
    assert!(ok && text.contains("deployments.apps/scale"), "{text}");
    // An administrator checks as the service account (impersonation); the account
    // itself may not impersonate anyone.
    let out = s.kubectl(&[
        "auth",
        "can-i",
        "list",
        "pods",
        "-n",
        "team",
        "--as=system:serviceaccount:team:dev",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "yes");
    let out = s.kubectl(&[
        "get",
        "pods",
        "-n",
        "default",
        "--as=system:serviceaccount:team:dev",
    ]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("forbidden"),
        "{text}"
    );
    let (ok, text) = as_dev(&["get", "pods", "-n", "team", "--as=bob"]);
    assert!(
        !ok && text.contains(r#"cannot impersonate resource "users""#),
        "{text}"
    );
    let table = s.ok(&["get", "rolebinding", "dev-edit", "-n", "team", "-o", "wide"]);
    assert!(
        table.contains("ClusterRole/edit") && table.contains("team/dev"),
        "{table}"
    );
    let (ok, text) = as_dev(&[
        "create",
        "configmap",
        "made-by-dev",
        "--from-literal=a=b",
        "-n",
        "team",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = as_dev(&["get", "pods", "-n", "default"]);
    assert!(!ok && text.contains("forbidden"), "{text}");
    let (ok, text) = as_dev(&["get", "nodes"]);
    assert!(!ok && text.contains("forbidden"), "{text}");
    // edit may not touch RBAC.
    let (ok, text) = as_dev(&[
        "create",
        "role",
        "r",
        "--verb=get",
        "--resource=pods",
        "-n",
        "team",
    ]);
    assert!(!ok && text.contains("forbidden"), "{text}");

    // admin may write roles and bindings, within what it holds.
    s.ok(&[
        "create",
        "rolebinding",
        "dev-admin",
        "--clusterrole=admin",
        "--serviceaccount=team:dev",
        "-n",
        "team",
    ]);
    let (ok, text) = as_dev(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list",
        "--resource=pods",
        "-n",
        "team",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = as_dev(&[
        "create",
        "role",
        "node-reader",
        "--verb=get",
        "--resource=nodes",
        "-n",
        "team",
    ]);
    assert!(
        !ok && text.contains("attempting to grant RBAC permissions not currently held"),
        "{text}"
    );
    let (ok, text) = as_dev(&[
        "create",
        "rolebinding",
        "grab",
        "--clusterrole=cluster-admin",
        "--serviceaccount=team:dev",
        "-n",
        "team",
    ]);
    assert!(
        !ok && text.contains("attempting to grant RBAC permissions not currently held"),
        "{text}"
    );
    let (ok, text) = as_dev(&[
        "create",
        "rolebinding",
        "readers",
        "--role=pod-reader",
        "--user=carol",
        "-n",
        "team",
    ]);
    assert!(ok, "{text}");

    // Removing the binding takes the grant away.
    s.ok(&[
        "delete",
        "rolebinding",
        "dev-edit",
        "dev-admin",
        "-n",
        "team",
    ]);
    let (ok, text) = as_dev(&["get", "configmaps", "-n", "team"]);
    assert!(!ok && text.contains("forbidden"), "{text}");

    // Bad RBAC objects get field errors.
    let bad = s.data.path().join("bad-binding.yaml");
    std::fs::write(
        &bad,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: bad}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: x}\nsubjects:\n- {kind: ServiceAccount, name: robot}\n",
    )
    .unwrap();
    let error = s.fails(&["create", "-f", bad.to_str().unwrap()]);
    assert!(
        error.contains("roleRef.kind: Unsupported value: \"Role\""),
        "{error}"
    );
    assert!(
        error.contains("subjects[0].namespace: Required value"),
        "{error}"
    );
}
