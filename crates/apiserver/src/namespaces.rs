//! The built-in namespaces, which exist from the first start. Emptying a namespace
//! being deleted is the namespace controller's work (`strata_controllers::namespace`),
//! an API client, as in Kubernetes.

use serde_json::json;
use strata_api::resources::namespaces;
use strata_store::Store;

use crate::status::ApiError;
use crate::storage;

/// The namespaces every cluster has.
pub const BUILT_IN: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the built-in namespaces that are missing.
pub async fn bootstrap(store: &dyn Store) -> Result<(), ApiError> {
    for name in BUILT_IN {
        let object = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name},
        });
        storage::create_built_in(store, namespaces(), None, name, object).await?;
    }
    Ok(())
}
