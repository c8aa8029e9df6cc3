//! The Deployment controller: rolls a deployment's pods from replica set to replica set
//! (RollingUpdate or Recreate), scales proportionally, keeps revision history and
//! reports rollout conditions. Decisions are pure ([`plan`]); this module reads the
//! caches, writes the plan's steps and reports events.

pub mod hash;
pub mod plan;
pub mod rolling;
pub mod scale;
pub mod status;
pub mod view;

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use strata_client::events::{EventType, Recorder};

use crate::backoff::Backoff;
use crate::{ControllerError, ControllerOptions, cache, pods};
use plan::Step;

/// The component name on events.
pub const COMPONENT: &str = "deployment-controller";

/// A reconcile that could not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cache never became ready.
    #[error("the {cache} cache is not ready")]
    Cache {
        /// `pods` or `replicasets`.
        cache: &'static str,
        /// Cause.
        #[source]
        source: reflector::store::WriterDropped,
    },
    /// The rolling update parameters cannot be used.
    #[error("deployment {deployment} has an invalid rolling update strategy")]
    Strategy {
        /// `namespace/name`.
        deployment: String,
        /// Cause.
        #[source]
        source: rolling::StrategyError,
    },
    /// A write to a replica set failed.
    #[error("cannot {action} replica set {replica_set}")]
    ReplicaSet {
        /// `adopt`, `release`, `create`, `update` or `delete`.
        action: &'static str,
        /// Its name.
        replica_set: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Writing the deployment (revision annotation or status) failed.
    #[error("cannot update deployment {deployment}")]
    Deployment {
        /// `namespace/name`.
        deployment: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// What every reconcile shares.
pub struct Context {
    client: kube::Client,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
    backoff: Backoff,
}

/// Runs the Deployment controller until the future is dropped.
pub async fn run(client: kube::Client, options: ControllerOptions) -> Result<(), ControllerError> {
    let (sets, set_writer) = reflector::store();
    let set_events = watcher(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(set_writer)
    .touched_objects();
    let (pod_cache, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let controller = Controller::new(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(options.runtime_config());
    let deployments = controller.store();
    let sets_for_pods = sets.clone();
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), COMPONENT, None),
        client,
        sets,
        pods: pod_cache,
        backoff: Backoff::default(),
    });
    controller
        .watches_stream(set_events, move |rs| {
            cache::owners_of(&deployments, &rs.metadata, |d: &Deployment| {
                d.spec.as_ref().map(|s| &s.selector)
            })
        })
        .watches_stream(pod_events, move |pod| {
            deployment_for_pod(&sets_for_pods, &pod)
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %crate::chain(&err), "deployment reconcile");
            }
        })
        .await;
    Err(ControllerError::Ended {
        controller: COMPONENT,
    })
}

/// The deployment whose replica set controls the pod (Recreate waits for old pods).
fn deployment_for_pod(sets: &Store<ReplicaSet>, pod: &Pod) -> Option<ObjectRef<Deployment>> {
    let owner = pods::controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet")?;
    let namespace = pod.namespace().unwrap_or_default();
    let rs = sets.get(&ObjectRef::new(&owner.name).within(&namespace))?;
    let deployment = pods::controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")?;
    Some(ObjectRef::new(&deployment.name).within(&namespace))
}

fn error_policy(d: Arc<Deployment>, err: &Error, ctx: Arc<Context>) -> Action {
    crate::retry(&ctx.backoff, d.as_ref(), err)
}

/// One step of one deployment: plan from the caches, then write.
async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    let cache = |cache| move |source| Error::Cache { cache, source };
    ctx.sets
        .wait_until_ready()
        .await
        .map_err(cache("replicasets"))?;
    ctx.pods.wait_until_ready().await.map_err(cache("pods"))?;
    let key = crate::key(d.as_ref());
    let namespace = d.namespace().unwrap_or_default();
    let set_cache = ctx.sets.state();
    let sets = cache::in_namespace(&set_cache, &namespace);
    let pod_cache = ctx.pods.state();
    let pods = cache::in_namespace(&pod_cache, &namespace);
    let reference = d.object_ref(&());
    let plan = match plan::plan(&d, &sets, &pods, Timestamp::now()) {
        Ok(plan) => plan,
        Err(source) => {
            let message = format!("Cannot roll out: {source}");
            ctx.recorder
                .publish(&reference, EventType::Warning, "InvalidStrategy", &message)
                .await;
            return Err(Error::Strategy {
                deployment: key,
                source,
            });
        }
    };
    let set_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut status = plan.status;
    for step in plan.steps {
        if let Some(collisions) = write(&set_api, &d, step).await? {
            status.collision_count = Some(collisions);
            break;
        }
    }
    for event in &plan.events {
        ctx.recorder
            .publish(
                &reference,
                EventType::Normal,
                "ScalingReplicaSet",
                &event.message,
            )
            .await;
    }
    let api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let failed = |source| Error::Deployment {
        deployment: key.clone(),
        source,
    };
    let mut latest = (*d).clone();
    if let Some(revision) = plan.revision {
        let patch = json!({"metadata": {"annotations": {view::REVISION: revision}}});
        latest = api
            .patch(&d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(failed)?;
    }
    if d.status.as_ref() != Some(&status) {
        latest.status = Some(status);
        api.replace_status(&d.name_any(), &PostParams::default(), &latest)
            .await
            .map_err(failed)?;
    }
    ctx.backoff.succeeded(&key);
    Ok(plan.requeue_after.map_or_else(crate::idle, Action::requeue))
}

/// Writes one step. `Some(count)` when creating hit a name taken by a set with another
/// template: the caller records the raised collision count and stops.
async fn write(api: &Api<ReplicaSet>, d: &Deployment, step: Step) -> Result<Option<i32>, Error> {
    let failed = |action, rs: String| {
        move |source| Error::ReplicaSet {
            action,
            replica_set: rs,
            source,
        }
    };
    let owner = pods::controller_ref("apps/v1", "Deployment", &d.metadata);
    match step {
        Step::Adopt(rs) | Step::Release(rs) => {
            let adopt = pods::controller_of(&rs.metadata).is_none();
            let mut refs: Vec<_> = rs
                .owner_references()
                .iter()
                .filter(|r| r.uid != owner.uid)
                .cloned()
                .collect();
            if adopt {
                refs.push(owner);
            }
            let patch = json!({"metadata": {"ownerReferences": refs, "resourceVersion": rs.metadata.resource_version}});
            let name = rs.name_any();
            let action = if adopt { "adopt" } else { "release" };
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => {}
                Err(err) if !adopt && crate::is_not_found(&err) => {}
                Err(err) => return Err(failed(action, name)(err)),
            }
        }
        Step::Create(rs) => {
            let name = rs.name_any();
            match api.create(&PostParams::default(), &rs).await {
                Ok(_) => {}
                Err(err) if crate::is_already_exists(&err) => {
                    // The cache may lag behind: the set may be ours after all.
                    let existing = api
                        .get(&name)
                        .await
                        .map_err(failed("create", name.clone()))?;
                    let ours =
                        pods::controller_of(&existing.metadata).is_some_and(|r| r.uid == owner.uid);
                    let same = match (
                        existing.spec.as_ref().and_then(|s| s.template.as_ref()),
                        d.spec.as_ref(),
                    ) {
                        (Some(t), Some(spec)) => hash::equal_ignoring_hash(t, &spec.template),
                        _ => false,
                    };
                    if !(ours && same) {
                        let count = d
                            .status
                            .as_ref()
                            .and_then(|s| s.collision_count)
                            .unwrap_or(0);
                        return Ok(Some(count + 1));
                    }
                }
                Err(err) => return Err(failed("create", name.clone())(err)),
            }
        }
        Step::Update(rs) => {
            let name = rs.name_any();
            api.replace(&name, &PostParams::default(), &rs)
                .await
                .map_err(failed("update", name))?;
        }
        Step::Delete(name) => match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(err) if crate::is_not_found(&err) => {}
            Err(err) => return Err(failed("delete", name)(err)),
        },
    }
    Ok(None)
}
