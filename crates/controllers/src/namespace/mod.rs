//! The namespace controller (kube-controller-manager's `namespace` controller): a
//! namespace being deleted (`Terminating`) has everything in it deleted, through the
//! API with background propagation, and once nothing is left loses the `kubernetes`
//! finalizer of its spec, after which the API server removes it. While content remains
//! the namespace's [`conditions`] say what is left and which finalizers hold it.

pub mod conditions;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use strata_api::resources::RESOURCES;

use crate::backoff::Backoff;
use crate::garbage_collector::act::api_resource;
use crate::{ControllerError, ControllerOptions};

/// The component name on logs.
pub const COMPONENT: &str = "namespace-controller";

/// The spec finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";

/// How soon a namespace whose content is still going (graceful pods, finalizers) is
/// looked at again.
const DRAIN_POLL: Duration = Duration::from_secs(2);

/// A reconcile that could not finish; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Listing a resource in the namespace failed.
    #[error("cannot list {resource} in namespace {namespace}")]
    List {
        /// The resource's plural name.
        resource: &'static str,
        /// The namespace.
        namespace: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Deleting an object in the namespace failed.
    #[error("cannot delete {resource} {namespace}/{name}")]
    Delete {
        /// The resource's plural name.
        resource: &'static str,
        /// The namespace.
        namespace: String,
        /// The object.
        name: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Writing the namespace's status conditions failed.
    #[error("cannot update the conditions of namespace {namespace}")]
    Conditions {
        /// The namespace.
        namespace: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Removing the `kubernetes` finalizer failed.
    #[error("cannot finalize namespace {namespace}")]
    Finalize {
        /// The namespace.
        namespace: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// What every reconcile shares.
pub struct Context {
    client: kube::Client,
    backoff: Backoff,
}

/// Runs the namespace controller until the future is dropped.
pub async fn run(client: kube::Client, options: ControllerOptions) -> Result<(), ControllerError> {
    let controller = Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(options.runtime_config());
    let context = Arc::new(Context {
        client,
        backoff: Backoff::default(),
    });
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %crate::chain(&err), "namespace reconcile");
            }
        })
        .await;
    Err(ControllerError::Ended {
        controller: COMPONENT,
    })
}

fn error_policy(namespace: Arc<Namespace>, err: &Error, ctx: Arc<Context>) -> Action {
    crate::retry(&ctx.backoff, namespace.as_ref(), err)
}

/// True when `namespace` is being deleted and still carries this controller's finalizer.
pub fn needs_finalizing(namespace: &Namespace) -> bool {
    namespace.meta().deletion_timestamp.is_some()
        && namespace
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// One look at one namespace: empty it if it is being deleted, then finalize it.
async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !needs_finalizing(&namespace) {
        return Ok(Action::await_change());
    }
    let name = namespace.name_any();
    let remaining = delete_content(&ctx.client, &name).await?;
    let version = report(&ctx.client, &namespace, &remaining).await?;
    if !remaining.is_empty() {
        tracing::debug!(namespace = %name, remaining = ?remaining.resources, "namespace content still going");
        return Ok(Action::requeue(DRAIN_POLL));
    }
    let kept: Vec<String> = namespace
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect();
    // An empty list, not null: defaulting would put the finalizer back on a null.
    let patch = json!({"metadata": {"resourceVersion": version},
                       "spec": {"finalizers": kept}});
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => {}
        Err(err) if crate::is_not_found(&err) => {}
        Err(source) => {
            return Err(Error::Finalize {
                namespace: name,
                source,
            });
        }
    }
    ctx.backoff.succeeded(&crate::key(namespace.as_ref()));
    tracing::info!(namespace = %name, "namespace emptied and finalized");
    Ok(Action::await_change())
}

/// Writes the conditions for `remaining` when they differ from the namespace's;
/// returns the namespace's resourceVersion after that.
async fn report(
    client: &kube::Client,
    namespace: &Namespace,
    remaining: &conditions::Remaining,
) -> Result<Option<String>, Error> {
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let Some(merged) = conditions::merged(namespace, conditions::conditions(remaining), &now)
    else {
        return Ok(namespace.resource_version());
    };
    let name = namespace.name_any();
    let api: Api<Namespace> = Api::all(client.clone());
    let patch = json!({"status": {"conditions": merged}});
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(written) => Ok(written.resource_version()),
        Err(err) if crate::is_not_found(&err) => Ok(None),
        Err(source) => Err(Error::Conditions {
            namespace: name,
            source,
        }),
    }
}

/// Deletes every object in `namespace` not already being deleted; returns what is
/// still there.
async fn delete_content(
    client: &kube::Client,
    namespace: &str,
) -> Result<conditions::Remaining, Error> {
    let mut remaining = conditions::Remaining::default();
    for resource in RESOURCES.iter().filter(|r| r.namespaced) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &api_resource(resource));
        let items = api
            .list(&ListParams::default())
            .await
            .map_err(|source| Error::List {
                resource: resource.plural,
                namespace: namespace.to_string(),
                source,
            })?
            .items;
        for item in items {
            let finalizers = item.metadata.finalizers.clone().unwrap_or_default();
            if item.metadata.deletion_timestamp.is_some() {
                remaining.count(resource.plural, &finalizers);
                continue;
            }
            let name = item.name_any();
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: item.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            match api.delete(&name, &params).await {
                // Marked for deletion (finalizers, a graceful pod): not gone yet.
                Ok(deleted) if deleted.is_left() => remaining.count(resource.plural, &finalizers),
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                Err(source) => {
                    return Err(Error::Delete {
                        resource: resource.plural,
                        namespace: namespace.to_string(),
                        name,
                        source,
                    });
                }
            }
        }
    }
    Ok(remaining)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(deleting: bool, finalizers: &[&str]) -> Namespace {
        let mut ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": "shop"},
            "spec": {"finalizers": finalizers},
        }))
        .unwrap_or_default();
        if deleting {
            ns.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::now(),
                ));
        }
        ns
    }

    #[test]
    fn only_terminating_namespaces_with_our_finalizer_are_finalized() {
        assert!(needs_finalizing(&namespace(true, &[FINALIZER])));
        assert!(needs_finalizing(&namespace(true, &["other", FINALIZER])));
        assert!(!needs_finalizing(&namespace(false, &[FINALIZER])));
        assert!(!needs_finalizing(&namespace(true, &["other"])));
        assert!(!needs_finalizing(&namespace(true, &[])));
    }
}
