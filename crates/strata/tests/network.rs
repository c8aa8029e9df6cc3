#![allow(clippy::unwrap_used)]
//! The pod network of `strata up`, driven by real kubectl: the node gets a subnet of the
//! cluster range, pods get distinct addresses in it (also in their downward API), reach
//! each other and the node, reach a Service by cluster IP, node port and DNS name, and a
//! deleted pod's address and veth go. All traffic stays on
//! the test's own bridge.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::cloud::{Cloud, NODE};

const PODS: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec:
  containers:
  - name: httpd
    image: localhost/httpd:latest
    imagePullPolicy: IfNotPresent
    ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - name: sh
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo my-ip=$MY_IP; sleep 3600"]
    env:
    - name: MY_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
---
apiVersion: v1
kind: Pod
metadata: {name: on-host}
spec:
  hostNetwork: true
  containers:
  - name: sh
    image: localhost/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#;

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
"#;

fn pod_ip(cloud: &Cloud, pod: &str) -> Option<String> {
    let ip = cloud.ok(&["get", "pod", pod, "-o", "jsonpath={.status.podIP}"]);
    (!ip.trim().is_empty()).then(|| ip.trim().to_string())
}

fn running(cloud: &Cloud, pod: &str, container: &str) -> bool {
    cloud.status_of(pod, container)["state"]["running"].is_object()
}

#[test]
fn pods_get_addresses_of_the_node_subnet_and_reach_each_other() {
    let Some(cloud) = Cloud::start("pods_get_addresses_of_the_node_subnet_and_reach_each_other")
    else {
        return;
    };
    let subnet = cloud.ok(&["get", "node", NODE, "-o", "jsonpath={.spec.podCIDR}"]);
    let range: strata_net::Ipv4Net = cloud.cluster_cidr.parse().unwrap();
    let subnet: strata_net::Ipv4Net = subnet.trim().parse().unwrap();
    assert!(
        range.overlaps(&subnet) && subnet.prefix() == 24,
        "{subnet} in {range}"
    );

    cloud.apply(PODS);
    for (pod, container) in [("web", "httpd"), ("client", "sh"), ("on-host", "sh")] {
        cloud.wait_for(&format!("{pod} to run with an address"), || {
            running(&cloud, pod, container) && pod_ip(&cloud, pod).is_some()
        });
    }
    let web = pod_ip(&cloud, "web").unwrap();
    let client = pod_ip(&cloud, "client").unwrap();
    assert_ne!(web, client);
    for ip in [&web, &client] {
        let ip: std::net::Ipv4Addr = ip.parse().unwrap();
        assert!(
            subnet.contains(ip) && ip != subnet.nth(1).unwrap(),
            "{ip} in {subnet}"
        );
    }
    let pod = cloud.json(&["get", "pod", "web"]);
    assert_eq!(pod["status"]["podIPs"][0]["ip"], web.as_str());
    // hostNetwork pods have the node's address.
    assert_eq!(pod_ip(&cloud, "on-host").unwrap(), "127.0.0.1");
    // The downward API sees the address the pod got.
    cloud.wait_for("the client's log", || {
        String::from_utf8_lossy(&cloud.kubectl(&["logs", "client"]).stdout)
            .contains(&format!("my-ip={client}"))
    });

    // Name resolution files: the cluster DNS (the service range's tenth address) with the
    // namespace's search path, and the pod's own name in /etc/hosts.
    let services: strata_net::Ipv4Net = cloud.service_cidr.parse().unwrap();
    let resolv = cloud.ok(&["exec", "client", "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        format!(
            "nameserver {}\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
            services.nth(10).unwrap()
        )
    );
    let hosts = cloud.ok(&["exec", "client", "--", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("{client}\tclient\n")), "{hosts}");

    // Pod to pod, through the bridge.
    // (busybox-static's wget crashes in Debian 12's build; nc speaks the HTTP.)
    let page = cloud.ok(&[
        "exec",
        "client",
        "--",
        "sh",
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {web} 8080"),
    ]);
    assert!(page.contains("Hello from a Strata container"), "{page}");
    // Inside the pod: eth0 holds the address, the default route is the gateway.
    let routes = cloud.ok(&["exec", "client", "--", "ip", "route"]);
    let gateway = subnet.nth(1).unwrap().to_string();
    assert!(
        routes.contains(&format!("default via {gateway}")),
        "{routes}"
    );
    let addresses = cloud.ok(&[
        "exec", "client", "--", "ip", "-o", "-4", "addr", "show", "eth0",
    ]);
    assert!(addresses.contains(&format!("{client}/24")), "{addresses}");
    // Node to pod: the host reaches the pod's address over the bridge.
    let target: SocketAddr = format!("{web}:8080").parse().unwrap();
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5)).unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1."), "{answer}");
    // Pod to node: the gateway is the node's address on the bridge.
    let listener = TcpListener::bind((gateway.as_str(), 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        (peer.ip().to_string(), text)
    });
    cloud.ok(&[
        "exec",
        "client",
        "--",
        "sh",
        "-c",
        &format!("echo hello-node | nc -w 5 {gateway} {port}"),
    ]);
    let (peer, text) = accepted.join().unwrap();
    assert_eq!(
        (peer.as_str(), text.trim()),
        (client.as_str(), "hello-node")
    );

    // A NodePort service: its cluster IP and node port lead to web, from a pod and
    // from the host; Endpoints list web.
    cloud.apply(SERVICE);
    let cluster_ip = cloud.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let node_port = cloud.ok(&[
        "get",
        "svc",
        "web",
        "-o",
        "jsonpath={.spec.ports[0].nodePort}",
    ]);
    assert!(
        services.contains(cluster_ip.parse().unwrap()),
        "{cluster_ip} in {services}"
    );
    cloud.wait_for("the endpoints of web", || {
        cloud
            .ok(&[
                "get",
                "endpoints",
                "web",
                "-o",
                "jsonpath={.subsets[0].addresses[0].ip}",
            ])
            .trim()
            == web
    });
    let through_service = |host: &str, port: &str| {
        let command = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} {port}");
        String::from_utf8_lossy(
            &cloud
                .kubectl(&["exec", "client", "--", "sh", "-c", &command])
                .stdout,
        )
        .into_owned()
    };
    cloud.wait_for("the service rules", || {
        through_service(&cluster_ip, "80").contains("Hello from a Strata container")
    });
    // By name, through the cluster DNS: the name gives the cluster IP, which leads to web.
    let lookup = cloud.ok(&[
        "exec",
        "client",
        "--",
        "nslookup",
        "web.default.svc.cluster.local",
    ]);
    assert!(
        lookup.contains(&format!("Address: {cluster_ip}")),
        "{lookup}"
    );
    assert!(
        through_service("web.default.svc.cluster.local", "80")
            .contains("Hello from a Strata container")
    );
    let missing = cloud.kubectl(&[
        "exec",
        "client",
        "--",
        "nslookup",
        "nothing.default.svc.cluster.local",
    ]);
    assert!(
        String::from_utf8_lossy(&missing.stdout).contains("NXDOMAIN")
            || String::from_utf8_lossy(&missing.stderr).contains("NXDOMAIN")
    );
    let from_host = |target: SocketAddr| {
        let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(5)).unwrap();
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    let via_ip = from_host(format!("{cluster_ip}:80").parse().unwrap());
    assert!(via_ip.contains("Hello from a Strata container"), "{via_ip}");
    let via_node_port = from_host(format!("{gateway}:{node_port}").parse().unwrap());
    assert!(
        via_node_port.contains("Hello from a Strata container"),
        "{via_node_port}"
    );

    // A deleted pod's address is free again and its veth is gone; its service then
    // refuses connections instead of hanging.
    let ipam = cloud
        .data
        .path()
        .join("net/ipam")
        .join(subnet.to_string().replace('/', "_"));
    assert!(ipam.join(&web).exists());
    cloud.ok(&["delete", "pod", "web", "--grace-period=1"]);
    assert!(
        !ipam.join(&web).exists(),
        "the address of web is still held"
    );
    assert!(ipam.join(&client).exists());
}

fn host_port_pod(name: &str, host_port: u16, node: Option<&str>) -> String {
    let node = node
        .map(|n| format!("\n  nodeName: {n}"))
        .unwrap_or_default();
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:{node}
  containers:
  - name: httpd
    image: localhost/httpd:latest
    imagePullPolicy: IfNotPresent
    ports: [{{containerPort: 8080, hostPort: {host_port}}}]
"#
    )
}

#[test]
fn host_ports_lead_to_their_pod_and_a_taken_port_is_refused() {
    let Some(cloud) = Cloud::start("host_ports_lead_to_their_pod_and_a_taken_port_is_refused")
    else {
        return;
    };
    // A port of this test's own, since every local address answers on a host port.
    let host_port = 20_000 + (std::process::id() % 10_000) as u16;
    cloud.apply(&host_port_pod("first", host_port, None));
    cloud.wait_for("first to run with an address", || {
        running(&cloud, "first", "httpd") && pod_ip(&cloud, "first").is_some()
    });
    // The node's address on its bridge: the first of its pod subnet.
    let subnet: strata_net::Ipv4Net = cloud
        .ok(&["get", "node", NODE, "-o", "jsonpath={.spec.podCIDR}"])
        .trim()
        .parse()
        .unwrap();
    let target = SocketAddr::from((subnet.nth(1).unwrap(), host_port));
    let fetch = || {
        let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
            return String::new();
        };
        let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    cloud.wait_for("the host port to lead to first", || {
        fetch().contains("Hello from a Strata container")
    });

    // The scheduler keeps a second claim off the node, in kube-scheduler's words.
    cloud.apply(&host_port_pod("second", host_port, None));
    cloud.wait_for("second to be unschedulable", || {
        cloud
            .ok(&[
                "get",
                "pod",
                "second",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
            ])
            .contains("1 node(s) didn't have free ports for the requested pod ports")
    });
    // A pod bound by name skips the scheduler: it runs, the older pod keeps the port,
    // and an event says so.
    cloud.apply(&host_port_pod("by-name", host_port, Some(NODE)));
    cloud.wait_for("a HostPortConflict event for by-name", || {
        cloud
            .ok(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=by-name,reason=HostPortConflict",
                "-o",
                "jsonpath={.items[*].message}",
            ])
            .contains(&format!(
                "host port TCP/{host_port} is held by pod default/first"
            ))
    });
    // The node's host-port map, as nft lists it.
    let host_port_map = || {
        let nft = std::process::Command::new("nft")
            .args([
                "list",
                "map",
                "ip",
                &strata_agent::proxy::table_name(&cloud.bridge),
                "host-ports",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&nft.stdout).into_owned()
    };
    let first_ip = pod_ip(&cloud, "first").unwrap();
    let map = host_port_map();
    assert!(
        map.contains(&format!("tcp . {host_port} : {first_ip} . 8080")),
        "{map}"
    );

    // When first and by-name go, second is scheduled and takes the port over.
    cloud.ok(&["delete", "pod", "first", "by-name", "--grace-period=1"]);
    cloud.wait_for("second to run", || running(&cloud, "second", "httpd"));
    cloud.wait_for("the host port to lead to second", || {
        let Some(ip) = pod_ip(&cloud, "second") else {
            return false;
        };
        host_port_map().contains(&format!("tcp . {host_port} : {ip} . 8080"))
    });
    assert!(fetch().contains("Hello from a Strata container"));
}
