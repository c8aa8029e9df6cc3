#![allow(clippy::unwrap_used)]
//! The secure edge end to end: real TLS on 127.0.0.1, a Rust client speaking HTTP/2 and
//! HTTP/1.1, real `kubectl`, and Python's OpenSSL.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::{get, put};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use strata_apiserver::auth::{Identity, RequestAttributes};
use strata_apiserver::pki::{CertAndKey, Kubeconfig};
use strata_apiserver::{Server, ServerConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The demo API: `/version` and `/healthz` (public), `/api` (the caller's identity, the HTTP
/// version and the parsed attributes), `PUT /api/v1/nodes/{name}`, and a slow stream.
fn demo_router() -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { axum::Json(serde_json::json!({"gitVersion": "v1.32.0-strata"})) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/api",
            get(|req: Request| async move {
                let id = req.extensions().get::<Identity>().cloned().unwrap();
                axum::Json(serde_json::json!({
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "user": id.user,
                    "groups": id.groups,
                    "httpVersion": format!("{:?}", req.version()),
                }))
            }),
        )
        .route(
            "/api/v1/nodes/{name}",
            put(|req: Request| async move {
                let attrs = req
                    .extensions()
                    .get::<RequestAttributes>()
                    .cloned()
                    .unwrap();
                axum::Json(serde_json::to_value(attrs).unwrap())
            }),
        )
        .route(
            "/api/v1/stream",
            get(|| async {
                // Five chunks 200 ms apart, or forever with ?forever: a stand-in for a watch.
                let stream = async_stream(5);
                Body::from_stream(stream)
            }),
        )
        .route(
            "/api/v1/forever",
            get(|| async { Body::from_stream(async_stream(u32::MAX)) }),
        )
}

fn async_stream(n: u32) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        for i in 0..n {
            if tx
                .send(Ok(Bytes::from(format!("{{\"event\":{i}}}\n"))))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

struct Running {
    url: String,
    addr: std::net::SocketAddr,
    kubeconfig: std::path::PathBuf,
    pki: Arc<strata_apiserver::Pki>,
    admin_token: String,
    tokens: Arc<strata_apiserver::auth::TokenStore>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("server stops within its grace period")
            .unwrap();
    }
}

async fn start(data: &Path, sans: &[&str], grace: Duration) -> Running {
    let mut config =
        ServerConfig::new(data, "127.0.0.1:0".parse().unwrap()).with_tls_sans(sans.iter().copied());
    config.shutdown_grace = grace;
    let server = Server::bind(config).await.unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let running = Running {
        url: server.url(),
        addr: server.local_addr(),
        kubeconfig: server.kubeconfig_path().to_path_buf(),
        pki: server.pki().clone(),
        admin_token: server.tokens().admin_token().unwrap(),
        tokens: server.tokens().clone(),
        stop: Some(tx),
        task: None,
    };
    let task = tokio::spawn(async move {
        server
            .serve(demo_router(), async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running {
        task: Some(task),
        ..running
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proto {
    H2,
    H1,
}

struct Client {
    ca_pem: String,
    cert: Option<CertAndKey>,
    token: Option<String>,
    proto: Proto,
    server_name: String,
}

struct Reply {
    status: http::StatusCode,
    body: serde_json::Value,
    raw: Bytes,
}

impl Client {
    fn new(run: &Running) -> Client {
        Client {
            ca_pem: run.pki.ca_cert_pem().to_string(),
            cert: None,
            token: None,
            proto: Proto::H2,
            server_name: "127.0.0.1".into(),
        }
    }

    fn tls(&self) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match &self.cert {
            Some(c) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = match self.proto {
            Proto::H2 => vec![b"h2".to_vec()],
            Proto::H1 => vec![b"http/1.1".to_vec()],
        };
        Arc::new(config)
    }

    async fn send(&self, run: &Running, method: http::Method, path: &str) -> Reply {
        self.try_send(run, method, path).await.unwrap()
    }

    /// Like `send`, but a body cut short is an error instead of a panic.
    async fn try_send(
        &self,
        run: &Running,
        method: http::Method,
        path: &str,
    ) -> Result<Reply, hyper::Error> {
        let tcp = tokio::net::TcpStream::connect(run.addr).await.unwrap();
        let name = ServerName::try_from(self.server_name.clone()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.tls())
            .connect(name, tcp)
            .await
            .unwrap();
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        let mut req = http::Request::builder().method(method);
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let response = match self.proto {
            Proto::H2 => {
                assert_eq!(negotiated.as_deref(), Some(&b"h2"[..]));
                let (mut sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await
                        .unwrap();
                tokio::spawn(conn);
                let req = req
                    .uri(format!("{}{path}", run.url))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                sender.send_request(req).await.unwrap()
            }
            Proto::H1 => {
                assert_eq!(negotiated.as_deref(), Some(&b"http/1.1"[..]));
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                let req = req
                    .uri(path)
                    .header("host", run.addr.to_string())
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                sender.send_request(req).await.unwrap()
            }
        };
        let status = response.status();
        let raw = response.into_body().collect().await?.to_bytes();
        let body = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
        Ok(Reply { status, body, raw })
    }

    async fn get(&self, run: &Running, path: &str) -> Reply {
        self.send(run, http::Method::GET, path).await
    }
}

#[tokio::test]
async fn pki_files_kubeconfig_and_restart() {
    let data = tempfile::tempdir().unwrap();
    let run = start(
        data.path(),
        &["strata.example.test", "192.0.2.10"],
        Duration::from_secs(1),
    )
    .await;
    let pki_dir = data.path().join("pki");
    for name in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "admin.crt",
        "admin.key",
        "tokens.json",
    ] {
        let mode = std::fs::metadata(pki_dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
    let mode = std::fs::metadata(&run.kubeconfig)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(run.kubeconfig, data.path().join("kubeconfig.yaml"));

    let text = std::fs::read_to_string(&run.kubeconfig).unwrap();
    let kc: Kubeconfig = serde_yaml::from_str(&text).unwrap();
    assert_eq!(kc.current_context, "strata");
    assert_eq!(kc.clusters[0].name, "strata");
    assert_eq!(kc.clusters[0].cluster.server, run.url);
    assert_eq!(kc.contexts[0].context.user, "strata-admin");
    let b64 = base64::engine::general_purpose::STANDARD;
    let ca = b64
        .decode(&kc.clusters[0].cluster.certificate_authority_data)
        .unwrap();
    assert_eq!(ca, std::fs::read(pki_dir.join("ca.crt")).unwrap());
    // Generic YAML too: the keys kubectl reads are spelled its way.
    let generic: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    assert!(generic["users"][0]["user"]["client-certificate-data"].is_string());
    assert!(generic["users"][0]["user"]["client-key-data"].is_string());
    assert_eq!(generic["current-context"].as_str(), Some("strata"));

    assert!(
        run.pki
            .serving_sans()
            .iter()
            .any(|s| s == "strata.example.test")
    );
    assert!(run.pki.serving_sans().iter().any(|s| s == "192.0.2.10"));
    // The extra SAN really is in the certificate: verify the server under that name.
    let mut client = Client::new(&run);
    client.server_name = "strata.example.test".into();
    assert_eq!(client.get(&run, "/healthz").await.status, 200);
    client.server_name = "kubernetes.default.svc".into();
    assert_eq!(client.get(&run, "/healthz").await.status, 200);

    let ca_before = run.pki.ca_cert_pem().to_string();
    let serving_before = run.pki.serving().clone();
    let token_before = run.admin_token.clone();
    run.stop().await;

    let again = start(
        data.path(),
        &["strata.example.test", "192.0.2.10"],
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(again.pki.ca_cert_pem(), ca_before);
    assert_eq!(again.pki.serving(), &serving_before);
    assert_eq!(again.admin_token, token_before);
    again.stop().await;

    // A changed SAN set reissues the serving certificate, never the CA.
    let third = start(data.path(), &["other.example.test"], Duration::from_secs(1)).await;
    assert_eq!(third.pki.ca_cert_pem(), ca_before);
    assert_ne!(third.pki.serving(), &serving_before);
    assert!(
        !third
            .pki
            .serving_sans()
            .iter()
            .any(|s| s == "strata.example.test")
    );
    third.stop().await;
}

#[tokio::test]
async fn authentication_over_http2_and_http1() {
    let data = tempfile::tempdir().unwrap();
    let run = start(data.path(), &[], Duration::from_secs(1)).await;
    for proto in [Proto::H2, Proto::H1] {
        let mut anon = Client::new(&run);
        anon.proto = proto;
        let reply = anon.get(&run, "/api").await;
        assert_eq!(reply.status, 401, "{proto:?}");
        assert_eq!(
            reply.body,
            serde_json::json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401})
        );
        assert_eq!(anon.get(&run, "/healthz").await.raw, "ok");
        assert_eq!(
            anon.get(&run, "/version").await.body["gitVersion"],
            "v1.32.0-strata"
        );
        assert_eq!(anon.get(&run, "/api/v1/pods").await.status, 401);

        let mut admin = Client::new(&run);
        admin.proto = proto;
        admin.cert = Some(run.pki.admin().clone());
        let reply = admin.get(&run, "/api").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["user"], "strata-admin");
        assert!(
            reply.body["groups"]
                .as_array()
                .unwrap()
                .contains(&"system:masters".into())
        );
        let want_version = if proto == Proto::H2 {
            "HTTP/2.0"
        } else {
            "HTTP/1.1"
        };
        assert_eq!(reply.body["httpVersion"], want_version);

        let mut bearer = Client::new(&run);
        bearer.proto = proto;
        bearer.token = Some(run.admin_token.clone());
        let reply = bearer.get(&run, "/api").await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["user"], "strata-admin");

        bearer.token = Some("not-a-token".into());
        let reply = bearer.get(&run, "/api").await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.body["reason"], "Unauthorized");
    }
    run.stop().await;
}

#[tokio::test]
async fn node_identity_and_forbidden() {
    let data = tempfile::tempdir().unwrap();
    let run = start(data.path(), &[], Duration::from_secs(1)).await;
    let mut node = Client::new(&run);
    node.cert = Some(run.pki.issue_node_cert("n1").unwrap());
    let reply = node.get(&run, "/api").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["user"], "system:node:n1");
    assert!(
        reply.body["groups"]
            .as_array()
            .unwrap()
            .contains(&"system:nodes".into())
    );

    let reply = node.send(&run, http::Method::PUT, "/api/v1/nodes/n1").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["resource"], "nodes");
    assert_eq!(reply.body["name"], "n1");

    let reply = node.send(&run, http::Method::PUT, "/api/v1/nodes/n2").await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body["reason"], "Forbidden");
    assert_eq!(reply.body["code"], 403);
    assert_eq!(
        reply.body["message"],
        r#"nodes "n2" is forbidden: User "system:node:n1" cannot update resource "nodes" in API group "" at the cluster scope"#
    );
    assert_eq!(
        reply.body["details"],
        serde_json::json!({"name": "n2", "kind": "nodes"})
    );

    // Node tokens give node identities, whether issued by the server's own store or by
    // another process writing the same file (as a `strata token create` would).
    let mut token = Client::new(&run);
    token.token = Some(run.tokens.issue_node_token("n6").unwrap());
    assert_eq!(token.get(&run, "/api").await.body["user"], "system:node:n6");
    let other = strata_apiserver::auth::TokenStore::load_or_init(&data.path().join("pki")).unwrap();
    let issued = other.issue_node_token("n7").unwrap();
    token.token = Some(issued.clone());
    assert_eq!(token.get(&run, "/api").await.body["user"], "system:node:n7");
    // The server's earlier token survived the other writer, and revocation is seen too.
    token.token = Some(run.tokens.issue_node_token("n8").unwrap());
    assert_eq!(token.get(&run, "/api").await.status, 200);
    assert!(other.revoke(&issued).unwrap());
    token.token = Some(issued);
    assert_eq!(token.get(&run, "/api").await.status, 401);
    run.stop().await;
}

#[tokio::test]
async fn streams_are_not_cut_and_shutdown_drops_endless_ones() {
    let data = tempfile::tempdir().unwrap();
    let run = start(data.path(), &[], Duration::from_millis(300)).await;
    let mut admin = Client::new(&run);
    admin.cert = Some(run.pki.admin().clone());
    let reply = admin.get(&run, "/api/v1/stream").await;
    assert_eq!(reply.status, 200);
    assert_eq!(String::from_utf8_lossy(&reply.raw).lines().count(), 5);

    // Many connections at once.
    let mut run = run;
    let (stop, task) = (run.stop.take().unwrap(), run.task.take().unwrap());
    let admin = Arc::new(admin);
    let run = Arc::new(run);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (admin, run) = (admin.clone(), run.clone());
        tasks.push(tokio::spawn(
            async move { admin.get(&run, "/api").await.status },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }

    // An endless stream is open when shutdown comes: serve still returns after the grace.
    let endless = tokio::spawn(async move {
        admin
            .try_send(&run, http::Method::GET, "/api/v1/forever")
            .await
            .is_err()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The client sees its stream cut.
    let ended = tokio::time::timeout(Duration::from_secs(2), endless)
        .await
        .expect("endless stream is cut");
    assert!(ended.unwrap(), "the endless body ends with an error");
}

async fn tool(program: &str, args: &[&str]) -> Option<std::process::Output> {
    match tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("running {program}: {e}"),
    }
}

#[tokio::test]
async fn kubectl_accepts_the_kubeconfig() {
    let data = tempfile::tempdir().unwrap();
    let run = start(data.path(), &[], Duration::from_secs(1)).await;
    let kubeconfig = run.kubeconfig.to_str().unwrap().to_string();
    let args = [
        "--kubeconfig",
        &kubeconfig,
        "get",
        "--raw",
        "/api",
        "--request-timeout=20s",
    ];
    let Some(out) = tokio::time::timeout(Duration::from_secs(60), tool("kubectl", &args))
        .await
        .unwrap()
    else {
        println!("SKIP kubectl_accepts_the_kubeconfig: kubectl is not installed");
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(body["user"], "strata-admin");
    // kubectl talks HTTP/2 when the server offers it.
    assert_eq!(body["httpVersion"], "HTTP/2.0");

    // A token kubeconfig for a node: identity from the token, and kubectl reads our 403 Status.
    let token = run.tokens.issue_node_token("n1").unwrap();
    let node_kc = data.path().join("node.yaml");
    Kubeconfig::with_token(&run.url, run.pki.ca_cert_pem(), "system:node:n1", &token)
        .write(&node_kc)
        .unwrap();
    let node_kc = node_kc.to_str().unwrap();
    let out = tool(
        "kubectl",
        &["--kubeconfig", node_kc, "get", "--raw", "/api"],
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["user"], "system:node:n1");
    let out = tool(
        "kubectl",
        &[
            "--kubeconfig",
            node_kc,
            "delete",
            "--raw",
            "/api/v1/nodes/n2",
        ],
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"nodes "n2" is forbidden: User "system:node:n1" cannot delete resource "nodes" in API group "" at the cluster scope"#),
        "{stderr}"
    );
    run.stop().await;
}

#[tokio::test]
async fn python_openssl_accepts_the_chain() {
    let data = tempfile::tempdir().unwrap();
    let run = start(data.path(), &[], Duration::from_secs(1)).await;
    let (cert, key) = run.pki.admin_paths();
    let script = r#"
import json, ssl, sys, urllib.request
url, ca, cert, key = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=ca)
# Python 3.13 turns strict X.509 checks on by default; ask for them on older versions too.
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
ctx.load_cert_chain(cert, key)
with urllib.request.urlopen(url + "/api", context=ctx, timeout=20) as r:
    print(json.dumps(json.load(r)))
"#;
    let ca = run.pki.ca_cert_path();
    let args = [
        "-c",
        script,
        &run.url,
        ca.to_str().unwrap(),
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
    ];
    let Some(out) = tokio::time::timeout(Duration::from_secs(60), tool("python3", &args))
        .await
        .unwrap()
    else {
        println!("SKIP python_openssl_accepts_the_chain: python3 is not installed");
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(body["user"], "strata-admin");
    assert_eq!(body["httpVersion"], "HTTP/1.1");
    run.stop().await;
}
