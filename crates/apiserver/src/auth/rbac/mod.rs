//! Role-based access control, as Kubernetes' RBAC authorizer: the [`Policy`] (every
//! Role, ClusterRole and binding) kept in memory by a watch on the store
//! ([`RbacCache`]), and the default roles and bindings every cluster starts with
//! ([`bootstrap`]).

mod defaults;
mod policy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;
use strata_store::{EventKind, ListOptions, Revision, Store};
use tokio::sync::watch;

pub use defaults::bootstrap;
pub use policy::{Policy, rule_allows_resource};

/// The API group of the RBAC objects.
pub const GROUP: &str = strata_api::rbac::GROUP;

/// Where every RBAC object is stored.
const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// How long a denied request waits for the cache to reach the store's latest
/// revision, so that a binding just written applies to the next request.
const CATCH_UP: Duration = Duration::from_secs(2);

/// The RBAC policy, kept current by [`run`](Self::run).
pub struct RbacCache {
    store: Arc<dyn Store>,
    state: watch::Sender<(Revision, Arc<Policy>)>,
}

impl std::fmt::Debug for RbacCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbacCache")
            .field("revision", &self.state.borrow().0)
            .finish()
    }
}

impl RbacCache {
    /// An empty cache over `store`; [`run`](Self::run) fills it.
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        let (state, _) = watch::channel((0, Arc::new(Policy::default())));
        Arc::new(Self { store, state })
    }

    /// The policy as last seen.
    pub fn snapshot(&self) -> Arc<Policy> {
        self.state.borrow().1.clone()
    }

    /// The policy once it has caught up with every write acknowledged so far (or
    /// after [`CATCH_UP`], whatever it then is).
    pub async fn fresh_snapshot(&self) -> Arc<Policy> {
        let Ok(latest) = self.store.current_revision().await else {
            return self.snapshot();
        };
        let mut receiver = self.state.subscribe();
        let caught_up = receiver.wait_for(|(revision, _)| *revision >= latest);
        match tokio::time::timeout(CATCH_UP, caught_up).await {
            Ok(Ok(state)) => state.1.clone(),
            _ => self.snapshot(),
        }
    }

    /// Lists and then watches every RBAC object, rebuilding the policy on each change;
    /// relists after a watch ends. Runs until aborted.
    pub async fn run(self: Arc<Self>) {
        loop {
            if let Err(err) = self.follow().await {
                tracing::warn!(error = %err, "RBAC cache: relisting");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn follow(&self) -> Result<(), strata_store::StoreError> {
        let listed = self.store.list(PREFIX, ListOptions::default()).await?;
        let mut objects: BTreeMap<String, Value> = BTreeMap::new();
        for kv in &listed.items {
            if let Ok(value) = serde_json::from_slice(&kv.value) {
                objects.insert(kv.key.clone(), value);
            }
        }
        // The revision the policy reflects: whatever the store says now is at least
        // as new as the list, and every later change arrives through the watch.
        let mut revision = listed
            .revision
            .max(self.store.current_revision().await.unwrap_or(0));
        self.publish(revision, &objects);
        let mut watch = self.store.watch(PREFIX, listed.revision).await?;
        loop {
            // Wake up now and then to follow the store's revision (writes to other
            // resources move it too), so fresh_snapshot need not wait for them.
            let event = match tokio::time::timeout(Duration::from_millis(500), watch.next()).await {
                Ok(Some(event)) => event?,
                Ok(None) => return Ok(()),
                Err(_) => {
                    let now = self.store.current_revision().await?;
                    if now > revision {
                        revision = now;
                        self.publish(revision, &objects);
                    }
                    continue;
                }
            };
            match event.kind {
                EventKind::Delete => {
                    objects.remove(&event.kv.key);
                }
                EventKind::Create | EventKind::Update => {
                    if let Ok(value) = serde_json::from_slice(&event.kv.value) {
                        objects.insert(event.kv.key.clone(), value);
                    }
                }
            }
            revision = revision.max(event.revision);
            self.publish(revision, &objects);
        }
    }

    fn publish(&self, revision: Revision, objects: &BTreeMap<String, Value>) {
        let policy = build(objects.values());
        self.state.send_replace((revision, Arc::new(policy)));
    }
}

/// The policy of `objects` (stored RBAC objects of the four kinds).
fn build<'a>(objects: impl Iterator<Item = &'a Value>) -> Policy {
    let mut policy = Policy::default();
    for object in objects {
        let object = object.clone();
        match object["kind"].as_str() {
            Some("ClusterRole") => {
                if let Ok(role) = serde_json::from_value::<ClusterRole>(object) {
                    policy.add_cluster_role(role);
                }
            }
            Some("Role") => {
                if let Ok(role) = serde_json::from_value::<Role>(object) {
                    policy.add_role(role);
                }
            }
            Some("ClusterRoleBinding") => {
                if let Ok(binding) = serde_json::from_value::<ClusterRoleBinding>(object) {
                    policy.add_cluster_role_binding(binding);
                }
            }
            Some("RoleBinding") => {
                if let Ok(binding) = serde_json::from_value::<RoleBinding>(object) {
                    policy.add_role_binding(binding);
                }
            }
            _ => {}
        }
    }
    policy
}
