//! Field ownership and server-side apply, as pure functions over JSON objects:
//! `metadata.managedFields` in Kubernetes' FieldsV1 format, the fields each write
//! changes, and the merge, conflict detection and pruning of `application/apply-patch+yaml`
//! (structured-merge-diff's semantics, with the list types of [`crate::patch::schema`]).
//!
//! Limitations: only `spec.selector` is known as an atomic map; other
//! `x-kubernetes-map-type: atomic` structs merge field by field. Maps an update
//! adds are not members themselves (Kubernetes marks some with `"."`).

pub mod managed;
pub mod path;
pub mod set;
mod walk;

use serde_json::Value;

use crate::patch::schema::TypeSchema;

pub use managed::{
    ANCIENT_CHANGES, Applied, ApplyError, BEFORE_FIRST_APPLY, Conflict, DecodeError, Entry,
    MAX_UPDATERS, ManagedFields, Operation, Writer, apply, fields_of, record_update,
};
pub use path::PathElement;
pub use set::FieldSet;
pub use walk::MergeError;

/// Which part of an object a write may own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything but the metadata the server sets (kinds without a status
    /// subresource).
    Object,
    /// Everything but that metadata and `status` (the main resource of a kind
    /// with a status subresource: status changes there are reset).
    Main,
    /// Only `status` (the status subresource).
    Status,
}

/// How to walk objects of one kind.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The kind's list types; `None` makes every list atomic.
    pub schema: Option<&'static TypeSchema>,
    /// The part a write owns.
    pub scope: Scope,
}

/// Metadata no manager owns: identity and what the server sets.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The part of `object` managers own under `scope`.
fn tracked(object: &Value, scope: Scope) -> Value {
    let mut out = object.clone();
    let Some(map) = out.as_object_mut() else {
        return Value::Object(Default::default());
    };
    if scope == Scope::Status {
        map.retain(|k, _| k == "status");
        return out;
    }
    map.remove("apiVersion");
    map.remove("kind");
    if scope == Scope::Main {
        map.remove("status");
    }
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| !SERVER_METADATA.contains(&k.as_str()));
        if meta.is_empty() {
            map.remove("metadata");
        }
    }
    out
}

/// The manager of a write without `fieldManager`, from its `User-Agent` as
/// Kubernetes derives it: the part before the first `/`, printable characters
/// only, at most 128 of them (`kubectl/v1.32.4 (linux/amd64)` → `kubectl`).
///
/// ```
/// assert_eq!(strata_api::fields::manager_from_user_agent("kubectl/v1.32.4 (linux/amd64) kubernetes/abc"), "kubectl");
/// ```
pub fn manager_from_user_agent(user_agent: &str) -> String {
    user_agent
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests;
