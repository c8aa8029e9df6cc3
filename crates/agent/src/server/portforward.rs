//! `/portForward/{ns}/{pod}`: the `portforward.k8s.io` protocol over a SPDY/3.1 session
//! ([`super::spdy`]), reached by a plain `Upgrade: SPDY/3.1` or tunnelled in WebSocket
//! binary messages (subprotocol `SPDY/3.1+portforward.k8s.io`, what kubectl 1.31+ tries
//! first). For each forwarded connection the client opens two streams with the headers
//! `streamtype` (`error` or `data`), `port` and `requestid`; once both are there the
//! agent connects to the port inside the pod's network namespace (the host's for
//! `hostNetwork` pods) and copies bytes between the data stream and that connection. A
//! failure is written as text on the error stream. When either direction ends the other
//! gets a second to finish, as kubelet's CRI streaming does, then both streams are
//! finished.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming as HttpBody;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Pod;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::spdy::{self, FlowControl, Incoming, Stream, StreamReader, StreamWriter};
use super::{Body, full, status_response, websocket};
use crate::Context;
use crate::pods::actions::{self, Network};
use crate::pods::worker;

/// The protocol version negotiated in `X-Stream-Protocol-Version`.
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol of SPDY tunnelled in WebSocket.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The header that negotiates the protocol of a SPDY upgrade.
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// How long the second stream of a pair may take to come (kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to connect to the pod's port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one direction may go on after the other ended.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes read from the pod's connection at a time.
const CHUNK: usize = 32 << 10;

/// How the client reached the SPDY session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// `Upgrade: SPDY/3.1`.
    Spdy,
    /// WebSocket carrying SPDY in binary messages.
    Tunnel,
}

impl Transport {
    /// The transport `req` asks for, or why it cannot be served.
    fn of<B>(req: &Request<B>) -> Result<Self, &'static str> {
        let headers = req.headers();
        if websocket::is_upgrade(headers) {
            return match websocket::choose_protocol(headers, &[TUNNEL_PROTOCOL]) {
                Some(_) => Ok(Self::Tunnel),
                None => Err("no supported WebSocket subprotocol (SPDY/3.1+portforward.k8s.io)"),
            };
        }
        if !websocket::header_has_token(headers, http::header::UPGRADE, "SPDY/3.1") {
            return Err(
                "port forwarding needs a SPDY/3.1 or WebSocket (SPDY/3.1+portforward.k8s.io) upgrade",
            );
        }
        let offered: Vec<&str> = headers
            .get_all(PROTOCOL_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        if !offered.is_empty() && !offered.contains(&PROTOCOL) {
            return Err("unable to negotiate protocol: this server accepts portforward.k8s.io");
        }
        Ok(Self::Spdy)
    }

    /// The `101` answer.
    fn response<B>(self, req: &Request<B>) -> Response<Body> {
        if self == Self::Tunnel {
            return websocket::switching_response(req, TUNNEL_PROTOCOL);
        }
        let mut response = Response::new(full(""));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        let value = http::HeaderValue::from_static;
        headers.insert(http::header::CONNECTION, value("Upgrade"));
        headers.insert(http::header::UPGRADE, value("SPDY/3.1"));
        headers.insert(PROTOCOL_HEADER, value(PROTOCOL));
        response
    }
}

/// Serves one port-forward request.
pub async fn serve(
    ctx: Arc<Context>,
    mut req: Request<HttpBody>,
    namespace: &str,
    pod: &str,
) -> Response<Body> {
    let transport = match Transport::of(&req) {
        Ok(transport) => transport,
        Err(message) => return status_response(StatusCode::BAD_REQUEST, message),
    };
    let network = match locate(&ctx, namespace, pod).await {
        Ok(network) => Arc::new(network),
        Err((code, message)) => return status_response(code, &message),
    };
    let response = transport.response(&req);
    let upgrade = hyper::upgrade::on(&mut req);
    let pod: Arc<str> = format!("{namespace}/{pod}").into();
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(err) => {
                tracing::debug!(error = %err, "port-forward upgrade failed");
                return;
            }
        };
        // kubectl's SPDY library does no flow control (see `spdy::session`).
        let config = spdy::Config {
            flow_control: FlowControl::Advisory,
            ..spdy::Config::default()
        };
        let incoming = match transport {
            Transport::Spdy => spdy::session::start(io, config),
            Transport::Tunnel => spdy::session::start(websocket::tunnel(io), config),
        };
        pair_streams(incoming, network, pod).await;
    });
    response
}

/// The network of the pod, from the API (its UID and `hostNetwork`) and this node.
async fn locate(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Network, (StatusCode, String)> {
    let api = kube::Api::<Pod>::namespaced(ctx.client.clone(), namespace);
    let not_found = || {
        let message = format!("pod {namespace}/{name} not found on this node");
        (StatusCode::NOT_FOUND, message)
    };
    let pod = match api.get_opt(name).await {
        Ok(Some(pod)) => pod,
        Ok(None) => return Err(not_found()),
        Err(err) => {
            let message = format!("cannot read pod {namespace}/{name}: {err}");
            return Err((StatusCode::INTERNAL_SERVER_ERROR, message));
        }
    };
    let on_this_node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
        == Some(ctx.options.node_name.as_str());
    let Some(uid) = pod.metadata.uid.as_deref().filter(|_| on_this_node) else {
        return Err(not_found());
    };
    let network = worker::network(ctx, &pod, worker::sandbox_of(ctx, uid));
    if let Network::Sandbox(sandbox) = &network
        && !sandbox.exists()
    {
        let message = format!("pod {namespace}/{name} has no sandbox on this node yet");
        return Err((StatusCode::BAD_REQUEST, message));
    }
    Ok(network)
}

/// Which of a pair a stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Error,
    Data,
}

/// What a stream's headers ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StreamRequest {
    kind: Kind,
    port: u16,
    request_id: String,
}

/// Reads a stream's headers. Clients before `requestid` existed open the error stream
/// and then the data stream: the pair is keyed by the error stream's ID.
fn parse_headers(id: u32, headers: &spdy::Headers) -> Result<StreamRequest, String> {
    let kind = match headers.get("streamtype") {
        Some("error") => Kind::Error,
        Some("data") => Kind::Data,
        other => return Err(format!("invalid stream type {other:?}")),
    };
    let port = headers
        .get("port")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("invalid port header {:?}", headers.get("port")))?;
    let request_id = match (headers.get("requestid"), kind) {
        (Some(id), _) => id.to_string(),
        (None, Kind::Error) => id.to_string(),
        (None, Kind::Data) => id.saturating_sub(2).to_string(),
    };
    Ok(StreamRequest {
        kind,
        port,
        request_id,
    })
}

/// The streams of one forwarded connection, as they arrive.
struct Pair {
    error: Option<Stream>,
    data: Option<(u16, Stream)>,
    since: Instant,
}

/// Accepts streams, pairs them by request ID and forwards each complete pair.
async fn pair_streams(mut incoming: Incoming, network: Arc<Network>, pod: Arc<str>) {
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let stream = tokio::select! {
            stream = incoming.accept() => match stream {
                Some(stream) => stream,
                None => break,
            },
            _ = tick.tick() => {
                expire(&mut pairs).await;
                continue;
            }
        };
        let request = match parse_headers(stream.id, &stream.headers) {
            Ok(request) => request,
            Err(reason) => {
                tracing::debug!(%pod, reason, "port-forward stream refused");
                let _ = stream.writer.reset(spdy::frame::PROTOCOL_ERROR).await;
                continue;
            }
        };
        let pair = pairs
            .entry(request.request_id.clone())
            .or_insert_with(|| Pair {
                error: None,
                data: None,
                since: Instant::now(),
            });
        let duplicate = match request.kind {
            Kind::Error => pair.error.is_some(),
            Kind::Data => pair.data.is_some(),
        };
        if duplicate || stream.writer.reply().await.is_err() {
            let _ = stream.writer.reset(spdy::frame::PROTOCOL_ERROR).await;
            continue;
        }
        match request.kind {
            Kind::Error => pair.error = Some(stream),
            Kind::Data => pair.data = Some((request.port, stream)),
        }
        if pair.error.is_some()
            && pair.data.is_some()
            && let Some(Pair {
                error: Some(error),
                data: Some((port, data)),
                ..
            }) = pairs.remove(&request.request_id)
        {
            let (network, pod) = (network.clone(), pod.clone());
            tokio::spawn(forward(network, pod, port, error, data));
        }
    }
}

/// Ends pairs whose second stream did not come in time.
async fn expire(pairs: &mut HashMap<String, Pair>) {
    let late: Vec<String> = pairs
        .iter()
        .filter(|(_, p)| p.since.elapsed() > STREAM_CREATION_TIMEOUT)
        .map(|(id, _)| id.clone())
        .collect();
    for id in late {
        let Some(pair) = pairs.remove(&id) else {
            continue;
        };
        if let Some(error) = pair.error {
            let message = format!("timed out waiting for the data stream of request {id}");
            let _ = error.writer.write(message.as_bytes()).await;
            let _ = error.writer.finish().await;
        }
        if let Some((_, data)) = pair.data {
            let _ = data.writer.reset(spdy::frame::CANCEL).await;
        }
    }
}

/// Forwards one connection: connect in the pod, copy both ways, report a failure.
async fn forward(network: Arc<Network>, pod: Arc<str>, port: u16, error: Stream, data: Stream) {
    // The client sends nothing on the error stream; its reader is not needed.
    let Stream { writer: report, .. } = error;
    match actions::connect(&network, Some("127.0.0.1"), port, CONNECT_TIMEOUT).await {
        Ok(tcp) => copy(tcp, data.reader, &data.writer).await,
        Err(failure) => {
            let message = format!("error forwarding port {port} to pod {pod}: {failure}");
            tracing::debug!(%pod, port, error = %failure, "port-forward connect failed");
            let _ = report.write(message.as_bytes()).await;
        }
    }
    let _ = data.writer.finish().await;
    let _ = report.finish().await;
}

/// Copies between the pod's connection and the data stream until one direction ends,
/// then gives the other [`LINGER`] to finish.
async fn copy(tcp: TcpStream, mut from_client: StreamReader, to_client: &StreamWriter) {
    let _ = tcp.set_nodelay(true);
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let upstream = async move {
        while let Some(chunk) = from_client.read().await {
            if tcp_write.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = tcp_write.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n @ 1..) = tcp_read.read(&mut buf).await {
            if to_client.write(&buf[..n]).await.is_err() {
                return;
            }
        }
        let _ = to_client.finish().await;
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        () = &mut upstream => {
            let _ = tokio::time::timeout(LINGER, downstream).await;
        }
        () = &mut downstream => {
            let _ = tokio::time::timeout(LINGER, upstream).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> spdy::Headers {
        spdy::Headers(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn stream_headers_name_the_pair_and_port() {
        let data = headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "4")]);
        assert_eq!(
            parse_headers(3, &data),
            Ok(StreamRequest {
                kind: Kind::Data,
                port: 8080,
                request_id: "4".into()
            })
        );
        // Without request IDs, the data stream follows its error stream.
        let legacy_error = headers(&[("streamtype", "error"), ("port", "80")]);
        let legacy_data = headers(&[("streamtype", "data"), ("port", "80")]);
        assert_eq!(parse_headers(5, &legacy_error).unwrap().request_id, "5");
        assert_eq!(parse_headers(7, &legacy_data).unwrap().request_id, "5");
        for bad in [
            headers(&[("streamtype", "stdin"), ("port", "80")]),
            headers(&[("streamtype", "data"), ("port", "0")]),
            headers(&[("streamtype", "data"), ("port", "http")]),
            headers(&[("streamtype", "data")]),
        ] {
            assert!(parse_headers(1, &bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn both_upgrades_are_recognised() {
        let spdy = Request::builder()
            .header("connection", "Upgrade")
            .header("upgrade", "SPDY/3.1")
            .header("x-stream-protocol-version", "portforward.k8s.io")
            .body(())
            .unwrap();
        assert_eq!(Transport::of(&spdy), Ok(Transport::Spdy));
        let answer = Transport::Spdy.response(&spdy);
        assert_eq!(answer.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(answer.headers()["x-stream-protocol-version"], PROTOCOL);
        assert_eq!(answer.headers()["upgrade"], "SPDY/3.1");
        let tunnel = Request::builder()
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("sec-websocket-protocol", TUNNEL_PROTOCOL)
            .body(())
            .unwrap();
        assert_eq!(Transport::of(&tunnel), Ok(Transport::Tunnel));
        let answer = Transport::Tunnel.response(&tunnel);
        assert_eq!(answer.headers()["sec-websocket-protocol"], TUNNEL_PROTOCOL);
        let other = Request::builder()
            .header("upgrade", "SPDY/3.1")
            .header("x-stream-protocol-version", "v4.channel.k8s.io")
            .body(())
            .unwrap();
        assert!(Transport::of(&other).is_err());
        assert!(Transport::of(&Request::builder().body(()).unwrap()).is_err());
    }
}
