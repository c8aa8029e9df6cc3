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
use strata_store::{EventKind, ListOptions, Store};
use tokio::sync::watch;

pub use defaults::bootstrap;
pub use policy::{Policy, rule_allows_resource};

/// The API group of the RBAC objects.
pub const GROUP: &str = strata_api::rbac::GROUP;

/// Where every RBAC object is stored.
const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";

/// The RBAC policy, kept current by [`run`](Self::run).
pub struct RbacCache {
    store: Arc<dyn Store>,
    policy: watch::Sender<Arc<Policy>>,
}

impl std::fmt::Debug for RbacCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbacCache").finish_non_exhaustive()
    }
}

impl RbacCache {
    /// An empty cache over `store`; [`run`](Self::run) fills it.
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        let (policy, _) = watch::channel(Arc::new(Policy::default()));
        Arc::new(Self { store, policy })
    }

    /// The policy as the watch last saw it.
    pub fn snapshot(&self) -> Arc<Policy> {
        self.policy.borrow().clone()
    }

    /// The policy as the store holds it now, read afresh: what a denied request is
    /// checked against once more, so that a binding acknowledged just before applies
    /// to the very next request although the watch may not have delivered it yet.
    pub async fn fresh_snapshot(&self) -> Arc<Policy> {
        match self.store.list(PREFIX, ListOptions::default()).await {
            Ok(listed) => {
                let objects: Vec<Value> = listed
                    .items
                    .iter()
                    .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                    .collect();
                Arc::new(build(objects.iter()))
            }
            Err(_) => self.snapshot(),
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
        self.publish(&objects);
        let mut watch = self.store.watch(PREFIX, listed.revision).await?;
        while let Some(event) = watch.next().await {
            let event = event?;
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
            self.publish(&objects);
        }
        Ok(())
    }

    fn publish(&self, objects: &BTreeMap<String, Value>) {
        self.policy.send_replace(Arc::new(build(objects.values())));
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
