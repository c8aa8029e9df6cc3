//! The OpenAPI endpoints. `/openapi/v3` lists one document per group-version,
//! each at a URL carrying its content hash; `/openapi/v3/apis/<group>/<version>`
//! (`/openapi/v3/api/v1` for the core group) holds the paths and the
//! `components.schemas` kubectl uses for `kubectl explain` and to learn that the server
//! validates fields itself.
//!
//! The documents are generated once, on first use, and served from memory with an
//! `ETag`. As kube-apiserver does, a request whose `hash` is current may be cached
//! forever, and one with a stale hash is redirected to the current URL.
//!
//! OpenAPI v2 (`/openapi/v2`) is served by [`v2`], converted from these documents, as
//! JSON or as the gnostic protobuf client-go asks for ([`v2_protobuf`]). kubectl 1.27+
//! reads v3 for `explain` and for deciding on server-side field validation; it reads
//! v2 for `explain --output=plaintext-openapiv2` and where it falls back from v3.

mod function;
mod paths;
mod schemas;
pub mod v2;
pub mod v2_protobuf;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};
use strata_api::resources::{self, RESOURCES};

use crate::discovery::KUBERNETES_MINOR;
use crate::document::Document;
use crate::status::ApiError;

pub use schemas::{REF_PREFIX, ref_name};

/// The index and the per-group-version documents, keyed by path (`apis/apps/v1`).
#[derive(Debug)]
struct Documents {
    index: Document,
    by_path: BTreeMap<String, Document>,
}

fn documents() -> &'static Documents {
    static DOCUMENTS: OnceLock<Documents> = OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        let mut by_path = BTreeMap::new();
        for (group, versions) in resources::groups() {
            for version in versions {
                by_path.insert(
                    gv_path(group, version),
                    Document::new(&group_version_document(group, version)),
                );
            }
        }
        let index: Map<String, Value> = by_path
            .iter()
            .map(|(path, doc)| {
                let url = format!("/openapi/v3/{path}?hash={}", doc.hash);
                (path.clone(), json!({"serverRelativeURL": url}))
            })
            .collect();
        Documents {
            index: Document::new(&json!({"paths": index})),
            by_path,
        }
    })
}

/// The served v3 documents, one per group-version, read back from their cached bytes
/// (so that `/openapi/v2` derives from exactly what v3 serves, built once).
fn served_v3_documents() -> Vec<Value> {
    documents()
        .by_path
        .values()
        .filter_map(|doc| serde_json::from_slice(&doc.bytes).ok())
        .collect()
}

/// The path of a group-version below `/openapi/v3/` (`api/v1`, `apis/apps/v1`).
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Builds the OpenAPI v3 document of `group`/`version`; an empty one for a
/// group-version Strata does not serve.
pub fn group_version_document(group: &str, version: &str) -> Value {
    let served: Vec<_> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let built = schemas::build(&served);
    let mut paths = Map::new();
    for (r, (_, refs)) in served.iter().zip(&built.refs) {
        paths::insert(&mut paths, r, refs.as_ref());
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBERNETES_MINOR}.0")},
        "paths": paths,
        "components": {"schemas": built.definitions},
    })
}

fn json_bytes(doc: &Document, headers: &HeaderMap, immutable: bool) -> Response {
    let cache = if immutable {
        "public, immutable"
    } else {
        "no-cache, private"
    };
    doc.respond(headers, HeaderValue::from_static("application/json"), cache)
}

/// Serves `/openapi/v3/<rest>`; `query` is the request's query string.
pub fn serve_v3(rest: &[&str], query: Option<&str>, headers: &HeaderMap) -> Response {
    let docs = documents();
    if rest.is_empty() {
        return json_bytes(&docs.index, headers, false);
    }
    let path = rest.join("/");
    let Some(doc) = docs.by_path.get(&path) else {
        return ApiError::NoRoute.into_response();
    };
    let hash = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "hash")
            .map(|(_, v)| v.into_owned())
    });
    match hash {
        Some(h) if h == doc.hash => json_bytes(doc, headers, true),
        Some(_) => {
            let location = format!("/openapi/v3/{path}?hash={}", doc.hash);
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
            if let Ok(value) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, value);
            }
            r
        }
        None => json_bytes(doc, headers, false),
    }
}

/// Every `$ref` anywhere in `value` (the tests of both versions check that they resolve).
#[cfg(test)]
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(s)) => out.push(s),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_v1_has_kubernetes_shaped_schemas() {
        let doc = group_version_document("apps", "v1");
        let schemas = &doc["components"]["schemas"];
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let spec = &deployment["properties"]["spec"];
        assert_eq!(
            ref_name(spec),
            Some("io.k8s.api.apps.v1.DeploymentSpec"),
            "{spec}"
        );
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentStrategy"];
        assert!(
            strategy["properties"]["type"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("RollingUpdate"))
        );
        assert_eq!(
            strategy["properties"]["type"]["enum"],
            json!(["Recreate", "RollingUpdate"])
        );
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == "fieldValidation"))
        );
        assert!(patch.get("requestBody").is_none());
    }

    #[test]
    fn every_ref_resolves_and_every_kind_has_a_schema() {
        for (group, versions) in resources::groups() {
            for version in versions {
                let doc = group_version_document(group, version);
                let schemas = &doc["components"]["schemas"];
                let mut all = Vec::new();
                refs(&doc, &mut all);
                assert!(!all.is_empty());
                for reference in all {
                    let name = reference.strip_prefix(REF_PREFIX).unwrap();
                    assert!(
                        schemas.get(name).is_some(),
                        "{group}/{version}: {reference}"
                    );
                }
                for r in RESOURCES
                    .iter()
                    .filter(|r| r.group == group && r.version == version)
                {
                    let found = schemas
                        .as_object()
                        .unwrap()
                        .values()
                        .any(|s| s["x-kubernetes-group-version-kind"][0]["kind"] == r.kind);
                    assert!(found, "{}", r.kind);
                }
            }
        }
    }

    #[test]
    fn index_links_to_hashed_documents() {
        let headers = HeaderMap::new();
        let docs = documents();
        let index: Value = serde_json::from_slice(&docs.index.bytes).unwrap();
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let (_, query) = url.split_once('?').unwrap();
        let ok = serve_v3(&["apis", "apps", "v1"], Some(query), &headers);
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::CACHE_CONTROL], "public, immutable");
        let stale = serve_v3(&["apis", "apps", "v1"], Some("hash=old"), &headers);
        assert_eq!(stale.status(), StatusCode::MOVED_PERMANENTLY);
        let mut conditional = HeaderMap::new();
        conditional.insert(header::IF_NONE_MATCH, ok.headers()[header::ETAG].clone());
        let cached = serve_v3(&["apis", "apps", "v1"], None, &conditional);
        assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
        let missing = serve_v3(&["apis", "nope", "v1"], None, &headers);
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }
}
