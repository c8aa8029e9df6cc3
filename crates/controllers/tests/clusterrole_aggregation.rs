//! ClusterRole aggregation against a real API server: an aggregating role picks up the
//! rules of the roles its selector matches as they are created, changed, unlabelled and
//! deleted; a role labelled to `view` extends the default `view`, `edit` and `admin`.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{cluster, eventually};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use strata_controllers::clusterrole_aggregation::aggregate;
use strata_testkit::cluster::TestApiServer;

async fn create(roles: &Api<ClusterRole>, role: serde_json::Value) {
    let role: ClusterRole = serde_json::from_value(role).unwrap();
    roles.create(&PostParams::default(), &role).await.unwrap();
}

/// The resources the aggregating role's rules name, in order.
async fn aggregated(roles: &Api<ClusterRole>) -> Vec<String> {
    let role = roles.get("monitoring").await.unwrap();
    role.rules
        .unwrap_or_default()
        .iter()
        .flat_map(|r| r.resources.clone().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn aggregated_roles_follow_the_roles_they_select() {
    let cluster = cluster().await;
    let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
    let label = "rbac.example.com/aggregate-to-monitoring";
    create(
        &roles,
        json!({"metadata": {"name": "monitoring"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}}),
    )
    .await;
    create(
        &roles,
        json!({"metadata": {"name": "monitoring-pods", "labels": {label: "true"}},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
    )
    .await;
    eventually("the pods rule to be aggregated", || async {
        (aggregated(&roles).await == ["pods"]).then_some(())
    })
    .await;

    // A second matching role adds its rules; changing one changes the aggregate.
    create(
        &roles,
        json!({"metadata": {"name": "monitoring-services", "labels": {label: "true"}},
            "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["list"]}]}),
    )
    .await;
    eventually("both rules to be aggregated", || async {
        (aggregated(&roles).await == ["pods", "services"]).then_some(())
    })
    .await;
    roles
        .patch(
            "monitoring-services",
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": [
                {"apiGroups": [""], "resources": ["endpoints"], "verbs": ["list"]}]})),
        )
        .await
        .unwrap();
    eventually("the changed rule to be aggregated", || async {
        (aggregated(&roles).await == ["pods", "endpoints"]).then_some(())
    })
    .await;

    // Unlabelled or deleted, a role's rules leave the aggregate.
    roles
        .patch(
            "monitoring-pods",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {label: null}}})),
        )
        .await
        .unwrap();
    roles
        .delete("monitoring-services", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the aggregate to empty", || async {
        aggregated(&roles).await.is_empty().then_some(())
    })
    .await;
}

/// The API server creates `admin`, `edit` and `view` holding exactly what the controller
/// would gather for them, so its first run rewrites none of them.
#[tokio::test(flavor = "multi_thread")]
async fn default_roles_start_as_the_controller_would_aggregate_them() {
    let server = TestApiServer::start().await;
    let roles: Api<ClusterRole> = Api::all(server.admin_client().await);
    let all: Vec<Arc<ClusterRole>> = roles
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(Arc::new)
        .collect();
    for name in ["admin", "edit", "view"] {
        let role = all
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name));
        let role = role.unwrap();
        assert!(role.aggregation_rule.is_some(), "{name}");
        let rules = role.rules.clone().unwrap_or_default();
        assert!(!rules.is_empty(), "{name}");
        assert_eq!(rules, aggregate(role, &all), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_role_labelled_to_view_extends_view_edit_and_admin() {
    let cluster = cluster().await;
    let roles: Api<ClusterRole> = Api::all(cluster.client.clone());
    let crontabs = json!({"apiGroups": ["stable.example.com"], "resources": ["crontabs"],
        "verbs": ["get", "list", "watch"]});
    create(
        &roles,
        json!({"metadata": {"name": "crontabs-view",
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [crontabs]}),
    )
    .await;
    let crontabs: PolicyRule = serde_json::from_value(crontabs).unwrap();
    let rbac: PolicyRule = serde_json::from_value(json!({
        "apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
        "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    }))
    .unwrap();
    for name in ["view", "edit", "admin"] {
        let rules = eventually(&format!("the crontabs rule to reach {name}"), || async {
            let rules = roles.get(name).await.unwrap().rules.unwrap_or_default();
            rules.contains(&crontabs).then_some(rules)
        })
        .await;
        // Added to, not replaced: admin still grants what only admin may.
        assert_eq!(rules.contains(&rbac), name == "admin", "{name}");
    }
}
