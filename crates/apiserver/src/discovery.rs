//! The non-resource endpoints: discovery (`/api`, `/apis`, group and group-version
//! resource lists), `/version` and health checks; `/openapi/v3` and `/openapi/v2` are
//! handed to [`crate::openapi`], and [`aggregated`] discovery is served on `/api` and `/apis`
//! to clients that ask for it.

pub mod aggregated;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Value, json};
use strata_api::resources::{self, VERBS};
use strata_api::{Resource, Subresource};

use crate::status::{ApiError, json_response};

/// The Kubernetes version Strata's API corresponds to.
pub const KUBERNETES_MINOR: &str = "33";

fn text(body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves a non-resource request; `query` is its query string.
pub fn handle(method: &Method, path: &str, query: Option<&str>, headers: &HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::MethodNotAllowed.into_response();
    }
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let body = match parts.as_slice() {
        ["healthz" | "livez" | "readyz", ..] => return text("ok"),
        ["version"] => version(),
        ["api" | "apis"] if aggregated::negotiate(headers).is_some() => {
            return aggregated_response(headers, parts[0] == "api");
        }
        ["api"] => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }),
        ["api", "v1"] => resource_list("", "v1"),
        ["apis"] => json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": resources::groups().into_iter().filter(|(g, _)| !g.is_empty()).map(|(g, v)| group(g, &v)).collect::<Vec<_>>(),
        }),
        ["apis", g] => match resources::groups().into_iter().find(|(name, _)| name == g) {
            Some((name, versions)) if !name.is_empty() => {
                let mut group = group(name, &versions);
                group["kind"] = json!("APIGroup");
                group["apiVersion"] = json!("v1");
                group
            }
            _ => return ApiError::NoRoute.into_response(),
        },
        ["apis", g, v] if resources::in_group_version(g, v).next().is_some() => resource_list(g, v),
        ["openapi", "v3", rest @ ..] => return crate::openapi::serve_v3(rest, query, headers),
        ["openapi", "v2"] => return crate::openapi::v2::serve(headers),
        _ => return ApiError::NoRoute.into_response(),
    };
    let mut response = json_response(StatusCode::OK, &body);
    if matches!(parts.as_slice(), ["api" | "apis"]) {
        response
            .headers_mut()
            .insert(header::VARY, HeaderValue::from_static("Accept"));
    }
    response
}

fn aggregated_response(headers: &HeaderMap, core: bool) -> Response {
    let version = aggregated::negotiate(headers).unwrap_or(aggregated::Version::V2);
    let content_type = HeaderValue::from_str(&version.content_type())
        .unwrap_or(HeaderValue::from_static("application/json"));
    let mut response =
        aggregated::document(version, core).respond(headers, content_type, "no-cache, private");
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

/// The group and version of the kind a subresource answers with, when it is not
/// the parent's (`deployments/scale` answers with `autoscaling/v1` `Scale`).
pub fn subresource_group_version(sub: Subresource) -> Option<(&'static str, &'static str)> {
    match sub {
        Subresource::Scale => Some(("autoscaling", "v1")),
        Subresource::Token => Some(("authentication.k8s.io", "v1")),
        Subresource::Eviction => Some(("policy", "v1")),
        _ => None,
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-strata.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("linux/{}", if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

fn group(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
}

fn resource_entry(r: &Resource) -> Vec<Value> {
    let mut entries = vec![json!({
        "name": r.plural,
        "singularName": r.singular,
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": VERBS,
        "shortNames": r.short_names,
        "categories": r.categories,
        "storageVersionHash": "",
    })];
    for sub in r.subresources {
        let mut entry = json!({
            "name": format!("{}/{}", r.plural, sub.name()),
            "singularName": "",
            "namespaced": r.namespaced,
            "kind": sub.kind(r),
            "verbs": sub.verbs(),
        });
        if let Some((group, version)) = subresource_group_version(*sub) {
            entry["group"] = json!(group);
            entry["version"] = json!(version);
        }
        entries.push(entry);
    }
    entries
}

fn resource_list(group: &str, version: &str) -> Value {
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let entries: Vec<Value> = resources::in_group_version(group, version)
        .flat_map(resource_entry)
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": entries})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_groups_and_resources() {
        let core = resource_list("", "v1");
        let names: Vec<&str> = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"pods")
                && names.contains(&"pods/status")
                && names.contains(&"namespaces")
        );
        let apps = resource_list("apps", "v1");
        let scale = apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
    }

    #[test]
    fn api_and_apis_negotiate_aggregated_discovery() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"),
        );
        let aggregated = handle(&Method::GET, "/apis", None, &headers);
        assert_eq!(
            aggregated.headers()[header::CONTENT_TYPE],
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        );
        assert_eq!(aggregated.headers()[header::VARY], "Accept");
        headers.insert(
            header::IF_NONE_MATCH,
            aggregated.headers()[header::ETAG].clone(),
        );
        let again = handle(&Method::GET, "/apis", None, &headers);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let plain = handle(&Method::GET, "/api", None, &HeaderMap::new());
        assert_eq!(plain.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(plain.headers()[header::VARY], "Accept");
    }
}
