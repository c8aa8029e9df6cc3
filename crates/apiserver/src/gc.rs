//! Garbage collection by `ownerReferences`, run in the server process for now:
//! dependents of a deleted owner are deleted (background propagation); an owner
//! marked with the `foregroundDeletion` finalizer waits until its dependents are gone;
//! one marked `orphan` releases them (drops their reference) first.
//!
//! Note to maintainers: Kubernetes runs this in the controller manager as an API
//! client. It lives here until the controllers crate exists; it only uses the store
//! and the same delete path as the REST layer, so moving it is mechanical.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use strata_api::resources::RESOURCES;
use strata_store::{EventKind, Store, StoreError};

use crate::auth::Verb;
use crate::rest::{Query, Target, delete_object, list_page, no_grace};
use crate::status::ApiError;
use crate::storage;

/// Every object in `namespace` (all cluster-scoped objects when `None`) whose
/// ownerReferences name `uid`, with its resource.
async fn dependents(
    store: &dyn Store,
    namespace: Option<&str>,
    uid: &str,
) -> Result<Vec<(Target, Value)>, ApiError> {
    let mut found = Vec::new();
    for resource in RESOURCES
        .iter()
        .filter(|r| r.namespaced == namespace.is_some())
    {
        let target = Target {
            resource,
            namespace: namespace.map(str::to_string),
            name: None,
            subresource: None,
            verb: Verb::List,
        };
        let (items, _, _, _) = list_page(store, &target, &Query::default()).await?;
        for item in items {
            let owned = item["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid));
            if owned {
                let one = Target {
                    name: item["metadata"]["name"].as_str().map(str::to_string),
                    ..target.clone()
                };
                found.push((one, item));
            }
        }
    }
    Ok(found)
}

/// Writes `object` back at `rv` (a finalizer or reference removed); deletes it when
/// it was being deleted and no finalizer is left.
async fn write_back(
    store: &dyn Store,
    target: &Target,
    object: &Value,
    rv: i64,
) -> Result<(), ApiError> {
    let key = storage::key(
        target.resource,
        target.namespace.as_deref(),
        target.name.as_deref().unwrap_or_default(),
    );
    let done = object["metadata"]["deletionTimestamp"].is_string()
        && object["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
    let result = if done {
        store.delete(&key, Some(rv)).await.map(|_| ())
    } else {
        store
            .update(&key, storage::encode(object), Some(rv))
            .await
            .map(|_| ())
    };
    match result {
        Ok(()) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

fn without_finalizer(object: &Value, finalizer: &str) -> Value {
    let mut object = object.clone();
    if let Some(list) = object["metadata"]["finalizers"].as_array_mut() {
        list.retain(|f| f != finalizer);
        if list.is_empty()
            && let Some(meta) = object["metadata"].as_object_mut()
        {
            meta.remove("finalizers");
        }
    }
    object
}

/// Handles one owner that is marked for deletion or gone.
async fn process_owner(
    store: &dyn Store,
    target: &Target,
    owner: &Value,
    rv: i64,
    gone: bool,
) -> Result<(), ApiError> {
    let uid = owner["metadata"]["uid"].as_str().unwrap_or_default();
    let finalizers: Vec<String> =
        serde_json::from_value(owner["metadata"]["finalizers"].clone()).unwrap_or_default();
    let orphan = !gone && finalizers.iter().any(|f| f == "orphan");
    let foreground = !gone && finalizers.iter().any(|f| f == "foregroundDeletion");
    if !gone && !orphan && !foreground {
        return Ok(());
    }
    let deps = dependents(store, target.namespace.as_deref(), uid).await?;
    if orphan {
        for (dep_target, dep) in deps {
            let mut released = dep.clone();
            if let Some(refs) = released["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != uid);
            }
            let dep_rv = storage::parse_resource_version(
                dep["metadata"]["resourceVersion"].as_str().unwrap_or("0"),
            )?;
            write_back(store, &dep_target, &released, dep_rv).await?;
        }
        return write_back(store, target, &without_finalizer(owner, "orphan"), rv).await;
    }
    if deps.is_empty() {
        if foreground {
            write_back(
                store,
                target,
                &without_finalizer(owner, "foregroundDeletion"),
                rv,
            )
            .await?;
        }
        return Ok(());
    }
    for (dep_target, dep) in deps {
        if dep["metadata"]["deletionTimestamp"].is_string() {
            continue;
        }
        let mut options = no_grace();
        options.propagation = Some(
            if foreground {
                "Foreground"
            } else {
                "Background"
            }
            .into(),
        );
        match delete_object(store, &dep_target, &options).await {
            Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// A dependent is gone: owners waiting in foreground deletion may now complete.
async fn recheck_owners(store: &dyn Store, dependent: &Value) -> Result<(), ApiError> {
    let namespace = dependent["metadata"]["namespace"].as_str();
    for owner in dependent["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let (Some(api_version), Some(kind), Some(name)) = (
            owner["apiVersion"].as_str(),
            owner["kind"].as_str(),
            owner["name"].as_str(),
        ) else {
            continue;
        };
        let Some(resource) = strata_api::resources::by_kind(api_version, kind) else {
            continue;
        };
        let target = Target {
            resource,
            namespace: namespace
                .filter(|_| resource.namespaced)
                .map(str::to_string),
            name: Some(name.to_string()),
            subresource: None,
            verb: Verb::Delete,
        };
        let key = storage::key(resource, target.namespace.as_deref(), name);
        if let Some(kv) = store.get(&key).await? {
            let object = storage::decode(&kv)?;
            if object["metadata"]["uid"] == owner["uid"]
                && object["metadata"]["deletionTimestamp"].is_string()
            {
                process_owner(store, &target, &object, kv.mod_revision, false).await?;
            }
        }
    }
    Ok(())
}

fn target_for_key(key: &str) -> Option<Target> {
    let (resource, namespace, name) = storage::locate(key)?;
    Some(Target {
        resource,
        namespace,
        name: Some(name),
        subresource: None,
        verb: Verb::Delete,
    })
}

/// Runs forever, reacting to deletions and to owners marked for deletion.
pub async fn run(store: Arc<dyn Store>) {
    loop {
        let from = match store.current_revision().await {
            Ok(rev) => rev,
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Ok(mut watch) = store.watch("/registry/", from).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while let Some(Ok(event)) = watch.next().await {
            let Some(target) = target_for_key(&event.kv.key) else {
                continue;
            };
            let result = match event.kind {
                EventKind::Delete => match event.prev_kv.as_ref().map(storage::decode) {
                    Some(Ok(gone)) => {
                        let owners = recheck_owners(store.as_ref(), &gone).await;
                        process_owner(store.as_ref(), &target, &gone, 0, true)
                            .await
                            .and(owners)
                    }
                    _ => Ok(()),
                },
                _ => match storage::decode(&event.kv) {
                    Ok(object) if object["metadata"]["deletionTimestamp"].is_string() => {
                        process_owner(
                            store.as_ref(),
                            &target,
                            &object,
                            event.kv.mod_revision,
                            false,
                        )
                        .await
                    }
                    _ => Ok(()),
                },
            };
            if let Err(err) = result {
                tracing::warn!(error = %err, key = %event.kv.key, "garbage collection failed");
            }
        }
        // The watch ended (lagged or compacted): start again from now.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_map_back_to_targets() {
        let t = target_for_key("/registry/apps/replicasets/shop/web-1").unwrap();
        assert_eq!(
            (t.resource.kind, t.namespace.as_deref(), t.name.as_deref()),
            ("ReplicaSet", Some("shop"), Some("web-1"))
        );
        let n = target_for_key("/registry/core/nodes/n1").unwrap();
        assert_eq!(n.resource.kind, "Node");
        assert!(target_for_key("/registry/core/pods").is_none());
        assert!(target_for_key("/other").is_none());
        let owner = json!({"metadata": {"finalizers": ["orphan", "x"]}});
        assert_eq!(
            without_finalizer(&owner, "orphan")["metadata"]["finalizers"],
            json!(["x"])
        );
        assert!(without_finalizer(&json!({"metadata": {"finalizers": ["orphan"]}}), "orphan")["metadata"].get("finalizers").is_none());
    }
}
