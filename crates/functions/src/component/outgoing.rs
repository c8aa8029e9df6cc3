//! Outgoing HTTP from a component (`wasi:http/outgoing-handler`): refused unless the
//! function may use the network, and then sent over plain HTTP/1.1 only. HTTPS is refused
//! too: Strata does not carry a set of TLS roots for functions yet.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wasmtime_wasi::p2::OutputStream;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// How long a connection may take when the component sets no timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the response head may take when the component sets no timeout.
const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

/// The `wasi:http` hooks of one invocation.
pub(super) struct Hooks {
    allow_network: bool,
    /// The function's log, for a line saying why a request was refused.
    log: MemoryOutputPipe,
}

impl Hooks {
    pub(super) fn new(allow_network: bool, log: MemoryOutputPipe) -> Self {
        Self { allow_network, log }
    }

    fn note(&mut self, line: String) {
        // The log may be full; the guest still gets its error code.
        let _ = self.log.write(Bytes::from(format!("strata: {line}\n")));
    }
}

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        match refusal(self.allow_network, request.uri()) {
            Some((error, why)) => {
                let uri = request.uri().clone();
                tracing::debug!(%uri, why, "outgoing request refused");
                self.note(format!("outgoing request to {uri} refused: {why}"));
                Box::new(async move { Err(error) })
            }
            None => Box::new(send_plain(request, options)),
        }
    }
}

/// Why an outgoing request to `uri` may not be sent, with the code the component sees.
fn refusal(allow_network: bool, uri: &http::Uri) -> Option<(Error, &'static str)> {
    if !allow_network {
        return Some((
            Error::HttpRequestDenied,
            "the function may not use the network (its spec does not allow it)",
        ));
    }
    if uri.scheme() == Some(&Scheme::HTTPS) {
        return Some((
            Error::HttpRequestDenied,
            "HTTPS from wasi:http components is not supported yet; only plain HTTP is",
        ));
    }
    None
}

/// Sends a request over a new plain HTTP/1.1 connection.
async fn send_plain(
    mut request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
> {
    let authority = request
        .uri()
        .authority()
        .ok_or(Error::HttpRequestUriInvalid)?;
    let address = match authority.port_u16() {
        Some(_) => authority.to_string(),
        None => format!("{}:80", authority.host()),
    };
    let connect_timeout = options
        .and_then(|o| o.connect_timeout)
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let first_byte_timeout = options
        .and_then(|o| o.first_byte_timeout)
        .unwrap_or(DEFAULT_FIRST_BYTE_TIMEOUT);
    let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(&address))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let (mut sender, connection) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;
    // The request line carries only the path: the authority is in `Host`.
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |path| path.as_str())
        .to_owned();
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
    let connection = tokio::spawn(connection);
    let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|body| body.map_err(Error::from).boxed_unsync());
    let io = async move {
        match connection.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Error::from(error)),
            Err(_) => Err(Error::ConnectionTerminated),
        }
    };
    Ok((response, Box::new(io)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_refused_without_the_network() {
        let uri = http::Uri::from_static("http://example.com/");
        let (error, why) = refusal(false, &uri).unwrap();
        assert!(matches!(error, Error::HttpRequestDenied));
        assert!(why.contains("may not use the network"), "{why}");
        assert!(refusal(true, &uri).is_none());
    }

    #[test]
    fn https_is_refused_even_with_the_network() {
        let uri = http::Uri::from_static("https://example.com/");
        let (_, why) = refusal(true, &uri).unwrap();
        assert!(why.contains("HTTPS"), "{why}");
    }
}
