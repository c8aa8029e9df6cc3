//! The server's certificates under `<data-dir>/pki/`: one CA, the serving certificate, the admin
//! client certificate, the API server's client certificate towards node agents (the kubelet
//! API), further client and node-agent serving certificates on demand, and the admin kubeconfig.
//!
//! Behaviour:
//! - Keys are ECDSA P-256 signed with SHA-256: Go (kubectl), OpenSSL (Python) and rustls all
//!   accept it. Every key and certificate is written 0600, atomically.
//! - The CA is created once and never replaced: a CA certificate without its key (or the
//!   reverse) is an error, not a reason to start over, since every issued credential hangs on it.
//! - The serving certificate is reissued when its SAN set differs from the wanted one, when it
//!   was not issued by this CA, or when it expires within [`RENEW_BEFORE_DAYS`]; the admin
//!   certificate likewise (without the SAN check).
//!
//! Limitation: a client certificate carries at most one group (one `O`), since the certificate
//! generator keeps one value per attribute type.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::fsutil;

/// Directory under the data dir holding keys, certificates and tokens.
pub const PKI_DIR: &str = "pki";
/// File name of the admin kubeconfig, directly under the data dir.
pub const KUBECONFIG_FILE: &str = "kubeconfig.yaml";
/// Name of the cluster, user and context in kubeconfigs Strata writes.
pub const KUBECONFIG_CLUSTER: &str = "strata";
/// User name (certificate CN) of the admin client certificate.
pub const ADMIN_USER: &str = "strata-admin";
/// Group (certificate O) of the admin: Kubernetes' all-powerful group.
pub const ADMIN_GROUP: &str = "system:masters";
/// User name (certificate CN) the API server presents to node agents' kubelet API; the
/// agents serve only this identity (Kubernetes' `kube-apiserver-kubelet-client`).
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
/// Certificates that expire within this many days are reissued on start.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// SANs every serving certificate carries, besides the hostname and `--tls-san` values.
/// The `kubernetes` Service's cluster IP is added by the server, from its service CIDR.
pub const DEFAULT_SANS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "::1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVER_CERT: &str = "server.crt";
const SERVER_KEY: &str = "server.key";
const ADMIN_CERT: &str = "admin.crt";
const ADMIN_KEY: &str = "admin.key";
const KUBELET_CLIENT_CERT: &str = "apiserver-kubelet-client.crt";
const KUBELET_CLIENT_KEY: &str = "apiserver-kubelet-client.key";
const CA_VALID_DAYS: i64 = 3650;
const LEAF_VALID_DAYS: i64 = 365;

/// Errors of creating, loading or using the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The PKI directory could not be created.
    #[error("cannot create directory {path}")]
    CreateDir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Only one of the CA certificate and key exists; refusing to make a new CA.
    #[error("{present} exists but {missing} does not; refusing to replace the CA")]
    CaIncomplete {
        /// The file that exists.
        present: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },
    /// The CA key does not belong to the CA certificate.
    #[error("the key in {key} does not match the certificate in {cert}")]
    CaKeyMismatch {
        /// CA certificate file.
        cert: PathBuf,
        /// CA key file.
        key: PathBuf,
    },
    /// A private key could not be parsed.
    #[error("cannot parse the private key in {path}")]
    ParseKey {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM certificate could not be decoded.
    #[error("cannot decode the PEM certificate in {path}")]
    DecodeCert {
        /// File (or a description of the source).
        path: PathBuf,
        /// Cause.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A DER certificate could not be parsed.
    #[error("cannot parse the certificate in {path}")]
    ParseCert {
        /// File (or a description of the source).
        path: PathBuf,
        /// Cause.
        #[source]
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    /// The CA certificate could not be loaded as an issuer.
    #[error("cannot use {path} as the issuing CA")]
    LoadIssuer {
        /// CA certificate file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: rcgen::Error,
    },
    /// Key or certificate generation failed.
    #[error("cannot generate the {what}")]
    Generate {
        /// What was being generated.
        what: String,
        /// Cause.
        #[source]
        source: rcgen::Error,
    },
    /// The system random generator failed.
    #[error("cannot draw random bytes for a serial number")]
    Random,
    /// A SAN is neither an IP address nor a valid DNS name.
    #[error("invalid subject alternative name {san:?}")]
    InvalidSan {
        /// The SAN as given.
        san: String,
    },
    /// A node asked for a kubelet certificate naming something other than itself.
    #[error("node {node} may not have a certificate for {san}")]
    ForeignSan {
        /// The node.
        node: String,
        /// The refused SAN.
        san: String,
    },
    /// The kubeconfig could not be serialized.
    #[error("cannot serialize the kubeconfig")]
    SerializeKubeconfig(#[source] serde_yaml::Error),
}

/// A certificate and its private key, both PEM. `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM PKCS#8 private key.
    pub key_pem: String,
}

impl fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAndKey")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The loaded PKI of one server: the CA (with its key, to issue certificates), the serving
/// certificate and the admin client certificate.
pub struct Pki {
    dir: PathBuf,
    ca_cert_pem: String,
    ca: Issuer<'static, KeyPair>,
    serving: CertAndKey,
    serving_sans: Vec<String>,
    admin: CertAndKey,
    kubelet_client: CertAndKey,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("serving_sans", &self.serving_sans)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the PKI under `<data_dir>/pki/`, creating what is missing and reissuing leaf
    /// certificates that are stale (see the module doc). `extra_sans` are `--tls-san` values
    /// (DNS names or IP addresses) added to the defaults and the hostname.
    pub fn load_or_create(data_dir: &Path, extra_sans: &[String]) -> Result<Pki, PkiError> {
        let dir = data_dir.join(PKI_DIR);
        fsutil::create_private_dir(&dir).map_err(|source| PkiError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let (ca_cert_pem, ca_key) = load_or_create_ca(&dir)?;
        let ca_cert_path = dir.join(CA_CERT);
        let ca = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key).map_err(|source| {
            PkiError::LoadIssuer {
                path: ca_cert_path.clone(),
                source,
            }
        })?;
        let ca_der = pem_to_der(&ca_cert_pem, &ca_cert_path)?;
        let ca_facts = CertFacts::parse(&ca_der, &ca_cert_path)?;

        let serving_sans = wanted_sans(extra_sans)?;
        let serving = load_or_issue(
            &dir,
            SERVER_CERT,
            SERVER_KEY,
            &ca_facts,
            |facts| facts.sans == serving_sans.iter().cloned().collect::<BTreeSet<_>>(),
            || issue_serving(&ca, &serving_sans),
        )?;
        let admin = load_or_issue(
            &dir,
            ADMIN_CERT,
            ADMIN_KEY,
            &ca_facts,
            |facts| {
                facts.common_name.as_deref() == Some(ADMIN_USER)
                    && facts.organizations == [ADMIN_GROUP.to_string()]
            },
            || issue_client(&ca, ADMIN_USER, Some(ADMIN_GROUP)),
        )?;
        let kubelet_client = load_or_issue(
            &dir,
            KUBELET_CLIENT_CERT,
            KUBELET_CLIENT_KEY,
            &ca_facts,
            |facts| {
                facts.common_name.as_deref() == Some(KUBELET_CLIENT_USER)
                    && facts.organizations.is_empty()
            },
            || issue_client(&ca, KUBELET_CLIENT_USER, None),
        )?;

        Ok(Pki {
            dir,
            ca_cert_pem,
            ca,
            serving,
            serving_sans,
            admin,
            kubelet_client,
        })
    }

    /// The PKI directory (`<data-dir>/pki`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca_cert_pem
    }

    /// Path of the CA certificate file.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// The serving certificate and key.
    pub fn serving(&self) -> &CertAndKey {
        &self.serving
    }

    /// The SANs of the serving certificate, normalized and sorted.
    pub fn serving_sans(&self) -> &[String] {
        &self.serving_sans
    }

    /// The admin client certificate (CN `strata-admin`, O `system:masters`).
    pub fn admin(&self) -> &CertAndKey {
        &self.admin
    }

    /// The client certificate the API server presents to node agents (CN
    /// [`KUBELET_CLIENT_USER`], no group).
    pub fn kubelet_client(&self) -> &CertAndKey {
        &self.kubelet_client
    }

    /// Issues a serving certificate for the kubelet API of node `name`, valid for a year,
    /// naming the node, `addresses`, `localhost` and the loopback addresses. Nothing is
    /// written to disk.
    pub fn issue_kubelet_serving_cert(
        &self,
        name: &str,
        addresses: &[IpAddr],
    ) -> Result<CertAndKey, PkiError> {
        let mut sans: BTreeSet<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        sans.insert(name.to_ascii_lowercase());
        sans.extend(addresses.iter().map(IpAddr::to_string));
        let sans: Vec<String> = sans.into_iter().collect();
        let mut params = leaf_params(&format!("{name}@kubelet"), None)?;
        let with_sans = CertificateParams::new(sans).map_err(|source| PkiError::Generate {
            what: "kubelet serving certificate SANs".into(),
            source,
        })?;
        params.subject_alt_names = with_sans.subject_alt_names;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sign(
            &self.ca,
            &params,
            &format!("kubelet serving certificate for {name}"),
        )
    }

    /// Signs a node's certificate signing request (PEM) for its kubelet API, the way the
    /// `kubernetes.io/kubelet-serving` signer does: CN `system:node:<node>`, O `system:nodes`,
    /// server auth only, valid for a year. The subject is the caller's node identity whatever
    /// the request says; of its SANs, IP addresses are kept, and DNS names only if they are the
    /// node's name or `localhost` (a node gets no certificate for another name). The request's
    /// signature is checked.
    pub fn sign_kubelet_serving_csr(&self, node: &str, csr_pem: &str) -> Result<String, PkiError> {
        let what = format!("kubelet serving certificate for {node}");
        let mut csr =
            rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|source| {
                PkiError::Generate {
                    what: "certificate signing request".into(),
                    source,
                }
            })?;
        let wanted_cn = format!("{}{node}", crate::auth::NODE_USER_PREFIX);
        let requested_cn = match csr.params.distinguished_name.get(&DnType::CommonName) {
            Some(rcgen::DnValue::Utf8String(cn)) => Some(cn.clone()),
            Some(rcgen::DnValue::PrintableString(cn)) => Some(cn.as_str().to_string()),
            _ => None,
        };
        if let Some(cn) = requested_cn
            && cn != wanted_cn
        {
            return Err(PkiError::ForeignSan {
                node: node.to_string(),
                san: format!("subject {cn}"),
            });
        }
        let node_lower = node.to_ascii_lowercase();
        let mut sans = Vec::new();
        for san in &csr.params.subject_alt_names {
            match san {
                rcgen::SanType::IpAddress(_) => sans.push(san.clone()),
                rcgen::SanType::DnsName(dns)
                    if dns.as_str().eq_ignore_ascii_case(&node_lower)
                        || dns.as_str() == "localhost" =>
                {
                    sans.push(san.clone())
                }
                other => {
                    return Err(PkiError::ForeignSan {
                        node: node.to_string(),
                        san: format!("{other:?}"),
                    });
                }
            }
        }
        let mut params = leaf_params(&wanted_cn, Some(crate::auth::NODES_GROUP))?;
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        csr.params = params;
        let cert = csr
            .signed_by(&self.ca)
            .map_err(|source| PkiError::Generate { what, source })?;
        Ok(cert.pem())
    }

    /// Paths of the admin client certificate and key files.
    pub fn admin_paths(&self) -> (PathBuf, PathBuf) {
        (self.dir.join(ADMIN_CERT), self.dir.join(ADMIN_KEY))
    }

    /// Issues a new client certificate signed by the CA, valid for a year: `user` becomes the
    /// CN (the Kubernetes user name), `group` the O. Nothing is written to disk.
    ///
    /// ```no_run
    /// # fn f(pki: &strata_apiserver::pki::Pki) -> Result<(), strata_apiserver::pki::PkiError> {
    /// let node = pki.issue_client_cert("system:node:n1", Some("system:nodes"))?;
    /// # Ok(()) }
    /// ```
    pub fn issue_client_cert(
        &self,
        user: &str,
        group: Option<&str>,
    ) -> Result<CertAndKey, PkiError> {
        issue_client(&self.ca, user, group)
    }

    /// Issues a client certificate for node `name`: CN `system:node:<name>`, O `system:nodes`.
    pub fn issue_node_cert(&self, name: &str) -> Result<CertAndKey, PkiError> {
        self.issue_client_cert(
            &format!("{}{name}", crate::auth::NODE_USER_PREFIX),
            Some(crate::auth::NODES_GROUP),
        )
    }

    /// The admin kubeconfig for a server at `server_url` (e.g. `https://127.0.0.1:6443`).
    pub fn admin_kubeconfig(&self, server_url: &str) -> Kubeconfig {
        Kubeconfig::with_client_cert(server_url, &self.ca_cert_pem, &self.admin)
    }

    /// Writes the admin kubeconfig to `<data_dir>/kubeconfig.yaml` (0600, atomically) and
    /// returns its path. The file is rewritten only when its content changes.
    pub fn write_admin_kubeconfig(
        &self,
        data_dir: &Path,
        server_url: &str,
    ) -> Result<PathBuf, PkiError> {
        let path = data_dir.join(KUBECONFIG_FILE);
        self.admin_kubeconfig(server_url).write(&path)?;
        Ok(path)
    }
}

/// A kubeconfig with one cluster, one user and one context, all named `strata`'s way; the
/// subset of the format Strata writes and reads. `kubectl --kubeconfig FILE` uses it as is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    /// Always `v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// Always `Config`.
    pub kind: String,
    /// Clusters by name.
    pub clusters: Vec<NamedCluster>,
    /// Contexts by name.
    pub contexts: Vec<NamedContext>,
    /// The context kubectl uses.
    pub current_context: String,
    /// Users by name.
    pub users: Vec<NamedUser>,
}

/// A named cluster entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    /// Name.
    pub name: String,
    /// Cluster.
    pub cluster: Cluster,
}

/// Where a cluster is and which CA it uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    /// `https://host:port`.
    pub server: String,
    /// Base64 of the CA certificate PEM.
    pub certificate_authority_data: String,
}

/// A named context entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    /// Name.
    pub name: String,
    /// Context.
    pub context: Context,
}

/// A (cluster, user) pair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// Cluster name.
    pub cluster: String,
    /// User name.
    pub user: String,
}

/// A named user entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedUser {
    /// Name.
    pub name: String,
    /// Credentials.
    pub user: UserCredentials,
}

/// Credentials: a client certificate, a bearer token, or both.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct UserCredentials {
    /// Base64 of the client certificate PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    /// Base64 of the client key PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    /// Bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCredentials")
            .field("client_certificate_data", &self.client_certificate_data)
            .field(
                "client_key_data",
                &self.client_key_data.as_ref().map(|_| "<redacted>"),
            )
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Kubeconfig {
    fn single(server_url: &str, ca_pem: &str, user_name: &str, user: UserCredentials) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        Kubeconfig {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![NamedCluster {
                name: KUBECONFIG_CLUSTER.into(),
                cluster: Cluster {
                    server: server_url.into(),
                    certificate_authority_data: b64.encode(ca_pem),
                },
            }],
            contexts: vec![NamedContext {
                name: KUBECONFIG_CLUSTER.into(),
                context: Context {
                    cluster: KUBECONFIG_CLUSTER.into(),
                    user: user_name.into(),
                },
            }],
            current_context: KUBECONFIG_CLUSTER.into(),
            users: vec![NamedUser {
                name: user_name.into(),
                user,
            }],
        }
    }

    /// A kubeconfig authenticating with a client certificate; the kubeconfig user is named
    /// after the certificate's CN.
    pub fn with_client_cert(server_url: &str, ca_pem: &str, cert: &CertAndKey) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        let user_name = pem_common_name(&cert.cert_pem).unwrap_or_else(|| ADMIN_USER.into());
        Self::single(
            server_url,
            ca_pem,
            &user_name,
            UserCredentials {
                client_certificate_data: Some(b64.encode(&cert.cert_pem)),
                client_key_data: Some(b64.encode(&cert.key_pem)),
                token: None,
            },
        )
    }

    /// A kubeconfig authenticating with a bearer token as kubeconfig user `user_name`.
    pub fn with_token(server_url: &str, ca_pem: &str, user_name: &str, token: &str) -> Self {
        Self::single(
            server_url,
            ca_pem,
            user_name,
            UserCredentials {
                client_certificate_data: None,
                client_key_data: None,
                token: Some(token.into()),
            },
        )
    }

    /// The kubeconfig as YAML.
    pub fn to_yaml(&self) -> Result<String, PkiError> {
        serde_yaml::to_string(self).map_err(PkiError::SerializeKubeconfig)
    }

    /// Writes the kubeconfig to `path` (0600, atomically) unless the file already holds
    /// exactly this content.
    pub fn write(&self, path: &Path) -> Result<(), PkiError> {
        let yaml = self.to_yaml()?;
        let current = fsutil::read_optional(path).map_err(|source| PkiError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        if current.as_deref() == Some(yaml.as_str()) {
            return Ok(());
        }
        fsutil::write_private(path, yaml.as_bytes()).map_err(|source| PkiError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// The `https://` URL clients should use for a server listening on `addr`: an unspecified
/// address (`0.0.0.0`, `::`) becomes the loopback address of its family.
pub fn server_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("https://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// The CA fingerprint a joining node pins: `sha256:<hex>` of the first certificate's DER in
/// `pem` (what `openssl x509 -outform der | sha256sum` prints).
pub fn cert_sha256(pem: &str) -> Option<String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    Some(der_sha256(&der))
}

/// `sha256:<hex>` of DER bytes (see [`cert_sha256`]).
pub fn der_sha256(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A key and a certificate signing request (both PEM) for node `name`'s kubelet API: SANs
/// the node's name, `localhost` and `addresses`; what [`Pki::sign_kubelet_serving_csr`] signs.
pub fn kubelet_serving_csr(name: &str, addresses: &[IpAddr]) -> Result<CertAndKey, PkiError> {
    let what = format!("kubelet serving certificate request for {name}");
    let mut sans = vec![name.to_ascii_lowercase(), "localhost".to_string()];
    sans.extend(addresses.iter().map(IpAddr::to_string));
    let mut params = CertificateParams::new(sans).map_err(|source| PkiError::Generate {
        what: what.clone(),
        source,
    })?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("{}{name}", crate::auth::NODE_USER_PREFIX),
    );
    let key = generate_key(&what)?;
    let csr = params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(|source| PkiError::Generate { what, source })?;
    Ok(CertAndKey {
        cert_pem: csr,
        key_pem: key.serialize_pem(),
    })
}

/// Whether a kubelet serving certificate and key kept on disk can be used again: the
/// certificate parses, is for the key, was issued by the CA `ca_pem`, names every one of
/// `names` (DNS names or IPs) and does not expire within [`RENEW_BEFORE_DAYS`].
pub fn kubelet_cert_is_current(cert: &CertAndKey, ca_pem: &str, names: &[String]) -> bool {
    let Ok(key) = KeyPair::from_pem(&cert.key_pem) else {
        return false;
    };
    let cert_pem = cert.cert_pem.as_str();
    let path = Path::new("<kubelet certificate>");
    let facts = |pem: &str| {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
        CertFacts::parse(&der, path).ok()
    };
    let (Some(cert), Some(ca)) = (facts(cert_pem), facts(ca_pem)) else {
        return false;
    };
    cert.issued_by(&ca)
        && cert.public_key == key.public_key_raw()
        && !cert.expires_soon()
        && names
            .iter()
            .all(|n| cert.sans.contains(&n.to_ascii_lowercase()))
}

/// The names in a certificate's subject: the CN and every O.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectNames {
    /// Common name.
    pub common_name: Option<String>,
    /// Organizations, in order.
    pub organizations: Vec<String>,
}

/// Reads the subject CN and Os of a DER certificate (already verified by the caller).
pub fn subject_names(der: &[u8]) -> Option<SubjectNames> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(names_of(&cert))
}

fn names_of(cert: &X509Certificate<'_>) -> SubjectNames {
    let subject = cert.subject();
    SubjectNames {
        common_name: subject
            .iter_common_name()
            .find_map(|a| a.as_str().ok())
            .map(str::to_string),
        organizations: subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .map(str::to_string)
            .collect(),
    }
}

fn pem_common_name(pem: &str) -> Option<String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    subject_names(&der)?.common_name
}

/// What the reuse checks need to know about a certificate on disk.
struct CertFacts {
    common_name: Option<String>,
    organizations: Vec<String>,
    sans: BTreeSet<String>,
    not_after: i64,
    issuer_raw: Vec<u8>,
    subject_raw: Vec<u8>,
    subject_key_id: Option<Vec<u8>>,
    authority_key_id: Option<Vec<u8>>,
    public_key: Vec<u8>,
}

impl CertFacts {
    fn parse(der: &[u8], path: &Path) -> Result<CertFacts, PkiError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|source| PkiError::ParseCert {
                path: path.to_path_buf(),
                source,
            })?;
        let names = names_of(&cert);
        let mut sans = BTreeSet::new();
        let mut subject_key_id = None;
        let mut authority_key_id = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(dns) => {
                                sans.insert(dns.to_ascii_lowercase());
                            }
                            GeneralName::IPAddress(bytes) => {
                                if let Some(ip) = ip_from_bytes(bytes) {
                                    sans.insert(ip.to_string());
                                }
                            }
                            _ => {}
                        }
                    }
                }
                ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = Some(id.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec());
                }
                _ => {}
            }
        }
        Ok(CertFacts {
            common_name: names.common_name,
            organizations: names.organizations,
            sans,
            not_after: cert.validity().not_after.timestamp(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            subject_raw: cert.subject().as_raw().to_vec(),
            subject_key_id,
            authority_key_id,
            public_key: cert.public_key().subject_public_key.data.to_vec(),
        })
    }

    fn issued_by(&self, ca: &CertFacts) -> bool {
        self.issuer_raw == ca.subject_raw
            && self.authority_key_id.is_some()
            && self.authority_key_id == ca.subject_key_id
    }

    fn expires_soon(&self) -> bool {
        let horizon = OffsetDateTime::now_utc() + Duration::days(RENEW_BEFORE_DAYS);
        self.not_after < horizon.unix_timestamp()
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn pem_to_der(pem: &str, path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|source| PkiError::DecodeCert {
        path: path.to_path_buf(),
        source,
    })
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    fsutil::read_optional(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    fsutil::write_private(path, contents.as_bytes()).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_key(pem: &str, path: &Path) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|source| PkiError::ParseKey {
        path: path.to_path_buf(),
        source,
    })
}

fn load_or_create_ca(dir: &Path) -> Result<(String, KeyPair), PkiError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    match (read(&cert_path)?, read(&key_path)?) {
        (Some(cert_pem), Some(key_pem)) => {
            let key = parse_key(&key_pem, &key_path)?;
            let facts = CertFacts::parse(&pem_to_der(&cert_pem, &cert_path)?, &cert_path)?;
            if facts.public_key != key.public_key_raw() {
                return Err(PkiError::CaKeyMismatch {
                    cert: cert_path,
                    key: key_path,
                });
            }
            Ok((cert_pem, key))
        }
        (Some(_), None) => Err(PkiError::CaIncomplete {
            present: cert_path,
            missing: key_path,
        }),
        (None, Some(_)) => Err(PkiError::CaIncomplete {
            present: key_path,
            missing: cert_path,
        }),
        (None, None) => {
            let key = generate_key("CA key")?;
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            // A per-CA suffix keeps the names of two Strata CAs apart in trust stores, as k3s does.
            params.distinguished_name.push(
                DnType::CommonName,
                format!("strata-ca@{}", OffsetDateTime::now_utc().unix_timestamp()),
            );
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            set_validity(&mut params, CA_VALID_DAYS)?;
            let cert = params
                .self_signed(&key)
                .map_err(|source| PkiError::Generate {
                    what: "CA certificate".into(),
                    source,
                })?;
            // Key first: a crash between the two writes leaves a key without a certificate,
            // which the next start reports instead of silently making a second CA.
            write(&key_path, &key.serialize_pem())?;
            write(&cert_path, &cert.pem())?;
            tracing::info!(path = %cert_path.display(), "created the cluster CA");
            Ok((cert.pem(), key))
        }
    }
}

/// Loads the certificate `cert_name`/`key_name` if it is usable (issued by this CA, not near
/// expiry, key matches, `fits` holds), else issues a new one with `issue` and writes it.
fn load_or_issue(
    dir: &Path,
    cert_name: &str,
    key_name: &str,
    ca: &CertFacts,
    fits: impl Fn(&CertFacts) -> bool,
    issue: impl Fn() -> Result<CertAndKey, PkiError>,
) -> Result<CertAndKey, PkiError> {
    let cert_path = dir.join(cert_name);
    let key_path = dir.join(key_name);
    if let (Some(cert_pem), Some(key_pem)) = (read(&cert_path)?, read(&key_path)?) {
        let usable = pem_to_der(&cert_pem, &cert_path)
            .and_then(|der| CertFacts::parse(&der, &cert_path))
            .and_then(|facts| {
                let key = parse_key(&key_pem, &key_path)?;
                Ok(facts.issued_by(ca)
                    && !facts.expires_soon()
                    && facts.public_key == key.public_key_raw()
                    && fits(&facts))
            });
        match usable {
            Ok(true) => return Ok(CertAndKey { cert_pem, key_pem }),
            Ok(false) => {
                tracing::info!(path = %cert_path.display(), "certificate is stale; reissuing")
            }
            Err(error) => tracing::warn!(
                path = %cert_path.display(),
                error = &error as &dyn std::error::Error,
                "certificate is unreadable; reissuing"
            ),
        }
    }
    let issued = issue()?;
    write(&key_path, &issued.key_pem)?;
    write(&cert_path, &issued.cert_pem)?;
    Ok(issued)
}

/// The serving SANs: defaults, the hostname, then `extra`, normalized (DNS names lowercased,
/// IPs canonical), deduplicated and sorted.
fn wanted_sans(extra: &[String]) -> Result<Vec<String>, PkiError> {
    let mut sans = BTreeSet::new();
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty());
    let all = DEFAULT_SANS
        .iter()
        .map(|s| s.to_string())
        .chain(hostname)
        .chain(extra.iter().map(|s| s.trim().to_string()));
    for san in all {
        if san.is_empty() {
            continue;
        }
        let normalized = match san.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => {
                let dns = san.to_ascii_lowercase();
                let valid = dns.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
                });
                if !valid {
                    return Err(PkiError::InvalidSan { san });
                }
                dns
            }
        };
        sans.insert(normalized);
    }
    Ok(sans.into_iter().collect())
}

fn generate_key(what: &str) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| PkiError::Generate {
        what: what.into(),
        source,
    })
}

fn set_validity(params: &mut CertificateParams, days: i64) -> Result<(), PkiError> {
    let now = OffsetDateTime::now_utc();
    // An hour of slack for clocks that are a little behind ours.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    let mut serial = [0u8; 16];
    SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| PkiError::Random)?;
    // Positive and without a leading zero byte, so DER keeps all 16 bytes.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    Ok(())
}

fn leaf_params(
    common_name: &str,
    organization: Option<&str>,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    if let Some(org) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // OpenSSL's strict mode (Python 3.13's default) wants the AKI on every issued certificate.
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_VALID_DAYS)?;
    Ok(params)
}

fn issue_serving(ca: &Issuer<'static, KeyPair>, sans: &[String]) -> Result<CertAndKey, PkiError> {
    let mut params = leaf_params("strata-apiserver", None)?;
    let with_sans = CertificateParams::new(sans.to_vec()).map_err(|source| PkiError::Generate {
        what: "serving certificate SANs".into(),
        source,
    })?;
    params.subject_alt_names = with_sans.subject_alt_names;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sign(ca, &params, "serving certificate")
}

fn issue_client(
    ca: &Issuer<'static, KeyPair>,
    user: &str,
    group: Option<&str>,
) -> Result<CertAndKey, PkiError> {
    let mut params = leaf_params(user, group)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign(ca, &params, &format!("client certificate for {user}"))
}

fn sign(
    ca: &Issuer<'static, KeyPair>,
    params: &CertificateParams,
    what: &str,
) -> Result<CertAndKey, PkiError> {
    let key = generate_key(what)?;
    let cert = params
        .signed_by(&key, ca)
        .map_err(|source| PkiError::Generate {
            what: what.into(),
            source,
        })?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_files_and_reuses_them() {
        let data = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(data.path(), &[]).unwrap();
        for name in [
            CA_CERT,
            CA_KEY,
            SERVER_CERT,
            SERVER_KEY,
            ADMIN_CERT,
            ADMIN_KEY,
        ] {
            assert_eq!(mode(&pki.dir().join(name)), 0o600, "{name}");
        }
        let again = Pki::load_or_create(data.path(), &[]).unwrap();
        assert_eq!(pki.ca_cert_pem(), again.ca_cert_pem());
        assert_eq!(pki.serving(), again.serving());
        assert_eq!(pki.admin(), again.admin());
    }

    #[test]
    fn new_san_reissues_the_serving_cert_but_keeps_the_ca() {
        let data = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(data.path(), &[]).unwrap();
        let second =
            Pki::load_or_create(data.path(), &["API.example.com".into(), "192.0.2.7".into()])
                .unwrap();
        assert_eq!(first.ca_cert_pem(), second.ca_cert_pem());
        assert_ne!(first.serving(), second.serving());
        assert_eq!(first.admin(), second.admin());
        let der = pem_to_der(&second.serving().cert_pem, Path::new("x")).unwrap();
        let facts = CertFacts::parse(&der, Path::new("x")).unwrap();
        for san in [
            "api.example.com",
            "192.0.2.7",
            "::1",
            "kubernetes.default.svc",
        ] {
            assert!(facts.sans.contains(san), "{san} in {:?}", facts.sans);
        }
        let ca = CertFacts::parse(
            &pem_to_der(second.ca_cert_pem(), Path::new("ca")).unwrap(),
            Path::new("ca"),
        )
        .unwrap();
        assert!(facts.issued_by(&ca));
    }

    #[test]
    fn leaf_near_expiry_or_from_another_ca_is_reissued() {
        let data = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(data.path(), &[]).unwrap();
        // An admin certificate that expires in ten days.
        let mut params = leaf_params(ADMIN_USER, Some(ADMIN_GROUP)).unwrap();
        params.not_after = OffsetDateTime::now_utc() + Duration::days(10);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let short = sign(&pki.ca, &params, "short-lived admin").unwrap();
        write(&pki.dir().join(ADMIN_CERT), &short.cert_pem).unwrap();
        write(&pki.dir().join(ADMIN_KEY), &short.key_pem).unwrap();
        let again = Pki::load_or_create(data.path(), &[]).unwrap();
        assert_ne!(again.admin(), &short);
        assert_eq!(again.ca_cert_pem(), pki.ca_cert_pem());

        // A serving certificate issued by some other CA.
        let other = tempfile::tempdir().unwrap();
        let foreign = Pki::load_or_create(other.path(), &[]).unwrap();
        write(&pki.dir().join(SERVER_CERT), &foreign.serving().cert_pem).unwrap();
        write(&pki.dir().join(SERVER_KEY), &foreign.serving().key_pem).unwrap();
        let third = Pki::load_or_create(data.path(), &[]).unwrap();
        assert_ne!(third.serving(), foreign.serving());
        let der = pem_to_der(&third.serving().cert_pem, Path::new("s")).unwrap();
        let ca = pem_to_der(third.ca_cert_pem(), Path::new("ca")).unwrap();
        let (s, c) = (
            CertFacts::parse(&der, Path::new("s")).unwrap(),
            CertFacts::parse(&ca, Path::new("ca")).unwrap(),
        );
        assert!(s.issued_by(&c));
    }

    #[test]
    fn ca_without_key_is_an_error() {
        let data = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(data.path(), &[]).unwrap();
        std::fs::remove_file(pki.dir().join(CA_KEY)).unwrap();
        let err = Pki::load_or_create(data.path(), &[]).unwrap_err();
        assert!(matches!(err, PkiError::CaIncomplete { .. }), "{err:?}");
    }

    #[test]
    fn node_cert_names() {
        let data = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(data.path(), &[]).unwrap();
        let node = pki.issue_node_cert("n1").unwrap();
        let der = pem_to_der(&node.cert_pem, Path::new("n")).unwrap();
        let names = subject_names(&der).unwrap();
        assert_eq!(names.common_name.as_deref(), Some("system:node:n1"));
        assert_eq!(names.organizations, ["system:nodes"]);
    }

    #[test]
    fn invalid_san_is_rejected() {
        let err = wanted_sans(&["bad name".into()]).unwrap_err();
        assert!(matches!(err, PkiError::InvalidSan { .. }));
    }

    #[test]
    fn server_url_maps_unspecified_to_loopback() {
        assert_eq!(
            server_url("0.0.0.0:6443".parse().unwrap()),
            "https://127.0.0.1:6443"
        );
        assert_eq!(
            server_url("[::]:6443".parse().unwrap()),
            "https://[::1]:6443"
        );
        assert_eq!(
            server_url("10.0.0.5:1".parse().unwrap()),
            "https://10.0.0.5:1"
        );
    }
}
