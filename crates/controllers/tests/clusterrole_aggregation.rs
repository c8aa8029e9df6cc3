//! ClusterRole aggregation against a real API server: an aggregating role picks up the
//! rules of the roles its selector matches as they are created, changed, unlabelled and
//! deleted.
#![allow(clippy::unwrap_used)]

mod common;

use common::{cluster, eventually};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

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
