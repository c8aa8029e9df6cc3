//! The EndpointSlice controller: keeps the `discovery.k8s.io/v1` EndpointSlices of every
//! Service with a selector equal to the pods it selects ([`plan`]), beside the core/v1
//! Endpoints the [`endpoints`](crate::endpoints) controller keeps. Slices carry the
//! labels `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io` and their Service as controlling owner, so the
//! garbage collector removes them with it. Services without a selector and slices of
//! other managers are left alone.

pub mod plan;
pub mod tracker;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use strata_api::endpointslice::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL};

use crate::backoff::Backoff;
use crate::{ControllerError, ControllerOptions, cache};
use plan::Change;
use tracker::Tracker;

/// The component name in logs.
pub const COMPONENT: &str = "endpointslice-controller";

/// How soon a service whose slice cache lags behind the controller's writes is looked
/// at again (the slice watch normally wakes it first).
const CATCH_UP: Duration = Duration::from_millis(500);

/// A reconcile that could not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cache never became ready.
    #[error("the {cache} cache is not ready")]
    Cache {
        /// `pods` or `endpointslices`.
        cache: &'static str,
        /// Cause.
        #[source]
        source: reflector::store::WriterDropped,
    },
    /// Creating a slice failed.
    #[error("cannot create an endpoint slice for service {service}")]
    Create {
        /// `namespace/name` of the service.
        service: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Replacing a slice failed.
    #[error("cannot update endpoint slice {slice} of service {service}")]
    Update {
        /// `namespace/name` of the service.
        service: String,
        /// The slice's name.
        slice: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting a slice failed.
    #[error("cannot delete endpoint slice {slice} of service {service}")]
    Delete {
        /// `namespace/name` of the service.
        service: String,
        /// The slice's name.
        slice: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    tracker: Tracker,
    backoff: Backoff,
}

/// Runs the EndpointSlice controller until the future is dropped.
pub async fn run(client: kube::Client, options: ControllerOptions) -> Result<(), ControllerError> {
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let (slices, slice_writer) = reflector::store();
    // Only this controller's slices: those of other managers are none of its business.
    let managed = format!("{MANAGED_BY_LABEL}={}", plan::MANAGED_BY);
    let slice_events = watcher(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(&managed),
    )
    .default_backoff()
    .reflect(slice_writer)
    .touched_objects();
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(options.runtime_config());
    let services = controller.store();
    let context = Arc::new(Context {
        client,
        pods,
        slices: slices.clone(),
        tracker: Tracker::default(),
        backoff: Backoff::default(),
    });
    controller
        .watches_stream(pod_events, move |pod| services_of(&services, &slices, &pod))
        .watches_stream(slice_events, |slice| {
            let namespace = slice.namespace().unwrap_or_default();
            let service = slice.labels().get(SERVICE_NAME_LABEL)?;
            Some(ObjectRef::<Service>::new(service).within(&namespace))
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %crate::chain(&err), "endpointslice reconcile");
            }
        })
        .await;
    Err(ControllerError::Ended {
        controller: COMPONENT,
    })
}

/// The services an event on `pod` concerns: those selecting it now, and those whose
/// slices list it (it may have stopped matching).
fn services_of(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    pod: &Pod,
) -> Vec<ObjectRef<Service>> {
    let namespace = pod.namespace().unwrap_or_default();
    let uid = pod.uid();
    let mut concerned = crate::endpoints::selecting(services, pod);
    for slice in slices.state() {
        if slice.namespace().as_deref() != Some(namespace.as_str()) {
            continue;
        }
        let holds_pod = slice
            .endpoints
            .iter()
            .any(|e| e.target_ref.as_ref().and_then(|r| r.uid.as_ref()) == uid.as_ref());
        if let Some(service) = slice.labels().get(SERVICE_NAME_LABEL).filter(|_| holds_pod) {
            concerned.push(ObjectRef::new(service).within(&namespace));
        }
    }
    concerned
}

fn error_policy(service: Arc<Service>, err: &Error, ctx: Arc<Context>) -> Action {
    crate::retry(&ctx.backoff, service.as_ref(), err)
}

/// One sync of one service: plan its slices and make the writes the plan asks for.
async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    if crate::endpoints::plan::selector(&service).is_none() {
        return Ok(Action::await_change());
    }
    let wait = |cache| move |source| Error::Cache { cache, source };
    ctx.pods.wait_until_ready().await.map_err(wait("pods"))?;
    ctx.slices
        .wait_until_ready()
        .await
        .map_err(wait("endpointslices"))?;
    let key = crate::key(service.as_ref());
    let namespace = service.namespace().unwrap_or_default();
    let cached_slices = ctx.slices.state();
    let slices = cache::in_namespace(&cached_slices, &namespace);
    if !ctx.tracker.caught_up(&key, &slices) {
        return Ok(Action::requeue(CATCH_UP));
    }
    let cached_pods = ctx.pods.state();
    let pods = cache::in_namespace(&cached_pods, &namespace);
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    for change in plan::changes(&service, &pods, &slices) {
        apply(&ctx, &api, &key, change).await?;
    }
    ctx.backoff.succeeded(&key);
    Ok(crate::idle())
}

/// Makes one write and records it with the tracker.
async fn apply(
    ctx: &Context,
    api: &Api<EndpointSlice>,
    service: &str,
    change: Change,
) -> Result<(), Error> {
    match change {
        Change::Create(slice) => {
            let created = api
                .create(&PostParams::default(), &slice)
                .await
                .map_err(|source| Error::Create {
                    service: service.to_string(),
                    source,
                })?;
            ctx.tracker.created(service, &created.name_any());
        }
        Change::Update(slice) => {
            let name = slice.name_any();
            let old_version = slice.resource_version().unwrap_or_default();
            api.replace(&name, &PostParams::default(), &slice)
                .await
                .map_err(|source| Error::Update {
                    service: service.to_string(),
                    slice: name.clone(),
                    source,
                })?;
            ctx.tracker.replaced(service, &name, &old_version);
        }
        Change::Delete(name) => {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(err) if crate::is_not_found(&err) => {}
                Err(source) => {
                    return Err(Error::Delete {
                        service: service.to_string(),
                        slice: name,
                        source,
                    });
                }
            }
            ctx.tracker.deleted(service, &name);
        }
    }
    Ok(())
}
