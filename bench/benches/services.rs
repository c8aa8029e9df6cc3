#![allow(clippy::unwrap_used, missing_docs)]
//! Service load balancing in nftables, on the pod datapath itself (a bridge, veth pairs
//! and two network namespaces made by `strata-net`, as the agent makes them for pods):
//!
//! - the time to write the whole service table for 1, 100 and 1,000 services with 10
//!   endpoints each (render + one `nft -f` transaction), median of 5, and the time to
//!   apply one service's change to the table of 1,000 (an update, not a rewrite);
//! - HTTP requests/s and latency with wrk from client sandboxes to a server sandbox,
//!   straight to the pod address and through a cluster IP, interleaved in one run, with
//!   1 service and with 1,000 services in the table (the per-packet cost should stay
//!   flat: one map lookup whatever the number of services). Two servers: busybox httpd
//!   (a new connection per request: conntrack and NAT set up every time) and a
//!   keep-alive responder of the benchmark's own (32 connections: the per-packet path).
//!   Each path has a client sandbox of its own: through the cluster IP the server sees
//!   the same `client:port → pod:port` tuple as straight to the pod, and the TIME_WAIT
//!   the other path's run left behind on a reused client port (with TCP timestamps
//!   drawn for another destination address) stalls the SYN for a second — that, not
//!   the table, made the cluster IP look 2–3 times slower when one client ran both.
//!
//! Run as root: `cargo bench -p strata-bench --bench services [-- --seconds 5]`.
//! Needs nft, wrk and busybox (`scripts/install-deps.sh bench`). Everything stays on
//! the benchmark's own bridge and namespaces, removed at the end.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_net::services::{self, Endpoint, Protocol, ProxyConfig, Ruleset, ServicePort};
use strata_net::{PodNetwork, PodNetworkConfig};
use strata_testkit::netns::TestNetns;

mod common;
use common::flag;

struct Cleanup {
    table: String,
    bridge: String,
    server: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = services::remove(&self.table);
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

fn in_netns(netns: &TestNetns, program: &str) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net={}", netns.path().display()))
        .arg(program);
    command
}

/// The web service plus `extra` services of 10 endpoints each (addresses in the subnet
/// that answer nothing; only their rules matter).
/// The keep-alive responder's service port: the web service's address, port 81.
fn keep_alive_port(web: &ServicePort) -> ServicePort {
    ServicePort {
        name: "bench/web:keep-alive".into(),
        port: 81,
        endpoints: web
            .endpoints
            .iter()
            .map(|e| Endpoint { port: 8081, ..*e })
            .collect(),
        ..web.clone()
    }
}

/// Answers HTTP/1.1 requests with a small page on `port` in `netns`, keeping each
/// connection open (a thread per connection; the listener's thread is in the netns).
fn keep_alive_server(netns: &TestNetns, ip: Ipv4Addr, port: u16) {
    let listener = netns.run(move || TcpListener::bind((ip, port)).unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut buffer = [0u8; 4096];
                let mut pending = Vec::new();
                while let Ok(n) = stream.read(&mut buffer) {
                    if n == 0 {
                        break;
                    }
                    pending.extend_from_slice(&buffer[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nContent-Type: text/plain\r\n\r\nhello\n";
                        if stream.write_all(answer).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
}

fn table(web: &ServicePort, extra: usize, subnet_base: [u8; 3]) -> Vec<ServicePort> {
    let mut ports = vec![web.clone(), keep_alive_port(web)];
    for i in 0..extra {
        ports.push(ServicePort {
            name: format!("bench/svc-{i}:http"),
            cluster_ip: Some(Ipv4Addr::new(10, 249, (i / 250) as u8, (i % 250) as u8 + 2)),
            port: 80,
            protocol: Protocol::Tcp,
            node_port: None,
            endpoints: (0..10)
                .map(|e| Endpoint {
                    ip: Ipv4Addr::new(subnet_base[0], subnet_base[1], subnet_base[2], 100 + e),
                    port: 8080,
                })
                .collect(),
            affinity_seconds: None,
        });
    }
    ports
}

/// wrk runs: (requests/s, mean latency in ms) each.
type Runs = Vec<(f64, f64)>;

/// wrk's requests/s and mean latency (ms) against `url` from `client`.
fn wrk(client: &TestNetns, url: &str, seconds: u64) -> (f64, f64) {
    let out = in_netns(client, "wrk")
        .args(["-t2", "-c32", &format!("-d{seconds}s"), url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    let latency = text
        .lines()
        .find(|l| l.trim_start().starts_with("Latency"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(|v| {
            if let Some(us) = v.strip_suffix("us") {
                us.parse::<f64>().unwrap_or(0.0) / 1000.0
            } else if let Some(ms) = v.strip_suffix("ms") {
                ms.parse().unwrap_or(0.0)
            } else {
                v.trim_end_matches('s').parse::<f64>().unwrap_or(0.0) * 1000.0
            }
        })
        .unwrap_or(0.0);
    assert!(rate > 0.0, "wrk measured nothing against {url}: {text}");
    for line in text
        .lines()
        .filter(|l| l.contains("errors") || l.contains("Non-2xx"))
    {
        println!("    ({url}: {})", line.trim());
    }
    (rate, latency)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP services benchmark: needs root");
        return;
    }
    for tool in ["nft", "wrk", "nsenter"] {
        if Command::new(tool).arg("--version").output().is_err() {
            println!("SKIP services benchmark: {tool} is missing (scripts/install-deps.sh bench)");
            return;
        }
    }
    let args: Vec<String> = std::env::args().collect();
    let seconds = flag(&args, "--seconds", 5) as u64;
    let id = std::process::id() % 100_000;
    let mut cleanup = Cleanup {
        table: format!("strata_bench_{id}"),
        bridge: format!("stb{id}"),
        server: None,
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let subnet_base = [10, 248, (id % 250) as u8];
    let network = runtime
        .block_on(PodNetwork::setup(PodNetworkConfig {
            bridge: cleanup.bridge.clone(),
            subnet: format!("10.248.{}.0/24", subnet_base[2]).parse().unwrap(),
            state_dir: state.path().to_path_buf(),
        }))
        .unwrap();
    runtime
        .block_on(network.route_to_bridge("10.249.0.0/16".parse().unwrap()))
        .unwrap();
    let (client, service_client, server) = (TestNetns::new(), TestNetns::new(), TestNetns::new());
    runtime
        .block_on(network.attach("client", client.path()))
        .unwrap();
    runtime
        .block_on(network.attach("svc-client", service_client.path()))
        .unwrap();
    let server_ip = runtime
        .block_on(network.attach("server", server.path()))
        .unwrap()
        .ip;
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "hello\n").unwrap();
    cleanup.server = Some(
        in_netns(&server, "/bin/busybox")
            .args(["httpd", "-f", "-p", "8080", "-h"])
            .arg(www.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    keep_alive_server(&server, server_ip, 8081);
    std::thread::sleep(Duration::from_millis(300));
    let cluster_ip = Ipv4Addr::new(10, 249, 255, 1);
    let web = ServicePort {
        name: "bench/web:http".into(),
        cluster_ip: Some(cluster_ip),
        port: 80,
        protocol: Protocol::Tcp,
        node_port: None,
        endpoints: vec![Endpoint {
            ip: server_ip,
            port: 8080,
        }],
        affinity_seconds: None,
    };
    let config = ProxyConfig {
        table: cleanup.table.clone(),
        bridge: cleanup.bridge.clone(),
        cluster_cidr: "10.248.0.0/16".parse().unwrap(),
        node_link: None,
    };

    println!("Service table writes (render + one nft transaction), median of 5:");
    for extra in [0usize, 100, 1000] {
        let ports = table(&web, extra, subnet_base);
        let mut times: Vec<Duration> = (0..5)
            .map(|_| {
                let started = Instant::now();
                services::apply(&services::render(&config, &ports)).unwrap();
                started.elapsed()
            })
            .collect();
        times.sort();
        let endpoints: usize = ports.iter().map(|p| p.endpoints.len()).sum();
        println!(
            "  {:>5} service ports, {:>6} endpoints: {:>8.1} ms",
            ports.len(),
            endpoints,
            times[2].as_secs_f64() * 1000.0
        );
    }

    // One service of 1,000 gains an endpoint: the update, applied to the table written
    // whole, then undone, five times each.
    let ports = table(&web, 1000, subnet_base);
    let whole = Ruleset::new(&config, &ports, &[]);
    services::apply(&whole.script()).unwrap();
    let mut changed_ports = ports.clone();
    changed_ports[2].endpoints.push(Endpoint {
        ip: Ipv4Addr::new(subnet_base[0], subnet_base[1], subnet_base[2], 200),
        port: 8080,
    });
    let changed = Ruleset::new(&config, &changed_ports, &[]);
    let mut times: Vec<Duration> = (0..10)
        .map(|i| {
            let (from, to) = if i % 2 == 0 {
                (&whole, &changed)
            } else {
                (&changed, &whole)
            };
            let started = Instant::now();
            services::apply(&to.update_from(from)).unwrap();
            started.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "  one service port's endpoints changed among 1,002: {:>8.1} ms (update, median of 10)",
        times[5].as_secs_f64() * 1000.0
    );

    println!("\nwrk -t2 -c32 -d{seconds}s, a client sandbox per path → a server sandbox:");
    let servers = [
        ("busybox httpd, a connection per request", 8080, 80),
        ("keep-alive responder, 32 connections", 8081, 81),
    ];
    for (label, pod_port, service_port) in servers {
        println!("  {label}:");
        compare(
            &config,
            &web,
            subnet_base,
            (&client, &format!("http://{server_ip}:{pod_port}/")),
            (
                &service_client,
                &format!("http://{cluster_ip}:{service_port}/"),
            ),
            seconds,
        );
    }
    runtime.block_on(network.detach("client")).unwrap();
    runtime.block_on(network.detach("svc-client")).unwrap();
    runtime.block_on(network.detach("server")).unwrap();
    drop(cleanup);
}

/// wrk straight to the pod and through the cluster IP, each from its own client, in
/// rounds that alternate the table sizes; prints the medians and their ratio.
fn compare(
    config: &ProxyConfig,
    web: &ServicePort,
    subnet_base: [u8; 3],
    (client, pod_url): (&TestNetns, &str),
    (service_client, service_url): (&TestNetns, &str),
    seconds: u64,
) {
    // Rounds alternate the table sizes, so that what builds up over a run (TIME_WAIT
    // sockets, conntrack entries) weighs on both alike.
    let sizes = [0usize, 1000];
    let mut results: Vec<(Runs, Runs)> = vec![(Vec::new(), Vec::new()); sizes.len()];
    for _ in 0..3 {
        for (i, extra) in sizes.iter().enumerate() {
            services::apply(&services::render(config, &table(web, *extra, subnet_base))).unwrap();
            results[i].0.push(wrk(client, pod_url, seconds));
            results[i].1.push(wrk(service_client, service_url, seconds));
        }
    }
    for (extra, (mut pod, mut svc)) in sizes.iter().zip(results) {
        let median = |runs: &mut Vec<(f64, f64)>| {
            runs.sort_by(|a, b| a.0.total_cmp(&b.0));
            runs[1]
        };
        let (pod, svc) = (median(&mut pod), median(&mut svc));
        println!(
            "    {:>5} services in the table: pod IP {:>8.0} req/s ({:.2} ms), cluster IP {:>8.0} req/s ({:.2} ms), ratio {:.2}",
            extra + 1,
            pod.0,
            pod.1,
            svc.0,
            svc.1,
            svc.0 / pod.0
        );
    }
}
