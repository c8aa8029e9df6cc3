//! How objects sit in the store: one key per object
//! (`/registry/<group>/<resource>/<namespace>/<name>`, `core` for the core group, no
//! namespace for cluster-scoped resources), JSON values without `resourceVersion` —
//! the store's revision of the key *is* the resourceVersion, set on the way out.

use bytes::Bytes;
use serde_json::Value;
use strata_api::Resource;
use strata_store::KeyValue;

use crate::status::ApiError;

/// The key prefix of every object of `resource` (in `namespace`, when given).
pub fn prefix(resource: &Resource, namespace: Option<&str>) -> String {
    let group = if resource.group.is_empty() {
        "core"
    } else {
        resource.group
    };
    match namespace.filter(|_| resource.namespaced) {
        Some(ns) => format!("/registry/{group}/{}/{ns}/", resource.plural),
        None => format!("/registry/{group}/{}/", resource.plural),
    }
}

/// The key of one object.
pub fn key(resource: &Resource, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", prefix(resource, namespace))
}

/// The inverse of [`key`]: the resource, namespace and name a key stores.
pub fn locate(key: &str) -> Option<(&'static Resource, Option<String>, String)> {
    let parts: Vec<&str> = key.strip_prefix("/registry/")?.split('/').collect();
    let (group, plural, namespace, name) = match parts.as_slice() {
        [g, p, ns, n] => (*g, *p, Some(ns.to_string()), n.to_string()),
        [g, p, n] => (*g, *p, None, n.to_string()),
        _ => return None,
    };
    let group = if group == "core" { "" } else { group };
    let resource = strata_api::RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural && r.namespaced == namespace.is_some())?;
    Some((resource, namespace, name))
}

/// The stored form: JSON without `metadata.resourceVersion`.
pub fn encode(object: &Value) -> Bytes {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&object).unwrap_or_default())
}

/// The object a stored version holds, with its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    set_resource_version(&mut object, kv.mod_revision);
    Ok(object)
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(object: &mut Value, revision: i64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

/// Parses a resourceVersion a client sent.
pub fn parse_resource_version(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|rv| *rv >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid resource version: {text:?}")))
}

/// Stores a built-in object (the server's own: default namespaces, roles, the
/// `kubernetes` Service) as a create would, with a fresh uid and creation time, unless
/// an object of that name exists already (another server may have made it meanwhile).
pub async fn create_built_in(
    store: &dyn strata_store::Store,
    resource: &'static Resource,
    namespace: Option<&str>,
    name: &str,
    mut object: Value,
) -> Result<(), ApiError> {
    let key = key(resource, namespace, name);
    if store.get(&key).await?.is_some() {
        return Ok(());
    }
    object["metadata"]["uid"] = serde_json::json!(crate::rest::new_uid());
    object["metadata"]["creationTimestamp"] =
        serde_json::json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let admitted = strata_api::admit(
        resource,
        object,
        strata_api::Operation::Create,
        strata_api::FieldValidation::Strict,
    )
    .map_err(|e| ApiError::Internal(format!("built-in {} {name}: {e}", resource.kind)))?;
    match store.create(&key, encode(&admitted.object)).await {
        Ok(_) | Err(strata_store::StoreError::AlreadyExists { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_and_resource_versions() {
        let pods = strata_api::resources::find("", "v1", "pods").unwrap();
        let nodes = strata_api::resources::find("", "v1", "nodes").unwrap();
        let deploys = strata_api::resources::find("apps", "v1", "deployments").unwrap();
        assert_eq!(
            key(pods, Some("default"), "web"),
            "/registry/core/pods/default/web"
        );
        assert_eq!(prefix(pods, None), "/registry/core/pods/");
        assert_eq!(key(nodes, Some("ignored"), "n1"), "/registry/core/nodes/n1");
        assert_eq!(prefix(deploys, Some("x")), "/registry/apps/deployments/x/");
        let (r, ns, name) = locate(&key(deploys, Some("x"), "web")).unwrap();
        assert_eq!(
            (r.kind, ns.as_deref(), name.as_str()),
            ("Deployment", Some("x"), "web")
        );
        assert_eq!(locate(&key(nodes, None, "n1")).unwrap().0.kind, "Node");
        assert!(locate("/registry/core/pods").is_none());
        assert!(locate("/other").is_none());

        let stored = encode(&json!({"metadata": {"name": "a", "resourceVersion": "9"}}));
        assert_eq!(&stored[..], br#"{"metadata":{"name":"a"}}"#);
        let kv = KeyValue {
            key: "k".into(),
            value: stored,
            create_revision: 3,
            mod_revision: 7,
        };
        assert_eq!(decode(&kv).unwrap()["metadata"]["resourceVersion"], "7");
        assert!(parse_resource_version("-1").is_err());
        assert!(parse_resource_version("abc").is_err());
    }
}
