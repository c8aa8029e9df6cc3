//! What every namespace holds from its start, like Kubernetes' ServiceAccount and
//! root-CA-publisher controllers (run in the server process here): a `default`
//! ServiceAccount and the `kube-root-ca.crt` ConfigMap with the cluster CA under
//! `ca.crt`. Both are recreated when deleted, and the CA is put back when changed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use strata_api::serviceaccount::{DEFAULT_SERVICE_ACCOUNT, ROOT_CA_CONFIG_MAP, ROOT_CA_KEY};
use strata_api::{FieldValidation, Operation, admit};
use strata_store::{ListOptions, Store, StoreError};

use crate::rest::{new_uid, stored};
use crate::status::ApiError;
use crate::storage;

/// Longest wait between two passes when no namespace changes (heals deletions).
const RESYNC: Duration = Duration::from_secs(5);

/// Makes sure namespace `namespace` has its `default` ServiceAccount and its
/// `kube-root-ca.crt` ConfigMap holding `ca_pem`.
pub async fn ensure(store: &dyn Store, namespace: &str, ca_pem: &str) -> Result<(), ApiError> {
    if stored(store, "serviceaccounts", namespace, DEFAULT_SERVICE_ACCOUNT)
        .await?
        .is_none()
    {
        let account = json!({
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": namespace},
        });
        create(store, "serviceaccounts", namespace, account).await?;
    }
    let wanted = json!({ROOT_CA_KEY: ca_pem});
    let annotations = json!({"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."});
    match stored(store, "configmaps", namespace, ROOT_CA_CONFIG_MAP).await? {
        None => {
            let map = json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": ROOT_CA_CONFIG_MAP, "namespace": namespace, "annotations": annotations},
                "data": wanted,
            });
            create(store, "configmaps", namespace, map).await?;
        }
        Some(map) if map["data"] != wanted => {
            let resource = core("configmaps")?;
            let key = storage::key(resource, Some(namespace), ROOT_CA_CONFIG_MAP);
            if let Some(kv) = store.get(&key).await? {
                let mut current = storage::decode(&kv)?;
                current["data"] = wanted;
                match store
                    .update(&key, storage::encode(&current), Some(kv.mod_revision))
                    .await
                {
                    Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                    Err(err) => return Err(err.into()),
                }
            }
        }
        Some(_) => {}
    }
    Ok(())
}

fn core(plural: &str) -> Result<&'static strata_api::Resource, ApiError> {
    strata_api::resources::find("", "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("no resource {plural}")))
}

/// Stores a new object the way the create handler would (uid, timestamp, defaults).
async fn create(
    store: &dyn Store,
    plural: &str,
    namespace: &str,
    mut object: Value,
) -> Result<(), ApiError> {
    let resource = core(plural)?;
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    object["metadata"]["uid"] = json!(new_uid());
    object["metadata"]["creationTimestamp"] =
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let admitted = admit(resource, object, Operation::Create, FieldValidation::Strict)
        .map_err(|e| ApiError::Internal(format!("{plural} {namespace}/{name}: {e}")))?;
    let key = storage::key(resource, Some(namespace), &name);
    match store.create(&key, storage::encode(&admitted.object)).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Runs forever: on every namespace change, and every few seconds, gives each active
/// namespace its `default` ServiceAccount and `kube-root-ca.crt` ConfigMap.
pub async fn run(store: Arc<dyn Store>, ca_pem: String) {
    let namespaces = match core("namespaces") {
        Ok(resource) => resource,
        Err(err) => {
            tracing::error!(error = %err, "namespace defaults are off");
            return;
        }
    };
    let prefix = storage::prefix(namespaces, None);
    loop {
        let pass = async {
            let listed = store.list(&prefix, ListOptions::default()).await?;
            for kv in &listed.items {
                let namespace = storage::decode(kv)?;
                if namespace["metadata"]["deletionTimestamp"].is_string() {
                    continue;
                }
                if let Some(name) = namespace["metadata"]["name"].as_str() {
                    ensure(store.as_ref(), name, &ca_pem).await?;
                }
            }
            Ok::<_, ApiError>(listed.revision)
        };
        let revision = match pass.await {
            Ok(revision) => revision,
            Err(err) => {
                tracing::warn!(error = %err, "namespace defaults pass failed");
                0
            }
        };
        if revision > 0
            && let Ok(mut watch) = store.watch(&prefix, revision).await
        {
            let _ = tokio::time::timeout(RESYNC, watch.next()).await;
        } else {
            tokio::time::sleep(RESYNC).await;
        }
    }
}
