#![allow(clippy::unwrap_used)]
//! `serverless.strata.dev/v1alpha1` Functions through the in-process API server: kube-rs
//! create/list/watch/patch/delete with the defaults filled in, a 422 naming the field
//! for each validation rule, the status subresource split, the CRD-like media types
//! (406 for protobuf only, 415 for strategic merge patch), and real kubectl (apply,
//! get with the table columns, yaml, explain, merge patch, delete) and the Python
//! `kubernetes` client's CustomObjectsApi when they are installed.

use std::process::{Command, Output};

use futures_util::StreamExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use strata_api::function::Function;
use strata_testkit::cluster::TestApiServer;

fn function(name: &str, spec: Value) -> Function {
    serde_json::from_value(json!({
        "apiVersion": "serverless.strata.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

/// The causes of a 422: field and message each.
fn invalid(err: kube::Error) -> Vec<(String, String)> {
    let kube::Error::Api(status) = err else {
        panic!("not an API error: {err}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{status:?}"
    );
    status
        .details
        .unwrap()
        .causes
        .into_iter()
        .map(|c| (c.field, c.message))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn functions_are_served_validated_and_split_from_their_status() {
    let server = TestApiServer::start().await;
    let client = server.admin_client().await;

    let resources = client
        .list_api_group_resources("serverless.strata.dev/v1alpha1")
        .await
        .unwrap();
    let served = resources
        .resources
        .iter()
        .find(|r| r.name == "functions")
        .unwrap();
    assert_eq!(
        (served.kind.as_str(), served.namespaced),
        ("Function", true)
    );
    assert_eq!(served.short_names.as_deref(), Some(&["fn".to_string()][..]));
    assert!(
        resources
            .resources
            .iter()
            .any(|r| r.name == "functions/status")
    );

    let api: Api<Function> = Api::namespaced(client.clone(), "default");
    let mut watch = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    let wasm = json!({"wasm": {"configMap": {"name": "hello-wasm"}}});
    let created = api
        .create(&PostParams::default(), &function("hello", wasm.clone()))
        .await
        .unwrap();
    let spec = serde_json::to_value(created.spec.as_ref().unwrap()).unwrap();
    assert_eq!(
        spec,
        json!({"wasm": {"configMap": {"name": "hello-wasm", "key": "module.wasm"}},
            "memory": "128Mi", "timeoutSeconds": 10, "minScale": 0, "maxScale": 10,
            "targetConcurrency": 10, "containerConcurrency": 0,
            "scaleToZeroAfterSeconds": 60, "allowNetwork": false})
    );
    assert_eq!(created.metadata.generation, Some(1));
    match watch.next().await.unwrap().unwrap() {
        WatchEvent::Added(f) => assert_eq!(f.metadata.name.as_deref(), Some("hello")),
        other => panic!("{other:?}"),
    }

    // Each rule, refused with its field path.
    let cases = [
        (
            json!({"wasm": {"oci": "r/m:1"}, "image": {"name": "x"}}),
            "spec.wasm",
        ),
        (json!({}), "spec.wasm"),
        (
            json!({"image": {"name": "x"}, "minScale": 5, "maxScale": 2}),
            "spec.maxScale",
        ),
        (
            json!({"image": {"name": "x"}, "schedule": "61 * * * *"}),
            "spec.schedule",
        ),
        (
            json!({"image": {"name": "x"}, "env": [{"name": "1X", "value": "v"}]}),
            "spec.env[0].name",
        ),
        (
            json!({"image": {"name": "x"}, "memory": "a lot"}),
            "spec.memory",
        ),
        (
            json!({"wasm": {"oci": "r/m:1", "interface": "grpc"}}),
            "spec.wasm.interface",
        ),
    ];
    for (i, (spec, field)) in cases.into_iter().enumerate() {
        let err = api
            .create(&PostParams::default(), &function(&format!("bad-{i}"), spec))
            .await
            .unwrap_err();
        let causes = invalid(err);
        assert_eq!(causes[0].0, field, "{causes:?}");
    }
    let err = api
        .create(&PostParams::default(), &function("Bad_Name", wasm.clone()))
        .await
        .unwrap_err();
    assert_eq!(invalid(err)[0].0, "metadata.name");

    // The status subresource changes only status; the main resource only the rest.
    let mut with_status = api.get("hello").await.unwrap();
    with_status.spec.as_mut().unwrap().max_scale = Some(99);
    with_status.status = Some(
        serde_json::from_value(json!({"url": "http://hello.default.fn.localhost:8080/",
            "replicas": 1, "conditions": [{"type": "Ready", "status": "True", "reason": "Serving",
                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}))
        .unwrap(),
    );
    let after = api
        .replace_status("hello", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(after.spec.as_ref().unwrap().max_scale, Some(10));
    assert_eq!(after.status.as_ref().unwrap().replicas, Some(1));
    let mut changed = after.clone();
    changed.spec.as_mut().unwrap().max_scale = Some(3);
    changed.status.as_mut().unwrap().replicas = Some(7);
    let replaced = api
        .replace("hello", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(replaced.spec.as_ref().unwrap().max_scale, Some(3));
    assert_eq!(replaced.status.as_ref().unwrap().replicas, Some(1));
    assert_eq!(replaced.metadata.generation, Some(2));

    // Merge patch works; strategic merge patch is refused as for a custom resource.
    let patched = api
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"timeoutSeconds": 30}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.as_ref().unwrap().timeout_seconds, Some(30));
    let err = api
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"timeoutSeconds": 31}})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (415, "UnsupportedMediaType")
    );

    media_types_are_those_of_a_custom_resource(&client).await;

    api.delete("hello", &DeleteParams::default()).await.unwrap();
    assert!(
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let mut kinds = Vec::new();
    while let Some(Ok(event)) = watch.next().await {
        kinds.push(match event {
            WatchEvent::Modified(_) => "MODIFIED",
            WatchEvent::Deleted(_) => "DELETED",
            _ => "OTHER",
        });
        if kinds.last() == Some(&"DELETED") {
            break;
        }
    }
    assert_eq!(kinds.last(), Some(&"DELETED"), "{kinds:?}");

    kubectl_manages_functions(&server);
    python_custom_objects_api(&server);
}

/// JSON when JSON is among the accepted types, 406 when only protobuf is; a table
/// with the Function columns.
async fn media_types_are_those_of_a_custom_resource(client: &kube::Client) {
    let path = "/apis/serverless.strata.dev/v1alpha1/namespaces/default/functions";
    let get = |accept: &'static str| {
        http::Request::get(path)
            .header("Accept", accept)
            .body(Vec::new())
            .unwrap()
    };
    let list: Value = client
        .request(get("application/vnd.kubernetes.protobuf, application/json"))
        .await
        .unwrap();
    assert_eq!(list["kind"], "FunctionList");
    let err = client
        .request::<Value>(get("application/vnd.kubernetes.protobuf"))
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (406, "NotAcceptable")
    );
    let table: Value = client
        .request(get(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        ))
        .await
        .unwrap();
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["Name", "URL", "Ready", "Replicas", "Last Invoked", "Age"]
    );
    assert_eq!(table["rows"][0]["cells"][2], "True");
}

fn kubectl(server: &TestApiServer, args: &[&str]) -> std::io::Result<Output> {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(server.kubeconfig_path())
        .args(args)
        .output()
}

fn ok(server: &TestApiServer, args: &[&str]) -> String {
    let out = kubectl(server, args).unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const MANIFEST: &str = "apiVersion: serverless.strata.dev/v1alpha1
kind: Function
metadata:
  name: echo
  namespace: default
spec:
  image:
    name: localhost/httpd:latest
    port: 8080
    args: [\"-f\", \"-p\", \"8080\"]
  memory: 64Mi
  maxScale: 3
  env:
  - name: GREETING
    value: hello
  schedule: \"*/5 * * * MON-FRI\"
";

/// kubectl apply (twice, the second a merge patch), get with the table, get -o yaml,
/// explain, patch --type merge, a refused invalid apply, and delete (skipped, with a
/// SKIP line, without kubectl).
fn kubectl_manages_functions(server: &TestApiServer) {
    if kubectl(server, &["version", "--client"]).is_err() {
        println!("SKIP kubectl part: kubectl is not installed");
        return;
    }
    let file = server.data_dir().join("function.yaml");
    std::fs::write(&file, MANIFEST).unwrap();
    let file = file.to_str().unwrap();
    assert!(
        ok(server, &["apply", "-f", file]).contains("function.serverless.strata.dev/echo created")
    );
    let changed = MANIFEST.replace("maxScale: 3", "maxScale: 4");
    std::fs::write(file, changed).unwrap();
    assert!(ok(server, &["apply", "-f", file]).contains("configured"));
    assert_eq!(
        ok(
            server,
            &[
                "get",
                "fn",
                "echo",
                "-o",
                "jsonpath={.spec.maxScale} {.spec.timeoutSeconds} {.spec.image.port}"
            ]
        ),
        "4 10 8080"
    );

    let table = ok(server, &["get", "fn"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "URL", "READY", "REPLICAS", "LAST", "INVOKED", "AGE"]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..5], ["echo", "<none>", "<none>", "0", "<none>"]);
    assert!(ok(server, &["get", "all"]).contains("function.serverless.strata.dev/echo"));

    let yaml = ok(server, &["get", "functions", "-o", "yaml"]);
    assert!(
        yaml.contains("kind: FunctionList") || yaml.contains("kind: List"),
        "{yaml}"
    );
    assert!(yaml.contains("scaleToZeroAfterSeconds: 60"), "{yaml}");
    assert!(yaml.contains("schedule: '*/5 * * * MON-FRI'"), "{yaml}");

    let explain = ok(server, &["explain", "function.spec"]);
    assert!(explain.contains("maxScale"), "{explain}");
    assert!(explain.contains("scaleToZeroAfterSeconds"), "{explain}");
    let explain = ok(server, &["explain", "fn.spec.wasm.interface"]);
    assert!(explain.contains("cgi"), "{explain}");

    ok(
        server,
        &[
            "patch",
            "fn",
            "echo",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"minScale":1}}"#,
        ],
    );
    assert_eq!(
        ok(
            server,
            &["get", "fn", "echo", "-o", "jsonpath={.spec.minScale}"]
        ),
        "1"
    );
    let bad = MANIFEST.replace("maxScale: 3", "maxScale: 3\n  minScale: 9");
    std::fs::write(file, bad).unwrap();
    let out = kubectl(server, &["apply", "-f", file]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("spec.maxScale"), "{stderr}");
    let unknown = MANIFEST.replace("maxScale: 3", "maxScale: 3\n  replicas: 2");
    std::fs::write(file, unknown).unwrap();
    let out = kubectl(server, &["apply", "-f", file]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown field \"spec.replicas\""),
        "{stderr}"
    );

    ok(server, &["delete", "fn", "echo"]);
    assert!(ok(server, &["get", "fn", "-o", "name"]).trim().is_empty());
}

const PYTHON: &str = r#"
import sys
from kubernetes import client, config
config.load_kube_config(config_file=sys.argv[1])
api = client.CustomObjectsApi()
body = {"apiVersion": "serverless.strata.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "py"}, "spec": {"wasm": {"oci": "localhost/hello-wasm:1"}}}
created = api.create_namespaced_custom_object("serverless.strata.dev", "v1alpha1", "default", "functions", body)
print("created", created["spec"]["maxScale"], created["spec"]["memory"])
items = api.list_namespaced_custom_object("serverless.strata.dev", "v1alpha1", "default", "functions")["items"]
print("listed", [i["metadata"]["name"] for i in items])
api.patch_namespaced_custom_object_status("serverless.strata.dev", "v1alpha1", "default", "functions", "py",
    {"status": {"replicas": 2}})
got = api.get_namespaced_custom_object("serverless.strata.dev", "v1alpha1", "default", "functions", "py")
print("status", got["status"]["replicas"])
api.delete_namespaced_custom_object("serverless.strata.dev", "v1alpha1", "default", "functions", "py")
print("ok")
"#;

/// The Python client's CustomObjectsApi creates, lists, patches the status of and
/// deletes a Function (skipped, with a SKIP line, without the venv).
fn python_custom_objects_api(server: &TestApiServer) {
    let venv = std::env::var("STRATA_VENV").unwrap_or_else(|_| "/var/tmp/strata-venv".into());
    let python = std::path::PathBuf::from(venv).join("bin/python");
    if !python.exists() {
        println!(
            "SKIP python part: {} is missing (scripts/python-deps.sh installs it)",
            python.display()
        );
        return;
    }
    let out = Command::new(python)
        .arg("-c")
        .arg(PYTHON)
        .arg(server.kubeconfig_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["created 10 128Mi", "listed ['py']", "status 2", "ok"]
    );
}
