//! Service load balancing on real nftables (as root): a bridge and two sandboxes of the
//! test's own, a cluster IP and a node port in a range of the test's own, reached from a
//! pod, from the pod behind it (hairpin) and from the host; a service without endpoints
//! refuses connections; a service with client-IP affinity keeps a client on one of its
//! two endpoints. The table, bridge and namespaces go when the test ends.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use strata_net::services::{self, Endpoint, HostPort, Protocol, ProxyConfig, Ruleset, ServicePort};
use strata_net::{PodNetwork, PodNetworkConfig};
use strata_testkit::netns::TestNetns;

/// Removes the test's table and bridge however the test ends.
struct Cleanup {
    table: String,
    bridge: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = services::remove(&self.table);
        let _ = std::process::Command::new("/bin/busybox")
            .args(["ip", "link", "del", &self.bridge])
            .output();
    }
}

fn nft_missing(test: &str) -> bool {
    let found = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        println!("SKIP {test}: nft is missing (apt-get install nftables)");
    }
    !found
}

/// Answers every connection on `port` in `netns` with the text `name`, for `count`
/// connections; returns the peers it saw.
fn serve(
    netns: &TestNetns,
    ip: Ipv4Addr,
    port: u16,
    name: &'static str,
    count: usize,
) -> std::thread::JoinHandle<Vec<Ipv4Addr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = netns.path().to_path_buf();
    let handle = std::thread::spawn(move || {
        let file = std::fs::File::open(path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind((ip, port)).unwrap();
        tx.send(()).unwrap();
        let mut peers = Vec::new();
        for _ in 0..count {
            let (mut stream, peer) = listener.accept().unwrap();
            stream.write_all(name.as_bytes()).unwrap();
            if let std::net::IpAddr::V4(ip) = peer.ip() {
                peers.push(ip);
            }
        }
        peers
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    handle
}

fn nft_list(table: &str) -> String {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn fetch(target: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_ips_and_node_ports_reach_endpoints_from_pods_and_the_host() {
    let test = "cluster_ips_and_node_ports_reach_endpoints_from_pods_and_the_host";
    if !strata_testkit::require_root(test) || nft_missing(test) {
        return;
    }
    let id = std::process::id() % 100_000;
    let cleanup = Cleanup {
        table: format!("strata_test_{id}"),
        bridge: format!("stp{id}"),
    };
    let state = tempfile::tempdir().unwrap();
    let octet = 100 + std::process::id() % 100;
    let network = PodNetwork::setup(PodNetworkConfig {
        bridge: cleanup.bridge.clone(),
        subnet: format!("10.253.{octet}.0/24").parse().unwrap(),
        state_dir: state.path().to_path_buf(),
    })
    .await
    .unwrap();
    // The test's service range, routed onto the bridge.
    let service_range = format!("10.254.{octet}.0/24").parse().unwrap();
    network.route_to_bridge(service_range).await.unwrap();
    let (client, server) = (TestNetns::new(), TestNetns::new());
    let client_ip = network.attach("client", client.path()).await.unwrap().ip;
    let server_ip = network.attach("server", server.path()).await.unwrap().ip;
    let other = TestNetns::new();
    let other_ip = network.attach("other", other.path()).await.unwrap().ip;
    let cluster_ip = Ipv4Addr::new(10, 254, octet as u8, 20);
    let empty_ip = Ipv4Addr::new(10, 254, octet as u8, 30);
    let sticky_ip = Ipv4Addr::new(10, 254, octet as u8, 40);
    let node_port = 30000 + (id % 2000) as u16;
    let config = ProxyConfig {
        table: cleanup.table.clone(),
        bridge: cleanup.bridge.clone(),
        cluster_cidr: format!("10.253.{octet}.0/24").parse().unwrap(),
        node_link: None,
    };
    let ports = [
        ServicePort {
            name: "default/web:http".into(),
            cluster_ip: Some(cluster_ip),
            port: 80,
            protocol: Protocol::Tcp,
            node_port: Some(node_port),
            endpoints: vec![Endpoint {
                ip: server_ip,
                port: 8080,
            }],
            affinity_seconds: None,
        },
        ServicePort {
            name: "default/empty:http".into(),
            cluster_ip: Some(empty_ip),
            port: 80,
            protocol: Protocol::Tcp,
            node_port: None,
            endpoints: vec![],
            affinity_seconds: None,
        },
        ServicePort {
            name: "default/sticky:http".into(),
            cluster_ip: Some(sticky_ip),
            port: 80,
            protocol: Protocol::Tcp,
            node_port: None,
            endpoints: vec![
                Endpoint {
                    ip: server_ip,
                    port: 9090,
                },
                Endpoint {
                    ip: other_ip,
                    port: 9090,
                },
            ],
            affinity_seconds: Some(60),
        },
    ];
    // The other pod's port 7070 is also host port `node_port + 1` on the node.
    let host_port = node_port + 1;
    let host_ports = [HostPort {
        protocol: Protocol::Tcp,
        host_ip: None,
        port: host_port,
        pod_ip: other_ip,
        container_port: 7070,
    }];
    let first = Ruleset::new(&config, &ports, &host_ports);
    services::apply(&first.script()).unwrap();

    // A host port: from the host and from a pod, to one of the node's addresses.
    let gateway = network.gateway();
    let served = serve(&other, other_ip, 7070, "host port", 2);
    let via_host_port = SocketAddr::from((gateway, host_port));
    assert_eq!(fetch(via_host_port).unwrap(), "host port");
    assert_eq!(
        client.run(move || fetch(via_host_port)).unwrap(),
        "host port"
    );
    let peers = served.join().unwrap();
    assert_eq!(peers[1], client_ip, "no NAT for a pod client");
    // Loopback is left alone: nothing listens there, so it is refused.
    let loopback = SocketAddr::from((Ipv4Addr::LOCALHOST, host_port));
    assert_eq!(
        fetch(loopback).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );

    let served = serve(&server, server_ip, 8080, "web", 4);
    // Pod to service: DNAT to the endpoint, the client's own address preserved.
    let target = SocketAddr::from((cluster_ip, 80));
    assert_eq!(client.run(move || fetch(target)).unwrap(), "web");
    // Hairpin: the endpoint reaches itself through its service.
    assert_eq!(server.run(move || fetch(target)).unwrap(), "web");
    // Host to service, and host to the node port on one of its addresses.
    assert_eq!(fetch(target).unwrap(), "web");
    assert_eq!(
        fetch(SocketAddr::from((gateway, node_port))).unwrap(),
        "web"
    );
    let peers = served.join().unwrap();
    assert_eq!(peers[0], client_ip, "no NAT for a pod client");
    assert_ne!(peers[1], server_ip, "a hairpin connection is masqueraded");

    // No endpoints: refused at once, from a pod and from the host.
    let empty = SocketAddr::from((empty_ip, 80));
    let refused = client.run(move || fetch(empty)).unwrap_err();
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{refused:?}"
    );
    assert_eq!(
        fetch(empty).unwrap_err().kind(),
        std::io::ErrorKind::ConnectionRefused
    );

    // Client-IP affinity: of two endpoints, a client keeps going to the one it got first
    // (a random pick each time would split ten calls with all but certainty).
    let (one, two) = (
        serve(&server, server_ip, 9090, "one", 10),
        serve(&other, other_ip, 9090, "two", 10),
    );
    let sticky = SocketAddr::from((sticky_ip, 80));
    let answers: Vec<String> = (0..10)
        .map(|_| client.run(move || fetch(sticky)).unwrap())
        .collect();
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "affinity broken: {answers:?}"
    );
    // The endpoint never chosen takes its ten calls straight, so that it ends.
    let unused = if answers[0] == "one" {
        SocketAddr::from((other_ip, 9090))
    } else {
        SocketAddr::from((server_ip, 9090))
    };
    for _ in 0..10 {
        client.run(move || fetch(unused)).unwrap();
    }
    one.join().unwrap();
    two.join().unwrap();

    // An update in one go: the service moves to a new port and the old one is gone;
    // the host port goes. The client's affinity to the sticky service survives.
    let mut moved = ports.clone();
    moved[0].port = 81;
    let second = Ruleset::new(&config, &moved, &[]);
    let update = second.update_from(&first);
    assert!(!update.contains("delete table"), "{update}");
    services::apply(&update).unwrap();
    let served = serve(&server, server_ip, 8080, "moved", 1);
    let new_target = SocketAddr::from((cluster_ip, 81));
    assert_eq!(client.run(move || fetch(new_target)).unwrap(), "moved");
    served.join().unwrap();
    let old_target = SocketAddr::from((cluster_ip, 80));
    assert!(client.run(move || fetch(old_target)).is_err());
    assert!(fetch(via_host_port).is_err(), "the host port is gone");
    let listed = nft_list(&config.table);
    assert!(
        listed.contains(&format!("{client_ip} timeout"))
            || listed.contains(&format!("{client_ip} expires")),
        "the client's affinity was lost:\n{listed}"
    );

    network.detach("client").await.unwrap();
    network.detach("server").await.unwrap();
    network.detach("other").await.unwrap();
    drop(cleanup);
}

/// The table as nft lists it, made comparable: handles and the table's name dropped, map
/// and set elements sorted, rules numbered within their chain, the whole sorted.
fn normalized(table: &str) -> Vec<String> {
    let out = std::process::Command::new("nft")
        .args(["-j", "list", "table", "ip", table])
        .output()
        .unwrap();
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut positions = std::collections::HashMap::<String, usize>::new();
    let mut items: Vec<String> = listing["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|item| item.get("metainfo").is_none())
        .map(|item| {
            let mut item = item.clone();
            let (kind, body) = item.as_object_mut().unwrap().iter_mut().next().unwrap();
            let body = body.as_object_mut().unwrap();
            body.remove("handle");
            if kind == "table" {
                body.remove("name");
            } else {
                body.insert("table".into(), "T".into());
            }
            if let Some(serde_json::Value::Array(elements)) = body.get_mut("elem") {
                elements.sort_by_key(|e| e.to_string());
            }
            if kind == "rule" {
                let chain = body["chain"].as_str().unwrap().to_string();
                let position = positions.entry(chain).or_default();
                body.insert("position".into(), (*position).into());
                *position += 1;
            }
            item.to_string()
        })
        .collect();
    items.sort();
    items
}

/// A small deterministic generator, so a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 33) % n
    }
}

#[test]
fn updates_leave_the_same_table_as_a_rewrite() {
    let test = "updates_leave_the_same_table_as_a_rewrite";
    if !strata_testkit::require_root(test) || nft_missing(test) {
        return;
    }
    let id = std::process::id() % 100_000;
    let (updated, rewritten) = (
        Cleanup {
            table: format!("strata_upd_{id}"),
            bridge: format!("stu{id}"),
        },
        Cleanup {
            table: format!("strata_rew_{id}"),
            bridge: format!("stu{id}"),
        },
    );
    let config = |table: &str| ProxyConfig {
        table: table.into(),
        bridge: updated.bridge.clone(),
        cluster_cidr: "10.253.0.0/16".parse().unwrap(),
        node_link: Some("lo".into()),
    };
    let mut random = Lcg(u64::from(id));
    let mut previous: Option<Ruleset> = None;
    for step in 0..40 {
        // Up to six services, each with 0–3 endpoints from a pool of five pods, some
        // with node ports and affinity; up to three host ports that may collide.
        let present: Vec<u64> = (0..6).filter(|_| random.below(4) != 0).collect();
        let ports: Vec<ServicePort> = present
            .into_iter()
            .map(|i| ServicePort {
                name: format!("default/svc{i}:http"),
                cluster_ip: Some(Ipv4Addr::new(10, 254, 0, 10 + i as u8)),
                port: 80 + random.below(2) as u16,
                protocol: if random.below(5) == 0 {
                    Protocol::Udp
                } else {
                    Protocol::Tcp
                },
                node_port: (random.below(2) == 0).then(|| 30_000 + i as u16),
                endpoints: (0..random.below(4))
                    .map(|_| Endpoint {
                        ip: Ipv4Addr::new(10, 253, 0, 2 + random.below(5) as u8),
                        port: 8080,
                    })
                    .collect(),
                affinity_seconds: (random.below(3) == 0).then(|| 30 + random.below(2) as u32),
            })
            .collect();
        let host_ports: Vec<HostPort> = (0..random.below(4))
            .map(|_| HostPort {
                protocol: Protocol::Tcp,
                host_ip: (random.below(2) == 0).then(|| Ipv4Addr::new(192, 0, 2, 1)),
                port: 8000 + random.below(2) as u16,
                pod_ip: Ipv4Addr::new(10, 253, 0, 2 + random.below(5) as u8),
                container_port: 80,
            })
            .collect();
        let next = Ruleset::new(&config(&updated.table), &ports, &host_ports);
        let script = match &previous {
            Some(previous) => next.update_from(previous),
            None => next.script(),
        };
        if !script.is_empty() {
            services::apply(&script).unwrap_or_else(|err| panic!("step {step}: {err}\n{script}"));
        }
        let whole = Ruleset::new(&config(&rewritten.table), &ports, &host_ports);
        services::apply(&whole.script()).unwrap();
        assert_eq!(
            normalized(&updated.table),
            normalized(&rewritten.table),
            "step {step} differs after:\n{script}"
        );
        previous = Some(next);
    }
}
