//! `/openapi/v2`: one Swagger 2.0 document, as kube-apiserver serves it, converted
//! from the OpenAPI v3 documents of every group-version (paths merged, every schema
//! under `definitions`, `$ref`s pointing there).
//!
//! The conversion keeps what Swagger 2.0 has and the `x-kubernetes-*` extensions kubectl
//! reads, and drops the v3-only keywords (`nullable`, `oneOf`, `anyOf`, …). A request
//! body becomes a `body` parameter, a response's content its `schema`, and the content
//! types `consumes`/`produces`.
//!
//! It is served as JSON by default and as gnostic's protobuf ([`super::v2_protobuf`])
//! to a client that prefers [`PROTOBUF_MEDIA_TYPE`], as client-go's `OpenAPISchema` (and
//! so `kubectl explain --output=plaintext-openapiv2`) does; like kube-apiserver's, that
//! answer is typed `application/octet-stream`. Both encodings are built once and
//! revalidate with their own `ETag`.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};
use serde_json::{Map, Value, json};

use super::schemas::REF_PREFIX;
use crate::discovery::KUBERNETES_MINOR;
use crate::document::Document;
use crate::status::ApiError;

/// The media type client-go asks for the protobuf encoding by (in `Accept`; the
/// response's `Content-Type` is `application/octet-stream`, as kube-apiserver's).
pub const PROTOBUF_MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// The older spelling of [`PROTOBUF_MEDIA_TYPE`], which kube-apiserver also accepts.
const PROTOBUF_MEDIA_TYPE_DOTTED: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The prefix of every `$ref` in the Swagger 2.0 document.
pub const V2_REF_PREFIX: &str = "#/definitions/";

/// The Swagger 2.0 keywords of a schema kept as they are (values, not subschemas).
const SCHEMA_KEYWORDS: &[&str] = &[
    "format",
    "title",
    "description",
    "default",
    "multipleOf",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "required",
    "enum",
    "readOnly",
    "xml",
    "externalDocs",
    "example",
];

/// The keys of a non-body parameter's v3 `schema` that Swagger 2.0 puts on the
/// parameter itself.
const PARAMETER_SCHEMA_KEYWORDS: &[&str] = &[
    "type",
    "format",
    "items",
    "collectionFormat",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "enum",
    "multipleOf",
];

/// The HTTP methods a path item may hold.
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch"];

fn is_extension(key: &str) -> bool {
    key.starts_with("x-")
}

/// A v3 `$ref` pointing into `definitions`; `None` when it is not a string.
fn schema_ref(v3: &Value) -> Option<Value> {
    let r = v3.as_str()?;
    Some(Value::String(match r.strip_prefix(REF_PREFIX) {
        Some(name) => format!("{V2_REF_PREFIX}{name}"),
        None => r.to_string(),
    }))
}

/// Converts an OpenAPI v3 schema to a Swagger 2.0 one.
pub fn schema(v3: &Value) -> Value {
    let Value::Object(map) = v3 else {
        return v3.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        let converted = match key.as_str() {
            "$ref" => match schema_ref(value) {
                Some(r) => r,
                None => continue,
            },
            // An OpenAPI 3.1-style `["string", "null"]` becomes its non-null type.
            "type" => match value {
                Value::Array(types) => match types.iter().find(|t| t.as_str() != Some("null")) {
                    Some(t) => t.clone(),
                    None => continue,
                },
                _ => value.clone(),
            },
            "properties" => match value {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(name, s)| (name.clone(), schema(s)))
                        .collect(),
                ),
                _ => continue,
            },
            "items" => match value {
                Value::Array(items) => Value::Array(items.iter().map(schema).collect()),
                _ => schema(value),
            },
            "additionalProperties" => schema(value),
            "allOf" => match value.as_array().map(Vec::as_slice) {
                // v3 wraps a `$ref` that has siblings (a description) in `allOf`; Swagger
                // 2.0 as kube-apiserver serves it puts the `$ref` beside them, and
                // kubectl's v2 models (kube-openapi `util/proto`) read only that form.
                Some([only]) if only.as_object().is_some_and(|o| o.len() == 1) => {
                    match only.get("$ref").map(schema_ref) {
                        Some(Some(r)) => {
                            out.insert("$ref".into(), r);
                            continue;
                        }
                        _ => Value::Array(vec![schema(only)]),
                    }
                }
                Some(parts) => Value::Array(parts.iter().map(schema).collect()),
                None => continue,
            },
            // v2's discriminator is a property name; v3's is an object.
            "discriminator" if value.is_string() => value.clone(),
            k if is_extension(k) || SCHEMA_KEYWORDS.contains(&k) => value.clone(),
            _ => continue,
        };
        out.insert(key.clone(), converted);
    }
    Value::Object(out)
}

/// The schema of a v3 `content` map (`application/json` preferred) and its media types.
fn content(v3: Option<&Value>) -> (Option<Value>, Vec<String>) {
    let Some(Value::Object(media)) = v3 else {
        return (None, Vec::new());
    };
    let types = media.keys().cloned().collect();
    let chosen = media
        .get("application/json")
        .or_else(|| media.values().next())
        .and_then(|m| m.get("schema"))
        .map(schema);
    (chosen, types)
}

/// Converts a non-body v3 parameter: its `schema`'s type and constraints move onto it.
fn parameter(v3: &Value) -> Value {
    let Value::Object(map) = v3 else {
        return v3.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "name" | "in" | "description" | "required" | "allowEmptyValue" => {
                out.insert(key.clone(), value.clone());
            }
            "schema" => {
                let converted = schema(value);
                for k in PARAMETER_SCHEMA_KEYWORDS {
                    if let Some(v) = converted.get(*k) {
                        out.insert((*k).to_string(), v.clone());
                    }
                }
            }
            k if is_extension(k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

fn parameters(v3: Option<&Value>) -> Vec<Value> {
    v3.and_then(Value::as_array)
        .map(|ps| ps.iter().map(parameter).collect())
        .unwrap_or_default()
}

fn push_unique(into: &mut Vec<String>, types: Vec<String>) {
    for t in types {
        if !into.contains(&t) {
            into.push(t);
        }
    }
}

/// Converts a v3 operation to a Swagger 2.0 one.
pub fn operation(v3: &Value) -> Value {
    let Value::Object(map) = v3 else {
        return v3.clone();
    };
    let mut out = Map::new();
    let mut params = parameters(map.get("parameters"));
    let mut consumes = Vec::new();
    let mut produces = Vec::new();
    if let Some(body) = map.get("requestBody") {
        let (body_schema, types) = content(body.get("content"));
        consumes = types;
        if let Some(s) = body_schema {
            let mut param = json!({"name": "body", "in": "body", "required": true, "schema": s});
            if let Some(d) = body.get("description") {
                param["description"] = d.clone();
            }
            params.push(param);
        }
    }
    let mut responses = Map::new();
    if let Some(Value::Object(v3_responses)) = map.get("responses") {
        for (code, response) in v3_responses {
            let description = response.get("description").cloned().unwrap_or(json!(""));
            let mut r = json!({"description": description});
            let (response_schema, types) = content(response.get("content"));
            push_unique(&mut produces, types);
            if let Some(s) = response_schema {
                r["schema"] = s;
            }
            responses.insert(code.clone(), r);
        }
    }
    for (key, value) in map {
        match key.as_str() {
            "operationId" | "summary" | "description" | "tags" | "deprecated" | "schemes"
            | "security" | "externalDocs" => {
                out.insert(key.clone(), value.clone());
            }
            k if is_extension(k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    if !consumes.is_empty() {
        out.insert("consumes".into(), json!(consumes));
    }
    if !produces.is_empty() {
        out.insert("produces".into(), json!(produces));
    }
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    out.insert("responses".into(), Value::Object(responses));
    Value::Object(out)
}

/// Converts a v3 path item: its operations and path-level parameters.
fn path_item(v3: &Value) -> Value {
    let Value::Object(map) = v3 else {
        return v3.clone();
    };
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "parameters" => {
                out.insert(key.clone(), Value::Array(parameters(Some(value))));
            }
            k if METHODS.contains(&k) => {
                out.insert(key.clone(), operation(value));
            }
            k if is_extension(k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// Merges `from` into `into`: keys `into` lacks are added, objects both hold are
/// merged, and `into` keeps its other values. Group-versions carry the same
/// definition with different `x-kubernetes-patch-*` annotations (a PodSpec reached
/// from a Deployment or a Job), so the merged one carries all of them.
fn merge(into: &mut Value, from: &Value) {
    let (Value::Object(into), Value::Object(from)) = (into, from) else {
        return;
    };
    for (key, value) in from {
        match into.get_mut(key) {
            Some(existing) => merge(existing, value),
            None => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Builds the Swagger 2.0 document from the v3 documents of every group-version.
pub fn document<'a>(v3_documents: impl IntoIterator<Item = &'a Value>) -> Value {
    let mut paths = Map::new();
    let mut definitions = Value::Object(Map::new());
    for doc in v3_documents {
        if let Some(Value::Object(v3_paths)) = doc.get("paths") {
            for (path, item) in v3_paths {
                paths.insert(path.clone(), path_item(item));
            }
        }
        if let Some(Value::Object(schemas)) = doc.get("components").and_then(|c| c.get("schemas")) {
            let converted: Map<String, Value> = schemas
                .iter()
                .map(|(name, s)| (name.clone(), schema(s)))
                .collect();
            merge(&mut definitions, &Value::Object(converted));
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{KUBERNETES_MINOR}.0")},
        "paths": paths,
        "definitions": definitions,
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "type": "apiKey",
                "name": "authorization",
                "in": "header",
            },
        },
        "security": [{"BearerToken": []}],
    })
}

/// The document in both encodings.
struct Served {
    json: Document,
    protobuf: Document,
}

fn served() -> &'static Served {
    static DOCUMENT: OnceLock<Served> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let v3 = super::served_v3_documents();
        let v2 = document(&v3);
        Served {
            json: Document::new(&v2),
            protobuf: Document::from_bytes(super::v2_protobuf::encode_document(&v2)),
        }
    })
}

/// The encodings `/openapi/v2` is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Protobuf,
}

/// The encoding `Accept` prefers: the media range of highest quality that names one
/// (the first on a tie), JSON for a wildcard or no header, `None` when nothing fits.
fn negotiate(headers: &HeaderMap) -> Option<Encoding> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Some(Encoding::Json);
    };
    let accept = accept.to_str().ok()?;
    if accept.trim().is_empty() {
        return Some(Encoding::Json);
    }
    let mut best: Option<(f32, Encoding)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let quality = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        let encoding = match media.as_str() {
            PROTOBUF_MEDIA_TYPE | PROTOBUF_MEDIA_TYPE_DOTTED => Encoding::Protobuf,
            "application/json" | "application/yaml" | "application/*" | "*/*" => Encoding::Json,
            _ => continue,
        };
        if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
            best = Some((quality, encoding));
        }
    }
    best.map(|(_, encoding)| encoding)
}

/// Serves `GET /openapi/v2`: the document as JSON, or as protobuf to a client that
/// prefers it (client-go asks for protobuf only); 406 when `Accept` allows neither.
pub fn serve(headers: &HeaderMap) -> Response {
    let (doc, content_type) = match negotiate(headers) {
        Some(Encoding::Json) => (&served().json, "application/json"),
        // Not PROTOBUF_MEDIA_TYPE: its `@` is a tspecial, so Go's mime.ParseMediaType
        // rejects it and client-go fails the request. kube-openapi sets no type and Go's
        // content sniffing answers `application/octet-stream`, which client-go passes
        // through as raw bytes.
        Some(Encoding::Protobuf) => (&served().protobuf, "application/octet-stream"),
        None => {
            return ApiError::NotAcceptable(format!("application/json, {PROTOBUF_MEDIA_TYPE}"))
                .into_response();
        }
    };
    let mut response = doc.respond(
        headers,
        HeaderValue::from_static(content_type),
        "no-cache, private",
    );
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn an_operation_with_a_body_becomes_the_v2_shape() {
        let pod = json!({"$ref": "#/components/schemas/io.k8s.api.core.v1.Pod"});
        let v3 = json!({
            "operationId": "createPod",
            "description": "create a Pod",
            "tags": ["core_v1"],
            "parameters": [{"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}, "style": "form"}],
            "requestBody": {"content": {"application/json": {"schema": pod}, "application/yaml": {"schema": pod}}, "required": true},
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": pod}, "application/yaml": {"schema": pod}}}},
            "x-kubernetes-action": "post",
            "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"},
        });
        let v2_pod = json!({"$ref": "#/definitions/io.k8s.api.core.v1.Pod"});
        assert_eq!(
            operation(&v3),
            json!({
                "operationId": "createPod",
                "description": "create a Pod",
                "tags": ["core_v1"],
                "consumes": ["application/json", "application/yaml"],
                "produces": ["application/json", "application/yaml"],
                "parameters": [
                    {"name": "dryRun", "in": "query", "type": "string", "uniqueItems": true},
                    {"name": "body", "in": "body", "required": true, "schema": v2_pod},
                ],
                "responses": {"200": {"description": "OK", "schema": v2_pod}},
                "x-kubernetes-action": "post",
                "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "Pod"},
            })
        );
        let delete = operation(
            &json!({"operationId": "deletePod", "responses": {"200": {"description": "OK"}}}),
        );
        assert_eq!(
            delete,
            json!({"operationId": "deletePod", "responses": {"200": {"description": "OK"}}})
        );
    }

    #[test]
    fn schemas_lose_v3_keywords_and_keep_extensions() {
        let v3 = json!({
            "type": "object",
            "nullable": true,
            "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Pod"}],
            "properties": {
                "spec": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}], "description": "spec"},
                "nullable": {"type": ["string", "null"], "writeOnly": true},
                "port": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": true},
                "containers": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"},
                    "x-kubernetes-patch-strategy": "merge",
                    "x-kubernetes-patch-merge-key": "name",
                    "x-kubernetes-list-type": "map",
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string", "nullable": true}},
            },
        });
        assert_eq!(
            schema(&v3),
            json!({
                "type": "object",
                "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "Pod"}],
                "properties": {
                    "spec": {"$ref": "#/definitions/io.k8s.api.core.v1.PodSpec", "description": "spec"},
                    "nullable": {"type": "string"},
                    "port": {"x-kubernetes-int-or-string": true},
                    "containers": {
                        "type": "array",
                        "items": {"$ref": "#/definitions/io.k8s.api.core.v1.Container"},
                        "x-kubernetes-patch-strategy": "merge",
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-list-type": "map",
                    },
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            })
        );
    }

    #[test]
    fn the_served_document_is_whole_and_swagger_shaped() {
        let doc: Value = serde_json::from_slice(&served().json.bytes).unwrap();
        assert_eq!(doc["swagger"], "2.0");
        let definitions = doc["definitions"].as_object().unwrap();
        assert_eq!(
            definitions["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let containers = &definitions["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let mut all = Vec::new();
        super::super::refs(&doc, &mut all);
        assert!(all.len() > 100);
        for reference in all {
            let name = reference.strip_prefix(V2_REF_PREFIX).unwrap();
            assert!(definitions.contains_key(name), "{reference}");
        }
        let text = String::from_utf8_lossy(&served().json.bytes);
        for v3_only in [
            "\"nullable\"",
            "\"oneOf\"",
            "\"anyOf\"",
            "\"requestBody\"",
            REF_PREFIX,
        ] {
            assert!(!text.contains(v3_only), "{v3_only}");
        }
        let post = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["post"];
        assert_eq!(
            post["parameters"].as_array().unwrap().last().unwrap()["in"],
            "body"
        );
    }

    /// Whether the response body starts with `Document.swagger` (1) = "2.0".
    fn proto_body_is_gnostic(response: Response) -> bool {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let body = runtime
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .unwrap();
        body.starts_with(b"\x0a\x032.0")
    }

    #[test]
    fn json_is_the_default_and_protobuf_is_served_when_preferred() {
        let accept = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_static(value));
            serve(&headers)
        };
        let ok = serve(&HeaderMap::new());
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(ok.headers()[header::CONTENT_TYPE], "application/json");
        for json in ["application/json", "*/*", "application/json, */*"] {
            let r = accept(json);
            assert_eq!(r.status(), StatusCode::OK);
            assert_eq!(
                r.headers()[header::CONTENT_TYPE],
                "application/json",
                "{json}"
            );
        }
        let proto = accept(PROTOBUF_MEDIA_TYPE);
        assert_eq!(proto.status(), StatusCode::OK);
        assert_eq!(
            proto.headers()[header::CONTENT_TYPE],
            "application/octet-stream"
        );
        let proto_etag = proto.headers()[header::ETAG].clone();
        assert_ne!(proto_etag, ok.headers()[header::ETAG]);
        assert!(proto_body_is_gnostic(proto));
        for preferred in [
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            "application/json;q=0.9, application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        ] {
            let r = accept(preferred);
            assert_eq!(
                r.headers()[header::CONTENT_TYPE],
                "application/octet-stream",
                "{preferred}"
            );
        }
        let json_first =
            accept("application/json, application/com.github.proto-openapi.spec.v2@v1.0+protobuf");
        assert_eq!(
            json_first.headers()[header::CONTENT_TYPE],
            "application/json"
        );
        assert_eq!(
            accept("application/vnd.kubernetes.protobuf").status(),
            StatusCode::NOT_ACCEPTABLE
        );
        let mut conditional = HeaderMap::new();
        conditional.insert(header::IF_NONE_MATCH, ok.headers()[header::ETAG].clone());
        assert_eq!(serve(&conditional).status(), StatusCode::NOT_MODIFIED);
        conditional.insert(header::IF_NONE_MATCH, proto_etag);
        conditional.insert(
            header::ACCEPT,
            HeaderValue::from_static(PROTOBUF_MEDIA_TYPE),
        );
        assert_eq!(serve(&conditional).status(), StatusCode::NOT_MODIFIED);
    }
}
