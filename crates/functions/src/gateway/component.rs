//! The gateway's `wasi:http` path: a component gets the request with its body streaming
//! in and answers with a body streaming out. The function's concurrency slot and its
//! meter follow the instance, which outlives the response head: they are released and
//! recorded when the instance is gone ([`crate::component::Finished`]).

use std::sync::Arc;

use http::header::{HOST, HeaderName};
use http::{HeaderValue, Request, Response, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::{Body, BoxError, Gateway, RequestContext, cannot_start, text, with_cold_start};
use crate::metering::Record;
use crate::table::{Deployed, InFlight};

/// The header that tells a component the path prefix the gateway stripped (path routing).
const FORWARDED_PREFIX: &str = "x-forwarded-prefix";

impl Gateway {
    /// Runs one request in a fresh instance of the function's component.
    pub(super) async fn invoke_component(
        &self,
        deployed: &Arc<Deployed>,
        parts: http::request::Parts,
        body: Limited<Incoming>,
        context: RequestContext,
        slot: InFlight,
    ) -> Response<Body> {
        let key = deployed.config().key.clone();
        let (component, cold) = match deployed.http_instance(self.table.engine()) {
            Ok(pair) => pair,
            Err(error) => return with_cold_start(cannot_start(deployed, &error), true),
        };
        let request = Request::from_parts(as_seen_by_function(parts, &context), body);
        let outcome = component.invoke(&deployed.limits(), request).await;
        let answered_error = match &outcome.result {
            Ok(response) => response.status().is_server_error(),
            Err(_) => true,
        };
        // The instance may still be writing the body: the slot stays claimed and the
        // meter waits until it is gone.
        let finished = outcome.finished;
        let tracked = deployed.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let usage = finished.usage().await;
            tracked.log(&String::from_utf8_lossy(&usage.stderr));
            if let Some(failure) = &usage.failure {
                tracked.log(&format!("strata: invocation failed: {failure}"));
            }
            tracked.meter().record(Record {
                duration: usage.elapsed,
                error: answered_error || usage.failure.is_some(),
                cold,
                memory_peak: usage.memory_peak,
            });
        });
        let response = match outcome.result {
            Ok(response) => {
                response.map(|body| body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync())
            }
            Err(failure) => {
                tracing::debug!(function = %key, error = %failure, "invocation failed");
                text(failure.status(), format!("function {key}: {failure}\n"))
            }
        };
        with_cold_start(response, cold)
    }
}

/// The request as the function sees it: its path below the function's prefix (so a
/// function answers the same under host and path routing), with the stripped prefix in
/// `X-Forwarded-Prefix` and the client in `X-Forwarded-For`.
fn as_seen_by_function(
    mut parts: http::request::Parts,
    context: &RequestContext,
) -> http::request::Parts {
    let path = if context.path_info.is_empty() {
        "/"
    } else {
        context.path_info.as_str()
    };
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    // HTTP/2 carries the host in the URI's authority, which the rewrite drops.
    if !parts.headers.contains_key(HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(HOST, host);
    }
    if let Ok(uri) = Uri::builder().path_and_query(path_and_query).build() {
        parts.uri = uri;
    }
    let headers = &mut parts.headers;
    headers.remove(FORWARDED_PREFIX);
    if !context.script_name.is_empty()
        && let Ok(prefix) = HeaderValue::from_str(&context.script_name)
    {
        headers.insert(HeaderName::from_static(FORWARDED_PREFIX), prefix);
    }
    if let Ok(client) = HeaderValue::from_str(&context.remote.ip().to_string()) {
        headers.append(HeaderName::from_static("x-forwarded-for"), client);
    }
    parts
}
