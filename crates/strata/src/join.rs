//! Joining further nodes: `strata token create` (on the server's machine) issues a node token
//! and prints the `strata agent` command that uses it; `strata agent` checks the server
//! against a pinned CA, gets its kubelet serving certificate signed through the API, and runs
//! the same node agent as `strata up`.
//!
//! Trust works like kubeadm's discovery: the agent never talks to an unverified server with
//! its token. With `--ca-cert-hash sha256:<hex>` it does one TLS handshake without sending
//! anything, takes the certificate with that hash from the chain the server presents (the API
//! server sends its CA along) and from then on verifies the server against it; with
//! `--ca-cert FILE` it trusts that CA. The CA, the kubelet key and certificate are kept in
//! `<data-dir>/node/`, so a restart reuses them (and needs no hash).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use strata_agent::AgentOptions;
use strata_agent::containers::StrataCommand;
use strata_agent::server::KubeletTls;
use strata_apiserver::node_certs::{KUBELET_SERVING_CERT_PATH, SignedCertificate, SigningRequest};
use strata_apiserver::pki::{self, Kubeconfig};

use crate::cli::{AgentArgs, TokenCreateArgs};
use crate::server::{async_runtime, shutdown_signal};

/// The directory under an agent's data dir holding its credentials.
const NODE_DIR: &str = "node";
/// The cluster CA the agent trusts.
const CA_FILE: &str = "ca.crt";
/// The kubelet API's serving certificate.
const KUBELET_CERT_FILE: &str = "kubelet.crt";
/// Its key.
const KUBELET_KEY_FILE: &str = "kubelet.key";

/// `strata token create`: issues a token for the node and prints the join command on stdout
/// (with `--quiet`, only the token).
pub fn create_token(data_dir: &Path, args: &TokenCreateArgs) -> Result<u8> {
    if !strata_api::names::is_subdomain(&args.node) {
        bail!(
            "node name {:?} is not a DNS subdomain (lower-case letters, digits, '-' and '.')",
            args.node
        );
    }
    let pki_dir = data_dir.join(pki::PKI_DIR);
    let ca_path = pki_dir.join(CA_FILE);
    let ca_pem = std::fs::read_to_string(&ca_path).with_context(|| {
        format!(
            "cannot read {} (has `strata up` or `strata server` run with this --data-dir?)",
            ca_path.display()
        )
    })?;
    let hash = pki::cert_sha256(&ca_pem)
        .with_context(|| format!("{} holds no PEM certificate", ca_path.display()))?;
    let server = match &args.server {
        Some(url) => url.clone(),
        None => kubeconfig_server(data_dir)?,
    };
    let tokens = strata_apiserver::auth::tokens::TokenStore::load_or_init(&pki_dir)
        .context("cannot open the token store")?;
    let token = tokens
        .issue_node_token(&args.node)
        .context("cannot issue the token")?;
    if args.quiet {
        println!("{token}");
        return Ok(0);
    }
    println!(
        "strata agent --server {server} --token {token} --ca-cert-hash {hash} --node-name {}",
        args.node
    );
    if is_loopback_url(&server) {
        eprintln!(
            "strata: {server} is reachable from this machine only; for other machines start the server with --listen 0.0.0.0:6443 --tls-san <its address> and give --server"
        );
    }
    Ok(0)
}

/// The `server:` of the admin kubeconfig the server wrote.
fn kubeconfig_server(data_dir: &Path) -> Result<String> {
    let path = data_dir.join(pki::KUBECONFIG_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {} (give --server)", path.display()))?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("server:"))
        .map(|url| url.trim().trim_matches('"').to_string())
        .with_context(|| format!("{} names no server (give --server)", path.display()))
}

fn is_loopback_url(url: &str) -> bool {
    parse_server(url).is_ok_and(|(host, _)| {
        host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

/// Host and port of an `https://HOST[:PORT]` URL (port 6443 when absent).
fn parse_server(url: &str) -> Result<(String, u16)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("--server {url:?} is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        bail!("--server {url:?} must be an https:// URL");
    }
    let host = uri
        .host()
        .with_context(|| format!("--server {url:?} names no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(6443)))
}

/// `strata agent`: joins the server and runs this node's pods until SIGINT or SIGTERM.
pub fn run(data_dir: &Path, args: &AgentArgs) -> Result<u8> {
    let node_name = crate::up::node_name(args.node_name.as_deref())?;
    let dns_upstreams = crate::up::dns_upstreams(&args.dns)?;
    let server = args.server.trim_end_matches('/').to_string();
    let (host, port) = parse_server(&server)?;
    let node_dir = data_dir.join(NODE_DIR);
    async_runtime()?.block_on(async {
        let (ca_pem, local_ip) = trusted_ca(args, &node_dir, &host, port).await?;
        let node_ip = args.node_ip.unwrap_or(local_ip);
        let user = format!("system:node:{node_name}");
        let yaml = Kubeconfig::with_token(&server, &ca_pem, &user, &args.token)
            .to_yaml()
            .context("cannot write the node kubeconfig")?;
        let client = strata_client::connect(&yaml)
            .await
            .context("cannot configure the API client")?;
        // Reject a wrong token before anything else, in plain words.
        client.apiserver_version().await.map_err(|err| match &err {
            kube::Error::Api(status) if status.code == 401 => {
                anyhow::anyhow!("the server at {server} rejected the token (401 Unauthorized)")
            }
            _ => anyhow::Error::new(err).context(format!("cannot reach the server at {server}")),
        })?;
        let kubelet = kubelet_cert(&client, &node_dir, &node_name, node_ip, &ca_pem).await?;
        let service_cidr = args.service_cidr;
        let options = AgentOptions {
            cluster_dns: strata_agent::cluster_dns_of(service_cidr),
            cluster_domain: strata_agent::CLUSTER_DOMAIN.to_string(),
            node_name: node_name.clone(),
            node_ip: node_ip.to_string(),
            data_dir: data_dir.to_path_buf(),
            strata: StrataCommand::current_exe(data_dir)?,
            max_pods: args.max_pods,
            kubelet_listen: std::net::SocketAddr::new(node_ip, args.kubelet_port),
            kubelet_tls: KubeletTls {
                cert_pem: kubelet.cert_pem,
                key_pem: kubelet.key_pem,
                client_ca_pem: ca_pem,
            },
            log_rotation: Default::default(),
            bridge: args.bridge.clone(),
            cluster_cidr: args.cluster_cidr,
            service_cidr,
            dns_upstreams,
        };
        let mut agent = tokio::spawn(strata_agent::run(client, options));
        eprintln!("strata: node {node_name} joined {server}");
        let failed = tokio::select! {
            _ = shutdown_signal() => None,
            ended = &mut agent => match ended {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(strata_agent::containers::monitor::one_line(&err)),
                Err(err) => Some(err.to_string()),
            },
        };
        agent.abort();
        if let Some(cause) = failed {
            bail!("the agent failed: {cause}");
        }
        eprintln!("strata: stopped (pods keep running and are adopted on the next start)");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(0)
}

/// The CA to verify the server with, and this machine's address towards the server.
async fn trusted_ca(
    args: &AgentArgs,
    node_dir: &Path,
    host: &str,
    port: u16,
) -> Result<(String, IpAddr)> {
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    let local_ip = stream
        .local_addr()
        .context("cannot read the local address")?
        .ip();
    let saved = node_dir.join(CA_FILE);
    let ca_pem = if let Some(path) = &args.ca_cert {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --ca-cert {}", path.display()))?;
        let hash = pki::cert_sha256(&pem)
            .with_context(|| format!("--ca-cert {} holds no PEM certificate", path.display()))?;
        if let Some(wanted) = &args.ca_cert_hash
            && !hash.eq_ignore_ascii_case(wanted.trim())
        {
            bail!("--ca-cert {} has hash {hash}, not {wanted}", path.display());
        }
        pem
    } else if let Some(wanted) = &args.ca_cert_hash {
        pinned_ca(stream, host, wanted.trim()).await?
    } else if let Ok(pem) = std::fs::read_to_string(&saved) {
        pem
    } else {
        bail!(
            "refusing to trust an unknown server: give --ca-cert-hash sha256:<hex> (printed by `strata token create`) or --ca-cert FILE"
        );
    };
    write_private(&saved, ca_pem.as_bytes())?;
    Ok((ca_pem, local_ip))
}

/// Does one TLS handshake (sending nothing) and returns, as PEM, the certificate of the
/// presented chain whose hash is `wanted`.
async fn pinned_ca(stream: tokio::net::TcpStream, host: &str, wanted: &str) -> Result<String> {
    let Some(hex) = wanted.strip_prefix("sha256:") else {
        bail!("--ca-cert-hash {wanted:?} must look like sha256:<hex>");
    };
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("--ca-cert-hash {wanted:?} must be sha256: and 64 hex digits");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let capture = Arc::new(CaptureChain {
        seen: Mutex::default(),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot configure TLS")?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string())
        .with_context(|| format!("{host:?} is not a valid server name"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .with_context(|| format!("TLS handshake with {host} failed"))?;
    let seen = capture
        .seen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let ca = seen
        .iter()
        .find(|der| pki::der_sha256(der).eq_ignore_ascii_case(wanted))
        .with_context(|| {
            format!("refusing to connect: the server presents no CA certificate with hash {wanted}")
        })?;
    let body = base64::engine::general_purpose::STANDARD.encode(ca.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    Ok(pem)
}

/// Records the chain a server presents and accepts it. Used only for the one handshake of
/// [`pinned_ca`], over which nothing is sent; the chain's CA is then checked against the pin
/// and every later connection verifies the server against it.
#[derive(Debug)]
struct CaptureChain {
    seen: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CaptureChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.push(end_entity.clone().into_owned());
        seen.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The kubelet API's certificate: the one kept in `node_dir` if it is still good for this
/// node, address and CA; else a new key, with a certificate the API server signs.
async fn kubelet_cert(
    client: &kube::Client,
    node_dir: &Path,
    node_name: &str,
    node_ip: IpAddr,
    ca_pem: &str,
) -> Result<pki::CertAndKey> {
    let cert_path = node_dir.join(KUBELET_CERT_FILE);
    let key_path = node_dir.join(KUBELET_KEY_FILE);
    let names = [node_name.to_string(), node_ip.to_string()];
    if let (Ok(cert_pem), Ok(key_pem)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        let kept = pki::CertAndKey { cert_pem, key_pem };
        if pki::kubelet_cert_is_current(&kept, ca_pem, &names) {
            return Ok(kept);
        }
    }
    let request = pki::kubelet_serving_csr(node_name, &[node_ip])
        .context("cannot make the kubelet certificate request")?;
    let body = serde_json::to_vec(&SigningRequest {
        csr: request.cert_pem,
    })
    .context("cannot encode the kubelet certificate request")?;
    let http_request = http::Request::post(KUBELET_SERVING_CERT_PATH)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .context("cannot build the kubelet certificate request")?;
    let signed: SignedCertificate = client.request(http_request).await.map_err(|err| {
        let cause = match &err {
            kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
            other => other.to_string(),
        };
        anyhow::anyhow!(
            "the server refused a kubelet certificate for node {node_name}: {cause} (is the token for another node?)"
        )
    })?;
    write_private(&key_path, request.key_pem.as_bytes())?;
    write_private(&cert_path, signed.certificate.as_bytes())?;
    Ok(pki::CertAndKey {
        cert_pem: signed.certificate,
        key_pem: request.key_pem,
    })
}

/// Writes `bytes` to `path` (mode 0600) through a temporary file and a rename.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        assert_eq!(
            parse_server("https://10.0.0.1:7443").unwrap(),
            ("10.0.0.1".to_string(), 7443)
        );
        assert_eq!(
            parse_server("https://[::1]").unwrap(),
            ("::1".to_string(), 6443)
        );
        assert!(parse_server("http://10.0.0.1:6443").is_err());
        assert!(parse_server("not a url").is_err());
        assert!(is_loopback_url("https://127.0.0.1:6443"));
        assert!(!is_loopback_url("https://10.0.0.1:6443"));
    }
}
