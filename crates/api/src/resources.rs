//! The table of resources Strata serves: group, version, kind, names, scope and
//! subresources — what discovery lists and what the API server routes by.

/// A subresource of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `…/status`: the status half of the object.
    Status,
    /// `…/scale`: `autoscaling/v1` Scale over `spec.replicas`.
    Scale,
    /// `pods/binding`: assigns a pod to a node.
    Binding,
    /// `pods/eviction`: deletes a pod politely.
    Eviction,
    /// `pods/log`.
    Log,
    /// `pods/exec`.
    Exec,
    /// `pods/attach`.
    Attach,
    /// `pods/portforward`.
    PortForward,
    /// `serviceaccounts/token`: issues a token (`authentication.k8s.io/v1` TokenRequest).
    Token,
}

impl Subresource {
    /// The path segment.
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Eviction => "eviction",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::Token => "token",
        }
    }

    /// The kind its requests and responses carry.
    pub fn kind(self, parent: &Resource) -> &'static str {
        match self {
            Subresource::Status => parent.kind,
            Subresource::Scale => "Scale",
            Subresource::Binding => "Binding",
            Subresource::Eviction => "Eviction",
            Subresource::Log => "Pod",
            Subresource::Exec => "PodExecOptions",
            Subresource::Attach => "PodAttachOptions",
            Subresource::PortForward => "PodPortForwardOptions",
            Subresource::Token => "TokenRequest",
        }
    }

    /// The verbs it supports.
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Subresource::Status | Subresource::Scale => &["get", "patch", "update"],
            Subresource::Binding | Subresource::Eviction | Subresource::Token => &["create"],
            Subresource::Log => &["get"],
            Subresource::Exec | Subresource::Attach | Subresource::PortForward => {
                &["create", "get"]
            }
        }
    }
}

/// One resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Version (`v1`).
    pub version: &'static str,
    /// Kind (`Pod`).
    pub kind: &'static str,
    /// Plural resource name, the URL segment (`pods`).
    pub plural: &'static str,
    /// Singular name (`pod`).
    pub singular: &'static str,
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// Short names kubectl accepts (`po`).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
    /// Subresources.
    pub subresources: &'static [Subresource],
}

/// The verbs every resource supports.
pub const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl Resource {
    /// `v1` or `group/version`, as objects spell `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kind of a list of these (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// True if `name` is one of the subresources.
    pub fn subresource(&self, name: &str) -> Option<Subresource> {
        self.subresources.iter().copied().find(|s| s.name() == name)
    }

    /// True for Strata's own groups (`serverless.strata.dev`), served as Kubernetes
    /// serves custom resources: JSON only (no protobuf), and no strategic merge patch.
    pub fn is_strata_own(&self) -> bool {
        self.group.ends_with(".strata.dev")
    }

    /// `pods`, or `deployments.apps` — how messages name the resource.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

use Subresource::*;

macro_rules! resource {
    ($group:expr, $version:expr, $kind:expr, $plural:expr, $singular:expr, $namespaced:expr,
     [$($short:expr),*], [$($category:expr),*], [$($sub:expr),*]) => {
        Resource {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $namespaced,
            short_names: &[$($short),*],
            categories: &[$($category),*],
            subresources: &[$($sub),*],
        }
    };
}

/// Every resource Strata serves.
pub static RESOURCES: &[Resource] = &[
    resource!(
        "",
        "v1",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        ["ns"],
        [],
        [Status]
    ),
    resource!(
        "",
        "v1",
        "Pod",
        "pods",
        "pod",
        true,
        ["po"],
        ["all"],
        [Status, Binding, Eviction, Log, Exec, Attach, PortForward]
    ),
    resource!(
        "",
        "v1",
        "Service",
        "services",
        "service",
        true,
        ["svc"],
        ["all"],
        [Status]
    ),
    resource!(
        "",
        "v1",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        ["ep"],
        [],
        []
    ),
    resource!(
        "",
        "v1",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        ["cm"],
        [],
        []
    ),
    resource!("", "v1", "Secret", "secrets", "secret", true, [], [], []),
    resource!(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        ["sa"],
        [],
        [Token]
    ),
    resource!(
        "",
        "v1",
        "Node",
        "nodes",
        "node",
        false,
        ["no"],
        [],
        [Status]
    ),
    resource!("", "v1", "Event", "events", "event", true, ["ev"], [], []),
    resource!(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        "deployment",
        true,
        ["deploy"],
        ["all"],
        [Status, Scale]
    ),
    resource!(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        ["rs"],
        ["all"],
        [Status, Scale]
    ),
    resource!(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        ["ds"],
        ["all"],
        [Status]
    ),
    resource!(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        ["sts"],
        ["all"],
        [Status, Scale]
    ),
    resource!(
        "batch",
        "v1",
        "Job",
        "jobs",
        "job",
        true,
        [],
        ["all"],
        [Status]
    ),
    resource!(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        "lease",
        true,
        [],
        [],
        []
    ),
    resource!(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        [],
        [],
        []
    ),
    resource!(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        "event",
        true,
        ["ev"],
        [],
        []
    ),
    resource!(
        "serverless.strata.dev",
        "v1alpha1",
        "Function",
        "functions",
        "function",
        true,
        ["fn"],
        ["all"],
        [Status]
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        [],
        [],
        []
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        [],
        [],
        []
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        "role",
        true,
        [],
        [],
        []
    ),
    resource!(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        [],
        [],
        []
    ),
];

/// The `namespaces` resource (first in [`RESOURCES`]; the server needs it by itself).
pub fn namespaces() -> &'static Resource {
    &RESOURCES[0]
}

/// The API groups, in discovery order, with their versions.
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match groups.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) => {
                if !versions.contains(&r.version) {
                    versions.push(r.version);
                }
            }
            None => groups.push((r.group, vec![r.version])),
        }
    }
    groups
}

/// The resource served at `group`/`version`/`plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource of `apiVersion` + `kind`.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

/// The resources of one group version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_find_resources_by_path_and_kind() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(pods.kind, "Pod");
        assert_eq!(pods.api_version(), "v1");
        assert_eq!(pods.subresource("status"), Some(Subresource::Status));
        assert_eq!(pods.subresource("scale"), None);
        let deploy = by_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(deploy.qualified_name(), "deployments.apps");
        assert_eq!(deploy.list_kind(), "DeploymentList");
        assert!(find("apps", "v1", "pods").is_none());
        // Two Event kinds in two groups.
        assert_eq!(
            by_kind("events.k8s.io/v1", "Event").unwrap().group,
            "events.k8s.io"
        );
        assert_eq!(by_kind("v1", "Event").unwrap().group, "");
    }

    #[test]
    fn every_plural_is_unique_within_its_group() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{} twice",
                    a.plural
                );
            }
        }
        assert_eq!(namespaces().plural, "namespaces");
        assert!(!namespaces().namespaced);
        let groups = groups();
        assert_eq!(groups[0], ("", vec!["v1"]));
        assert!(groups.iter().any(|(g, _)| *g == "apps"));
    }
}
