//! What every in-cluster component of Strata (scheduler, controllers, agent) shares about
//! talking to the API server: [`connect`] builds a kube-rs client from a kubeconfig, and
//! [`events::Recorder`] reports what happened as core/v1 Events that `kubectl describe`
//! and `kubectl get events` show.

pub mod events;

use std::path::{Path, PathBuf};

pub use events::Recorder;

/// Errors of building a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig file could not be read.
    #[error("cannot read the kubeconfig {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The kubeconfig is not valid.
    #[error("the kubeconfig is not valid")]
    Kubeconfig(#[source] kube::config::KubeconfigError),
    /// The client could not be built (TLS material, URL).
    #[error("cannot build the API client")]
    Client(#[source] kube::Error),
}

/// A client for the current context of the kubeconfig in `yaml`.
pub async fn connect(yaml: &str) -> Result<kube::Client, ClientError> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml).map_err(ClientError::Kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(ClientError::Kubeconfig)?;
    kube::Client::try_from(config).map_err(ClientError::Client)
}

/// A client for the current context of the kubeconfig file at `path`.
pub async fn connect_file(path: &Path) -> Result<kube::Client, ClientError> {
    let yaml = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| ClientError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    connect(&yaml).await
}
