//! A real API server in-process ([`TestApiServer`]): the same [`EmbeddedServer`] that
//! `strata server` runs, on a temporary data dir and a free loopback port, with kube-rs
//! clients for the admin and for node identities. Shut down on drop; [`TestApiServer::restart`]
//! starts it again over the same data dir.

use std::path::{Path, PathBuf};

use std::sync::Arc;
use strata_apiserver::pki::{Kubeconfig, Pki};
use strata_apiserver::{EmbeddedServer, ServerConfig};

/// An API server serving on `127.0.0.1:<free port>` from a temporary data dir.
pub struct TestApiServer {
    dir: tempfile::TempDir,
    url: String,
    kubeconfig: PathBuf,
    pki: Arc<Pki>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl TestApiServer {
    /// Starts the server in the current tokio runtime (use a multi-threaded test runtime).
    /// Panics when it cannot start: this is test setup.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("strata-api-")
            .tempdir()
            .expect("temporary data dir");
        let launched = launch(dir.path()).await;
        Self {
            dir,
            url: launched.url,
            kubeconfig: launched.kubeconfig,
            pki: launched.pki,
            shutdown: Some(launched.shutdown),
            serving: Some(launched.serving),
        }
    }

    /// Stops the server, waits until it has shut down, and starts it again over the
    /// same data dir (same store and PKI, a new port: make new clients).
    pub async fn restart(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
        let launched = launch(self.dir.path()).await;
        self.url = launched.url;
        self.kubeconfig = launched.kubeconfig;
        self.pki = launched.pki;
        self.shutdown = Some(launched.shutdown);
        self.serving = Some(launched.serving);
    }

    /// The `https://127.0.0.1:<port>` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The data dir (PKI, `state.db`, `kubeconfig.yaml`).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The admin kubeconfig, usable by `kubectl --kubeconfig`.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kube-rs client with the admin's certificate (`system:masters`).
    pub async fn admin_client(&self) -> kube::Client {
        let config =
            Kubeconfig::with_client_cert(&self.url, self.pki.ca_cert_pem(), self.pki.admin());
        client(&config).await
    }

    /// A kube-rs client for node `name` (`system:node:<name>` in `system:nodes`).
    pub async fn node_client(&self, name: &str) -> kube::Client {
        let cert = self.pki.issue_node_cert(name).expect("node certificate");
        client(&Kubeconfig::with_client_cert(
            &self.url,
            self.pki.ca_cert_pem(),
            &cert,
        ))
        .await
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A server serving from `dir` in a task of its own.
struct Launched {
    url: String,
    kubeconfig: PathBuf,
    pki: Arc<Pki>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    serving: tokio::task::JoinHandle<()>,
}

async fn launch(dir: &Path) -> Launched {
    let config = ServerConfig::new(dir, "127.0.0.1:0".parse().expect("address"));
    let embedded = EmbeddedServer::start(config)
        .await
        .expect("the API server starts");
    let url = embedded.server().url();
    let kubeconfig = embedded.server().kubeconfig_path().to_path_buf();
    let pki = embedded.server().pki().clone();
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let _ = embedded
            .serve(async {
                let _ = rx.await;
            })
            .await;
    });
    Launched {
        url,
        kubeconfig,
        pki,
        shutdown,
        serving,
    }
}

async fn client(config: &Kubeconfig) -> kube::Client {
    let yaml = config.to_yaml().expect("kubeconfig YAML");
    strata_client::connect(&yaml).await.expect("kube client")
}
