//! `strata server`: the Kubernetes-compatible API server on the embedded SQLite store
//! under the data dir ([`strata_apiserver::EmbeddedServer`]); and `strata kubeconfig`.

use std::path::Path;

use anyhow::{Context, Result};
use strata_apiserver::{EmbeddedServer, ServerConfig};

use crate::cli::ServerArgs;

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The multi-threaded async runtime the long-running commands use.
pub fn async_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs the API server until SIGINT or SIGTERM.
pub fn run(data_dir: &Path, args: &ServerArgs) -> Result<u8> {
    async_runtime()?.block_on(async {
        let embedded = start(data_dir, args).await?;
        embedded
            .serve(shutdown_signal())
            .await
            .context("the API server failed")
    })?;
    Ok(0)
}

/// Opens the store and binds the API server as `args` ask, and says where it listens.
pub async fn start(data_dir: &Path, args: &ServerArgs) -> Result<EmbeddedServer> {
    let config = ServerConfig::new(data_dir, args.listen)
        .with_tls_sans(args.tls_san.iter().cloned())
        .with_service_cidr(args.service_cidr)
        .with_service_node_port_range(args.service_node_port_range);
    let embedded = EmbeddedServer::start(config)
        .await
        .context("cannot start the API server")?;
    let server = embedded.server();
    eprintln!(
        "strata: API server listening on {}\nstrata: kubeconfig: {}  (kubectl --kubeconfig {} get ns)",
        server.url(),
        server.kubeconfig_path().display(),
        server.kubeconfig_path().display()
    );
    Ok(embedded)
}

/// Prints the admin kubeconfig.
pub fn kubeconfig(data_dir: &Path) -> Result<u8> {
    let path = data_dir.join("kubeconfig.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (has `strata server` run with this --data-dir?)",
            path.display()
        )
    })?;
    print!("{text}");
    Ok(0)
}
