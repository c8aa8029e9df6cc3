//! Documents that change only with the binary (OpenAPI, aggregated discovery): built
//! once, kept as shared bytes with a content hash, and served with an `ETag` so
//! clients' HTTP caches (kubectl keeps one) can revalidate with `If-None-Match`.

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;

/// A serialized document (JSON unless built [`Document::from_bytes`]) and its hash.
#[derive(Debug)]
pub struct Document {
    /// The serialized document, shared so serving it does not copy it.
    pub bytes: Bytes,
    /// Upper-case hex SHA-512 of `bytes`, as kube-apiserver hashes its documents.
    pub hash: String,
}

impl Document {
    /// Serializes `value` and hashes it.
    pub fn new(value: &Value) -> Self {
        Self::from_bytes(serde_json::to_vec(value).unwrap_or_default())
    }

    /// Keeps already serialized `bytes` (another encoding of a document) and hashes them.
    pub fn from_bytes(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let digest = ring::digest::digest(&ring::digest::SHA512, &bytes);
        let hash = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        Document { bytes, hash }
    }

    /// The response to `GET` with request `headers`: `304 Not Modified` when
    /// `If-None-Match` names this version, else the document as `content_type`; both
    /// carry the `ETag` and `cache_control`.
    pub fn respond(
        &self,
        headers: &HeaderMap,
        content_type: HeaderValue,
        cache_control: &'static str,
    ) -> Response {
        let etag = format!("\"{}\"", self.hash);
        let matches = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let mut response = if matches {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        } else {
            let mut r = Response::new(Body::from(self.bytes.clone()));
            r.headers_mut().insert(header::CONTENT_TYPE, content_type);
            r
        };
        if let Ok(value) = HeaderValue::from_str(&etag) {
            response.headers_mut().insert(header::ETAG, value);
        }
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revalidation_answers_not_modified() {
        let doc = Document::new(&serde_json::json!({"a": 1}));
        assert_eq!(doc.hash.len(), 128);
        let json = HeaderValue::from_static("application/json");
        let first = doc.respond(&HeaderMap::new(), json.clone(), "no-cache, private");
        assert_eq!(first.status(), StatusCode::OK);
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, first.headers()[header::ETAG].clone());
        let second = doc.respond(&again, json, "no-cache, private");
        assert_eq!(second.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(second.headers()[header::CACHE_CONTROL], "no-cache, private");
    }
}
