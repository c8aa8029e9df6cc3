//! The ReplicaSet controller: keeps `spec.replicas` pods of the template running,
//! adopting and releasing pods by selector, and reports counts in the status. The
//! decisions are pure ([`plan`]); this module reads the caches and carries them out.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use strata_client::events::Recorder;

use crate::backoff::Backoff;
use crate::expectations::Expectations;
use crate::pod_control::{ClaimError, DeleteError, PodControl};
use crate::{ControllerError, ControllerOptions, cache, pods};
use plan::Failure;

/// The component name on events.
pub const COMPONENT: &str = "replicaset-controller";

/// How long to wait before checking again while expectations are unmet.
const EXPECTATION_RECHECK: Duration = Duration::from_secs(5);

/// A reconcile that could not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pod cache never became ready.
    #[error("the pod cache is not ready")]
    PodCache(#[source] reflector::store::WriterDropped),
    /// Adopting or releasing a pod failed.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// Creating pods failed (reported as `FailedCreate` and a `ReplicaFailure` condition).
    #[error("cannot create pods for replica set {replica_set}")]
    Create {
        /// `namespace/name` of the replica set.
        replica_set: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting a pod failed.
    #[error(transparent)]
    Delete(DeleteError),
    /// Writing the status failed.
    #[error("cannot update the status of replica set {replica_set}")]
    Status {
        /// `namespace/name` of the replica set.
        replica_set: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// What every reconcile shares.
pub struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    recorder: Recorder,
    expectations: Arc<Expectations>,
    backoff: Backoff,
}

/// Runs the ReplicaSet controller until the future is dropped.
pub async fn run(client: kube::Client, options: ControllerOptions) -> Result<(), ControllerError> {
    let (pods, writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    let controller = Controller::new(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(options.runtime_config());
    let sets = controller.store();
    let expectations = Arc::new(Expectations::default());
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        pods,
        expectations: Arc::clone(&expectations),
        backoff: Backoff::default(),
    });
    controller
        .watches_stream(pod_events, move |pod| {
            expectations.observe(&pod);
            cache::owners_of(&sets, &pod.metadata, |rs: &ReplicaSet| {
                rs.spec.as_ref().map(|s| &s.selector)
            })
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %crate::chain(&err), "replica set reconcile");
            }
        })
        .await;
    Err(ControllerError::Ended {
        controller: COMPONENT,
    })
}

fn error_policy(rs: Arc<ReplicaSet>, err: &Error, ctx: Arc<Context>) -> Action {
    crate::retry(&ctx.backoff, rs.as_ref(), err)
}

/// One sync of one replica set: claim pods, create or delete the difference, report.
async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.pods.wait_until_ready().await.map_err(Error::PodCache)?;
    let key = crate::key(rs.as_ref());
    let namespace = rs.namespace().unwrap_or_default();
    let cached = ctx.pods.state();
    let in_namespace = cache::in_namespace(&cached, &namespace);
    let met = ctx.expectations.satisfied_by(&key, &in_namespace);
    let plan = plan::plan(&rs, &in_namespace, met);
    let reference = rs.object_ref(&());
    let control = PodControl {
        api: Api::namespaced(ctx.client.clone(), &namespace),
        recorder: &ctx.recorder,
        expectations: &ctx.expectations,
        key: &key,
        reference: &reference,
    };
    let owner = pods::controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
    control.claim(&owner, &plan.adopt, &plan.release).await?;
    let mut failure = None;
    let mut result = Ok(());
    if plan.create > 0 {
        let pods = vec![pod_for(&rs); plan.create];
        if let Err(source) = control.create(&pods).await {
            failure = Some(Failure {
                reason: "FailedCreate",
                message: source.to_string(),
            });
            result = Err(Error::Create {
                replica_set: key.clone(),
                source,
            });
        }
    }
    if !plan.delete.is_empty() {
        if let Err(err) = control.delete(&plan.delete).await {
            failure = Some(Failure {
                reason: "FailedDelete",
                message: err.source.to_string(),
            });
            result = Err(Error::Delete(err));
        }
    }
    let now = Timestamp::now();
    let status = plan::status(&rs, &plan, failure.as_ref(), now);
    if rs.status.as_ref() != Some(&status) {
        let mut updated = (*rs).clone();
        updated.status = Some(status);
        let sets: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
        sets.replace_status(&rs.name_any(), &PostParams::default(), &updated)
            .await
            .map_err(|source| Error::Status {
                replica_set: key.clone(),
                source,
            })?;
    }
    result?;
    ctx.backoff.succeeded(&key);
    if !met {
        return Ok(Action::requeue(EXPECTATION_RECHECK));
    }
    Ok(match plan::recheck_after(&rs, &plan.active, now) {
        Some(delay) => Action::requeue(delay),
        None => crate::idle(),
    })
}

/// A pod for the replica set's template, named `<set>-<random>` by the API server.
fn pod_for(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let owner = pods::controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
    pods::from_template(template, &rs.metadata, owner)
}
