//! The HTTP gateway: one listener (HTTP/1.1 and cleartext HTTP/2) that routes requests to
//! functions, admits them under each function's concurrency limit, invokes them and meters
//! the result. Errors say what went wrong: 404 unknown function, 413 body too large, 429
//! over the concurrency limit, 502/503/504 when the function fails.

mod component;
pub mod route;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::metering::{self, Record};
use crate::pods::{LeaseError, PodPool};
use crate::proxy::{ForwardError, Forwarder, Tracked};
use crate::table::{Backend, Deployed, FunctionTable, InFlight};
use crate::wasm::Invocation;
use route::Route;

/// The response header that tells whether an invocation started the function.
pub const COLD_START_HEADER: &str = "x-strata-cold-start";

/// Gateway settings.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// The largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// How often idle functions are checked for scaling to zero.
    pub idle_check: Duration,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 << 20,
            idle_check: Duration::from_secs(1),
        }
    }
}

/// The gateway over a function table.
pub struct Gateway {
    table: Arc<FunctionTable>,
    options: GatewayOptions,
    forwarder: Forwarder,
}

/// A boxed error of a response body.
type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The gateway's response body: whole (errors, wasm) or streamed (pods).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

impl Gateway {
    /// A gateway serving `table`.
    pub fn new(table: Arc<FunctionTable>, options: GatewayOptions) -> Arc<Self> {
        Arc::new(Self {
            table,
            options,
            forwarder: Forwarder::default(),
        })
    }

    /// The function table.
    pub fn table(&self) -> &Arc<FunctionTable> {
        &self.table
    }

    /// Serves connections from `listener` until `shutdown` completes, and scales idle
    /// functions to zero meanwhile.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let local = listener.local_addr()?;
        let idle = tokio::spawn(scale_idle_to_zero(
            self.table.clone(),
            self.options.idle_check,
        ));
        tokio::pin!(shutdown);
        loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "gateway accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let gateway = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let gateway = gateway.clone();
                    async move { Ok::<_, Infallible>(gateway.handle(request, remote, local).await) }
                });
                if let Err(error) = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%error, %remote, "gateway connection ended");
                }
            });
        }
        idle.abort();
        Ok(())
    }

    /// Answers one request.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        remote: SocketAddr,
        local: SocketAddr,
    ) -> Response<Body> {
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                request
                    .headers()
                    .get(HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(String::from)
            });
        match route::route(host.as_deref(), request.uri().path()) {
            Route::Health => text(StatusCode::OK, "ok\n"),
            Route::Metrics => {
                let usage: Vec<_> = self
                    .table
                    .list()
                    .iter()
                    .map(|d| {
                        let key = &d.config().key;
                        (key.namespace.clone(), key.name.clone(), d.meter().total())
                    })
                    .collect();
                let mut response = text(StatusCode::OK, metering::prometheus(&usage));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            Route::Logs(key) => {
                if !remote.ip().is_loopback() {
                    return text(
                        StatusCode::FORBIDDEN,
                        "function logs are served to loopback clients only\n",
                    );
                }
                match self.table.get(&key) {
                    Some(deployed) => {
                        let mut lines = deployed.logs(crate::table::LOG_LINES).join("\n");
                        if !lines.is_empty() {
                            lines.push('\n');
                        }
                        text(StatusCode::OK, lines)
                    }
                    None => text(StatusCode::NOT_FOUND, format!("function {key} not found\n")),
                }
            }
            Route::Usage { namespace } => {
                if !remote.ip().is_loopback() {
                    return text(
                        StatusCode::FORBIDDEN,
                        "usage is served to loopback clients only\n",
                    );
                }
                let query = request.uri().query().unwrap_or_default();
                let since = query
                    .split('&')
                    .find_map(|pair| pair.strip_prefix("since="))
                    .and_then(|v| v.parse::<u64>().ok());
                let Some(since) = since else {
                    return text(StatusCode::BAD_REQUEST, "give ?since=SECONDS\n");
                };
                let start = SystemTime::now() - Duration::from_secs(since);
                let entries: Vec<_> = self
                    .table
                    .list()
                    .iter()
                    .filter(|d| d.config().key.namespace == namespace)
                    .map(|d| {
                        let usage = d.meter().since(start);
                        serde_json::json!({
                            "namespace": namespace,
                            "name": d.config().key.name,
                            "invocations": usage.invocations,
                            "errors": usage.errors,
                            "coldStarts": usage.cold_starts,
                            "durationMilliseconds": usage.billed_milliseconds,
                            "memoryPeakBytes": usage.memory_peak_bytes,
                            "gbSeconds": usage.gb_seconds_text(),
                        })
                    })
                    .collect();
                let mut response =
                    text(StatusCode::OK, serde_json::Value::from(entries).to_string());
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            Route::NotFound => text(
                StatusCode::NOT_FOUND,
                "no function here: call a function at http://<function>.<namespace>.fn.localhost/ \
                 or at /fn/<namespace>/<function>/\n",
            ),
            Route::Function {
                key,
                script_name,
                path_info,
            } => {
                let Some(deployed) = self.table.get(&key) else {
                    return text(StatusCode::NOT_FOUND, format!("function {key} not found\n"));
                };
                let server_name = host
                    .as_deref()
                    .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name).to_string())
                    .unwrap_or_else(|| local.ip().to_string());
                let context = RequestContext {
                    script_name,
                    path_info,
                    remote,
                    server_name,
                    server_port: local.port(),
                };
                self.invoke(&deployed, request, context).await
            }
        }
    }

    async fn invoke(
        &self,
        deployed: &Arc<Deployed>,
        request: Request<Incoming>,
        context: RequestContext,
    ) -> Response<Body> {
        let key = &deployed.config().key;
        let limit = self.options.max_body_bytes;
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return too_large(limit);
        }
        let Some(slot) = deployed.admit() else {
            return text(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "function {key} is at its concurrency limit of {} requests; retry later\n",
                    deployed.config().max_in_flight
                ),
            );
        };
        let (parts, body) = request.into_parts();
        if let Backend::Component(_) = &deployed.config().backend {
            // A component reads its request body as a stream, as it arrives.
            let body = Limited::new(body, limit);
            return self
                .invoke_component(deployed, parts, body, context, slot)
                .await;
        }
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                return too_large(limit);
            }
            Err(error) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body: {error}\n"),
                );
            }
        };
        match &deployed.config().backend {
            Backend::Pods(pool) => {
                let pool = pool.clone();
                self.invoke_pods(deployed, &pool, parts, body, context, slot)
                    .await
            }
            Backend::Wasm(_) | Backend::Component(_) => {
                // The slot stays claimed until the call returns.
                let _slot = slot;
                let (response, cold) = self.invoke_wasm(deployed, parts, body, context).await;
                with_cold_start(response, cold)
            }
        }
    }

    async fn invoke_wasm(
        &self,
        deployed: &Arc<Deployed>,
        parts: http::request::Parts,
        body: Bytes,
        context: RequestContext,
    ) -> (Response<Body>, bool) {
        let key = &deployed.config().key;
        let invocation = Invocation {
            method: parts.method,
            script_name: context.script_name,
            path_info: context.path_info,
            query: parts.uri.query().unwrap_or_default().to_string(),
            headers: parts.headers,
            body,
            remote_addr: context.remote.ip().to_string(),
            server_name: context.server_name,
            server_port: context.server_port,
        };
        let (function, cold) = match deployed.cgi_instance(self.table.engine()) {
            Ok(pair) => pair,
            Err(error) => return (cannot_start(deployed, &error), true),
        };
        let outcome = function.invoke(&deployed.limits(), invocation).await;
        deployed.log(&String::from_utf8_lossy(&outcome.stderr));
        let error = match &outcome.result {
            Ok(reply) => reply.status.is_server_error(),
            Err(_) => true,
        };
        deployed.meter().record(Record {
            duration: outcome.elapsed,
            error,
            cold,
            memory_peak: outcome.memory_peak,
        });
        let response = match outcome.result {
            Ok(reply) => {
                let mut response = Response::new(full(reply.body));
                *response.status_mut() = reply.status;
                *response.headers_mut() = reply.headers;
                response
            }
            Err(failure) => {
                tracing::debug!(function = %key, error = %failure, "invocation failed");
                deployed.log(&format!("strata: invocation failed: {failure}"));
                text(failure.status(), format!("function {key}: {failure}\n"))
            }
        };
        (response, cold)
    }

    /// Forwards to the least busy ready pod, waiting for one (scale from zero) within the
    /// function's timeout; a pod that refuses the connection is skipped and the request
    /// retried on another (the body is buffered, so nothing is sent twice to a live pod).
    async fn invoke_pods(
        &self,
        deployed: &Arc<Deployed>,
        pool: &Arc<PodPool>,
        parts: http::request::Parts,
        body: Bytes,
        context: RequestContext,
        slot: InFlight,
    ) -> Response<Body> {
        let key = deployed.config().key.clone();
        let timeout = deployed.config().timeout;
        let started = Instant::now();
        let query = parts
            .uri
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let path = format!("{}{query}", context.path_info);
        let meter = deployed.meter().clone();
        let fail = |status: StatusCode, message: String, cold: bool| {
            meter.record(Record {
                duration: started.elapsed(),
                error: true,
                cold,
                memory_peak: 0,
            });
            with_cold_start(text(status, format!("function {key}: {message}\n")), cold)
        };
        let mut cold = false;
        for _attempt in 0..3 {
            let left = timeout.saturating_sub(started.elapsed());
            let lease = match pool.lease(left).await {
                Ok((lease, waited)) => {
                    cold |= waited;
                    lease
                }
                Err(LeaseError::QueueFull(n)) => {
                    return fail(
                        StatusCode::TOO_MANY_REQUESTS,
                        format!("{n} requests are already waiting for an instance; retry later"),
                        cold,
                    );
                }
                Err(LeaseError::Timeout(_)) => {
                    let why = pool
                        .problem()
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default();
                    return fail(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("no instance became ready within the timeout of {timeout:?}{why}"),
                        true,
                    );
                }
            };
            let left = timeout.saturating_sub(started.elapsed());
            let forwarded = self
                .forwarder
                .forward(
                    lease.addr(),
                    &parts,
                    &path,
                    body.clone(),
                    context.remote,
                    left,
                )
                .await;
            match forwarded {
                Ok(response) => {
                    let (head, incoming) = response.into_parts();
                    let server_error = head.status.is_server_error();
                    let meter = meter.clone();
                    let tracked = Tracked::new(incoming, (lease, slot), move |clean| {
                        meter.record(Record {
                            duration: started.elapsed(),
                            error: server_error || !clean,
                            cold,
                            memory_peak: 0,
                        });
                    });
                    let response = Response::from_parts(
                        head,
                        tracked
                            .map_err(|e| -> BoxError { Box::new(e) })
                            .boxed_unsync(),
                    );
                    return with_cold_start(response, cold);
                }
                Err(ForwardError::Connect(addr, why)) => {
                    tracing::debug!(function = %key, %addr, %why, "instance unreachable; retrying on another");
                    lease.unreachable();
                }
                Err(ForwardError::Timeout(_)) => {
                    return fail(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("the function did not answer within its timeout of {timeout:?}"),
                        cold,
                    );
                }
                Err(error) => return fail(StatusCode::BAD_GATEWAY, error.to_string(), cold),
            }
        }
        fail(
            StatusCode::BAD_GATEWAY,
            "no instance could be reached (tried 3)".into(),
            cold,
        )
    }
}

struct RequestContext {
    script_name: String,
    path_info: String,
    remote: SocketAddr,
    server_name: String,
    server_port: u16,
}

/// 503 for a function whose instance template cannot be linked, metered as a failed
/// cold start.
fn cannot_start(deployed: &Deployed, error: &crate::FunctionsError) -> Response<Body> {
    deployed.meter().record(Record {
        duration: Duration::ZERO,
        error: true,
        cold: true,
        memory_peak: 0,
    });
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("function {} cannot start: {error}\n", deployed.config().key),
    )
}

/// Marks whether the invocation started the function ([`COLD_START_HEADER`]).
fn with_cold_start(mut response: Response<Body>, cold: bool) -> Response<Body> {
    response.headers_mut().insert(
        COLD_START_HEADER,
        HeaderValue::from_static(if cold { "true" } else { "false" }),
    );
    response
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn too_large(limit: usize) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than the gateway's limit of {limit} bytes\n"),
    )
}

async fn scale_idle_to_zero(table: Arc<FunctionTable>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        for key in table.scale_down_idle() {
            tracing::debug!(function = %key, "scaled to zero");
        }
    }
}
