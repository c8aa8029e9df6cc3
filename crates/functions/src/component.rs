//! WebAssembly components that implement `wasi:http/incoming-handler` (WASI 0.2): a fresh
//! instance per request from a pre-linked [`ProxyPre`], the request handed over as a
//! `wasi:http` resource and the response body streamed back as the component writes it,
//! under the same memory, time and network limits as the CGI path ([`crate::wasm`]).
//!
//! An invocation outlives [`HttpComponent::invoke`]: it returns as soon as the component
//! sets its response head, while the instance goes on writing the body. [`Finished`]
//! resolves when the instance is gone, with what it used ([`Usage`]).

mod body;
mod outgoing;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use tokio::sync::oneshot;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use body::{BodyError, ResponseBody};

use crate::FunctionsError;
use crate::engine::WasmEngine;
use crate::wasm::{InvokeError, Limits, MAX_OUTPUT_BYTES, MemoryLimiter, tail};

/// The interface a component must export, without its version.
const INCOMING_HANDLER: &str = "wasi:http/incoming-handler";

/// A compiled component, linked against WASI 0.2 and `wasi:http`, ready to instantiate.
#[derive(Clone)]
pub struct HttpComponent {
    // Held so the epoch ticker runs while the component may be invoked: without ticks no
    // timeout fires and a busy instance never yields its thread.
    engine: WasmEngine,
    component: Component,
    pre: ProxyPre<ComponentState>,
}

impl std::fmt::Debug for HttpComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpComponent").finish_non_exhaustive()
    }
}

/// The start of one invocation: the response head with a streaming body, or why there is
/// none.
#[derive(Debug)]
pub struct ComponentOutcome {
    /// The response (its body streams while the instance runs), or why there is none.
    pub result: Result<Response<ResponseBody>, InvokeError>,
    /// Resolves when the instance is gone, with what it used.
    pub finished: Finished,
}

/// What one invocation used, known once its instance is gone.
#[derive(Debug)]
pub struct Usage {
    /// Why the invocation failed, if it did (also after its response head was sent: a
    /// trap or timeout while streaming the body).
    pub failure: Option<InvokeError>,
    /// The largest linear memory the instance had, in bytes.
    pub memory_peak: u64,
    /// Standard output and standard error, interleaved, at most [`MAX_OUTPUT_BYTES`], with
    /// Strata's notes (e.g. a refused outgoing request) on lines starting `strata:`.
    pub stderr: Bytes,
    /// Wall-clock time from the request to the end of the instance (the whole body).
    pub elapsed: Duration,
}

/// Resolves to the [`Usage`] of an invocation once its instance is gone.
#[derive(Debug)]
pub struct Finished {
    usage: oneshot::Receiver<Usage>,
    started: Instant,
}

impl Finished {
    /// Waits for the instance to end. Bounded by the function's timeout.
    pub async fn usage(self) -> Usage {
        match self.usage.await {
            Ok(usage) => usage,
            // The invocation task panicked: nothing was measured.
            Err(_) => Usage {
                failure: Some(InvokeError::Trap(
                    "the invocation ended abnormally (its task was lost)".into(),
                )),
                memory_peak: 0,
                stderr: Bytes::new(),
                elapsed: self.started.elapsed(),
            },
        }
    }
}

impl HttpComponent {
    /// Compiles a component (binary or text) for the engine. CPU-heavy: call it off the
    /// async runtime's threads. Core modules are refused: they take the CGI path
    /// ([`crate::WasmFunction`]).
    pub fn compile(engine: &WasmEngine, bytes: &[u8]) -> Result<Component, FunctionsError> {
        let binary = wat::parse_bytes(bytes).map_err(|e| FunctionsError::Compile(e.to_string()))?;
        if is_core_module(&binary) {
            return Err(FunctionsError::Compile(
                "this is a core WebAssembly module, not a component: serve WASI preview 1 \
                 modules through the CGI contract (WasmFunction), or build a wasi:http \
                 component (e.g. for the wasm32-wasip2 target)"
                    .into(),
            ));
        }
        Component::new(engine.engine(), &binary)
            .map_err(|e| FunctionsError::Compile(format!("{e:#}")))
    }

    /// Links a compiled component against WASI 0.2 and `wasi:http`. The component must
    /// export `wasi:http/incoming-handler` (the `wasi:http/proxy` world). Cheap.
    pub fn link(engine: &WasmEngine, component: &Component) -> Result<Self, FunctionsError> {
        let component_type = component.component_type();
        let exports = component_type
            .exports(engine.engine())
            .map(|(name, _)| name);
        if !exports_incoming_handler(exports) {
            return Err(FunctionsError::Link(format!(
                "the component does not export {INCOMING_HANDLER} (build it for the \
                 wasi:http/proxy world); a WASI command or library component cannot \
                 answer HTTP requests"
            )));
        }
        let mut linker: Linker<ComponentState> = Linker::new(engine.engine());
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| FunctionsError::Link(format!("{e:#}")))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| FunctionsError::Link(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| FunctionsError::Link(format!("{e:#}")))?;
        let pre = ProxyPre::new(pre).map_err(|e| FunctionsError::Link(format!("{e:#}")))?;
        Ok(Self {
            engine: engine.clone(),
            component: component.clone(),
            pre,
        })
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// Runs one request in a fresh instance. Returns once the component has set its
    /// response head (or failed); the body streams from the running instance, bounded by
    /// `limits.timeout` like everything else the instance does. Must be called within a
    /// tokio runtime: the instance runs in a task of its own.
    ///
    /// ```no_run
    /// # async fn serve(
    /// #     engine: strata_functions::WasmEngine,
    /// #     wasm: Vec<u8>,
    /// #     limits: strata_functions::wasm::Limits,
    /// #     request: http::Request<hyper::body::Incoming>,
    /// # ) -> Result<(), Box<dyn std::error::Error>> {
    /// use strata_functions::HttpComponent;
    ///
    /// let compiled = tokio::task::spawn_blocking({
    ///     let engine = engine.clone();
    ///     move || HttpComponent::compile(&engine, &wasm)
    /// })
    /// .await??;
    /// let component = HttpComponent::link(&engine, &compiled)?;
    /// let outcome = component.invoke(&limits, request).await;
    /// tokio::spawn(async move {
    ///     let usage = outcome.finished.usage().await; // meter and log here
    ///     println!("{} bytes of memory, {:?}", usage.memory_peak, usage.elapsed);
    /// });
    /// match outcome.result {
    ///     Ok(response) => { /* hand `response` (a streaming body) to hyper */ }
    ///     Err(error) => { /* answer `error.status()` with `error` as the cause */ }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn invoke<B>(&self, limits: &Limits, request: Request<B>) -> ComponentOutcome
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let (usage_tx, usage_rx) = oneshot::channel();
        let finished = Finished {
            usage: usage_rx,
            started,
        };
        let log = MemoryOutputPipe::new(MAX_OUTPUT_BYTES);
        let mut store = self.store(limits, started, log.clone());
        let (head_tx, head_rx) = oneshot::channel();
        let request = with_authority(request.map(|body| body.map_err(body_error)));
        let mut http = store.data_mut().http();
        let handles = http
            .new_incoming_request(Scheme::Http, request)
            .and_then(|request| Ok((request, http.new_response_outparam(head_tx)?)));
        let (request, out) = match handles {
            Ok(handles) => handles,
            Err(error) => {
                let failure =
                    InvokeError::Instantiate(format!("handing over the request: {error:#}"));
                let _ = usage_tx.send(Usage {
                    failure: Some(failure.clone()),
                    memory_peak: 0,
                    stderr: Bytes::new(),
                    elapsed: started.elapsed(),
                });
                return ComponentOutcome {
                    result: Err(failure),
                    finished,
                };
            }
        };

        let (end_tx, end_rx) = oneshot::channel();
        let pre = self.pre.clone();
        let timeout = limits.timeout;
        let memory_limit = limits.memory_bytes;
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::from_std(started + timeout);
            let run = tokio::time::timeout_at(deadline, async {
                let proxy = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(|e| RunError::Instantiate(format!("{e:#}")))?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
                    .map_err(RunError::from_call)
            })
            .await;
            let stderr = log.contents();
            let state = store.data();
            let failure = classify(run, state, timeout, memory_limit, &stderr);
            let memory_peak = state.memory.peak;
            // Dropping the store ends the body stream; the body then reads `end`.
            drop(store);
            let _ = end_tx.send(failure.clone());
            let _ = usage_tx.send(Usage {
                failure,
                memory_peak,
                stderr: log.contents(),
                elapsed: started.elapsed(),
            });
        });

        let result = match head_rx.await {
            Ok(Ok(response)) => Ok(response.map(|inner| body::streaming(inner, end_rx))),
            Ok(Err(code)) => Err(InvokeError::NoResponse(error_code_message(&code))),
            // The response outparam was dropped unset: the instance is gone or going.
            Err(_) => Err(match end_rx.await {
                Ok(Some(failure)) => failure,
                Ok(None) => InvokeError::NoResponse(
                    "the handler returned without calling response-outparam.set".into(),
                ),
                Err(_) => InvokeError::Trap("the invocation ended abnormally".into()),
            }),
        };
        ComponentOutcome { result, finished }
    }

    /// A store for one invocation: WASI with the function's environment and log, the
    /// memory limiter, and an epoch deadline that yields every tick and interrupts after
    /// the timeout.
    fn store(
        &self,
        limits: &Limits,
        started: Instant,
        log: MemoryOutputPipe,
    ) -> Store<ComponentState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(log.clone())
            .stderr(log.clone())
            .args(&["function"])
            .envs(&limits.env);
        if limits.allow_network {
            wasi.inherit_network().allow_ip_name_lookup(true);
        }
        let state = ComponentState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: outgoing::Hooks::new(limits.allow_network, log),
            memory: MemoryLimiter {
                limit: limits.memory_bytes,
                peak: 0,
                exceeded: false,
            },
            timed_out: false,
        };
        let mut store = Store::new(self.engine.engine(), state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(1);
        let timeout = limits.timeout;
        store.epoch_deadline_callback(move |mut context| {
            if started.elapsed() >= timeout {
                context.data_mut().timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

/// Store data of a component invocation.
struct ComponentState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: outgoing::Hooks,
    memory: MemoryLimiter,
    timed_out: bool,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

enum RunError {
    Instantiate(String),
    Exit(i32),
    Trap(String),
}

impl RunError {
    fn from_call(error: wasmtime::Error) -> Self {
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return RunError::Exit(exit.0);
        }
        match error.downcast_ref::<Trap>() {
            Some(trap) => RunError::Trap(trap.to_string()),
            None => RunError::Trap(format!("{error:#}")),
        }
    }
}

/// Why the invocation failed, from how the run ended and what the store recorded. A
/// trap caused by the memory limiter or the epoch deadline is reported as such.
fn classify(
    run: Result<Result<(), RunError>, tokio::time::error::Elapsed>,
    state: &ComponentState,
    timeout: Duration,
    memory_limit: u64,
    stderr: &Bytes,
) -> Option<InvokeError> {
    let error = match run {
        Err(_) => return Some(InvokeError::Timeout(timeout)),
        Ok(Ok(())) | Ok(Err(RunError::Exit(0))) => return None,
        Ok(Err(error)) => error,
    };
    if state.memory.exceeded {
        return Some(InvokeError::MemoryExceeded {
            limit: memory_limit,
        });
    }
    if state.timed_out {
        return Some(InvokeError::Timeout(timeout));
    }
    Some(match error {
        RunError::Instantiate(message) => InvokeError::Instantiate(message),
        RunError::Exit(code) => InvokeError::Exit {
            code,
            stderr: tail(stderr),
        },
        RunError::Trap(message) => InvokeError::Trap(message),
    })
}

/// True for a core module's header (`\0asm`, version 1): components carry layer 1.
/// True when `binary` is a core WebAssembly module (not a component).
pub(crate) fn is_core_module(binary: &[u8]) -> bool {
    binary.get(0..8) == Some(b"\0asm\x01\x00\x00\x00")
}

/// True when one of the export names is `wasi:http/incoming-handler`, at any version.
fn exports_incoming_handler<'a>(names: impl IntoIterator<Item = &'a str>) -> bool {
    names.into_iter().any(|name| {
        name == INCOMING_HANDLER
            || name
                .strip_prefix(INCOMING_HANDLER)
                .is_some_and(|version| version.starts_with('@'))
    })
}

/// `wasi:http` needs an authority: HTTP/1.1 requests carry it in `Host`, h2 in the URI.
/// A request with neither (HTTP/1.0) is given `Host: localhost`.
fn with_authority<B>(mut request: Request<B>) -> Request<B> {
    if request.uri().authority().is_none() && !request.headers().contains_key(HOST) {
        request
            .headers_mut()
            .insert(HOST, HeaderValue::from_static("localhost"));
    }
    request
}

/// A request body error as `wasi:http` carries it to the component.
fn body_error<E>(error: E) -> wasmtime_wasi_http::Error
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match error.into().downcast::<hyper::Error>() {
        Ok(error) => wasmtime_wasi_http::Error::Hyper(*error),
        Err(other) => wasmtime_wasi_http::Error::InternalError(Some(other.to_string())),
    }
}

fn error_code_message(code: &ErrorCode) -> String {
    format!("the handler set the error code {code:?} instead of a response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_are_told_apart_from_components() {
        assert!(is_core_module(b"\0asm\x01\x00\x00\x00rest"));
        assert!(!is_core_module(b"\0asm\x0d\x00\x01\x00rest"));
        assert!(!is_core_module(b"\0asm"));
    }

    #[test]
    fn incoming_handler_is_found_at_any_version() {
        assert!(exports_incoming_handler([
            "wasi:http/incoming-handler@0.2.4"
        ]));
        assert!(exports_incoming_handler([
            "x",
            "wasi:http/incoming-handler"
        ]));
        assert!(!exports_incoming_handler(["wasi:cli/run@0.2.0"]));
        assert!(!exports_incoming_handler([
            "wasi:http/incoming-handler-extra@0.2.0"
        ]));
        assert!(!exports_incoming_handler(std::iter::empty()));
    }

    #[test]
    fn a_request_without_authority_gets_a_host() {
        let request = with_authority(Request::new(()));
        assert_eq!(request.headers()[HOST], "localhost");
        let request = Request::builder()
            .header(HOST, "hello.default.fn.localhost")
            .body(())
            .unwrap();
        let request = with_authority(request);
        assert_eq!(request.headers()[HOST], "hello.default.fn.localhost");
    }

    #[test]
    fn body_errors_keep_hyper_errors() {
        let error = body_error(std::io::Error::other("reset"));
        assert!(error.to_string().contains("reset"), "{error}");
    }
}
