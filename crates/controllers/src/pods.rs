//! What the controllers ask of pods and owner references: is a pod active, ready,
//! available, who controls an object, and the controller reference to write.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use strata_api::selector::Selector;

/// True unless the pod finished (`Succeeded`/`Failed`) or is being deleted: the pods a
/// replica set counts (Kubernetes' `FilterActivePods`).
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && !is_terminating(&pod.metadata)
}

/// True when the object has a `deletionTimestamp`.
pub fn is_terminating(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// When the pod's `Ready` condition last became `True`; `None` when it is not ready.
/// A ready pod without a transition time counts as ready since the epoch.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let condition = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (condition.status == "True").then(|| {
        condition
            .last_transition_time
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
    })
}

/// True when the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// True when the pod has been ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now,
    }
}

/// When the pod finished: the latest `finishedAt` of its terminated containers, else
/// the latest transition of its conditions, else its creation.
pub fn finished_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    let containers = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    let conditions = || {
        status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
            .max()
    };
    containers
        .or_else(conditions)
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The pod's phase (`Pending` when unset).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// How long until the first of `pods` that is ready but not yet available (ready for
/// less than `min_ready_seconds`) becomes available at `now`; `None` if none will.
pub fn becomes_available_in<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Option<std::time::Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    let window = SignedDuration::from_secs(i64::from(min_ready_seconds));
    pods.into_iter()
        .filter_map(ready_since)
        .map(|since| since + window)
        .filter(|at| *at > now)
        .min()
        .and_then(|at| std::time::Duration::try_from(at.duration_since(now)).ok())
}

/// The highest restart count of the pod's containers.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The controller reference an owner of `kind` writes on what it creates or adopts.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod from `template` for the owner `owner` (whose controller reference is
/// `reference`): in the owner's namespace, named `<owner>-<random>` by the API server,
/// with the template's labels, annotations and finalizers.
pub fn from_template(
    template: PodTemplateSpec,
    owner: &ObjectMeta,
    reference: OwnerReference,
) -> Pod {
    let meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", owner.name.as_deref().unwrap_or_default())),
            namespace: owner.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![reference]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// A parsed label selector. `None` for an empty selector or one with an unknown
/// operator: like Kubernetes, such an owner selects nothing rather than everything.
pub fn selector(selector: &LabelSelector) -> Option<Selector> {
    Selector::from_label_selector(selector).filter(|s| !s.is_empty())
}

/// The object's labels (empty when it has none).
pub fn labels(meta: &ObjectMeta) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// How an owner relates to one of its candidate children, as Kubernetes'
/// `ControllerRefManager` decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Controlled by the owner and selected: it is the owner's.
    Owned,
    /// Not controlled by anyone and selected: the owner takes it.
    Adopt,
    /// Controlled by the owner but no longer selected: the owner lets go.
    Release,
    /// Someone else's, or not selected: none of the owner's business.
    Ignore,
}

/// Decides whether `owner_uid` (whose selector is `selector`, being deleted when
/// `owner_deleting`) owns, adopts, releases or ignores the child `meta`.
pub fn claim(
    owner_uid: &str,
    selector: Option<&Selector>,
    owner_deleting: bool,
    meta: &ObjectMeta,
) -> Claim {
    let selected = selector.is_some_and(|s| s.matches(&labels(meta)));
    match controller_of(meta) {
        Some(r) if r.uid == owner_uid => {
            if selected || owner_deleting {
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if selected && !owner_deleting && !is_terminating(meta) => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// An owner's share of its namespace's pods, as [`claim`] decides it.
#[derive(Debug, Default, PartialEq)]
pub struct Claimed<'a> {
    /// The owner's pods, adopted ones included (also terminating and finished ones).
    pub owned: Vec<&'a Pod>,
    /// Orphans to adopt (also in `owned`).
    pub adopt: Vec<&'a Pod>,
    /// Owned pods the selector no longer selects, to release.
    pub release: Vec<&'a Pod>,
}

/// Claims `pods` for the owner `owner` whose parsed selector is `selector`.
pub fn claim_pods<'a>(
    owner: &ObjectMeta,
    selector: Option<&Selector>,
    pods: &[&'a Pod],
) -> Claimed<'a> {
    let uid = owner.uid.as_deref().unwrap_or_default();
    let deleting = is_terminating(owner);
    let mut claimed = Claimed::default();
    for &pod in pods {
        match claim(uid, selector, deleting, &pod.metadata) {
            Claim::Owned => claimed.owned.push(pod),
            Claim::Adopt => {
                claimed.adopt.push(pod);
                claimed.owned.push(pod);
            }
            Claim::Release => claimed.release.push(pod),
            Claim::Ignore => {}
        }
    }
    claimed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ready_pod(at: Timestamp) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(at)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let t0: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let pod = ready_pod(t0);
        assert!(is_available(&pod, 0, t0));
        assert!(!is_available(&pod, 10, t0 + SignedDuration::from_secs(9)));
        assert!(is_available(&pod, 10, t0 + SignedDuration::from_secs(10)));
        assert!(!is_available(&Pod::default(), 0, t0));
    }

    #[test]
    fn claims_follow_controller_ref_and_selector() {
        let sel = selector(&LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            ..Default::default()
        });
        let meta = |labels: &[(&str, &str)], owner: Option<&str>| ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        };
        let web = [("app", "web")];
        let db = [("app", "db")];
        assert_eq!(
            claim("u1", sel.as_ref(), false, &meta(&web, Some("u1"))),
            Claim::Owned
        );
        assert_eq!(
            claim("u1", sel.as_ref(), false, &meta(&web, None)),
            Claim::Adopt
        );
        assert_eq!(
            claim("u1", sel.as_ref(), true, &meta(&web, None)),
            Claim::Ignore
        );
        assert_eq!(
            claim("u1", sel.as_ref(), false, &meta(&db, Some("u1"))),
            Claim::Release
        );
        assert_eq!(
            claim("u1", sel.as_ref(), false, &meta(&web, Some("u2"))),
            Claim::Ignore
        );
        assert_eq!(claim("u1", None, false, &meta(&web, None)), Claim::Ignore);
    }
}
