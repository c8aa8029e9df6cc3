//! A real registry for tests: Debian's `docker-registry` (distribution 2.8) serving a
//! temporary directory on a free loopback port, optionally behind htpasswd basic auth
//! and TLS (a self-signed certificate for 127.0.0.1 made with `openssl`). The process
//! is killed when the guard drops, also when the test panics.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
}

/// A running registry; killed on drop.
pub struct TestRegistry {
    child: Child,
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
        if let Some((user, password)) = &config.user {
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
        let mut registry = Self { child, dir, port };
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
