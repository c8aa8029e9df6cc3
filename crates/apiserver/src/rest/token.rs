//! `serviceaccounts/<name>/token`: the TokenRequest API (`authentication.k8s.io/v1`),
//! issuing a signed service account token, optionally bound to a Pod so that it stops
//! working when the Pod goes.

use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use strata_api::FieldError;
use strata_store::Store;

use super::{Target, object_response};
use crate::auth::serviceaccount::{
    Claims, ISSUER, KubernetesClaims, ObjectClaim, SaTokens, USER_PREFIX,
};
use crate::status::ApiError;
use crate::storage;

/// Lifetime of a token whose request sets none (Kubernetes').
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Shortest lifetime a request may ask for.
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// Longest lifetime a request may ask for (2^32 s, Kubernetes' validation limit).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// Reads a stored object of `plural` (core group), `None` when absent.
pub(crate) async fn stored(
    store: &dyn Store,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let resource = strata_api::resources::find("", "v1", plural)
        .ok_or_else(|| ApiError::Internal(format!("no resource {plural}")))?;
    match store
        .get(&storage::key(resource, Some(namespace), name))
        .await?
    {
        Some(kv) => Ok(Some(storage::decode(&kv)?)),
        None => Ok(None),
    }
}

/// Issues the token a TokenRequest in `body` asks for, for the service account `target`.
pub(super) async fn request(
    store: &dyn Store,
    signer: Option<&SaTokens>,
    target: &Target,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let signer = signer
        .ok_or_else(|| ApiError::Unavailable("service account tokens are not configured".into()))?;
    let (Some(namespace), Some(name)) = (target.namespace.as_deref(), target.name.as_deref())
    else {
        return Err(ApiError::NoRoute);
    };
    let mut request = super::parse_body(headers, body)?;
    let invalid = |causes: Vec<FieldError>| ApiError::Invalid {
        kind: "TokenRequest".into(),
        group: "authentication.k8s.io".into(),
        name: name.to_string(),
        causes,
    };
    let spec = &request["spec"];
    let expiration = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION_SECONDS,
        value => value.as_i64().ok_or_else(|| {
            invalid(vec![FieldError::invalid(
                "spec.expirationSeconds",
                value,
                "must be an integer",
            )])
        })?,
    };
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(vec![FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration less than 10 minutes",
        )]));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        return Err(invalid(vec![FieldError::invalid(
            "spec.expirationSeconds",
            expiration,
            "may not specify a duration larger than 2^32 seconds",
        )]));
    }
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|a| a.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                invalid(vec![FieldError::invalid(
                    "spec.audiences",
                    &spec["audiences"],
                    "must be strings",
                )])
            })?,
        _ => vec![ISSUER.to_string()],
    };
    let account = stored(store, "serviceaccounts", namespace, name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            resource: "serviceaccounts".into(),
            name: name.to_string(),
        })?;
    let pod = bound_pod(store, namespace, name, &spec["boundObjectRef"], &invalid).await?;
    let now = chrono::Utc::now();
    let exp = now.timestamp() + expiration;
    let claims = Claims {
        iss: ISSUER.into(),
        sub: format!("{USER_PREFIX}{namespace}:{name}"),
        aud: audiences.clone(),
        exp,
        iat: now.timestamp(),
        nbf: now.timestamp(),
        jti: super::new_uid(),
        kubernetes: KubernetesClaims {
            namespace: namespace.to_string(),
            serviceaccount: ObjectClaim {
                name: name.to_string(),
                uid: uid_of(&account),
            },
            pod,
        },
    };
    let token = signer
        .issue(&claims)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let expires = chrono::DateTime::from_timestamp(exp, 0)
        .unwrap_or(now)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    request["apiVersion"] = json!("authentication.k8s.io/v1");
    request["kind"] = json!("TokenRequest");
    request["metadata"] = json!({
        "name": name,
        "namespace": namespace,
        "creationTimestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    request["spec"]["audiences"] = json!(audiences);
    request["spec"]["expirationSeconds"] = json!(expiration);
    request["status"] = json!({"token": token, "expirationTimestamp": expires});
    Ok(object_response(StatusCode::CREATED, &request, &[]))
}

fn uid_of(object: &Value) -> String {
    object["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The Pod a `boundObjectRef` names: it must exist, match a given uid, and run as the
/// service account the token is for (Kubernetes' TokenREST checks).
async fn bound_pod(
    store: &dyn Store,
    namespace: &str,
    account: &str,
    reference: &Value,
    invalid: &(dyn Fn(Vec<FieldError>) -> ApiError + Sync),
) -> Result<Option<ObjectClaim>, ApiError> {
    if reference.is_null() {
        return Ok(None);
    }
    let kind = reference["kind"].as_str().unwrap_or_default();
    if kind != "Pod" {
        return Err(invalid(vec![FieldError::not_supported(
            "spec.boundObjectRef.kind",
            kind,
            &["Pod"],
        )]));
    }
    let Some(name) = reference["name"].as_str().filter(|n| !n.is_empty()) else {
        return Err(invalid(vec![FieldError::required(
            "spec.boundObjectRef.name",
            "",
        )]));
    };
    let pod = stored(store, "pods", namespace, name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            resource: "pods".into(),
            name: name.to_string(),
        })?;
    let uid = uid_of(&pod);
    if let Some(wanted) = reference["uid"].as_str().filter(|u| !u.is_empty())
        && wanted != uid
    {
        return Err(ApiError::Conflict {
            resource: "pods".into(),
            name: name.to_string(),
            message: format!(
                "the UID in the bound object reference ({wanted}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        });
    }
    let runs_as = pod["spec"]["serviceAccountName"]
        .as_str()
        .unwrap_or("default");
    if runs_as != account {
        return Err(ApiError::BadRequest(format!(
            "cannot bind token for serviceaccount {account:?} to pod running with different serviceaccount name."
        )));
    }
    Ok(Some(ObjectClaim {
        name: name.to_string(),
        uid,
    }))
}
