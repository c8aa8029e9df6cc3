//! The garbage collector (kube-controller-manager's `garbagecollector`): watches every
//! resource the server serves, keeps the graph of `ownerReferences` ([`graph`]), and
//! acts through the API ([`act`]). A dependent none of whose owners keeps it is deleted
//! (background propagation); an owner with the `orphan` finalizer has its dependents
//! released first; one with `foregroundDeletion` loses that finalizer once its
//! `blockOwnerDeletion` dependents are gone, which they are made to be.
//!
//! Limits: one worker acts on one object at a time, in the order its watches report
//! them; owners the graph does not know are verified with a GET before anything is
//! deleted (Kubernetes' `absentOwnerCache` plays the same part).
//!
//! Nothing is collected before every resource's first list is complete (a partial graph
//! would take owners for absent). While that waits, a warning every
//! [`SYNC_REPORT`] names the resources still unlisted, and failing watches are warned
//! about (at most once a minute per resource), so a stalled collector says why.

pub mod act;
pub mod graph;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt, stream};
use kube::api::{Api, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use strata_api::resources::{RESOURCES, Resource};
use strata_client::events::Recorder;
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::{ControllerError, ControllerOptions};
use graph::{DependentStep, Graph, Node, OwnerState, OwnerStep};

pub use act::Error;

/// The component name on events.
pub const COMPONENT: &str = "garbage-collector-controller";

/// How many owner uids known to be gone are remembered (uids are never reused).
const ABSENT_CACHE: usize = 10_000;

/// How often the resources whose first list is not complete are named while the
/// collector waits for them.
pub const SYNC_REPORT: Duration = Duration::from_secs(30);

/// The least time between two warnings about one resource's failing watch.
const WATCH_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// One watch event, with the resource it is of.
type Tagged = (
    &'static Resource,
    Result<watcher::Event<DynamicObject>, watcher::Error>,
);

/// Runs the garbage collector until the future is dropped. It has one worker, so
/// `options.concurrency` does not apply to it.
pub async fn run(client: kube::Client, _options: ControllerOptions) -> Result<(), ControllerError> {
    let watches = RESOURCES.iter().map(|resource| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &act::api_resource(resource));
        watcher(api, watcher::Config::default())
            .default_backoff()
            .map(move |event| (resource, event))
            .boxed()
    });
    let mut events = stream::select_all(watches);
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<String>();
    let mut collector = Collector {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        graph: Graph::default(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        listing: Vec::new(),
        synced: Vec::new(),
        absent: HashSet::new(),
        backoff: Backoff::default(),
        watch_warnings: HashMap::new(),
    };
    let mut sync_report = tokio::time::Instant::now() + SYNC_REPORT;
    loop {
        if collector.synced.len() == RESOURCES.len()
            && let Some(uid) = collector.queue.pop_front()
        {
            collector.queued.remove(&uid);
            if let Err(err) = collector.process(&uid).await {
                let delay = collector.backoff.failed(&uid);
                // A conflict only means the object changed since it was read: routine.
                if crate::is_conflict(&err) {
                    tracing::debug!(uid = %uid, retry_in = ?delay, "stale object, retrying");
                } else {
                    tracing::warn!(error = %crate::chain(&err), uid = %uid, retry_in = ?delay, "garbage collection failed");
                }
                let tx = retry_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(uid);
                });
            } else {
                collector.backoff.succeeded(&uid);
            }
            // Take in what the watches saw meanwhile before the next decision.
            while let Some(Some(event)) = events.next().now_or_never() {
                collector.observe(event);
            }
            continue;
        }
        tokio::select! {
            event = events.next() => match event {
                Some(event) => collector.observe(event),
                None => return Err(ControllerError::Ended { controller: COMPONENT }),
            },
            Some(uid) = retry_rx.recv() => collector.enqueue([uid]),
            () = tokio::time::sleep_until(sync_report), if collector.synced.len() < RESOURCES.len() => {
                let waiting: Vec<&str> = RESOURCES
                    .iter()
                    .filter(|r| !collector.synced.contains(r))
                    .map(|r| r.plural)
                    .collect();
                tracing::warn!(resources = %waiting.join(", "), "garbage collection waits for the first list of these resources");
                sync_report = tokio::time::Instant::now() + SYNC_REPORT;
            }
        }
    }
}

/// The garbage collector's state: its graph and its queue of uids to look at.
struct Collector {
    client: kube::Client,
    recorder: Recorder,
    graph: Graph,
    queue: VecDeque<String>,
    queued: HashSet<String>,
    /// Uids seen by watches that are re-listing, per resource.
    listing: Vec<(&'static Resource, HashSet<String>)>,
    /// Resources whose first list is complete.
    synced: Vec<&'static Resource>,
    absent: HashSet<String>,
    backoff: Backoff,
    /// When each resource's failing watch was last warned about.
    watch_warnings: HashMap<&'static str, std::time::Instant>,
}

impl Collector {
    fn enqueue(&mut self, uids: impl IntoIterator<Item = String>) {
        for uid in uids {
            if self.queued.insert(uid.clone()) {
                self.queue.push_back(uid);
            }
        }
    }

    /// Folds one watch event into the graph and queues what it touched.
    fn observe(&mut self, (resource, event): Tagged) {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                let now = std::time::Instant::now();
                let last = self.watch_warnings.get(resource.plural);
                if last.is_none_or(|at| now.duration_since(*at) >= WATCH_WARNING_INTERVAL) {
                    self.watch_warnings.insert(resource.plural, now);
                    tracing::warn!(error = %err, resource = %resource.plural, "watch failed; retrying");
                } else {
                    tracing::debug!(error = %err, resource = %resource.plural, "watch failed; retrying");
                }
                return;
            }
        };
        match event {
            watcher::Event::Init => {
                self.listing.retain(|(r, _)| r != &resource);
                self.listing.push((resource, HashSet::new()));
            }
            watcher::Event::InitApply(object) => {
                if let Some((_, seen)) = self.listing.iter_mut().find(|(r, _)| r == &resource)
                    && let Some(uid) = object.metadata.uid.clone()
                {
                    seen.insert(uid);
                }
                self.apply(resource, &object);
            }
            watcher::Event::InitDone => {
                // Objects deleted while the watch was down are gone from the new list.
                if let Some(i) = self.listing.iter().position(|(r, _)| r == &resource) {
                    let (_, seen) = self.listing.swap_remove(i);
                    let touched = self.graph.relisted(resource, &seen);
                    self.enqueue(touched);
                }
                if !self.synced.contains(&resource) {
                    self.synced.push(resource);
                }
            }
            watcher::Event::Apply(object) => self.apply(resource, &object),
            watcher::Event::Delete(object) => {
                if let Some(uid) = object.metadata.uid.as_deref() {
                    let touched = self.graph.remove(uid);
                    self.enqueue(touched);
                }
            }
        }
    }

    fn apply(&mut self, resource: &'static Resource, object: &DynamicObject) {
        if let Some(node) = Node::of(resource, object) {
            let touched = self.graph.upsert(node);
            self.enqueue(touched);
        }
    }

    /// Looks at one object as an owner being deleted and as a dependent.
    async fn process(&mut self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.graph.get(uid).cloned() else {
            return Ok(());
        };
        match graph::owner_step(&self.graph, &node) {
            OwnerStep::Orphan(dependents) => {
                for dependent in &dependents {
                    act::release(&self.client, dependent, std::slice::from_ref(&node.id.uid))
                        .await?;
                }
                act::remove_finalizer(&self.client, &node.id, graph::ORPHAN).await?;
            }
            OwnerStep::Finish => {
                act::remove_finalizer(&self.client, &node.id, graph::FOREGROUND).await?;
            }
            OwnerStep::Wait | OwnerStep::Nothing => {}
        }
        if node.deleting || node.owners.is_empty() {
            return Ok(());
        }
        let mut owners = Vec::with_capacity(node.owners.len());
        for owner in &node.owners {
            let state = match self.graph.get(&owner.uid) {
                Some(o) if o.waits_for_dependents() => OwnerState::Waiting,
                Some(_) => OwnerState::Solid,
                None if self.absent.contains(&owner.uid) => OwnerState::Dangling,
                None => {
                    let state =
                        act::owner_state(&self.client, &self.recorder, &node.id, owner).await?;
                    if state == OwnerState::Dangling {
                        if self.absent.len() >= ABSENT_CACHE {
                            self.absent.clear();
                        }
                        self.absent.insert(owner.uid.clone());
                    }
                    state
                }
            };
            owners.push((owner.clone(), state));
        }
        let has_dependents = self.graph.dependents(uid).next().is_some();
        match graph::dependent_step(&node, &owners, has_dependents) {
            DependentStep::Nothing => Ok(()),
            DependentStep::Release(uids) => act::release(&self.client, &node.id, &uids).await,
            DependentStep::Delete(propagation) => {
                tracing::debug!(object = %act::describe(&node.id), ?propagation, "collecting garbage");
                act::delete(&self.client, &node.id, propagation).await
            }
        }
    }
}
