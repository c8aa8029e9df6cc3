//! The Job controller (batch/v1): runs a Job's pods to `completions` successes with at
//! most `parallelism` at once (NonIndexed, or Indexed with one pod per completion
//! index), retries failed pods with an exponential back-off up to `backoffLimit`,
//! enforces `activeDeadlineSeconds`, suspends and resumes, reports status and
//! conditions like Kubernetes 1.33, and deletes finished Jobs after
//! `ttlSecondsAfterFinished` (Kubernetes' TTL-after-finished controller). Decisions are
//! pure ([`plan`]); this module reads the caches and carries them out.

pub mod conditions;
pub mod indexed;
pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use strata_client::events::{EventType, Recorder};

use crate::backoff::Backoff;
use crate::expectations::Expectations;
use crate::pod_control::{ClaimError, DeleteError, PodControl};
use crate::{ControllerError, ControllerOptions, cache, pods};
pub use plan::FailureBackoff;

/// The component name on events.
pub const COMPONENT: &str = "job-controller";

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
    /// Creating pods failed.
    #[error("cannot create pods for job {job}")]
    Create {
        /// `namespace/name` of the Job.
        job: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting a pod failed.
    #[error(transparent)]
    Delete(#[from] DeleteError),
    /// Writing the status failed.
    #[error("cannot update the status of job {job}")]
    Status {
        /// `namespace/name` of the Job.
        job: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting the Job after its TTL failed.
    #[error("cannot delete finished job {job}")]
    DeleteJob {
        /// `namespace/name` of the Job.
        job: String,
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
    failure_backoff: FailureBackoff,
}

/// Runs the Job controller until the future is dropped.
pub async fn run(client: kube::Client, options: ControllerOptions) -> Result<(), ControllerError> {
    let (pods, writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .touched_objects();
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .with_config(options.runtime_config());
    let jobs = controller.store();
    let expectations = Arc::new(Expectations::default());
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        pods,
        expectations: Arc::clone(&expectations),
        backoff: Backoff::default(),
        failure_backoff: options.job_failure_backoff,
    });
    controller
        .watches_stream(pod_events, move |pod| {
            expectations.observe(&pod);
            cache::owners_of(&jobs, &pod.metadata, |job: &Job| {
                job.spec.as_ref()?.selector.as_ref()
            })
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %crate::chain(&err), "job reconcile");
            }
        })
        .await;
    Err(ControllerError::Ended {
        controller: COMPONENT,
    })
}

fn error_policy(job: Arc<Job>, err: &Error, ctx: Arc<Context>) -> Action {
    crate::retry(&ctx.backoff, job.as_ref(), err)
}

/// One sync of one Job: claim pods, create or delete, report, expire.
async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.pods.wait_until_ready().await.map_err(Error::PodCache)?;
    let key = crate::key(job.as_ref());
    let namespace = job.namespace().unwrap_or_default();
    let cached = ctx.pods.state();
    let in_namespace = cache::in_namespace(&cached, &namespace);
    let met = ctx.expectations.satisfied_by(&key, &in_namespace);
    let plan = plan::plan(
        &job,
        &in_namespace,
        Timestamp::now(),
        met,
        &ctx.failure_backoff,
    );
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    if plan.delete_job {
        return delete_finished(&jobs, &job, &key).await;
    }
    let reference = job.object_ref(&());
    let control = PodControl {
        api: Api::namespaced(ctx.client.clone(), &namespace),
        recorder: &ctx.recorder,
        expectations: &ctx.expectations,
        key: &key,
        reference: &reference,
    };
    let owner = pods::controller_ref("batch/v1", "Job", &job.metadata);
    control.claim(&owner, &plan.adopt, &plan.release).await?;
    control.delete(&plan.delete).await?;
    let created = control.create(&pods_for(&job, &plan.create)).await;
    for event in &plan.events {
        let kind = if event.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.recorder
            .publish(&reference, kind, event.reason, event.message)
            .await;
    }
    if job.status.as_ref() != Some(&plan.status) {
        let mut updated = (*job).clone();
        updated.status = Some(plan.status);
        jobs.replace_status(&job.name_any(), &PostParams::default(), &updated)
            .await
            .map_err(|source| Error::Status {
                job: key.clone(),
                source,
            })?;
    }
    created.map_err(|source| Error::Create {
        job: key.clone(),
        source,
    })?;
    ctx.backoff.succeeded(&key);
    if !met {
        return Ok(Action::requeue(EXPECTATION_RECHECK));
    }
    Ok(plan.requeue_after.map_or_else(crate::idle, Action::requeue))
}

/// Deletes a Job whose TTL after finishing ran out, with its pods in the background.
async fn delete_finished(jobs: &Api<Job>, job: &Job, key: &str) -> Result<Action, Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match jobs.delete(&job.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(err) if crate::is_not_found(&err) => Ok(Action::await_change()),
        Err(source) => Err(Error::DeleteJob {
            job: key.to_string(),
            source,
        }),
    }
}

/// The pods to create: the template with the Job's controller reference, one per
/// entry of `indexes` (a completion index, or `None` for NonIndexed Jobs).
fn pods_for(job: &Job, indexes: &[Option<i32>]) -> Vec<Pod> {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let owner = pods::controller_ref("batch/v1", "Job", &job.metadata);
    let pod = pods::from_template(template, &job.metadata, owner);
    indexes
        .iter()
        .map(|index| {
            let mut pod = pod.clone();
            if let Some(i) = index {
                indexed::set_index(job, &mut pod, *i);
            }
            pod
        })
        .collect()
}
