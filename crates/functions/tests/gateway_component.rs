//! `wasi:http` components behind the gateway: the `hello-http` example served by host and
//! by path (the component sees the path below the function's prefix), request bodies
//! streamed in, response bodies streamed out, and the function's slot and meter held until
//! the instance is gone, also when it fails while its body streams. Skipped, with a SKIP
//! line, when the wasm32-wasip2 target is not installed.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Harness, text};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use strata_functions::gateway::GatewayOptions;
use strata_functions::table::Deployed;
use strata_functions::{Backend, FunctionKey, HttpComponent, UsageSnapshot};
use tokio::net::TcpStream;

/// A gateway serving the example component as `default/hello`, or `None` (skip).
async fn serving_hello(
    test: &str,
    tweak: impl FnOnce(&mut strata_functions::FunctionConfig),
) -> Option<(Harness, std::sync::Arc<Deployed>)> {
    let wasm = strata_testkit::wasm::hello_http(test)?;
    let gateway = Harness::start(GatewayOptions::default()).await;
    let engine = gateway.table.engine().clone();
    let wasm = wasm.to_vec();
    let component = tokio::task::spawn_blocking(move || HttpComponent::compile(&engine, &wasm))
        .await
        .expect("compile task")
        .expect("compile");
    gateway.deploy_backend("hello", Backend::Component(component), tweak);
    let deployed = gateway
        .table
        .get(&FunctionKey::new("default", "hello"))
        .expect("served");
    Some((gateway, deployed))
}

/// Waits until the meter has seen `invocations` calls (it records when an instance ends).
async fn metered(deployed: &Deployed, invocations: u64) -> UsageSnapshot {
    for _ in 0..500 {
        let usage = deployed.meter().total();
        if usage.invocations >= invocations {
            return usage;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    deployed.meter().total()
}

/// Waits until no call holds a slot (a slot is released when its instance is gone).
async fn idle(deployed: &Deployed) {
    for _ in 0..500 {
        if deployed.in_flight() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a call still holds its slot");
}

#[tokio::test]
async fn components_answer_by_host_and_path_with_streamed_bodies() {
    let Some((gateway, deployed)) = serving_hello(
        "components_answer_by_host_and_path_with_streamed_bodies",
        |_| {},
    )
    .await
    else {
        return;
    };
    let (status, cold, body) = gateway
        .get("hello.default.fn.localhost:8080", "/a/b?x=1")
        .await;
    assert_eq!(status, StatusCode::OK, "{}", text(&body));
    assert_eq!(cold.as_deref(), Some("true"));
    let body = text(&body);
    assert!(
        body.starts_with("hello from a wasi:http component\n"),
        "{body}"
    );
    assert!(body.contains("path: /a/b?x=1\n"), "{body}");
    assert!(
        !body.contains("prefix:"),
        "host routing strips nothing: {body}"
    );

    let (status, cold, body) = gateway.get("127.0.0.1", "/fn/default/hello/c?y=2").await;
    assert_eq!(status, StatusCode::OK, "{}", text(&body));
    assert_eq!(cold.as_deref(), Some("false"));
    let body = text(&body);
    assert!(body.contains("path: /c?y=2\n"), "{body}");
    assert!(body.contains("prefix: /fn/default/hello\n"), "{body}");

    let (_, _, body) = gateway.get("127.0.0.1", "/fn/default/hello").await;
    assert!(text(&body).contains("path: /\n"), "{}", text(&body));

    let payload = vec![7u8; 300_000];
    let (status, _, body) = gateway.post("/fn/default/hello/upload", payload).await;
    assert_eq!(status, StatusCode::OK, "{}", text(&body));
    assert!(
        text(&body).contains("body: 300000 bytes\n"),
        "{}",
        text(&body)
    );

    let (status, _, body) = gateway.get("127.0.0.1", "/fn/default/hello/stream").await;
    assert_eq!(status, StatusCode::OK);
    let body = text(&body);
    assert_eq!(body.lines().count(), 8, "every chunk arrives");
    assert!(body.starts_with("chunk 0: ") && body.contains("chunk 7: "));

    let usage = metered(&deployed, 5).await;
    assert_eq!(
        (usage.invocations, usage.errors, usage.cold_starts),
        (5, 0, 1),
        "{usage:?}"
    );
    assert!(usage.memory_peak_bytes > 0, "{usage:?}");
    idle(&deployed).await;
    let logs = deployed.logs(100).join("\n");
    assert!(logs.contains("handling /a/b?x=1"), "{logs}");
    assert!(logs.contains("handling /upload"), "{logs}");
}

// Multi-threaded like the real gateway: on one thread, a spinning instance yields every
// epoch tick but the runtime polls sockets only every few dozen task polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_failures_hold_the_slot_until_the_instance_is_gone() {
    let Some((gateway, deployed)) = serving_hello(
        "component_failures_hold_the_slot_until_the_instance_is_gone",
        |c| {
            c.timeout = Duration::from_millis(800);
            c.max_in_flight = 1;
        },
    )
    .await
    else {
        return;
    };
    let (status, _, body) = gateway.get("127.0.0.1", "/fn/default/hello/trap").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{}", text(&body));
    assert!(text(&body).contains("trapped"), "{}", text(&body));
    idle(&deployed).await;
    let (status, _, body) = gateway.get("127.0.0.1", "/fn/default/hello/silent").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{}", text(&body));
    assert!(
        text(&body).contains("response-outparam.set"),
        "{}",
        text(&body)
    );
    idle(&deployed).await;

    // `/drip` sends its head and one chunk, then spins: the response is under way, but
    // the instance still runs, so the function (max one in flight) is still busy.
    let stream = TcpStream::connect(gateway.addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = Request::get("/fn/default/hello/drip")
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = sender.send_request(request).await.expect("response head");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(deployed.in_flight(), 1, "the streaming call holds its slot");
    let (status, _, body) = gateway.get("127.0.0.1", "/fn/default/hello/").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{}", text(&body));
    // The timeout ends the instance: the body stops short with an error.
    let body = response.into_body().collect().await;
    assert!(
        body.is_err(),
        "a body cut off by the timeout is not complete"
    );

    let usage = metered(&deployed, 3).await;
    assert_eq!((usage.invocations, usage.errors), (3, 3), "{usage:?}");
    assert!(
        usage.billed_milliseconds >= 800,
        "the timed-out call is billed: {usage:?}"
    );
    idle(&deployed).await;
    let (status, _, _) = gateway.get("127.0.0.1", "/fn/default/hello/").await;
    assert_eq!(status, StatusCode::OK);
    let logs = deployed.logs(100).join("\n");
    assert!(logs.contains("strata: invocation failed"), "{logs}");
}
