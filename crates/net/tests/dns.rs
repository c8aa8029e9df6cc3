//! The cluster DNS server on loopback: a real `DnsServer` on 127.0.0.1 and a free port,
//! asked over UDP and TCP with queries built by hickory-proto and sent as raw packets
//! (UDP datagrams; TCP with its two-byte length prefix), so the wire format is what is
//! tested. No root needed. Forwarding is tested against upstream servers on 127.0.0.1
//! too (another `DnsServer`, or a scripted UDP socket): nothing leaves the machine.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use hickory_server::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use strata_net::dns::{
    DnsEndpoint, DnsPort, DnsRecords, DnsServer, DnsService, TTL_SEC, Upstreams,
};
use strata_net::services::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// A server on loopback; stops when dropped.
struct Running {
    addr: SocketAddr,
    records: DnsRecords,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Running {
    start_with("cluster.local", services(), Upstreams::default()).await
}

async fn start_with(domain: &str, services: Vec<DnsService>, upstreams: Upstreams) -> Running {
    let records = DnsRecords::new(domain);
    records.replace(services);
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), records.clone())
        .await
        .unwrap()
        .with_upstreams(upstreams);
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    Running {
        addr,
        records,
        task: tokio::spawn(server.serve()),
    }
}

fn services() -> Vec<DnsService> {
    vec![
        DnsService {
            namespace: "default".into(),
            name: "web".into(),
            cluster_ip: Some(Ipv4Addr::new(10, 43, 0, 20)),
            ports: vec![DnsPort {
                name: "http".into(),
                protocol: Protocol::Tcp,
                port: 80,
            }],
            endpoints: vec![DnsEndpoint {
                ip: Ipv4Addr::new(10, 42, 0, 9),
                hostname: None,
            }],
        },
        DnsService {
            namespace: "default".into(),
            name: "db".into(),
            cluster_ip: None,
            ports: vec![DnsPort {
                name: "pg".into(),
                protocol: Protocol::Tcp,
                port: 5432,
            }],
            endpoints: vec![
                DnsEndpoint {
                    ip: Ipv4Addr::new(10, 42, 0, 5),
                    hostname: Some("db-0".into()),
                },
                DnsEndpoint {
                    ip: Ipv4Addr::new(10, 42, 0, 6),
                    hostname: Some("db-1".into()),
                },
            ],
        },
    ]
}

fn question(name: &str, qtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    message
}

async fn udp_raw(addr: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(packet, addr).await.unwrap();
    let mut buffer = vec![0; 65535];
    let (len, _) = timeout(Duration::from_millis(500), socket.recv_from(&mut buffer))
        .await
        .ok()?
        .unwrap();
    buffer.truncate(len);
    Some(buffer)
}

async fn udp(addr: SocketAddr, message: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&message.to_vec().unwrap(), addr)
        .await
        .unwrap();
    let mut buffer = vec![0; 65535];
    let (len, _) = timeout(WAIT, socket.recv_from(&mut buffer))
        .await
        .expect("no UDP answer")
        .unwrap();
    let response = Message::from_vec(&buffer[..len]).unwrap();
    assert_eq!(response.metadata.id, message.metadata.id);
    response
}

async fn tcp(addr: SocketAddr, message: &Message) -> Message {
    let mut stream = timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let bytes = message.to_vec().unwrap();
    let len = u16::try_from(bytes.len()).unwrap();
    stream.write_all(&len.to_be_bytes()).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = timeout(WAIT, stream.read_u16())
        .await
        .expect("no TCP answer")
        .unwrap();
    let mut buffer = vec![0; usize::from(len)];
    timeout(WAIT, stream.read_exact(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let response = Message::from_vec(&buffer).unwrap();
    assert_eq!(response.metadata.id, message.metadata.id);
    response
}

fn addresses(response: &Message) -> Vec<Ipv4Addr> {
    let mut found: Vec<Ipv4Addr> = response
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect();
    found.sort();
    found
}

fn has_soa(response: &Message) -> bool {
    response
        .authorities
        .iter()
        .any(|record| record.record_type() == RecordType::SOA && record.ttl == TTL_SEC)
}

#[tokio::test]
async fn a_cluster_ip_service_over_udp_and_tcp() {
    let server = start().await;
    let ask = question("web.default.svc.cluster.local.", RecordType::A);
    for response in [udp(server.addr, &ask).await, tcp(server.addr, &ask).await] {
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert!(response.metadata.authoritative);
        assert_eq!(addresses(&response), [Ipv4Addr::new(10, 43, 0, 20)]);
        assert_eq!(response.answers[0].ttl, TTL_SEC);
    }
    // Case and a missing trailing dot do not matter; AAAA is NODATA, not NXDOMAIN.
    let upper = udp(
        server.addr,
        &question("WEB.default.svc.Cluster.Local", RecordType::A),
    )
    .await;
    assert_eq!(addresses(&upper), [Ipv4Addr::new(10, 43, 0, 20)]);
    let aaaa = udp(
        server.addr,
        &question("web.default.svc.cluster.local.", RecordType::AAAA),
    )
    .await;
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());
    assert!(has_soa(&aaaa));
}

#[tokio::test]
async fn a_headless_service_lists_its_endpoints() {
    let server = start().await;
    let all = udp(
        server.addr,
        &question("db.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(
        addresses(&all),
        [Ipv4Addr::new(10, 42, 0, 5), Ipv4Addr::new(10, 42, 0, 6)]
    );
    let one = tcp(
        server.addr,
        &question("db-1.db.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(addresses(&one), [Ipv4Addr::new(10, 42, 0, 6)]);
}

#[tokio::test]
async fn srv_for_a_named_port_with_additional_a() {
    let server = start().await;
    let ask = question("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV);
    let response = udp(server.addr, &ask).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    let [record] = response.answers.as_slice() else {
        panic!("{:?}", response.answers)
    };
    let RData::SRV(srv) = &record.data else {
        panic!("{record:?}")
    };
    assert_eq!((srv.priority, srv.weight, srv.port), (0, 100, 80));
    assert_eq!(srv.target.to_string(), "web.default.svc.cluster.local.");
    let additional: Vec<(String, RData)> = response
        .additionals
        .iter()
        .map(|record| (record.name.to_string(), record.data.clone()))
        .collect();
    assert_eq!(
        additional,
        [(
            "web.default.svc.cluster.local.".to_owned(),
            RData::A(A(Ipv4Addr::new(10, 43, 0, 20)))
        )]
    );
    let headless = question("_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV);
    let response = tcp(server.addr, &headless).await;
    assert_eq!(response.answers.len(), 2);
    assert_eq!(response.additionals.len(), 2);
}

#[tokio::test]
async fn a_pod_name_resolves_to_its_address() {
    let server = start().await;
    let ask = question("10-42-0-7.default.pod.cluster.local.", RecordType::A);
    let response = udp(server.addr, &ask).await;
    assert_eq!(addresses(&response), [Ipv4Addr::new(10, 42, 0, 7)]);
}

#[tokio::test]
async fn an_unknown_service_is_nxdomain_with_soa() {
    let server = start().await;
    let ask = question("nope.default.svc.cluster.local.", RecordType::A);
    for response in [udp(server.addr, &ask).await, tcp(server.addr, &ask).await] {
        assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
        assert!(response.answers.is_empty());
        assert!(has_soa(&response), "{response:?}");
    }
}

#[tokio::test]
async fn names_outside_the_cluster_are_refused() {
    let server = start().await;
    let response = udp(server.addr, &question("example.com.", RecordType::A)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::Refused);
    assert!(response.answers.is_empty());
    assert!(!response.metadata.authoritative);
}

#[tokio::test]
async fn replace_takes_effect_for_later_queries() {
    let server = start().await;
    let ask = question("web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        addresses(&udp(server.addr, &ask).await),
        [Ipv4Addr::new(10, 43, 0, 20)]
    );
    let mut changed = services();
    changed[0].cluster_ip = Some(Ipv4Addr::new(10, 43, 0, 21));
    server.records.replace(changed);
    assert_eq!(
        addresses(&udp(server.addr, &ask).await),
        [Ipv4Addr::new(10, 43, 0, 21)]
    );
    server.records.replace(Vec::new());
    let gone = tcp(server.addr, &ask).await;
    assert_eq!(gone.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn garbage_does_not_stop_the_server() {
    let server = start().await;
    // Too short for a header: dropped without an answer.
    assert_eq!(udp_raw(server.addr, b"\x01\x02\x03").await, None);
    // A header that promises a question that is not there: FORMERR.
    let broken = [0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    let reply = udp_raw(server.addr, &broken).await.expect("no FORMERR");
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(reply.metadata.id, 0x1234);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    // A question whose name points at itself.
    let looping = [
        0x12, 0x35, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1,
    ];
    if let Some(reply) = udp_raw(server.addr, &looping).await {
        let reply = Message::from_vec(&reply).unwrap();
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }
    // Random bytes over TCP, then the connection closes.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(&[0x00, 0x05, 0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    drop(stream);
    let ask = question("web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        addresses(&udp(server.addr, &ask).await),
        [Ipv4Addr::new(10, 43, 0, 20)]
    );
    assert_eq!(
        addresses(&tcp(server.addr, &ask).await),
        [Ipv4Addr::new(10, 43, 0, 20)]
    );
}

#[tokio::test]
async fn malformed_questions_get_error_codes() {
    let server = start().await;
    let mut two = question("web.default.svc.cluster.local.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("db.default.svc.cluster.local.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        udp(server.addr, &two).await.metadata.response_code,
        ResponseCode::FormErr
    );
    let mut chaos = question("version.bind.", RecordType::TXT);
    chaos.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(
        udp(server.addr, &chaos).await.metadata.response_code,
        ResponseCode::Refused
    );
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let server = start().await;
    let endpoints: Vec<DnsEndpoint> = (1..=100)
        .map(|i| DnsEndpoint {
            ip: Ipv4Addr::new(10, 42, 1, i),
            hostname: None,
        })
        .collect();
    server.records.replace(vec![DnsService {
        namespace: "default".into(),
        name: "big".into(),
        cluster_ip: None,
        ports: Vec::new(),
        endpoints,
    }]);
    let ask = question("big.default.svc.cluster.local.", RecordType::A);
    let small = udp(server.addr, &ask).await;
    assert!(small.metadata.truncation);
    assert!(small.answers.len() < 100);
    assert_eq!(tcp(server.addr, &ask).await.answers.len(), 100);
    // With EDNS and a large buffer, UDP carries them all.
    let mut edns_ask = ask.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns_ask.set_edns(edns);
    let large = udp(server.addr, &edns_ask).await;
    assert!(!large.metadata.truncation);
    assert_eq!(large.answers.len(), 100);
}

#[tokio::test]
async fn serving_stops_when_the_future_is_dropped() {
    let records = DnsRecords::new("cluster.local");
    records.replace(services());
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), records)
        .await
        .unwrap();
    let addr = server.local_addr();
    let task = tokio::spawn(server.serve());
    let ask = question("web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(
        addresses(&udp(addr, &ask).await),
        [Ipv4Addr::new(10, 43, 0, 20)]
    );
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    // The serving tasks are aborted with the future: nothing answers any more.
    assert_eq!(udp_raw(addr, &ask.to_vec().unwrap()).await, None);
    // The listener closes once the runtime has dropped the aborted tasks.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the TCP listener is still open");
}

/// How long a forwarding server waits for an upstream that is meant to fail. Upstreams
/// that answer get the default of 2 s, so a loaded machine does not fail the tests.
const FAILING_UPSTREAM_TIMEOUT: Duration = Duration::from_millis(200);

/// The services of the "upstream" server, authoritative for `example.test`: one with a
/// cluster IP and a headless one whose answer does not fit in 512 bytes.
fn upstream_services() -> Vec<DnsService> {
    vec![
        DnsService {
            namespace: "shop".into(),
            name: "web".into(),
            cluster_ip: Some(Ipv4Addr::new(10, 99, 0, 7)),
            ports: Vec::new(),
            endpoints: Vec::new(),
        },
        DnsService {
            namespace: "shop".into(),
            name: "big".into(),
            cluster_ip: None,
            ports: Vec::new(),
            endpoints: (1..=100)
                .map(|i| DnsEndpoint {
                    ip: Ipv4Addr::new(10, 99, 1, i),
                    hostname: None,
                })
                .collect(),
        },
    ]
}

/// An upstream `DnsServer` for `example.test` and a cluster server forwarding to it.
async fn start_forwarding() -> (Running, Running) {
    let upstream = start_with("example.test", upstream_services(), Upstreams::default()).await;
    let cluster = start_with("cluster.local", services(), Upstreams::new([upstream.addr])).await;
    (upstream, cluster)
}

/// A UDP socket on loopback standing in for an upstream server: every datagram it gets
/// goes to `queries`, and `reply` makes the one sent back (`None`: it stays silent).
struct Scripted {
    addr: SocketAddr,
    queries: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    task: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn scripted(reply: fn(&Message) -> Option<Vec<u8>>) -> Scripted {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (sender, queries) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut buffer = vec![0; 65535];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
                return;
            };
            let datagram = buffer[..len].to_vec();
            let answer = Message::from_vec(&datagram)
                .ok()
                .and_then(|query| reply(&query));
            let _ = sender.send(datagram);
            if let Some(answer) = answer {
                let _ = socket.send_to(&answer, from).await;
            }
        }
    });
    Scripted {
        addr,
        queries,
        task,
    }
}

/// An answer to `query` with one A record, 192.0.2.1.
fn one_address(query: &Message) -> Option<Vec<u8>> {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_queries(query.queries.clone());
    let name = query.queries[0].name().clone();
    reply.add_answer(Record::from_rdata(
        name,
        60,
        RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
    ));
    Some(reply.to_vec().unwrap())
}

/// A header with the query's id that promises an answer, then bytes that are none.
fn garbage(query: &Message) -> Option<Vec<u8>> {
    let mut bytes = query.metadata.id.to_be_bytes().to_vec();
    bytes.extend([0x81, 0x80, 0, 0, 0, 1, 0, 0, 0, 0, 0xc0, 0xff, 0xff, 0xff]);
    Some(bytes)
}

/// A well-formed answer, but to another question.
fn other_question(query: &Message) -> Option<Vec<u8>> {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.add_query(Query::query(
        Name::from_ascii("other.example.").unwrap(),
        RecordType::A,
    ));
    Some(reply.to_vec().unwrap())
}

#[tokio::test]
async fn outside_names_are_answered_by_the_upstream() {
    let (_upstream, cluster) = start_forwarding().await;
    let ask = question("web.shop.svc.example.test.", RecordType::A);
    for response in [udp(cluster.addr, &ask).await, tcp(cluster.addr, &ask).await] {
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addresses(&response), [Ipv4Addr::new(10, 99, 0, 7)]);
        // The upstream is authoritative for example.test, and the flag is relayed.
        assert!(response.metadata.authoritative);
        assert_eq!(response.queries, ask.queries);
    }
    // The upstream's NXDOMAIN comes back with its SOA.
    let missing = udp(
        cluster.addr,
        &question("nope.shop.svc.example.test.", RecordType::A),
    )
    .await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    let soa: Vec<String> = missing
        .authorities
        .iter()
        .filter(|record| record.record_type() == RecordType::SOA)
        .map(|record| record.name.to_string())
        .collect();
    assert_eq!(soa, ["example.test."]);
    // The upstream refuses what it does not serve, and so does the client get it.
    let elsewhere = udp(cluster.addr, &question("example.com.", RecordType::A)).await;
    assert_eq!(elsewhere.metadata.response_code, ResponseCode::Refused);
    // Cluster names are still answered here, with authority.
    let local = udp(
        cluster.addr,
        &question("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(addresses(&local), [Ipv4Addr::new(10, 43, 0, 20)]);
    assert!(local.metadata.authoritative);
    let unknown = tcp(
        cluster.addr,
        &question("nope.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn forwarded_queries_carry_the_question_with_a_fresh_id() {
    let mut upstream = scripted(one_address).await;
    let cluster = start_with("cluster.local", services(), Upstreams::new([upstream.addr])).await;
    let mut ids = Vec::new();
    for (recursion_desired, with_edns) in [(true, false), (false, true), (true, true)] {
        let mut ask = question("Www.Example.ORG.", RecordType::A);
        ask.metadata.id = 0x4242;
        ask.metadata.recursion_desired = recursion_desired;
        if with_edns {
            let mut edns = Edns::new();
            edns.set_max_payload(1232);
            ask.set_edns(edns);
        }
        let response = udp(cluster.addr, &ask).await;
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert_eq!(addresses(&response), [Ipv4Addr::new(192, 0, 2, 1)]);
        assert!(response.metadata.recursion_available);
        assert!(!response.metadata.authoritative);
        assert_eq!(response.metadata.recursion_desired, recursion_desired);
        assert_eq!(response.edns.is_some(), with_edns);
        let sent = timeout(WAIT, upstream.queries.recv())
            .await
            .unwrap()
            .unwrap();
        let sent = Message::from_vec(&sent).unwrap();
        assert_eq!(
            sent.queries, ask.queries,
            "the question as asked, case kept"
        );
        assert_eq!(sent.metadata.recursion_desired, recursion_desired);
        assert_eq!(
            sent.edns.as_ref().map(Edns::max_payload),
            with_edns.then_some(1232)
        );
        ids.push(sent.metadata.id);
    }
    // Each id is random: all three equal to the client's would be a broken generator.
    assert!(ids.iter().any(|&id| id != 0x4242), "{ids:?}");
}

#[tokio::test]
async fn a_silent_upstream_gets_servfail_and_the_next_one_is_asked() {
    let silent = scripted(|_| None).await;
    let alone = start_with(
        "cluster.local",
        services(),
        Upstreams::new([silent.addr]).with_timeout(FAILING_UPSTREAM_TIMEOUT),
    )
    .await;
    let ask = question("www.example.org.", RecordType::A);
    for response in [udp(alone.addr, &ask).await, tcp(alone.addr, &ask).await] {
        assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
        assert!(response.answers.is_empty());
        assert!(!response.metadata.authoritative);
    }
    // Cluster names do not wait for the upstream.
    let local = udp(
        alone.addr,
        &question("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(addresses(&local), [Ipv4Addr::new(10, 43, 0, 20)]);

    let answering = scripted(one_address).await;
    let with_fallback = start_with(
        "cluster.local",
        services(),
        Upstreams::new([silent.addr, answering.addr]).with_timeout(Duration::from_secs(1)),
    )
    .await;
    let response = udp(with_fallback.addr, &ask).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&response), [Ipv4Addr::new(192, 0, 2, 1)]);
}

#[tokio::test]
async fn broken_upstream_answers_get_servfail() {
    for reply in [garbage, other_question] {
        let upstream = scripted(reply).await;
        let cluster = start_with(
            "cluster.local",
            services(),
            Upstreams::new([upstream.addr]).with_timeout(FAILING_UPSTREAM_TIMEOUT),
        )
        .await;
        let response = udp(cluster.addr, &question("www.example.org.", RecordType::A)).await;
        assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
        assert!(response.answers.is_empty());
        // And the server keeps serving.
        let local = tcp(
            cluster.addr,
            &question("web.default.svc.cluster.local.", RecordType::A),
        )
        .await;
        assert_eq!(addresses(&local), [Ipv4Addr::new(10, 43, 0, 20)]);
    }
}

#[tokio::test]
async fn a_truncated_upstream_answer_is_asked_again_over_tcp() {
    let (_upstream, cluster) = start_forwarding().await;
    // Without EDNS the upstream's UDP answer is cut at 512 bytes with TC; the whole one
    // comes over TCP and reaches a TCP client whole.
    let ask = question("big.shop.svc.example.test.", RecordType::A);
    let whole = tcp(cluster.addr, &ask).await;
    assert_eq!(whole.metadata.response_code, ResponseCode::NoError);
    assert!(!whole.metadata.truncation);
    assert_eq!(whole.answers.len(), 100);
    // A UDP client without EDNS gets it truncated again, so it asks over TCP itself.
    let small = udp(cluster.addr, &ask).await;
    assert!(small.metadata.truncation);
    assert!(small.answers.len() < 100);
    // With EDNS and a large buffer both hops carry it all over UDP.
    let mut edns_ask = ask.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    edns_ask.set_edns(edns);
    let large = udp(cluster.addr, &edns_ask).await;
    assert!(!large.metadata.truncation);
    assert_eq!(large.answers.len(), 100);
}

#[tokio::test]
async fn without_upstreams_outside_names_are_refused() {
    let cluster = start_with("cluster.local", services(), Upstreams::new([])).await;
    let response = udp(
        cluster.addr,
        &question("web.shop.svc.example.test.", RecordType::A),
    )
    .await;
    assert_eq!(response.metadata.response_code, ResponseCode::Refused);
    assert!(!response.metadata.recursion_available);
}
