//! The node lifecycle controller: watches node heartbeats (the agent's Lease in
//! `kube-node-lease` and its Ready condition); a node silent for longer than the grace
//! period gets its conditions set to `Unknown` and the `unreachable` taints, a node
//! whose agent reports not ready gets the `not-ready` taints, and both go when the node
//! is Ready again. The Ready pods of a silent node are marked not ready (so their
//! endpoints stop taking traffic). Pods on a node with `NoExecute` taints they do not tolerate are
//! deleted (at once, or after their `tolerationSeconds`). Decisions are pure
//! ([`health`], [`eviction`]); this module reads the caches and writes.

pub mod eviction;
pub mod health;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use strata_client::events::{EventType, Recorder};

use crate::backoff::Backoff;
use crate::pod_control::DeleteError;
use crate::{ControllerError, ControllerOptions};
use health::Observed;

/// The component name on events.
pub const COMPONENT: &str = "node-controller";

/// Namespace of node Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Kubernetes' `--node-monitor-grace-period`.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(40);

/// A reconcile that could not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cache never became ready.
    #[error("the {cache} cache is not ready")]
    Cache {
        /// `pods` or `leases`.
        cache: &'static str,
        /// Cause.
        #[source]
        source: reflector::store::WriterDropped,
    },
    /// Writing the node's conditions or taints failed.
    #[error("cannot update the {part} of node {node}")]
    Node {
        /// `conditions` or `taints`.
        part: &'static str,
        /// The node.
        node: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Marking a pod not ready failed.
    #[error("cannot mark pod {pod} not ready")]
    Pod {
        /// The pod.
        pod: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Evicting a pod failed.
    #[error(transparent)]
    Evict(#[from] DeleteError),
}

/// What every reconcile shares.
pub struct Context {
    client: kube::Client,
    leases: Store<Lease>,
    pods: Store<Pod>,
    nodes: Store<Node>,
    recorder: Recorder,
    backoff: Backoff,
    grace: Duration,
    /// Heartbeats as last seen, per node; entries of deleted nodes are dropped.
    observed: Mutex<HashMap<String, Observed>>,
}

/// Runs the node lifecycle controller until the future is dropped.
pub async fn run(client: kube::Client, options: ControllerOptions) -> Result<(), ControllerError> {
    let (leases, lease_writer) = reflector::store();
    let lease_events = watcher(
        Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(lease_writer)
    .touched_objects();
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default())
        .with_config(options.runtime_config());
    let nodes = controller.store();
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        leases,
        pods,
        nodes: nodes.clone(),
        backoff: Backoff::default(),
        grace: options.node_grace_period,
        observed: Mutex::new(HashMap::new()),
    });
    controller
        .watches_stream(lease_events, |lease| {
            Some(ObjectRef::new(&lease.name_any()))
        })
        .watches_stream(pod_events, {
            let nodes = nodes.clone();
            move |pod| node_to_evict_from(&nodes, &pod)
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %crate::chain(&err), "node reconcile");
            }
        })
        .await;
    Err(ControllerError::Ended {
        controller: COMPONENT,
    })
}

/// The node of a pod event, when that node has a `NoExecute` taint (only then can the
/// pod need evicting).
fn node_to_evict_from(nodes: &Store<Node>, pod: &Pod) -> Option<ObjectRef<Node>> {
    let name = pod.spec.as_ref()?.node_name.as_deref()?;
    let node = nodes.get(&ObjectRef::new(name))?;
    let tainted = node
        .spec
        .as_ref()?
        .taints
        .iter()
        .flatten()
        .any(|t| t.effect == "NoExecute");
    tainted.then(|| ObjectRef::new(name))
}

fn error_policy(node: Arc<Node>, err: &Error, ctx: Arc<Context>) -> Action {
    crate::retry(&ctx.backoff, node.as_ref(), err)
}

/// One look at one node: judge its heartbeat, write conditions and taints, evict.
async fn reconcile(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, Error> {
    let cache = |cache| move |source| Error::Cache { cache, source };
    ctx.leases
        .wait_until_ready()
        .await
        .map_err(cache("leases"))?;
    ctx.pods.wait_until_ready().await.map_err(cache("pods"))?;
    let name = node.name_any();
    let now = Timestamp::now();
    let renew = ctx
        .leases
        .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE))
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
    let heartbeat = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0));
    let observed = match ctx.observed.lock() {
        Ok(mut map) => {
            let next = Observed::update(map.get(&name), renew, heartbeat, now);
            map.insert(name.clone(), next.clone());
            // Forget nodes that are gone (a controller is not called for deleted objects).
            map.retain(|known, _| {
                *known == name || ctx.nodes.get(&ObjectRef::new(known)).is_some()
            });
            next
        }
        Err(_) => Observed::update(None, renew, heartbeat, now),
    };
    let silent_in = observed.silent_in(ctx.grace, now);
    let api: Api<Node> = Api::all(ctx.client.clone());
    let failed = |part| {
        let node = name.clone();
        move |source| Error::Node { part, node, source }
    };
    let mut ready = health::ready(&node).map(str::to_string);
    let mut version = node.resource_version();
    if silent_in.is_none() {
        if let Some(conditions) = health::silent_conditions(&node, now) {
            let patch = json!({"status": {"conditions": conditions}});
            let written = api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(failed("conditions"))?;
            version = written.resource_version();
            if ready.as_deref() != Some("Unknown") {
                let message = format!("Node {name} status is now: NodeNotReady");
                let reference = node.object_ref(&());
                ctx.recorder
                    .publish(&reference, EventType::Normal, "NodeNotReady", &message)
                    .await;
            }
            ready = Some("Unknown".into());
        }
    }
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if let Some(next) = health::desired_taints(&taints, ready.as_deref(), now) {
        let patch = json!({"metadata": {"resourceVersion": version},
                           "spec": {"taints": next}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(failed("taints"))?;
        taints = next;
    }
    let cached = ctx.pods.state();
    let on_node: Vec<&Pod> = cached
        .iter()
        .map(Arc::as_ref)
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name.as_str()))
        .collect();
    if ready.as_deref() == Some("Unknown") {
        for pod in &on_node {
            mark_not_ready(&ctx, pod, now).await?;
        }
    }
    let evictions = eviction::evictions(&taints, &on_node, now);
    for pod in &evictions.now {
        evict(&ctx, pod).await?;
    }
    ctx.backoff.succeeded(&crate::key(node.as_ref()));
    // Look again when the node would go silent or a toleration runs out.
    let margin = Duration::from_millis(100);
    let next = [silent_in, evictions.next].into_iter().flatten().min();
    Ok(next.map_or_else(Action::await_change, |d| Action::requeue(d + margin)))
}

/// Turns a Ready pod of a silent node not ready (its agent cannot).
async fn mark_not_ready(ctx: &Context, pod: &Pod, now: Timestamp) -> Result<(), Error> {
    let Some(conditions) = health::not_ready_conditions(pod, now) else {
        return Ok(());
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"resourceVersion": pod.resource_version()},
                       "status": {"conditions": conditions}});
    match api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if crate::is_not_found(&err) => Ok(()),
        Err(source) => Err(Error::Pod {
            pod: pod.name_any(),
            source,
        }),
    }
}

/// Deletes a pod for a taint it does not tolerate (any longer).
async fn evict(ctx: &Context, pod: &Pod) -> Result<(), DeleteError> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let message = format!("Marking for deletion Pod {namespace}/{name}");
    ctx.recorder
        .publish(
            &pod.object_ref(&()),
            EventType::Normal,
            "TaintManagerEviction",
            &message,
        )
        .await;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(err) if crate::is_not_found(&err) => Ok(()),
        Err(source) => Err(DeleteError { pod: name, source }),
    }
}
