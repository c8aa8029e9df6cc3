//! The DNS server: hickory-server's UDP and TCP serving with a request handler that checks
//! the question and answers it from the current [`DnsRecords`], or has the upstream
//! servers answer it when it is outside the cluster domain and there are any.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Metadata, OpCode, Query, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

use super::answer::{Answer, answer};
use super::forward::{Forwarder, Upstreams};
use super::names::{self, Target};
use super::records::DnsRecords;
use crate::NetError;

/// How long a TCP connection may stay idle between queries.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many responses may wait to be written on one TCP connection.
const TCP_RESPONSE_BUFFER: usize = 32;

/// How often to look for a port free for both UDP and TCP when asked for port 0.
const FREE_PORT_ATTEMPTS: usize = 16;

/// The cluster DNS server of a node, bound but not yet serving.
#[derive(Debug)]
pub struct DnsServer {
    udp: UdpSocket,
    tcp: TcpListener,
    local_addr: SocketAddr,
    records: DnsRecords,
    upstreams: Upstreams,
}

impl DnsServer {
    /// Binds UDP and TCP on `addr` (port 0: a free port, the same for both).
    pub async fn bind(addr: SocketAddr, records: DnsRecords) -> Result<Self, NetError> {
        let attempts = if addr.port() == 0 {
            FREE_PORT_ATTEMPTS
        } else {
            1
        };
        let mut last = None;
        for _ in 0..attempts {
            let udp = UdpSocket::bind(addr)
                .await
                .map_err(|source| bind_failed("UDP", addr, source))?;
            let port_addr = udp
                .local_addr()
                .map_err(|source| bind_failed("UDP", addr, source))?;
            match TcpListener::bind(port_addr).await {
                Ok(tcp) => {
                    return Ok(Self {
                        udp,
                        tcp,
                        local_addr: port_addr,
                        records,
                        upstreams: Upstreams::default(),
                    });
                }
                // Another socket holds the TCP port that UDP got: try another port.
                Err(source) if source.kind() == io::ErrorKind::AddrInUse && addr.port() == 0 => {
                    last = Some(source);
                }
                Err(source) => return Err(bind_failed("TCP", port_addr, source)),
            }
        }
        let source = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse));
        Err(bind_failed("TCP", addr, source))
    }

    /// Forwards names outside the cluster domain to `upstreams` instead of refusing them
    /// (empty: refuses them, as without this call). Servers that are this server itself are
    /// left out (logged), since the queries would go round in a loop.
    #[must_use]
    pub fn with_upstreams(mut self, upstreams: Upstreams) -> Self {
        self.upstreams = upstreams.without_loops(self.local_addr);
        self
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until the future is dropped (which stops the serving tasks). Each query is
    /// answered from the records as they are when it arrives, or forwarded.
    pub async fn serve(self) {
        let mut server = Server::new(Handler {
            records: self.records,
            forwarder: Forwarder::new(self.upstreams),
        });
        server.register_socket(self.udp);
        server.register_listener(self.tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_BUFFER);
        // The tasks only end if a socket fails for good.
        if let Err(error) = server.block_until_done().await {
            tracing::warn!(%error, "the DNS server stopped");
        }
    }
}

fn bind_failed(protocol: &'static str, addr: SocketAddr, source: io::Error) -> NetError {
    NetError::DnsBind {
        protocol,
        addr,
        source,
    }
}

/// Answers each request from the records, or forwards it.
struct Handler {
    records: DnsRecords,
    /// `None`: names outside the cluster domain are refused.
    forwarder: Option<Forwarder>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512));
            edns.set_version(0);
            edns
        });
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let outcome = match check(request) {
            Err(code) => Answer::new(code),
            Ok(query) => match self.forwarder_for(query) {
                Some(forwarder) => {
                    let relayed = forwarder
                        .relay(query, &request.metadata, request.edns.as_ref())
                        .await;
                    metadata.authoritative = relayed.authoritative;
                    metadata.recursion_available = relayed.recursion_available;
                    metadata.authentic_data = relayed.authentic_data;
                    relayed.answer
                }
                None => {
                    let outcome =
                        answer(&self.records.snapshot(), query.name(), query.query_type());
                    // Answers from the cluster domain are authoritative; refusals are not.
                    metadata.authoritative =
                        matches!(outcome.code, ResponseCode::NoError | ResponseCode::NXDomain);
                    outcome
                }
            },
        };
        metadata.response_code = outcome.code;
        let mut edns = edns;
        if let Some(edns) = edns.as_mut() {
            edns.set_rcode_high(outcome.code.high());
        }
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            metadata,
            outcome.answers.iter(),
            outcome.authorities.iter(),
            [],
            outcome.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(%error, "cannot send a DNS response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

impl Handler {
    /// The forwarder that answers `query`: `Some` when there are upstream servers and the
    /// name is outside the cluster domain (or the domain is no valid name).
    fn forwarder_for(&self, query: &Query) -> Option<&Forwarder> {
        let forwarder = self.forwarder.as_ref()?;
        let table = self.records.snapshot();
        let outside = names::parse(query.name(), table.zone.as_ref()) == Target::Outside;
        outside.then_some(forwarder)
    }
}

/// The one question of a request that can be answered, or the code to refuse it with:
/// FORMERR unless exactly one question, NOTIMP for other opcodes and zone transfers,
/// REFUSED for classes other than IN, BADVERS for EDNS versions above 0. These hold for
/// forwarded names too: only standard IN queries go upstream.
fn check(request: &Request) -> Result<&Query, ResponseCode> {
    if request.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
        return Err(ResponseCode::BADVERS);
    }
    if request.metadata.op_code != OpCode::Query {
        return Err(ResponseCode::NotImp);
    }
    let [query] = request.queries.queries() else {
        return Err(ResponseCode::FormErr);
    };
    if query.query_class() != DNSClass::IN {
        return Err(ResponseCode::Refused);
    }
    let qtype = query.query_type();
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return Err(ResponseCode::NotImp);
    }
    Ok(query.original())
}
