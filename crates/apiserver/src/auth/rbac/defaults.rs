//! The roles and bindings every cluster starts with (Kubernetes' bootstrap policy,
//! trimmed to what Strata serves): `cluster-admin` bound to `system:masters`; `admin`,
//! `edit` and `view` for binding in namespaces; `system:basic-user` (ask what you may
//! do) and `system:discovery` for every authenticated caller. Created when missing;
//! the rules of an existing default ClusterRole are brought up to date only while it
//! keeps the annotation `rbac.authorization.kubernetes.io/autoupdate: "true"` (as
//! kube-apiserver reconciles them), so that an administrator can opt out.

use serde_json::{Value, json};
use strata_api::resources;
use strata_store::{Store, StoreError};

use crate::status::ApiError;
use crate::storage;

const API_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// Defaults carrying this annotation with value `"true"` are kept current.
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// Everything a namespace holds that `admin` and `edit` manage.
const WORKLOADS: &[(&str, &[&str])] = &[
    (
        "",
        &[
            "pods",
            "pods/log",
            "pods/exec",
            "pods/attach",
            "pods/portforward",
            "pods/eviction",
            "services",
            "endpoints",
            "configmaps",
            "secrets",
            "serviceaccounts",
            "serviceaccounts/token",
            "events",
        ],
    ),
    (
        "apps",
        &[
            "deployments",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "daemonsets",
            "statefulsets",
            "statefulsets/scale",
        ],
    ),
    ("batch", &["jobs"]),
    ("coordination.k8s.io", &["leases"]),
    ("events.k8s.io", &["events"]),
    ("serverless.strata.dev", &["functions"]),
];

/// What a namespace holds that `admin`, `edit` and `view` may only read: slices are the
/// endpoints controller's to write (Kubernetes grants them through `aggregate-to-view`).
const READ_ONLY: &[(&str, &[&str])] = &[("discovery.k8s.io", &["endpointslices"])];

const READ: &[&str] = &["get", "list", "watch"];
/// Every verb of a resource.
const WRITE: &[&str] = &strata_api::resources::VERBS;

fn rules(verbs: &[&str], include: impl Fn(&str) -> bool) -> Vec<Value> {
    let writable = WORKLOADS.iter().map(|(group, resources)| {
        let resources: Vec<&str> = resources.iter().copied().filter(|r| include(r)).collect();
        json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
    });
    let readable = READ_ONLY.iter().map(
        |(group, resources)| json!({"apiGroups": [group], "resources": resources, "verbs": READ}),
    );
    writable.chain(readable).collect()
}

/// What `view` may not read: secrets, and what runs or reaches into containers.
fn viewable(resource: &str) -> bool {
    !matches!(
        resource,
        "secrets"
            | "pods/exec"
            | "pods/attach"
            | "pods/portforward"
            | "pods/eviction"
            | "serviceaccounts/token"
    )
}

fn cluster_roles() -> Vec<(&'static str, Vec<Value>)> {
    let namespaces = json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": READ});
    let mut edit = rules(WRITE, |_| true);
    edit.push(namespaces.clone());
    let mut admin = edit.clone();
    admin.push(json!({
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": WRITE,
    }));
    let mut view = rules(READ, viewable);
    view.push(namespaces);
    vec![
        (
            "cluster-admin",
            vec![
                json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        ("admin", admin),
        ("edit", edit),
        ("view", view),
        (
            "system:basic-user",
            vec![json!({
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                "verbs": ["create"],
            })],
        ),
        (
            "system:discovery",
            vec![json!({
                "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/openapi", "/openapi/*", "/version", "/version/"],
                "verbs": ["get"],
            })],
        ),
    ]
}

fn cluster_role_bindings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("cluster-admin", "system:masters"),
        ("system:basic-user", "system:authenticated"),
        ("system:discovery", "system:authenticated"),
    ]
}

/// Creates the default ClusterRoles and ClusterRoleBindings that are missing.
pub async fn bootstrap(store: &dyn Store) -> Result<(), ApiError> {
    let annotations = json!({ AUTOUPDATE: "true" });
    let labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    for (name, rules) in cluster_roles() {
        let object = json!({
            "apiVersion": API_VERSION, "kind": "ClusterRole",
            "metadata": {"name": name, "annotations": annotations, "labels": labels},
            "rules": rules,
        });
        create_or_reconcile(store, "ClusterRole", name, object).await?;
    }
    for (role, group) in cluster_role_bindings() {
        let object = json!({
            "apiVersion": API_VERSION, "kind": "ClusterRoleBinding",
            "metadata": {"name": role, "annotations": annotations, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        });
        create_or_reconcile(store, "ClusterRoleBinding", role, object).await?;
    }
    Ok(())
}

async fn create_or_reconcile(
    store: &dyn Store,
    kind: &str,
    name: &str,
    mut object: Value,
) -> Result<(), ApiError> {
    let resource = resources::by_kind(API_VERSION, kind)
        .ok_or_else(|| ApiError::Internal(format!("{kind} is not served")))?;
    let key = storage::key(resource, None, name);
    if let Some(existing) = store.get(&key).await? {
        let mut stored = storage::decode(&existing)?;
        let autoupdate = stored["metadata"]["annotations"][AUTOUPDATE] == "true";
        if kind != "ClusterRole" || !autoupdate || stored["rules"] == object["rules"] {
            return Ok(());
        }
        stored["rules"] = object["rules"].take();
        return match store
            .update(&key, storage::encode(&stored), Some(existing.mod_revision))
            .await
        {
            // Another server reconciled it first.
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        };
    }
    storage::create_built_in(store, resource, None, name, object).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_store::SqliteStore;

    async fn view_rules(store: &dyn Store) -> (Value, Value) {
        let resource = resources::by_kind(API_VERSION, "ClusterRole").unwrap();
        let kv = store
            .get(&storage::key(resource, None, "view"))
            .await
            .unwrap()
            .unwrap();
        let object = storage::decode(&kv).unwrap();
        (object["rules"].clone(), object)
    }

    async fn set_view(store: &dyn Store, object: &Value) {
        let resource = resources::by_kind(API_VERSION, "ClusterRole").unwrap();
        let key = storage::key(resource, None, "view");
        store
            .update(&key, storage::encode(object), None)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn defaults_are_created_and_kept_current_unless_opted_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("state.db")).unwrap();
        bootstrap(&store).await.unwrap();
        let (rules, mut view) = view_rules(&store).await;
        assert!(rules.as_array().is_some_and(|r| !r.is_empty()));

        // Edited while autoupdate is "true": the next start restores the rules.
        view["rules"] = json!([]);
        set_view(&store, &view).await;
        bootstrap(&store).await.unwrap();
        assert_eq!(view_rules(&store).await.0, rules);

        // Opted out: the administrator's rules stay.
        let (_, mut view) = view_rules(&store).await;
        view["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        view["rules"] = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
        set_view(&store, &view).await;
        bootstrap(&store).await.unwrap();
        assert_eq!(view_rules(&store).await.0, view["rules"]);
    }
}
