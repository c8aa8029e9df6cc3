//! A `wasi:http/incoming-handler` component (WASI 0.2) for Strata's functions.
//!
//! Every path answers `hello from a wasi:http component` and echoes the path (and the
//! `x-forwarded-prefix` header a gateway sets, and for a POST the length of the body),
//! except a few that exercise the host's limits:
//!
//! - `/stream` writes its body in several chunks, flushing each;
//! - `/drip` writes one chunk of its body, then loops forever;
//! - `/trap` executes `unreachable`;
//! - `/spin` loops forever (the host's timeout stops it);
//! - `/hog` allocates far more memory than a function is usually given;
//! - `/silent` returns without setting a response;
//! - `/fetch` tries an outgoing HTTP request to the URL in the `x-fetch` header and reports
//!   what happened.

use std::io::{Read as _, Write as _};

use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasi::http::proxy::export!(Hello);

struct Hello;

impl wasi::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let path_only = path.split('?').next().unwrap_or("/").to_string();
        eprintln!("handling {path}");
        match path_only.as_str() {
            "/trap" => core::arch::wasm32::unreachable(),
            "/spin" => spin(),
            "/hog" => hog(),
            "/silent" => return,
            _ => {}
        }
        let mut text = format!("hello from a wasi:http component\npath: {path}\n");
        if let Some(prefix) = request.headers().get("x-forwarded-prefix").first() {
            text.push_str(&format!("prefix: {}\n", String::from_utf8_lossy(prefix)));
        }
        if matches!(request.method(), Method::Post) {
            text.push_str(&format!("body: {} bytes\n", body_length(&request)));
        }
        if path_only == "/fetch" {
            text.push_str(&format!("fetch: {}\n", fetch(&request)));
        }
        let chunks: Vec<Vec<u8>> = if path_only == "/stream" {
            (0..8)
                .map(|i| format!("chunk {i}: {}\n", "x".repeat(1000)).into_bytes())
                .collect()
        } else {
            vec![text.into_bytes()]
        };
        let headers = Fields::new();
        let _ = headers.set("content-type", &[b"text/plain; charset=utf-8".to_vec()]);
        let response = OutgoingResponse::new(headers);
        let Ok(body) = response.body() else {
            return;
        };
        ResponseOutparam::set(response_out, Ok(response));
        let Ok(mut out) = body.write() else {
            return;
        };
        for chunk in chunks {
            // A write fails once the client is gone: stop quietly then.
            if out
                .write_all(&chunk)
                .and_then(|()| std::io::Write::flush(&mut out))
                .is_err()
            {
                return;
            }
        }
        if path_only == "/drip" {
            spin();
        }
        drop(out);
        let _ = OutgoingBody::finish(body, None);
    }
}

/// Reads the request body to the end and returns its length.
fn body_length(request: &IncomingRequest) -> usize {
    let Ok(body) = request.consume() else {
        return 0;
    };
    let Ok(mut stream) = body.stream() else {
        return 0;
    };
    let mut bytes = Vec::new();
    let _ = stream.read_to_end(&mut bytes);
    bytes.len()
}

/// Loops until the host stops it.
fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Touches 512 MiB of memory.
fn hog() {
    let mut blocks = Vec::new();
    for _ in 0..512 {
        let block = vec![1u8; 1 << 20];
        blocks.push(std::hint::black_box(block));
    }
    eprintln!("allocated {} blocks", blocks.len());
}

/// Sends a GET to the URL in the `x-fetch` header and describes the outcome.
fn fetch(request: &IncomingRequest) -> String {
    let headers = request.headers().get("x-fetch");
    let Some(url) = headers
        .first()
        .and_then(|v| String::from_utf8(v.clone()).ok())
    else {
        return "no x-fetch header".into();
    };
    let (scheme, rest) = match url.split_once("://") {
        Some(("https", rest)) => (Scheme::Https, rest),
        Some((_, rest)) => (Scheme::Http, rest),
        None => (Scheme::Http, url.as_str()),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let outgoing = OutgoingRequest::new(Fields::new());
    let _ = outgoing.set_scheme(Some(&scheme));
    let _ = outgoing.set_authority(Some(authority));
    let _ = outgoing.set_path_with_query(Some(path));
    match outgoing_handler::handle(outgoing, None) {
        Err(code) => format!("refused: {code:?}"),
        Ok(future) => {
            future.subscribe().block();
            match future.get() {
                Some(Ok(Ok(response))) => format!("status {}", response.status()),
                Some(Ok(Err(code))) => format!("failed: {code:?}"),
                other => format!("failed: {other:?}"),
            }
        }
    }
}
