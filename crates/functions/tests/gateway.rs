//! The gateway end to end over real sockets: WebAssembly functions compiled from WAT,
//! routed by host and path over HTTP/1.1 and HTTP/2, cold and warm starts, scale to zero,
//! limits (body size, concurrency, time, memory) with their status codes, and metering.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Harness, text};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use strata_functions::gateway::GatewayOptions;
use strata_functions::{EngineOptions, FunctionKey, WasmEngine, WasmFunction};
use tokio::net::TcpStream;

const HELLO: &str = include_str!("../../../examples/functions/hello.wat");
const ECHO: &str = include_str!("../../../examples/functions/echo.wat");
const TRAP: &str = r#"(module (func (export "_start") unreachable))"#;
const SPIN: &str = r#"(module (func (export "_start") (loop $l (br $l))))"#;
const HOG: &str = r#"(module (memory 1)
  (func (export "_start") (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))))"#;
const EXIT3: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 3))))"#;

#[tokio::test]
async fn cold_then_warm_by_host_and_by_path() {
    let gateway = Harness::start(GatewayOptions::default()).await;
    gateway.deploy("hello", HELLO, |_| {});
    let (status, cold, body) = gateway.get("hello.default.fn.localhost:8080", "/").await;
    assert_eq!(status, StatusCode::OK, "{}", text(&body));
    assert_eq!(text(&body), "hello from WebAssembly\n");
    assert_eq!(cold.as_deref(), Some("true"));
    let (status, cold, body) = gateway
        .get("127.0.0.1", "/fn/default/hello/any/path?x=1")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text(&body), "hello from WebAssembly\n");
    assert_eq!(cold.as_deref(), Some("false"));

    let (status, _, body) = gateway.get("nope.default.fn.localhost", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        text(&body).contains("default/nope not found"),
        "{}",
        text(&body)
    );
    let (status, _, body) = gateway.get("127.0.0.1", "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(text(&body).contains("/fn/<namespace>/<function>"));

    let usage = gateway
        .table
        .get(&FunctionKey::new("default", "hello"))
        .expect("served")
        .meter()
        .total();
    assert_eq!(
        (usage.invocations, usage.errors, usage.cold_starts),
        (2, 0, 1)
    );
    assert!(usage.memory_peak_bytes >= 65536, "{usage:?}");
    assert!(usage.mib_milliseconds >= 2 * 128, "{usage:?}");
}

/// Counts its calls in linear memory, below and beyond the part of a pooled slot that is
/// reset with memset (256 KiB), and answers `a=<count> b=<count>`.
const COUNTER: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 8)
  (data (i32.const 0) "\10\00\00\00\22\00\00\00")
  (data (i32.const 16) "Content-Type: text/plain\n\na=? b=?\n")
  (func (export "_start")
    (i32.store8 (i32.const 100) (i32.add (i32.load8_u (i32.const 100)) (i32.const 1)))
    (i32.store8 (i32.const 400000) (i32.add (i32.load8_u (i32.const 400000)) (i32.const 1)))
    (i32.store8 (i32.const 44) (i32.add (i32.load8_u (i32.const 100)) (i32.const 48)))
    (i32.store8 (i32.const 48) (i32.add (i32.load8_u (i32.const 400000)) (i32.const 48)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

#[tokio::test]
async fn every_request_starts_from_clean_memory() {
    let gateway = Harness::start(GatewayOptions::default()).await;
    gateway.deploy("counter", COUNTER, |_| {});
    for call in 0..20 {
        let (status, _, body) = gateway.get("127.0.0.1", "/fn/default/counter").await;
        assert_eq!(status, StatusCode::OK, "{}", text(&body));
        assert_eq!(
            text(&body),
            "a=1 b=1\n",
            "call {call} saw an earlier call's memory"
        );
    }
}

#[tokio::test]
async fn http2_prior_knowledge() {
    let gateway = Harness::start(GatewayOptions::default()).await;
    gateway.deploy("hello", HELLO, |_| {});
    let stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    for _ in 0..3 {
        let request = Request::get(format!("http://{}/fn/default/hello", gateway.addr))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), http::Version::HTTP_2);
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(text(&body), "hello from WebAssembly\n");
    }
}

#[tokio::test]
async fn echo_round_trips_bodies_and_rejects_oversized_ones() {
    let gateway = Harness::start(GatewayOptions {
        max_body_bytes: 512 << 10,
        ..GatewayOptions::default()
    })
    .await;
    gateway.deploy("echo", ECHO, |_| {});
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (status, _, body) = gateway.post("/fn/default/echo", payload.clone()).await;
    assert_eq!(status, StatusCode::OK, "{}", text(&body));
    assert_eq!(body.len(), payload.len());
    assert!(body[..] == payload[..], "echoed body differs");

    let (status, _, body) = gateway
        .post("/fn/default/echo", vec![b'x'; 600 << 10])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(text(&body).contains("524288 bytes"), "{}", text(&body));
}

#[tokio::test]
async fn failing_functions_get_clear_errors_and_are_metered() {
    let gateway = Harness::start(GatewayOptions::default()).await;
    gateway.deploy("trap", TRAP, |_| {});
    gateway.deploy("spin", SPIN, |c| c.timeout = Duration::from_millis(300));
    gateway.deploy("hog", HOG, |c| c.memory_bytes = 4 << 20);
    gateway.deploy("exit", EXIT3, |_| {});

    let (status, _, body) = gateway.get("127.0.0.1", "/fn/default/trap").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        text(&body).contains("trapped") && text(&body).contains("unreachable"),
        "{}",
        text(&body)
    );

    let (status, _, body) = gateway.get("127.0.0.1", "/fn/default/spin").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(text(&body).contains("timeout of 300ms"), "{}", text(&body));

    let (status, _, body) = gateway.get("127.0.0.1", "/fn/default/hog").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        text(&body).contains("memory limit of 4194304 bytes"),
        "{}",
        text(&body)
    );

    let (status, _, body) = gateway.get("127.0.0.1", "/fn/default/exit").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        text(&body).contains("exited with code 3"),
        "{}",
        text(&body)
    );

    let (status, _, body) = gateway.get("127.0.0.1", "/fn/default/exit").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{}", text(&body));
    for (name, invocations) in [("trap", 1), ("spin", 1), ("hog", 1), ("exit", 2)] {
        let usage = gateway
            .table
            .get(&FunctionKey::new("default", name))
            .expect("served")
            .meter()
            .total();
        assert_eq!(
            (usage.invocations, usage.errors),
            (invocations, invocations),
            "{name}: {usage:?}"
        );
    }
    let spin = gateway
        .table
        .get(&FunctionKey::new("default", "spin"))
        .expect("served")
        .meter()
        .total();
    assert!(
        spin.billed_milliseconds >= 300,
        "the timed-out call is billed: {spin:?}"
    );
    let hog = gateway
        .table
        .get(&FunctionKey::new("default", "hog"))
        .expect("served")
        .meter()
        .total();
    assert!(
        hog.memory_peak_bytes <= 4 << 20 && hog.memory_peak_bytes > 2 << 20,
        "{hog:?}"
    );

    let (_, _, metrics) = gateway.get("127.0.0.1", "/metrics").await;
    let metrics = text(&metrics);
    assert!(
        metrics.contains("strata_function_errors_total{namespace=\"default\",function=\"exit\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn over_the_concurrency_limit_is_429() {
    let gateway = Harness::start(GatewayOptions::default()).await;
    gateway.deploy("spin", SPIN, |c| {
        c.timeout = Duration::from_secs(3);
        c.max_in_flight = 1;
    });
    let deployed = gateway
        .table
        .get(&FunctionKey::new("default", "spin"))
        .expect("served");
    // On a loaded machine the first call may start and end between two polls: try again.
    for _attempt in 0..3 {
        let first = {
            let addr = gateway.addr;
            tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                let (mut sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .expect("handshake");
                tokio::spawn(connection);
                let request = Request::get("/fn/default/spin")
                    .header("host", "x")
                    .body(Full::new(Bytes::new()))
                    .expect("request");
                sender
                    .send_request(request)
                    .await
                    .expect("response")
                    .status()
            })
        };
        while deployed.in_flight() == 0 && !first.is_finished() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if first.is_finished() {
            continue;
        }
        let (status, _, body) = gateway.get("127.0.0.1", "/fn/default/spin").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            text(&body).contains("concurrency limit of 1"),
            "{}",
            text(&body)
        );
        assert_eq!(first.await.expect("first"), StatusCode::GATEWAY_TIMEOUT);
        return;
    }
    panic!("the first call never stayed in flight long enough to be seen");
}

#[tokio::test]
async fn idle_functions_scale_to_zero_and_start_cold_again() {
    let gateway = Harness::start(GatewayOptions {
        idle_check: Duration::from_millis(20),
        ..GatewayOptions::default()
    })
    .await;
    gateway.deploy("hello", HELLO, |c| {
        c.scale_to_zero_after = Duration::from_millis(100)
    });
    gateway.deploy("kept", HELLO, |c| {
        c.scale_to_zero_after = Duration::from_millis(100);
        c.min_scale = 1;
    });
    let (_, cold, _) = gateway.get("127.0.0.1", "/fn/default/hello").await;
    assert_eq!(cold.as_deref(), Some("true"));
    let (_, cold, _) = gateway.get("127.0.0.1", "/fn/default/kept").await;
    assert_eq!(
        cold.as_deref(),
        Some("false"),
        "minScale 1 is linked at deploy"
    );
    let hello = gateway
        .table
        .get(&FunctionKey::new("default", "hello"))
        .expect("served");
    assert_eq!(hello.replicas(), (1, 1));
    for _ in 0..200 {
        if hello.replicas().0 == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(hello.replicas().0, 0, "idle function scaled to zero");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let kept = gateway
        .table
        .get(&FunctionKey::new("default", "kept"))
        .expect("served");
    assert_eq!(kept.replicas().0, 1, "minScale keeps the function warm");
    let (status, cold, _) = gateway.get("127.0.0.1", "/fn/default/hello").await;
    assert_eq!((status, cold.as_deref()), (StatusCode::OK, Some("true")));
    assert_eq!(hello.meter().total().cold_starts, 2);
}

#[tokio::test]
async fn components_and_garbage_are_refused_at_compile() {
    let engine = WasmEngine::new(&EngineOptions::default()).expect("engine");
    let error = WasmFunction::compile(&engine, b"not wasm").expect_err("garbage refused");
    assert!(error.to_string().contains("compiling"), "{error}");
    let component = b"\0asm\x0d\x00\x01\x00";
    let error = WasmFunction::compile(&engine, component).expect_err("component refused");
    assert!(error.to_string().contains("component"), "{error}");
    let module = WasmFunction::compile(&engine, b"(module)").expect("compiles");
    let error = WasmFunction::link(&engine, &module).expect_err("no _start");
    assert!(error.to_string().contains("_start"), "{error}");
}
