//! The pod subresources served by node agents — `pods/log`, `pods/exec`, `pods/attach`,
//! `pods/portforward` — as kube-apiserver serves them: find the pod and its node in the
//! store, work out the kubelet API request ([`location`]) and proxy it ([`proxy`]),
//! streaming logs and joining upgraded connections. Errors are `Status` objects: 404
//! when the pod (or its node) does not exist, 400 for a pod not scheduled yet or a
//! missing or unknown container, 503 when the node agent cannot be reached.

pub mod location;
pub mod proxy;

use axum::body::Body;
use axum::response::Response;
use http::Request;
use serde_json::Value;
use strata_api::Subresource;
use strata_store::Store;

use crate::rest::Target;
use crate::status::ApiError;
use crate::storage;

pub use location::Location;
pub use proxy::KubeletClient;

/// Serves a node-agent subresource of a pod.
pub(crate) async fn serve(
    store: &dyn Store,
    client: Option<&KubeletClient>,
    target: &Target,
    request: Request<Body>,
) -> Result<Response, ApiError> {
    let Some(subresource) = target.subresource else {
        return Err(ApiError::NoRoute);
    };
    let (Some(namespace), Some(name)) = (target.namespace.as_deref(), target.name.as_deref())
    else {
        return Err(ApiError::NoRoute);
    };
    let pod = get(store, "pods", Some(namespace), name).await?;
    let node_name = location::node_name(&pod)?;
    let node = get(store, "nodes", None, &node_name).await?;
    let location = location::locate(subresource, &pod, &node, request.uri().query())?;
    let Some(client) = client else {
        return Err(ApiError::Unavailable(format!(
            "pods/{} needs a connection to node agents, which this server has not",
            subresource.name()
        )));
    };
    if matches!(subresource, Subresource::Log) && request.method() != http::Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    client.proxy(&location, request).await
}

async fn get(
    store: &dyn Store,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let resource = strata_api::resources::find("", "v1", plural).ok_or(ApiError::NoRoute)?;
    match store.get(&storage::key(resource, namespace, name)).await? {
        Some(kv) => storage::decode(&kv),
        None => Err(ApiError::NotFound {
            resource: plural.to_string(),
            name: name.to_string(),
        }),
    }
}
