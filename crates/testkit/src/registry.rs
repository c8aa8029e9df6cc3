//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) serving a
//! temporary directory on a free loopback port, optionally behind htpasswd basic auth,
//! TLS (a self-signed certificate for 127.0.0.1 made with `openssl`), or bearer tokens
//! (the distribution token protocol; see [`TokenServer`]). The process is killed when
//! the guard drops, also when the test panics.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64_URL};

/// Where Debian's docker-registry installs the server.
pub const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

/// Returns `true` when the registry binary (and, for `auth`, `htpasswd` and `openssl`)
/// is there; otherwise prints `SKIP <test>: <reason>`.
pub fn require_registry(test: &str) -> bool {
    for (tool, package) in [
        (DOCKER_REGISTRY, "docker-registry"),
        ("/usr/bin/htpasswd", "apache2-utils"),
        ("/usr/bin/openssl", "openssl"),
    ] {
        if !Path::new(tool).exists() {
            println!("SKIP {test}: {tool} is missing (apt-get install {package})");
            return false;
        }
    }
    true
}

/// How to set the registry up.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Require basic auth with this user and password (htpasswd, bcrypt).
    pub user: Option<(String, String)>,
    /// Serve HTTPS with a self-signed certificate for 127.0.0.1.
    pub tls: bool,
    /// Require bearer tokens from a [`TokenServer`] (which checks `user`, when set,
    /// instead of htpasswd).
    pub token: bool,
}

/// A running registry; killed on drop.
pub struct TestRegistry {
    child: Child,
    token_server: Option<TokenServer>,
    dir: tempfile::TempDir,
    port: u16,
}

fn run(command: &mut Command) -> std::io::Result<()> {
    let out = command.output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl TestRegistry {
    /// An anonymous, plain-HTTP registry.
    pub fn start() -> std::io::Result<Self> {
        Self::start_with(&RegistryConfig::default())
    }

    /// A registry set up as `config` says.
    pub fn start_with(config: &RegistryConfig) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("strata-registry-")
            .tempdir()?;
        let root = dir.path();
        // Ask the kernel for a free port; the registry binds it right after.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut yaml = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: strata-test\n",
            root.join("storage").display()
        );
        if config.tls {
            run(Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .arg("ec_paramgen_curve:prime256v1")
                .args(["-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"])
                .args(["-addext", "subjectAltName=IP:127.0.0.1"])
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .arg("-keyout")
                .arg(root.join("key.pem"))
                .arg("-out")
                .arg(root.join("cert.pem")))?;
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                root.join("cert.pem").display(),
                root.join("key.pem").display()
            ));
        }
        let mut token_server = None;
        if config.token {
            let server = TokenServer::start(root, config.user.clone())?;
            yaml.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                server.realm(),
                root.join("token-cert.pem").display()
            ));
            token_server = Some(server);
        } else if let Some((user, password)) = &config.user {
            run(Command::new("htpasswd")
                .args(["-B", "-b", "-c"])
                .arg(root.join("htpasswd"))
                .args([user, password]))?;
            yaml.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: strata-test\n    path: {}\n",
                root.join("htpasswd").display()
            ));
        }
        std::fs::write(root.join("config.yml"), yaml)?;
        let log = std::fs::File::create(root.join("registry.log"))?;
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(root.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut registry = Self {
            child,
            token_server,
            dir,
            port,
        };
        registry.wait_ready()?;
        Ok(registry)
    }

    fn wait_ready(&mut self) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "docker-registry exited with {status}: {}",
                    self.log()
                )));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::other(format!(
            "docker-registry did not listen on port {} within 20 s: {}",
            self.port,
            self.log()
        )))
    }

    /// `127.0.0.1:PORT`, the registry part of references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The token server of a registry started with `token: true`.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// The self-signed certificate (PEM) of a TLS registry.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The registry's storage root.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The file the registry keeps blob `hex` (a sha256 in hex) in.
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Everything the registry logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Requests in the access log whose method is `method` and whose URI contains
    /// `uri_part`, e.g. `("PATCH", "/v2/a/blobs/uploads/")`.
    pub fn count_requests(&self, method: &str, uri_part: &str) -> usize {
        let prefix = format!("\"{method} ");
        self.log()
            .lines()
            .filter_map(|line| line.find(&prefix).map(|at| &line[at + prefix.len()..]))
            .filter(|rest| {
                rest.split(' ')
                    .next()
                    .is_some_and(|uri| uri.contains(uri_part))
            })
            .count()
    }

    /// The access-log lines whose status is `status` and whose request contains `part`.
    pub fn requests_with_status(&self, part: &str, status: u16) -> usize {
        let needle = format!("\" {status} ");
        self.log()
            .lines()
            .filter(|l| l.contains(part) && l.contains(&needle))
            .count()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let _ = writeln!(
                std::io::stderr(),
                "registry log ({}):\n{}",
                self.host(),
                self.log()
            );
        }
    }
}

/// The `service` the token server issues tokens for.
pub const TOKEN_SERVICE: &str = "strata-test-registry";
/// The issuer the registry expects in tokens.
pub const TOKEN_ISSUER: &str = "strata-test-token-server";

/// A token server for the distribution token protocol, on a loopback port: `GET
/// /token?service=…&scope=…` answers a JWT (RS256, signed by `openssl` with a key whose
/// self-signed certificate the registry trusts, sent in the `x5c` header) granting every
/// requested action to the configured user, and nothing to anonymous callers. Wrong
/// credentials get 401. Stopped on drop.
pub struct TokenServer {
    port: u16,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    fn start(dir: &Path, user: Option<(String, String)>) -> std::io::Result<Self> {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=strata-test-token-server"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert))?;
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()?
            .stdout;
        let x5c = BASE64.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let _ = serve_token(stream, &key, &x5c, user.as_ref());
            }
        });
        Ok(Self {
            port,
            requests,
            stop,
        })
    }

    /// The realm URL registries send clients to.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Token requests served so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_token(
    mut stream: TcpStream,
    key: &Path,
    x5c: &str,
    user: Option<&(String, String)>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head.split(' ').nth(1).unwrap_or("/");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut scopes = Vec::new();
    let mut service = String::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "scope" => scopes.push(url_decode(v)),
            "service" => service = url_decode(v),
            _ => {}
        }
    }
    let presented = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        if !name.eq_ignore_ascii_case("authorization") {
            return None;
        }
        let encoded = value.trim().strip_prefix("Basic ")?;
        let decoded = String::from_utf8(BASE64.decode(encoded).ok()?).ok()?;
        decoded
            .split_once(':')
            .map(|(u, p)| (u.to_string(), p.to_string()))
    });
    let respond = |stream: &mut TcpStream, status: &str, body: &str| {
        write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let subject = match (presented, user) {
        (Some(given), Some(wanted)) if &given == wanted => given.0,
        (Some(_), _) => {
            return respond(
                &mut stream,
                "401 Unauthorized",
                r#"{"details":"bad credentials"}"#,
            );
        }
        (None, _) => String::new(),
    };
    let access: Vec<String> = if subject.is_empty() {
        Vec::new()
    } else {
        scopes
            .iter()
            .flat_map(|s| s.split(' '))
            .filter_map(|scope| {
                let (kind, rest) = scope.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                let actions: Vec<String> = actions.split(',').map(|a| format!("\"{a}\"")).collect();
                Some(format!(
                    r#"{{"type":"{kind}","name":"{name}","actions":[{}]}}"#,
                    actions.join(",")
                ))
            })
            .collect()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let header = format!(r#"{{"alg":"RS256","typ":"JWT","x5c":["{x5c}"]}}"#);
    let claims = format!(
        r#"{{"iss":"{TOKEN_ISSUER}","sub":"{subject}","aud":"{service}","exp":{},"nbf":{},"iat":{now},"jti":"{}-{now}","access":[{}]}}"#,
        now + 300,
        now.saturating_sub(10),
        crate::unique_name("jti"),
        access.join(",")
    );
    let signing_input = format!(
        "{}.{}",
        BASE64_URL.encode(header),
        BASE64_URL.encode(claims)
    );
    let mut openssl = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    if let Some(mut stdin) = openssl.stdin.take() {
        stdin.write_all(signing_input.as_bytes())?;
    }
    let signature = openssl.wait_with_output()?.stdout;
    let token = format!("{signing_input}.{}", BASE64_URL.encode(signature));
    respond(
        &mut stream,
        "200 OK",
        &format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#),
    )
}
