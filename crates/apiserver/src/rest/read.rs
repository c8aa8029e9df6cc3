//! get and list: one object, or a filtered page of a collection at a consistent
//! revision (label and field selectors, limit/continue, resourceVersion semantics),
//! as JSON or as a server-side Table.

use std::collections::BTreeMap;

use axum::response::Response;
use base64::Engine as _;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use strata_store::{ListOptions, Store};

use super::query::{FieldRequirement, Query, VersionMatch};
use super::{Target, object_response, wants_table};
use crate::status::ApiError;
use crate::{storage, table};

/// The object at `target`, or NotFound.
pub(crate) async fn load(store: &dyn Store, target: &Target) -> Result<(Value, i64), ApiError> {
    let name = target.name.as_deref().unwrap_or_default();
    let key = storage::key(target.resource, target.namespace.as_deref(), name);
    match store.get(&key).await? {
        Some(kv) => Ok((storage::decode(&kv)?, kv.mod_revision)),
        None => Err(ApiError::NotFound {
            resource: target.resource.qualified_name(),
            name: name.to_string(),
        }),
    }
}

pub(super) async fn get(
    store: &dyn Store,
    target: &Target,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (object, _) = load(store, target).await?;
    if wants_table(headers) {
        let rv = object["metadata"]["resourceVersion"].clone();
        return Ok(object_response(
            StatusCode::OK,
            &table::table(target.resource, &[object], rv),
            &[],
        ));
    }
    Ok(object_response(StatusCode::OK, &object, &[]))
}

/// The value at a dotted path, as a field selector compares it.
fn field_value(object: &Value, path: &str) -> String {
    let mut current = object;
    for part in path.split('.') {
        match current.get(part) {
            Some(v) => current = v,
            None => return String::new(),
        }
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// True if `object` passes the label and field selectors of `query`.
pub(crate) fn selected(object: &Value, query: &Query) -> bool {
    if !query.labels.is_empty() {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(object["metadata"]["labels"].clone()).unwrap_or_default();
        if !query.labels.matches(&labels) {
            return false;
        }
    }
    query.fields.iter().all(
        |FieldRequirement {
             field,
             value,
             negated,
         }| { (field_value(object, field) == *value) != *negated },
    )
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<ContinueToken>(&bytes).ok())
        .ok_or_else(|| ApiError::BadRequest("continue key is not valid: malformed token".into()))
}

fn encode_continue(rv: i64, last_key: &str) -> String {
    let token = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: last_key.to_string(),
    };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// A page of a collection: the kept items, the revision it was read at, a continue
/// token, and how many keys remain.
type Page<T> = (Vec<T>, i64, Option<String>, u64);

/// One page of the collection at one revision; `keep` turns a stored version into an
/// item or drops it (selectors filter after the store pages, so reading goes on until
/// the page is full).
async fn page<T>(
    store: &dyn Store,
    target: &Target,
    query: &Query,
    mut keep: impl FnMut(&strata_store::KeyValue) -> Result<Option<T>, ApiError>,
) -> Result<Page<T>, ApiError> {
    let prefix = storage::prefix(target.resource, target.namespace.as_deref());
    let (mut revision, mut after) = (None, None);
    if let Some(token) = &query.continue_token {
        let token = decode_continue(token)?;
        if !token.start.starts_with(&prefix) {
            return Err(ApiError::BadRequest(
                "continue key is not valid: it names another collection".into(),
            ));
        }
        revision = Some(token.rv);
        after = Some(token.start);
    } else if let Some(rv) = &query.resource_version {
        let rv = storage::parse_resource_version(rv)?;
        // "0" and NotOlderThan may be served from the latest state; Exact needs that
        // revision (and so does a plain RV with a limit, for consistent paging).
        if query.version_match == VersionMatch::Exact
            || (query.version_match == VersionMatch::Unset && query.limit.is_some() && rv > 0)
        {
            revision = Some(rv);
        }
    }
    let mut items = Vec::new();
    let mut last_key = None;
    let mut remaining;
    let served_at;
    // Selectors filter after the store pages, so keep reading until the page is full.
    loop {
        let page = store
            .list(
                &prefix,
                ListOptions {
                    revision,
                    limit: query.limit.map(|l| l.saturating_sub(items.len()).max(1)),
                    continue_after: after.clone(),
                },
            )
            .await
            .map_err(|e| match e {
                strata_store::StoreError::Compacted { .. } if query.continue_token.is_some() => {
                    ApiError::Expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into())
                }
                other => other.into(),
            })?;
        revision = Some(page.revision);
        for kv in &page.items {
            if let Some(item) = keep(kv)? {
                items.push(item);
            }
            last_key = Some(kv.key.clone());
        }
        remaining = page.remaining;
        let full = query.limit.is_some_and(|l| items.len() >= l);
        if !page.more() || full || query.limit.is_none() {
            served_at = page.revision;
            break;
        }
        after = last_key.clone();
    }
    let token = match (query.limit, remaining, &last_key) {
        (Some(_), r, Some(key)) if r > 0 => Some(encode_continue(served_at, key)),
        _ => None,
    };
    Ok((items, served_at, token, remaining))
}

/// One page of the collection as objects, filtered by the query's selectors.
pub(crate) async fn list_page(
    store: &dyn Store,
    target: &Target,
    query: &Query,
) -> Result<Page<Value>, ApiError> {
    page(store, target, query, |kv| {
        let object = storage::decode(kv)?;
        Ok(selected(&object, query).then_some(object))
    })
    .await
}

/// A stored object's JSON with its resourceVersion, without parsing it: the stored
/// form has sorted keys, so `"metadata":{` follows only scalar fields (apiVersion,
/// kind) and the version can be spliced in. Anything else takes the parsing path.
fn raw_item(kv: &strata_store::KeyValue) -> Result<Vec<u8>, ApiError> {
    const META: &[u8] = b"\"metadata\":{";
    let bytes = &kv.value[..];
    if let Some(at) = bytes.windows(META.len()).position(|w| w == META)
        && bytes.first() == Some(&b'{')
        && !bytes[1..at].contains(&b'{')
    {
        let insert = at + META.len();
        let version = format!("\"resourceVersion\":\"{}\"", kv.mod_revision);
        let mut out = Vec::with_capacity(bytes.len() + version.len() + 1);
        out.extend_from_slice(&bytes[..insert]);
        out.extend_from_slice(version.as_bytes());
        if bytes.get(insert) != Some(&b'}') {
            out.push(b',');
        }
        out.extend_from_slice(&bytes[insert..]);
        return Ok(out);
    }
    Ok(serde_json::to_vec(&storage::decode(kv)?).unwrap_or_default())
}

pub(super) async fn list(
    store: &dyn Store,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    if !wants_table(headers) && query.labels.is_empty() && query.fields.is_empty() {
        return list_raw(store, target, query).await;
    }
    let (items, revision, token, remaining) = list_page(store, target, query).await?;
    if wants_table(headers) {
        let mut t = table::table(target.resource, &items, json!(revision.to_string()));
        if let Some(token) = token {
            t["metadata"]["continue"] = json!(token);
        }
        return Ok(object_response(StatusCode::OK, &t, &[]));
    }
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = token {
        metadata["continue"] = json!(token);
        metadata["remainingItemCount"] = json!(remaining);
    }
    let list = json!({
        "kind": target.resource.list_kind(),
        "apiVersion": target.resource.api_version(),
        "metadata": metadata,
        "items": items,
    });
    Ok(object_response(StatusCode::OK, &list, &[]))
}

/// An unfiltered list, assembled from the stored bytes (no parse and re-encode of
/// every object: listing 10k pods is dominated by this).
async fn list_raw(store: &dyn Store, target: &Target, query: &Query) -> Result<Response, ApiError> {
    let (items, revision, token, remaining) =
        page(store, target, query, |kv| raw_item(kv).map(Some)).await?;
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let Some(token) = token {
        metadata["continue"] = json!(token);
        metadata["remainingItemCount"] = json!(remaining);
    }
    let head = format!(
        "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
        json!(target.resource.list_kind()),
        json!(target.resource.api_version()),
        metadata
    );
    let mut body =
        Vec::with_capacity(head.len() + items.iter().map(|i| i.len() + 1).sum::<usize>() + 2);
    body.extend_from_slice(head.as_bytes());
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    let mut response = Response::new(axum::body::Body::from(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_selectors_compare_string_forms() {
        let pod = json!({"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let q = Query::parse(Some(
            "fieldSelector=spec.nodeName%3Dn1,status.phase%21%3DPending",
        ))
        .unwrap();
        assert!(selected(&pod, &q));
        let q = Query::parse(Some("fieldSelector=spec.nodeName%3D")).unwrap();
        assert!(!selected(&pod, &q));
        let token = encode_continue(9, "/registry/core/pods/ns/a");
        assert_eq!(decode_continue(&token).unwrap().rv, 9);
        assert!(decode_continue("!!").is_err());
        let kv = |value: &str| strata_store::KeyValue {
            key: "k".into(),
            value: bytes::Bytes::from(value.to_string()),
            create_revision: 1,
            mod_revision: 7,
        };
        for stored in [
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{}}"#,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{},"spec":{"metadata":{}}}"#,
            r#"{"data":{"metadata":{"x":1}},"metadata":{"name":"odd"}}"#,
        ] {
            let raw: Value = serde_json::from_slice(&raw_item(&kv(stored)).unwrap()).unwrap();
            assert_eq!(raw, storage::decode(&kv(stored)).unwrap(), "{stored}");
        }
    }
}
