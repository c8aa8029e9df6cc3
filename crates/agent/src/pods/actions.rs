//! What probes and lifecycle hooks do (exec, httpGet, tcpSocket, sleep) and how the agent
//! does it against a container: commands through `strata exec`, connections from inside
//! the pod's network namespace (or the host's, for `hostNetwork` pods).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use strata_runtime::{ContainerId, Sandbox};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::containers::StrataCommand;
use crate::containers::exec::{self, ExecOutcome};

/// Longest response head an HTTP probe reads.
const MAX_HEAD: usize = 10 * 1024;

/// One probe or hook action, resolved against its container (named ports looked up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run a command in the container; exit code 0 is success.
    Exec(Vec<String>),
    /// GET a path; a status in 200..400 is success.
    Http {
        /// HTTPS (the certificate is not verified, as in Kubernetes).
        https: bool,
        /// The host to connect to (default: the pod).
        host: Option<String>,
        /// The port.
        port: u16,
        /// The path, with its query.
        path: String,
        /// Extra request headers.
        headers: Vec<(String, String)>,
    },
    /// Open a TCP connection; connecting is success.
    Tcp {
        /// The host to connect to (default: the pod).
        host: Option<String>,
        /// The port.
        port: u16,
    },
    /// Wait (the `sleep` lifecycle hook).
    Sleep(Duration),
}

/// A failed action: why, in one line (for events and container messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Failure(pub String);

impl Action {
    /// The action of a probe.
    pub fn of_probe(probe: &Probe, container: &Container) -> Result<Self, Failure> {
        if probe.grpc.is_some() {
            return Err(Failure("gRPC probes are not supported yet".into()));
        }
        one_of(
            probe.exec.as_ref(),
            probe.http_get.as_ref(),
            probe.tcp_socket.as_ref(),
            None,
            container,
        )
    }

    /// The action of a lifecycle hook (postStart, preStop).
    pub fn of_handler(handler: &LifecycleHandler, container: &Container) -> Result<Self, Failure> {
        let sleep = handler
            .sleep
            .as_ref()
            .map(|s| Duration::from_secs(s.seconds.max(0) as u64));
        one_of(
            handler.exec.as_ref(),
            handler.http_get.as_ref(),
            handler.tcp_socket.as_ref(),
            sleep,
            container,
        )
    }
}

fn one_of(
    exec: Option<&ExecAction>,
    http: Option<&HTTPGetAction>,
    tcp: Option<&TCPSocketAction>,
    sleep: Option<Duration>,
    container: &Container,
) -> Result<Action, Failure> {
    if let Some(exec) = exec {
        let command = exec.command.clone().unwrap_or_default();
        if command.is_empty() {
            return Err(Failure("exec action without a command".into()));
        }
        return Ok(Action::Exec(command));
    }
    if let Some(http) = http {
        let mut path = http.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        return Ok(Action::Http {
            https: http.scheme.as_deref() == Some("HTTPS"),
            host: http.host.clone().filter(|h| !h.is_empty()),
            port: port(&http.port, container)?,
            path,
            headers: http
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        });
    }
    if let Some(tcp) = tcp {
        return Ok(Action::Tcp {
            host: tcp.host.clone().filter(|h| !h.is_empty()),
            port: port(&tcp.port, container)?,
        });
    }
    if let Some(duration) = sleep {
        return Ok(Action::Sleep(duration));
    }
    Err(Failure("the handler has no action".into()))
}

/// A port number, or the number of the container port with that name.
fn port(value: &IntOrString, container: &Container) -> Result<u16, Failure> {
    match value {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Failure(format!("invalid port {n}"))),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| Failure(format!("no container port named {name:?}")))
        }
    }
}

/// Where actions run: the container, and the network its pod lives in.
#[derive(Debug, Clone)]
pub struct Target {
    /// How to run `strata exec`.
    pub strata: StrataCommand,
    /// The container.
    pub container: ContainerId,
    /// The pod's network.
    pub network: Network,
}

/// The network namespace a pod's ports are in.
#[derive(Debug, Clone)]
pub enum Network {
    /// The host's (`hostNetwork: true`); the pod's address is the node's.
    Host(String),
    /// The pod sandbox's own.
    Sandbox(Sandbox),
}

/// Runs `action` against `target`, giving up after `timeout` (sleep ignores it).
pub async fn run(action: &Action, target: &Target, timeout: Duration) -> Result<(), Failure> {
    match action {
        Action::Sleep(duration) => {
            tokio::time::sleep(*duration).await;
            Ok(())
        }
        Action::Exec(argv) => {
            match exec::run_captured(&target.strata, &target.container, argv, timeout).await {
                Ok(ExecOutcome::Exited { code: 0, .. }) => Ok(()),
                Ok(ExecOutcome::Exited { code, output }) => {
                    let output = String::from_utf8_lossy(&output);
                    let output = output.trim();
                    Err(Failure(if output.is_empty() {
                        format!("command {argv:?} exited with {code}")
                    } else {
                        format!("command {argv:?} exited with {code}: {output}")
                    }))
                }
                Ok(ExecOutcome::TimedOut) => Err(Failure(format!(
                    "command {argv:?} timed out after {}s",
                    timeout.as_secs_f64()
                ))),
                Err(err) => Err(Failure(crate::containers::monitor::one_line(&err))),
            }
        }
        Action::Tcp { host, port } => {
            connect(&target.network, host.as_deref(), *port, timeout).await?;
            Ok(())
        }
        Action::Http {
            https,
            host,
            port,
            path,
            headers,
        } => {
            let work = async {
                let stream = connect(&target.network, host.as_deref(), *port, timeout).await?;
                let authority = match host {
                    Some(h) => format!("{h}:{port}"),
                    None => format!("{}:{port}", default_host(&target.network)),
                };
                let request = request_head(&authority, path, headers);
                let code = if *https {
                    let tls = super::insecure_tls::connect(stream, &authority)
                        .await
                        .map_err(|err| Failure(format!("TLS handshake failed: {err}")))?;
                    status_code(tls, &request).await?
                } else {
                    status_code(stream, &request).await?
                };
                if (200..400).contains(&code) {
                    Ok(())
                } else {
                    Err(Failure(format!(
                        "HTTP probe failed with statuscode: {code}"
                    )))
                }
            };
            tokio::time::timeout(timeout, work)
                .await
                .unwrap_or_else(|_| {
                    Err(Failure(format!(
                        "Get \"http://{}:{port}{path}\": timed out after {}s",
                        host.as_deref().unwrap_or(default_host(&target.network)),
                        timeout.as_secs_f64()
                    )))
                })
        }
    }
}

fn default_host(network: &Network) -> &str {
    match network {
        Network::Host(ip) => ip,
        Network::Sandbox(_) => "127.0.0.1",
    }
}

/// Connects to `host:port` in the pod's network (default host: the pod itself).
pub async fn connect(
    network: &Network,
    host: Option<&str>,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, Failure> {
    let host = host.unwrap_or(default_host(network)).to_string();
    let failed = |err: std::io::Error| Failure(format!("dial tcp {host}:{port}: {err}"));
    match network {
        Network::Host(_) => {
            let connecting = TcpStream::connect((host.as_str(), port));
            match tokio::time::timeout(timeout, connecting).await {
                Ok(stream) => stream.map_err(failed),
                Err(_) => Err(failed(std::io::ErrorKind::TimedOut.into())),
            }
        }
        Network::Sandbox(sandbox) => {
            let ip: IpAddr = if host == "localhost" {
                Ipv4Addr::LOCALHOST.into()
            } else {
                host.parse().map_err(|_| {
                    Failure(format!(
                        "host {host:?} is not an IP address (names are not resolved inside pods yet)"
                    ))
                })?
            };
            let sandbox = sandbox.clone();
            let addr = SocketAddr::new(ip, port);
            let stream = tokio::task::spawn_blocking(move || sandbox.connect(addr, timeout))
                .await
                .map_err(|err| Failure(err.to_string()))?
                .map_err(failed)?;
            stream.set_nonblocking(true).map_err(failed)?;
            TcpStream::from_std(stream).map_err(failed)
        }
    }
}

/// The request kubelet's HTTP prober sends.
fn request_head(authority: &str, path: &str, headers: &[(String, String)]) -> String {
    let mut head = format!("GET {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        head.push_str(&format!("Host: {authority}\r\n"));
    }
    if !has("user-agent") {
        head.push_str("User-Agent: kube-probe/1.33\r\n");
    }
    if !has("accept") {
        head.push_str("Accept: */*\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    head
}

/// Sends `request` and reads the status code of the response.
async fn status_code(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    request: &str,
) -> Result<u16, Failure> {
    let io = |err: std::io::Error| Failure(format!("HTTP probe failed: {err}"));
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut chunk).await.map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    parse_status_line(&head).ok_or_else(|| Failure("HTTP probe failed: malformed response".into()))
}

/// The code of an `HTTP/1.x CODE reason` status line.
fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut words = line.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ContainerPort;

    fn container_with_port(name: &str, number: i32) -> Container {
        Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some(name.into()),
                container_port: number,
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn probe_actions_resolve_named_ports_and_paths() {
        let container = container_with_port("http", 8080);
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                path: Some("healthz".into()),
                port: IntOrString::String("http".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            Action::of_probe(&probe, &container).unwrap(),
            Action::Http {
                https: false,
                host: None,
                port: 8080,
                path: "/healthz".into(),
                headers: vec![],
            }
        );
        let unknown = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("metrics".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = Action::of_probe(&unknown, &container).unwrap_err();
        assert!(err.0.contains("metrics"), "{err}");
        let empty = Probe::default();
        assert!(Action::of_probe(&empty, &container).is_err());
        let bad_port = Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(70000),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(Action::of_probe(&bad_port, &container).is_err());
    }

    #[test]
    fn request_heads_and_status_lines() {
        let head = request_head("10.0.0.1:80", "/h", &[("X-A".into(), "b".into())]);
        assert!(head.starts_with("GET /h HTTP/1.1\r\nHost: 10.0.0.1:80\r\n"));
        assert!(head.contains("X-A: b\r\n") && head.ends_with("\r\n\r\n"));
        let custom_host = request_head("a:1", "/", &[("host".into(), "x".into())]);
        assert!(!custom_host.contains("Host: a:1"));
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 500\r\n"), Some(500));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[tokio::test]
    async fn http_and_tcp_actions_on_the_host_network() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            for code in [200, 503] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let n = socket.read(&mut buf).await.unwrap();
                assert!(buf[..n].starts_with(b"GET /ready HTTP/1.1"));
                let reply = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let target = Target {
            strata: StrataCommand { argv: vec![] },
            container: ContainerId::new("probe-test".to_string()).unwrap(),
            network: Network::Host("127.0.0.1".into()),
        };
        let action = Action::Http {
            https: false,
            host: None,
            port,
            path: "/ready".into(),
            headers: vec![],
        };
        let timeout = Duration::from_secs(5);
        assert_eq!(run(&action, &target, timeout).await, Ok(()));
        let failed = run(&action, &target, timeout).await.unwrap_err();
        assert!(failed.0.contains("503"), "{failed}");
        server.await.unwrap();
        // Nothing listens any more: TCP fails.
        let tcp = Action::Tcp { host: None, port };
        assert!(run(&tcp, &target, timeout).await.is_err());
    }
}
