//! Forwarding of names outside the cluster domain to upstream servers, as CoreDNS'
//! `forward` plugin does: the question goes to the first server over UDP (over TCP when
//! that answer is truncated), then to the next on a timeout or error, and the answer that
//! comes back is relayed to the client. With no upstream servers nothing is forwarded.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_server::proto::ProtoError;
use hickory_server::proto::op::{
    Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_server::proto::serialize::binary::DecodeError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::answer::Answer;

/// How long one upstream server has to answer (per protocol) before the next is asked:
/// CoreDNS' `forward` waits 2 s for a reply too.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// Most queries forwarded at once; more are REFUSED, as CoreDNS' `max_concurrent` does,
/// so a flood of queries cannot hold a socket each for the whole timeout.
const MAX_CONCURRENT_FORWARDS: usize = 256;

/// The largest DNS message (TCP's two-byte length; the largest UDP payload).
const MAX_MESSAGE_BYTES: usize = 65_535;

/// The least EDNS payload size a client may announce (RFC 6891, section 6.2.5).
const MIN_EDNS_PAYLOAD: u16 = 512;

/// How often a failing upstream is logged as a warning; the failures in between are
/// counted and logged at debug level only, since clients can cause them at any rate.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// The servers that names outside the cluster domain are forwarded to, in the order they
/// are tried, and how long each may take. Empty (the default): nothing is forwarded and
/// such names are REFUSED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstreams {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Upstreams {
    /// Forwards to `servers`, in order, each with [`DEFAULT_UPSTREAM_TIMEOUT`].
    pub fn new(servers: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            servers: servers.into_iter().collect(),
            timeout: DEFAULT_UPSTREAM_TIMEOUT,
        }
    }

    /// Gives each server `timeout` to answer, over UDP and again over TCP after a
    /// truncated answer.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The servers, in the order they are tried.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// How long each server has to answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether there is no server (nothing is forwarded).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// Leaves out the servers that are `local` itself, or loopback on its port when `local`
    /// is a wildcard address: forwarding to them would send every query round in a loop.
    pub(crate) fn without_loops(mut self, local: SocketAddr) -> Self {
        self.servers.retain(|server| {
            let same_port = server.port() == local.port();
            let is_self = same_port
                && (server.ip() == local.ip()
                    || (local.ip().is_unspecified() && server.ip().is_loopback()));
            if is_self {
                tracing::warn!(%server, "the DNS server would forward to itself; not using this upstream");
            }
            !is_self
        });
        self
    }
}

/// Why no upstream answer could be relayed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// [`MAX_CONCURRENT_FORWARDS`] queries are already on their way.
    #[error("too many queries are being forwarded")]
    Busy,
    /// Every server failed.
    #[error("no upstream DNS server answered")]
    NoAnswer {
        /// The last server's failure (`None` only without servers, which a
        /// [`Forwarder`] never has).
        #[source]
        last: Option<UpstreamError>,
    },
}

/// Why one upstream server gave no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    /// The question could not be put on the wire.
    #[error("cannot encode the query for {server}")]
    Encode {
        /// The server.
        server: SocketAddr,
        /// Cause.
        #[source]
        source: ProtoError,
    },
    /// No socket could be opened, or it could not reach the server.
    #[error("cannot reach {server} over {protocol}")]
    Connect {
        /// The server.
        server: SocketAddr,
        /// `UDP` or `TCP`.
        protocol: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Sending the query or reading the answer failed (over UDP: an ICMP error, say).
    #[error("cannot exchange the query with {server} over {protocol}")]
    Exchange {
        /// The server.
        server: SocketAddr,
        /// `UDP` or `TCP`.
        protocol: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Nothing came back in time.
    #[error("{server} did not answer over {protocol} within {timeout:?}")]
    Timeout {
        /// The server.
        server: SocketAddr,
        /// `UDP` or `TCP`.
        protocol: &'static str,
        /// How long it had.
        timeout: Duration,
    },
    /// The answer is no DNS message.
    #[error("the answer of {server} does not parse")]
    Decode {
        /// The server.
        server: SocketAddr,
        /// Cause.
        #[source]
        source: DecodeError,
    },
    /// The answer is a DNS message, but no answer to the question asked (another id, no
    /// response, another question), or truncated over TCP.
    #[error("the answer of {server} over {protocol} does not answer the query")]
    Mismatch {
        /// The server.
        server: SocketAddr,
        /// `UDP` or `TCP`.
        protocol: &'static str,
    },
}

/// An upstream's answer as the client gets it: its code and sections, and the header
/// flags that describe the answer rather than the question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Relayed {
    /// The upstream's code and records (its OPT record left out: the client gets ours).
    pub(crate) answer: Answer,
    /// The upstream's AA flag.
    pub(crate) authoritative: bool,
    /// The upstream's RA flag (set on failures: this server does offer recursion).
    pub(crate) recursion_available: bool,
    /// The upstream's AD flag.
    pub(crate) authentic_data: bool,
}

impl Relayed {
    /// A failure of this server with `code`.
    fn failure(code: ResponseCode) -> Self {
        Self {
            answer: Answer::new(code),
            authoritative: false,
            recursion_available: true,
            authentic_data: false,
        }
    }

    /// What the client gets of `reply`.
    fn of(reply: Message) -> Self {
        Self {
            authoritative: reply.metadata.authoritative,
            recursion_available: reply.metadata.recursion_available,
            authentic_data: reply.metadata.authentic_data,
            answer: Answer {
                code: reply.metadata.response_code,
                answers: reply.answers,
                authorities: reply.authorities,
                additionals: reply.additionals,
            },
        }
    }
}

/// Forwards questions to the upstream servers, a bounded number at a time.
#[derive(Debug)]
pub(crate) struct Forwarder {
    upstreams: Upstreams,
    slots: Semaphore,
    warnings: Mutex<Warnings>,
}

/// When a failure was last logged as a warning, and how many were not since.
#[derive(Debug, Default)]
struct Warnings {
    last: Option<Instant>,
    suppressed: u64,
}

impl Forwarder {
    /// A forwarder to `upstreams`; `None` when there are none.
    pub(crate) fn new(upstreams: Upstreams) -> Option<Self> {
        if upstreams.is_empty() {
            return None;
        }
        Some(Self {
            upstreams,
            slots: Semaphore::new(MAX_CONCURRENT_FORWARDS),
            warnings: Mutex::new(Warnings::default()),
        })
    }

    /// The answer to `query` from the first upstream server that gives one, asked with the
    /// RD and CD flags of `asked` and, if the client sent EDNS, with EDNS of its payload
    /// size and DO flag. REFUSED when too many queries are in flight, SERVFAIL when no
    /// server answers.
    pub(crate) async fn relay(
        &self,
        query: &Query,
        asked: &Metadata,
        edns: Option<&Edns>,
    ) -> Relayed {
        match self.forward(query, asked, edns).await {
            Ok(reply) => Relayed::of(reply),
            Err(ForwardError::Busy) => {
                tracing::debug!(name = %query.name(), "too many forwarded DNS queries; refused");
                Relayed::failure(ResponseCode::Refused)
            }
            Err(error) => {
                self.warn(query, &error);
                Relayed::failure(ResponseCode::ServFail)
            }
        }
    }

    /// The first answer of an upstream server to `query`.
    async fn forward(
        &self,
        query: &Query,
        asked: &Metadata,
        edns: Option<&Edns>,
    ) -> Result<Message, ForwardError> {
        let _slot = self.slots.try_acquire().map_err(|_| ForwardError::Busy)?;
        let mut last = None;
        for &server in self.upstreams.servers() {
            match self.ask(server, query, asked, edns).await {
                Ok(reply) => return Ok(reply),
                Err(error) => {
                    tracing::debug!(error = %error_chain(&error), "an upstream DNS server failed");
                    last = Some(error);
                }
            }
        }
        Err(ForwardError::NoAnswer { last })
    }

    /// `server`'s answer over UDP, or over TCP if that one is truncated.
    async fn ask(
        &self,
        server: SocketAddr,
        query: &Query,
        asked: &Metadata,
        edns: Option<&Edns>,
    ) -> Result<Message, UpstreamError> {
        let limit = self.upstreams.timeout();
        let message = upstream_query(query, asked, edns);
        match timeout(limit, over_udp(server, &message)).await {
            Ok(Ok(Reply::Whole(reply))) => return Ok(reply),
            Ok(Ok(Reply::Truncated)) => {}
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                return Err(UpstreamError::Timeout {
                    server,
                    protocol: "UDP",
                    timeout: limit,
                });
            }
        }
        match timeout(limit, over_tcp(server, &message)).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout {
                server,
                protocol: "TCP",
                timeout: limit,
            }),
        }
    }

    /// Logs that no server answered `query`, as a warning at most once a
    /// [`WARNING_INTERVAL`].
    fn warn(&self, query: &Query, error: &ForwardError) {
        let chain = error_chain(error);
        let now = Instant::now();
        let mut warnings = self
            .warnings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = warnings
            .last
            .is_none_or(|last| now.duration_since(last) >= WARNING_INTERVAL);
        if due {
            let suppressed = std::mem::take(&mut warnings.suppressed);
            warnings.last = Some(now);
            drop(warnings);
            tracing::warn!(name = %query.name(), error = %chain, suppressed, "cannot forward a DNS query; answered SERVFAIL");
        } else {
            warnings.suppressed = warnings.suppressed.saturating_add(1);
            drop(warnings);
            tracing::debug!(name = %query.name(), error = %chain, "cannot forward a DNS query; answered SERVFAIL");
        }
    }
}

/// `error` and its causes, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The query sent upstream: the client's question with a fresh random id, the RD and CD
/// flags as asked, and EDNS version 0 with the client's payload size and DO flag if the
/// client sent EDNS. The client's EDNS options (cookies, client subnet) stay here.
fn upstream_query(query: &Query, asked: &Metadata, edns: Option<&Edns>) -> Message {
    // `Message::query` draws the id from a CSPRNG (rand's thread-local generator).
    let mut message = Message::query();
    message.metadata.recursion_desired = asked.recursion_desired;
    message.metadata.checking_disabled = asked.checking_disabled;
    message.add_query(query.clone());
    if let Some(asked) = edns {
        let mut edns = Edns::new();
        edns.set_version(0);
        edns.set_max_payload(asked.max_payload().max(MIN_EDNS_PAYLOAD));
        edns.set_dnssec_ok(asked.flags().dnssec_ok);
        message.set_edns(edns);
    }
    message
}

/// What came back over UDP.
enum Reply {
    /// A whole answer.
    Whole(Message),
    /// An answer with the TC flag: ask again over TCP.
    Truncated,
}

/// Asks `server` over UDP from a fresh socket (so a fresh random source port) connected
/// to it, so the kernel drops datagrams from anyone else. Datagrams with another id are
/// ignored (a late answer or a forgery); the caller bounds the wait.
async fn over_udp(server: SocketAddr, message: &Message) -> Result<Reply, UpstreamError> {
    const PROTOCOL: &str = "UDP";
    let packet = message
        .to_vec()
        .map_err(|source| UpstreamError::Encode { server, source })?;
    let connect = |source| UpstreamError::Connect {
        server,
        protocol: PROTOCOL,
        source,
    };
    let exchange = |source| UpstreamError::Exchange {
        server,
        protocol: PROTOCOL,
        source,
    };
    let local = match server {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local).await.map_err(connect)?;
    socket.connect(server).await.map_err(connect)?;
    socket.send(&packet).await.map_err(exchange)?;
    let id = message.metadata.id;
    let mut buffer = vec![0; MAX_MESSAGE_BYTES];
    loop {
        let len = socket.recv(&mut buffer).await.map_err(exchange)?;
        let datagram = buffer.get(..len).unwrap_or_default();
        let Some(header) = RawHeader::of(datagram) else {
            continue;
        };
        if header.id != id || !header.is_response {
            continue;
        }
        // A truncated answer may be cut anywhere (even inside a record), so it is not
        // parsed: TCP brings the whole one.
        if header.truncated {
            return Ok(Reply::Truncated);
        }
        let reply = Message::from_vec(datagram)
            .map_err(|source| UpstreamError::Decode { server, source })?;
        if !answers(&reply, message) {
            return Err(UpstreamError::Mismatch {
                server,
                protocol: PROTOCOL,
            });
        }
        return Ok(Reply::Whole(reply));
    }
}

/// Asks `server` over a TCP connection of its own (two-byte length before each message,
/// RFC 1035 section 4.2.2); the caller bounds the wait.
async fn over_tcp(server: SocketAddr, message: &Message) -> Result<Message, UpstreamError> {
    const PROTOCOL: &str = "TCP";
    let packet = message
        .to_vec()
        .map_err(|source| UpstreamError::Encode { server, source })?;
    let exchange = |source| UpstreamError::Exchange {
        server,
        protocol: PROTOCOL,
        source,
    };
    let len = u16::try_from(packet.len()).map_err(|_| UpstreamError::Encode {
        server,
        source: ProtoError::from("the query is longer than a DNS message may be"),
    })?;
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|source| UpstreamError::Connect {
            server,
            protocol: PROTOCOL,
            source,
        })?;
    let mut framed = Vec::with_capacity(packet.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&packet);
    stream.write_all(&framed).await.map_err(exchange)?;
    let len = stream.read_u16().await.map_err(exchange)?;
    let mut buffer = vec![0; usize::from(len)];
    stream.read_exact(&mut buffer).await.map_err(exchange)?;
    let reply =
        Message::from_vec(&buffer).map_err(|source| UpstreamError::Decode { server, source })?;
    if reply.metadata.truncation || !answers(&reply, message) {
        return Err(UpstreamError::Mismatch {
            server,
            protocol: PROTOCOL,
        });
    }
    Ok(reply)
}

/// The header fields read before a datagram is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawHeader {
    id: u16,
    is_response: bool,
    truncated: bool,
}

impl RawHeader {
    /// The fields of the header at the start of `datagram` (`None`: too short for one).
    fn of(datagram: &[u8]) -> Option<Self> {
        let [id_high, id_low, flags, ..] = *datagram else {
            return None;
        };
        // RFC 1035 section 4.1.1: QR is the top bit of the third byte, TC its second-lowest.
        Some(Self {
            id: u16::from_be_bytes([id_high, id_low]),
            is_response: flags & 0x80 != 0,
            truncated: flags & 0x02 != 0,
        })
    }
}

/// Whether `reply` is the answer to `query`: a response with its id, to a standard query,
/// repeating its question (or, for an error, no question at all, as some servers answer).
fn answers(reply: &Message, query: &Message) -> bool {
    let metadata = &reply.metadata;
    if metadata.id != query.metadata.id
        || metadata.message_type != MessageType::Response
        || metadata.op_code != OpCode::Query
    {
        return false;
    }
    match reply.queries.as_slice() {
        [] => metadata.response_code != ResponseCode::NoError,
        [asked] => query.queries.first().is_some_and(|question| {
            asked.name() == question.name()
                && asked.query_type() == question.query_type()
                && asked.query_class() == question.query_class()
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use hickory_server::proto::rr::{DNSClass, Name, RecordType};

    use super::*;

    fn question(name: &str) -> Query {
        Query::query(Name::from_ascii(name).unwrap(), RecordType::A)
    }

    fn asked(recursion_desired: bool) -> Metadata {
        let mut metadata = Metadata::new(0x1234, MessageType::Query, OpCode::Query);
        metadata.recursion_desired = recursion_desired;
        metadata
    }

    #[test]
    fn the_upstream_query_repeats_the_question_and_the_clients_flags() {
        let query = question("Example.COM.");
        let plain = upstream_query(&query, &asked(true), None);
        assert_eq!(plain.queries, std::slice::from_ref(&query));
        assert!(plain.metadata.recursion_desired);
        assert_eq!(plain.metadata.message_type, MessageType::Query);
        assert!(plain.edns.is_none());
        let iterative = upstream_query(&query, &asked(false), None);
        assert!(!iterative.metadata.recursion_desired);

        let mut client_edns = Edns::new();
        client_edns.set_max_payload(100);
        client_edns.set_dnssec_ok(true);
        let with_edns = upstream_query(&query, &asked(true), Some(&client_edns));
        let edns = with_edns.edns.as_ref().unwrap();
        assert_eq!(edns.max_payload(), MIN_EDNS_PAYLOAD);
        assert!(edns.flags().dnssec_ok);
        assert_eq!(edns.version(), 0);
        // Fresh ids: 16 queries all with the client's id would be a broken generator.
        assert!(
            (0..16)
                .map(|_| upstream_query(&query, &asked(true), None).metadata.id)
                .any(|id| id != 0x1234)
        );
    }

    #[test]
    fn only_an_answer_to_the_question_counts() {
        let query = upstream_query(&question("example.com."), &asked(true), None);
        let mut reply = Message::response(query.metadata.id, OpCode::Query);
        reply.add_query(question("EXAMPLE.com."));
        assert!(answers(&reply, &query), "case does not matter");

        let mut other_id = reply.clone();
        other_id.metadata.id = query.metadata.id.wrapping_add(1);
        assert!(!answers(&other_id, &query));

        let mut not_a_response = reply.clone();
        not_a_response.metadata.message_type = MessageType::Query;
        assert!(!answers(&not_a_response, &query));

        let mut other_name = Message::response(query.metadata.id, OpCode::Query);
        other_name.add_query(question("example.org."));
        assert!(!answers(&other_name, &query));

        let mut other_class = reply.clone();
        other_class.queries[0].set_query_class(DNSClass::CH);
        assert!(!answers(&other_class, &query));

        let empty = Message::response(query.metadata.id, OpCode::Query);
        assert!(!answers(&empty, &query), "NOERROR needs the question");
        let refused = Message::error_msg(query.metadata.id, OpCode::Query, ResponseCode::Refused);
        assert!(answers(&refused, &query), "an error may leave it out");
    }

    #[test]
    fn raw_headers_give_id_and_flags() {
        assert_eq!(RawHeader::of(&[0x12, 0x34]), None);
        assert_eq!(
            RawHeader::of(&[0x12, 0x34, 0x82, 0x00]),
            Some(RawHeader {
                id: 0x1234,
                is_response: true,
                truncated: true
            })
        );
        assert_eq!(
            RawHeader::of(&[0xab, 0xcd, 0x01, 0x00, 0x00]),
            Some(RawHeader {
                id: 0xabcd,
                is_response: false,
                truncated: false
            })
        );
    }

    #[tokio::test]
    async fn queries_beyond_the_limit_are_refused_without_asking() {
        // Port 9 of loopback (discard) is never asked: the forwarder is full.
        let forwarder = Forwarder::new(Upstreams::new(["127.0.0.1:9".parse().unwrap()])).unwrap();
        let all = u32::try_from(MAX_CONCURRENT_FORWARDS).unwrap();
        let _taken = forwarder.slots.try_acquire_many(all).unwrap();
        let relayed = forwarder
            .relay(&question("example.org."), &asked(true), None)
            .await;
        assert_eq!(relayed.answer, Answer::new(ResponseCode::Refused));
        assert!(relayed.recursion_available);
    }

    #[test]
    fn no_servers_no_forwarder_and_no_forwarding_to_itself() {
        assert!(Forwarder::new(Upstreams::default()).is_none());
        let local: SocketAddr = "10.42.0.1:53".parse().unwrap();
        let kept = Upstreams::new([
            "10.42.0.1:53".parse().unwrap(),
            "10.42.0.1:5353".parse().unwrap(),
            "192.0.2.53:53".parse().unwrap(),
        ])
        .without_loops(local);
        assert_eq!(
            kept.servers(),
            [
                "10.42.0.1:5353".parse::<SocketAddr>().unwrap(),
                "192.0.2.53:53".parse().unwrap()
            ]
        );
        let wildcard = Upstreams::new(["127.0.0.1:53".parse().unwrap()])
            .without_loops("0.0.0.0:53".parse().unwrap());
        assert!(wildcard.is_empty());
        assert_eq!(
            Upstreams::new([])
                .with_timeout(Duration::from_millis(5))
                .timeout(),
            Duration::from_millis(5)
        );
    }
}
