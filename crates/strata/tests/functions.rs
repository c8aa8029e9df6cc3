#![allow(clippy::unwrap_used)]
//! Serverless functions end to end on a real `strata up`: `strata fn deploy` stores a
//! WebAssembly module and a Function, the gateway serves it by host and by path (cold,
//! then warm), kubectl shows it, failures come back as clear 5xx and are metered, usage
//! and logs are reported, bad modules and manifests are refused, and removal stops it.

mod common;

use std::time::Duration;

use common::cloud::Cloud;
use common::functions::{example, http};

#[test]
fn wasm_functions_deploy_invoke_meter_and_go() {
    let Some(cloud) = Cloud::start("wasm_functions_deploy_invoke_meter_and_go") else {
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

    // A scheduled function: nobody calls it, the cron trigger does (checked at the end).
    let tick = example("hello.wat");
    let out = fn_cmd(&["deploy", "tick", "--wasm", &tick, "--schedule", "* * * * *"]);
    assert!(
        out.status.success(),
        "deploy tick: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Deploy waits for Ready and prints the URL.
    let hello = example("hello.wat");
    let out = fn_cmd(&["deploy", "hello", "--wasm", &hello, "--memory", "64Mi"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "deploy: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("http://hello.default.fn.localhost:"),
        "{stdout}"
    );

    // Host routing (cold), then path routing (warm).
    let (status, head, body) = http(&gateway, "GET", "hello.default.fn.localhost", "/", b"");
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, b"hello from WebAssembly\n");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-strata-cold-start: true"),
        "{head}"
    );
    let (status, head, _) = http(&gateway, "GET", "127.0.0.1", "/fn/default/hello/x?y=1", b"");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("x-strata-cold-start: false"),
        "{head}"
    );
    let (status, _, body) = http(&gateway, "GET", "127.0.0.1", "/fn/default/nope", b"");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("default/nope not found"));

    // The CLI invokes through the gateway; echo gets its body back.
    let out = fn_cmd(&["invoke", "hello"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from WebAssembly\n"
    );
    let echo = example("echo.wat");
    assert!(
        fn_cmd(&["deploy", "echo", "--wasm", &echo])
            .status
            .success()
    );
    let out = fn_cmd(&["invoke", "echo", "--data", "ping pong"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ping pong",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A wasi:http component: told apart from a CGI module by its bytes, it sees its path
    // below the function's prefix and reads the request body.
    if let Some(component) =
        strata_testkit::wasm::hello_http("wasm_functions_deploy_invoke_meter_and_go (components)")
    {
        let file = cloud.data_path().join("hello-http.wasm");
        std::fs::write(&file, component).unwrap();
        let out = fn_cmd(&["deploy", "web", "--wasm", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "deploy a component: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (status, head, body) = http(
            &gateway,
            "POST",
            "127.0.0.1",
            "/fn/default/web/up?z=3",
            b"12345",
        );
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "{head}\n{body}");
        for line in [
            "path: /up?z=3\n",
            "prefix: /fn/default/web\n",
            "body: 5 bytes\n",
        ] {
            assert!(body.contains(line), "{line:?} missing in:\n{body}");
        }
        let logs = String::from_utf8_lossy(&fn_cmd(&["logs", "web"]).stdout).into_owned();
        assert!(logs.contains("handling /up?z=3"), "{logs}");
    }

    // A trapping function: 502 with the cause, logged, counted as an error.
    let trap = cloud.data_path().join("trap.wat");
    std::fs::write(
        &trap,
        r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#,
    )
    .unwrap();
    assert!(
        fn_cmd(&["deploy", "trap", "--wasm", trap.to_str().unwrap()])
            .status
            .success()
    );
    let (status, _, body) = http(&gateway, "GET", "trap.default.fn.localhost", "/", b"");
    assert_eq!(status, 502);
    assert!(
        String::from_utf8_lossy(&body).contains("unreachable"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let out = fn_cmd(&["invoke", "trap"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("502"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = String::from_utf8_lossy(&fn_cmd(&["logs", "trap"]).stdout).into_owned();
    assert!(logs.contains("invocation failed"), "{logs}");

    // kubectl sees the functions with their columns; the status carries usage.
    let table = cloud.ok(&["get", "fn"]);
    for column in [
        "URL",
        "READY",
        "REPLICAS",
        "LAST INVOKED",
        "hello",
        "echo",
        "trap",
    ] {
        assert!(table.contains(column), "{column} missing in:\n{table}");
    }
    cloud.wait_for("hello's usage in its status", || {
        let function = cloud.json(&["get", "function", "hello"]);
        function["status"]["usage"]["invocations"] == 3
            && function["status"]["usage"]["coldStarts"] == 1
            && function["status"]["conditions"][0]["status"] == "True"
    });
    cloud.wait_for("trap's error count", || {
        cloud.json(&["get", "function", "trap"])["status"]["usage"]["errors"] == 2
    });
    let usage = String::from_utf8_lossy(&fn_cmd(&["usage"]).stdout).into_owned();
    assert!(
        usage.contains("GB-SECONDS")
            && usage
                .lines()
                .any(|l| l.starts_with("hello") && l.contains(" 3 ")),
        "{usage}"
    );
    let recent =
        String::from_utf8_lossy(&fn_cmd(&["usage", "--since", "1h", "trap"]).stdout).into_owned();
    assert!(
        recent
            .lines()
            .any(|l| l.starts_with("trap") && l.contains(" 2 ")),
        "{recent}"
    );
    let metrics = http(&gateway, "GET", "127.0.0.1", "/metrics", b"").2;
    assert!(
        String::from_utf8_lossy(&metrics).contains(
            "strata_function_invocations_total{namespace=\"default\",function=\"hello\"} 3"
        )
    );

    // Refusals: a module that does not compile; a manifest with two sources.
    let garbage = cloud.data_path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm\x01\0\0\0garbage").unwrap();
    let out = fn_cmd(&["deploy", "broken", "--wasm", garbage.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CompileFailed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = cloud.data_path().join("two-sources.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: serverless.strata.dev/v1alpha1\nkind: Function\nmetadata: {name: twice}\nspec:\n  wasm: {configMap: {name: x}}\n  image: {name: localhost/httpd:latest}\n",
    )
    .unwrap();
    let out = cloud.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    cloud.wait_for("the cron trigger to invoke tick", || {
        cloud.json(&["get", "function", "tick"])["status"]["usage"]["invocations"]
            .as_i64()
            .is_some_and(|n| n >= 1)
    });

    // Removal: the gateway stops serving it and the module's ConfigMap goes with it.
    assert!(fn_cmd(&["rm", "hello"]).status.success());
    cloud.wait_for("hello to stop being served", || {
        http(&gateway, "GET", "hello.default.fn.localhost", "/", b"").0 == 404
    });
    cloud.wait_for("hello's module to be collected", || {
        !cloud
            .kubectl(&["get", "configmap", "hello-wasm"])
            .status
            .success()
    });
}

/// Pods of `function` that are not being deleted.
fn live_pods(cloud: &Cloud, function: &str) -> usize {
    let pods = cloud.json(&[
        "get",
        "pods",
        "-l",
        &format!("serverless.strata.dev/function={function}"),
    ]);
    pods["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .count()
    })
}

#[test]
fn image_functions_scale_from_zero_up_and_back_without_losing_requests() {
    let test = "image_functions_scale_from_zero_up_and_back_without_losing_requests";
    let Some(cloud) = Cloud::start(test) else {
        return;
    };
    let gateway = cloud.gateway().to_string();
    let gateway_url = format!("http://{gateway}");
    let out = cloud.strata_output(&[
        "fn",
        "deploy",
        "web",
        "--image",
        "localhost/httpd:latest",
        "--target",
        "1",
        "--max",
        "3",
        "--scale-to-zero-after",
        "3s",
        "--timeout",
        "60s",
        "--gateway",
        &gateway_url,
    ]);
    assert!(
        out.status.success(),
        "deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        live_pods(&cloud, "web"),
        0,
        "an image function starts at zero"
    );

    // Scale from zero: the request is held until a pod serves it.
    let (status, head, body) = http(&gateway, "GET", "web.default.fn.localhost", "/", b"");
    assert_eq!(status, 200, "{head}\n{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("Hello from a Strata container"));
    assert!(
        head.to_ascii_lowercase()
            .contains("x-strata-cold-start: true"),
        "{head}"
    );
    assert_eq!(live_pods(&cloud, "web"), 1);

    // A burst of concurrent clients: every response is complete, and the function scales up.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..12)
        .map(|_| {
            let gateway = gateway.clone();
            std::thread::spawn(move || {
                let until = std::time::Instant::now() + Duration::from_secs(4);
                let mut results = Vec::new();
                while std::time::Instant::now() < until {
                    let (status, _, body) =
                        http(&gateway, "GET", "127.0.0.1", "/fn/default/web/", b"");
                    results.push((
                        status,
                        String::from_utf8_lossy(&body).contains("Hello from a Strata container"),
                    ));
                }
                results
            })
        })
        .collect();
    while !clients.iter().all(|c| c.is_finished()) {
        peak.fetch_max(
            live_pods(&cloud, "web"),
            std::sync::atomic::Ordering::Relaxed,
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut burst = 0;
    for client in clients {
        let results = client.join().unwrap();
        burst += results.len();
        for (status, complete) in results {
            assert_eq!(
                (status, complete),
                (200, true),
                "a request of the burst failed"
            );
        }
    }
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        peak >= 2,
        "the burst scaled the function up (peak {peak} pods)"
    );

    // Scale-down drains: a steady client while instances go sees no failure.
    for _ in 0..40 {
        let (status, _, _) = http(&gateway, "GET", "web.default.fn.localhost", "/", b"");
        assert_eq!(status, 200, "a request during scale-down failed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Idle: back to zero, then a request starts it again.
    cloud.wait_for("the idle function to scale to zero", || {
        live_pods(&cloud, "web") == 0
    });
    let (status, head, _) = http(&gateway, "GET", "web.default.fn.localhost", "/", b"");
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("x-strata-cold-start: true"),
        "{head}"
    );
    // The instance's logs (busybox httpd -v logs each request) through `strata fn logs`.
    cloud.wait_for("the instance's request log", || {
        let out = cloud.strata_output(&["fn", "logs", "web"]);
        String::from_utf8_lossy(&out.stdout).contains("[web-")
    });
    let expected = i64::try_from(1 + burst + 40 + 1).unwrap();
    let mut usage = serde_json::Value::Null;
    for _ in 0..100 {
        usage = cloud.json(&["get", "function", "web"])["status"]["usage"].clone();
        if usage["invocations"].as_i64() == Some(expected) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(usage["invocations"].as_i64(), Some(expected), "{usage}");
    assert_eq!(usage["errors"].as_i64(), Some(0), "{usage}");
    assert!(usage["coldStarts"].as_i64() >= Some(2), "{usage}");

    // An image that does not exist: the request times out with the cause.
    let out = cloud.strata_output(&[
        "fn",
        "deploy",
        "missing",
        "--image",
        "localhost/no-such-image:latest",
        "--timeout",
        "5s",
        "--gateway",
        &gateway_url,
    ]);
    assert!(
        out.status.success(),
        "deploy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _, body) = http(&gateway, "GET", "missing.default.fn.localhost", "/", b"");
    assert_eq!(status, 504, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("no instance became ready"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // Removing the function removes its pods.
    assert!(
        cloud
            .strata_output(&["fn", "rm", "web", "missing"])
            .status
            .success()
    );
    cloud.wait_for("the function's pods to go", || {
        live_pods(&cloud, "web") + live_pods(&cloud, "missing") == 0
    });
}
