//! Request attributes parsed from a Kubernetes URL and HTTP method, the way kube-apiserver's
//! `RequestInfoFactory` (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go) does it: a pure
//! function the authorizer and the resource handlers share.

use std::fmt;

use serde::Serialize;

/// Verbs of resource requests, as Kubernetes' authorizers see them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// GET of one named object (or subresource).
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection or object with `watch=true` (or under the legacy `/watch/` prefix).
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH.
    Patch,
    /// DELETE of one named object.
    Delete,
    /// DELETE of a collection.
    #[serde(rename = "deletecollection")]
    DeleteCollection,
}

impl Verb {
    /// The verb as Kubernetes spells it (`get`, `deletecollection`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    /// The verb spelled `text`, if the request path ever produces it.
    pub fn parse(text: &str) -> Option<Verb> {
        [
            Verb::Get,
            Verb::List,
            Verb::Watch,
            Verb::Create,
            Verb::Update,
            Verb::Patch,
            Verb::Delete,
            Verb::DeleteCollection,
        ]
        .into_iter()
        .find(|v| v.as_str() == text)
    }

    /// Whether the verb only reads.
    pub fn is_read(self) -> bool {
        matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request asks to do, for authorization and routing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum RequestAttributes {
    /// A request on an API resource (`/api/v1/...`, `/apis/<group>/<version>/...`).
    Resource(ResourceAttributes),
    /// Anything else: discovery (`/api`, `/apis/apps`), `/version`, `/healthz`, `/openapi/v2`.
    NonResource {
        /// The HTTP method, lowercased (`get`, `post`, …).
        verb: String,
        /// The URL path.
        path: String,
    },
}

/// The attributes of a resource request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAttributes {
    /// Verb.
    pub verb: Verb,
    /// API group; empty for the core group (`/api/v1`).
    pub api_group: String,
    /// API version, e.g. `v1`.
    pub api_version: String,
    /// Resource (plural, lowercase), e.g. `pods`.
    pub resource: String,
    /// Subresource, e.g. `status`.
    pub subresource: Option<String>,
    /// Namespace for namespaced requests; for the `namespaces` resource, the namespace's own name.
    pub namespace: Option<String>,
    /// Object name; for list and watch, taken from a `fieldSelector=metadata.name=<n>`.
    pub name: Option<String>,
}

impl ResourceAttributes {
    /// `resource` or `resource/subresource`, the way Kubernetes names it in messages and RBAC.
    pub fn resource_path(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// Parses a request's attributes from its method, path (no query) and raw query string.
///
/// Rules (from kube-apiserver): `/api/v1/...` is the core group, `/apis/<group>/<version>/...`
/// a named group; after the version come `namespaces/<ns>/<resource>/<name>/<subresource>` or
/// `<resource>/<name>/<subresource>`; `namespaces/<ns>/status` and `namespaces/<ns>/finalize`
/// are subresources of the namespace itself. GET without a name is `list`, or `watch` with
/// `watch=true`; DELETE without a name is `deletecollection`. Paths with too few parts
/// (discovery) and methods other than GET/HEAD/POST/PUT/PATCH/DELETE are non-resource
/// requests.
///
/// ```
/// use strata_apiserver::auth::{parse_request, RequestAttributes, Verb};
/// let attrs = parse_request(&http::Method::PUT, "/api/v1/namespaces/ns/pods/p/status", None);
/// let RequestAttributes::Resource(r) = attrs else { panic!() };
/// assert_eq!((r.verb, r.resource.as_str(), r.subresource.as_deref()), (Verb::Update, "pods", Some("status")));
/// ```
pub fn parse_request(method: &http::Method, path: &str, query: Option<&str>) -> RequestAttributes {
    let non_resource = || RequestAttributes::NonResource {
        verb: method.as_str().to_ascii_lowercase(),
        path: path.to_string(),
    };
    let mut verb = match *method {
        http::Method::GET | http::Method::HEAD => Verb::Get,
        http::Method::POST => Verb::Create,
        http::Method::PUT => Verb::Update,
        http::Method::PATCH => Verb::Patch,
        http::Method::DELETE => Verb::Delete,
        _ => return non_resource(),
    };
    let trimmed = path.trim_matches('/');
    let parts: Vec<&str> = if trimmed.is_empty() {
        Vec::new()
    } else {
        trimmed.split('/').collect()
    };
    // /api/v1/<resource> at least, or /apis/<group>/<version>/<resource>.
    let (api_group, api_version, mut rest) = match parts.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => ("", *version, rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (*group, *version, rest),
        _ => return non_resource(),
    };
    // Legacy watch paths: /api/v1/watch/namespaces/ns/pods.
    if rest.first() == Some(&"watch") {
        verb = Verb::Watch;
        rest = &rest[1..];
        if rest.is_empty() {
            return non_resource();
        }
    }
    let mut namespace = None;
    if rest[0] == "namespaces" {
        if let Some(ns) = rest.get(1) {
            namespace = Some((*ns).to_string());
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
    }
    let resource = rest[0].to_string();
    let name = rest.get(1).map(|s| (*s).to_string());
    let subresource = rest.get(2).map(|s| (*s).to_string());

    let mut attrs = ResourceAttributes {
        verb,
        api_group: api_group.to_string(),
        api_version: api_version.to_string(),
        resource,
        subresource,
        namespace,
        name,
    };
    if attrs.name.is_none() {
        let query = QueryFacts::parse(query);
        match attrs.verb {
            Verb::Get => {
                attrs.verb = if query.watch { Verb::Watch } else { Verb::List };
                attrs.name = query.field_name;
            }
            Verb::Watch => attrs.name = query.field_name,
            Verb::Delete => attrs.verb = Verb::DeleteCollection,
            _ => {}
        }
    } else if attrs.verb == Verb::Get
        && attrs.api_group.is_empty()
        && attrs.resource == "pods"
        && matches!(
            attrs.subresource.as_deref(),
            Some("exec" | "attach" | "portforward")
        )
    {
        // A WebSocket upgrade is a GET, but it runs commands just like the POST of the
        // SPDY form: Kubernetes (1.31+) asks for `create` on these subresources either way.
        attrs.verb = Verb::Create;
    } else if attrs.verb == Verb::Get && QueryFacts::parse(query).watch {
        // GET /api/v1/namespaces/ns/pods/p?watch=true is served as a watch of that object.
        attrs.verb = Verb::Watch;
    }
    RequestAttributes::Resource(attrs)
}

/// The query parameters that change a request's attributes.
struct QueryFacts {
    watch: bool,
    field_name: Option<String>,
}

impl QueryFacts {
    fn parse(query: Option<&str>) -> QueryFacts {
        let mut facts = QueryFacts {
            watch: false,
            field_name: None,
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                // Go's strconv.ParseBool, which kube-apiserver uses here.
                "watch" => {
                    facts.watch =
                        matches!(value.as_ref(), "1" | "t" | "T" | "true" | "TRUE" | "True")
                }
                "fieldSelector" => {
                    facts.field_name = value.split(',').find_map(|term| {
                        let name = term
                            .strip_prefix("metadata.name==")
                            .or_else(|| term.strip_prefix("metadata.name="))?;
                        (!name.is_empty() && !name.contains(['/', '%'])).then(|| name.to_string())
                    })
                }
                _ => {}
            }
        }
        facts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn res(method: Method, path: &str, query: Option<&str>) -> ResourceAttributes {
        match parse_request(&method, path, query) {
            RequestAttributes::Resource(r) => r,
            other => panic!("{path}: expected a resource request, got {other:?}"),
        }
    }

    #[test]
    fn streaming_subresources_need_create_even_as_get() {
        let r = res(
            Method::GET,
            "/api/v1/namespaces/ns/pods/p/exec",
            Some("command=ls"),
        );
        assert_eq!(r.verb, Verb::Create);
        let r = res(
            Method::GET,
            "/api/v1/namespaces/ns/pods/p/portforward",
            None,
        );
        assert_eq!(r.verb, Verb::Create);
        let r = res(Method::GET, "/api/v1/namespaces/ns/pods/p/log", None);
        assert_eq!(r.verb, Verb::Get);
    }

    #[test]
    fn core_namespaced_object_with_subresource() {
        let r = res(Method::PUT, "/api/v1/namespaces/ns/pods/name/status", None);
        assert_eq!(r.verb, Verb::Update);
        assert_eq!(r.api_group, "");
        assert_eq!(r.api_version, "v1");
        assert_eq!(r.namespace.as_deref(), Some("ns"));
        assert_eq!(r.resource, "pods");
        assert_eq!(r.name.as_deref(), Some("name"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        assert_eq!(r.resource_path(), "pods/status");
    }

    #[test]
    fn group_paths() {
        let r = res(
            Method::GET,
            "/apis/apps/v1/namespaces/default/deployments/web",
            None,
        );
        assert_eq!(
            (r.verb, r.api_group.as_str(), r.api_version.as_str()),
            (Verb::Get, "apps", "v1")
        );
        assert_eq!(
            (r.resource.as_str(), r.name.as_deref()),
            ("deployments", Some("web"))
        );

        let r = res(
            Method::PATCH,
            "/apis/apps/v1/namespaces/default/deployments/web/scale",
            None,
        );
        assert_eq!(
            (r.verb, r.subresource.as_deref()),
            (Verb::Patch, Some("scale"))
        );

        let r = res(
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            None,
        );
        assert_eq!(r.verb, Verb::Create);
        assert_eq!(r.api_group, "coordination.k8s.io");
        assert_eq!(r.namespace.as_deref(), Some("kube-node-lease"));
        assert_eq!(r.name, None);
    }

    #[test]
    fn cluster_scoped() {
        let r = res(Method::GET, "/api/v1/nodes/n1", None);
        assert_eq!(
            (r.verb, r.namespace.as_deref(), r.name.as_deref()),
            (Verb::Get, None, Some("n1"))
        );
        let r = res(Method::PATCH, "/api/v1/nodes/n1/status", None);
        assert_eq!(
            (r.verb, r.subresource.as_deref()),
            (Verb::Patch, Some("status"))
        );
        let r = res(
            Method::GET,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            None,
        );
        assert_eq!(
            (r.verb, r.resource.as_str(), r.namespace),
            (Verb::List, "clusterroles", None)
        );
    }

    #[test]
    fn namespaces_themselves() {
        let r = res(Method::GET, "/api/v1/namespaces", None);
        assert_eq!(
            (r.verb, r.resource.as_str(), r.namespace),
            (Verb::List, "namespaces", None)
        );
        let r = res(Method::GET, "/api/v1/namespaces/ns", None);
        assert_eq!(
            (
                r.resource.as_str(),
                r.name.as_deref(),
                r.namespace.as_deref()
            ),
            ("namespaces", Some("ns"), Some("ns"))
        );
        let r = res(Method::PUT, "/api/v1/namespaces/ns/finalize", None);
        assert_eq!(
            (
                r.resource.as_str(),
                r.name.as_deref(),
                r.subresource.as_deref()
            ),
            ("namespaces", Some("ns"), Some("finalize"))
        );
        let r = res(Method::PUT, "/api/v1/namespaces/ns/status", None);
        assert_eq!(r.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn list_watch_get_and_deletecollection() {
        assert_eq!(
            res(Method::GET, "/api/v1/namespaces/ns/pods", None).verb,
            Verb::List
        );
        assert_eq!(
            res(Method::GET, "/api/v1/pods", Some("limit=500")).verb,
            Verb::List
        );
        assert_eq!(
            res(
                Method::GET,
                "/api/v1/namespaces/ns/pods",
                Some("watch=true&resourceVersion=5")
            )
            .verb,
            Verb::Watch
        );
        assert_eq!(
            res(Method::GET, "/api/v1/pods", Some("watch=1")).verb,
            Verb::Watch
        );
        assert_eq!(
            res(Method::GET, "/api/v1/pods", Some("watch=false")).verb,
            Verb::List
        );
        assert_eq!(
            res(Method::GET, "/api/v1/namespaces/ns/pods/p", None).verb,
            Verb::Get
        );
        assert_eq!(
            res(Method::HEAD, "/api/v1/namespaces/ns/pods/p", None).verb,
            Verb::Get
        );
        assert_eq!(
            res(
                Method::GET,
                "/api/v1/namespaces/ns/pods/p",
                Some("watch=true")
            )
            .verb,
            Verb::Watch
        );
        assert_eq!(
            res(Method::DELETE, "/api/v1/namespaces/ns/pods", None).verb,
            Verb::DeleteCollection
        );
        assert_eq!(
            res(Method::DELETE, "/api/v1/namespaces/ns/pods/p", None).verb,
            Verb::Delete
        );
        let legacy = res(Method::GET, "/api/v1/watch/namespaces/ns/pods", None);
        assert_eq!(
            (
                legacy.verb,
                legacy.resource.as_str(),
                legacy.namespace.as_deref()
            ),
            (Verb::Watch, "pods", Some("ns"))
        );
    }

    #[test]
    fn field_selector_names_a_list() {
        let r = res(
            Method::GET,
            "/api/v1/nodes",
            Some("fieldSelector=metadata.name%3Dn1&watch=true"),
        );
        assert_eq!((r.verb, r.name.as_deref()), (Verb::Watch, Some("n1")));
        let r = res(
            Method::GET,
            "/api/v1/nodes",
            Some("fieldSelector=spec.unschedulable%3Dfalse"),
        );
        assert_eq!((r.verb, r.name), (Verb::List, None));
    }

    #[test]
    fn non_resource_paths() {
        for path in [
            "/",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/healthz",
            "/openapi/v2",
        ] {
            assert_eq!(
                parse_request(&Method::GET, path, None),
                RequestAttributes::NonResource {
                    verb: "get".into(),
                    path: path.into()
                },
                "{path}"
            );
        }
        assert!(matches!(
            parse_request(&Method::OPTIONS, "/api/v1/pods", None),
            RequestAttributes::NonResource { .. }
        ));
    }
}
