//! The API server's entry point: prepare PKI and tokens under the data dir, bind, write the
//! admin kubeconfig, and serve a router behind TLS and the auth layer.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::auth::rbac::RbacCache;
use crate::auth::serviceaccount::{SaTokenError, SaTokens};
use crate::auth::{AuthLayer, Authenticator, PodNodeResolver, TokenError, TokenStore};
use crate::pki::{Pki, PkiError, server_url};
use crate::services::{NodePortRange, ServiceCidr};
use crate::tls::{self, TlsError};

/// Default listen address of the API server.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:6443";
/// Default time open connections get to finish on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Where and how to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// State directory (`/var/lib/strata` by default); PKI goes to `<data_dir>/pki`.
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port (see [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// Extra SANs for the serving certificate (`--tls-san`): DNS names or IP addresses.
    pub tls_sans: Vec<String>,
    /// How long open connections get to finish after shutdown is asked for.
    pub shutdown_grace: Duration,
    /// The range Services' cluster IPs come from (`--service-cidr`, `10.43.0.0/16`).
    pub service_cidr: ServiceCidr,
    /// The range Services' node ports come from (`--service-node-port-range`,
    /// `30000-32767`).
    pub service_node_port_range: NodePortRange,
}

impl ServerConfig {
    /// A config for `data_dir` and `listen`, no extra SANs, the default grace period
    /// and the default service ranges.
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        ServerConfig {
            data_dir: data_dir.into(),
            listen,
            tls_sans: Vec::new(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            service_cidr: ServiceCidr::default(),
            service_node_port_range: NodePortRange::default(),
        }
    }

    /// Gives Services cluster IPs from `cidr`.
    #[must_use]
    pub fn with_service_cidr(mut self, cidr: ServiceCidr) -> Self {
        self.service_cidr = cidr;
        self
    }

    /// Gives NodePort and LoadBalancer Services node ports from `range`.
    #[must_use]
    pub fn with_service_node_port_range(mut self, range: NodePortRange) -> Self {
        self.service_node_port_range = range;
        self
    }

    /// Adds SANs to the serving certificate.
    #[must_use]
    pub fn with_tls_sans(mut self, sans: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tls_sans.extend(sans.into_iter().map(Into::into));
        self
    }
}

/// Errors of starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The PKI could not be prepared.
    #[error("cannot prepare the PKI")]
    Pki(#[source] PkiError),
    /// The token store could not be prepared.
    #[error("cannot prepare the token store")]
    Tokens(#[source] TokenError),
    /// The service account token key could not be prepared.
    #[error("cannot prepare the service account token key")]
    SaTokens(#[source] SaTokenError),
    /// The TLS configuration could not be built.
    #[error("cannot configure TLS")]
    Tls(#[source] TlsError),
    /// The runtime shut down while the PKI was being prepared.
    #[error("cancelled while preparing the PKI")]
    Cancelled,
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// A bound, not yet serving, API server. `bind` then `serve`:
///
/// ```no_run
/// # async fn f() -> Result<(), strata_apiserver::ServerError> {
/// use strata_apiserver::{Server, ServerConfig};
/// let config = ServerConfig::new("/var/lib/strata", "127.0.0.1:6443".parse().unwrap());
/// let server = Server::bind(config).await?;
/// println!("kubeconfig: {}", server.kubeconfig_path().display());
/// server.serve(axum::Router::new(), std::future::pending()).await
/// # }
/// ```
pub struct Server {
    config: ServerConfig,
    pki: Arc<Pki>,
    tokens: Arc<TokenStore>,
    sa_tokens: Arc<SaTokens>,
    tls: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    local_addr: SocketAddr,
    kubeconfig_path: PathBuf,
    pod_nodes: Option<Arc<dyn PodNodeResolver>>,
    rbac: Option<Arc<RbacCache>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Loads or creates the PKI and tokens, binds `config.listen`, and writes
    /// `<data_dir>/kubeconfig.yaml` pointing at the bound address.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let (pki, tokens, sa_tokens) = {
            let data_dir = config.data_dir.clone();
            let mut sans = config.tls_sans.clone();
            // Pods reach the API server as https://kubernetes.default.svc, i.e. this IP.
            sans.push(crate::kubernetes_service::cluster_ip(config.service_cidr).to_string());
            // Key generation and file IO: keep them off the async workers.
            let prepare = tokio::task::spawn_blocking(move || {
                let pki = Pki::load_or_create(&data_dir, &sans).map_err(ServerError::Pki)?;
                let tokens = TokenStore::load_or_init(pki.dir()).map_err(ServerError::Tokens)?;
                let sa_tokens =
                    SaTokens::load_or_create(pki.dir()).map_err(ServerError::SaTokens)?;
                Ok::<_, ServerError>((pki, tokens, sa_tokens))
            });
            match prepare.await {
                Ok(prepared) => prepared?,
                Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
                Err(_) => return Err(ServerError::Cancelled),
            }
        };
        let tls = tls::server_config(&pki).map_err(ServerError::Tls)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let kubeconfig_path = pki
            .write_admin_kubeconfig(&config.data_dir, &server_url(local_addr))
            .map_err(ServerError::Pki)?;
        tracing::info!(addr = %local_addr, kubeconfig = %kubeconfig_path.display(), "API server bound");
        Ok(Server {
            config,
            pki: Arc::new(pki),
            tokens: Arc::new(tokens),
            sa_tokens: Arc::new(sa_tokens),
            tls,
            listener,
            local_addr,
            kubeconfig_path,
            pod_nodes: None,
            rbac: None,
        })
    }

    /// Uses `resolver` to let node agents write the status of Pods bound to them.
    #[must_use]
    pub fn with_pod_node_resolver(mut self, resolver: Arc<dyn PodNodeResolver>) -> Self {
        self.pod_nodes = Some(resolver);
        self
    }

    /// Authorizes users and service accounts by the RBAC policy `cache` holds (the
    /// caller runs [`RbacCache::run`]).
    #[must_use]
    pub fn with_rbac(mut self, cache: Arc<RbacCache>) -> Self {
        self.rbac = Some(cache);
        self
    }

    /// The bound address (with the real port if the config asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `https://` URL clients use.
    pub fn url(&self) -> String {
        server_url(self.local_addr)
    }

    /// The PKI, e.g. to issue node certificates.
    pub fn pki(&self) -> &Arc<Pki> {
        &self.pki
    }

    /// The token store, e.g. to issue node tokens.
    pub fn tokens(&self) -> &Arc<TokenStore> {
        &self.tokens
    }

    /// The signer of service account tokens.
    pub fn sa_tokens(&self) -> &Arc<SaTokens> {
        &self.sa_tokens
    }

    /// Path of the admin kubeconfig.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// Serves `router` behind the auth layer until `shutdown` completes, then drains open
    /// connections for at most `shutdown_grace`.
    pub async fn serve(
        self,
        router: Router,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        let mut auth = Authenticator::new(self.tokens.clone())
            .with_service_account_tokens(self.sa_tokens.clone());
        if let Some(resolver) = self.pod_nodes {
            auth = auth.with_pod_node_resolver(resolver);
        }
        if let Some(cache) = self.rbac {
            auth = auth.with_rbac(cache);
        }
        let app = tower::Layer::layer(&AuthLayer::new(Arc::new(auth)), router);
        tls::serve_tls(
            self.listener,
            self.tls,
            app,
            shutdown,
            self.config.shutdown_grace,
        )
        .await;
        Ok(())
    }
}

/// Binds and serves in one call: [`Server::bind`] then [`Server::serve`].
pub async fn serve(
    config: ServerConfig,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    Server::bind(config).await?.serve(router, shutdown).await
}
