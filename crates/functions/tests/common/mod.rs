//! The gateway test harness: a real gateway on a loopback port over its own table, and
//! an HTTP/1.1 client for it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use strata_functions::gateway::{COLD_START_HEADER, Gateway, GatewayOptions};
use strata_functions::{
    Backend, EngineOptions, FunctionConfig, FunctionKey, FunctionTable, UsageSnapshot, WasmEngine,
    WasmFunction,
};
use tokio::net::{TcpListener, TcpStream};

/// A gateway on a loopback port over its own function table.
pub struct Harness {
    /// The table the gateway serves.
    pub table: Arc<FunctionTable>,
    /// Where the gateway listens.
    pub addr: SocketAddr,
    _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Harness {
    /// Starts a gateway.
    pub async fn start(options: GatewayOptions) -> Self {
        let engine = WasmEngine::new(&EngineOptions::default()).expect("engine");
        let table = Arc::new(FunctionTable::new(engine));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let gateway = Gateway::new(table.clone(), options);
        let server = tokio::spawn(gateway.serve(listener, std::future::pending()));
        Self {
            table,
            addr,
            _server: server,
        }
    }

    /// Serves a CGI module from WAT as `default/<name>`, with `tweak` applied.
    pub fn deploy(&self, name: &str, wat: &str, tweak: impl FnOnce(&mut FunctionConfig)) {
        let module = WasmFunction::compile(self.table.engine(), wat.as_bytes()).expect("compile");
        self.deploy_backend(name, Backend::Wasm(module), tweak);
    }

    /// Serves `backend` as `default/<name>`, with `tweak` applied.
    pub fn deploy_backend(
        &self,
        name: &str,
        backend: Backend,
        tweak: impl FnOnce(&mut FunctionConfig),
    ) {
        let mut config = FunctionConfig {
            key: FunctionKey::new("default", name),
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(10),
            env: vec![],
            allow_network: false,
            max_in_flight: 0,
            min_scale: 0,
            scale_to_zero_after: Duration::from_secs(60),
            backend,
        };
        tweak(&mut config);
        self.table
            .upsert(config, UsageSnapshot::default())
            .expect("deploy");
    }

    /// Sends one HTTP/1.1 request: status, cold-start header, whole body.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> (StatusCode, Option<String>, Bytes) {
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        let response = sender.send_request(request).await.expect("response");
        let status = response.status();
        let cold = response
            .headers()
            .get(COLD_START_HEADER)
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, cold, body)
    }

    /// GET `path` with `host`.
    pub async fn get(&self, host: &str, path: &str) -> (StatusCode, Option<String>, Bytes) {
        let request = Request::get(path)
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .expect("request");
        self.send(request).await
    }

    /// POST `body` to `path`.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> (StatusCode, Option<String>, Bytes) {
        let request = Request::post(path)
            .header("host", "127.0.0.1")
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        self.send(request).await
    }
}

/// A body as text.
pub fn text(body: &Bytes) -> String {
    String::from_utf8_lossy(body).into_owned()
}
