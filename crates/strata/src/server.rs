//! `strata server`: the Kubernetes-compatible API server on the embedded SQLite store
//! under the data dir, with the built-in namespaces, the namespace finalizer and
//! periodic compaction; and `strata kubeconfig`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use strata_apiserver::rest::{ApiState, router};
use strata_apiserver::{Server, ServerConfig, gc, namespaces};
use strata_store::{SqliteStore, Store};

use crate::cli::ServerArgs;

/// How much history watches can resume from: compaction keeps this much.
const HISTORY: Duration = Duration::from_secs(5 * 60);

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

async fn shutdown_signal() {
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

/// Runs the API server until SIGINT or SIGTERM.
pub fn run(data_dir: &Path, args: &ServerArgs) -> Result<u8> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(data_dir, args.listen, &args.tls_san))?;
    Ok(0)
}

async fn serve(data_dir: &Path, listen: SocketAddr, tls_sans: &[String]) -> Result<()> {
    let db = data_dir.join("state.db");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&db)
            .with_context(|| format!("cannot open the store {}", db.display()))?,
    );
    namespaces::bootstrap(store.as_ref())
        .await
        .context("cannot create the built-in namespaces")?;
    tokio::spawn(namespaces::run_finalizer(store.clone()));
    tokio::spawn(gc::run(store.clone()));
    tokio::spawn(compact_forever(store.clone()));
    let server =
        Server::bind(ServerConfig::new(data_dir, listen).with_tls_sans(tls_sans.iter().cloned()))
            .await
            .context("cannot start the API server")?;
    eprintln!(
        "strata: API server listening on {}\nstrata: kubeconfig: {}  (kubectl --kubeconfig {} get ns)",
        server.url(),
        server.kubeconfig_path().display(),
        server.kubeconfig_path().display()
    );
    let state = Arc::new(ApiState { store });
    server
        .serve(router(state), shutdown_signal())
        .await
        .context("the API server failed")?;
    Ok(())
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
