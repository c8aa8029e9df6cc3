//! The roles and bindings every cluster starts with (Kubernetes' bootstrap policy,
//! trimmed to what Strata serves): `cluster-admin` bound to `system:masters`; `admin`,
//! `edit` and `view` for binding in namespaces; `system:basic-user` (ask what you may
//! do) and `system:discovery` for every authenticated caller.
//!
//! `admin`, `edit` and `view` are aggregated, as in Kubernetes: each gathers the rules of
//! the ClusterRoles labelled `rbac.authorization.k8s.io/aggregate-to-<name>: "true"`.
//! Their own rules live in `system:aggregate-to-admin`, `-edit` and `-view`, and `view`
//! is labelled to `edit` and `edit` to `admin`, so a role labelled to `view` extends all
//! three. The ClusterRole aggregation controller keeps their rules; they are created
//! already holding what it would gather, so a server without it grants the same.
//!
//! Created when missing. An existing default ClusterRole is reconciled only while it
//! keeps the annotation `rbac.authorization.kubernetes.io/autoupdate: "true"` (as
//! kube-apiserver does), so that an administrator can opt out: it gets the default labels
//! it lacks and the default rules, except that an aggregated role gets the selectors it
//! lacks and keeps its rules (the controller's, holding what other roles added).

use serde_json::{Map, Value, json};
use strata_api::resources;
use strata_store::{Store, StoreError};

use crate::status::ApiError;
use crate::storage;

const API_VERSION: &str = "rbac.authorization.k8s.io/v1";

/// Defaults carrying this annotation with value `"true"` are kept current.
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

/// A role labelled so (`"true"`) extends `admin`.
const TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
/// A role labelled so (`"true"`) extends `edit`, and through it `admin`.
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
/// A role labelled so (`"true"`) extends `view`, and through it `edit` and `admin`.
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

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
/// The verbs that change something: with [`READ`], every verb of a resource.
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
/// Every verb of a resource.
const ALL: &[&str] = &resources::VERBS;

/// One rule per group of `of` granting `verbs` on the resources `include` keeps (a group
/// left with none gets no rule).
fn grant(of: &[(&str, &[&str])], verbs: &[&str], include: impl Fn(&str) -> bool) -> Vec<Value> {
    of.iter()
        .filter_map(|(group, resources)| {
            let resources: Vec<&str> = resources.iter().copied().filter(|r| include(r)).collect();
            (!resources.is_empty())
                .then(|| json!({"apiGroups": [group], "resources": resources, "verbs": verbs}))
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

/// A default ClusterRole.
struct DefaultRole {
    name: &'static str,
    /// The aggregation labels it carries (`"true"`): the aggregated roles it extends.
    extends: &'static [&'static str],
    /// For an aggregated role, the label of the roles whose rules it gathers.
    gathers: Option<&'static str>,
    /// Its rules; for an aggregated role, those it gathers (see [`aggregate`]).
    rules: Vec<Value>,
}

impl DefaultRole {
    fn new(name: &'static str, rules: Vec<Value>) -> Self {
        DefaultRole {
            name,
            extends: &[],
            gathers: None,
            rules,
        }
    }

    fn aggregated(name: &'static str, gathers: &'static str) -> Self {
        DefaultRole {
            gathers: Some(gathers),
            ..DefaultRole::new(name, Vec::new())
        }
    }

    fn extending(self, extends: &'static [&'static str]) -> Self {
        DefaultRole { extends, ..self }
    }

    fn object(&self) -> Value {
        let mut labels = Map::new();
        labels.insert("kubernetes.io/bootstrapping".into(), json!("rbac-defaults"));
        for label in self.extends {
            labels.insert((*label).into(), json!("true"));
        }
        let mut object = json!({
            "apiVersion": API_VERSION, "kind": "ClusterRole",
            "metadata": {"name": self.name, "annotations": {AUTOUPDATE: "true"}, "labels": labels},
            "rules": self.rules,
        });
        if let Some(label) = self.gathers {
            object["aggregationRule"] =
                json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
        }
        object
    }
}

fn cluster_roles() -> Vec<DefaultRole> {
    let namespaces = json!({"apiGroups": [""], "resources": ["namespaces"], "verbs": READ});
    let mut view = grant(WORKLOADS, READ, viewable);
    view.extend(grant(READ_ONLY, READ, |_| true));
    view.push(namespaces);
    // What edit adds to view: reading what view may not, and every write.
    let mut edit = grant(WORKLOADS, READ, |r| !viewable(r));
    edit.extend(grant(WORKLOADS, WRITE, |_| true));
    // What admin adds to edit: granting access within the namespace.
    let admin = vec![json!({
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": ALL,
    })];
    let mut roles = vec![
        DefaultRole::new(
            "cluster-admin",
            vec![
                json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}),
                json!({"nonResourceURLs": ["*"], "verbs": ["*"]}),
            ],
        ),
        DefaultRole::aggregated("admin", TO_ADMIN),
        DefaultRole::aggregated("edit", TO_EDIT).extending(&[TO_ADMIN]),
        DefaultRole::aggregated("view", TO_VIEW).extending(&[TO_EDIT]),
        DefaultRole::new("system:aggregate-to-admin", admin).extending(&[TO_ADMIN]),
        DefaultRole::new("system:aggregate-to-edit", edit).extending(&[TO_EDIT]),
        DefaultRole::new("system:aggregate-to-view", view).extending(&[TO_VIEW]),
        DefaultRole::new(
            "system:basic-user",
            vec![json!({
                "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                "verbs": ["create"],
            })],
        ),
        DefaultRole::new(
            "system:discovery",
            vec![json!({
                "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz", "/openapi", "/openapi/*", "/version", "/version/"],
                "verbs": ["get"],
            })],
        ),
    ];
    aggregate(&mut roles);
    roles
}

/// Fills in the rules of the aggregated roles as the ClusterRole aggregation controller
/// (`strata_controllers::clusterrole_aggregation::aggregate`) would, so that it finds
/// nothing to change: the rules of the roles carrying the label, roles in name order,
/// each rule once where first seen. Repeated until nothing changes, since one aggregated
/// role gathers another (`view` into `edit` into `admin`).
fn aggregate(roles: &mut [DefaultRole]) {
    for _ in 0..=roles.len() {
        let mut changed = false;
        for i in 0..roles.len() {
            let Some(label) = roles[i].gathers else {
                continue;
            };
            let rules = gathered(roles, roles[i].name, label);
            if rules != roles[i].rules {
                roles[i].rules = rules;
                changed = true;
            }
        }
        if !changed {
            return;
        }
    }
}

fn gathered(roles: &[DefaultRole], aggregator: &str, label: &str) -> Vec<Value> {
    let mut sources: Vec<&DefaultRole> = roles
        .iter()
        .filter(|r| r.name != aggregator && r.extends.contains(&label))
        .collect();
    sources.sort_by_key(|r| r.name);
    let mut rules: Vec<Value> = Vec::new();
    for rule in sources.iter().flat_map(|r| &r.rules) {
        if !rules.contains(rule) {
            rules.push(rule.clone());
        }
    }
    rules
}

fn cluster_role_bindings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("cluster-admin", "system:masters"),
        ("system:basic-user", "system:authenticated"),
        ("system:discovery", "system:authenticated"),
    ]
}

/// Creates the default ClusterRoles and ClusterRoleBindings that are missing, and
/// reconciles the existing default ClusterRoles that keep autoupdate.
pub async fn bootstrap(store: &dyn Store) -> Result<(), ApiError> {
    for role in cluster_roles() {
        create_or_reconcile(store, "ClusterRole", role.name, role.object()).await?;
    }
    let annotations = json!({ AUTOUPDATE: "true" });
    let labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
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
    object: Value,
) -> Result<(), ApiError> {
    let resource = resources::by_kind(API_VERSION, kind)
        .ok_or_else(|| ApiError::Internal(format!("{kind} is not served")))?;
    let key = storage::key(resource, None, name);
    if let Some(existing) = store.get(&key).await? {
        let stored = storage::decode(&existing)?;
        let autoupdate = stored["metadata"]["annotations"][AUTOUPDATE] == "true";
        if kind != "ClusterRole" || !autoupdate {
            return Ok(());
        }
        let mut reconciled = stored.clone();
        reconcile(&mut reconciled, &object);
        if reconciled == stored {
            return Ok(());
        }
        return match store
            .update(
                &key,
                storage::encode(&reconciled),
                Some(existing.mod_revision),
            )
            .await
        {
            // Another server reconciled it first.
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(err) => Err(err.into()),
        };
    }
    storage::create_built_in(store, resource, None, name, object).await
}

/// Brings a stored default ClusterRole up to date with `wanted`, as kube-apiserver's
/// bootstrap reconciliation does: labels it lacks are added (an administrator's values
/// stay); an aggregated role gets the selectors it lacks and keeps its rules, which
/// the aggregation controller owns; any other role gets `wanted`'s rules.
fn reconcile(stored: &mut Value, wanted: &Value) {
    let Some(stored) = stored.as_object_mut() else {
        return;
    };
    let metadata = stored.entry("metadata").or_insert_with(|| json!({}));
    if let (Some(metadata), Some(wanted_labels)) = (
        metadata.as_object_mut(),
        wanted["metadata"]["labels"].as_object(),
    ) {
        let labels = metadata.entry("labels").or_insert(Value::Null);
        if !labels.is_object() {
            *labels = json!({});
        }
        if let Some(labels) = labels.as_object_mut() {
            for (key, value) in wanted_labels {
                labels.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }
    match wanted.get("aggregationRule") {
        Some(wanted_rule) => {
            let rule = stored.entry("aggregationRule").or_insert(Value::Null);
            if !rule.is_object() {
                *rule = json!({});
            }
            let selectors = &mut rule["clusterRoleSelectors"];
            if !selectors.is_array() {
                *selectors = json!([]);
            }
            if let (Some(selectors), Some(wanted)) = (
                selectors.as_array_mut(),
                wanted_rule["clusterRoleSelectors"].as_array(),
            ) {
                for selector in wanted {
                    if !selectors.contains(selector) {
                        selectors.push(selector.clone());
                    }
                }
            }
        }
        None => {
            stored.insert("rules".into(), wanted["rules"].clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use strata_store::SqliteStore;

    fn key(name: &str) -> String {
        let resource = resources::by_kind(API_VERSION, "ClusterRole").unwrap();
        storage::key(resource, None, name)
    }

    async fn bootstrapped() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("state.db")).unwrap();
        bootstrap(&store).await.unwrap();
        (dir, store)
    }

    async fn get(store: &dyn Store, name: &str) -> Value {
        let kv = store.get(&key(name)).await.unwrap().unwrap();
        storage::decode(&kv).unwrap()
    }

    async fn put(store: &dyn Store, object: &Value) {
        let name = object["metadata"]["name"].as_str().unwrap();
        store
            .update(&key(name), storage::encode(object), None)
            .await
            .unwrap();
    }

    type Triple = (String, String, String);

    fn triple(group: &str, resource: &str, verb: &str) -> Triple {
        (group.into(), resource.into(), verb.into())
    }

    /// The (group, resource, verb) triples `rules` grant.
    fn triples(rules: &Value) -> BTreeSet<Triple> {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        let mut set = BTreeSet::new();
        for rule in rules.as_array().unwrap() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        set.insert(triple(&group, &resource, &verb));
                    }
                }
            }
        }
        set
    }

    /// What `role` granted before it was aggregated: `view` read the viewable
    /// workloads, `edit` could do anything to all of them, both read the read-only
    /// resources and namespaces; `admin` was `edit` plus roles and rolebindings.
    fn before_aggregation(role: &str) -> BTreeSet<Triple> {
        let mut set = BTreeSet::new();
        for (group, resources) in WORKLOADS {
            for resource in *resources {
                let verbs = match role {
                    "view" if viewable(resource) => READ,
                    "view" => &[],
                    _ => ALL,
                };
                set.extend(verbs.iter().map(|v| triple(group, resource, v)));
            }
        }
        for (group, resources) in READ_ONLY {
            for resource in *resources {
                set.extend(READ.iter().map(|v| triple(group, resource, v)));
            }
        }
        set.extend(READ.iter().map(|v| triple("", "namespaces", v)));
        if role == "admin" {
            for resource in ["roles", "rolebindings"] {
                set.extend(
                    ALL.iter()
                        .map(|v| triple("rbac.authorization.k8s.io", resource, v)),
                );
            }
        }
        set
    }

    fn selector(label: &str) -> Value {
        json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]})
    }

    #[tokio::test]
    async fn defaults_are_created_and_kept_current_unless_opted_out() {
        let (_dir, store) = bootstrapped().await;
        let name = "system:aggregate-to-view";
        let mut role = get(&store, name).await;
        let rules = role["rules"].clone();
        assert!(rules.as_array().is_some_and(|r| !r.is_empty()));

        // Edited while autoupdate is "true": the next start restores the rules.
        role["rules"] = json!([]);
        put(&store, &role).await;
        bootstrap(&store).await.unwrap();
        assert_eq!(get(&store, name).await["rules"], rules);

        // Opted out: the administrator's rules stay.
        let mut role = get(&store, name).await;
        role["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        role["rules"] = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
        put(&store, &role).await;
        bootstrap(&store).await.unwrap();
        assert_eq!(get(&store, name).await["rules"], role["rules"]);
    }

    #[tokio::test]
    async fn admin_edit_and_view_aggregate_in_a_chain() {
        let (_dir, store) = bootstrapped().await;
        // (role, the label it gathers, the label it carries)
        for (name, gathers, carries) in [
            ("admin", TO_ADMIN, None),
            ("edit", TO_EDIT, Some(TO_ADMIN)),
            ("view", TO_VIEW, Some(TO_EDIT)),
        ] {
            let role = get(&store, name).await;
            assert_eq!(role["aggregationRule"], selector(gathers), "{name}");
            let labels = role["metadata"]["labels"].as_object().unwrap();
            let aggregation: Vec<&String> = labels
                .keys()
                .filter(|k| k.contains("/aggregate-to-"))
                .collect();
            assert_eq!(aggregation, Vec::from_iter(carries), "{name}");
            if let Some(label) = carries {
                assert_eq!(labels[label], "true", "{name}");
            }

            let own = get(&store, &format!("system:aggregate-to-{name}")).await;
            assert_eq!(own["metadata"]["labels"][gathers], "true", "{name}");
            assert!(own.get("aggregationRule").is_none(), "{name}");
            assert_eq!(own["metadata"]["annotations"][AUTOUPDATE], "true");
        }
    }

    #[tokio::test]
    async fn aggregated_roles_start_with_the_rules_they_had() {
        let (_dir, store) = bootstrapped().await;
        for name in ["admin", "edit", "view"] {
            let rules = get(&store, name).await["rules"].clone();
            assert_eq!(triples(&rules), before_aggregation(name), "{name}");
            let list = rules.as_array().unwrap();
            for (i, rule) in list.iter().enumerate() {
                assert!(!list[..i].contains(rule), "{name} repeats {rule}");
            }
        }
        let granted = |rules: &Value, group, resource, verb| {
            triples(rules).contains(&triple(group, resource, verb))
        };
        let view = get(&store, "view").await["rules"].clone();
        let edit = get(&store, "edit").await["rules"].clone();
        let admin = get(&store, "admin").await["rules"].clone();
        assert!(granted(&view, "apps", "deployments", "list"));
        assert!(!granted(&view, "", "secrets", "get"));
        assert!(!granted(&view, "apps", "deployments", "create"));
        assert!(granted(&edit, "", "secrets", "get"));
        assert!(granted(&edit, "", "pods/exec", "create"));
        assert!(!granted(
            &edit,
            "rbac.authorization.k8s.io",
            "roles",
            "create"
        ));
        assert!(granted(
            &admin,
            "rbac.authorization.k8s.io",
            "rolebindings",
            "create"
        ));
        assert!(!granted(
            &admin,
            "discovery.k8s.io",
            "endpointslices",
            "create"
        ));
    }

    #[tokio::test]
    async fn a_restart_keeps_aggregated_rules_and_restores_selectors_and_labels() {
        let (_dir, store) = bootstrapped().await;
        // As the controller leaves `view` once a role labelled to view exists; then an
        // administrator adds a selector and drops the label.
        let mut view = get(&store, "view").await;
        let crontabs = json!({"apiGroups": ["stable.example.com"], "resources": ["crontabs"],
            "verbs": ["get", "list", "watch"]});
        view["rules"].as_array_mut().unwrap().insert(0, crontabs);
        let extra = json!({"matchLabels": {"example.com/aggregate-to-view": "true"}});
        view["aggregationRule"] = json!({"clusterRoleSelectors": [extra]});
        view["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove(TO_EDIT);
        put(&store, &view).await;

        bootstrap(&store).await.unwrap();
        let restarted = get(&store, "view").await;
        assert_eq!(restarted["rules"], view["rules"]);
        assert_eq!(
            restarted["aggregationRule"]["clusterRoleSelectors"],
            json!([extra, selector(TO_VIEW)["clusterRoleSelectors"][0]])
        );
        assert_eq!(restarted["metadata"]["labels"][TO_EDIT], "true");

        // Nothing left to reconcile: the next start writes nothing.
        let revision = store.get(&key("view")).await.unwrap().unwrap().mod_revision;
        bootstrap(&store).await.unwrap();
        let again = store.get(&key("view")).await.unwrap().unwrap().mod_revision;
        assert_eq!(again, revision);
    }

    #[tokio::test]
    async fn a_plain_view_from_before_becomes_aggregated() {
        let (_dir, store) = bootstrapped().await;
        let mut view = get(&store, "view").await;
        view.as_object_mut().unwrap().remove("aggregationRule");
        view["metadata"]["labels"] = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
        view["rules"] = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
        put(&store, &view).await;

        bootstrap(&store).await.unwrap();
        let upgraded = get(&store, "view").await;
        assert_eq!(upgraded["aggregationRule"], selector(TO_VIEW));
        assert_eq!(upgraded["metadata"]["labels"][TO_EDIT], "true");
        // The rules wait for the controller.
        assert_eq!(upgraded["rules"], view["rules"]);
    }
}
