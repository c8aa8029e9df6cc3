//! Strata's serverless functions: the WebAssembly engine (wasmtime, a fresh instance per
//! request from a pre-linked template), the CGI contract for WASI preview 1 modules, the
//! HTTP gateway that routes `<fn>.<ns>.fn.localhost` and `/fn/<ns>/<fn>` to functions, and
//! per-function usage metering. WebAssembly components that implement
//! `wasi:http/incoming-handler` (WASI 0.2) are served by [`HttpComponent`], with streamed
//! request and response bodies.
//!
//! This crate knows nothing of the API server: callers hand it plain function
//! descriptions ([`FunctionConfig`]) and read its meters back.

pub mod autoscale;
pub mod cgi;
pub mod component;
pub mod cron;
pub mod engine;
pub mod gateway;
pub mod instances;
pub mod metering;
pub mod oci;
pub mod pods;
pub mod proxy;
pub mod sync;
pub mod table;
pub mod wasm;

pub use component::{ComponentOutcome, HttpComponent};
pub use engine::{EngineOptions, WasmEngine};
pub use metering::{Meter, UsageSnapshot};
pub use table::{Backend, FunctionConfig, FunctionKey, FunctionTable};
pub use wasm::{Invocation, InvokeError, Reply, WasmFunction};

/// What can go wrong preparing functions.
#[derive(Debug, thiserror::Error)]
pub enum FunctionsError {
    /// The engine could not be configured (e.g. the pooling allocator's reservation).
    #[error("configuring the WebAssembly engine: {0}")]
    Engine(String),
    /// The bytes are neither WebAssembly nor its text format, or do not validate.
    #[error("compiling the WebAssembly module: {0}")]
    Compile(String),
    /// The module needs imports Strata does not provide or lacks the entry point.
    #[error("linking the WebAssembly module: {0}")]
    Link(String),
    /// Serving the gateway failed (binding its address).
    #[error("gateway: {0}")]
    Gateway(#[from] std::io::Error),
}
