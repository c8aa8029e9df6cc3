//! Who is calling and what they may do: [`Identity`], bearer [`tokens`], request
//! [`attributes`] parsed from Kubernetes URLs, the [`authorize`](authorize::authorize) decision,
//! and the [`layer`] that applies all of it in one place of the request path.
//!
//! Flow of one request through [`layer::AuthLayer`]: client-certificate identity (put on the
//! request by the TLS listener) → else `Authorization: Bearer` token → else anonymous.
//! Anonymous callers get 401 except on the public health and version paths. Then the request's
//! attributes are parsed and authorized; a denial is a 403 Kubernetes `Status`. Handlers find the
//! [`Identity`] and the [`RequestAttributes`] in the request extensions.

pub mod attributes;
pub mod authorize;
pub mod impersonate;
pub mod layer;
pub mod rbac;
pub mod serviceaccount;
mod status;
pub mod tokens;

use serde::{Deserialize, Serialize};

pub use attributes::{RequestAttributes, ResourceAttributes, Verb, parse_request};
pub use authorize::{Condition, Decision, authorize, authorize_with, forbidden_message};
pub use layer::{AuthLayer, AuthService, Authenticator, ClientCertIdentity, PodNodeResolver};
pub use tokens::{TokenError, TokenStore};

/// User name of unauthenticated callers.
pub const ANONYMOUS_USER: &str = "system:anonymous";
/// Group of unauthenticated callers.
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
/// Group every authenticated caller is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Group whose members may do anything.
pub const MASTERS_GROUP: &str = "system:masters";
/// Group of node agents.
pub const NODES_GROUP: &str = "system:nodes";
/// Prefix of a node agent's user name: `system:node:<node-name>`.
pub const NODE_USER_PREFIX: &str = "system:node:";

/// An authenticated (or anonymous) caller: a user name and the groups it belongs to, as
/// Kubernetes models them. Client certificates give CN → user and O → groups.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identity {
    /// User name, e.g. `strata-admin` or `system:node:n1`.
    pub user: String,
    /// Groups, e.g. `system:masters`.
    pub groups: Vec<String>,
}

impl Identity {
    /// An identity with the given user and groups.
    pub fn new(
        user: impl Into<String>,
        groups: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Identity {
            user: user.into(),
            groups: groups.into_iter().map(Into::into).collect(),
        }
    }

    /// The anonymous caller: `system:anonymous` in `system:unauthenticated`.
    pub fn anonymous() -> Self {
        Identity::new(ANONYMOUS_USER, [UNAUTHENTICATED_GROUP])
    }

    /// The identity of node `name`'s agent: `system:node:<name>` in `system:nodes`.
    pub fn node(name: &str) -> Self {
        Identity::new(format!("{NODE_USER_PREFIX}{name}"), [NODES_GROUP])
    }

    /// Whether this is the anonymous caller.
    pub fn is_anonymous(&self) -> bool {
        self.user == ANONYMOUS_USER || self.in_group(UNAUTHENTICATED_GROUP)
    }

    /// Whether the identity is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// The node name if this is a node agent (user `system:node:<name>` and group
    /// `system:nodes`; both are required, as in Kubernetes' Node authorizer).
    pub fn node_name(&self) -> Option<&str> {
        let name = self.user.strip_prefix(NODE_USER_PREFIX)?;
        (!name.is_empty() && self.in_group(NODES_GROUP)).then_some(name)
    }

    /// This identity with `system:authenticated` added, as Kubernetes does for every
    /// authenticated request.
    pub(crate) fn authenticated(mut self) -> Self {
        if !self.in_group(AUTHENTICATED_GROUP) {
            self.groups.push(AUTHENTICATED_GROUP.into());
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_name_needs_prefix_and_group() {
        assert_eq!(Identity::node("n1").node_name(), Some("n1"));
        assert_eq!(Identity::new("system:node:n1", ["other"]).node_name(), None);
        assert_eq!(Identity::new("n1", [NODES_GROUP]).node_name(), None);
        assert_eq!(
            Identity::new("system:node:", [NODES_GROUP]).node_name(),
            None
        );
        assert!(Identity::anonymous().is_anonymous());
        assert!(!Identity::node("n1").is_anonymous());
    }
}
