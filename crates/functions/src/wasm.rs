//! A compiled WebAssembly function and one invocation of it: a fresh instance per request
//! from a pre-linked template ([`InstancePre`]), the request handed over by the CGI
//! contract, memory and time limits enforced by the store.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use wasmtime::{InstancePre, Linker, Module, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use crate::FunctionsError;
use crate::cgi::{self, CgiError, CgiRequest};
use crate::engine::WasmEngine;

/// The most a function may write to standard output (its response) or standard error.
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;
/// How much of standard error is kept with a failed invocation.
const STDERR_KEPT: usize = 4096;

/// One HTTP request for a function.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Request method.
    pub method: Method,
    /// The path prefix that selected the function (`/fn/ns/name`, or empty).
    pub script_name: String,
    /// The rest of the path, at least `/`.
    pub path_info: String,
    /// Query string without `?`.
    pub query: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
    /// The client's address.
    pub remote_addr: String,
    /// Host the request named.
    pub server_name: String,
    /// The gateway's port.
    pub server_port: u16,
}

/// What a function may use during one invocation.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory ceiling in bytes; growing beyond it stops the invocation.
    pub memory_bytes: u64,
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Environment variables from the function's spec.
    pub env: Vec<(String, String)>,
    /// Sockets allowed (TCP/UDP and name lookups).
    pub allow_network: bool,
}

/// A function's HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Why an invocation produced no response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// The function trapped (e.g. `unreachable`, out-of-bounds access).
    #[error("the function trapped: {0}")]
    Trap(String),
    /// The function ran past its timeout and was stopped.
    #[error("the function ran longer than its timeout of {0:?} and was stopped")]
    Timeout(Duration),
    /// The function tried to grow its memory past its limit and was stopped.
    #[error("the function needed more than its memory limit of {limit} bytes and was stopped")]
    MemoryExceeded {
        /// The limit in bytes.
        limit: u64,
    },
    /// The function exited with a non-zero code.
    #[error("the function exited with code {code}{}", stderr_suffix(.stderr))]
    Exit {
        /// Exit code.
        code: i32,
        /// The end of its standard error.
        stderr: String,
    },
    /// The output is not a CGI response.
    #[error(transparent)]
    BadOutput(#[from] CgiError),
    /// Instantiation failed (e.g. no free instance slot).
    #[error("starting an instance: {0}")]
    Instantiate(String),
    /// A `wasi:http` component returned without setting a response, or set an error code
    /// instead of one.
    #[error("the component gave no HTTP response: {0}")]
    NoResponse(String),
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {}", stderr.trim_end())
    }
}

impl InvokeError {
    /// The gateway's status for this failure: 504 for a timeout, 502 otherwise (the
    /// function is the failing backend), 503 when no instance could be started.
    pub fn status(&self) -> StatusCode {
        match self {
            InvokeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            InvokeError::Instantiate(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The result of one invocation with what it used.
#[derive(Debug)]
pub struct Outcome {
    /// The response, or why there is none.
    pub result: Result<Reply, InvokeError>,
    /// The largest linear memory the instance had, in bytes.
    pub memory_peak: u64,
    /// Standard error (for the function's logs), at most [`MAX_OUTPUT_BYTES`].
    pub stderr: Bytes,
    /// Wall-clock time of the invocation.
    pub elapsed: Duration,
}

/// A compiled module, linked against WASI preview 1 and ready to instantiate.
#[derive(Clone)]
pub struct WasmFunction {
    module: Module,
    pre: InstancePre<CgiState>,
}

impl std::fmt::Debug for WasmFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmFunction")
            .field("module", &self.module.name())
            .finish_non_exhaustive()
    }
}

impl WasmFunction {
    /// Compiles WebAssembly (binary or text) for the engine. CPU-heavy: call it off the
    /// async runtime's threads.
    pub fn compile(engine: &WasmEngine, wasm: &[u8]) -> Result<Module, FunctionsError> {
        let binary = wat::parse_bytes(wasm).map_err(|e| FunctionsError::Compile(e.to_string()))?;
        if binary.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00]) {
            return Err(FunctionsError::Compile(
                "this is a WebAssembly component, not a WASI preview 1 module: leave \
                 spec.wasm.interface unset or set it to http to serve a wasi:http component"
                    .into(),
            ));
        }
        Module::new(engine.engine(), &binary).map_err(|e| FunctionsError::Compile(format!("{e:#}")))
    }

    /// Links a compiled module: WASI preview 1 imports, a `_start` export. Cheap; this is
    /// the work a cold start adds to a warm one.
    pub fn link(engine: &WasmEngine, module: &Module) -> Result<Self, FunctionsError> {
        if module.get_export("_start").is_none() {
            return Err(FunctionsError::Link(
                "the module exports no `_start` function (build it as a WASI command)".into(),
            ));
        }
        let mut linker: Linker<CgiState> = Linker::new(engine.engine());
        p1::add_to_linker_async(&mut linker, |state| &mut state.wasi)
            .map_err(|e| FunctionsError::Link(format!("{e:#}")))?;
        let pre = linker
            .instantiate_pre(module)
            .map_err(|e| FunctionsError::Link(format!("{e:#}")))?;
        Ok(Self {
            module: module.clone(),
            pre,
        })
    }

    /// The compiled module.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// Runs one request in a fresh instance.
    pub async fn invoke(&self, limits: &Limits, invocation: Invocation) -> Outcome {
        let started = Instant::now();
        let env = cgi::environment(&CgiRequest {
            method: &invocation.method,
            script_name: &invocation.script_name,
            path_info: &invocation.path_info,
            query: &invocation.query,
            headers: &invocation.headers,
            content_length: invocation.body.len(),
            remote_addr: &invocation.remote_addr,
            server_name: &invocation.server_name,
            server_port: invocation.server_port,
        });
        let stdout = MemoryOutputPipe::new(MAX_OUTPUT_BYTES);
        let stderr = MemoryOutputPipe::new(MAX_OUTPUT_BYTES);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(invocation.body))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&["function"])
            .envs(&limits.env)
            .envs(&env);
        if limits.allow_network {
            wasi.inherit_network().allow_ip_name_lookup(true);
        }
        let state = CgiState {
            wasi: wasi.build_p1(),
            memory: MemoryLimiter {
                limit: limits.memory_bytes,
                peak: 0,
                exceeded: false,
            },
            timed_out: false,
        };
        let mut store = Store::new(self.pre.module().engine(), state);
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
        let run = run_start(&self.pre, &mut store).await;
        let state = store.data();
        let stderr = stderr.contents();
        let result = match run {
            Ok(0) => cgi::parse_output(stdout.contents())
                .map(|response| Reply {
                    status: response.status,
                    headers: response.headers,
                    body: response.body,
                })
                .map_err(InvokeError::from),
            Ok(code) => Err(InvokeError::Exit {
                code,
                stderr: tail(&stderr),
            }),
            Err(_) if state.memory.exceeded => Err(InvokeError::MemoryExceeded {
                limit: limits.memory_bytes,
            }),
            Err(_) if state.timed_out => Err(InvokeError::Timeout(timeout)),
            Err(RunError::Instantiate(message)) => Err(InvokeError::Instantiate(message)),
            Err(RunError::Trap(message)) => Err(InvokeError::Trap(message)),
        };
        Outcome {
            result,
            memory_peak: state.memory.peak,
            stderr,
            elapsed: started.elapsed(),
        }
    }
}

enum RunError {
    Instantiate(String),
    Trap(String),
}

/// Instantiates and calls `_start`; `Ok(code)` when the program exited (0 when it returned).
async fn run_start(
    pre: &InstancePre<CgiState>,
    store: &mut Store<CgiState>,
) -> Result<i32, RunError> {
    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| RunError::Instantiate(format!("{e:#}")))?;
    let start = instance
        .get_typed_func::<(), ()>(&mut *store, "_start")
        .map_err(|e| RunError::Instantiate(format!("{e:#}")))?;
    match start.call_async(&mut *store, ()).await {
        Ok(()) => Ok(0),
        Err(error) => {
            if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                return Ok(exit.0);
            }
            let message = match error.downcast_ref::<Trap>() {
                Some(trap) => trap.to_string(),
                None => format!("{error:#}"),
            };
            Err(RunError::Trap(message))
        }
    }
}

pub(crate) fn tail(stderr: &Bytes) -> String {
    let start = stderr.len().saturating_sub(STDERR_KEPT);
    String::from_utf8_lossy(&stderr[start..]).into_owned()
}

/// Store data of a CGI invocation.
struct CgiState {
    wasi: WasiP1Ctx,
    memory: MemoryLimiter,
    timed_out: bool,
}

/// Holds linear memory under the function's limit and records the peak.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: u64,
    pub(crate) peak: u64,
    pub(crate) exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let desired = desired as u64;
        if desired > self.limit {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes exceeded",
                self.limit
            )));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}
