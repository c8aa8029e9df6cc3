//! Unit tests of [`plan`](super::plan): one rollout step at a time, no cluster.
#![allow(clippy::unwrap_used)]

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

fn deployment(replicas: i32, image: &str, strategy: Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1,
                     "annotations": {"kubernetes.io/change-cause": "v2"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy,
            "revisionHistoryLimit": 1,
            "progressDeadlineSeconds": 600,
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": image}]}},
        },
    }))
    .unwrap()
}

/// The set `d` would create, at `revision`, with `replicas` all available.
fn set_for(d: &Deployment, revision: i64, replicas: i32, created: i64) -> ReplicaSet {
    let template = d.spec.as_ref().unwrap().template.clone();
    let hash = pod_template_hash(&template, None);
    let mut rs = new_set(d, &format!("web-{hash}"), &hash, revision);
    rs.metadata.uid = Some(format!("uid-{hash}"));
    rs.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
    rs.spec.as_mut().unwrap().replicas = Some(replicas);
    let annotations = rs.metadata.annotations.as_mut().unwrap();
    annotations.insert(view::DESIRED_REPLICAS.into(), replicas.to_string());
    rs.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
        replicas,
        available_replicas: Some(replicas),
        ready_replicas: Some(replicas),
        ..Default::default()
    });
    rs
}

fn step_names(plan: &Plan) -> Vec<(String, String, i32)> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Create(rs) => Some(("create", rs)),
            Step::Update(rs) => Some(("update", rs)),
            _ => None,
        })
        .map(|(kind, rs)| {
            let replicas = rs.spec.as_ref().unwrap().replicas.unwrap();
            (kind.to_string(), rs.name_any(), replicas)
        })
        .collect()
}

fn now() -> Timestamp {
    Timestamp::from_second(1000).unwrap()
}

#[test]
fn a_new_deployment_creates_its_first_set() {
    let d = deployment(3, "v1", json!({}));
    let plan = plan(&d, &[], &[], now()).unwrap();
    let Step::Create(rs) = &plan.steps[0] else {
        panic!("{:?}", plan.steps)
    };
    let hash = rs.labels()[POD_TEMPLATE_HASH].clone();
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    assert_eq!(
        rs.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()[POD_TEMPLATE_HASH],
        hash
    );
    assert_eq!(rs.spec.as_ref().unwrap().replicas, Some(3));
    let a = rs.annotations();
    assert_eq!(a[view::REVISION], "1");
    assert_eq!(a[view::CHANGE_CAUSE], "v2");
    assert_eq!(
        (
            a[view::DESIRED_REPLICAS].as_str(),
            a[view::MAX_REPLICAS].as_str()
        ),
        ("3", "4")
    );
    assert_eq!(
        plan.events[0].message,
        format!("Scaled up replica set web-{hash} from 0 to 3")
    );
    assert_eq!(plan.revision.as_deref(), Some("1"));
    let progressing = status::get(&plan.status, PROGRESSING).unwrap();
    assert_eq!(progressing.reason.as_deref(), Some(reason::NEW_RS_CREATED));
}

#[test]
fn a_template_change_surges_then_retires_old_pods() {
    let old_d = deployment(3, "v1", json!({}));
    let old = set_for(&old_d, 1, 3, 1);
    let d = deployment(
        3,
        "v2",
        json!({"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}),
    );
    let first = plan(&d, &[&old], &[], now()).unwrap();
    let steps = step_names(&first);
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!((steps[0].0.as_str(), steps[0].2), ("create", 1));
    let Step::Create(new) = &first.steps[0] else {
        panic!()
    };
    assert_eq!(new.annotations()[view::REVISION], "2");

    // The new pod is available. At the surge ceiling (4 pods) an old pod goes first;
    // the new set grows in the next step.
    let mut new = new.clone();
    new.metadata.uid = Some("new-uid".into());
    new.metadata.creation_timestamp = Some(Time(now()));
    new.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
        replicas: 1,
        available_replicas: Some(1),
        ..Default::default()
    });
    let second = plan(&d, &[&old, &new], &[], now()).unwrap();
    assert_eq!(
        step_names(&second),
        [("update".to_string(), old.name_any(), 2)]
    );
}

#[test]
fn rolling_back_reuses_the_old_set_with_a_new_revision() {
    let v1 = deployment(2, "v1", json!({}));
    let v2 = deployment(2, "v2", json!({}));
    let mut old = set_for(&v1, 1, 0, 1);
    old.status = Some(Default::default());
    let current = set_for(&v2, 2, 2, 2);
    let plan = plan(&v1, &[&old, &current], &[], now()).unwrap();
    let reused = plan
        .steps
        .iter()
        .find_map(|s| match s {
            Step::Update(rs) if rs.name_any() == old.name_any() => Some(rs),
            _ => None,
        })
        .unwrap();
    assert_eq!(reused.annotations()[view::REVISION], "3");
    assert_eq!(reused.annotations()[view::REVISION_HISTORY], "1");
    assert_eq!(plan.revision.as_deref(), Some("3"));
    assert!(!plan.steps.iter().any(|s| matches!(s, Step::Create(_))));
}

#[test]
fn recreate_waits_for_old_pods_before_creating() {
    let old = set_for(&deployment(2, "v1", json!({})), 1, 2, 1);
    let d = deployment(2, "v2", json!({"type": "Recreate"}));
    let down = plan(&d, &[&old], &[], now()).unwrap();
    assert_eq!(
        step_names(&down),
        [("update".to_string(), old.name_any(), 0)]
    );

    // Scaled to 0 but a pod is still running: wait.
    let mut drained = old.clone();
    drained.spec.as_mut().unwrap().replicas = Some(0);
    drained.status = Some(Default::default());
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": old.name_any(), "uid": old.uid().unwrap(), "controller": true}]},
        "status": {"phase": "Running"},
    }))
    .unwrap();
    let wait = plan(&d, &[&drained], &[&pod], now()).unwrap();
    assert!(step_names(&wait).is_empty());
    let go = plan(&d, &[&drained], &[], now()).unwrap();
    assert_eq!(step_names(&go)[0].0, "create");
    assert_eq!(step_names(&go)[0].2, 2);
}

#[test]
fn paused_deployments_scale_without_rolling_and_clean_up_history() {
    let v0 = deployment(2, "v0", json!({}));
    let mut ancient = set_for(&v0, 1, 0, 0);
    ancient.status = Some(Default::default());
    let v1 = deployment(2, "v1", json!({}));
    let mut older = set_for(&v1, 2, 0, 1);
    older.status = Some(Default::default());
    let current = set_for(&deployment(2, "v2", json!({})), 3, 2, 2);
    let mut d = deployment(5, "v3", json!({}));
    d.spec.as_mut().unwrap().paused = Some(true);
    let plan = plan(&d, &[&ancient, &older, &current], &[], now()).unwrap();
    assert_eq!(
        step_names(&plan),
        [("update".to_string(), current.name_any(), 5)]
    );
    // No set has the paused template, so all three are old; history limit 1 keeps
    // only the one with pods.
    assert!(plan.steps.contains(&Step::Delete(ancient.name_any())));
    assert!(plan.steps.contains(&Step::Delete(older.name_any())));
    assert!(!plan.steps.contains(&Step::Delete(current.name_any())));
    let progressing = status::get(&plan.status, PROGRESSING).unwrap();
    assert_eq!(progressing.reason.as_deref(), Some(reason::PAUSED));
}

#[test]
fn a_name_taken_by_another_template_raises_the_collision_count() {
    let d = deployment(1, "v1", json!({}));
    let mut squatter = set_for(&deployment(1, "other", json!({})), 1, 1, 1);
    squatter.metadata.name = Some(format!(
        "web-{}",
        pod_template_hash(&d.spec.as_ref().unwrap().template, None)
    ));
    squatter.metadata.owner_references = None;
    squatter.metadata.labels = Some([("app".to_string(), "other".to_string())].into());
    let plan = plan(&d, &[&squatter], &[], now()).unwrap();
    assert_eq!(plan.status.collision_count, Some(1));
    assert!(plan.steps.is_empty());
}

#[test]
fn an_orphan_set_is_adopted_and_both_zero_fenceposts_are_refused() {
    let d = deployment(1, "v1", json!({}));
    let mut orphan = set_for(&d, 1, 1, 1);
    orphan.metadata.owner_references = None;
    let plan = plan(&d, &[&orphan], &[], now()).unwrap();
    assert!(matches!(&plan.steps[0], Step::Adopt(rs) if rs.name_any() == orphan.name_any()));
    let bad = deployment(
        1,
        "v1",
        json!({"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
    );
    assert_eq!(
        super::plan(&bad, &[], &[], now()),
        Err(StrategyError::BothZero)
    );
}
