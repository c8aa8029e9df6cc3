#![allow(clippy::unwrap_used, missing_docs)]
//! Serverless functions through the gateway, side by side with a native peer (the same
//! hyper stack answering from Rust, no WebAssembly) in one run:
//!
//! - cold invocation latency (p50/p99): a function just deployed or scaled to zero, so the
//!   request links the module and instantiates it from the pool (the module is compiled
//!   at deploy, as an image is pulled before a pod starts);
//! - warm invocation latency (p50/p99), and the native peer's;
//! - warm throughput with wrk (2 threads, 32 connections), wasm vs native.
//!
//! `cargo bench -p strata-bench --bench functions [-- --seconds 3 --samples 1000]`.
//! Needs wrk (`scripts/install-deps.sh bench`); everything listens on loopback.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use strata_functions::gateway::{Gateway, GatewayOptions};
use strata_functions::{
    Backend, EngineOptions, FunctionConfig, FunctionKey, FunctionTable, UsageSnapshot, WasmEngine,
    WasmFunction,
};
use tokio::net::{TcpListener, TcpStream};

mod common;
use common::{flag, percentile};

/// Warm requests after each image function's cold start (and to each direct pod).
const WARM_PER_SAMPLE: usize = 20;

const HELLO: &str = include_str!("../../examples/functions/hello.wat");

fn config(name: &str, module: &wasmtime::Module) -> FunctionConfig {
    FunctionConfig {
        key: FunctionKey::new("bench", name),
        memory_bytes: 128 << 20,
        timeout: Duration::from_secs(10),
        env: vec![],
        allow_network: false,
        max_in_flight: 0,
        min_scale: 0,
        scale_to_zero_after: Duration::from_secs(600),
        backend: Backend::Wasm(module.clone()),
    }
}

async fn native_peer() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    let mut response = http::Response::new(Full::new(Bytes::from_static(
                        b"hello from WebAssembly\n",
                    )));
                    response
                        .headers_mut()
                        .insert("content-type", "text/plain".parse().unwrap());
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

async fn timed_get(sender: &mut Sender, path: &str) -> Duration {
    let request = Request::get(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    sender.ready().await.unwrap();
    let started = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.into_body().collect().await.unwrap();
    started.elapsed()
}

fn report(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let p50 = percentile(&samples, 0.5);
    let p99 = percentile(&samples, 0.99);
    println!(
        "  {label:<34} p50 {:>8.1} µs   p99 {:>8.1} µs",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    p50
}

fn wrk(url: &str, seconds: usize) -> f64 {
    let out = std::process::Command::new("wrk")
        .args(["-t2", "-c32", &format!("-d{seconds}s"), url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text
        .lines()
        .filter(|l| l.contains("errors") || l.contains("Non-2xx"))
    {
        println!("    ({url}: {})", line.trim());
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds = flag(&args, "--seconds", 3);
    let samples = flag(&args, "--samples", 1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let engine = WasmEngine::new(&EngineOptions::default()).unwrap();
        println!(
            "functions benchmark (instances {}):",
            if engine.pooled() { "pooled" } else { "on demand" }
        );
        let module = WasmFunction::compile(&engine, HELLO.as_bytes()).unwrap();
        let table = Arc::new(FunctionTable::new(engine));
        table.upsert(config("hello", &module), UsageSnapshot::default()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway_addr = listener.local_addr().unwrap();
        tokio::spawn(Gateway::new(table.clone(), GatewayOptions::default()).serve(listener, std::future::pending()));
        let native_addr = native_peer().await;

        let mut gateway = connect(gateway_addr).await;
        let mut native = connect(native_addr).await;
        for _ in 0..200 {
            timed_get(&mut gateway, "/fn/bench/hello").await;
            timed_get(&mut native, "/").await;
        }
        // Cold: each sample is a function nobody has called (linked and instantiated on
        // the request), interleaved with warm calls and the native peer.
        let (mut cold, mut warm, mut peer) = (vec![], vec![], vec![]);
        for i in 0..samples {
            let name = format!("cold-{i}");
            table.upsert(config(&name, &module), UsageSnapshot::default()).unwrap();
            cold.push(timed_get(&mut gateway, &format!("/fn/bench/{name}")).await);
            table.remove(&FunctionKey::new("bench", &name));
            warm.push(timed_get(&mut gateway, "/fn/bench/hello").await);
            peer.push(timed_get(&mut native, "/").await);
        }
        let cold_p50 = report("wasm cold (gateway, end to end)", cold);
        let warm_p50 = report("wasm warm (gateway, end to end)", warm);
        let peer_p50 = report("native hyper peer", peer);
        println!(
            "  ratios: cold/native {:.2}, warm/native {:.2}, cold/warm {:.2}",
            cold_p50.as_secs_f64() / peer_p50.as_secs_f64(),
            warm_p50.as_secs_f64() / peer_p50.as_secs_f64(),
            cold_p50.as_secs_f64() / warm_p50.as_secs_f64()
        );
        let wrk_missing = std::process::Command::new("wrk").arg("--version").output().is_err();
        if wrk_missing {
            println!("  SKIP throughput: wrk is not installed (scripts/install-deps.sh bench)");
        }
        if !wrk_missing {
        let wasm_url = format!("http://{gateway_addr}/fn/bench/hello");
        let native_url = format!("http://{native_addr}/");
        let (wasm_rate, native_rate) = tokio::task::spawn_blocking(move || {
            let native = wrk(&native_url, seconds);
            let wasm = wrk(&wasm_url, seconds);
            (wasm, native)
        })
        .await
        .unwrap();
        println!(
            "  warm throughput (wrk -t2 -c32 {seconds}s): wasm {wasm_rate:.0} req/s, native {native_rate:.0} req/s, ratio {:.2}",
            wasm_rate / native_rate
        );
        }
        let image_samples = flag(&args, "--image-samples", 10);
        if image_samples > 0 {
            image_cold_starts(image_samples, cold_p50).await;
        }
    });
}

/// Image functions from zero through a real `strata up`, side by side with the same pod
/// created straight through the API and polled until its port answers (the work a cold
/// start cannot avoid): the ratio is the gateway's activation overhead.
async fn image_cold_starts(samples: usize, wasm_cold_p50: Duration) {
    if !nix::unistd::geteuid().is_root() {
        println!("  SKIP image cold starts: needs root");
        return;
    }
    let strata = common::strata_bin();
    if !strata.exists() {
        println!(
            "  SKIP image cold starts: build it first: cargo build --release --bin strata ({})",
            strata.display()
        );
        return;
    }
    let up = common::Up::start(&strata, &[]);
    let kubeconfig = up.kubeconfig();
    common::wait_until("the kubeconfig", Duration::from_secs(60), async || {
        kubeconfig.exists()
    })
    .await;
    let client = strata_client::connect_file(&kubeconfig).await.unwrap();
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    common::wait_until("the node", Duration::from_secs(60), async || {
        nodes.get_opt("bench-node").await.ok().flatten().is_some()
    })
    .await;
    let log = up.data.path().join("up.log");
    let mut gateway = None;
    common::wait_until("the gateway", Duration::from_secs(60), async || {
        gateway = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("strata: serverless gateway on http://")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.parse::<SocketAddr>().ok())
            });
        gateway.is_some()
    })
    .await;
    let gateway = gateway.unwrap();
    let functions: kube::Api<strata_api::function::Function> =
        kube::Api::namespaced(client.clone(), "default");
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), "default");
    let (mut cold, mut direct) = (vec![], vec![]);
    let (mut warm, mut direct_warm) = (vec![], vec![]);
    for i in 0..samples {
        let name = format!("img-{i}");
        let function: strata_api::function::Function = serde_json::from_value(serde_json::json!({
            "apiVersion": "serverless.strata.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": name},
            "spec": {"image": {"name": "localhost/httpd:latest"}, "timeoutSeconds": 60}
        }))
        .unwrap();
        functions
            .create(&Default::default(), &function)
            .await
            .unwrap();
        common::wait_until(
            "the function to be served",
            Duration::from_secs(30),
            async || {
                functions
                    .get(&name)
                    .await
                    .ok()
                    .and_then(|f| f.status)
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            },
        )
        .await;
        let mut sender = connect(gateway).await;
        cold.push(timed_get(&mut sender, &format!("/fn/default/{name}/")).await);
        for _ in 0..WARM_PER_SAMPLE {
            warm.push(timed_get(&mut sender, &format!("/fn/default/{name}/")).await);
        }
        functions.delete(&name, &Default::default()).await.unwrap();

        let pod_name = format!("direct-{i}");
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": pod_name},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": "web", "image": "localhost/httpd:latest", "imagePullPolicy": "IfNotPresent"}]}
        }))
        .unwrap();
        let started = Instant::now();
        pods.create(&Default::default(), &pod).await.unwrap();
        let pod_addr = loop {
            let ip = pods
                .get(&pod_name)
                .await
                .ok()
                .and_then(|p| p.status)
                .and_then(|s| s.pod_ip);
            if let Some(ip) = ip.and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
                && TcpStream::connect(SocketAddr::new(ip, 8080)).await.is_ok()
            {
                break SocketAddr::new(ip, 8080);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        direct.push(started.elapsed());
        // busybox httpd closes each connection, so a request straight to the pod includes
        // its connect (as the gateway's request to the pod does).
        for _ in 0..WARM_PER_SAMPLE {
            let started = Instant::now();
            let mut straight = connect(pod_addr).await;
            timed_get(&mut straight, "/").await;
            direct_warm.push(started.elapsed());
        }
        pods.delete(&pod_name, &Default::default()).await.unwrap();
    }
    let cold_p50 = report("image cold start (gateway, from zero)", cold);
    let direct_p50 = report("the same pod via the API, port open", direct);
    let warm_p50 = report("image warm (gateway, end to end)", warm);
    let direct_warm_p50 = report("the same pod, straight (connect + GET)", direct_warm);
    println!(
        "  ratios: image cold / direct pod {:.2}, image cold / wasm cold {:.0}, image warm / straight to the pod {:.2}",
        cold_p50.as_secs_f64() / direct_p50.as_secs_f64(),
        cold_p50.as_secs_f64() / wasm_cold_p50.as_secs_f64(),
        warm_p50.as_secs_f64() / direct_warm_p50.as_secs_f64()
    );
}
