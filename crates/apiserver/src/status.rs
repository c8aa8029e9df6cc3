//! The one place where errors become Kubernetes `Status` responses: code, reason,
//! message and details (name, kind, field causes) exactly as clients expect them.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use strata_api::FieldError;

/// A request that cannot be served, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request itself is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such object.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// `pods`, `deployments.apps`.
        resource: String,
        /// The object name.
        name: String,
    },
    /// 404: no such path.
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// 405.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 409: create of an existing name.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// `pods`, `deployments.apps`.
        resource: String,
        /// The object name.
        name: String,
    },
    /// 409: stale resourceVersion or another conflict.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Conflict {
        /// `pods`, `deployments.apps`.
        resource: String,
        /// The object name.
        name: String,
        /// Why.
        message: String,
    },
    /// 409: a server-side apply would change fields other managers own.
    #[error("{message}")]
    ApplyConflict {
        /// `Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: .spec.replicas`.
        message: String,
        /// One per field: the field (`.spec.replicas`) and the manager
        /// (`conflict with "kubectl" using apps/v1`).
        causes: Vec<(String, String)>,
    },
    /// 410: the requested resourceVersion was compacted.
    #[error("{0}")]
    Expired(String),
    /// 413.
    #[error("Request entity too large: limit is {0}")]
    TooLarge(usize),
    /// 406: no media type the client accepts can carry the response.
    #[error("only the following media types are accepted: {0}")]
    NotAcceptable(String),
    /// 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: validation failed.
    #[error("{kind} \"{name}\" is invalid: {}", causes_text(.causes))]
    Invalid {
        /// The kind (`Pod`).
        kind: String,
        /// The API group.
        group: String,
        /// The object name.
        name: String,
        /// The field errors.
        causes: Vec<FieldError>,
    },
    /// 422 without field causes (e.g. a patch that cannot be applied).
    #[error("{0}")]
    Unprocessable(String),
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 500: a fault of the server, never of the client.
    #[error("{0}")]
    Internal(String),
    /// 503.
    #[error("{0}")]
    Unavailable(String),
}

fn causes_text(causes: &[FieldError]) -> String {
    let parts: Vec<String> = causes.iter().map(ToString::to_string).collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    /// HTTP code and `reason`.
    pub fn code_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            ApiError::NotFound { .. } | ApiError::NoRoute => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
            ApiError::AlreadyExists { .. } => (StatusCode::CONFLICT, "AlreadyExists"),
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => {
                (StatusCode::CONFLICT, "Conflict")
            }
            ApiError::Expired(_) => (StatusCode::GONE, "Expired"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            ApiError::NotAcceptable(_) => (StatusCode::NOT_ACCEPTABLE, "NotAcceptable"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "Invalid")
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
        }
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let (code, reason) = self.code_and_reason();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": reason,
            "code": code.as_u16(),
        });
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name, .. } => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
                let mut d = json!({"name": name, "kind": kind});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            ApiError::Invalid {
                kind,
                group,
                name,
                causes,
            } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| {
                        let mut message = c.to_string();
                        if let Some(rest) = message.strip_prefix(&format!("{}: ", c.field)) {
                            message = rest.to_string();
                        }
                        json!({"reason": c.kind.reason(), "message": message, "field": c.field})
                    })
                    .collect();
                let mut d = json!({"name": name, "kind": kind, "causes": causes});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            ApiError::ApplyConflict { causes, .. } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|(field, message)| {
                        json!({"reason": "FieldManagerConflict", "message": message, "field": field})
                    })
                    .collect();
                Some(json!({"causes": causes}))
            }
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

/// A JSON response with `code`.
pub fn json_response(code: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if matches!(self, ApiError::Internal(_)) {
            tracing::error!(error = %self, "internal error");
        }
        json_response(self.code_and_reason().0, &self.status())
    }
}

impl From<strata_store::StoreError> for ApiError {
    fn from(err: strata_store::StoreError) -> Self {
        use strata_store::StoreError::*;
        match err {
            Compacted {
                requested,
                compacted,
            } => ApiError::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            FutureRevision { requested, current } => ApiError::Unavailable(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            other => ApiError::Internal(format!("storage error: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_reason_code_and_details() {
        let nf = ApiError::NotFound {
            resource: "deployments.apps".into(),
            name: "web".into(),
        }
        .status();
        assert_eq!(nf["message"], "deployments.apps \"web\" not found");
        assert_eq!(nf["code"], 404);
        assert_eq!(nf["details"]["kind"], "deployments");
        assert_eq!(nf["details"]["group"], "apps");

        let invalid = ApiError::Invalid {
            kind: "Pod".into(),
            group: String::new(),
            name: "p".into(),
            causes: vec![
                FieldError::required("spec.containers[0].image", ""),
                FieldError::invalid("metadata.name", "P", "bad"),
            ],
        };
        assert_eq!(
            invalid.to_string(),
            "Pod \"p\" is invalid: [spec.containers[0].image: Required value, metadata.name: Invalid value: \"P\": bad]"
        );
        let status = invalid.status();
        assert_eq!(status["code"], 422);
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "FieldValueRequired"
        );
        assert_eq!(status["details"]["causes"][0]["message"], "Required value");
        assert_eq!(status["details"]["causes"][1]["field"], "metadata.name");
    }
}
