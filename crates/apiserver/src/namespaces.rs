//! Namespace lifecycle: the built-in namespaces exist from the first start, and a
//! namespace being deleted has its content deleted before it goes (Kubernetes'
//! namespace controller and its `kubernetes` finalizer, run in the server process).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use strata_api::resources::{RESOURCES, namespaces};
use strata_api::{FieldValidation, Operation, admit};
use strata_store::{EventKind, Store};

use crate::auth::Verb;
use crate::rest::{Query, Target, delete_object, list_page, no_grace};
use crate::status::ApiError;
use crate::storage;

/// The namespaces every cluster has.
pub const BUILT_IN: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the built-in namespaces that are missing.
pub async fn bootstrap(store: &dyn Store) -> Result<(), ApiError> {
    for name in BUILT_IN {
        let key = storage::key(namespaces(), None, name);
        if store.get(&key).await?.is_some() {
            continue;
        }
        let object = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": crate::rest::new_uid(),
                "creationTimestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            },
        });
        let admitted = admit(
            namespaces(),
            object,
            Operation::Create,
            FieldValidation::Strict,
        )
        .map_err(|e| ApiError::Internal(format!("built-in namespace {name}: {e}")))?;
        match store.create(&key, storage::encode(&admitted.object)).await {
            Ok(_) | Err(strata_store::StoreError::AlreadyExists { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Deletes everything in namespace `name`; true when nothing is left.
async fn empty_namespace(store: &dyn Store, name: &str) -> Result<bool, ApiError> {
    let mut empty = true;
    for resource in RESOURCES.iter().filter(|r| r.namespaced) {
        let target = Target {
            resource,
            namespace: Some(name.to_string()),
            name: None,
            subresource: None,
            verb: Verb::DeleteCollection,
        };
        let (items, _, _, _) = list_page(store, &target, &Query::default()).await?;
        for item in items {
            empty = false;
            let one = Target {
                name: item["metadata"]["name"].as_str().map(str::to_string),
                verb: Verb::Delete,
                ..target.clone()
            };
            match delete_object(store, &one, &no_grace()).await {
                Ok(_) | Err(ApiError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
    }
    Ok(empty)
}

/// Finishes a namespace marked for deletion once its content is gone.
async fn finalize(store: &dyn Store, namespace: &Value) -> Result<bool, ApiError> {
    let name = namespace["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !empty_namespace(store, &name).await? {
        return Ok(false);
    }
    let key = storage::key(namespaces(), None, &name);
    let Some(kv) = store.get(&key).await? else {
        return Ok(true);
    };
    let mut current = storage::decode(&kv)?;
    let finalizers_left = current["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if finalizers_left {
        // Others' finalizers: drop ours and wait for theirs.
        current["spec"]["finalizers"] = json!([]);
        store
            .update(&key, storage::encode(&current), Some(kv.mod_revision))
            .await?;
        return Ok(false);
    }
    match store.delete(&key, Some(kv.mod_revision)).await {
        Ok(_) | Err(strata_store::StoreError::NotFound { .. }) => Ok(true),
        Err(strata_store::StoreError::Conflict { .. }) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Runs forever: watches namespaces and finalizes those being deleted, retrying
/// every few seconds while content remains (graceful pods, finalizers).
pub async fn run_finalizer(store: Arc<dyn Store>) {
    let prefix = storage::prefix(namespaces(), None);
    loop {
        let pass = async {
            let target = Target {
                resource: namespaces(),
                namespace: None,
                name: None,
                subresource: None,
                verb: Verb::List,
            };
            let (items, revision, _, _) =
                list_page(store.as_ref(), &target, &Query::default()).await?;
            let mut pending = false;
            for ns in items
                .iter()
                .filter(|n| n["metadata"]["deletionTimestamp"].is_string())
            {
                pending |= !finalize(store.as_ref(), ns).await?;
            }
            Ok::<_, ApiError>((revision, pending))
        };
        let (revision, pending) = match pass.await {
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(error = %err, "namespace finalizer pass failed");
                (0, true)
            }
        };
        // Wait for a namespace change, or retry soon while one is still draining.
        let wait = if pending {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(300)
        };
        if revision > 0
            && let Ok(mut watch) = store.watch(&prefix, revision).await
        {
            let _ = tokio::time::timeout(wait, async {
                while let Some(Ok(event)) = watch.next().await {
                    if event.kind != EventKind::Delete {
                        break;
                    }
                }
            })
            .await;
        } else {
            tokio::time::sleep(wait).await;
        }
    }
}
