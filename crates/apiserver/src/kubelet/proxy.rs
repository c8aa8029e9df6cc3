//! The API server's client of node agents' kubelet API: TLS trusting the cluster CA and
//! presenting the [`KUBELET_CLIENT_USER`](crate::pki::KUBELET_CLIENT_USER) certificate,
//! one HTTP/1.1 connection per request. Plain responses stream through (so `logs -f`
//! follows); an upgrade (WebSocket or SPDY) is answered with the agent's `101` and the two
//! upgraded connections are then copied into each other until either side closes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;

use super::location::Location;
use crate::pki::Pki;
use crate::status::ApiError;
use crate::tls::TlsError;

/// Longest time to connect (TCP and TLS) to a node agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Request headers an upgrade carries to the agent.
const UPGRADE_HEADERS: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Connects to node agents as the API server.
pub struct KubeletClient {
    connector: TlsConnector,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient").finish_non_exhaustive()
    }
}

impl KubeletClient {
    /// A client trusting `pki`'s CA and presenting its kubelet-client certificate.
    pub fn new(pki: &Pki) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca =
            CertificateDer::from_pem_slice(pki.ca_cert_pem().as_bytes()).map_err(|source| {
                TlsError::Pem {
                    what: "CA certificate",
                    source,
                }
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(ca).map_err(|source| TlsError::Config {
            what: "kubelet trust roots",
            source,
        })?;
        let identity = pki.kubelet_client();
        let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                what: "kubelet client certificate",
                source,
            })?;
        let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).map_err(|source| {
            TlsError::Pem {
                what: "kubelet client key",
                source,
            }
        })?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Config {
                what: "protocol versions",
                source,
            })?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|source| TlsError::Config {
                what: "kubelet client certificate",
                source,
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// Sends `request` (its method, upgrade headers and upgrade) to `location` and turns
    /// the agent's answer into the response for the client.
    pub async fn proxy(
        &self,
        location: &Location,
        mut request: Request<Body>,
    ) -> Result<Response, ApiError> {
        let unreachable = |what: String| {
            ApiError::Unavailable(format!(
                "cannot reach the node agent of {} at {}:{}: {what}",
                location.node, location.host, location.port
            ))
        };
        let addr = format!("{}:{}", location.host, location.port);
        let server_name = ServerName::try_from(location.host.clone())
            .map_err(|err| unreachable(err.to_string()))?;
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            let _ = tcp.set_nodelay(true);
            self.connector.connect(server_name, tcp).await
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|err| unreachable(err.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(error = %err, "kubelet API connection failed");
            }
        });
        let upgrading = request.headers().contains_key(header::UPGRADE);
        let mut upstream = Request::builder()
            .method(request.method().clone())
            .uri(&location.path_and_query)
            .header(header::HOST, addr.as_str());
        if upgrading {
            for name in UPGRADE_HEADERS {
                for value in request.headers().get_all(*name) {
                    upstream = upstream.header(*name, value);
                }
            }
        }
        let upstream = upstream.body(Body::empty()).map_err(|err| {
            ApiError::Internal(format!("cannot build the kubelet request: {err}"))
        })?;
        let mut response = sender
            .send_request(upstream)
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS || !upgrading {
            let (parts, body) = response.into_parts();
            return Ok(Response::from_parts(parts, Body::new(body)));
        }
        let client_side = hyper::upgrade::on(&mut request);
        let agent_side = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            let (client, agent) = match tokio::try_join!(client_side, agent_side) {
                Ok(both) => both,
                Err(err) => {
                    tracing::debug!(error = %err, "stream upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut agent = TokioIo::new(agent);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
        });
        let mut answer = Response::new(Body::empty());
        *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        copy_headers(response.headers(), answer.headers_mut());
        Ok(answer)
    }
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        to.append(name.clone(), value.clone());
    }
}
