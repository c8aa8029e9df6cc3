//! Netlink requests inside another network namespace. A netlink socket belongs to the
//! namespace of the thread that opens it, so each call gets a fresh thread that joins the
//! namespace (`setns`), opens its own connection, runs the requests on a single-threaded
//! runtime and ends: the namespace switch never leaks into a thread anyone else uses.

use std::future::Future;
use std::path::Path;

use nix::sched::CloneFlags;

use crate::NetError;

/// Runs `requests` with a netlink handle opened inside the network namespace whose nsfs
/// file (or bind mount of it) is `netns`, and returns what they return.
pub async fn run_in<F, Fut, T>(netns: &Path, requests: F) -> Result<T, NetError>
where
    F: FnOnce(rtnetlink::Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetError>>,
    T: Send + 'static,
{
    let path = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("strata-netns".into())
        .spawn(move || {
            let _ = tx.send(enter_and_run(&path, requests));
        });
    let missing = |what: &str| NetError::Missing(format!("{what} for {}", netns.display()));
    spawned.map_err(|_| missing("cannot start a thread"))?;
    rx.await.map_err(|_| missing("the netlink thread died"))?
}

fn enter_and_run<F, Fut, T>(path: &Path, requests: F) -> Result<T, NetError>
where
    F: FnOnce(rtnetlink::Handle) -> Fut,
    Fut: Future<Output = Result<T, NetError>>,
{
    let netns_error = |source| NetError::Netns {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(netns_error)?;
    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
        .map_err(|errno| netns_error(std::io::Error::from(errno)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(netns_error)?;
    runtime.block_on(async {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(netns_error)?;
        let driver = tokio::spawn(connection);
        let result = requests(handle).await;
        driver.abort();
        result
    })
}
