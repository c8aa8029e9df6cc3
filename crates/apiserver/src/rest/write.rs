//! create, update, patch, delete and deletecollection, plus the scale, binding and
//! eviction subresources: metadata the server owns (uid, creationTimestamp,
//! generation, resourceVersion), admission, optimistic concurrency, finalizers and
//! graceful deletion, dryRun. Services' cluster IPs and node ports are reserved after
//! admission and settled by the store's answer (`crate::services`); removing a Service
//! frees them.

use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use strata_api::patch::{PatchError, PatchType, apply_patch};
use strata_api::{AdmitError, Operation, Resource, Subresource, admit};
use strata_store::{Store, StoreError};

use super::managed::{self, Tracking};
use super::query::Query;
use super::read::{list_page, load};
use super::{Target, object_response, parse_body};
use crate::auth::Verb;
use crate::services::{Reservation, ServiceAllocator};
use crate::status::ApiError;
use crate::storage;

/// Now, RFC 3339 to the second (timestamps of metadata and managedFields).
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A random (version 4) UUID for `metadata.uid`.
pub(crate) fn new_uid() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap_or_default();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// Kubernetes' generateName suffix: 5 characters without vowels or look-alikes.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    getrandom::fill(&mut b).unwrap_or_default();
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// Kubernetes' ServiceAccount admission for a new Pod, with the ServiceAccount's own
/// `automountServiceAccountToken` looked up in the store.
async fn admit_service_account(
    store: &dyn Store,
    target: &Target,
    pod: &mut Value,
) -> Result<(), ApiError> {
    use strata_api::serviceaccount::{account_of, admit_pod};
    let namespace = target.namespace.as_deref().unwrap_or("default");
    let account = super::stored(store, "serviceaccounts", namespace, account_of(pod)).await?;
    let automounts = account
        .as_ref()
        .and_then(|a| a["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    admit_pod(pod, &random_suffix(), automounts);
    Ok(())
}

fn admit_error(resource: &Resource, name: &str, err: AdmitError) -> ApiError {
    match err {
        AdmitError::Invalid { errors } => ApiError::Invalid {
            kind: resource.kind.to_string(),
            group: resource.group.to_string(),
            name: name.to_string(),
            causes: errors,
        },
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// Maps a failed conditional write of object `name` to what the client is told:
/// a stale version is a Conflict, a vanished object NotFound, the rest as usual.
fn write_error(resource: &Resource, name: &str) -> impl FnOnce(StoreError) -> ApiError {
    let (resource_name, name) = (resource.qualified_name(), name.to_string());
    move |err| match err {
        StoreError::Conflict { .. } => ApiError::Conflict {
            resource: resource_name,
            name,
            message: CONFLICT_MESSAGE.into(),
        },
        StoreError::NotFound { .. } => ApiError::NotFound {
            resource: resource_name,
            name,
        },
        StoreError::AlreadyExists { .. } => ApiError::AlreadyExists {
            resource: resource_name,
            name,
        },
        other => other.into(),
    }
}

const CONFLICT_MESSAGE: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

fn conflict(resource: &Resource, name: &str) -> ApiError {
    ApiError::Conflict {
        resource: resource.qualified_name(),
        name: name.to_string(),
        message: CONFLICT_MESSAGE.into(),
    }
}

/// Checks apiVersion/kind of a body against the resource (or subresource) it is sent to.
fn check_type(resource: &Resource, body: &Value) -> Result<(), ApiError> {
    let expected = resource.api_version();
    match body["apiVersion"].as_str() {
        Some(v) if v != expected => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({expected})"
            )));
        }
        _ => {}
    }
    match body["kind"].as_str() {
        Some(k) if k != resource.kind => Err(ApiError::BadRequest(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            resource.kind
        ))),
        _ => Ok(()),
    }
}

fn meta_mut(object: &mut Value) -> Result<&mut serde_json::Map<String, Value>, ApiError> {
    if !object.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ));
    }
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::BadRequest("metadata must be an object".into()))
}

/// Sets the namespace of an object sent to `target`, refusing a different one.
fn place_in_namespace(target: &Target, object: &mut Value) -> Result<(), ApiError> {
    let meta = meta_mut(object)?;
    match (
        &target.namespace,
        meta.get("namespace").and_then(Value::as_str),
    ) {
        (Some(ns), Some(given)) if !given.is_empty() && given != ns => Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        (Some(ns), _) => {
            meta.insert("namespace".into(), json!(ns));
            Ok(())
        }
        (None, _) => {
            meta.remove("namespace");
            Ok(())
        }
    }
}

/// True for resources whose writers split spec from status (the main resource may not
/// change status; `/status` may change only status).
fn has_status(resource: &Resource) -> bool {
    resource.subresource("status").is_some()
}

async fn namespace_exists(store: &dyn Store, namespace: &str) -> Result<(), ApiError> {
    let key = storage::key(strata_api::resources::namespaces(), None, namespace);
    match store.get(&key).await? {
        Some(kv) => {
            let ns = storage::decode(&kv)?;
            if ns["metadata"]["deletionTimestamp"].is_string() {
                return Err(ApiError::Forbidden(format!(
                    "unable to create new content in namespace {namespace} because it is being terminated"
                )));
            }
            Ok(())
        }
        None => Err(ApiError::NotFound {
            resource: "namespaces".into(),
            name: namespace.to_string(),
        }),
    }
}

pub(super) async fn create(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    if target.name.is_some() && target.resource.plural != "namespaces" {
        return Err(ApiError::MethodNotAllowed);
    }
    let object = parse_body(headers, body)?;
    let manager = managed::manager(query, headers, "CreateOptions")?;
    let tracking = Tracking::Update {
        manager: &manager,
        subresource: None,
        api_version: target.resource.api_version(),
    };
    let (stored, warnings) = insert(store, services, target, query, object, &tracking).await?;
    Ok(object_response(StatusCode::CREATED, &stored, &warnings))
}

/// Creates `object` (a create, or a server-side apply to a missing object): the
/// metadata the server owns, admission, managed fields. Returns the stored object
/// and warnings.
pub(crate) async fn insert(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    query: &Query,
    mut object: Value,
    tracking: &Tracking<'_>,
) -> Result<(Value, Vec<String>), ApiError> {
    let resource = target.resource;
    check_type(resource, &object)?;
    place_in_namespace(target, &mut object)?;
    if let Some(ns) = &target.namespace {
        namespace_exists(store, ns).await?;
    }
    let meta = meta_mut(&mut object)?;
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::BadRequest(
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name && let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
        let name = format!("{prefix}{}", random_suffix());
        meta.insert("name".into(), json!(name));
    }
    meta.insert("uid".into(), json!(new_uid()));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    if has_status(resource) {
        meta.insert("generation".into(), json!(1));
    }
    if has_status(resource) && !matches!(resource.plural, "nodes" | "namespaces") {
        // Status is the controllers' to write, not the creator's (Kubernetes resets it).
        if let Some(map) = object.as_object_mut() {
            map.remove("status");
        }
    }
    if resource.group.is_empty() && resource.plural == "pods" {
        admit_service_account(store, target, &mut object).await?;
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut admitted = admit(resource, object, Operation::Create, query.field_validation)
        .map_err(|e| admit_error(resource, &name, e))?;
    managed::record(tracking, resource, false, None, &mut admitted.object);
    let reservation = services.reserve(resource, None, &mut admitted.object, query.dry_run)?;
    if query.dry_run {
        return Ok((admitted.object, admitted.warnings));
    }
    let key = storage::key(resource, target.namespace.as_deref(), &name);
    let created = store.create(&key, storage::encode(&admitted.object)).await;
    reservation.settle(&created);
    let kv = created.map_err(write_error(resource, &name))?;
    let mut stored = admitted.object;
    storage::set_resource_version(&mut stored, kv.mod_revision);
    Ok((stored, admitted.warnings))
}

/// Writes `new` (a full object) over the stored `old` at `old_rv`, keeping the fields
/// the server owns (only status changes through the status subresource), and
/// recording managed fields per `tracking`. Returns the stored
/// object and warnings.
#[expect(
    clippy::too_many_arguments,
    reason = "the store and the Service allocator are the two things every write touches"
)]
pub(crate) async fn replace(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    query: &Query,
    old: &Value,
    old_rv: i64,
    mut new: Value,
    tracking: &Tracking<'_>,
) -> Result<(Value, Vec<String>, StatusCode), ApiError> {
    let resource = target.resource;
    let name = target.name.clone().unwrap_or_default();
    let status_only = target.subresource == Some(Subresource::Status);
    check_type(resource, &new)?;
    place_in_namespace(target, &mut new)?;
    let meta = meta_mut(&mut new)?;
    match meta.get("name").and_then(Value::as_str) {
        Some(n) if n != name => {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {
            meta.insert("name".into(), json!(name));
        }
    }
    let expected = match meta.get("resourceVersion").and_then(Value::as_str) {
        Some(rv) if !rv.is_empty() => Some(storage::parse_resource_version(rv)?),
        _ => None,
    };
    if expected.is_some_and(|rv| rv != old_rv) {
        return Err(conflict(resource, &name));
    }
    for owned in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old["metadata"].get(owned) {
            Some(v) => meta.insert(owned.into(), v.clone()),
            None => meta.remove(owned),
        };
    }
    if status_only {
        // Only status (and labels/annotations) may change through /status.
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(status) => merged["status"] = status,
            None => {
                if let Some(map) = merged.as_object_mut() {
                    map.remove("status");
                }
            }
        }
        if matches!(tracking, Tracking::Applied) {
            merged["metadata"]["managedFields"] = new["metadata"]["managedFields"].clone();
        }
        new = merged;
    } else if has_status(resource) && !matches!(resource.plural, "nodes" | "namespaces") {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(map) = new.as_object_mut() {
                    map.remove("status");
                }
            }
        }
    }
    if has_status(resource) && new.get("spec") != old.get("spec") {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        new["metadata"]["generation"] = json!(generation);
    }
    let admitted = admit(
        resource,
        new,
        Operation::Update { old },
        query.field_validation,
    )
    .map_err(|e| admit_error(resource, &name, e))?;
    let mut object = admitted.object;
    managed::record(tracking, resource, status_only, Some(old), &mut object);
    let reservation = if status_only {
        Reservation::none(services)
    } else {
        services.reserve(resource, Some(old), &mut object, query.dry_run)?
    };
    // Finalizers emptied on an object being deleted: the deletion completes now.
    let deleting = object["metadata"]["deletionTimestamp"].is_string();
    let finalizers_left = object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let key = storage::key(resource, target.namespace.as_deref(), &name);
    if query.dry_run {
        storage::set_resource_version(&mut object, old_rv);
        return Ok((object, admitted.warnings, StatusCode::OK));
    }
    if deleting
        && !finalizers_left
        && !pending_graceful(resource, &object)
        && !namespace_finalizers_left(resource, &object)
    {
        // The new version is never stored: what it took goes back at once.
        reservation.revert();
        store
            .delete(&key, Some(old_rv))
            .await
            .map_err(write_error(resource, &name))?;
        services.release(resource, old);
        storage::set_resource_version(&mut object, old_rv);
        return Ok((object, admitted.warnings, StatusCode::OK));
    }
    let mut old_cmp = old.clone();
    let mut new_cmp = object.clone();
    for o in [&mut old_cmp, &mut new_cmp] {
        if let Some(m) = o["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
    }
    if old_cmp == new_cmp {
        // Nothing changed: no new revision, like Kubernetes (and nothing allocated).
        reservation.commit();
        storage::set_resource_version(&mut object, old_rv);
        return Ok((object, admitted.warnings, StatusCode::OK));
    }
    let updated = store
        .update(&key, storage::encode(&object), Some(old_rv))
        .await;
    reservation.settle(&updated);
    let kv = updated.map_err(write_error(resource, &name))?;
    storage::set_resource_version(&mut object, kv.mod_revision);
    Ok((object, admitted.warnings, StatusCode::OK))
}

/// A namespace keeps its `spec.finalizers` until the namespace controller has emptied
/// it: an update (its status conditions, say) must not complete its deletion before
/// (Kubernetes' `ShouldDeleteNamespaceDuringUpdate`).
fn namespace_finalizers_left(resource: &Resource, object: &Value) -> bool {
    resource.group.is_empty()
        && resource.plural == "namespaces"
        && object["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
}

/// A pod bound to a node waits for its node agent to confirm the deletion.
fn pending_graceful(resource: &Resource, object: &Value) -> bool {
    resource.group.is_empty()
        && resource.plural == "pods"
        && object["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
        && object["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
            > 0
}

pub(super) async fn update(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let new = parse_body(headers, body)?;
    let (old, old_rv) = load(store, target).await?;
    let status_only = target.subresource == Some(Subresource::Status);
    let manager = managed::manager(query, headers, "UpdateOptions")?;
    let tracking = update_tracking(target, &manager, status_only);
    let (object, warnings, code) =
        replace(store, services, target, query, &old, old_rv, new, &tracking).await?;
    Ok(object_response(code, &object, &warnings))
}

fn patch_error(err: PatchError) -> ApiError {
    match err.http_status() {
        400 => ApiError::BadRequest(err.to_string()),
        413 => ApiError::TooLarge(super::MAX_BODY),
        415 => ApiError::UnsupportedMediaType(err.to_string()),
        _ => ApiError::Unprocessable(err.to_string()),
    }
}

pub(super) async fn patch(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if strata_api::patch::is_apply(content_type) {
        return super::apply::apply(store, services, target, query, body).await;
    }
    let patch_type = PatchType::from_content_type(content_type).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
        ))
    })?;
    if query.force {
        return Err(managed::options_invalid(
            "PatchOptions",
            strata_api::FieldError::forbidden("force", "may not be specified for non-apply patch"),
        ));
    }
    let status_only = target.subresource == Some(Subresource::Status);
    let manager = managed::manager(query, headers, "PatchOptions")?;
    let tracking = update_tracking(target, &manager, status_only);
    let mut attempt = 1;
    loop {
        let (old, old_rv) = load(store, target).await?;
        // A merge patch applies to the object without its version, so that a
        // version in the patch shows: such a patch is a precondition and conflicts
        // when stale. A JSON patch sees the version, since its operations may
        // address it (kubectl's managedFields upgrade replaces it, as its
        // precondition); there a version other than the current one pins it.
        let mut bare = old.clone();
        if patch_type != PatchType::Json
            && let Some(meta) = bare["metadata"].as_object_mut()
        {
            meta.remove("resourceVersion");
        }
        let mut new = apply_patch(target.resource, &bare, patch_type, body).map_err(patch_error)?;
        let current = old_rv.to_string();
        let pinned = new["metadata"]["resourceVersion"]
            .as_str()
            .is_some_and(|rv| !rv.is_empty() && (patch_type != PatchType::Json || rv != current));
        if !pinned {
            storage::set_resource_version(&mut new, old_rv);
        }
        match replace(store, services, target, query, &old, old_rv, new, &tracking).await {
            Ok((object, warnings, code)) => return Ok(object_response(code, &object, &warnings)),
            // A write that came between load and replace: like Kubernetes'
            // GuaranteedUpdate, apply the patch again to the fresh object.
            Err(ApiError::Conflict { .. }) if !pinned && attempt < PATCH_ATTEMPTS => {
                attempt += 1;
            }
            Err(err) => return Err(err),
        }
    }
}

/// An update by `manager` through `target` (its status subresource when
/// `status_only`).
fn update_tracking<'a>(target: &Target, manager: &'a str, status_only: bool) -> Tracking<'a> {
    Tracking::Update {
        manager,
        subresource: status_only.then_some("status"),
        api_version: target.resource.api_version(),
    }
}

/// How often a patch without a resourceVersion is applied before a concurrent
/// writer's conflict reaches the client (Kubernetes retries until it lands; a bound
/// keeps a hot object from holding a request forever).
pub(super) const PATCH_ATTEMPTS: u32 = 32;

/// `DeleteOptions` from the body (or the query).
pub(crate) struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

fn delete_options(
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DeleteOptions, ApiError> {
    let mut options = DeleteOptions {
        grace_period: query.grace_period_seconds,
        propagation: query.propagation_policy.clone(),
        precondition_uid: None,
        precondition_rv: None,
        dry_run: query.dry_run,
    };
    if body.iter().any(|b| !b.is_ascii_whitespace()) {
        let body = super::parse_body(headers, body)?;
        if let Some(g) = body["gracePeriodSeconds"].as_i64() {
            options.grace_period = Some(g);
        }
        if let Some(p) = body["propagationPolicy"].as_str() {
            options.propagation = Some(p.to_string());
        }
        options.precondition_uid = body["preconditions"]["uid"].as_str().map(str::to_string);
        options.precondition_rv = body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        if body["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"))
        {
            options.dry_run = true;
        }
    }
    if let Some(p) = &options.propagation
        && !["Foreground", "Background", "Orphan"].contains(&p.as_str())
    {
        return Err(ApiError::BadRequest(format!(
            "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    Ok(options)
}

/// How often a delete that raced another write is tried again.
const DELETE_ATTEMPTS: usize = 5;

/// Deletes one object: immediately, or by marking it (finalizers, graceful pods,
/// namespaces, foreground/orphan propagation). Returns the object as it now is. Like
/// kube-apiserver's guaranteed update, a delete that raced another write (a node
/// agent's status update, say) reads the object again and retries, unless the client
/// pinned a resourceVersion: only then does it get 409 Conflict.
pub(crate) async fn delete_object(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    options: &DeleteOptions,
) -> Result<Value, ApiError> {
    let mut attempt = 1;
    loop {
        match delete_once(store, services, target, options).await {
            Err(ApiError::Conflict { message, .. })
                if message == CONFLICT_MESSAGE
                    && options.precondition_rv.is_none()
                    && attempt < DELETE_ATTEMPTS =>
            {
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn delete_once(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    options: &DeleteOptions,
) -> Result<Value, ApiError> {
    let resource = target.resource;
    let name = target.name.clone().unwrap_or_default();
    let (mut object, rv) = load(store, target).await?;
    if let Some(uid) = &options.precondition_uid
        && object["metadata"]["uid"].as_str() != Some(uid)
    {
        return Err(ApiError::Conflict {
            resource: resource.qualified_name(),
            name,
            message: format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                object["metadata"]["uid"].as_str().unwrap_or_default()
            ),
        });
    }
    if let Some(prv) = &options.precondition_rv
        && prv != &rv.to_string()
    {
        return Err(conflict(resource, &name));
    }
    let key = storage::key(resource, target.namespace.as_deref(), &name);
    let mut finalizers: Vec<String> =
        serde_json::from_value(object["metadata"]["finalizers"].clone()).unwrap_or_default();
    match options.propagation.as_deref() {
        Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
            finalizers.push("foregroundDeletion".into())
        }
        Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
            finalizers.push("orphan".into())
        }
        _ => {}
    }
    let is_namespace = resource.group.is_empty() && resource.plural == "namespaces";
    let grace = match options.grace_period {
        Some(g) => g,
        None if resource.plural == "pods" && resource.group.is_empty() => {
            object["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30)
        }
        None => 0,
    };
    let graceful_pod = resource.plural == "pods"
        && resource.group.is_empty()
        && grace > 0
        && object["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
    let has_spec_finalizers = is_namespace
        && object["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
    if finalizers.is_empty() && !graceful_pod && !has_spec_finalizers {
        if !options.dry_run {
            store
                .delete(&key, Some(rv))
                .await
                .map_err(write_error(resource, &name))?;
            services.release(resource, &object);
        }
        return Ok(object);
    }
    // Marked for deletion: whoever owns the finalizer (or the node agent, for a
    // graceful pod) completes it.
    if object["metadata"]["deletionTimestamp"].is_null() {
        object["metadata"]["deletionTimestamp"] = json!(now());
        object["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    }
    if !finalizers.is_empty() {
        object["metadata"]["finalizers"] = json!(finalizers);
    }
    if is_namespace {
        object["status"]["phase"] = json!("Terminating");
    }
    if options.dry_run {
        return Ok(object);
    }
    let kv = store
        .update(&key, storage::encode(&object), Some(rv))
        .await
        .map_err(write_error(resource, &name))?;
    storage::set_resource_version(&mut object, kv.mod_revision);
    Ok(object)
}

pub(super) async fn delete(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let options = delete_options(query, headers, body)?;
    let object = delete_object(store, services, target, &options).await?;
    let code = if object["metadata"]["deletionTimestamp"].is_string() && !options.dry_run {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(object_response(code, &object, &[]))
}

pub(super) async fn delete_collection(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let options = delete_options(query, headers, body)?;
    let mut listing = query.clone();
    listing.limit = None;
    listing.continue_token = None;
    let (items, revision, _, _) = list_page(store, target, &listing).await?;
    let mut deleted = Vec::new();
    for item in items {
        let one = Target {
            resource: target.resource,
            namespace: item["metadata"]["namespace"].as_str().map(str::to_string),
            name: item["metadata"]["name"].as_str().map(str::to_string),
            subresource: None,
            verb: target.verb,
        };
        match delete_object(store, services, &one, &options).await {
            Ok(object) => deleted.push(object),
            Err(ApiError::NotFound { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    let list = json!({
        "kind": target.resource.list_kind(),
        "apiVersion": target.resource.api_version(),
        "metadata": {"resourceVersion": revision.to_string()},
        "items": deleted,
    });
    Ok(object_response(StatusCode::OK, &list, &[]))
}

/// `…/scale`: an `autoscaling/v1` Scale over `spec.replicas`.
pub(super) async fn scale(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (object, rv) = load(store, target).await?;
    let to_scale = |object: &Value, rv: i64| {
        let selector = crate::table::labels_text(&object["spec"]["selector"]["matchLabels"]);
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": object["metadata"]["name"],
                "namespace": object["metadata"]["namespace"],
                "uid": object["metadata"]["uid"],
                "resourceVersion": rv.to_string(),
                "creationTimestamp": object["metadata"]["creationTimestamp"],
            },
            "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(0)},
            "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
        })
    };
    let replicas = match target.verb {
        Verb::Get => return Ok(object_response(StatusCode::OK, &to_scale(&object, rv), &[])),
        Verb::Update => {
            let scale = parse_body(headers, body)?;
            if let Some(srv) = scale["metadata"]["resourceVersion"]
                .as_str()
                .filter(|s| !s.is_empty())
                && srv != rv.to_string()
            {
                return Err(conflict(
                    target.resource,
                    target.name.as_deref().unwrap_or_default(),
                ));
            }
            scale["spec"]["replicas"].as_i64()
        }
        _ => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("the patch is not valid JSON: {e}")))?;
            let scale = strata_api::patch::merge_patch(&to_scale(&object, rv), &patch);
            scale["spec"]["replicas"].as_i64()
        }
    };
    let replicas = replicas.ok_or_else(|| ApiError::Invalid {
        kind: "Scale".into(),
        group: "autoscaling".into(),
        name: target.name.clone().unwrap_or_default(),
        causes: vec![strata_api::FieldError::required("spec.replicas", "")],
    })?;
    if replicas < 0 {
        return Err(ApiError::Invalid {
            kind: "Scale".into(),
            group: "autoscaling".into(),
            name: target.name.clone().unwrap_or_default(),
            causes: vec![strata_api::FieldError::invalid(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
            )],
        });
    }
    let mut new = object.clone();
    new["spec"]["replicas"] = json!(replicas);
    let main = Target {
        resource: target.resource,
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        subresource: None,
        verb: target.verb,
    };
    let manager = managed::manager(query, headers, "UpdateOptions")?;
    // Kubernetes records scale writes on the parent, in its version, marked as
    // through the scale subresource (managedfields' ScaleHandler).
    let tracking = Tracking::Update {
        manager: &manager,
        subresource: Some("scale"),
        api_version: target.resource.api_version(),
    };
    let (stored, _, _) =
        replace(store, services, &main, query, &object, rv, new, &tracking).await?;
    let rv = stored["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(rv);
    Ok(object_response(StatusCode::OK, &to_scale(&stored, rv), &[]))
}

/// `pods/binding`: sets `spec.nodeName` of an unbound pod (the scheduler's write).
pub(super) async fn bind(
    store: &dyn Store,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let binding = super::parse_body(headers, body)?;
    let node = binding["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::Invalid {
            kind: "Binding".into(),
            group: String::new(),
            name: target.name.clone().unwrap_or_default(),
            causes: vec![strata_api::FieldError::required("target.name", "")],
        })?;
    let (pod, rv) = load(store, target).await?;
    if pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
    {
        return Err(ApiError::Conflict {
            resource: "pods".into(),
            name: target.name.clone().unwrap_or_default(),
            message: format!(
                "pod {} is already assigned to node \"{}\"",
                target.name.as_deref().unwrap_or_default(),
                pod["spec"]["nodeName"].as_str().unwrap_or_default()
            ),
        });
    }
    let name = target.name.as_deref().unwrap_or_default();
    let conflict = |message: String| ApiError::Conflict {
        resource: "pods".into(),
        name: name.to_string(),
        message,
    };
    if let Some(uid) = binding["metadata"]["uid"]
        .as_str()
        .filter(|u| !u.is_empty())
        && pod["metadata"]["uid"].as_str() != Some(uid)
    {
        return Err(conflict(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            pod["metadata"]["uid"].as_str().unwrap_or_default()
        )));
    }
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return Err(conflict(format!(
            "pod {name} is being deleted, cannot be assigned to a host"
        )));
    }
    let mut bound = pod.clone();
    bound["spec"]["nodeName"] = json!(node);
    // Like Kubernetes: the binding's annotations land on the pod, and the pod says it
    // is scheduled.
    if let Some(annotations) = binding["metadata"]["annotations"].as_object() {
        for (key, value) in annotations {
            bound["metadata"]["annotations"][key] = value.clone();
        }
    }
    let scheduled = json!({
        "type": "PodScheduled", "status": "True", "lastProbeTime": null,
        "lastTransitionTime": now(),
    });
    let mut conditions: Vec<Value> = bound["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "PodScheduled")
        .collect();
    conditions.push(scheduled);
    bound["status"]["conditions"] = json!(conditions);
    let key = storage::key(
        target.resource,
        target.namespace.as_deref(),
        target.name.as_deref().unwrap_or_default(),
    );
    if !query.dry_run {
        store
            .update(&key, storage::encode(&bound), Some(rv))
            .await
            .map_err(write_error(
                target.resource,
                target.name.as_deref().unwrap_or_default(),
            ))?;
    }
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(object_response(StatusCode::CREATED, &status, &[]))
}

/// `pods/eviction`: deletes the pod (no PodDisruptionBudgets yet).
pub(super) async fn evict(
    store: &dyn Store,
    services: &ServiceAllocator,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let eviction = super::parse_body(headers, body)?;
    let options = DeleteOptions {
        grace_period: eviction["deleteOptions"]["gracePeriodSeconds"].as_i64(),
        propagation: None,
        precondition_uid: None,
        precondition_rv: None,
        dry_run: false,
    };
    let pod = Target {
        resource: target.resource,
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        subresource: None,
        verb: Verb::Delete,
    };
    delete_object(store, services, &pod, &options).await?;
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
    Ok(object_response(StatusCode::CREATED, &status, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_with_spec_finalizers_survives_updates_while_deleting() {
        let namespaces = strata_api::resources::namespaces();
        let held = json!({"spec": {"finalizers": ["kubernetes"]}});
        assert!(namespace_finalizers_left(namespaces, &held));
        assert!(!namespace_finalizers_left(
            namespaces,
            &json!({"spec": {"finalizers": []}})
        ));
        let pods = &strata_api::resources::RESOURCES[1];
        assert!(!namespace_finalizers_left(pods, &held));
    }
}
