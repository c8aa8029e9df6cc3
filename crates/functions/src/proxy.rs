//! Forwarding a request to an image function's pod: the buffered request goes over a
//! pooled HTTP/1.1 connection with hop-by-hop headers removed and `X-Forwarded-*` added;
//! the response streams back. A body wrapper holds the pod's lease and runs a callback
//! (metering) when the response body ends or the client goes away.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The pod refused or dropped the connection before answering (safe to retry).
    #[error("instance {0} could not be reached: {1}")]
    Connect(SocketAddr, String),
    /// No response head within the timeout.
    #[error("the function did not answer within its timeout of {0:?}")]
    Timeout(Duration),
    /// The exchange failed after the request was sent.
    #[error("instance {0} failed: {1}")]
    Failed(SocketAddr, String),
}

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// A pooled HTTP/1.1 client to pods.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Forwarder {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        Self {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        }
    }
}

impl Forwarder {
    /// Sends the request to `addr` and returns the response head with its streaming body.
    pub async fn forward(
        &self,
        addr: SocketAddr,
        parts: &Parts,
        path_and_query: &str,
        body: Bytes,
        remote: SocketAddr,
        timeout: Duration,
    ) -> Result<Response<Incoming>, ForwardError> {
        let uri: Uri = format!("http://{addr}{path_and_query}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| ForwardError::Failed(addr, e.to_string()))?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        let listed: Vec<HeaderName> = parts
            .headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for (name, value) in &parts.headers {
            if HOP_BY_HOP.contains(&name.as_str())
                || name == header::TRANSFER_ENCODING
                || listed.contains(name)
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        if let Ok(value) = HeaderValue::from_str(&remote.ip().to_string()) {
            headers.append(HeaderName::from_static("x-forwarded-for"), value);
        }
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => Err(ForwardError::Timeout(timeout)),
            Ok(Err(error)) if error.is_connect() => {
                Err(ForwardError::Connect(addr, error.to_string()))
            }
            Ok(Err(error)) => Err(ForwardError::Failed(addr, format!("{error}"))),
            Ok(Ok(mut response)) => {
                for name in HOP_BY_HOP {
                    response.headers_mut().remove(name);
                }
                Ok(response)
            }
        }
    }
}

/// A response body that keeps `guard` alive until the body ends (or is dropped) and
/// then calls `done` once with whether it ended cleanly.
pub struct Tracked<B: Body, G> {
    inner: B,
    guard: Option<G>,
    done: Option<Box<dyn FnOnce(bool) + Send>>,
}

impl<B: Body, G> Tracked<B, G> {
    /// Wraps `inner`.
    pub fn new(inner: B, guard: G, done: impl FnOnce(bool) + Send + 'static) -> Self {
        Self {
            inner,
            guard: Some(guard),
            done: Some(Box::new(done)),
        }
    }

    fn finish(&mut self, clean: bool) {
        if let Some(done) = self.done.take() {
            done(clean);
        }
        self.guard = None;
    }
}

impl<B: Body, G> Drop for Tracked<B, G> {
    fn drop(&mut self) {
        // hyper stops polling once the body says it ended, so an ended body is clean.
        let clean = self.inner.is_end_stream();
        self.finish(clean);
    }
}

impl<B: Body<Data = Bytes> + Unpin, G: Unpin> Body for Tracked<B, G> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.finish(true),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
