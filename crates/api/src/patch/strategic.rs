//! Strategic merge patch (k8s.io/apimachinery/pkg/util/strategicpatch), as the API
//! server applies it: a merge patch in which lists the schema marks `merge` are
//! merged element by element (by a merge key, or as a set of scalars), plus the
//! directives kubectl sends:
//!
//! - `$patch: replace` in a map replaces the map; as a list element, replaces the list.
//! - `$patch: delete` in a map deletes it; as a list element, deletes the element
//!   with that merge key (a missing one is fine).
//! - `$patch: merge` is the default and only removed.
//! - `$deleteFromPrimitiveList/<field>: [..]` removes those scalars from the list.
//! - `$setElementOrder/<field>: [..]` orders the merged list: elements it names
//!   in its order, the others (server-only) where they stood relative to them.
//! - `$retainKeys: [..]` keeps only the listed fields of the map (union types such
//!   as a Deployment's `strategy`, or a volume's source).
//!
//! Differences from Kubernetes, all on the lenient side: a value added where the
//! object had none has its directives applied too (Kubernetes stores such a value
//! as sent, directives and all); `$patch: delete` in a nested map removes the key
//! (Kubernetes leaves `{}`); `$patch: merge` is accepted everywhere; and
//! `$setElementOrder` lists are not checked against the patch's list.

use serde_json::{Map, Value};

use super::schema::{FieldSchema, ListMerge, TypeSchema};
use super::{PatchError, type_name};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// Applies the strategic merge patch `patch` to `original`, an object of the kind
/// `schema` describes (from [`schema_for`](super::schema_for)).
///
/// Errors: a malformed directive is [`PatchError::MalformedDirective`] (400); a
/// list element without its merge key, an unknown `$patch` value or a list of lists
/// where a merge is asked is [`PatchError::Unprocessable`] (422). Messages name the
/// field path (`spec.template.spec.containers[1]`).
///
/// ```
/// use serde_json::json;
/// use strata_api::patch::{schema_for, strategic_merge_patch};
/// let pod = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [
///     {"name": "web", "image": "nginx", "env": [{"name": "A", "value": "1"}]}]}});
/// let patch = json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [
///     {"name": "web", "env": [{"name": "B", "value": "2"}]}]}});
/// let patched = strategic_merge_patch(&pod, &patch, schema_for("", "Pod").unwrap()).unwrap();
/// // New elements come before the stored ones, as in Kubernetes.
/// assert_eq!(patched["metadata"]["finalizers"], json!(["b", "a"]));
/// assert_eq!(patched["spec"]["containers"][0]["env"].as_array().unwrap().len(), 2);
/// ```
pub fn strategic_merge_patch(
    original: &Value,
    patch: &Value,
    schema: &'static TypeSchema,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Decode {
            message: format!(
                "a strategic merge patch must be a JSON object, not {}",
                type_name(patch)
            ),
        });
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let merged = merge_map(original, patch, Some(schema), "")?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// `spec.replicas`; the root is `patch` in messages.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "patch".to_string()
    } else {
        path.to_string()
    }
}

fn malformed(path: &str, message: impl Into<String>) -> PatchError {
    PatchError::MalformedDirective {
        path: shown(path),
        message: message.into(),
    }
}

fn unprocessable(path: &str, message: impl Into<String>) -> PatchError {
    PatchError::Unprocessable {
        path: shown(path),
        message: message.into(),
    }
}

/// Merges `patch` into `original`; `None` when the patch deletes the map.
fn merge_map(
    mut original: Map<String, Value>,
    patch: &Map<String, Value>,
    schema: Option<&'static TypeSchema>,
    path: &str,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get(DIRECTIVE) {
        None => {}
        Some(Value::String(d)) if d == "merge" => {}
        Some(Value::String(d)) if d == "delete" => return Ok(None),
        Some(Value::String(d)) if d == "replace" => {
            let mut rest = patch.clone();
            rest.remove(DIRECTIVE);
            return merge_map(Map::new(), &rest, schema, path);
        }
        Some(other) => {
            return Err(unprocessable(
                path,
                format!("unknown patch type {other} in map: expected replace, delete or merge"),
            ));
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        retain_keys(&mut original, patch, keys, path)?;
    }
    // The stored lists that `$setElementOrder` directives reorder, before merging.
    let mut orders = Vec::new();
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            let Value::Array(order) = value else {
                return Err(malformed(path, format!("{key} must be a list")));
            };
            let stored = match original.get(field) {
                Some(Value::Array(list)) => list.clone(),
                _ => Vec::new(),
            };
            orders.push((field, order, stored));
        }
    }
    for (key, value) in patch {
        if key == DIRECTIVE || key == RETAIN_KEYS || key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(remove) = value else {
                return Err(malformed(path, format!("{key} must be a list")));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        let field = schema.and_then(|s| s.field(key));
        let current = original.get_mut(key).map(Value::take);
        match merge_value(current, value, field, &join(path, key))? {
            Some(merged) => {
                original.insert(key.clone(), merged);
            }
            None => {
                original.remove(key);
            }
        }
    }
    for (field, order, stored) in orders {
        let identity = match schema.and_then(|s| s.field(field)).map(|f| f.list) {
            Some(ListMerge::ByKey(key)) => Some(key),
            Some(ListMerge::Set) => None,
            // Lists that are replaced already have the patch's order.
            Some(ListMerge::Atomic) | None => continue,
        };
        if let Some(Value::Array(list)) = original.get_mut(field) {
            *list = normalize_order(std::mem::take(list), order, &stored, identity);
        }
    }
    Ok(Some(original))
}

/// Keeps only the fields `$retainKeys` lists, after checking that the patch sets
/// no field outside them.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    keys: &Value,
    path: &str,
) -> Result<(), PatchError> {
    let keys = keys
        .as_array()
        .and_then(|keys| keys.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
        .ok_or_else(|| malformed(path, "$retainKeys must be a list of field names"))?;
    for (key, value) in patch {
        if !value.is_null() && !key.starts_with('$') && !keys.contains(&key.as_str()) {
            return Err(malformed(
                path,
                format!("the patch sets field \"{key}\", which is not in $retainKeys"),
            ));
        }
    }
    original.retain(|key, _| keys.contains(&key.as_str()));
    Ok(())
}

/// Merges one patch value into the stored one (if any); `None` deletes the field.
fn merge_value(
    current: Option<Value>,
    patch: &Value,
    field: Option<&'static FieldSchema>,
    path: &str,
) -> Result<Option<Value>, PatchError> {
    let schema = field.and_then(|f| f.schema);
    Ok(match (current, patch) {
        (_, Value::Null) => None,
        (Some(Value::Object(map)), Value::Object(p)) => {
            merge_map(map, p, schema, path)?.map(Value::Object)
        }
        // Nothing (or not a map) stored: the patch's map, with its directives applied.
        (_, Value::Object(p)) => merge_map(Map::new(), p, schema, path)?.map(Value::Object),
        (current, Value::Array(p)) => {
            let current = match current {
                Some(Value::Array(list)) => list,
                _ => Vec::new(),
            };
            let strategy = field.map_or(ListMerge::Atomic, |f| f.list);
            Some(Value::Array(merge_list(
                current, p, strategy, schema, path,
            )?))
        }
        (_, scalar) => Some(scalar.clone()),
    })
}

fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    strategy: ListMerge,
    schema: Option<&'static TypeSchema>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    match strategy {
        ListMerge::Atomic => {
            let mut replaced = Vec::with_capacity(patch.len());
            for (i, element) in patch.iter().enumerate() {
                let at = format!("{path}[{i}]");
                let cleaned = match element {
                    Value::Object(p) => merge_map(Map::new(), p, schema, &at)?.map(Value::Object),
                    Value::Array(p) => Some(Value::Array(merge_list(
                        Vec::new(),
                        p,
                        ListMerge::Atomic,
                        None,
                        &at,
                    )?)),
                    scalar => Some(scalar.clone()),
                };
                replaced.extend(cleaned);
            }
            Ok(replaced)
        }
        ListMerge::Set => merge_set(original, patch, path),
        ListMerge::ByKey(key) => merge_by_key(original, patch, key, schema, path),
    }
}

/// A list of scalars merged as a set: the stored ones, then the new ones.
fn merge_set(original: Vec<Value>, patch: &[Value], path: &str) -> Result<Vec<Value>, PatchError> {
    if let Some((i, v)) = patch
        .iter()
        .enumerate()
        .find(|(_, v)| v.is_object() || v.is_array())
    {
        return Err(unprocessable(
            &format!("{path}[{i}]"),
            format!(
                "this list merges as a set of scalars, not of {}s",
                type_name(v)
            ),
        ));
    }
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
    for v in original.iter().chain(patch) {
        if !merged.contains(v) {
            merged.push(v.clone());
        }
    }
    Ok(normalize_order(merged, patch, &original, None))
}

/// A list of objects merged element by element, matched by `key`.
fn merge_by_key(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    schema: Option<&'static TypeSchema>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let mut replace = false;
    let mut elements = Vec::with_capacity(patch.len());
    for (i, element) in patch.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Value::Object(element) = element else {
            return Err(unprocessable(
                &at,
                format!(
                    "this list merges by \"{key}\" and holds objects, not {}s",
                    type_name(element)
                ),
            ));
        };
        let merge_key = || {
            element.get(key).ok_or_else(|| {
                unprocessable(
                    &at,
                    format!(
                        "{} does not contain declared merge key: {key}",
                        Value::Object(element.clone())
                    ),
                )
            })
        };
        match element.get(DIRECTIVE) {
            None => {
                merge_key()?;
                elements.push(element);
            }
            Some(Value::String(d)) if d == "delete" => {
                let doomed = merge_key()?;
                original.retain(|o| o.get(key) != Some(doomed));
            }
            Some(Value::String(d)) if d == "replace" => replace = true,
            // `{"$patch": "merge"}` alone says what the list does anyway.
            Some(Value::String(d)) if d == "merge" => {
                if element.len() > 1 {
                    merge_key()?;
                    elements.push(element);
                }
            }
            Some(other) => {
                return Err(unprocessable(
                    &at,
                    format!(
                        "unknown patch type {other} in list element: expected replace, delete or merge"
                    ),
                ));
            }
        }
    }
    if replace {
        original.clear();
    }
    let stored = original.clone();
    for element in &elements {
        let id = element.get(key);
        let at = match id {
            Some(Value::String(s)) => format!("{path}[{key}={s}]"),
            Some(v) => format!("{path}[{key}={v}]"),
            None => path.to_string(),
        };
        match original.iter().position(|o| o.get(key) == id) {
            Some(i) => {
                let current = match original[i].take() {
                    Value::Object(map) => map,
                    _ => Map::new(),
                };
                match merge_map(current, element, schema, &at)? {
                    Some(merged) => original[i] = Value::Object(merged),
                    None => {
                        original.remove(i);
                    }
                }
            }
            None => {
                if let Some(added) = merge_map(Map::new(), element, schema, &at)? {
                    original.push(Value::Object(added));
                }
            }
        }
    }
    let order: Vec<Value> = elements.into_iter().cloned().map(Value::Object).collect();
    Ok(normalize_order(original, &order, &stored, Some(key)))
}

/// What identifies an element: its merge key's value, or itself for scalars.
fn identity<'a>(element: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match key {
        Some(key) => element.get(key),
        None => Some(element),
    }
}

fn index_in(list: &[Value], element: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(element, key)?;
    list.iter().position(|e| identity(e, key) == Some(id))
}

/// Orders a merged list as Kubernetes does (`normalizeElementOrder`): the elements
/// `order` names come in its order; the others (server-only) keep their stored
/// order and are slotted in before a named element that stood after them in
/// `stored`. New elements thus come before server-only ones unless `order` (a
/// `$setElementOrder` list) says otherwise.
fn normalize_order(
    merged: Vec<Value>,
    order: &[Value],
    stored: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let (mut named, mut server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|e| index_in(order, e, key).is_some());
    named.sort_by_key(|e| index_in(order, e, key));
    server_only.sort_by_key(|e| index_in(stored, e, key).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(named.len() + server_only.len());
    let mut named = named.into_iter().peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        let server_first = match (server_only.peek(), named.peek()) {
            (Some(s), Some(n)) => matches!(
                (index_in(stored, s, key), index_in(stored, n, key)),
                (Some(a), Some(b)) if a < b
            ),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        out.extend(if server_first {
            server_only.next()
        } else {
            named.next()
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::patch::{PatchType, apply_patch, schema_for};
    use crate::resources::{Resource, by_kind};
    use crate::{FieldValidation, Operation, admit};

    fn deployments() -> &'static Resource {
        by_kind("apps/v1", "Deployment").unwrap()
    }

    /// A stored Deployment, as admission leaves it (abridged defaults).
    fn stored() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "uid": "6a1c3c2e-0d7b-4e59-9d39-2f0c9a8b1e11",
                "resourceVersion": "41",
                "labels": {"app": "web"},
                "finalizers": ["example.com/a"],
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"name\":\"web\",\"namespace\":\"default\"},\"spec\":{\"replicas\":1,\"selector\":{\"matchLabels\":{\"app\":\"web\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":[{\"image\":\"nginx:1.24\",\"name\":\"web\"}]}}}}\n"
                }
            },
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.24",
                                "ports": [
                                    {"containerPort": 80, "protocol": "TCP"},
                                    {"containerPort": 443, "protocol": "TCP"}
                                ],
                                "env": [
                                    {"name": "MODE", "value": "prod"},
                                    {"name": "LOG", "value": "info"}
                                ]
                            },
                            {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "inf"]}
                        ],
                        "nodeSelector": {"disk": "ssd", "zone": "a"},
                        "tolerations": [{"key": "a", "operator": "Exists"}]
                    }
                }
            }
        })
    }

    fn smp(original: &Value, patch: Value) -> Result<Value, PatchError> {
        strategic_merge_patch(original, &patch, schema_for("apps", "Deployment").unwrap())
    }

    fn containers(object: &Value) -> &Vec<Value> {
        object["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
    }

    fn names(list: &[Value], key: &str) -> Vec<String> {
        list.iter()
            .map(|e| match &e[key] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    }

    #[test]
    fn containers_merge_by_name() {
        let d = stored();
        // Update one container's image: the other container and fields stay.
        let got = smp(
            &d,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1.37"}]}}}}),
        )
        .unwrap();
        assert_eq!(names(containers(&got), "name"), ["web", "sidecar"]);
        assert_eq!(containers(&got)[1]["image"], "busybox:1.37");
        assert_eq!(containers(&got)[1]["args"], json!(["sleep", "inf"]));
        assert_eq!(containers(&got)[0], containers(&d)[0]);

        // Add a container: new elements come first, as in Kubernetes.
        let got = smp(
            &d,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "metrics", "image": "exporter"}]}}}}),
        )
        .unwrap();
        assert_eq!(
            names(containers(&got), "name"),
            ["metrics", "web", "sidecar"]
        );

        // Delete one; deleting a missing one is fine.
        let got = smp(
            &d,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "$patch": "delete"},
                {"name": "ghost", "$patch": "delete"}
            ]}}}}),
        )
        .unwrap();
        assert_eq!(names(containers(&got), "name"), ["web"]);
    }

    #[test]
    fn env_merges_by_name_and_ports_by_container_port() {
        let got = smp(
            &stored(),
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "web",
                "env": [
                    {"name": "LOG", "value": "debug"},
                    {"name": "MODE", "$patch": "delete"},
                    {"name": "NEW", "value": "1"}
                ],
                "ports": [{"containerPort": 443, "name": "https"}, {"containerPort": 8080}]
            }]}}}}),
        )
        .unwrap();
        let web = &containers(&got)[0];
        assert_eq!(
            web["env"],
            json!([{"name": "LOG", "value": "debug"}, {"name": "NEW", "value": "1"}])
        );
        assert_eq!(
            web["ports"],
            json!([
                {"containerPort": 80, "protocol": "TCP"},
                {"containerPort": 443, "protocol": "TCP", "name": "https"},
                {"containerPort": 8080}
            ])
        );
    }

    #[test]
    fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
        let got = smp(
            &stored(),
            json!({"metadata": {"finalizers": ["example.com/b", "example.com/a", "example.com/b"]}}),
        )
        .unwrap();
        assert_eq!(
            got["metadata"]["finalizers"],
            json!(["example.com/b", "example.com/a"])
        );
        let got = smp(
            &got,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a", "nope"]}}),
        )
        .unwrap();
        assert_eq!(got["metadata"]["finalizers"], json!(["example.com/b"]));
        let err = smp(
            &got,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "example.com/a"}}),
        )
        .unwrap_err();
        assert_eq!(err.http_status(), 400);
        assert!(err.to_string().starts_with("metadata: "), "{err}");
    }

    #[test]
    fn patch_replace_and_delete_in_maps_and_lists() {
        let d = stored();
        let got = smp(
            &d,
            json!({"spec": {"template": {"spec": {"nodeSelector": {"$patch": "replace", "disk": "hdd"}}}}}),
        )
        .unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["nodeSelector"],
            json!({"disk": "hdd"})
        );
        // Without the directive the map merges.
        let got = smp(
            &d,
            json!({"spec": {"template": {"spec": {"nodeSelector": {"disk": "hdd", "zone": null}}}}}),
        )
        .unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["nodeSelector"],
            json!({"disk": "hdd"})
        );
        let got = smp(
            &d,
            json!({"spec": {"template": {"spec": {"nodeSelector": {"$patch": "delete"}}}}}),
        )
        .unwrap();
        assert!(
            got["spec"]["template"]["spec"]
                .get("nodeSelector")
                .is_none()
        );
        // `$patch: replace` as a list element replaces the list.
        let got = smp(
            &d,
            json!({"spec": {"template": {"spec": {"containers": [
                {"name": "only", "image": "x"},
                {"$patch": "replace"}
            ]}}}}),
        )
        .unwrap();
        assert_eq!(
            containers(&got),
            &vec![json!({"name": "only", "image": "x"})]
        );
        // `$patch: merge` is the default.
        let got = smp(
            &d,
            json!({"spec": {"$patch": "merge", "template": {"spec": {"containers": [{"$patch": "merge"}]}}}}),
        )
        .unwrap();
        assert_eq!(got, d);
    }

    #[test]
    fn retain_keys_clears_other_union_members() {
        let got = smp(
            &stored(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        )
        .unwrap();
        assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
        let err = smp(
            &stored(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {}}}}),
        )
        .unwrap_err();
        assert_eq!(err.http_status(), 400);
        assert!(err.to_string().contains("spec.strategy"), "{err}");
        assert!(err.to_string().contains("rollingUpdate"), "{err}");
    }

    /// kubectl sends `$retainKeys` for volumes (`patchStrategy: merge,retainKeys`)
    /// when a volume changes its source.
    #[test]
    fn retain_keys_in_a_merged_list_element() {
        let mut d = stored();
        d["spec"]["template"]["spec"]["volumes"] = json!([
            {"name": "data", "hostPath": {"path": "/srv"}},
            {"name": "cache", "emptyDir": {}}
        ]);
        let got = smp(
            &d,
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}],
                "volumes": [{"$retainKeys": ["emptyDir", "name"], "emptyDir": {"medium": "Memory"}, "hostPath": null, "name": "data"}]
            }}}}),
        )
        .unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["volumes"],
            json!([
                {"name": "data", "emptyDir": {"medium": "Memory"}},
                {"name": "cache", "emptyDir": {}}
            ])
        );
        // Lists without a merge strategy are replaced.
        let got = smp(
            &d,
            json!({"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}}),
        )
        .unwrap();
        assert_eq!(
            got["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "b", "operator": "Exists"}])
        );
    }

    #[test]
    fn set_element_order_orders_the_merged_list() {
        let got = smp(
            &stored(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}],
                "containers": [{"name": "web", "image": "nginx:1.25"}]
            }}}}),
        )
        .unwrap();
        assert_eq!(names(containers(&got), "name"), ["sidecar", "web"]);
        assert_eq!(containers(&got)[1]["image"], "nginx:1.25");
        // Naming elements the list lacks, or ordering an atomic list, is harmless.
        let got = smp(
            &stored(),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "zzz"}, {"name": "web"}],
                "$setElementOrder/tolerations": [{"key": "b"}],
                "$setElementOrder/nodeSelector": [],
            }}}}),
        )
        .unwrap();
        assert_eq!(names(containers(&got), "name"), ["web", "sidecar"]);
        // The directives are not stored.
        assert!(
            !got.to_string().contains('$'),
            "directive leaked into {got}"
        );
    }

    /// The patch kubectl 1.29 sends for `kubectl apply -f` of the Deployment
    /// manifest after changing its image and replicas (3-way patch from the
    /// last-applied annotation; the stored object has a second container someone
    /// else added).
    #[test]
    fn kubectl_apply_patch_updates_only_what_changed() {
        let last_applied = "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"annotations\":{},\"name\":\"web\",\"namespace\":\"default\"},\"spec\":{\"replicas\":3,\"selector\":{\"matchLabels\":{\"app\":\"web\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"web\"}},\"spec\":{\"containers\":[{\"image\":\"nginx:1.25\",\"name\":\"web\"}]}}}}\n";
        let body = json!({
            "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied}},
            "spec": {"replicas": 3, "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"image": "nginx:1.25", "name": "web"}]
            }}}
        });
        let d = stored();
        let got = apply_patch(
            deployments(),
            &d,
            PatchType::from_content_type("application/strategic-merge-patch+json").unwrap(),
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(got["spec"]["replicas"], 3);
        assert_eq!(
            got["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            last_applied
        );
        let list = containers(&got);
        assert_eq!(names(list, "name"), ["web", "sidecar"]);
        assert_eq!(list[0]["image"], "nginx:1.25");
        let mut web = list[0].clone();
        web["image"] = containers(&d)[0]["image"].clone();
        assert_eq!(web, containers(&d)[0], "only the image changed");
        assert_eq!(list[1], containers(&d)[1]);
        // Everything else is as stored.
        let mut expected = d.clone();
        expected["spec"]["replicas"] = json!(3);
        expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.25");
        expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!(last_applied);
        assert_eq!(got, expected);
        // And the server can admit it as an update.
        let admitted = admit(
            deployments(),
            got,
            Operation::Update { old: &d },
            FieldValidation::Strict,
        )
        .unwrap();
        assert_eq!(admitted.object["spec"]["replicas"], 3);
    }

    #[test]
    fn kubectl_label_scale_and_set_image_patches() {
        let d = stored();
        // `kubectl label deploy web tier=front` sends a merge patch.
        let got = apply_patch(
            deployments(),
            &d,
            PatchType::Merge,
            br#"{"metadata":{"labels":{"tier":"front"}}}"#,
        )
        .unwrap();
        assert_eq!(
            got["metadata"]["labels"],
            json!({"app": "web", "tier": "front"})
        );
        // `kubectl label deploy web app-` removes with null.
        let got = apply_patch(
            deployments(),
            &got,
            PatchType::Merge,
            br#"{"metadata":{"labels":{"app":null}}}"#,
        )
        .unwrap();
        assert_eq!(got["metadata"]["labels"], json!({"tier": "front"}));
        // `kubectl scale --replicas=5` (merge patch), the same as a strategic one.
        for patch_type in [PatchType::Merge, PatchType::StrategicMerge] {
            let got =
                apply_patch(deployments(), &d, patch_type, br#"{"spec":{"replicas":5}}"#).unwrap();
            assert_eq!(got["spec"]["replicas"], 5);
            assert_eq!(got["spec"]["template"], d["spec"]["template"]);
        }
        // `kubectl set image deploy/web web=nginx:1.26` (strategic).
        let got = apply_patch(
            deployments(),
            &d,
            PatchType::StrategicMerge,
            br#"{"spec":{"template":{"spec":{"containers":[{"image":"nginx:1.26","name":"web"}]}}}}"#,
        )
        .unwrap();
        assert_eq!(
            names(containers(&got), "image"),
            ["nginx:1.26", "busybox:1.36"]
        );
        // `kubectl rollout restart` (strategic) adds a template annotation.
        let got = apply_patch(
            deployments(),
            &d,
            PatchType::StrategicMerge,
            br#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2024-05-01T10:00:00Z"}}}}}"#,
        )
        .unwrap();
        assert_eq!(
            got["spec"]["template"]["metadata"],
            json!({"labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"}})
        );
        // A merge patch replaces the containers list wholesale.
        let got = apply_patch(
            deployments(),
            &d,
            PatchType::Merge,
            br#"{"spec":{"template":{"spec":{"containers":[{"image":"nginx:1.26","name":"web"}]}}}}"#,
        )
        .unwrap();
        assert_eq!(
            containers(&got),
            &vec![json!({"image": "nginx:1.26", "name": "web"})]
        );
    }

    #[test]
    fn pod_node_and_service_lists() {
        let pod = json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"}
        ]}});
        let got = strategic_merge_patch(
            &pod,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            schema_for("", "Pod").unwrap(),
        )
        .unwrap();
        assert_eq!(
            got["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
        );
        let node =
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
        let got = strategic_merge_patch(
            &node,
            &json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}}),
            schema_for("", "Node").unwrap(),
        )
        .unwrap();
        assert_eq!(
            names(got["status"]["addresses"].as_array().unwrap(), "type"),
            ["Hostname", "InternalIP"]
        );
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        let got = strategic_merge_patch(
            &svc,
            &json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
            schema_for("", "Service").unwrap(),
        )
        .unwrap();
        assert_eq!(
            got["spec"]["ports"],
            json!([{"port": 80, "targetPort": 9090}, {"port": 443}])
        );
    }

    #[test]
    fn added_values_have_nulls_and_directives_applied() {
        let got = smp(
            &json!({"metadata": {"name": "web"}}),
            json!({"spec": {"replicas": null, "template": {"spec": {
                "$setElementOrder/containers": [{"name": "web"}],
                "containers": [{"name": "web", "image": "x", "command": null,
                                "env": [{"name": "A", "$patch": "delete"}, {"name": "B", "value": "b"}]}]
            }}}}),
        )
        .unwrap();
        assert_eq!(
            got,
            json!({"metadata": {"name": "web"}, "spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": "x", "env": [{"name": "B", "value": "b"}]}
            ]}}}})
        );
    }

    #[test]
    fn unprocessable_patches_are_422_and_name_the_path() {
        let d = stored();
        let cases = [
            (
                json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
                "spec.template.spec.containers[0]: ",
                "merge key: name",
            ),
            (
                json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"value": "1"}]}]}}}}),
                "spec.template.spec.containers[name=web].env[0]: ",
                "merge key: name",
            ),
            (
                json!({"spec": {"template": {"$patch": "explode"}}}),
                "spec.template: ",
                "unknown patch type \"explode\"",
            ),
            (
                json!({"spec": {"template": {"spec": {"containers": ["web"]}}}}),
                "spec.template.spec.containers[0]: ",
                "holds objects",
            ),
            (
                json!({"metadata": {"finalizers": [["a"]]}}),
                "metadata.finalizers[0]: ",
                "set of scalars",
            ),
        ];
        for (patch, path, message) in cases {
            let err = smp(&d, patch.clone()).unwrap_err();
            assert_eq!(
                (err.http_status(), err.reason()),
                (422, "Invalid"),
                "{patch}: {err}"
            );
            let text = err.to_string();
            assert!(
                text.starts_with(path) && text.contains(message),
                "{patch}: {text}"
            );
        }
    }

    #[test]
    fn malformed_bodies_and_unsupported_kinds() {
        let d = stored();
        for (patch_type, body) in [
            (PatchType::StrategicMerge, &b"{not json"[..]),
            (PatchType::StrategicMerge, b"[1]"),
            (PatchType::Merge, b"\"x\""),
            (PatchType::Json, b"{}"),
        ] {
            let err = apply_patch(deployments(), &d, patch_type, body).unwrap_err();
            assert_eq!(err.http_status(), 400, "{patch_type:?}: {err}");
        }
        let function = Resource {
            group: "strata.dev",
            version: "v1alpha1",
            kind: "Function",
            plural: "functions",
            singular: "function",
            namespaced: true,
            short_names: &[],
            categories: &[],
            subresources: &[],
        };
        let err = apply_patch(&function, &d, PatchType::StrategicMerge, b"{}").unwrap_err();
        assert_eq!(
            err,
            PatchError::UnsupportedForKind {
                kind: "Function".into()
            }
        );
        assert_eq!(
            (err.http_status(), err.reason()),
            (415, "UnsupportedMediaType")
        );
        // Merge and JSON patches work for any kind.
        let got = apply_patch(
            &function,
            &json!({"spec": {}}),
            PatchType::Merge,
            br#"{"spec":{"a":1}}"#,
        );
        assert_eq!(got.unwrap(), json!({"spec": {"a": 1}}));
    }

    #[test]
    fn content_types() {
        for (header, want) in [
            ("application/json-patch+json", Some(PatchType::Json)),
            ("application/merge-patch+json", Some(PatchType::Merge)),
            (
                "Application/Strategic-Merge-Patch+JSON; charset=utf-8",
                Some(PatchType::StrategicMerge),
            ),
            ("application/apply-patch+yaml", None),
            ("application/json", None),
        ] {
            assert_eq!(PatchType::from_content_type(header), want, "{header}");
        }
        for t in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge] {
            assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
        }
    }
}
