//! The `paths` of one group-version's OpenAPI v3 document: list, create, get,
//! replace, patch and delete for every resource, with the query parameters kubectl
//! looks for (`fieldValidation` tells it the server validates fields itself).

use serde_json::{Map, Value, json};
use strata_api::Resource;

use super::gv_path;

/// The object and list `$ref`s of a resource, when it has a schema.
pub type Refs<'a> = Option<&'a (Value, Value)>;

fn content(schema: &Value) -> Value {
    json!({"application/json": {"schema": schema}, "application/yaml": {"schema": schema}})
}

fn operation(r: &Resource, verb: &str, writes: bool, body: Option<&Value>) -> Value {
    let mut params = vec![json!({"name": "pretty", "in": "query", "schema": {"type": "string"}})];
    if writes {
        for name in ["dryRun", "fieldManager", "fieldValidation"] {
            params.push(json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}}));
        }
    }
    let mut ok = json!({"description": "OK"});
    if let Some(schema) = body {
        ok["content"] = content(schema);
    }
    json!({
        "operationId": format!("{verb}{}", r.kind),
        "parameters": params,
        "responses": {"200": ok},
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    })
}

/// Adds a request body of the object's schema to `op`.
///
/// PATCH gets none on purpose: kubectl apply computes a strategic merge patch from
/// the OpenAPI document only when the PATCH operation declares an
/// `application/strategic-merge-patch+json` body; without it kubectl uses its
/// compiled-in types, whose patch metadata is complete, where ours carries only the
/// merge keys Strata's patch schema knows.
fn with_body(mut op: Value, object: Option<&Value>) -> Value {
    if let Some(schema) = object {
        op["requestBody"] = json!({"content": content(schema), "required": true});
    }
    op
}

/// Inserts the collection and item paths of `r` into `paths`.
pub fn insert(paths: &mut Map<String, Value>, r: &Resource, refs: Refs<'_>) {
    let object = refs.map(|(object, _)| object);
    let list = refs.map(|(_, list)| list);
    let base = format!("/{}", gv_path(r.group, r.version));
    let collection = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    paths.insert(
        collection.clone(),
        json!({
            "get": operation(r, "list", false, list),
            "post": with_body(operation(r, "post", true, object), object),
        }),
    );
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({
            "get": operation(r, "get", false, object),
            "put": with_body(operation(r, "put", true, object), object),
            "patch": operation(r, "patch", true, object),
            "delete": operation(r, "delete", false, None),
        }),
    );
}
