//! The ReplicaSet controller: keeps `spec.replicas` pods of the template running,
//! adopting and releasing pods by selector, and reports counts in the status. The
//! decisions are pure ([`plan`]); this module reads the caches and carries them out.

pub mod plan;
pub mod rank;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use strata_client::events::{EventType, Recorder};

use crate::backoff::Backoff;
use crate::expectations::{Expectations, Seen};
use crate::{ControllerError, ControllerOptions, pods};
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
    /// Writing the controller reference on an orphan failed.
    #[error("cannot adopt pod {pod}")]
    Adopt {
        /// The pod.
        pod: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Removing the controller reference from a pod failed.
    #[error("cannot release pod {pod}")]
    Release {
        /// The pod.
        pod: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
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
    #[error("cannot delete pod {pod}")]
    Delete {
        /// The pod.
        pod: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
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
    expectations: Expectations,
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
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        pods,
        expectations: Expectations::default(),
        backoff: Backoff::default(),
    });
    controller
        .watches_stream(pod_events, move |pod| sets_for_pod(&sets, &pod))
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

/// The replica sets a pod event concerns: its controller if that is a replica set,
/// else (an orphan) every set of its namespace whose selector matches it.
fn sets_for_pod(sets: &Store<ReplicaSet>, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = pods::controller_of(&pod.metadata) {
        if owner.kind == "ReplicaSet" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let labels = pods::labels(&pod.metadata);
    sets.state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| pods::selector(&s.selector))
                .is_some_and(|s| s.matches(&labels))
        })
        .map(|rs| ObjectRef::from_obj(rs.as_ref()))
        .collect()
}

fn key(rs: &ReplicaSet) -> String {
    format!("{}/{}", rs.namespace().unwrap_or_default(), rs.name_any())
}

fn error_policy(rs: Arc<ReplicaSet>, err: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.failed(&key(&rs));
    tracing::warn!(replica_set = %key(&rs), error = %crate::chain(err), retry_in = ?delay, "replica set sync failed");
    Action::requeue(delay)
}

/// One sync of one replica set: claim pods, create or delete the difference, report.
async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.pods.wait_until_ready().await.map_err(Error::PodCache)?;
    let key = key(&rs);
    let namespace = rs.namespace().unwrap_or_default();
    let cached = ctx.pods.state();
    let in_namespace: Vec<&Pod> = cached
        .iter()
        .map(Arc::as_ref)
        .filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()))
        .collect();
    let seen = |found: Option<&&Pod>| match found {
        None => Seen::Absent,
        Some(p) if pods::is_terminating(&p.metadata) => Seen::Terminating,
        Some(_) => Seen::Live,
    };
    let met = ctx.expectations.satisfied(
        &key,
        |name| {
            seen(
                in_namespace
                    .iter()
                    .find(|p| p.metadata.name.as_deref() == Some(name)),
            )
        },
        |uid| {
            seen(
                in_namespace
                    .iter()
                    .find(|p| p.metadata.uid.as_deref() == Some(uid)),
            )
        },
    );
    let plan = plan::plan(&rs, &in_namespace, met);
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let owner = pods::controller_ref("apps/v1", "ReplicaSet", &rs.metadata);
    for pod in &plan.adopt {
        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
        refs.push(owner.clone());
        patch_owners(&pod_api, &pod.metadata, refs)
            .await
            .map_err(|source| Error::Adopt {
                pod: pod.name_any(),
                source,
            })?;
    }
    for pod in &plan.release {
        let refs: Vec<_> = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .filter(|r| r.uid != owner.uid)
            .cloned()
            .collect();
        match patch_owners(&pod_api, &pod.metadata, refs).await {
            Ok(()) => {}
            Err(err) if crate::is_not_found(&err) => {}
            Err(source) => {
                return Err(Error::Release {
                    pod: pod.name_any(),
                    source,
                });
            }
        }
    }
    let reference = rs.object_ref(&());
    let mut failure = None;
    let mut result = Ok(());
    if plan.create > 0 {
        if let Err(source) = create_pods(&ctx, &rs, &key, &reference, &pod_api, plan.create).await {
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
        if let Err((pod, source)) =
            delete_pods(&ctx, &key, &reference, &pod_api, &plan.delete).await
        {
            failure = Some(Failure {
                reason: "FailedDelete",
                message: source.to_string(),
            });
            result = Err(Error::Delete { pod, source });
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
        None => Action::await_change(),
    })
}

/// Replaces the pod's owner references, guarded by its resourceVersion.
async fn patch_owners(
    api: &Api<Pod>,
    meta: &ObjectMeta,
    refs: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "resourceVersion": meta.resource_version,
        "uid": meta.uid,
    }});
    let name = meta.name.as_deref().unwrap_or_default();
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(|_| ())
}

/// A pod for the replica set's template, named `<set>-<random>` by the API server.
fn pod_for(rs: &ReplicaSet) -> Pod {
    let template = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.name_any())),
            namespace: rs.namespace(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![pods::controller_ref(
                "apps/v1",
                "ReplicaSet",
                &rs.metadata,
            )]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// Creates `count` pods in slow-start batches; stops at the first batch with a failure.
async fn create_pods(
    ctx: &Context,
    rs: &ReplicaSet,
    key: &str,
    reference: &ObjectReference,
    api: &Api<Pod>,
    count: usize,
) -> Result<(), kube::Error> {
    let pod = pod_for(rs);
    let params = PostParams::default();
    for batch in plan::slow_start_batches(count) {
        let results = join_all((0..batch).map(|_| api.create(&params, &pod))).await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(created) => {
                    let name = created.name_any();
                    ctx.expectations.created(key, &name);
                    let message = format!("Created pod: {name}");
                    ctx.recorder
                        .publish(reference, EventType::Normal, "SuccessfulCreate", &message)
                        .await;
                }
                Err(err) => {
                    let message = format!("Error creating: {err}");
                    ctx.recorder
                        .publish(reference, EventType::Warning, "FailedCreate", &message)
                        .await;
                    first_error.get_or_insert(err);
                }
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
    }
    Ok(())
}

/// Deletes the pods; a pod already gone is not a failure.
async fn delete_pods(
    ctx: &Context,
    key: &str,
    reference: &ObjectReference,
    api: &Api<Pod>,
    victims: &[&Pod],
) -> Result<(), (String, kube::Error)> {
    let results = join_all(victims.iter().map(|pod| async move {
        let name = pod.name_any();
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(name),
            Err(err) if crate::is_not_found(&err) => Ok(name),
            Err(err) => Err((name, err)),
        }
    }))
    .await;
    let mut first_error = None;
    for (pod, result) in victims.iter().zip(results) {
        match result {
            Ok(name) => {
                ctx.expectations
                    .deleted(key, pod.metadata.uid.as_deref().unwrap_or_default());
                let message = format!("Deleted pod: {name}");
                ctx.recorder
                    .publish(reference, EventType::Normal, "SuccessfulDelete", &message)
                    .await;
            }
            Err((name, err)) => {
                let message = format!("Error deleting: {err}");
                ctx.recorder
                    .publish(reference, EventType::Warning, "FailedDelete", &message)
                    .await;
                first_error.get_or_insert((name, err));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}
