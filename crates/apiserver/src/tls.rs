//! The HTTPS listener: rustls (ring) with ALPN `h2` and `http/1.1`, optional client
//! certificates verified against the Strata CA, hyper's HTTP/1 + HTTP/2 server, and graceful
//! shutdown.
//!
//! Behaviour: each accepted connection runs in its own task; a verified client certificate's
//! identity is put on every request of the connection as [`ClientCertIdentity`]. There is no
//! request or response timeout, so watches can stream for as long as the client stays; only
//! the TLS handshake (10 s) and the wait for HTTP/1 request headers (30 s) are bounded, and
//! HTTP/2 connections are kept alive with pings. On shutdown the listener stops accepting,
//! open connections are asked to finish (HTTP/2 GOAWAY, HTTP/1 close after the response), and
//! whatever still runs after the grace period (long watches) is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceExt};

use crate::auth::{ClientCertIdentity, Identity};
use crate::pki::{Pki, subject_names};

/// Longest time a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest time an HTTP/1 client may take to send request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval of HTTP/2 keep-alive pings.
pub const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// Errors of building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM certificate or key could not be decoded.
    #[error("cannot decode the {what} PEM")]
    Pem {
        /// Which PEM.
        what: &'static str,
        /// Cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls rejected the CA, certificate or key.
    #[error("cannot build the TLS {what}")]
    Config {
        /// Which part.
        what: &'static str,
        /// Cause.
        #[source]
        source: rustls::Error,
    },
    /// The client verifier could not be built.
    #[error("cannot build the client certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

/// The rustls server configuration for `pki`: serving certificate, optional client
/// certificates trusted if issued by the CA, ALPN `h2` then `http/1.1`.
pub fn server_config(pki: &Pki) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = CertificateDer::from_pem_slice(pki.ca_cert_pem().as_bytes()).map_err(|source| {
        TlsError::Pem {
            what: "CA certificate",
            source,
        }
    })?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(|source| TlsError::Config {
        what: "client trust roots",
        source,
    })?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(TlsError::Verifier)?;
    let mut chain = CertificateDer::pem_slice_iter(pki.serving().cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: "serving certificate",
            source,
        })?;
    // The CA goes along (clients ignore a root they already trust): a joining node agent
    // pins it by hash (`strata agent --ca-cert-hash`) before it trusts anything else.
    chain.push(ca.clone());
    let key =
        PrivateKeyDer::from_pem_slice(pki.serving().key_pem.as_bytes()).map_err(|source| {
            TlsError::Pem {
                what: "serving key",
                source,
            }
        })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            what: "protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Config {
            what: "serving certificate",
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The identity a verified client certificate stands for: CN → user, each O → a group.
/// `None` if the certificate has no CN.
pub fn identity_from_cert(der: &[u8]) -> Option<Identity> {
    let names = subject_names(der)?;
    let user = names.common_name.filter(|cn| !cn.is_empty())?;
    Some(Identity::new(user, names.organizations))
}

/// Serves `app` over TLS on `listener` until `shutdown` completes, then drains connections
/// for at most `grace` (see the module doc).
pub async fn serve_tls<S>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: S,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
        .keep_alive_timeout(Duration::from_secs(20));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let conn = serve_connection(
                        tcp,
                        acceptor.clone(),
                        builder.clone(),
                        graceful.watcher(),
                        app.clone(),
                    );
                    connections.spawn(async move {
                        if let Err(error) = conn.await {
                            tracing::debug!(%peer, error = %error, "connection ended with an error");
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors and similar: wait a little instead of spinning.
                    tracing::warn!(error = &error as &dyn std::error::Error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!(
            remaining = connections.len(),
            "grace period over; dropping open connections"
        );
    }
    connections.shutdown().await;
}

/// Errors of one connection; only logged.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
    #[error("TLS handshake failed")]
    Handshake(#[source] std::io::Error),
    #[error("HTTP connection failed")]
    Http(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// Renders an error with its `source` chain, for the connection log line.
struct DisplayChain<'a>(&'a dyn std::error::Error);

async fn serve_connection<S>(
    tcp: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    builder: auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    app: S,
) -> Result<(), String>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let run = async {
        let _ = tcp.set_nodelay(true);
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| ConnectionError::HandshakeTimeout)?
            .map_err(ConnectionError::Handshake)?;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| identity_from_cert(leaf))
            .map(ClientCertIdentity);
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            if let Some(peer) = &peer {
                req.extensions_mut().insert(peer.clone());
            }
            app.clone().oneshot(req.map(Body::new))
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        watcher
            .watch(conn.into_owned())
            .await
            .map_err(ConnectionError::Http)
    };
    run.await
        .map_err(|e: ConnectionError| DisplayChain(&e).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn identity_from_client_certs() {
        let data = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(data.path(), &[]).unwrap();
        let admin = identity_from_cert(&der(&pki.admin().cert_pem)).unwrap();
        assert_eq!(admin, Identity::new("strata-admin", ["system:masters"]));
        let plain = pki.issue_client_cert("alice", None).unwrap();
        assert_eq!(
            identity_from_cert(&der(&plain.cert_pem)),
            Some(Identity::new("alice", Vec::<String>::new()))
        );

        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let no_cn = params.self_signed(&key).unwrap();
        assert_eq!(identity_from_cert(no_cn.der()), None);
        assert_eq!(identity_from_cert(b"not a certificate"), None);
    }

    #[test]
    fn config_offers_h2_then_http1() {
        let data = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(data.path(), &[]).unwrap();
        let config = server_config(&pki).unwrap();
        assert_eq!(
            config.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
