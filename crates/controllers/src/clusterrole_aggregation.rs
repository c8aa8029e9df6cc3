//! The ClusterRole aggregation controller (kube-controller-manager's
//! `clusterrole-aggregation`): a ClusterRole with an `aggregationRule` gets, as its
//! rules, those of every ClusterRole one of its selectors matches (itself excluded),
//! without duplicates, in name order, kept in step as those roles come, change and go.
//! That is how `rbac.authorization.k8s.io/aggregate-to-view: "true"` on a role extends
//! an aggregated role.
//!
//! A reconcile reads the roles from the API server rather than the controller's cache:
//! another role's change arrives through a second watch, which may run ahead of the
//! cache, and nothing would trigger the aggregating role again once the cache caught up.

use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use serde_json::json;

use crate::backoff::Backoff;
use crate::{ControllerError, ControllerOptions};

/// The component name (logs).
pub const COMPONENT: &str = "clusterrole-aggregation-controller";

/// A reconcile that could not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the ClusterRoles to aggregate failed.
    #[error("cannot list the ClusterRoles to aggregate into {role}")]
    List {
        /// The aggregating role.
        role: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Writing the role's rules failed.
    #[error("cannot write the aggregated rules of ClusterRole {role}")]
    Patch {
        /// The aggregating role.
        role: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

struct Context {
    client: kube::Client,
    backoff: Backoff,
}

/// Runs the controller until the future is dropped.
pub async fn run(client: kube::Client, _options: ControllerOptions) -> Result<(), ControllerError> {
    let api = Api::<ClusterRole>::all(client.clone());
    let controller = Controller::new(api.clone(), watcher::Config::default());
    // Any role's change may change what the aggregating roles hold: look at them all.
    let aggregators = controller.store();
    let controller = controller.watches(api, watcher::Config::default(), move |_changed| {
        aggregators
            .state()
            .into_iter()
            .filter(|r| r.aggregation_rule.is_some())
            .map(|r| ObjectRef::new(&r.name_any()))
            .collect::<Vec<_>>()
    });
    let context = Arc::new(Context {
        client,
        backoff: Backoff::default(),
    });
    controller
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(error = %crate::chain(&err), "clusterrole aggregation reconcile");
            }
        })
        .await;
    Err(ControllerError::Ended {
        controller: COMPONENT,
    })
}

fn error_policy(role: Arc<ClusterRole>, err: &Error, ctx: Arc<Context>) -> Action {
    crate::retry(&ctx.backoff, role.as_ref(), err)
}

async fn reconcile(role: Arc<ClusterRole>, ctx: Arc<Context>) -> Result<Action, Error> {
    if role.aggregation_rule.is_none() || role.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = role.name_any();
    let api = Api::<ClusterRole>::all(ctx.client.clone());
    let roles: Vec<Arc<ClusterRole>> = api
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::List {
            role: name.clone(),
            source,
        })?
        .items
        .into_iter()
        .map(Arc::new)
        .collect();
    // The role as it is now, not as the cache last saw it.
    let Some(role) = roles.iter().find(|r| r.name_any() == name) else {
        return Ok(Action::await_change());
    };
    if role.aggregation_rule.is_none() || role.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let wanted = aggregate(role, &roles);
    if role.rules.clone().unwrap_or_default() == wanted {
        return Ok(Action::await_change());
    }
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"rules": wanted})),
    )
    .await
    .map_err(|source| Error::Patch {
        role: name.clone(),
        source,
    })?;
    tracing::info!(role = %name, rules = wanted.len(), "aggregated the ClusterRole's rules");
    Ok(Action::await_change())
}

/// The rules `aggregator` should hold: those of the roles its selectors match (other
/// than itself), first seen first kept, roles in name order. A selector Kubernetes cannot
/// parse, or an empty one, matches nothing.
pub fn aggregate(aggregator: &ClusterRole, roles: &[Arc<ClusterRole>]) -> Vec<PolicyRule> {
    let selectors: Vec<_> = aggregator
        .aggregation_rule
        .iter()
        .flat_map(|rule| rule.cluster_role_selectors.iter().flatten())
        .filter_map(crate::pods::selector)
        .collect();
    let mut sources: Vec<&Arc<ClusterRole>> = roles
        .iter()
        .filter(|r| r.name_any() != aggregator.name_any())
        .filter(|r| {
            let labels = crate::pods::labels(&r.metadata);
            selectors.iter().any(|s| s.matches(&labels))
        })
        .collect();
    sources.sort_by_key(|r| r.name_any());
    let mut rules: Vec<PolicyRule> = Vec::new();
    for rule in sources.iter().flat_map(|r| r.rules.iter().flatten()) {
        if !rules.contains(rule) {
            rules.push(rule.clone());
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(value: serde_json::Value) -> Arc<ClusterRole> {
        Arc::new(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn matching_roles_rules_are_gathered_once_in_name_order() {
        let monitoring = role(json!({
            "metadata": {"name": "monitoring"},
            "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"rbac.example.com/aggregate-to-monitoring": "true"}}]}
        }));
        let pods = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]});
        let roles = vec![
            monitoring.clone(),
            role(json!({"metadata": {"name": "b-metrics",
                "labels": {"rbac.example.com/aggregate-to-monitoring": "true"}},
                "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["list"]}, pods]})),
            role(json!({"metadata": {"name": "a-pods",
                "labels": {"rbac.example.com/aggregate-to-monitoring": "true"}},
                "rules": [pods]})),
            role(json!({"metadata": {"name": "other"},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})),
        ];
        let rules = aggregate(&monitoring, &roles);
        let resources: Vec<_> = rules
            .iter()
            .map(|r| r.resources.clone().unwrap_or_default().join(","))
            .collect();
        assert_eq!(resources, ["pods", "services"]);
    }

    #[test]
    fn an_empty_selector_gathers_nothing() {
        let greedy = role(json!({"metadata": {"name": "greedy"},
            "aggregationRule": {"clusterRoleSelectors": [{}]}}));
        let roles = vec![
            greedy.clone(),
            role(json!({"metadata": {"name": "x"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})),
        ];
        assert!(aggregate(&greedy, &roles).is_empty());
    }
}
