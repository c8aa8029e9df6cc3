//! The API server as `strata server` and `strata up` run it: on the embedded SQLite store
//! under the data dir, with the built-in namespaces, each namespace's `default`
//! ServiceAccount and `kube-root-ca.crt`, periodic compaction, service account tokens,
//! Services' cluster IPs and node ports, and node agents allowed to write their own
//! Pods. The garbage collector and the namespace controller are API clients in
//! `strata-controllers`, as in Kubernetes: a server without them collects no garbage
//! (kube-apiserver without the controller manager).
//! Tests start the same thing in-process on port 0.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strata_store::{SqliteStore, Store, StoreError};

use crate::auth::PodNodeResolver;
use crate::auth::layer::{ObjectFuture, PodNodeFuture};
use crate::auth::rbac::RbacCache;
use crate::rest::{ApiState, router};
use crate::server::{Server, ServerConfig, ServerError};
use crate::services::{ServiceAllocator, ServicesError};
use crate::{kubernetes_service, namespaces, serviceaccounts, storage};

/// How much history watches can resume from: compaction keeps this much.
pub const HISTORY: Duration = Duration::from_secs(5 * 60);

/// Errors of starting the embedded API server.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// The data directory could not be created.
    #[error("cannot create {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("cannot open the store {path}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: StoreError,
    },
    /// What the stored Services hold could not be read.
    #[error("cannot load the Services' cluster IPs and node ports")]
    Services(#[source] ServicesError),
    /// The built-in namespaces could not be created.
    #[error("cannot create the built-in namespaces: {0}")]
    Bootstrap(String),
    /// The server could not start.
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// A bound API server on its store, not serving yet: [`EmbeddedServer::start`] then
/// [`EmbeddedServer::serve`].
pub struct EmbeddedServer {
    server: Server,
    store: Arc<dyn Store>,
    rbac: Arc<RbacCache>,
    services: Arc<ServiceAllocator>,
}

impl EmbeddedServer {
    /// Opens `<data_dir>/state.db`, creates the built-in namespaces and binds the listener
    /// (writing the admin kubeconfig).
    pub async fn start(config: ServerConfig) -> Result<Self, EmbeddedError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| EmbeddedError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let path = config.data_dir.join("state.db");
        let store: Arc<dyn Store> =
            Arc::new(
                SqliteStore::open(&path).map_err(|source| EmbeddedError::Store {
                    path: path.clone(),
                    source,
                })?,
            );
        namespaces::bootstrap(store.as_ref())
            .await
            .map_err(|err| EmbeddedError::Bootstrap(err.to_string()))?;
        crate::auth::rbac::bootstrap(store.as_ref())
            .await
            .map_err(|err| EmbeddedError::Bootstrap(err.to_string()))?;
        let (service_cidr, node_ports) = (config.service_cidr, config.service_node_port_range);
        let tls_sans = config.tls_sans.clone();
        let resolver = Arc::new(StoredPodNodes(store.clone()));
        let rbac = RbacCache::new(store.clone());
        let server = Server::bind(config).await?;
        // Before the allocator loads, so that the Service's address is known to be taken.
        let bound = server.local_addr();
        kubernetes_service::bootstrap(
            store.as_ref(),
            service_cidr,
            bound.port(),
            kubernetes_service::advertised(bound, &tls_sans),
        )
        .await
        .map_err(|err| EmbeddedError::Bootstrap(err.to_string()))?;
        let services = ServiceAllocator::load(store.as_ref(), service_cidr, node_ports)
            .await
            .map_err(EmbeddedError::Services)?;
        let server = server
            .with_pod_node_resolver(resolver)
            .with_rbac(rbac.clone());
        Ok(Self {
            server,
            store,
            rbac,
            services: Arc::new(services),
        })
    }

    /// The bound server (its URL, PKI, tokens and kubeconfig path).
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs the background loops and serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let loops = [
            tokio::spawn(compact_forever(self.store.clone())),
            tokio::spawn(self.rbac.clone().run()),
            tokio::spawn(serviceaccounts::run(
                self.store.clone(),
                self.server.pki().ca_cert_pem().to_string(),
            )),
        ];
        let kubelet = match crate::kubelet::KubeletClient::new(self.server.pki()) {
            Ok(client) => Some(Arc::new(client)),
            Err(err) => {
                tracing::warn!(error = %err, "no kubelet client: pods/log, exec and port-forward are off");
                None
            }
        };
        let state = Arc::new(ApiState {
            store: self.store.clone(),
            kubelet,
            sa_tokens: Some(self.server.sa_tokens().clone()),
            rbac: Some(self.rbac.clone()),
            services: self.services.clone(),
        });
        // Joining node agents get their kubelet serving certificate here.
        let app = router(state).route(
            crate::node_certs::KUBELET_SERVING_CERT_PATH,
            axum::routing::post(crate::node_certs::handle).with_state(self.server.pki().clone()),
        );
        let served = self.server.serve(app, shutdown).await;
        for task in loops {
            task.abort();
        }
        served
    }
}

/// Compacts to the revision of one period ago, every period (what kube-apiserver does).
async fn compact_forever(store: Arc<dyn Store>) {
    let mut previous = None;
    let mut ticker = tokio::time::interval(HISTORY);
    loop {
        ticker.tick().await;
        if let Some(revision) = previous
            && let Err(err) = store.compact(revision).await
        {
            tracing::warn!(error = %err, revision, "compaction failed");
        }
        previous = store.current_revision().await.ok();
    }
}

/// Reads `spec.nodeName` of stored Pods for the node authorizer.
struct StoredPodNodes(Arc<dyn Store>);

impl PodNodeResolver for StoredPodNodes {
    fn pod_node<'a>(&'a self, namespace: &'a str, name: &'a str) -> PodNodeFuture<'a> {
        Box::pin(async move {
            let pods = strata_api::resources::find("", "v1", "pods")?;
            let kv = self
                .0
                .get(&storage::key(pods, Some(namespace), name))
                .await
                .ok()??;
            let pod = storage::decode(&kv).ok()?;
            pod.pointer("/spec/nodeName")?.as_str().map(str::to_string)
        })
    }

    fn object<'a>(
        &'a self,
        plural: &'a str,
        namespace: &'a str,
        name: &'a str,
    ) -> ObjectFuture<'a> {
        Box::pin(async move {
            crate::rest::stored(self.0.as_ref(), plural, namespace, name)
                .await
                .ok()?
        })
    }
}
