//! The RBAC policy in memory: every Role, ClusterRole and binding, and the pure
//! questions the authorizer asks of them — which rules apply to a caller in a
//! namespace, whether they allow a request, whether they cover another rule set (the
//! escalation check).

use std::collections::HashMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use crate::auth::attributes::{RequestAttributes, ResourceAttributes};
use crate::auth::{Identity, serviceaccount};

/// One binding: who (subjects) gets which role, and where it applies.
#[derive(Debug, Clone)]
struct Binding {
    /// `None` for a ClusterRoleBinding (applies everywhere).
    namespace: Option<String>,
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

/// Every RBAC object, as the store holds them.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    bindings: Vec<Binding>,
}

impl Policy {
    /// Adds a ClusterRole.
    pub fn add_cluster_role(&mut self, role: ClusterRole) {
        let name = role.metadata.name.unwrap_or_default();
        self.cluster_roles
            .insert(name, role.rules.unwrap_or_default());
    }

    /// Adds a Role.
    pub fn add_role(&mut self, role: Role) {
        let key = (
            role.metadata.namespace.unwrap_or_default(),
            role.metadata.name.unwrap_or_default(),
        );
        self.roles.insert(key, role.rules.unwrap_or_default());
    }

    /// Adds a ClusterRoleBinding.
    pub fn add_cluster_role_binding(&mut self, binding: ClusterRoleBinding) {
        self.bindings.push(Binding {
            namespace: None,
            role_ref: binding.role_ref,
            subjects: binding.subjects.unwrap_or_default(),
        });
    }

    /// Adds a RoleBinding.
    pub fn add_role_binding(&mut self, binding: RoleBinding) {
        self.bindings.push(Binding {
            namespace: binding.metadata.namespace,
            role_ref: binding.role_ref,
            subjects: binding.subjects.unwrap_or_default(),
        });
    }

    /// The rules of the role `role_ref` names, for a binding in `namespace`.
    pub fn role_rules(&self, role_ref: &RoleRef, namespace: Option<&str>) -> &[PolicyRule] {
        let rules = match (role_ref.kind.as_str(), namespace) {
            ("ClusterRole", _) => self.cluster_roles.get(&role_ref.name),
            ("Role", Some(ns)) => self.roles.get(&(ns.to_string(), role_ref.name.clone())),
            _ => None,
        };
        rules.map(Vec::as_slice).unwrap_or_default()
    }

    /// The rules that apply to `identity` in `namespace` (`None`: cluster-wide only).
    pub fn rules_for<'a>(
        &'a self,
        identity: &'a Identity,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a PolicyRule> + 'a {
        self.bindings
            .iter()
            .filter(move |b| b.namespace.is_none() || b.namespace.as_deref() == namespace)
            .filter(move |b| {
                b.subjects
                    .iter()
                    .any(|s| subject_matches(s, identity, b.namespace.as_deref()))
            })
            .flat_map(move |b| self.role_rules(&b.role_ref, b.namespace.as_deref()))
    }

    /// Whether some rule bound to `identity` allows the request.
    pub fn allows(&self, identity: &Identity, attrs: &RequestAttributes) -> bool {
        match attrs {
            RequestAttributes::Resource(r) => self
                .rules_for(identity, r.namespace.as_deref())
                .any(|rule| rule_allows_resource(rule, r.verb.as_str(), r)),
            RequestAttributes::NonResource { verb, path } => self
                .rules_for(identity, None)
                .any(|rule| rule_allows_url(rule, verb, path)),
        }
    }

    /// Whether some rule bound to `identity` allows `verb` on what `r` names.
    pub fn allows_verb(&self, identity: &Identity, r: &ResourceAttributes, verb: &str) -> bool {
        self.rules_for(identity, r.namespace.as_deref())
            .any(|rule| rule_allows_resource(rule, verb, r))
    }

    /// Whether `identity`'s rules in `namespace` cover every one of `rules`: what
    /// Kubernetes requires of whoever creates a role or binds one (no escalation).
    /// Returns the first rule not covered.
    pub fn uncovered<'a>(
        &self,
        identity: &Identity,
        namespace: Option<&str>,
        rules: &'a [PolicyRule],
    ) -> Option<&'a PolicyRule> {
        let owned: Vec<&PolicyRule> = self.rules_for(identity, namespace).collect();
        rules.iter().find(|rule| !covered(&owned, rule))
    }
}

fn subject_matches(
    subject: &Subject,
    identity: &Identity,
    binding_namespace: Option<&str>,
) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == identity.user,
        "Group" => identity.in_group(&subject.name),
        "ServiceAccount" => {
            let Some(namespace) = subject.namespace.as_deref().or(binding_namespace) else {
                return false;
            };
            identity.user
                == format!(
                    "{}{namespace}:{}",
                    serviceaccount::USER_PREFIX,
                    subject.name
                )
        }
        _ => false,
    }
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

/// Kubernetes' `ResourceMatches`: `*`, the exact `resource` or `resource/subresource`,
/// or `*/subresource` for that subresource of every resource.
fn resource_pattern_matches(pattern: &str, resource: &str) -> bool {
    pattern == "*"
        || pattern == resource
        || resource
            .split_once('/')
            .is_some_and(|(_, sub)| pattern.strip_prefix("*/") == Some(sub))
}

/// Kubernetes' `NonResourceURLMatches`: `*`, the exact path, or a prefix ending in `*`.
fn url_pattern_matches(pattern: &str, path: &str) -> bool {
    pattern == "*"
        || pattern == path
        || pattern
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

fn list(values: &Option<Vec<String>>) -> &[String] {
    values.as_deref().unwrap_or_default()
}

/// Whether `rule` grants, for some verb, `resource` (`pods` or `pods/log`) in `group`
/// on the object `name` (`None`: on all of them).
fn grants_resource(rule: &PolicyRule, group: &str, resource: &str, name: Option<&str>) -> bool {
    let names = list(&rule.resource_names);
    has(list(&rule.api_groups), group)
        && list(&rule.resources)
            .iter()
            .any(|pattern| resource_pattern_matches(pattern, resource))
        && (names.is_empty() || name.is_some_and(|n| names.iter().any(|x| x == n)))
}

/// Kubernetes' `RuleAllows` for a resource request.
pub fn rule_allows_resource(rule: &PolicyRule, verb: &str, r: &ResourceAttributes) -> bool {
    has(&rule.verbs, verb)
        && grants_resource(rule, &r.api_group, &r.resource_path(), r.name.as_deref())
}

fn rule_allows_url(rule: &PolicyRule, verb: &str, path: &str) -> bool {
    has(&rule.verbs, verb)
        && list(&rule.non_resource_urls)
            .iter()
            .any(|pattern| url_pattern_matches(pattern, path))
}

/// Whether `owned` covers `rule`: every (verb, group, resource, name) or (verb, URL)
/// it grants is granted by some owned rule, `*` only by `*`.
fn covered(owned: &[&PolicyRule], rule: &PolicyRule) -> bool {
    let names: Vec<Option<&str>> = match list(&rule.resource_names) {
        [] => vec![None],
        names => names.iter().map(|n| Some(n.as_str())).collect(),
    };
    rule.verbs.iter().all(|verb| {
        let holders = || owned.iter().filter(|o| has(&o.verbs, verb));
        let urls = list(&rule.non_resource_urls)
            .iter()
            .all(|url| holders().any(|o| rule_allows_url(o, verb, url)));
        let resources = list(&rule.api_groups).iter().all(|group| {
            list(&rule.resources).iter().all(|resource| {
                names
                    .iter()
                    .all(|name| holders().any(|o| grants_resource(o, group, resource, *name)))
            })
        });
        urls && resources
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::attributes::Verb;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let strings = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        PolicyRule {
            verbs: verbs.iter().map(|s| s.to_string()).collect(),
            api_groups: strings(groups),
            resources: strings(resources),
            resource_names: if names.is_empty() {
                None
            } else {
                strings(names)
            },
            non_resource_urls: None,
        }
    }

    fn request(
        verb: Verb,
        group: &str,
        resource: &str,
        sub: Option<&str>,
        ns: &str,
        name: Option<&str>,
    ) -> RequestAttributes {
        RequestAttributes::Resource(ResourceAttributes {
            verb,
            api_group: group.into(),
            api_version: "v1".into(),
            resource: resource.into(),
            subresource: sub.map(str::to_string),
            namespace: Some(ns.into()),
            name: name.map(str::to_string),
        })
    }

    fn policy() -> Policy {
        let mut policy = Policy::default();
        policy.add_cluster_role(ClusterRole {
            metadata: ObjectMeta {
                name: Some("view".into()),
                ..Default::default()
            },
            rules: Some(vec![rule(
                &["get", "list", "watch"],
                &["", "apps"],
                &["pods", "deployments", "*/scale"],
                &[],
            )]),
            ..Default::default()
        });
        policy.add_role(Role {
            metadata: ObjectMeta {
                name: Some("one".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            rules: Some(vec![rule(
                &["update"],
                &[""],
                &["configmaps"],
                &["settings"],
            )]),
        });
        let subject = |kind: &str, name: &str, namespace: Option<&str>| Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: namespace.map(str::to_string),
            api_group: None,
        };
        policy.add_role_binding(RoleBinding {
            metadata: ObjectMeta {
                name: Some("b".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "view".into(),
            },
            subjects: Some(vec![
                subject("ServiceAccount", "robot", None),
                subject("Group", "auditors", None),
            ]),
        });
        policy.add_role_binding(RoleBinding {
            metadata: ObjectMeta {
                name: Some("c".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: "one".into(),
            },
            subjects: Some(vec![subject("User", "alice", None)]),
        });
        policy
    }

    #[test]
    fn bindings_grant_their_role_in_their_namespace_only() {
        let policy = policy();
        let robot = Identity::new(
            "system:serviceaccount:shop:robot",
            ["system:serviceaccounts"],
        );
        assert!(policy.allows(&robot, &request(Verb::List, "", "pods", None, "shop", None)));
        assert!(policy.allows(
            &robot,
            &request(
                Verb::Get,
                "apps",
                "deployments",
                Some("scale"),
                "shop",
                Some("web")
            )
        ));
        assert!(!policy.allows(
            &robot,
            &request(Verb::List, "", "pods", None, "default", None)
        ));
        assert!(!policy.allows(
            &robot,
            &request(Verb::Delete, "", "pods", None, "shop", Some("p"))
        ));
        assert!(!policy.allows(
            &robot,
            &request(Verb::Get, "", "secrets", None, "shop", Some("s"))
        ));
        let other = Identity::new(
            "system:serviceaccount:other:robot",
            ["system:serviceaccounts"],
        );
        assert!(!policy.allows(&other, &request(Verb::List, "", "pods", None, "shop", None)));
        let auditor = Identity::new("bob", ["auditors"]);
        assert!(policy.allows(
            &auditor,
            &request(Verb::Watch, "", "pods", None, "shop", None)
        ));
        // resourceNames: only the named object, never a list.
        let alice = Identity::new("alice", Vec::<String>::new());
        assert!(policy.allows(
            &alice,
            &request(
                Verb::Update,
                "",
                "configmaps",
                None,
                "shop",
                Some("settings")
            )
        ));
        assert!(!policy.allows(
            &alice,
            &request(Verb::Update, "", "configmaps", None, "shop", Some("other"))
        ));
        assert!(!policy.allows(
            &alice,
            &request(Verb::Update, "", "configmaps", None, "shop", None)
        ));
    }

    #[test]
    fn coverage_stops_escalation() {
        let policy = policy();
        let robot = Identity::new(
            "system:serviceaccount:shop:robot",
            ["system:serviceaccounts"],
        );
        let subset = [rule(&["get"], &[""], &["pods"], &["web"])];
        assert!(policy.uncovered(&robot, Some("shop"), &subset).is_none());
        let more = [rule(&["get", "delete"], &[""], &["pods"], &[])];
        assert!(policy.uncovered(&robot, Some("shop"), &more).is_some());
        let wildcard = [rule(&["get"], &["*"], &["pods"], &[])];
        assert!(policy.uncovered(&robot, Some("shop"), &wildcard).is_some());
        assert!(policy.uncovered(&robot, Some("default"), &subset).is_some());
    }
}
