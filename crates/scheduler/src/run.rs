//! The thin loop: feeds Node and Pod watch events into the [`Cache`], takes decisions off it,
//! and runs their API calls (bindings, unschedulable reports) as concurrent tasks so one
//! binding's round trip never holds up the next decision.
//!
//! One watch covers all pods (like kube-scheduler's pod informer) rather than one for
//! pending and one for bound pods: a pod's move from pending to bound then arrives in
//! order on one stream, which is what confirming an assumed pod relies on.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use strata_client::events::Recorder;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bind;
use crate::cache::{BindOutcome, Cache, Work};
use crate::events::Events;
use crate::score::Weights;

/// The name pods ask for in `spec.schedulerName` (empty means this one too).
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// The `spec.schedulerName` this scheduler serves, and the events' component.
    pub scheduler_name: String,
    /// The most binding calls in flight at once.
    pub max_in_flight_bindings: usize,
    /// Score weights.
    pub weights: Weights,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_string(),
            max_in_flight_bindings: 64,
            weights: Weights::default(),
        }
    }
}

/// Why the scheduler stopped.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The Node watch stream ended (it retries errors with backoff, so this is unexpected).
    #[error("the node watch ended")]
    NodeWatchEnded,
    /// The Pod watch stream ended.
    #[error("the pod watch ended")]
    PodWatchEnded,
}

/// A binding call's result, sent back to the loop.
struct Done {
    key: String,
    node: String,
    outcome: BindOutcome,
}

/// Runs the scheduler until the returned future is dropped (spawned tasks go with it).
///
/// Nothing is scheduled until both watches have listed everything once, so decisions never
/// see a partial cluster.
pub async fn run(client: kube::Client, options: SchedulerOptions) -> Result<(), SchedulerError> {
    let mut nodes = watcher::watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut pods = watcher::watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut tasks = JoinSet::new();
    let events = Events::start(
        Recorder::new(client.clone(), &options.scheduler_name, None),
        &mut tasks,
    );
    let limit = Arc::new(Semaphore::new(options.max_in_flight_bindings.max(1)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut cache = Cache::new(&options.scheduler_name, options.weights);
    let (mut nodes_synced, mut pods_synced) = (false, false);
    tracing::info!(scheduler = %options.scheduler_name, "scheduler starting");
    loop {
        let wake = cache
            .next_wakeup()
            .map(Instant::from_std)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let ready = nodes_synced && pods_synced && cache.has_work();
        tokio::select! {
            biased;
            event = nodes.next() => match event {
                Some(Ok(event)) => {
                    let now = std::time::Instant::now();
                    match event {
                        Event::Apply(node) | Event::InitApply(node) => cache.node_applied(&node, now),
                        Event::Delete(node) => cache.node_deleted(&node),
                        Event::Init => cache.nodes_relisting(),
                        Event::InitDone => {
                            cache.nodes_relisted();
                            nodes_synced = true;
                        }
                    }
                }
                Some(Err(error)) => tracing::warn!(%error, "node watch failed; retrying"),
                None => return Err(SchedulerError::NodeWatchEnded),
            },
            event = pods.next() => match event {
                Some(Ok(event)) => {
                    let now = std::time::Instant::now();
                    match event {
                        Event::Apply(pod) | Event::InitApply(pod) => cache.pod_applied(pod, now),
                        Event::Delete(pod) => cache.pod_deleted(&pod, now),
                        Event::Init => cache.pods_relisting(),
                        Event::InitDone => {
                            cache.pods_relisted(now);
                            pods_synced = true;
                        }
                    }
                }
                Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying"),
                None => return Err(SchedulerError::PodWatchEnded),
            },
            Some(done) = done_rx.recv() => {
                cache.bound(&done.key, &done.node, done.outcome, std::time::Instant::now());
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {},
            () = tokio::time::sleep_until(wake) => cache.tick(std::time::Instant::now()),
            () = std::future::ready(()), if ready => {
                let Some(work) = cache.next(std::time::Instant::now()) else {
                    continue;
                };
                dispatch(work, &client, &events, &limit, &done_tx, &mut tasks);
            },
        }
    }
}

/// Starts the API calls for one decision as a task.
fn dispatch(
    work: Work,
    client: &kube::Client,
    events: &Events,
    limit: &Arc<Semaphore>,
    done: &mpsc::UnboundedSender<Done>,
    tasks: &mut JoinSet<()>,
) {
    let client = client.clone();
    let events = events.clone();
    match work {
        Work::Bind { pod, node } => {
            let limit = Arc::clone(limit);
            let done = done.clone();
            tasks.spawn(async move {
                let key = format!(
                    "{}/{}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name.as_deref().unwrap_or_default()
                );
                let outcome = match limit.acquire_owned().await {
                    Ok(_permit) => bind::bind(&client, &pod, &node).await,
                    Err(_) => BindOutcome::Failed,
                };
                tracing::debug!(pod = %key, %node, ?outcome, "binding done");
                let _ = done.send(Done {
                    key,
                    node: node.clone(),
                    outcome,
                });
                if outcome == BindOutcome::Bound {
                    bind::scheduled(&events, &pod, &node);
                }
            });
        }
        Work::Unschedulable { pod, message } | Work::Invalid { pod, message } => {
            tracing::info!(
                pod = pod.metadata.name.as_deref().unwrap_or_default(),
                %message,
                "pod is unschedulable"
            );
            tasks.spawn(async move {
                bind::unschedulable(&client, &events, &pod, &message).await;
            });
        }
    }
}
