//! The three Kubernetes patch types of `PATCH` requests as pure functions over JSON
//! objects: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge
//! patch (what `kubectl apply`, `kubectl patch` and `kubectl set` send for built-in
//! kinds). Server-side apply (`application/apply-patch+yaml`) is in [`crate::fields`];
//! [`is_apply`] recognizes its media type.
//!
//! Errors map to the status codes kube-apiserver answers with
//! (`staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go`): a patch that is
//! not well formed is 400, one that cannot be applied to this object is 422, and a
//! strategic merge patch for a kind without a patch schema is 415.

pub mod json_patch;
pub mod merge;
pub mod schema;
pub mod strategic;

use serde_json::Value;

use crate::resources::Resource;

pub use json_patch::{MAX_JSON_PATCH_OPERATIONS, json_patch};
pub use merge::merge_patch;
pub use schema::{FieldSchema, ListMerge, TypeSchema, schema_for};
pub use strategic::strategic_merge_patch;

/// The patch type, from the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`: RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: RFC 7386 merge patch.
    Merge,
    /// `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch.
    StrategicMerge,
}

impl PatchType {
    /// Parses a `Content-Type` header value; parameters (`; charset=utf-8`) and case
    /// are ignored. `None` for anything else, including server-side apply.
    ///
    /// ```
    /// use strata_api::patch::PatchType;
    /// assert_eq!(
    ///     PatchType::from_content_type("application/merge-patch+json; charset=utf-8"),
    ///     Some(PatchType::Merge)
    /// );
    /// assert_eq!(PatchType::from_content_type("application/apply-patch+yaml"), None);
    /// ```
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        [Self::Json, Self::Merge, Self::StrategicMerge]
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(media))
    }

    /// The media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json-patch+json",
            Self::Merge => "application/merge-patch+json",
            Self::StrategicMerge => "application/strategic-merge-patch+json",
        }
    }
}

/// The media type of server-side apply (YAML, of which JSON is a subset).
pub const APPLY_PATCH_YAML: &str = "application/apply-patch+yaml";

/// True when a `Content-Type` is server-side apply's; parameters and case are
/// ignored.
///
/// ```
/// assert!(strata_api::patch::is_apply("application/apply-patch+yaml; charset=utf-8"));
/// assert!(!strata_api::patch::is_apply("application/merge-patch+json"));
/// ```
pub fn is_apply(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case(APPLY_PATCH_YAML)
}

/// Why a patch was not applied. [`PatchError::http_status`] gives the status code
/// Kubernetes answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON, or not the patch type's shape (400).
    #[error("error decoding patch: {message}")]
    Decode {
        /// What is wrong, as the JSON parser says it.
        message: String,
    },
    /// A JSON patch operation is not well formed: unknown `op`, missing `path`,
    /// `value` or `from`, or a path that is not a JSON pointer (400).
    #[error("json patch operation {index}: {message}")]
    MalformedOperation {
        /// The operation's index in the patch.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A JSON patch has more than [`MAX_JSON_PATCH_OPERATIONS`] operations (413
    /// RequestEntityTooLarge).
    #[error("The allowed maximum operations in a JSON patch is {max}, got {count}")]
    TooManyOperations {
        /// The limit.
        max: usize,
        /// How many the patch has.
        count: usize,
    },
    /// A JSON patch operation could not be applied to this object, such as a
    /// missing path or an array index out of range (422).
    #[error("json patch operation {index} ({op}) at \"{path}\": {message}")]
    OperationFailed {
        /// The operation's index in the patch.
        index: usize,
        /// The operation (`replace`).
        op: String,
        /// Its JSON pointer.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A JSON patch `test` operation found a different value (422).
    #[error("json patch operation {index} (test) at \"{path}\": testing value failed")]
    TestFailed {
        /// The operation's index in the patch.
        index: usize,
        /// Its JSON pointer.
        path: String,
    },
    /// A strategic merge patch directive is not well formed (`$retainKeys`,
    /// `$setElementOrder/…` or `$deleteFromPrimitiveList/…` that is not a list, or a
    /// patch with fields outside its `$retainKeys`) (400).
    #[error("{path}: {message}")]
    MalformedDirective {
        /// The field path of the map holding the directive.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A strategic merge patch could not be applied to this object: a list element
    /// without its merge key, an unknown `$patch` value, lists of lists (422).
    #[error("{path}: {message}")]
    Unprocessable {
        /// The field path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Strategic merge patch is not supported for this kind, as for Kubernetes'
    /// custom resources: it has no patch schema (415, with kube-apiserver's message,
    /// which kubectl shows after `application/strategic-merge-patch+json is not
    /// supported by …`).
    #[error(
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    )]
    UnsupportedForKind {
        /// The kind (`Function`).
        kind: String,
    },
}

impl PatchError {
    /// The HTTP status code: 400 (BadRequest), 422 (Invalid), 413
    /// (RequestEntityTooLarge) or 415 (UnsupportedMediaType).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Decode { .. }
            | Self::MalformedOperation { .. }
            | Self::MalformedDirective { .. } => 400,
            Self::OperationFailed { .. } | Self::TestFailed { .. } | Self::Unprocessable { .. } => {
                422
            }
            Self::TooManyOperations { .. } => 413,
            Self::UnsupportedForKind { .. } => 415,
        }
    }

    /// The `Status` reason that goes with [`PatchError::http_status`]
    /// (`BadRequest`, `Invalid`, `RequestEntityTooLarge`, `UnsupportedMediaType`).
    pub fn reason(&self) -> &'static str {
        match self.http_status() {
            400 => "BadRequest",
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            _ => "Invalid",
        }
    }
}

/// Applies `patch` (the request body) of `patch_type` to `original` (the stored
/// object of `resource`), returning the patched object. The result is not admitted:
/// the caller re-admits it as an update, which also catches unknown fields a patch
/// may have added (rejected or dropped per `fieldValidation`).
///
/// ```
/// use serde_json::json;
/// use strata_api::patch::{PatchType, apply_patch};
/// use strata_api::resources::by_kind;
///
/// let deployments = by_kind("apps/v1", "Deployment").unwrap();
/// let stored = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
///     {"name": "web", "image": "nginx:1.24"},
///     {"name": "log", "image": "busybox"},
/// ]}}}});
/// let patch = br#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:1.25"}]}}}}"#;
/// let patched = apply_patch(deployments, &stored, PatchType::StrategicMerge, patch).unwrap();
/// let containers = &patched["spec"]["template"]["spec"]["containers"];
/// assert_eq!(containers[0]["image"], "nginx:1.25");
/// assert_eq!(containers[1]["name"], "log");
/// ```
pub fn apply_patch(
    resource: &Resource,
    original: &Value,
    patch_type: PatchType,
    patch: &[u8],
) -> Result<Value, PatchError> {
    let patch: Value = serde_json::from_slice(patch).map_err(|e| PatchError::Decode {
        message: e.to_string(),
    })?;
    match patch_type {
        PatchType::Json => json_patch(original, &patch),
        PatchType::Merge => {
            require_object(&patch)?;
            Ok(merge_patch(original, &patch))
        }
        PatchType::StrategicMerge => {
            let schema = schema_for(resource.group, resource.kind).ok_or_else(|| {
                PatchError::UnsupportedForKind {
                    kind: resource.kind.to_string(),
                }
            })?;
            require_object(&patch)?;
            strategic_merge_patch(original, &patch, schema)
        }
    }
}

/// Merge patches of objects must be objects (Kubernetes rejects others with 400).
fn require_object(patch: &Value) -> Result<(), PatchError> {
    if patch.is_object() {
        Ok(())
    } else {
        Err(PatchError::Decode {
            message: format!(
                "a merge patch must be a JSON object, not {}",
                type_name(patch)
            ),
        })
    }
}

/// `object`, `array`, … for messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
