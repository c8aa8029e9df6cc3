//! The endpoints controller: keeps the Endpoints object of every Service with a selector
//! equal to the pods it selects ([`plan`]), so the node proxies and DNS know where a
//! service's traffic goes. Services without a selector keep the Endpoints their users
//! write. An Endpoints object carries its Service as owner, so the garbage collector
//! removes it with the Service.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use crate::backoff::Backoff;
use crate::{ControllerError, ControllerOptions, cache};

/// The component name in logs.
pub const COMPONENT: &str = "endpoints-controller";

/// A reconcile that could not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cache never became ready.
    #[error("the {cache} cache is not ready")]
    Cache {
        /// `pods` or `endpoints`.
        cache: &'static str,
        /// Cause.
        #[source]
        source: reflector::store::WriterDropped,
    },
    /// Writing the Endpoints failed.
    #[error("cannot write the endpoints of service {service}")]
    Write {
        /// `namespace/name` of the service.
        service: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

struct Context {
    client: kube::Client,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    backoff: Backoff,
}

/// Runs the endpoints controller until the future is dropped.
pub async fn run(client: kube::Client, options: ControllerOptions) -> Result<(), ControllerError> {
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .reflect(pod_writer)
        .touched_objects();
    let (endpoints, endpoints_writer) = reflector::store();
    let endpoints_events = watcher(
        Api::<Endpoints>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(endpoints_writer)
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
        endpoints: endpoints.clone(),
        backoff: Backoff::default(),
    });
    controller
        .watches_stream(pod_events, move |pod| {
            services_of(&services, &endpoints, &pod)
        })
        .watches_stream(endpoints_events, |endpoints| {
            let namespace = endpoints.namespace().unwrap_or_default();
            Some(ObjectRef::<Service>::new(&endpoints.name_any()).within(&namespace))
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %crate::chain(&err), "endpoints reconcile");
            }
        })
        .await;
    Err(ControllerError::Ended {
        controller: COMPONENT,
    })
}

/// The services an event on `pod` concerns: those selecting it now, and those whose
/// Endpoints list it (it may have stopped matching).
fn services_of(
    services: &Store<Service>,
    endpoints: &Store<Endpoints>,
    pod: &Pod,
) -> Vec<ObjectRef<Service>> {
    let namespace = pod.namespace().unwrap_or_default();
    let uid = pod.uid();
    let mut concerned = selecting(services, pod);
    for listed in endpoints.state() {
        if listed.namespace().as_deref() != Some(namespace.as_str()) {
            continue;
        }
        let holds_pod = listed.subsets.iter().flatten().any(|subset| {
            subset
                .addresses
                .iter()
                .chain(subset.not_ready_addresses.iter())
                .flatten()
                .any(|a| a.target_ref.as_ref().and_then(|r| r.uid.as_ref()) == uid.as_ref())
        });
        if holds_pod {
            concerned.push(ObjectRef::new(&listed.name_any()).within(&namespace));
        }
    }
    concerned
}

/// The services of the pod's namespace whose selector matches it now (shared with the
/// endpointslice controller).
pub(crate) fn selecting(services: &Store<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
    let namespace = pod.namespace();
    services
        .state()
        .iter()
        .filter(|s| s.namespace() == namespace)
        .filter(|s| plan::selector(s).is_some_and(|selector| plan::selects(selector, pod)))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

fn error_policy(service: Arc<Service>, err: &Error, ctx: Arc<Context>) -> Action {
    crate::retry(&ctx.backoff, service.as_ref(), err)
}

/// One sync of one service: compute its Endpoints and write them when they differ.
async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    if plan::selector(&service).is_none() {
        return Ok(Action::await_change());
    }
    let wait = |cache| move |source| Error::Cache { cache, source };
    ctx.pods.wait_until_ready().await.map_err(wait("pods"))?;
    ctx.endpoints
        .wait_until_ready()
        .await
        .map_err(wait("endpoints"))?;
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let cached = ctx.pods.state();
    let pods = cache::in_namespace(&cached, &namespace);
    let subsets = plan::subsets(&service, &pods);
    let labels: BTreeMap<String, String> = service.labels().clone();
    let current = ctx.endpoints.get(&ObjectRef::new(&name).within(&namespace));
    let unchanged = current
        .as_ref()
        .is_some_and(|e| e.subsets.clone().unwrap_or_default() == subsets && *e.labels() == labels);
    if unchanged {
        return Ok(Action::await_change());
    }
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: name.clone(),
        uid: service.uid().unwrap_or_default(),
        controller: None,
        block_owner_deletion: None,
    };
    let desired = Endpoints {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            labels: (!labels.is_empty()).then_some(labels),
            owner_references: Some(vec![owner]),
            resource_version: current.as_ref().and_then(|e| e.resource_version()),
            annotations: current
                .as_ref()
                .and_then(|e| e.metadata.annotations.clone()),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    };
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    let written = match current {
        Some(_) => api.replace(&name, &PostParams::default(), &desired).await,
        None => api.create(&PostParams::default(), &desired).await,
    };
    written.map_err(|source| Error::Write {
        service: crate::key(service.as_ref()),
        source,
    })?;
    Ok(Action::await_change())
}
