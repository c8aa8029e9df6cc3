//! The roles and bindings every cluster starts with (Kubernetes' bootstrap policy,
//! trimmed to what Strata serves): `cluster-admin` bound to `system:masters`; `admin`,
//! `edit` and `view` for binding in namespaces; `system:basic-user` (ask what you may
//! do) and `system:discovery` for every authenticated caller. Created when missing,
//! never overwritten, so that an administrator's changes stay.

use serde_json::{Value, json};
use strata_api::{FieldValidation, Operation, admit, resources};
use strata_store::{Store, StoreError};

use crate::status::ApiError;
use crate::storage;

const API_VERSION: &str = "rbac.authorization.k8s.io/v1";

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
];

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn rules(verbs: &[&str], include: impl Fn(&str) -> bool) -> Vec<Value> {
    WORKLOADS
        .iter()
        .map(|(group, resources)| {
            let resources: Vec<&str> = resources.iter().copied().filter(|r| include(r)).collect();
            json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
        })
        .collect()
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
                "resources": ["selfsubjectaccessreviews"],
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
    let annotations = json!({"rbac.authorization.kubernetes.io/autoupdate": "true"});
    let labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    for (name, rules) in cluster_roles() {
        let object = json!({
            "apiVersion": API_VERSION, "kind": "ClusterRole",
            "metadata": {"name": name, "annotations": annotations, "labels": labels},
            "rules": rules,
        });
        create_missing(store, "ClusterRole", name, object).await?;
    }
    for (role, group) in cluster_role_bindings() {
        let object = json!({
            "apiVersion": API_VERSION, "kind": "ClusterRoleBinding",
            "metadata": {"name": role, "annotations": annotations, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}],
        });
        create_missing(store, "ClusterRoleBinding", role, object).await?;
    }
    Ok(())
}

async fn create_missing(
    store: &dyn Store,
    kind: &str,
    name: &str,
    mut object: Value,
) -> Result<(), ApiError> {
    let resource = resources::by_kind(API_VERSION, kind)
        .ok_or_else(|| ApiError::Internal(format!("{kind} is not served")))?;
    let key = storage::key(resource, None, name);
    if store.get(&key).await?.is_some() {
        return Ok(());
    }
    object["metadata"]["uid"] = json!(crate::rest::new_uid());
    object["metadata"]["creationTimestamp"] =
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let admitted = admit(resource, object, Operation::Create, FieldValidation::Strict)
        .map_err(|e| ApiError::Internal(format!("default {kind} {name}: {e}")))?;
    match store.create(&key, storage::encode(&admitted.object)).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}
