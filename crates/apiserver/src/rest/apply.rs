//! Server-side apply: `PATCH` with `application/apply-patch+yaml`. The body (YAML
//! or JSON) is the manager's whole intent; `strata_api::fields::apply` merges it
//! into the live object (or creates the object), and the result is written like
//! any update, retried when a concurrent write came in between.

use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};
use strata_api::fields::{self, ApplyError, ManagedFields, Writer};
use strata_api::{FieldError, Subresource};
use strata_store::Store;

use super::managed::{self, Tracking};
use super::query::Query;
use super::read::load;
use super::write::{PATCH_ATTEMPTS, insert, now, replace};
use super::{Target, object_response};
use crate::services::ServiceAllocator;
use crate::status::ApiError;

/// Serves an apply request to `target`.
pub(super) async fn apply(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    query: &Query,
    body: &[u8],
) -> Result<Response, ApiError> {
    let manager = match &query.field_manager {
        Some(manager) if !manager.is_empty() => manager.clone(),
        _ => {
            return Err(managed::options_invalid(
                "PatchOptions",
                FieldError::required("fieldManager", "is required for apply patch"),
            ));
        }
    };
    managed::validate(&manager, "PatchOptions")?;
    let config = decode(target, body)?;
    let status_only = target.subresource == Some(Subresource::Status);
    let shape = managed::shape(target.resource, status_only);
    let api_version = target.resource.api_version();
    let mut attempt = 1;
    loop {
        let time = now();
        let writer = Writer {
            manager: &manager,
            api_version: &api_version,
            subresource: status_only.then_some("status"),
            time: &time,
        };
        match load(store, target).await {
            Ok((live, live_rv)) => {
                // Merged without its version, so that a version in the configuration
                // shows: it is then a precondition, as for other patches.
                let mut bare = live.clone();
                if let Some(meta) = bare["metadata"].as_object_mut() {
                    meta.remove("resourceVersion");
                }
                let managed = ManagedFields::of(&live).unwrap_or_default();
                let applied =
                    fields::apply(Some(&bare), &config, managed, &writer, query.force, &shape)
                        .map_err(apply_error)?;
                let mut new = applied.object;
                applied.managed.store_in(&mut new);
                let pinned = new["metadata"]["resourceVersion"]
                    .as_str()
                    .is_some_and(|rv| !rv.is_empty());
                if !pinned {
                    crate::storage::set_resource_version(&mut new, live_rv);
                }
                match replace(
                    store,
                    services,
                    target,
                    query,
                    &live,
                    live_rv,
                    new,
                    &Tracking::Applied,
                )
                .await
                {
                    Ok((object, warnings, code)) => {
                        return Ok(object_response(code, &object, &warnings));
                    }
                    Err(ApiError::Conflict { .. }) if !pinned => {}
                    Err(err) => return Err(err),
                }
            }
            // Apply creates what does not exist (not through /status).
            Err(ApiError::NotFound { .. }) if !status_only => {
                let applied = fields::apply(
                    None,
                    &config,
                    ManagedFields::default(),
                    &writer,
                    query.force,
                    &shape,
                )
                .map_err(apply_error)?;
                let mut new = applied.object;
                applied.managed.store_in(&mut new);
                match insert(store, services, target, query, new, &Tracking::Applied).await {
                    Ok((object, warnings)) => {
                        return Ok(object_response(StatusCode::CREATED, &object, &warnings));
                    }
                    Err(ApiError::AlreadyExists { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
            Err(err) => return Err(err),
        }
        // A write came in between: apply again to the fresh object.
        if attempt >= PATCH_ATTEMPTS {
            return Err(ApiError::Conflict {
                resource: target.resource.qualified_name(),
                name: target.name.clone().unwrap_or_default(),
                message: "the object has been modified; please apply your changes to the latest version and try again".into(),
            });
        }
        attempt += 1;
    }
}

/// Parses and checks the applied configuration, as Kubernetes does: a YAML (or
/// JSON) object of the URL's version, kind and name, without managedFields.
fn decode(target: &Target, body: &[u8]) -> Result<Value, ApiError> {
    let mut config: Value = serde_yaml::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::BadRequest(
            "error decoding YAML: the applied configuration must be an object".into(),
        ));
    }
    let expected = target.resource.api_version();
    let version = config["apiVersion"].as_str().unwrap_or_default();
    if version != expected {
        return Err(ApiError::BadRequest(format!(
            "Incorrect version specified in apply patch. Specified patch version: {version}, expected: {expected}"
        )));
    }
    match config["kind"].as_str() {
        Some(kind) if kind == target.resource.kind => {}
        Some(kind) => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                target.resource.kind
            )));
        }
        None => {
            return Err(ApiError::BadRequest(
                "Object 'Kind' is missing in the applied configuration".into(),
            ));
        }
    }
    if !config["metadata"].is_object() {
        config["metadata"] = json!({});
    }
    if !config["metadata"]["managedFields"].is_null() {
        return Err(ApiError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let url_name = target.name.clone().unwrap_or_default();
    match config["metadata"]["name"].as_str() {
        Some(name) if !name.is_empty() && name != url_name => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({name}) does not match the name on the URL ({url_name})"
            )));
        }
        _ => config["metadata"]["name"] = json!(url_name),
    }
    Ok(config)
}

fn apply_error(err: ApplyError) -> ApiError {
    match &err {
        ApplyError::Conflicts(conflicts) => ApiError::ApplyConflict {
            message: err.to_string(),
            causes: conflicts
                .iter()
                .map(|c| (c.field.clone(), format!("conflict with {}", c.manager)))
                .collect(),
        },
        ApplyError::Merge(_) => ApiError::Unprocessable(err.to_string()),
    }
}
