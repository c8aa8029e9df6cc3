//! The pod network on real kernel objects (as root): a bridge of the test's own, two
//! sandboxes (network namespaces the test makes), traffic between them and to the
//! gateway, idempotent attach, and clean detach. Everything the test makes is removed,
//! also when it fails; traffic never leaves the bridge.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use strata_net::{PodNetwork, PodNetworkConfig};
use strata_testkit::netns::TestNetns;

/// Removes the test's bridge when the test ends, however it ends.
struct BridgeGuard(String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("/bin/busybox")
            .args(["ip", "link", "del", &self.0])
            .output();
    }
}

/// A bridge named `<prefix><pid>` on a subnet `10.<octet>.<pid % 250>.0/24` of the
/// test's own, far from the defaults (10.42/16) a running Strata uses; the guard removes
/// the bridge, the directory holds the address records.
async fn network_of_its_own(
    prefix: &str,
    octet: u8,
) -> (PodNetwork, BridgeGuard, tempfile::TempDir) {
    let bridge = format!("{prefix}{}", std::process::id() % 100_000);
    let guard = BridgeGuard(bridge.clone());
    let state = tempfile::tempdir().unwrap();
    let subnet = format!("10.{octet}.{}.0/24", std::process::id() % 250);
    let network = PodNetwork::setup(PodNetworkConfig {
        bridge,
        subnet: subnet.parse().unwrap(),
        state_dir: state.path().to_path_buf(),
    })
    .await
    .unwrap();
    (network, guard, state)
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Serves one TCP connection on `ip:port` inside `netns`: reads a line, answers `pong`.
fn serve_once(netns: &TestNetns, ip: Ipv4Addr, port: u16) -> std::thread::JoinHandle<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = netns.path().to_path_buf();
    let handle = std::thread::spawn(move || {
        let file = std::fs::File::open(path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind((ip, port)).unwrap();
        tx.send(()).unwrap();
        let (mut stream, peer) = listener.accept().unwrap();
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(b"pong").unwrap();
        peer.ip().to_string()
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    handle
}

fn ping(target: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"ping")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

#[tokio::test(flavor = "multi_thread")]
async fn sandboxes_on_the_bridge_reach_each_other_and_the_gateway() {
    if !strata_testkit::require_root("sandboxes_on_the_bridge_reach_each_other_and_the_gateway") {
        return;
    }
    let (network, guard, _state) = network_of_its_own("stn", 251).await;
    let bridge = guard.0.clone();
    let (a, b) = (TestNetns::new(), TestNetns::new());
    let addr_a = network.attach("pod-a", a.path()).await.unwrap();
    let addr_b = network.attach("pod-b", b.path()).await.unwrap();
    assert_ne!(addr_a.ip, addr_b.ip);
    assert!(network.subnet().contains(addr_a.ip) && network.subnet().contains(addr_b.ip));
    assert_eq!(addr_a.gateway, network.gateway());
    // Attaching again changes nothing.
    assert_eq!(network.attach("pod-a", a.path()).await.unwrap(), addr_a);

    // Pod to pod across the bridge, with the source address preserved (no NAT).
    let server = serve_once(&b, addr_b.ip, 7000);
    let target = SocketAddr::from((addr_b.ip, 7000));
    assert_eq!(a.run(move || ping(target)).unwrap(), "pong");
    assert_eq!(server.join().unwrap(), addr_a.ip.to_string());

    // Pod to node: the gateway address is the host's, on the bridge.
    let gateway = network.gateway();
    let listener = TcpListener::bind((gateway, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let host = std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        stream.write_all(b"host").unwrap();
        peer.ip()
    });
    let mut answer = String::new();
    b.run(move || {
        TcpStream::connect_timeout(&SocketAddr::from((gateway, port)), Duration::from_secs(5))
            .and_then(|mut s| s.read_to_string(&mut answer).map(|_| answer))
    })
    .map(|text| assert_eq!(text, "host"))
    .unwrap();
    assert_eq!(host.join().unwrap(), std::net::IpAddr::V4(addr_b.ip));

    // Detach unplugs the pod and frees its address; repeating it is harmless.
    let host_end = strata_net::bridge::host_interface("pod-a");
    assert!(link_exists(&host_end));
    assert_eq!(network.detach("pod-a").await.unwrap(), Some(addr_a.ip));
    assert!(!link_exists(&host_end));
    assert_eq!(network.detach("pod-a").await.unwrap(), None);
    assert_eq!(network.ipam().lookup("pod-a").unwrap(), None);
    let target = SocketAddr::from((addr_b.ip, 7001));
    assert!(
        a.run(move || ping(target)).is_err(),
        "a detached pod has no route"
    );

    network.detach("pod-b").await.unwrap();
    network.remove_bridge().await.unwrap();
    assert!(!link_exists(&bridge));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_made_attachment_is_redone() {
    if !strata_testkit::require_root("a_half_made_attachment_is_redone") {
        return;
    }
    let (network, _guard, _state) = network_of_its_own("stm", 252).await;
    let sandbox = TestNetns::new();
    let first = network.attach("pod", sandbox.path()).await.unwrap();
    // The host end vanishes (as if an agent died mid-attach and someone cleaned up):
    // the next attach rebuilds the pair with the same address.
    let host_end = strata_net::bridge::host_interface("pod");
    let deleted = std::process::Command::new("/bin/busybox")
        .args(["ip", "link", "del", &host_end])
        .status()
        .unwrap();
    assert!(deleted.success());
    let again = network.attach("pod", sandbox.path()).await.unwrap();
    assert_eq!(again, first);
    assert!(link_exists(&host_end));
    let gateway = network.gateway();
    let listener = TcpListener::bind((gateway, 0)).unwrap();
    let target = listener.local_addr().unwrap();
    let accept = std::thread::spawn(move || listener.accept().map(|(_, peer)| peer.ip()));
    sandbox
        .run(move || TcpStream::connect_timeout(&target, Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        accept.join().unwrap().unwrap(),
        std::net::IpAddr::V4(first.ip)
    );
    network.detach("pod").await.unwrap();
}
