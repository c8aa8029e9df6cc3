//! The Kubernetes `Status` bodies of the auth layer's own answers (401, 403, 400).
//!
//! Note to maintainers: when the handler layer's single error → `Status` mapping lands, these
//! responses should go through it; the JSON shape is the same.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    message: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
    code: u16,
}

#[derive(Serialize)]
struct Empty {}

/// `metav1.StatusDetails`, with Kubernetes' `omitempty` on every field.
#[derive(Default, Serialize)]
pub(crate) struct Details<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub group: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub kind: &'a str,
}

/// A `Failure` Status response with `code`, `reason` and `message`.
pub(crate) fn failure(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<Details<'_>>,
) -> Response {
    let body = Status {
        kind: "Status",
        api_version: "v1",
        metadata: Empty {},
        status: "Failure",
        message,
        reason,
        details,
        code: code.as_u16(),
    };
    // Serializing a struct of strings and integers cannot fail; fall back to an empty body anyway.
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The 401 kube-apiserver sends to callers without valid credentials.
pub(crate) fn unauthorized() -> Response {
    failure(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "Unauthorized",
        None,
    )
}
