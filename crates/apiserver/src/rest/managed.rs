//! Wires `metadata.managedFields` into writes: who the field manager of a request
//! is, and the entries every create, update and patch records (the logic is
//! `strata_api::fields`).

use http::HeaderMap;
use serde_json::{Value, json};
use strata_api::fields::{self, ManagedFields, Scope, Shape, Writer};
use strata_api::patch::schema_for;
use strata_api::{ErrorType, FieldError, Resource};

use super::query::Query;
use crate::status::ApiError;

/// Kubernetes' limit on `fieldManager`.
const MAX_MANAGER_CHARS: usize = 128;

/// How a write records managed fields.
#[derive(Debug, Clone)]
pub(crate) enum Tracking<'a> {
    /// An update (create, replace, patch) by `manager`: it owns what it changed.
    Update {
        /// The field manager.
        manager: &'a str,
        /// The subresource written through.
        subresource: Option<&'static str>,
        /// The API version of the request.
        api_version: String,
    },
    /// The object already carries its entries (server-side apply computed them).
    Applied,
}

/// The field manager of a request: `fieldManager`, else the `User-Agent` up to
/// its first `/`. `options` names the options kind for errors (`PatchOptions`).
pub(crate) fn manager(
    query: &Query,
    headers: &HeaderMap,
    options: &str,
) -> Result<String, ApiError> {
    match &query.field_manager {
        Some(manager) if !manager.is_empty() => {
            validate(manager, options)?;
            Ok(manager.clone())
        }
        _ => Ok(fields::manager_from_user_agent(
            headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        )),
    }
}

/// `fieldManager` is at most 128 printable characters (422 like Kubernetes).
pub(crate) fn validate(manager: &str, options: &str) -> Result<(), ApiError> {
    let error = if manager.chars().count() > MAX_MANAGER_CHARS {
        FieldError {
            kind: ErrorType::TooLong,
            field: "fieldManager".into(),
            value: None,
            detail: format!("may not be more than {MAX_MANAGER_CHARS} bytes"),
        }
    } else if manager.chars().any(char::is_control) {
        FieldError::invalid(
            "fieldManager",
            manager,
            "must only contain printable characters",
        )
    } else {
        return Ok(());
    };
    Err(options_invalid(options, error))
}

/// A 422 about request options (`PatchOptions.meta.k8s.io "" is invalid: …`).
pub(crate) fn options_invalid(options: &str, error: FieldError) -> ApiError {
    ApiError::Invalid {
        kind: options.to_string(),
        group: "meta.k8s.io".into(),
        name: String::new(),
        causes: vec![error],
    }
}

/// How objects of `resource` are walked, written through the main resource or
/// (`status_only`) its status subresource.
pub(crate) fn shape(resource: &Resource, status_only: bool) -> Shape {
    let scope = if status_only {
        Scope::Status
    } else if resource.subresource("status").is_some()
        && !matches!(resource.plural, "nodes" | "namespaces")
    {
        Scope::Main
    } else {
        Scope::Object
    };
    Shape {
        schema: schema_for(resource.group, resource.kind),
        scope,
    }
}

/// Records the managed fields of a write from `old` (`None` for a create) to
/// `new` (admitted), into `new`. Entries sent in the request replace the stored
/// ones, as in Kubernetes (that is how clients reset or migrate them); entries
/// that do not decode, or none, leave the stored ones in place.
pub(crate) fn record(
    tracking: &Tracking,
    resource: &Resource,
    status_only: bool,
    old: Option<&Value>,
    new: &mut Value,
) {
    let Tracking::Update {
        manager,
        subresource,
        api_version,
    } = tracking
    else {
        // Applied: admission may have dropped unknown fields the applier sent.
        if let Ok(mut managed) = ManagedFields::of(new) {
            // Every part of the object: appliers of the other scope keep theirs.
            let whole = Shape {
                scope: Scope::Object,
                ..shape(resource, status_only)
            };
            managed.forget_absent(new, &whole);
            managed.store_in(new);
        }
        return;
    };
    let stored = old
        .map(|o| ManagedFields::of(o).unwrap_or_default())
        .unwrap_or_default();
    let base = match ManagedFields::of(new) {
        Ok(sent) if !sent.entries.is_empty() && subresource.is_none() => sent,
        _ => stored,
    };
    let writer = Writer {
        manager,
        api_version,
        subresource: *subresource,
        time: &super::write::now(),
    };
    let empty = json!({});
    let managed = fields::record_update(
        old.unwrap_or(&empty),
        new,
        base,
        &writer,
        &shape(resource, status_only),
    );
    managed.store_in(new);
}
