//! The authorization decision: a pure function of the caller, the request attributes and
//! the RBAC [`Policy`].
//!
//! Policy (kube-apiserver's `--authorization-mode=Node,RBAC` with the privileged-group
//! bypass):
//! - `system:masters` may do anything.
//! - Any authenticated caller may `get`/`head` non-resource paths (discovery, `/version`,
//!   `/openapi/...`), like Kubernetes' `system:discovery` role; other non-resource
//!   requests need an RBAC rule with `nonResourceURLs`.
//! - Node agents (`system:node:<n>` in `system:nodes`) follow a Node-authorizer-like policy:
//!   read (`get`/`list`/`watch`) any resource except listing or watching Secrets (a single
//!   Secret may be read by name); write only their own Node (`nodes/<n>`, `nodes/<n>/status`),
//!   their own Lease `kube-node-lease/<n>`, Events, and the status of (or delete) Pods bound to
//!   them, and request service account tokens bound to Pods bound to them (for the service
//!   account the Pod runs as). They may not use `pods/log`, `exec`, `attach`, `portforward`
//!   or `proxy`. Kubernetes further limits Secret reads to Pods bound to the node; Strata
//!   doesn't yet. Nodes may also `POST`
//!   [`KUBELET_SERVING_CERT_PATH`](crate::node_certs::KUBELET_SERVING_CERT_PATH) to get their
//!   kubelet serving certificate signed.
//! - Everyone else (users, service accounts) gets what RBAC Roles and ClusterRoles bound
//!   to them allow. Writing a Role or ClusterRole, or a binding, also needs the rules it
//!   grants to be held already (no escalation), unless RBAC grants `escalate` (roles) or
//!   `bind` (bindings) — as Kubernetes checks it. A patch of one, whose result the URL
//!   and body do not show, needs `escalate`/`bind`.
//!
//! Some answers depend on data the URL lacks, so [`authorize`] returns them as a
//! [`Condition`] that the [auth layer](super::layer) checks before the handler runs: the name
//! of an object being created (in the body), the node a Pod is bound to (`spec.nodeName`, in
//! the store, asked through [`PodNodeResolver`](super::PodNodeResolver)), or the rules an
//! RBAC write grants.

use super::attributes::{RequestAttributes, ResourceAttributes, Verb};
use super::rbac::Policy;
use super::{Identity, MASTERS_GROUP};

/// Namespace of node heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// The outcome of [`authorize`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request may proceed.
    Allow,
    /// The request is forbidden; the reason is for logs (the 403 message is
    /// [`forbidden_message`]).
    Deny(String),
    /// The request may proceed if the condition holds.
    AllowIf(Condition),
}

/// A check the URL alone can't answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The object in the request body must have `metadata.name` equal to this (a node
    /// creating its own Node or Lease).
    ObjectNameIs(String),
    /// The Pod named in the request must be bound to this node (`spec.nodeName`).
    PodOnNode(String),
    /// The TokenRequest in the body must be bound (`spec.boundObjectRef`) to a Pod on
    /// this node that runs as the service account named in the URL (Kubernetes'
    /// NodeRestriction admission).
    TokenForPodOnNode(String),
    /// The Role or ClusterRole in the body, or the role the binding in the body refers
    /// to, may grant only rules the caller holds (RBAC escalation prevention).
    NoEscalation,
}

/// Decides whether `identity` may do what `attrs` describe, without RBAC (as if no
/// role were bound). See [`authorize_with`].
///
/// ```
/// use strata_apiserver::auth::{authorize, parse_request, Decision, Identity};
/// let attrs = parse_request(&http::Method::PATCH, "/api/v1/nodes/n1/status", None);
/// assert_eq!(authorize(&Identity::node("n1"), &attrs), Decision::Allow);
/// ```
pub fn authorize(identity: &Identity, attrs: &RequestAttributes) -> Decision {
    authorize_with(identity, attrs, None)
}

/// Decides whether `identity` may do what `attrs` describe under the RBAC `policy`.
/// See the module doc for the policy.
pub fn authorize_with(
    identity: &Identity,
    attrs: &RequestAttributes,
    policy: Option<&Policy>,
) -> Decision {
    if identity.in_group(MASTERS_GROUP) {
        return Decision::Allow;
    }
    if identity.is_anonymous() {
        return Decision::Deny("anonymous requests are not allowed".into());
    }
    let rbac_allows = |verb: Option<&str>| {
        policy.is_some_and(|p| match (verb, attrs) {
            (Some(verb), RequestAttributes::Resource(r)) => p.allows_verb(identity, r, verb),
            _ => p.allows(identity, attrs),
        })
    };
    match attrs {
        RequestAttributes::NonResource { verb, path } => {
            let read = verb == "get" || verb == "head";
            let node_cert = verb == "post"
                && path == crate::node_certs::KUBELET_SERVING_CERT_PATH
                && identity.node_name().is_some();
            if read || node_cert || rbac_allows(None) {
                Decision::Allow
            } else {
                Decision::Deny("no RBAC rule allows this non-resource request".into())
            }
        }
        RequestAttributes::Resource(r) => {
            if let Some(node) = identity.node_name() {
                return authorize_node(node, r);
            }
            if !rbac_allows(None) {
                return Decision::Deny(match policy {
                    Some(_) => "no RBAC rule allows this request".into(),
                    None => "no RBAC policy is loaded".into(),
                });
            }
            let writes = matches!(r.verb, Verb::Create | Verb::Update | Verb::Patch);
            if r.api_group != super::rbac::GROUP || !writes || r.subresource.is_some() {
                return Decision::Allow;
            }
            // Escalation prevention: `escalate` on roles, `bind` on the roles bindings name.
            let waiver = match r.resource.as_str() {
                "roles" | "clusterroles" => rbac_allows(Some("escalate")),
                "rolebindings" | "clusterrolebindings" => policy.is_some_and(|p| {
                    ["roles", "clusterroles"].iter().all(|resource| {
                        let role = ResourceAttributes {
                            resource: (*resource).into(),
                            name: None,
                            ..r.clone()
                        };
                        p.allows_verb(identity, &role, "bind")
                    })
                }),
                _ => true,
            };
            match (waiver, r.verb) {
                (true, _) => Decision::Allow,
                (false, Verb::Patch) => Decision::Deny(format!(
                    "patching {} needs the {} verb; update it instead",
                    r.resource,
                    if r.resource.ends_with("bindings") {
                        "bind"
                    } else {
                        "escalate"
                    }
                )),
                (false, _) => Decision::AllowIf(Condition::NoEscalation),
            }
        }
    }
}

fn authorize_node(node: &str, r: &ResourceAttributes) -> Decision {
    let group = r.api_group.as_str();
    let resource = r.resource.as_str();
    let sub = r.subresource.as_deref();
    let own = r.name.as_deref() == Some(node);
    if group.is_empty()
        && resource == "pods"
        && matches!(
            sub,
            Some("log" | "exec" | "attach" | "portforward" | "proxy")
        )
    {
        // What a node agent serves itself; a node must not reach other nodes' pods.
        return Decision::Deny(format!(
            "node {node:?} may not use pods/{}",
            sub.unwrap_or("")
        ));
    }
    if r.verb.is_read() {
        if group.is_empty() && resource == "secrets" && r.verb != Verb::Get {
            return Decision::Deny("nodes may only get secrets by name".into());
        }
        return Decision::Allow;
    }
    match (group, resource) {
        ("", "nodes") => match (r.verb, sub) {
            (Verb::Create, None) => Decision::AllowIf(Condition::ObjectNameIs(node.into())),
            (Verb::Update | Verb::Patch, None | Some("status")) if own => Decision::Allow,
            _ => Decision::Deny(format!("node {node:?} may only update its own Node")),
        },
        ("coordination.k8s.io", "leases")
            if r.namespace.as_deref() == Some(NODE_LEASE_NAMESPACE) && sub.is_none() =>
        {
            match r.verb {
                Verb::Create => Decision::AllowIf(Condition::ObjectNameIs(node.into())),
                Verb::Update | Verb::Patch | Verb::Delete if own => Decision::Allow,
                _ => Decision::Deny(format!("node {node:?} may only write its own Lease")),
            }
        }
        ("", "pods") => match (r.verb, sub, &r.name) {
            (Verb::Update | Verb::Patch, Some("status"), Some(_))
            | (Verb::Delete, None, Some(_)) => Decision::AllowIf(Condition::PodOnNode(node.into())),
            _ => Decision::Deny(format!(
                "node {node:?} may only update the status of, or delete, pods bound to it"
            )),
        },
        ("", "serviceaccounts") if r.verb == Verb::Create && sub == Some("token") => {
            Decision::AllowIf(Condition::TokenForPodOnNode(node.into()))
        }
        ("" | "events.k8s.io", "events")
            if matches!(r.verb, Verb::Create | Verb::Update | Verb::Patch) =>
        {
            Decision::Allow
        }
        _ => Decision::Deny(format!("node {node:?} may not {} {resource}", r.verb)),
    }
}

/// `roles.rbac.authorization.k8s.io "name"`: how a 403 message names what it refuses.
pub fn forbidden_subject(r: &ResourceAttributes) -> String {
    let qualified = if r.api_group.is_empty() {
        r.resource.clone()
    } else {
        format!("{}.{}", r.resource, r.api_group)
    };
    match &r.name {
        Some(name) => format!("{qualified} {name:?}"),
        None => qualified,
    }
}

/// The message of a 403, worded exactly as kube-apiserver words it, e.g.
/// `nodes "x" is forbidden: User "system:node:y" cannot update resource "nodes" in API group ""
/// at the cluster scope`.
pub fn forbidden_message(identity: &Identity, attrs: &RequestAttributes) -> String {
    match attrs {
        RequestAttributes::NonResource { verb, path } => {
            format!(
                "forbidden: User {:?} cannot {verb} path {path:?}",
                identity.user
            )
        }
        RequestAttributes::Resource(r) => {
            let subject = forbidden_subject(r);
            let scope = match &r.namespace {
                Some(ns) => format!("in the namespace {ns:?}"),
                None => "at the cluster scope".into(),
            };
            format!(
                "{subject} is forbidden: User {:?} cannot {} resource {:?} in API group {:?} {scope}",
                identity.user,
                r.verb,
                r.resource_path(),
                r.api_group,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::attributes::parse_request;
    use crate::auth::{AUTHENTICATED_GROUP, Identity, NODES_GROUP};
    use http::Method;

    fn attrs(method: Method, path: &str) -> RequestAttributes {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        parse_request(&method, path, query)
    }

    fn node(name: &str) -> Identity {
        Identity::new(
            format!("system:node:{name}"),
            [NODES_GROUP, AUTHENTICATED_GROUP],
        )
    }

    fn denied(d: Decision) -> bool {
        matches!(d, Decision::Deny(_))
    }

    #[test]
    fn admin_may_do_anything() {
        let admin = Identity::new("strata-admin", ["system:masters"]);
        for (m, p) in [
            (Method::DELETE, "/api/v1/namespaces/kube-system/secrets"),
            (Method::PUT, "/api/v1/nodes/x"),
            (Method::POST, "/apis/apps/v1/namespaces/default/deployments"),
            (Method::POST, "/some/non/resource"),
        ] {
            assert_eq!(authorize(&admin, &attrs(m, p)), Decision::Allow, "{p}");
        }
    }

    #[test]
    fn anonymous_is_denied() {
        let anon = Identity::anonymous();
        assert!(denied(authorize(
            &anon,
            &attrs(Method::GET, "/api/v1/pods")
        )));
        assert!(denied(authorize(&anon, &attrs(Method::GET, "/api"))));
    }

    #[test]
    fn only_nodes_post_for_a_kubelet_certificate() {
        let path = crate::node_certs::KUBELET_SERVING_CERT_PATH;
        assert_eq!(
            authorize(&node("n1"), &attrs(Method::POST, path)),
            Decision::Allow
        );
        assert!(denied(authorize(
            &node("n1"),
            &attrs(Method::POST, "/strata/v1/other")
        )));
        let user = Identity::new("alice", [AUTHENTICATED_GROUP]);
        assert!(denied(authorize(&user, &attrs(Method::POST, path))));
        assert!(denied(authorize(
            &Identity::anonymous(),
            &attrs(Method::POST, path)
        )));
    }

    #[test]
    fn other_users_only_read_discovery() {
        let user = Identity::new("alice", [AUTHENTICATED_GROUP]);
        assert_eq!(
            authorize(&user, &attrs(Method::GET, "/apis")),
            Decision::Allow
        );
        assert!(denied(authorize(&user, &attrs(Method::POST, "/apis"))));
        assert!(denied(authorize(
            &user,
            &attrs(Method::GET, "/api/v1/pods")
        )));
    }

    #[test]
    fn node_writes_its_own_node_only() {
        let n1 = node("n1");
        assert_eq!(
            authorize(&n1, &attrs(Method::PUT, "/api/v1/nodes/n1")),
            Decision::Allow
        );
        assert_eq!(
            authorize(&n1, &attrs(Method::PATCH, "/api/v1/nodes/n1/status")),
            Decision::Allow
        );
        assert_eq!(
            authorize(&n1, &attrs(Method::POST, "/api/v1/nodes")),
            Decision::AllowIf(Condition::ObjectNameIs("n1".into()))
        );
        assert!(denied(authorize(
            &n1,
            &attrs(Method::PATCH, "/api/v1/nodes/n2/status")
        )));
        assert!(denied(authorize(
            &n1,
            &attrs(Method::DELETE, "/api/v1/nodes/n1")
        )));
        assert!(denied(authorize(
            &n1,
            &attrs(Method::DELETE, "/api/v1/nodes")
        )));
    }

    #[test]
    fn node_forbidden_message_matches_kubernetes() {
        let y = node("y");
        let a = attrs(Method::PUT, "/api/v1/nodes/x");
        assert!(denied(authorize(&y, &a)));
        assert_eq!(
            forbidden_message(&y, &a),
            r#"nodes "x" is forbidden: User "system:node:y" cannot update resource "nodes" in API group "" at the cluster scope"#
        );
        let a = attrs(Method::POST, "/apis/apps/v1/namespaces/default/deployments");
        assert_eq!(
            forbidden_message(&y, &a),
            r#"deployments.apps is forbidden: User "system:node:y" cannot create resource "deployments" in API group "apps" in the namespace "default""#
        );
        let a = attrs(Method::PATCH, "/api/v1/nodes/x/status");
        assert_eq!(
            forbidden_message(&y, &a),
            r#"nodes "x" is forbidden: User "system:node:y" cannot patch resource "nodes/status" in API group "" at the cluster scope"#
        );
        let a = attrs(Method::POST, "/logs");
        assert_eq!(
            forbidden_message(&y, &a),
            r#"forbidden: User "system:node:y" cannot post path "/logs""#
        );
    }

    #[test]
    fn node_reads() {
        let n1 = node("n1");
        for p in [
            "/api/v1/pods?watch=true",
            "/api/v1/nodes",
            "/api/v1/namespaces/ns/configmaps/c",
            "/api/v1/namespaces/ns/secrets/s",
            "/apis/apps/v1/deployments",
        ] {
            assert_eq!(
                authorize(&n1, &attrs(Method::GET, p)),
                Decision::Allow,
                "{p}"
            );
        }
        assert!(denied(authorize(
            &n1,
            &attrs(Method::GET, "/api/v1/secrets")
        )));
        assert!(denied(authorize(
            &n1,
            &attrs(Method::GET, "/api/v1/namespaces/ns/secrets?watch=1")
        )));
        for p in [
            "/api/v1/namespaces/ns/pods/p/log",
            "/api/v1/namespaces/ns/pods/p/exec?command=sh",
            "/api/v1/namespaces/ns/pods/p/attach",
            "/api/v1/namespaces/ns/pods/p/portforward",
        ] {
            assert!(denied(authorize(&n1, &attrs(Method::GET, p))), "{p}");
            assert!(denied(authorize(&n1, &attrs(Method::POST, p))), "{p}");
        }
    }

    #[test]
    fn node_leases_events_and_pods() {
        let n1 = node("n1");
        let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
        assert_eq!(
            authorize(&n1, &attrs(Method::POST, lease)),
            Decision::AllowIf(Condition::ObjectNameIs("n1".into()))
        );
        assert_eq!(
            authorize(&n1, &attrs(Method::PUT, &format!("{lease}/n1"))),
            Decision::Allow
        );
        assert!(denied(authorize(
            &n1,
            &attrs(Method::PUT, &format!("{lease}/n2"))
        )));
        assert!(denied(authorize(
            &n1,
            &attrs(
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/default/leases/n1"
            )
        )));

        assert_eq!(
            authorize(&n1, &attrs(Method::POST, "/api/v1/namespaces/ns/events")),
            Decision::Allow
        );
        assert_eq!(
            authorize(
                &n1,
                &attrs(Method::POST, "/apis/events.k8s.io/v1/namespaces/ns/events")
            ),
            Decision::Allow
        );
        assert!(denied(authorize(
            &n1,
            &attrs(Method::DELETE, "/api/v1/namespaces/ns/events/e")
        )));

        let on_node = Decision::AllowIf(Condition::PodOnNode("n1".into()));
        assert_eq!(
            authorize(
                &n1,
                &attrs(Method::PATCH, "/api/v1/namespaces/ns/pods/p/status")
            ),
            on_node
        );
        assert_eq!(
            authorize(&n1, &attrs(Method::DELETE, "/api/v1/namespaces/ns/pods/p")),
            on_node
        );
        assert!(denied(authorize(
            &n1,
            &attrs(Method::PUT, "/api/v1/namespaces/ns/pods/p")
        )));
        assert!(denied(authorize(
            &n1,
            &attrs(Method::POST, "/api/v1/namespaces/ns/pods")
        )));
        assert!(denied(authorize(
            &n1,
            &attrs(Method::DELETE, "/api/v1/namespaces/ns/pods")
        )));
    }

    #[test]
    fn node_group_without_node_user_is_not_a_node() {
        let fake = Identity::new("mallory", [NODES_GROUP, AUTHENTICATED_GROUP]);
        assert!(denied(authorize(
            &fake,
            &attrs(Method::PUT, "/api/v1/nodes/mallory")
        )));
    }

    fn policy_of(objects: serde_json::Value) -> Policy {
        let mut policy = Policy::default();
        for object in objects.as_array().unwrap() {
            match object["kind"].as_str().unwrap() {
                "ClusterRole" => {
                    policy.add_cluster_role(serde_json::from_value(object.clone()).unwrap())
                }
                "Role" => policy.add_role(serde_json::from_value(object.clone()).unwrap()),
                "RoleBinding" => {
                    policy.add_role_binding(serde_json::from_value(object.clone()).unwrap())
                }
                _ => {
                    policy.add_cluster_role_binding(serde_json::from_value(object.clone()).unwrap())
                }
            }
        }
        policy
    }

    #[test]
    fn service_accounts_get_what_rbac_binds_to_them() {
        let robot = Identity::new(
            "system:serviceaccount:shop:robot",
            [
                "system:serviceaccounts",
                "system:serviceaccounts:shop",
                AUTHENTICATED_GROUP,
            ],
        );
        let policy = policy_of(serde_json::json!([
            {"kind": "ClusterRole", "metadata": {"name": "view"},
             "rules": [{"apiGroups": [""], "resources": ["pods", "serviceaccounts"], "verbs": ["get", "list"]}]},
            {"kind": "RoleBinding", "metadata": {"name": "b", "namespace": "shop"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
             "subjects": [{"kind": "ServiceAccount", "name": "robot"}]},
        ]));
        let with = |m: Method, p: &str| authorize_with(&robot, &attrs(m, p), Some(&policy));
        assert_eq!(with(Method::GET, "/api"), Decision::Allow);
        assert_eq!(
            with(Method::GET, "/api/v1/namespaces/shop/pods"),
            Decision::Allow
        );
        assert_eq!(
            with(Method::GET, "/api/v1/namespaces/shop/serviceaccounts/robot"),
            Decision::Allow
        );
        for (m, p) in [
            (Method::GET, "/api/v1/namespaces/other/pods"),
            (
                Method::DELETE,
                "/api/v1/namespaces/shop/serviceaccounts/robot",
            ),
            (
                Method::POST,
                "/api/v1/namespaces/shop/serviceaccounts/robot/token",
            ),
            (Method::GET, "/api/v1/namespaces/shop/secrets"),
        ] {
            assert!(denied(with(m.clone(), p)), "{m} {p}");
        }
        // Without RBAC nothing is granted; without the group the name is no service account.
        assert!(denied(authorize(
            &robot,
            &attrs(Method::GET, "/api/v1/namespaces/shop/pods")
        )));
        let pretender = Identity::new("system:serviceaccount:shop:robot", [AUTHENTICATED_GROUP]);
        assert!(denied(authorize_with(
            &pretender,
            &attrs(Method::GET, "/api/v1/namespaces/shop/serviceaccounts/robot"),
            Some(&Policy::default())
        )));
    }

    #[test]
    fn rbac_writes_are_checked_for_escalation() {
        let alice = Identity::new("alice", [AUTHENTICATED_GROUP]);
        let policy = policy_of(serde_json::json!([
            {"kind": "ClusterRole", "metadata": {"name": "admin"},
             "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "get", "patch", "update"]}]},
            {"kind": "ClusterRole", "metadata": {"name": "escalator"},
             "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}]},
            {"kind": "RoleBinding", "metadata": {"name": "a", "namespace": "shop"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
             "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]},
        ]));
        let with = |m: Method, p: &str, policy: &Policy| {
            authorize_with(&alice, &attrs(m, p), Some(policy))
        };
        let roles = "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/roles";
        assert_eq!(
            with(Method::POST, roles, &policy),
            Decision::AllowIf(Condition::NoEscalation)
        );
        assert_eq!(
            with(
                Method::POST,
                "/apis/rbac.authorization.k8s.io/v1/namespaces/shop/rolebindings",
                &policy
            ),
            Decision::AllowIf(Condition::NoEscalation)
        );
        assert!(denied(with(Method::PATCH, &format!("{roles}/r"), &policy)));
        assert_eq!(
            with(Method::GET, &format!("{roles}/r"), &policy),
            Decision::Allow
        );
        assert!(denied(with(
            Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/other/roles",
            &policy
        )));
        // `escalate` waives the check.
        let mut escalating = policy.clone();
        escalating.add_role_binding(serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e", "namespace": "shop"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "escalator"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        })).unwrap());
        assert_eq!(with(Method::POST, roles, &escalating), Decision::Allow);
    }

    #[test]
    fn nodes_request_tokens_under_a_condition() {
        assert_eq!(
            authorize(
                &node("n1"),
                &attrs(
                    Method::POST,
                    "/api/v1/namespaces/shop/serviceaccounts/default/token"
                )
            ),
            Decision::AllowIf(Condition::TokenForPodOnNode("n1".into()))
        );
    }
}
