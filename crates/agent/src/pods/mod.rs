//! The pods bound to this node: a watch on them (`spec.nodeName=<node>`) feeding one
//! [`worker::Worker`] task per pod, poked on every change of its pod and otherwise
//! resyncing every second (how the agent notices container exits, like the kubelet's
//! PLEG relist). Containers found on disk at start are adopted by their pod's worker, or
//! removed when their pod is gone.

pub mod actions;
pub mod atomic_writer;
pub mod cgroup;
pub mod dns;
pub mod downward;
mod insecure_tls;
pub mod prober;
pub mod projected;
pub mod service_env;
pub mod status;
pub mod tokens;
pub mod translate;
pub mod volumes;
pub mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;

use crate::{AgentError, Context};
use worker::{CONTAINER_NAME_LABEL, Next, POD_UID_LABEL, Worker};

type Pods = Arc<Mutex<HashMap<String, Pod>>>;
type Workers = Arc<Mutex<HashMap<String, mpsc::Sender<()>>>>;

/// Attempts of each container of each pod found on disk: uid → name → latest attempt.
fn index_containers(ctx: &Context) -> HashMap<String, BTreeMap<String, u32>> {
    let mut index: HashMap<String, BTreeMap<String, u32>> = HashMap::new();
    for entry in ctx.containers.list().unwrap_or_default() {
        let labels = &entry.meta.labels;
        let (Some(uid), Some(name)) = (labels.get(POD_UID_LABEL), labels.get(CONTAINER_NAME_LABEL))
        else {
            continue;
        };
        let Some(attempt) = entry
            .meta
            .id
            .rsplit('-')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let latest = index
            .entry(uid.clone())
            .or_default()
            .entry(name.clone())
            .or_insert(attempt);
        *latest = (*latest).max(attempt);
    }
    index
}

/// Runs the pods of this node until the future is dropped.
pub async fn run(ctx: Arc<Context>) -> Result<(), AgentError> {
    let index = {
        let ctx = ctx.clone();
        tokio::task::spawn_blocking(move || index_containers(&ctx))
            .await
            .unwrap_or_default()
    };
    let mut on_disk = index;
    let pods: Pods = Arc::default();
    let workers: Workers = Arc::default();
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.options.node_name));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(error = %err, "pod watch failed; retrying");
                continue;
            }
        };
        match event {
            Event::Init => listed.clear(),
            Event::InitApply(pod) | Event::Apply(pod) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                listed.insert(uid.clone());
                lock(&pods).insert(uid.clone(), pod);
                poke(
                    &ctx,
                    &pods,
                    &workers,
                    &uid,
                    on_disk.remove(&uid).unwrap_or_default(),
                );
            }
            Event::Delete(pod) => {
                let Some(uid) = pod.metadata.uid.clone() else {
                    continue;
                };
                lock(&pods).remove(&uid);
                poke(&ctx, &pods, &workers, &uid, BTreeMap::new());
            }
            Event::InitDone => {
                // Pods that vanished while the watch was down, and containers of pods
                // that no longer exist: their workers tear them down.
                let gone: Vec<String> = lock(&pods)
                    .keys()
                    .filter(|uid| !listed.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    lock(&pods).remove(&uid);
                    poke(&ctx, &pods, &workers, &uid, BTreeMap::new());
                }
                let orphans: Vec<(String, BTreeMap<String, u32>)> = on_disk.drain().collect();
                for (uid, attempts) in orphans {
                    if !listed.contains(&uid) {
                        poke(&ctx, &pods, &workers, &uid, attempts);
                    }
                }
            }
        }
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Wakes the worker of `uid`, starting one (with the attempts found on disk) if none runs.
fn poke(
    ctx: &Arc<Context>,
    pods: &Pods,
    workers: &Workers,
    uid: &str,
    attempts: BTreeMap<String, u32>,
) {
    let mut running = lock(workers);
    // A full channel already holds a poke: the worker will sync.
    if let Some(tx) = running.get(uid)
        && matches!(
            tx.try_send(()),
            Ok(()) | Err(mpsc::error::TrySendError::Full(()))
        )
    {
        return;
    }
    let (tx, mut rx) = mpsc::channel::<()>(1);
    running.insert(uid.to_string(), tx);
    let mut worker = Worker::new(ctx.clone(), uid.to_string(), attempts);
    let (pods, workers, uid) = (pods.clone(), workers.clone(), uid.to_string());
    tokio::spawn(async move {
        loop {
            let pod = lock(&pods).get(&uid).cloned();
            match worker.sync(pod).await {
                Next::Done => break,
                Next::After(wait) => {
                    tokio::select! {
                        _ = rx.recv() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        lock(&workers).remove(&uid);
    });
}
