//! Aggregated discovery (`apidiscovery.k8s.io`, KEP-3352): `/api` and `/apis` answer
//! one `APIGroupDiscoveryList` holding every group, version and resource, when the
//! client's `Accept` asks for it, so kubectl learns the whole API in two requests
//! instead of one per group-version. Versions `v2` and `v2beta1` (same shape) are
//! served; clients that don't ask get the plain `APIVersions`/`APIGroupList`.

use std::sync::OnceLock;

use http::HeaderMap;
use http::header;
use serde_json::{Value, json};
use strata_api::resources::{self, VERBS};
use strata_api::{Resource, Subresource};

use crate::document::Document;

/// The aggregated discovery version a client accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `apidiscovery.k8s.io/v2` (Kubernetes 1.30+).
    V2,
    /// `apidiscovery.k8s.io/v2beta1` (Kubernetes 1.26–1.32).
    V2Beta1,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Version::V2 => "v2",
            Version::V2Beta1 => "v2beta1",
        }
    }

    /// The `Content-Type` of a response in this version.
    pub fn content_type(self) -> String {
        format!(
            "application/json;g=apidiscovery.k8s.io;v={};as=APIGroupDiscoveryList",
            self.name()
        )
    }
}

/// The aggregated discovery version the `Accept` header asks for, taking media
/// ranges in the client's order: `None` when plain JSON (or anything else this
/// server speaks) comes first, or nothing aggregated is acceptable.
pub fn negotiate(headers: &HeaderMap) -> Option<Version> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let (mut group, mut version, mut as_kind) = (None, None, None);
        for param in parts {
            match param.split_once('=') {
                Some(("g", v)) => group = Some(v),
                Some(("v", v)) => version = Some(v),
                Some(("as", v)) => as_kind = Some(v),
                _ => {}
            }
        }
        let json = matches!(media.as_str(), "application/json" | "application/*" | "*/*");
        match (group, version, as_kind) {
            (Some("apidiscovery.k8s.io"), Some(v), Some("APIGroupDiscoveryList"))
                if media == "application/json" =>
            {
                match v {
                    "v2" => return Some(Version::V2),
                    "v2beta1" => return Some(Version::V2Beta1),
                    _ => {}
                }
            }
            (None, None, None) if json => return None,
            _ => {}
        }
    }
    None
}

/// `{group, version, kind}` of what a resource or subresource answers with; empty
/// group and version mean the resource's own.
fn response_kind(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn subresource(r: &Resource, sub: Subresource) -> Value {
    let (group, version) = super::subresource_group_version(sub).unwrap_or(("", ""));
    json!({
        "subresource": sub.name(),
        "responseKind": response_kind(group, version, sub.kind(r)),
        "verbs": sub.verbs(),
    })
}

fn resource(r: &Resource) -> Value {
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": response_kind("", "", r.kind),
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r.subresources.iter().map(|s| subresource(r, *s)).collect();
        entry["subresources"] = json!(subs);
    }
    entry
}

fn group(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> =
                resources::in_group_version(name, v).map(resource).collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !name.is_empty() {
        metadata["name"] = json!(name);
    }
    json!({"metadata": metadata, "versions": versions})
}

/// The `APIGroupDiscoveryList` of the core group (`core` true, for `/api`) or of
/// every named group (for `/apis`).
pub fn list(version: Version, core: bool) -> Value {
    let items: Vec<Value> = resources::groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, v)| group(g, &v))
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{}", version.name()),
        "metadata": {},
        "items": items,
    })
}

/// [`list`] serialized once per version and half (`/api`, `/apis`).
pub fn document(version: Version, core: bool) -> &'static Document {
    static DOCUMENTS: OnceLock<[Document; 4]> = OnceLock::new();
    let documents = DOCUMENTS.get_or_init(|| {
        [
            Document::new(&list(Version::V2, true)),
            Document::new(&list(Version::V2, false)),
            Document::new(&list(Version::V2Beta1, true)),
            Document::new(&list(Version::V2Beta1, false)),
        ]
    });
    let index = match version {
        Version::V2 => 0,
        Version::V2Beta1 => 2,
    } + usize::from(!core);
    &documents[index]
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accept(value: &'static str) -> Option<Version> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static(value));
        negotiate(&headers)
    }

    #[test]
    fn accept_header_picks_the_first_acceptable() {
        assert_eq!(
            accept(
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
            ),
            Some(Version::V2)
        );
        assert_eq!(
            accept(
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList, application/json"
            ),
            Some(Version::V2Beta1)
        );
        assert_eq!(
            accept(
                "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
            ),
            None
        );
        assert_eq!(accept("application/json"), None);
        assert_eq!(negotiate(&HeaderMap::new()), None);
    }

    #[test]
    fn lists_resources_with_scope_names_and_subresources() {
        let apis = list(Version::V2, false);
        assert_eq!(apis["apiVersion"], "apidiscovery.k8s.io/v2");
        let apps = apis["items"]
            .as_array()
            .and_then(|items| items.iter().find(|g| g["metadata"]["name"] == "apps"))
            .unwrap();
        let deployments = apps["versions"][0]["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["resource"] == "deployments"))
            .unwrap();
        assert_eq!(deployments["scope"], "Namespaced");
        assert_eq!(deployments["singularResource"], "deployment");
        assert_eq!(deployments["shortNames"], json!(["deploy"]));
        assert_eq!(deployments["responseKind"]["kind"], "Deployment");
        let scale = deployments["subresources"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["subresource"] == "scale"))
            .unwrap();
        assert_eq!(
            scale["responseKind"],
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
        );
        let core = list(Version::V2Beta1, true);
        assert_eq!(core["items"].as_array().map(Vec::len), Some(1));
        let nodes = core["items"][0]["versions"][0]["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["resource"] == "nodes"))
            .unwrap();
        assert_eq!(nodes["scope"], "Cluster");
    }
}
