//! The built-in namespaces, which exist from the first start. Emptying a namespace
//! being deleted is the namespace controller's work (`strata_controllers::namespace`),
//! an API client, as in Kubernetes.

use serde_json::json;
use strata_api::resources::namespaces;
use strata_api::{FieldValidation, Operation, admit};
use strata_store::Store;

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
