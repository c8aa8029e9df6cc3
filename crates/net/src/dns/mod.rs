//! The cluster DNS server that the agent runs on each node (on the bridge's gateway
//! address, port 53; pods reach it as the cluster DNS address through a DNAT rule). It
//! answers as CoreDNS' kubernetes plugin does, from plain records the agent feeds it
//! ([`DnsRecords::replace`]):
//!
//! - `<svc>.<ns>.svc.<domain>` A: the cluster IP, or one A per ready endpoint of a
//!   headless service;
//! - `<host>.<svc>.<ns>.svc.<domain>` A: an endpoint of a headless service, by hostname or
//!   (without one) by dashed address, `10-42-0-5`;
//! - `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV, for named ports: priority 0, the
//!   weight of 100 split between the records, the target's A in the additional section;
//! - `<a-b-c-d>.<ns>.pod.<domain>` A: that address, without a lookup.
//!
//! Behaviour at the edges:
//!
//! - Every TTL is 5 s, negative answers included ([`TTL_SEC`], CoreDNS' default).
//! - A name that exists but lacks the asked type (AAAA for a service, say) gets NOERROR
//!   without answers; a service's name exists while the service does, with or without
//!   endpoints. Unknown names in the cluster domain get NXDOMAIN. Both carry a synthetic
//!   SOA for the domain in the authority section, so resolvers cache them for 5 s.
//! - Names are matched without regard to case and with or without a trailing dot; answers
//!   repeat the name as it was asked.
//! - Names outside the cluster domain are REFUSED unless the server was given upstream
//!   servers ([`DnsServer::with_upstreams`]; none by default, so tests never leave the
//!   machine). With them, such a query is forwarded as CoreDNS' `forward` plugin does:
//!   the same question with a fresh random id, the client's RD and CD flags and, if the
//!   client sent EDNS, its payload size and DO flag (not its options), over UDP to the
//!   first server, over TCP if that answer is truncated, to the next server after an
//!   error or [`DEFAULT_UPSTREAM_TIMEOUT`] (per protocol). The upstream's code, records
//!   and AA/RA/AD flags go to the client under its own id, truncated for UDP like any
//!   answer. No answer from any server (or one that does not parse or does not match the
//!   question) gets SERVFAIL; more than 256 queries on their way at once get REFUSED.
//!   Nothing is cached. [`read_resolv_conf`] gives the host's resolvers, loopback stubs
//!   left out.
//! - A request with other than one question gets FORMERR, a class other than IN REFUSED
//!   (never forwarded), an opcode other than QUERY or a zone transfer NOTIMP, EDNS above
//!   version 0 BADVERS.
//!   Packets that do not parse as a DNS header are dropped; those with a header but a
//!   broken body get FORMERR. Nothing in a packet can make the server panic or stop.
//! - UDP answers larger than the client's buffer (512 bytes without EDNS) are truncated
//!   with the TC flag, so clients retry over TCP.
//!
//! hickory-server does the serving (UDP and TCP sockets, framing, EDNS payload sizes,
//! truncation, dropping non-queries); this module gives it one `RequestHandler` that
//! answers from the records instead of its zone catalog, whose zones are static files
//! or stores rather than a table swapped whole. Forwarding is ours too (hickory's
//! forwarding zone handler belongs to the catalog, and needs its resolver crate).
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::path::Path;
//! use strata_net::dns::{DnsRecords, DnsServer, Upstreams, read_resolv_conf};
//!
//! # async fn run() -> Result<(), strata_net::NetError> {
//! let records = DnsRecords::new("cluster.local");
//! // Optional: forward other names to the host's resolvers.
//! let host = read_resolv_conf(Path::new("/etc/resolv.conf"))?;
//! let server = DnsServer::bind(SocketAddr::from(([10, 42, 0, 1], 53)), records.clone())
//!     .await?
//!     .with_upstreams(Upstreams::new(host.usable));
//! tokio::spawn(server.serve());
//! // On every change of Services or Endpoints:
//! records.replace(Vec::new());
//! # Ok(())
//! # }
//! ```
//!
//! - `records`: the records and their shared, swappable table.
//! - `names`: what a query name means in the cluster domain.
//! - `answer`: the answer to one question, as pure code.
//! - `server`: the sockets and the request handler.
//! - `forward`: forwarding names outside the cluster domain to upstream servers.
//! - `resolv_conf`: the host's resolvers from a resolv.conf, as upstream servers.

mod answer;
mod forward;
mod names;
mod records;
mod resolv_conf;
mod server;

pub use answer::TTL_SEC;
pub use forward::{DEFAULT_UPSTREAM_TIMEOUT, Upstreams};
pub use records::{DnsEndpoint, DnsPort, DnsRecords, DnsService};
pub use resolv_conf::{Nameservers, RESOLV_CONF_PORT, parse_resolv_conf, read_resolv_conf};
pub use server::DnsServer;
