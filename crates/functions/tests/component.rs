//! `wasi:http` components end to end: the `hello-http` example built for wasm32-wasip2,
//! invoked with real requests; response bodies streamed; traps, timeouts (also while the
//! body streams), the memory limit, missing responses and outgoing HTTP with and without
//! the network. Skipped, with a SKIP line, when the wasm32-wasip2 target is not installed.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use strata_functions::component::{BodyError, Usage};
use strata_functions::wasm::{InvokeError, Limits};
use strata_functions::{
    ComponentOutcome, EngineOptions, FunctionsError, HttpComponent, WasmEngine,
};

const CORE_MODULE: &str = include_str!("../../../examples/functions/hello.wat");

fn engine() -> WasmEngine {
    WasmEngine::new(&EngineOptions::default()).expect("engine")
}

fn limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(10),
        env: vec![],
        allow_network: false,
    }
}

/// The example compiled once per test process (compiling is most of a test's time), or
/// `None` when it cannot be built here.
fn hello() -> Option<&'static HttpComponent> {
    static HELLO: OnceLock<Option<HttpComponent>> = OnceLock::new();
    HELLO
        .get_or_init(|| {
            let wasm = strata_testkit::wasm::hello_http("the wasi:http component tests")?;
            let engine = engine();
            let compiled = HttpComponent::compile(&engine, wasm).expect("compile");
            Some(HttpComponent::link(&engine, &compiled).expect("link"))
        })
        .as_ref()
}

fn get(path: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri(path)
        .header("host", "hello.default.fn.localhost")
        .body(Empty::new())
        .expect("request")
}

/// The whole body as text, and the usage once the instance is gone.
async fn text(outcome: ComponentOutcome) -> (StatusCode, String, Usage) {
    let response = outcome.result.expect("a response");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let usage = outcome.finished.usage().await;
    (status, String::from_utf8_lossy(&body).into_owned(), usage)
}

#[tokio::test]
async fn get_answers_with_the_body() {
    let Some(hello) = hello() else { return };
    let (status, body, usage) = text(hello.invoke(&limits(), get("/greet?x=1")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "hello from a wasi:http component\npath: /greet?x=1\n");
    assert!(usage.failure.is_none(), "{:?}", usage.failure);
    assert!(usage.memory_peak > 0);
    let logs = String::from_utf8_lossy(&usage.stderr);
    assert!(logs.contains("handling /greet?x=1"), "{logs}");
}

#[tokio::test]
async fn post_body_is_seen() {
    let Some(hello) = hello() else { return };
    let request = Request::builder()
        .method(Method::POST)
        .uri("/upload")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(vec![7u8; 100_000])))
        .expect("request");
    let (status, body, _) = text(hello.invoke(&limits(), request).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("path: /upload\n"), "{body}");
    assert!(body.contains("body: 100000 bytes\n"), "{body}");
}

#[tokio::test]
async fn streamed_body_arrives_complete_in_several_frames() {
    let Some(hello) = hello() else { return };
    let outcome = hello.invoke(&limits(), get("/stream")).await;
    let mut body = outcome.result.expect("a response").into_body();
    let mut frames = 0;
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            frames += 1;
            bytes.extend_from_slice(&data);
        }
    }
    let text = String::from_utf8(bytes).expect("utf-8");
    assert_eq!(text.lines().count(), 8, "{text}");
    for i in 0..8 {
        assert!(text.contains(&format!("chunk {i}: ")), "chunk {i} missing");
    }
    assert!(
        frames >= 2,
        "the body came in {frames} frame(s): buffered, not streamed"
    );
    assert!(outcome.finished.usage().await.failure.is_none());
}

#[tokio::test]
async fn a_trap_is_reported() {
    let Some(hello) = hello() else { return };
    let outcome = hello.invoke(&limits(), get("/trap")).await;
    let error = outcome.result.expect_err("a trap");
    assert!(matches!(error, InvokeError::Trap(_)), "{error:?}");
    assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    let usage = outcome.finished.usage().await;
    assert!(matches!(usage.failure, Some(InvokeError::Trap(_))));
}

#[tokio::test]
async fn the_timeout_is_enforced() {
    let Some(hello) = hello() else { return };
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..limits()
    };
    let started = std::time::Instant::now();
    let outcome = hello.invoke(&limits, get("/spin")).await;
    let error = outcome.result.expect_err("a timeout");
    assert!(matches!(error, InvokeError::Timeout(_)), "{error:?}");
    assert_eq!(error.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn the_timeout_bounds_a_streaming_body() {
    let Some(hello) = hello() else { return };
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..limits()
    };
    let outcome = hello.invoke(&limits, get("/drip")).await;
    let mut body = outcome.result.expect("the head is sent").into_body();
    let first = body.frame().await.expect("a frame").expect("data");
    let first = first.into_data().expect("data");
    assert!(first.starts_with(b"hello from a wasi:http component"));
    let error = loop {
        match body.frame().await {
            Some(Ok(_)) => continue,
            Some(Err(error)) => break error,
            None => panic!("the body ended cleanly although the component never finished"),
        }
    };
    assert!(
        matches!(error, BodyError::Stopped(InvokeError::Timeout(_))),
        "{error:?}"
    );
    let usage = outcome.finished.usage().await;
    assert!(matches!(usage.failure, Some(InvokeError::Timeout(_))));
    assert!(usage.elapsed >= Duration::from_millis(300));
}

#[tokio::test]
async fn the_memory_limit_is_enforced() {
    let Some(hello) = hello() else { return };
    let outcome = hello.invoke(&limits(), get("/hog")).await;
    let error = outcome.result.expect_err("out of memory");
    assert!(
        matches!(error, InvokeError::MemoryExceeded { limit } if limit == 64 << 20),
        "{error:?}"
    );
    let usage = outcome.finished.usage().await;
    assert!(usage.memory_peak <= 64 << 20);
}

#[tokio::test]
async fn no_response_is_a_clear_502() {
    let Some(hello) = hello() else { return };
    let error = hello
        .invoke(&limits(), get("/silent"))
        .await
        .result
        .expect_err("no response");
    assert!(matches!(error, InvokeError::NoResponse(_)), "{error:?}");
    assert_eq!(error.status(), StatusCode::BAD_GATEWAY);
    assert!(
        error.to_string().contains("response-outparam.set"),
        "{error}"
    );
}

#[tokio::test]
async fn each_request_gets_a_fresh_instance() {
    let Some(hello) = hello() else { return };
    // A trap poisons only its own instance.
    let _ = hello.invoke(&limits(), get("/trap")).await;
    let (status, body, _) = text(hello.invoke(&limits(), get("/after")).await).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("path: /after"), "{body}");
}

/// A one-request HTTP server on localhost, for outgoing requests.
async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(|_request| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"upstream"),
                    )))
                }),
            ));
        }
    });
    addr
}

fn fetch(url: &str) -> Request<Empty<Bytes>> {
    Request::builder()
        .uri("/fetch")
        .header("host", "localhost")
        .header("x-fetch", url)
        .body(Empty::new())
        .expect("request")
}

#[tokio::test]
async fn outgoing_http_is_refused_without_the_network() {
    let Some(hello) = hello() else { return };
    let addr = upstream().await;
    let (_, body, usage) = text(
        hello
            .invoke(&limits(), fetch(&format!("http://{addr}/")))
            .await,
    )
    .await;
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let logs = String::from_utf8_lossy(&usage.stderr);
    assert!(logs.contains("strata: outgoing request to"), "{logs}");
    assert!(logs.contains("may not use the network"), "{logs}");
}

#[tokio::test]
async fn outgoing_http_is_sent_with_the_network() {
    let Some(hello) = hello() else { return };
    let addr = upstream().await;
    let limits = Limits {
        allow_network: true,
        ..limits()
    };
    let (_, body, _) = text(
        hello
            .invoke(&limits, fetch(&format!("http://{addr}/x")))
            .await,
    )
    .await;
    assert!(body.contains("fetch: status 200"), "{body}");
    let (_, body, usage) = text(hello.invoke(&limits, fetch("https://127.0.0.1:1/")).await).await;
    assert!(body.contains("HttpRequestDenied"), "{body}");
    assert!(String::from_utf8_lossy(&usage.stderr).contains("HTTPS"));
}

#[test]
fn a_core_module_is_refused() {
    let engine = engine();
    let error = HttpComponent::compile(&engine, CORE_MODULE.as_bytes()).expect_err("refused");
    assert!(matches!(error, FunctionsError::Compile(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("core WebAssembly module"), "{message}");
    assert!(message.contains("CGI"), "{message}");
}

#[test]
fn a_component_without_the_handler_is_refused() {
    let engine = engine();
    let compiled = HttpComponent::compile(&engine, b"(component)").expect("compile");
    let error = HttpComponent::link(&engine, &compiled).expect_err("refused");
    let message = error.to_string();
    assert!(
        message.contains("does not export wasi:http/incoming-handler"),
        "{message}"
    );
}

#[tokio::test]
async fn the_timeout_holds_while_the_component_waits_on_the_host() {
    let Some(hello) = hello() else { return };
    // An upstream that accepts and never answers: the instance blocks in a host call,
    // where no epoch check runs; the wall-clock deadline stops it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let limits = Limits {
        allow_network: true,
        timeout: Duration::from_millis(300),
        ..limits()
    };
    let started = std::time::Instant::now();
    let outcome = hello
        .invoke(&limits, fetch(&format!("http://{addr}/")))
        .await;
    let error = outcome.result.expect_err("a timeout");
    assert!(matches!(error, InvokeError::Timeout(_)), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
