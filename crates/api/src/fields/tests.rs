//! The examples of Kubernetes' server-side apply documentation, and the
//! structured-merge-diff behaviours they rely on.

use serde_json::{Value, json};

use super::*;
use crate::patch::schema_for;

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-01T00:01:00Z";

fn deployments() -> Shape {
    Shape {
        schema: schema_for("apps", "Deployment"),
        scope: Scope::Main,
    }
}

fn writer<'a>(manager: &'a str, time: &'a str) -> Writer<'a> {
    Writer {
        manager,
        api_version: "apps/v1",
        subresource: None,
        time,
    }
}

fn deployment(replicas: i64, image: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}
            }
        }
    })
}

fn entry<'a>(managed: &'a ManagedFields, manager: &str) -> &'a Entry {
    managed
        .entries
        .iter()
        .find(|e| e.manager == manager)
        .unwrap_or_else(|| panic!("no entry for {manager}: {managed:?}"))
}

#[test]
fn the_fields_of_a_deployment_in_fields_v1() {
    let set = fields_of(
        &deployment(2, "nginx", json!({"app": "web"})),
        &deployments(),
    );
    assert_eq!(
        set.to_fields_v1(),
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {
                    "f:metadata": {"f:labels": {"f:app": {}}},
                    "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:containerPort": {}
                        }}
                    }}}
                }
            }
        })
    );
}

#[test]
fn the_documented_config_map_example() {
    // kubernetes.io/docs/reference/using-api/server-side-apply/#managed-fields
    let shape = Shape {
        schema: schema_for("", "ConfigMap"),
        scope: Scope::Object,
    };
    let config = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
        "data": {"key": "some value"}
    });
    let w = Writer {
        manager: "kubectl",
        api_version: "v1",
        subresource: None,
        time: T0,
    };
    let applied = apply(None, &config, ManagedFields::default(), &w, false, &shape).unwrap();
    assert_eq!(applied.object, config);
    assert_eq!(
        applied.managed.to_value(),
        json!([{
            "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {"f:test-label": {}}}, "f:data": {"f:key": {}}}
        }])
    );
    let decoded = {
        let mut object = applied.object.clone();
        applied.managed.store_in(&mut object);
        ManagedFields::of(&object).unwrap()
    };
    assert_eq!(decoded, applied.managed);
}

#[test]
fn updates_take_the_fields_they_change() {
    let shape = deployments();
    let created = deployment(2, "nginx:1.24", json!({"app": "web"}));
    let csa = writer("kubectl-client-side-apply", T0);
    let managed = record_update(&json!({}), &created, ManagedFields::default(), &csa, &shape);
    assert_eq!(managed.entries.len(), 1);
    assert_eq!(
        entry(&managed, "kubectl-client-side-apply").fields,
        fields_of(&created, &shape)
    );
    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    let scale = Writer {
        subresource: Some("scale"),
        ..writer("kubectl", T1)
    };
    let managed = record_update(&created, &scaled, managed, &scale, &shape);
    let replicas = [
        PathElement::Field("spec".into()),
        PathElement::Field("replicas".into()),
    ];
    assert!(entry(&managed, "kubectl").fields.contains(&replicas));
    assert_eq!(entry(&managed, "kubectl").fields.paths().len(), 1);
    assert!(
        !entry(&managed, "kubectl-client-side-apply")
            .fields
            .contains(&replicas)
    );
    // Status is the status subresource's: a main-resource write owns none of it.
    let mut with_status = scaled.clone();
    with_status["status"] = json!({"replicas": 5});
    let same = record_update(&scaled, &with_status, managed.clone(), &csa, &shape);
    assert_eq!(same, managed);
}

#[test]
fn apply_creates_updates_and_prunes() {
    let shape = deployments();
    let w = writer("kubectl", T0);
    let config = deployment(2, "nginx:1.24", json!({"app": "web", "tier": "front"}));
    let created = apply(None, &config, ManagedFields::default(), &w, false, &shape).unwrap();
    assert_eq!(created.object, config);
    assert_eq!(created.managed.entries.len(), 1);

    // A changed image and a label no longer in the file.
    let config = deployment(2, "nginx:1.25", json!({"app": "web"}));
    let w1 = writer("kubectl", T1);
    let updated = apply(
        Some(&created.object),
        &config,
        created.managed,
        &w1,
        false,
        &shape,
    )
    .unwrap();
    assert_eq!(
        updated.object["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    assert_eq!(updated.object["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(entry(&updated.managed, "kubectl").time.as_deref(), Some(T1));

    // The same apply again changes nothing, not even the entry's time.
    let again = apply(
        Some(&updated.object),
        &config,
        updated.managed.clone(),
        &writer("kubectl", "2027-01-01T00:00:00Z"),
        false,
        &shape,
    )
    .unwrap();
    assert_eq!(again, updated);
}

#[test]
fn a_field_another_manager_changed_conflicts_unless_forced() {
    let shape = deployments();
    let config = deployment(2, "nginx", json!({"app": "web"}));
    let applied = apply(
        None,
        &config,
        ManagedFields::default(),
        &writer("kubectl", T0),
        false,
        &shape,
    )
    .unwrap();
    let mut scaled = applied.object.clone();
    scaled["spec"]["replicas"] = json!(5);
    let managed = record_update(
        &applied.object,
        &scaled,
        applied.managed,
        &writer("kubectl-client-side-apply", T1),
        &shape,
    );
    let err = apply(
        Some(&scaled),
        &config,
        managed.clone(),
        &writer("kubectl", T1),
        false,
        &shape,
    )
    .unwrap_err();
    assert_eq!(
        err,
        ApplyError::Conflicts(vec![Conflict {
            manager: "\"kubectl-client-side-apply\" using apps/v1".into(),
            field: ".spec.replicas".into(),
        }])
    );
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
    // Applying the value the other manager set is no conflict: both own it.
    let mut five = config.clone();
    five["spec"]["replicas"] = json!(5);
    let shared = apply(
        Some(&scaled),
        &five,
        managed.clone(),
        &writer("kubectl", T1),
        false,
        &shape,
    )
    .unwrap();
    let replicas = [
        PathElement::Field("spec".into()),
        PathElement::Field("replicas".into()),
    ];
    assert!(entry(&shared.managed, "kubectl").fields.contains(&replicas));
    assert!(
        entry(&shared.managed, "kubectl-client-side-apply")
            .fields
            .contains(&replicas)
    );
    // Forced, the applier takes the field and the other manager, owning nothing
    // more, disappears.
    let forced = apply(
        Some(&scaled),
        &config,
        managed,
        &writer("kubectl", T1),
        true,
        &shape,
    )
    .unwrap();
    assert_eq!(forced.object["spec"]["replicas"], 2);
    assert_eq!(forced.managed.entries.len(), 1);
}

#[test]
fn associative_lists_merge_by_key_and_other_lists_are_replaced() {
    let shape = Shape {
        schema: schema_for("", "Pod"),
        scope: Scope::Main,
    };
    let live = json!({"metadata": {"name": "p", "finalizers": ["a"]}, "spec": {"containers": [
        {"name": "web", "image": "nginx", "args": ["-a", "-b"]},
        {"name": "log", "image": "busybox"},
    ]}});
    let managed = record_update(
        &json!({}),
        &live,
        ManagedFields::default(),
        &writer("creator", T0),
        &shape,
    );
    let config = json!({"metadata": {"name": "p", "finalizers": ["b"]}, "spec": {"containers": [
        {"name": "web", "args": ["-c"]},
    ]}});
    let err = apply(
        Some(&live),
        &config,
        managed.clone(),
        &writer("ssa", T1),
        false,
        &shape,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"creator\" using apps/v1: .spec.containers[name=\"web\"].args"
    );
    let merged = apply(
        Some(&live),
        &config,
        managed,
        &writer("ssa", T1),
        true,
        &shape,
    )
    .unwrap();
    assert_eq!(
        merged.object["spec"]["containers"],
        json!([
            {"name": "web", "image": "nginx", "args": ["-c"]},
            {"name": "log", "image": "busybox"},
        ])
    );
    assert_eq!(merged.object["metadata"]["finalizers"], json!(["a", "b"]));
    assert_eq!(
        entry(&merged.managed, "ssa").fields.to_fields_v1(),
        json!({
            "f:metadata": {"f:finalizers": {"v:\"b\"": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:args": {}, "f:name": {}}}}
        })
    );
}

#[test]
fn dropping_a_list_item_removes_it_unless_another_manager_owns_it() {
    let shape = Shape {
        schema: schema_for("", "Pod"),
        scope: Scope::Main,
    };
    let two =
        json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
    let one = json!({"spec": {"containers": [{"name": "a", "image": "x"}]}});
    let first = apply(
        None,
        &two,
        ManagedFields::default(),
        &writer("m", T0),
        false,
        &shape,
    )
    .unwrap();
    let second = apply(
        Some(&first.object),
        &one,
        first.managed.clone(),
        &writer("m", T1),
        false,
        &shape,
    )
    .unwrap();
    assert_eq!(second.object, one);
    // Another applier of `b` keeps it.
    let other = apply(
        Some(&first.object),
        &two,
        first.managed,
        &writer("n", T0),
        false,
        &shape,
    )
    .unwrap();
    let kept = apply(
        Some(&other.object),
        &one,
        other.managed,
        &writer("m", T1),
        false,
        &shape,
    )
    .unwrap();
    assert_eq!(kept.object, two);
}

#[test]
fn fields_of_an_object_without_managed_fields_go_to_before_first_apply() {
    let shape = deployments();
    let live = deployment(3, "nginx", json!({"app": "web"}));
    let config = deployment(2, "nginx", json!({"app": "web"}));
    let err = apply(
        Some(&live),
        &config,
        ManagedFields::default(),
        &writer("kubectl", T0),
        false,
        &shape,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("\"before-first-apply\" using apps/v1: .spec.replicas"),
        "{err}"
    );
}

#[test]
fn malformed_configurations_are_refused() {
    let shape = Shape {
        schema: schema_for("", "Pod"),
        scope: Scope::Main,
    };
    for (config, message) in [
        (
            json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}),
            ".spec.containers: duplicate entries for key [name=\"a\"]",
        ),
        (
            json!({"spec": {"containers": [{"image": "a"}]}}),
            ".spec.containers: element 0 is missing key field(s) name",
        ),
    ] {
        let err = apply(
            None,
            &config,
            ManagedFields::default(),
            &writer("m", T0),
            false,
            &shape,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn managed_fields_that_do_not_decode_are_errors() {
    for bad in [
        json!({"metadata": {"managedFields": {}}}),
        json!({"metadata": {"managedFields": [1]}}),
        json!({"metadata": {"managedFields": [{"operation": "Delete"}]}}),
        json!({"metadata": {"managedFields": [{"operation": "Apply", "fieldsType": "FieldsV2"}]}}),
        json!({"metadata": {"managedFields": [{"operation": "Apply", "fieldsV1": {"q": {}}}]}}),
    ] {
        assert!(ManagedFields::of(&bad).is_err(), "{bad}");
    }
}

#[test]
fn appliers_forget_fields_admission_dropped() {
    let shape = deployments();
    let mut config = deployment(1, "nginx", json!({"app": "web"}));
    config["spec"]["replicaz"] = json!(3);
    let applied = apply(
        None,
        &config,
        ManagedFields::default(),
        &writer("m", T0),
        false,
        &shape,
    )
    .unwrap();
    let mut managed = applied.managed;
    let admitted = deployment(1, "nginx", json!({"app": "web"}));
    managed.forget_absent(&admitted, &shape);
    assert_eq!(entry(&managed, "m").fields, fields_of(&admitted, &shape));
}

#[test]
fn set_items_and_atomic_lists_an_applier_drops_are_removed() {
    let shape = Shape {
        schema: schema_for("", "Pod"),
        scope: Scope::Main,
    };
    let first = json!({"metadata": {"finalizers": ["a", "b"]}, "spec": {"containers": [
        {"name": "c", "image": "x", "args": ["-v"]}
    ]}});
    let second = json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [
        {"name": "c", "image": "x"}
    ]}});
    let applied = apply(
        None,
        &first,
        ManagedFields::default(),
        &writer("m", T0),
        false,
        &shape,
    )
    .unwrap();
    // Another manager added a finalizer of its own: it stays.
    let mut live = applied.object.clone();
    live["metadata"]["finalizers"] = json!(["a", "b", "theirs"]);
    let managed = record_update(
        &applied.object,
        &live,
        applied.managed,
        &writer("gc", T0),
        &shape,
    );
    let again = apply(
        Some(&live),
        &second,
        managed,
        &writer("m", T1),
        false,
        &shape,
    )
    .unwrap();
    assert_eq!(
        again.object["metadata"]["finalizers"],
        json!(["a", "theirs"])
    );
    assert_eq!(
        again.object["spec"]["containers"],
        json!([{"name": "c", "image": "x"}])
    );
}

#[test]
fn the_oldest_of_more_than_ten_updaters_are_folded_into_ancient_changes() {
    let shape = Shape {
        schema: schema_for("", "ConfigMap"),
        scope: Scope::Object,
    };
    let mut object = json!({"data": {}});
    let mut managed = ManagedFields::default();
    let names: Vec<String> = (0..12).map(|i| format!("m{i:02}")).collect();
    let times: Vec<String> = (0..12)
        .map(|i| format!("2026-01-01T00:00:{i:02}Z"))
        .collect();
    for (name, time) in names.iter().zip(&times) {
        let mut next = object.clone();
        next["data"][name] = json!("v");
        managed = record_update(&object, &next, managed, &writer(name, time), &shape);
        object = next;
    }
    assert_eq!(managed.entries.len(), MAX_UPDATERS);
    let ancient = entry(&managed, ANCIENT_CHANGES);
    assert_eq!(ancient.fields.paths().len(), 3, "{ancient:?}");
    assert_eq!(ancient.time.as_deref(), Some("2026-01-01T00:00:02Z"));
    assert!(managed.entries.iter().any(|e| e.manager == "m03"));
    assert!(!managed.entries.iter().any(|e| e.manager == "m01"));
}
