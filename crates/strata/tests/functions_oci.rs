#![allow(clippy::unwrap_used)]
//! WebAssembly modules as OCI artifacts end to end: `strata fn push` puts a WAT example
//! in a real registry (Debian's docker-registry on loopback) in the Wasm OCI layout,
//! `strata fn deploy --wasm-oci` makes the gateway of a real `strata up` fetch, verify,
//! cache and serve it, and a missing tag is a `ModuleNotFound` with the registry's
//! message that heals once the tag is pushed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::cloud::Cloud;
use common::functions::example;
use strata_testkit::registry::{TestRegistry, require_registry};

/// One HTTP/1.1 GET (no chunked bodies: the gateway's wasm replies and the registry's
/// manifests have a length): (status, head, body).
fn get(address: &str, host: &str, path: &str, headers: &str) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, response[split + 4..].to_vec())
}

fn ready_condition(cloud: &Cloud, name: &str) -> serde_json::Value {
    let function = cloud.json(&["get", "function", name]);
    function["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .unwrap_or_default()
}

#[test]
fn wasm_modules_pushed_to_a_registry_are_served() {
    let test = "wasm_modules_pushed_to_a_registry_are_served";
    if !require_registry(test) {
        return;
    }
    let registry = TestRegistry::start().unwrap();
    let host = registry.host();
    let Some(cloud) = Cloud::start_with(test, None, &["--insecure-registry", &host]) else {
        return;
    };
    let gateway = cloud.gateway().to_string();
    let gateway_url = format!("http://{gateway}");
    let fn_cmd = |args: &[&str]| {
        let mut all = vec!["fn"];
        all.extend_from_slice(args);
        all.extend(["--gateway", &gateway_url]);
        cloud.strata_output(&all)
    };
    let text = |out: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    // Push: WAT is compiled, the artifact has the Wasm OCI media types.
    let reference = format!("{host}/fns/hello:v1");
    let push = |file: &str, reference: &str| cloud.strata_output(&["fn", "push", file, reference]);
    let out = push(&example("hello.wat"), &reference);
    assert!(out.status.success(), "push: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{reference}: digest: sha256:")),
        "{}",
        text(&out)
    );
    let (status, head, body) = get(
        &host,
        &host,
        "/v2/fns/hello/manifests/v1",
        "Accept: application/vnd.oci.image.manifest.v1+json\r\n",
    );
    assert_eq!(status, 200, "{head}");
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.wasm.content.layer.v1+wasm"
    );
    let layer_digest = layer["digest"].as_str().unwrap().to_string();
    let (status, _, module) = get(
        &host,
        &host,
        &format!("/v2/fns/hello/blobs/{layer_digest}"),
        "",
    );
    assert_eq!(status, 200);
    assert!(module.starts_with(b"\0asm"), "the layer is binary wasm");

    // Deploy from the registry; the gateway serves it, and the layer is cached.
    let out = fn_cmd(&["deploy", "hello", "--wasm-oci", &reference]);
    assert!(out.status.success(), "deploy: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("http://hello.default.fn.localhost:"),
        "{}",
        text(&out)
    );
    let function = cloud.json(&["get", "function", "hello"]);
    assert_eq!(function["spec"]["wasm"]["oci"], reference.as_str());
    let (status, head, body) = get(&gateway, "hello.default.fn.localhost", "/", "");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, b"hello from WebAssembly\n");
    let hex = layer_digest.trim_start_matches("sha256:");
    assert!(
        cloud
            .data_path()
            .join("functions/modules/blobs/sha256")
            .join(hex)
            .is_file(),
        "the module is cached by digest"
    );

    // --wasm-oci excludes --wasm.
    let out = fn_cmd(&[
        "deploy",
        "both",
        "--wasm-oci",
        &reference,
        "--wasm",
        &example("hello.wat"),
    ]);
    assert!(!out.status.success(), "{}", text(&out));

    // A tag the registry does not have: deploy fails naming the problem, the condition
    // carries the registry's message.
    let missing = format!("{host}/fns/hello:v2");
    let out = fn_cmd(&["deploy", "later", "--wasm-oci", &missing]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ModuleNotFound"), "{stderr}");
    assert!(stderr.contains("manifest unknown"), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
    let ready = ready_condition(&cloud, "later");
    assert_eq!(ready["status"], "False", "{ready}");
    assert_eq!(ready["reason"], "ModuleNotFound", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap_or_default()
            .contains("manifest unknown"),
        "{ready}"
    );
    let (status, _, _) = get(&gateway, "later.default.fn.localhost", "/", "");
    assert_ne!(status, 200);

    // Once the tag is pushed, the gateway retries and serves it.
    let out = push(&example("echo.wat"), &missing);
    assert!(out.status.success(), "push: {}", text(&out));
    cloud.wait_for("the missing tag to be fetched", || {
        ready_condition(&cloud, "later")["status"] == "True"
    });
    let (status, head, _) = get(&gateway, "later.default.fn.localhost", "/", "");
    assert_eq!(status, 200, "{head}");
}
