//! The DaemonSet controller (apps/v1): one pod per eligible node (`nodeSelector`,
//! required node affinity, taints against the pod's and the automatic daemon
//! tolerations), pinned by `matchFields metadata.name` node affinity so that the
//! default scheduler binds it; RollingUpdate (`maxUnavailable`, `maxSurge`) and
//! OnDelete updates by template revision (the `controller-revision-hash` pod label);
//! status counts. Decisions are pure ([`plan`]); this module reads caches and writes.

pub mod placement;
pub mod plan;
pub mod rolling;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use strata_client::events::{EventType, Recorder};

use crate::backoff::Backoff;
use crate::deployment::hash::pod_template_hash;
use crate::deployment::rolling::StrategyError;
use crate::expectations::Expectations;
use crate::pod_control::{ClaimError, DeleteError, PodControl};
use crate::{ControllerError, ControllerOptions, cache, pods};

/// The component name on events.
pub const COMPONENT: &str = "daemonset-controller";

/// How long to wait before checking again while expectations are unmet.
const EXPECTATION_RECHECK: Duration = Duration::from_secs(5);

/// A reconcile that could not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cache never became ready.
    #[error("the {cache} cache is not ready")]
    Cache {
        /// `pods` or `nodes`.
        cache: &'static str,
        /// Cause.
        #[source]
        source: reflector::store::WriterDropped,
    },
    /// The rolling update parameters cannot be used.
    #[error("daemon set {daemon_set} has an invalid rolling update strategy")]
    Strategy {
        /// `namespace/name`.
        daemon_set: String,
        /// Cause.
        #[source]
        source: StrategyError,
    },
    /// Adopting or releasing a pod failed.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// Creating pods failed.
    #[error("cannot create pods for daemon set {daemon_set}")]
    Create {
        /// `namespace/name`.
        daemon_set: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting a pod failed.
    #[error(transparent)]
    Delete(#[from] DeleteError),
    /// Writing the status failed.
    #[error("cannot update the status of daemon set {daemon_set}")]
    Status {
        /// `namespace/name`.
        daemon_set: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// What every reconcile shares.
pub struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    recorder: Recorder,
    expectations: Arc<Expectations>,
    backoff: Backoff,
}

/// Runs the DaemonSet controller until the future is dropped.
pub async fn run(client: kube::Client, options: ControllerOptions) -> Result<(), ControllerError> {
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let (nodes, node_writer) = reflector::store();
    let node_events = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(node_writer)
        .touched_objects();
    let controller = Controller::new(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(options.runtime_config());
    let sets = controller.store();
    let every_set = sets.clone();
    let expectations = Arc::new(Expectations::default());
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        pods,
        nodes,
        expectations: Arc::clone(&expectations),
        backoff: Backoff::default(),
    });
    controller
        .watches_stream(pod_events, move |pod| {
            expectations.observe(&pod);
            cache::owners_of(&sets, &pod.metadata, |ds: &DaemonSet| {
                ds.spec.as_ref().map(|s| &s.selector)
            })
        })
        // A node that comes, goes or changes labels or taints concerns every set.
        .watches_stream(node_events, move |_| {
            every_set
                .state()
                .iter()
                .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                .collect::<Vec<_>>()
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %crate::chain(&err), "daemon set reconcile");
            }
        })
        .await;
    Err(ControllerError::Ended {
        controller: COMPONENT,
    })
}

fn error_policy(ds: Arc<DaemonSet>, err: &Error, ctx: Arc<Context>) -> Action {
    crate::retry(&ctx.backoff, ds.as_ref(), err)
}

/// The revision hash of the set's current template.
fn revision_hash(ds: &DaemonSet) -> String {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let collisions = ds.status.as_ref().and_then(|s| s.collision_count);
    pod_template_hash(&template, collisions)
}

/// One sync of one daemon set: claim, place, roll, report.
async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let cache_error = |cache| move |source| Error::Cache { cache, source };
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(cache_error("pods"))?;
    ctx.nodes
        .wait_until_ready()
        .await
        .map_err(cache_error("nodes"))?;
    let key = crate::key(ds.as_ref());
    let namespace = ds.namespace().unwrap_or_default();
    let cached = ctx.pods.state();
    let in_namespace = cache::in_namespace(&cached, &namespace);
    let node_cache = ctx.nodes.state();
    let nodes: Vec<&Node> = node_cache.iter().map(Arc::as_ref).collect();
    let met = ctx.expectations.satisfied_by(&key, &in_namespace);
    let hash = revision_hash(&ds);
    let reference = ds.object_ref(&());
    let plan = match plan::plan(&ds, &nodes, &in_namespace, &hash, Timestamp::now(), met) {
        Ok(plan) => plan,
        Err(source) => {
            let message = format!("Cannot roll out: {source}");
            ctx.recorder
                .publish(&reference, EventType::Warning, "InvalidStrategy", &message)
                .await;
            return Err(Error::Strategy {
                daemon_set: key,
                source,
            });
        }
    };
    let control = PodControl {
        api: Api::namespaced(ctx.client.clone(), &namespace),
        recorder: &ctx.recorder,
        expectations: &ctx.expectations,
        key: &key,
        reference: &reference,
    };
    let owner = pods::controller_ref("apps/v1", "DaemonSet", &ds.metadata);
    control.claim(&owner, &plan.adopt, &plan.release).await?;
    control.delete(&plan.delete).await?;
    let new_pods: Vec<Pod> = plan
        .create
        .iter()
        .map(|node| pod_for(&ds, &hash, node))
        .collect();
    let created = control.create(&new_pods).await;
    if ds.status.as_ref() != Some(&plan.status) {
        let mut updated = (*ds).clone();
        updated.status = Some(plan.status);
        let sets: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &namespace);
        sets.replace_status(&ds.name_any(), &PostParams::default(), &updated)
            .await
            .map_err(|source| Error::Status {
                daemon_set: key.clone(),
                source,
            })?;
    }
    created.map_err(|source| Error::Create {
        daemon_set: key.clone(),
        source,
    })?;
    ctx.backoff.succeeded(&key);
    if !met {
        return Ok(Action::requeue(EXPECTATION_RECHECK));
    }
    Ok(plan.requeue_after.map_or_else(crate::idle, |d| {
        Action::requeue(d + Duration::from_millis(100))
    }))
}

/// The daemon pod for `node`: the template with the revision label, the automatic
/// tolerations and the node affinity that pins it to the node.
fn pod_for(ds: &DaemonSet, hash: &str, node: &str) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let owner = pods::controller_ref("apps/v1", "DaemonSet", &ds.metadata);
    let mut pod = pods::from_template(template, &ds.metadata, owner);
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(plan::REVISION_HASH.to_string(), hash.to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    placement::add_tolerations(spec);
    placement::pin_to_node(spec, node);
    pod
}
