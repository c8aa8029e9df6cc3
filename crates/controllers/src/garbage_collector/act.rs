//! The garbage collector's writes through the API: deleting a dependent, dropping owner
//! references and finalizers (merge patches guarded by the resourceVersion read), and
//! verifying that an owner the graph does not know is really gone.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use strata_api::resources::by_kind;
use strata_client::events::{EventType, Recorder};

use super::graph::{FOREGROUND, Identity, Owner, OwnerState, Propagation};

/// A write or read of the garbage collector that failed; the object is retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Deleting a dependent failed.
    #[error("cannot delete {object}")]
    Delete {
        /// `kind namespace/name`.
        object: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Reading an object before patching it failed.
    #[error("cannot read {object}")]
    Read {
        /// `kind namespace/name`.
        object: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Patching the owner references or finalizers failed.
    #[error("cannot update the {field} of {object}")]
    Patch {
        /// `ownerReferences` or `finalizers`.
        field: &'static str,
        /// `kind namespace/name`.
        object: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// The kube `ApiResource` of a served resource.
pub(crate) fn api_resource(resource: &strata_api::resources::Resource) -> ApiResource {
    ApiResource {
        group: resource.group.to_string(),
        version: resource.version.to_string(),
        api_version: resource.api_version(),
        kind: resource.kind.to_string(),
        plural: resource.plural.to_string(),
    }
}

fn api(client: &kube::Client, id: &Identity) -> Api<DynamicObject> {
    let ar = api_resource(id.resource);
    match &id.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// `Kind namespace/name` of an object, for errors and logs.
pub fn describe(id: &Identity) -> String {
    let kind = id.resource.kind;
    match &id.namespace {
        Some(ns) => format!("{kind} {ns}/{}", id.name),
        None => format!("{kind} {}", id.name),
    }
}

/// Deletes the dependent `id` (only that incarnation: its uid is a precondition).
pub async fn delete(
    client: &kube::Client,
    id: &Identity,
    propagation: Propagation,
) -> Result<(), Error> {
    let params = DeleteParams {
        propagation_policy: Some(match propagation {
            Propagation::Background => kube::api::PropagationPolicy::Background,
            Propagation::Foreground => kube::api::PropagationPolicy::Foreground,
        }),
        preconditions: Some(Preconditions {
            uid: Some(id.uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api(client, id).delete(&id.name, &params).await {
        Ok(_) => Ok(()),
        // Gone already, or replaced by a new object of the same name.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(source) => Err(Error::Delete {
            object: describe(id),
            source,
        }),
    }
}

/// The current object `id`, or `None` when it is gone or was replaced.
async fn latest(client: &kube::Client, id: &Identity) -> Result<Option<DynamicObject>, Error> {
    match api(client, id).get_opt(&id.name).await {
        Ok(Some(object)) if object.metadata.uid.as_deref() == Some(id.uid.as_str()) => {
            Ok(Some(object))
        }
        Ok(_) => Ok(None),
        Err(source) => Err(Error::Read {
            object: describe(id),
            source,
        }),
    }
}

/// Merge-patches `metadata.<field>` of `id` to `value`, guarded by `version`.
async fn patch_metadata(
    client: &kube::Client,
    id: &Identity,
    field: &'static str,
    value: Value,
    version: Option<String>,
) -> Result<(), Error> {
    let patch = json!({"metadata": {field: value, "resourceVersion": version}});
    match api(client, id)
        .patch(&id.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(Error::Patch {
            field,
            object: describe(id),
            source,
        }),
    }
}

/// Drops the references to `owners` from the dependent `id`.
pub async fn release(client: &kube::Client, id: &Identity, owners: &[String]) -> Result<(), Error> {
    let Some(object) = latest(client, id).await? else {
        return Ok(());
    };
    let refs = object.metadata.owner_references.unwrap_or_default();
    let kept: Vec<_> = refs
        .iter()
        .filter(|r| !owners.contains(&r.uid))
        .cloned()
        .collect();
    if kept.len() == refs.len() {
        return Ok(());
    }
    let value = if kept.is_empty() {
        Value::Null
    } else {
        json!(kept)
    };
    patch_metadata(
        client,
        id,
        "ownerReferences",
        value,
        object.metadata.resource_version,
    )
    .await
}

/// Removes `finalizer` from `id` (the API server then completes a deletion that
/// waited only for it).
pub async fn remove_finalizer(
    client: &kube::Client,
    id: &Identity,
    finalizer: &str,
) -> Result<(), Error> {
    let Some(object) = latest(client, id).await? else {
        return Ok(());
    };
    let finalizers = object.metadata.finalizers.unwrap_or_default();
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
    if kept.len() == finalizers.len() {
        return Ok(());
    }
    let value = if kept.is_empty() {
        Value::Null
    } else {
        json!(kept)
    };
    patch_metadata(
        client,
        id,
        "finalizers",
        value,
        object.metadata.resource_version,
    )
    .await
}

/// Asks the API what `owner` of the dependent `dependent` is. A namespaced owner of a
/// cluster-scoped dependent can never exist: Kubernetes reports it as
/// `OwnerRefInvalidNamespace` and treats it as gone. An owner of a kind this server does
/// not serve counts as present (it cannot be verified, so nothing is collected).
pub async fn owner_state(
    client: &kube::Client,
    recorder: &Recorder,
    dependent: &Identity,
    owner: &Owner,
) -> Result<OwnerState, Error> {
    let Some(resource) = by_kind(&owner.api_version, &owner.kind) else {
        tracing::debug!(owner = %owner.kind, dependent = %describe(dependent), "owner of an unserved kind");
        return Ok(OwnerState::Solid);
    };
    let namespace = match (&dependent.namespace, resource.namespaced) {
        (_, false) => None,
        (Some(ns), true) => Some(ns.clone()),
        (None, true) => {
            let message = format!(
                "ownerRef [{}/{}, namespace: , name: {}, uid: {}] does not exist in namespace \"\"",
                owner.api_version, owner.kind, owner.name, owner.uid
            );
            let reference = ObjectReference {
                api_version: Some(dependent.resource.api_version()),
                kind: Some(dependent.resource.kind.to_string()),
                name: Some(dependent.name.clone()),
                uid: Some(dependent.uid.clone()),
                ..ObjectReference::default()
            };
            recorder
                .publish(
                    &reference,
                    EventType::Warning,
                    "OwnerRefInvalidNamespace",
                    &message,
                )
                .await;
            return Ok(OwnerState::Dangling);
        }
    };
    let id = Identity {
        resource,
        namespace,
        name: owner.name.clone(),
        uid: owner.uid.clone(),
    };
    Ok(match latest(client, &id).await? {
        None => OwnerState::Dangling,
        Some(o)
            if o.metadata.deletion_timestamp.is_some()
                && o.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FOREGROUND) =>
        {
            OwnerState::Waiting
        }
        Some(_) => OwnerState::Solid,
    })
}
