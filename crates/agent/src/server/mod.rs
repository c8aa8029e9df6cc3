//! The kubelet API: an HTTPS server on the node that the API server proxies `kubectl
//! logs`, `exec`, `attach`, `port-forward` and `cp` to. One file per endpoint:
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}` ([`logs`]),
//! - `/exec/{ns}/{pod}/{container}?command=…` ([`exec`]),
//! - `/attach/{ns}/{pod}/{container}` ([`attach`]),
//! - `/portForward/{ns}/{pod}` ([`portforward`], SPDY/3.1 in [`spdy`]).
//!
//! Only the API server may call it: TLS requires a client certificate issued by the
//! cluster CA, and its CN must be [`API_SERVER_USER`]; any other identity gets 403.
//! Streams use WebSocket ([`websocket`]) with Kubernetes' channel protocol ([`channels`],
//! sessions in [`stream`]); port forwarding uses SPDY/3.1 ([`spdy`]).

pub mod attach;
pub mod channels;
pub mod exec;
pub mod logs;
pub mod pods;
pub mod portforward;
pub mod spdy;
pub mod stream;
pub mod websocket;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::Context;

/// The only client identity (certificate CN) the kubelet API serves.
pub const API_SERVER_USER: &str = "kube-apiserver-kubelet-client";
/// Default port of the kubelet API.
pub const DEFAULT_PORT: u16 = 10250;
/// Longest time a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The response body of every endpoint.
pub type Body = BoxBody<Bytes, Infallible>;

/// The serving certificate and the CA that client certificates must chain to, all PEM.
#[derive(Clone)]
pub struct KubeletTls {
    /// The serving certificate.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
    /// The cluster CA.
    pub client_ca_pem: String,
}

impl std::fmt::Debug for KubeletTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletTls").finish_non_exhaustive()
    }
}

/// Errors of starting the kubelet API.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A PEM of the TLS configuration could not be decoded.
    #[error("cannot decode the kubelet API's {what}")]
    Pem {
        /// Which PEM.
        what: &'static str,
        /// Cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the configuration.
    #[error("cannot configure TLS for the kubelet API")]
    Tls(#[source] rustls::Error),
    /// The client verifier could not be built.
    #[error("cannot build the kubelet API's client verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// The address could not be bound.
    #[error("cannot listen on {addr} for the kubelet API")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A bound kubelet API, not serving yet.
pub struct KubeletServer {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    port: u16,
}

impl KubeletServer {
    /// Binds `addr` (port 0: any free port) with `tls`.
    pub async fn bind(addr: SocketAddr, tls: &KubeletTls) -> Result<Self, ServerError> {
        let tls = server_config(tls)?;
        let bind_err = |source| ServerError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        let port = listener.local_addr().map_err(bind_err)?.port();
        Ok(Self {
            listener,
            tls,
            port,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the future is dropped.
    pub async fn serve(self, ctx: Arc<Context>) {
        let acceptor = TlsAcceptor::from(self.tls);
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "kubelet API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, ctx) = (acceptor.clone(), ctx.clone());
            tokio::spawn(async move {
                if let Err(err) = connection(tcp, acceptor, ctx).await {
                    tracing::debug!(%peer, error = %err, "kubelet API connection ended");
                }
            });
        }
    }
}

fn server_config(tls: &KubeletTls) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let pem = |what| move |source| ServerError::Pem { what, source };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = CertificateDer::from_pem_slice(tls.client_ca_pem.as_bytes()).map_err(pem("CA"))?;
    let mut roots = RootCertStore::empty();
    roots.add(ca).map_err(ServerError::Tls)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(ServerError::Verifier)?;
    let chain = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem("serving certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(pem("serving key"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ServerError::Tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(ServerError::Tls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The CN of a DER certificate.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

async fn connection(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    ctx: Arc<Context>,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|err| format!("TLS handshake failed: {err}"))?;
    let user = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| common_name(leaf));
    let allowed = user.as_deref() == Some(API_SERVER_USER);
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let ctx = ctx.clone();
        let user = user.clone();
        async move {
            if !allowed {
                let who = user.unwrap_or_default();
                return Ok::<_, Infallible>(status_response(
                    StatusCode::FORBIDDEN,
                    &format!("user {who:?} may not use the kubelet API"),
                ));
            }
            Ok(route(ctx, req).await)
        }
    });
    hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await
        .map_err(|err| format!("HTTP failed: {err}"))
}

async fn route(ctx: Arc<Context>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["containerLogs", ns, pod, container] => {
            logs::serve(ctx, req, &pods::Target::new(ns, pod, container)).await
        }
        ["exec", ns, pod, container] => {
            exec::serve(ctx, req, pods::Target::new(ns, pod, container)).await
        }
        ["attach", ns, pod, container] => {
            attach::serve(ctx, req, pods::Target::new(ns, pod, container)).await
        }
        ["portForward", ns, pod] => portforward::serve(ctx, req, ns, pod).await,
        _ => status_response(StatusCode::NOT_FOUND, &format!("no endpoint {path}")),
    }
}

/// A full body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A `metav1.Status` failure response.
pub fn status_response(code: StatusCode, message: &str) -> Response<Body> {
    let reason = match code {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::FORBIDDEN => "Forbidden",
        StatusCode::NOT_FOUND => "NotFound",
        _ => "InternalError",
    };
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    let mut response = Response::new(full(serde_json::to_vec(&status).unwrap_or_default()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The query's values of `key`.
pub fn query_values(query: Option<&str>, key: &str) -> Vec<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// A boolean query flag under any of `keys` (`1`, `true`, …, as Go's ParseBool).
pub fn query_flag(query: Option<&str>, keys: &[&str]) -> bool {
    keys.iter().any(|key| {
        query_values(query, key)
            .iter()
            .any(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
    })
}
