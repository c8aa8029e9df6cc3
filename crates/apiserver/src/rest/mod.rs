//! The Kubernetes REST surface: one handler that turns a request (already
//! authenticated, with its parsed attributes) into a typed operation on the store.
//! Reads live in `read`, writes in `write` (server-side apply in `apply`, managed
//! fields in `managed`), watches in `watch`.

mod apply;
mod managed;
mod query;
mod read;
mod review;
mod token;
mod watch;
mod write;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::Value;
use strata_api::protobuf::{self, ProtobufError};
use strata_api::{Resource, Subresource};
use strata_store::Store;

use crate::auth::{RequestAttributes, ResourceAttributes, Verb, parse_request};
use crate::discovery;
use crate::status::{ApiError, json_response};

pub use query::Query;
pub(crate) use token::stored;
pub(crate) use write::new_uid;

/// Largest request body accepted (Kubernetes' limit).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What the handlers share.
pub struct ApiState {
    /// The object store.
    pub store: Arc<dyn Store>,
    /// The client of node agents (pods/log, exec, attach, portforward); without one those
    /// subresources answer 503.
    pub kubelet: Option<Arc<crate::kubelet::KubeletClient>>,
    /// The signer of service account tokens; without one `serviceaccounts/token`
    /// answers 503.
    pub sa_tokens: Option<Arc<crate::auth::serviceaccount::SaTokens>>,
    /// The RBAC policy, for access reviews; without it reviews see no RBAC grants.
    pub rbac: Option<Arc<crate::auth::rbac::RbacCache>>,
    /// The cluster IPs and node ports of Services.
    pub services: Arc<crate::services::ServiceAllocator>,
}

/// The REST router over `state` (put the auth layer around it).
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// One resource request, resolved.
#[derive(Clone)]
pub(crate) struct Target {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
    pub verb: Verb,
}

async fn handle(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let attributes = request
        .extensions()
        .get::<RequestAttributes>()
        .cloned()
        .unwrap_or_else(|| {
            parse_request(
                request.method(),
                request.uri().path(),
                request.uri().query(),
            )
        });
    match attributes {
        RequestAttributes::NonResource { path, .. } => discovery::handle(
            request.method(),
            &path,
            request.uri().query(),
            request.headers(),
        ),
        RequestAttributes::Resource(attrs) => match serve(&state, attrs, request).await {
            Ok(response) => response,
            Err(err) => err.into_response(),
        },
    }
}

fn resolve(attrs: &ResourceAttributes) -> Result<Target, ApiError> {
    let resource =
        strata_api::resources::find(&attrs.api_group, &attrs.api_version, &attrs.resource)
            .ok_or(ApiError::NoRoute)?;
    let subresource = match &attrs.subresource {
        Some(name) => Some(resource.subresource(name).ok_or(ApiError::NoRoute)?),
        None => None,
    };
    // For the namespaces resource the parser reports the namespace's own name as
    // the namespace; it is a cluster-scoped object.
    let namespace = if resource.namespaced {
        attrs.namespace.clone()
    } else {
        None
    };
    let name = if attrs.resource == "namespaces" && attrs.name.is_none() {
        match attrs.verb {
            Verb::List | Verb::Watch | Verb::Create | Verb::DeleteCollection => None,
            _ => attrs.namespace.clone(),
        }
    } else {
        attrs.name.clone()
    };
    Ok(Target {
        resource,
        namespace,
        name,
        subresource,
        verb: attrs.verb,
    })
}

async fn serve(
    state: &ApiState,
    attrs: ResourceAttributes,
    request: Request,
) -> Result<Response, ApiError> {
    if review::is_review(&attrs) {
        let identity = request.extensions().get::<crate::auth::Identity>().cloned();
        let headers = request.headers().clone();
        let body = read_body(request).await?;
        return review::handle(state, &attrs, identity.as_ref(), &headers, &body).await;
    }
    let mut target = resolve(&attrs)?;
    if target.resource.is_strata_own() && !accepts_json(request.headers()) {
        return Err(ApiError::NotAcceptable(JSON_MEDIA_TYPES.into()));
    }
    // A list or watch narrowed to one name by fieldSelector=metadata.name= stays a list.
    if matches!(target.verb, Verb::List | Verb::Watch) {
        target.name = None;
    }
    if matches!(
        target.subresource,
        Some(Subresource::Log | Subresource::Exec | Subresource::Attach | Subresource::PortForward)
    ) {
        let client = state.kubelet.as_deref();
        return crate::kubelet::serve(state.store.as_ref(), client, &target, request).await;
    }
    let query = Query::parse(request.uri().query())?;
    let headers = request.headers().clone();
    let method = request.method().clone();
    let body = match method {
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE => read_body(request).await?,
        _ => Vec::new(),
    };
    let store = state.store.as_ref();
    let services = state.services.as_ref();
    match target.subresource {
        Some(Subresource::Status) | None => {}
        Some(Subresource::Scale) => {
            return write::scale(store, services, &target, &query, &headers, &body).await;
        }
        Some(Subresource::Binding) => {
            return write::bind(store, &target, &query, &headers, &body).await;
        }
        Some(Subresource::Eviction) => {
            return write::evict(store, services, &target, &headers, &body).await;
        }
        Some(Subresource::Token) if target.verb == Verb::Create => {
            return token::request(store, state.sa_tokens.as_deref(), &target, &headers, &body)
                .await;
        }
        Some(Subresource::Token) => return Err(ApiError::MethodNotAllowed),
        Some(
            Subresource::Log | Subresource::Exec | Subresource::Attach | Subresource::PortForward,
        ) => return Err(ApiError::NoRoute),
    }
    match target.verb {
        Verb::Get => read::get(store, &target, &headers).await,
        Verb::List => read::list(store, &target, &query, &headers).await,
        Verb::Watch => watch::watch(state.store.clone(), target, query, &headers).await,
        Verb::Create => write::create(store, services, &target, &query, &headers, &body).await,
        Verb::Update => write::update(store, services, &target, &query, &headers, &body).await,
        Verb::Patch => write::patch(store, services, &target, &query, &headers, &body).await,
        Verb::Delete => write::delete(store, services, &target, &query, &headers, &body).await,
        Verb::DeleteCollection => {
            write::delete_collection(store, services, &target, &query, &headers, &body).await
        }
    }
}

async fn read_body(request: Request) -> Result<Vec<u8>, ApiError> {
    let body = request.into_body();
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::TooLarge(MAX_BODY))?;
    Ok(bytes.to_vec())
}

/// Parses a request body as JSON, or YAML or Kubernetes protobuf when the content type
/// says so.
pub(crate) fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if protobuf::is_protobuf(content_type) {
        return protobuf::decode(body).map_err(|e| match e {
            // 415 names what the server reads, so that the client can send JSON.
            ProtobufError::UnknownKind { .. } => ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf ({e})"
            )),
            other => ApiError::BadRequest(format!("the protobuf body cannot be read: {other}")),
        });
    }
    if content_type.contains("yaml") {
        return serde_yaml::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid YAML: {e}")));
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({e})"
        ))
    })
}

/// A JSON object response, adding `Warning` headers: `299 - "<text>"`, the text
/// an RFC 7230 quoted-string (quotes and backslashes escaped), which client-go unquotes.
pub(crate) fn object_response(code: StatusCode, object: &Value, warnings: &[String]) -> Response {
    let mut response = json_response(code, object);
    for warning in warnings {
        let quoted = warning.replace('\\', "\\\\").replace('"', "\\\"");
        let text = format!("299 - \"{quoted}\"");
        if let Ok(value) = http::HeaderValue::from_str(&text) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// What Strata's own kinds are served as: like kube-apiserver's custom resources,
/// JSON and YAML but not protobuf.
const JSON_MEDIA_TYPES: &str = "application/json, application/yaml";

/// Whether `Accept` allows a JSON answer: no header, or any media range of JSON, YAML
/// or a wildcard. kube-apiserver answers a custom resource request that accepts only
/// protobuf with 406 NotAcceptable, and one that accepts protobuf or JSON (client-go's
/// `application/vnd.kubernetes.protobuf, application/json`) with JSON.
pub(crate) fn accepts_json(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return true;
    };
    let Ok(accept) = accept.to_str() else {
        return false;
    };
    accept.trim().is_empty()
        || accept.split(',').any(|range| {
            let media = range.split(';').next().unwrap_or_default().trim();
            matches!(
                media.to_ascii_lowercase().as_str(),
                "application/json" | "application/yaml" | "application/*" | "*/*"
            )
        })
}

/// True when the client asked for a server-side `Table`.
pub(crate) fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=Table"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_acceptable_unless_only_protobuf_is() {
        let accept = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, http::HeaderValue::from_static(value));
            accepts_json(&headers)
        };
        assert!(accepts_json(&HeaderMap::new()));
        assert!(accept("application/json"));
        assert!(accept(
            "application/vnd.kubernetes.protobuf, application/json"
        ));
        assert!(accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(accept("*/*"));
        assert!(accept("application/yaml"));
        assert!(!accept("application/vnd.kubernetes.protobuf"));
        assert!(!accept(
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io"
        ));
    }
}
