//! One step of a deployment's rollout as a pure function ([`plan`]) of the deployment,
//! the replica sets and pods of its namespace: which sets to adopt, create, scale,
//! annotate or delete, the events to report and the status to write. Like Kubernetes,
//! each call moves the rollout one step; the watch events the step causes trigger the
//! next one.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::hash::{POD_TEMPLATE_HASH, equal_ignoring_hash, pod_template_hash};
use super::rolling::{StrategyError, fenceposts, new_set_replicas, scale_down_old};
use super::status::{self, PROGRESSING, reason};
use super::view::{self, Set};
use crate::pods::{self, Claim};

/// A write to a replica set.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Set the deployment as controller of this orphan.
    Adopt(ReplicaSet),
    /// Remove the deployment's controller reference.
    Release(ReplicaSet),
    /// Create the new replica set.
    Create(ReplicaSet),
    /// Replace the set (new replicas and/or annotations).
    Update(ReplicaSet),
    /// Delete an old set beyond `revisionHistoryLimit`.
    Delete(String),
}

/// A `ScalingReplicaSet` event to report on the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaled {
    /// The message, worded like Kubernetes'.
    pub message: String,
}

/// What the deployment does now.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Replica set writes, in order.
    pub steps: Vec<Step>,
    /// Events to report.
    pub events: Vec<Scaled>,
    /// The status to write.
    pub status: DeploymentStatus,
    /// The deployment's new `deployment.kubernetes.io/revision`, when it changes.
    pub revision: Option<String>,
    /// Check again after this long even without events (progress deadline, collisions).
    pub requeue_after: Option<Duration>,
}

struct Planner<'a> {
    d: &'a Deployment,
    desired: i32,
    surge: i32,
    max_unavailable: i32,
    /// Owned sets: objects, their views, and the replicas they had.
    objects: Vec<ReplicaSet>,
    views: Vec<Set>,
    original: Vec<i32>,
    annotated: Vec<bool>,
    new: Option<usize>,
    created: Option<usize>,
    all_sets: &'a [&'a ReplicaSet],
    now: Timestamp,
    plan: Plan,
}

/// Decides the next step of deployment `d` given the replica sets and pods of its
/// namespace at `now`. An unusable rolling update strategy is an error.
pub fn plan(
    d: &Deployment,
    sets: &[&ReplicaSet],
    pods: &[&Pod],
    now: Timestamp,
) -> Result<Plan, StrategyError> {
    let spec = d.spec.clone().unwrap_or_default();
    let desired = spec.replicas.unwrap_or(1);
    let strategy = spec.strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref() != Some("Recreate");
    let (surge, unavailable) = if rolling {
        let ru = strategy.rolling_update.unwrap_or_default();
        let quarter = IntOrString::String("25%".into());
        fenceposts(
            ru.max_surge.as_ref().unwrap_or(&quarter),
            ru.max_unavailable.as_ref().unwrap_or(&quarter),
            desired,
        )?
    } else {
        (0, 0)
    };
    let mut p = Planner {
        d,
        desired,
        surge,
        max_unavailable: if rolling && desired > 0 {
            unavailable.min(desired)
        } else {
            0
        },
        objects: Vec::new(),
        views: Vec::new(),
        original: Vec::new(),
        annotated: Vec::new(),
        new: None,
        created: None,
        all_sets: sets,
        now,
        plan: Plan {
            status: d.status.clone().unwrap_or_default(),
            ..Default::default()
        },
    };
    p.claim();
    if pods::is_terminating(&d.metadata) {
        p.finish(false);
        return Ok(p.plan);
    }
    status::paused(d, &mut p.plan.status, now);
    let paused = spec.paused.unwrap_or(false);
    p.sync_new_set();
    if paused || p.scaling_event() {
        let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        super::scale::scale(
            &mut p.views,
            p.new,
            desired,
            surge,
            rolling,
            status_replicas,
        );
        if paused {
            p.cleanup();
        }
        p.finish(false);
    } else if rolling {
        p.rolling();
    } else {
        p.recreate(pods);
    }
    Ok(p.plan)
}

impl Planner<'_> {
    /// Sorts the namespace's sets into owned (adopting orphans) and others.
    fn claim(&mut self) {
        let uid = self.d.metadata.uid.as_deref().unwrap_or_default();
        let selector = self
            .d
            .spec
            .as_ref()
            .and_then(|s| pods::selector(&s.selector));
        let deleting = pods::is_terminating(&self.d.metadata);
        let mut owned: Vec<ReplicaSet> = Vec::new();
        for &rs in self.all_sets {
            match pods::claim(uid, selector.as_ref(), deleting, &rs.metadata) {
                Claim::Owned => owned.push(rs.clone()),
                Claim::Adopt => {
                    self.plan.steps.push(Step::Adopt(rs.clone()));
                    owned.push(rs.clone());
                }
                Claim::Release => self.plan.steps.push(Step::Release(rs.clone())),
                Claim::Ignore => {}
            }
        }
        owned.sort_by(|a, b| {
            let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
                .then_with(|| a.name_any().cmp(&b.name_any()))
        });
        let template = self.template();
        self.new = owned.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignoring_hash(t, &template))
        });
        for rs in owned {
            self.push(rs);
        }
    }

    fn push(&mut self, rs: ReplicaSet) -> usize {
        let view = Set::of(&rs);
        self.original.push(view.replicas);
        self.views.push(view);
        self.objects.push(rs);
        self.annotated.push(false);
        self.objects.len() - 1
    }

    fn template(&self) -> k8s_openapi::api::core::v1::PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    fn next_revision(&self) -> i64 {
        let old = (0..self.views.len()).filter(|&i| Some(i) != self.new);
        old.map(|i| self.views[i].revision).max().unwrap_or(0) + 1
    }

    /// Brings the existing new set's annotations up to date (revision, copied
    /// annotations) and notes it in `Progressing`.
    fn sync_new_set(&mut self) {
        let Some(n) = self.new else { return };
        let revision = self.next_revision();
        let rs = &mut self.objects[n];
        let mut changed = copy_annotations(self.d, rs, revision);
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(spec) = rs
            .spec
            .as_mut()
            .filter(|s| s.min_ready_seconds != min_ready)
        {
            spec.min_ready_seconds = min_ready;
            changed = true;
        }
        self.annotated[n] |= changed;
        self.views[n].revision = Set::of(rs).revision;
        if status::get(&self.plan.status, PROGRESSING).is_none() {
            let msg = format!("Found new replica set {:?}", rs.name_any());
            let cond = status::condition(PROGRESSING, "True", reason::FOUND_NEW_RS, msg, self.now);
            status::set(&mut self.plan.status, cond);
        }
    }

    /// Creates the new set with `replicas` (computed from the views when `None`).
    /// False on a name collision: the collision count goes up and the step ends.
    fn create_new_set(&mut self, replicas: Option<i32>) -> bool {
        let collisions = self.plan.status.collision_count;
        let template = self.template();
        let hash = pod_template_hash(&template, collisions);
        let name = format!("{}-{hash}", self.d.name_any());
        let namespace = self.d.namespace();
        if self
            .all_sets
            .iter()
            .any(|rs| rs.name_any() == name && rs.namespace() == namespace)
        {
            self.plan.status.collision_count = Some(collisions.unwrap_or(0) + 1);
            self.plan.requeue_after = Some(Duration::ZERO);
            return false;
        }
        let revision = self.next_revision();
        let rs = new_set(self.d, &name, &hash, revision);
        let i = self.push(rs);
        self.original[i] = 0;
        self.views[i].replicas = 0;
        self.views[i].revision = revision;
        self.new = Some(i);
        self.created = Some(i);
        self.views[i].replicas = replicas.unwrap_or_else(|| {
            new_set_replicas(self.desired, self.surge, &self.views, &self.views[i])
        });
        let msg = format!("Created new replica set {name:?}");
        let cond = status::condition(PROGRESSING, "True", reason::NEW_RS_CREATED, msg, self.now);
        status::set(&mut self.plan.status, cond);
        true
    }

    /// True when an active set was last scaled for another `spec.replicas`.
    fn scaling_event(&self) -> bool {
        self.views
            .iter()
            .filter(|s| s.is_active())
            .any(|s| s.desired_annotation.is_some_and(|d| d != self.desired))
    }

    fn rolling(&mut self) {
        if self.new.is_none() && !self.create_new_set(None) {
            return self.finish(true);
        }
        let Some(n) = self.new else { return };
        if self.created != Some(n) {
            let current = self.views[n].replicas;
            if current > self.desired {
                self.views[n].replicas = self.desired;
            } else if current < self.desired {
                self.views[n].replicas =
                    new_set_replicas(self.desired, self.surge, &self.views, &self.views[n]);
            }
            if self.views[n].replicas > current {
                return self.finish(true);
            }
        }
        let new_view = self.views[n].clone();
        let mut old: Vec<Set> = self.old_indices().map(|i| self.views[i].clone()).collect();
        scale_down_old(
            self.desired,
            self.max_unavailable,
            Some(&new_view),
            &mut old,
        );
        for set in old {
            if let Some(v) = self.views.iter_mut().find(|v| v.name == set.name) {
                v.replicas = set.replicas;
            }
        }
        self.finish(true);
    }

    fn recreate(&mut self, pods: &[&Pod]) {
        let old: Vec<usize> = self.old_indices().collect();
        let mut scaled = false;
        for &i in &old {
            if self.views[i].replicas > 0 {
                self.views[i].replicas = 0;
                scaled = true;
            }
        }
        let old_uids: Vec<&str> = old
            .iter()
            .filter_map(|&i| self.objects[i].metadata.uid.as_deref())
            .collect();
        let running = old.iter().any(|&i| self.views[i].actual > 0)
            || pods.iter().any(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded" | "Failed"))
                    && pods::controller_of(&p.metadata)
                        .is_some_and(|r| old_uids.contains(&r.uid.as_str()))
            });
        if scaled || running {
            return self.finish(true);
        }
        match self.new {
            Some(n) => self.views[n].replicas = self.desired,
            None => {
                self.create_new_set(Some(self.desired));
            }
        }
        self.finish(true);
    }

    fn old_indices(&self) -> impl Iterator<Item = usize> + use<> {
        let new = self.new;
        (0..self.views.len()).filter(move |&i| Some(i) != new)
    }

    /// Deletes the oldest unused sets beyond `revisionHistoryLimit`.
    fn cleanup(&mut self) {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return;
        };
        let mut candidates: Vec<usize> = self
            .old_indices()
            .filter(|&i| !pods::is_terminating(&self.objects[i].metadata))
            .collect();
        let excess =
            usize::try_from(i64::try_from(candidates.len()).unwrap_or(0) - i64::from(limit))
                .unwrap_or(0);
        candidates.sort_by(|&a, &b| {
            let (x, y) = (&self.views[a], &self.views[b]);
            x.revision
                .cmp(&y.revision)
                .then_with(|| x.created.cmp(&y.created))
        });
        for &i in candidates.iter().take(excess) {
            let (rs, view) = (&self.objects[i], &self.views[i]);
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation);
            if view.actual != 0 || view.replicas != 0 || rs.metadata.generation > observed {
                continue;
            }
            self.plan.steps.push(Step::Delete(rs.name_any()));
        }
    }

    /// Turns the views into writes and events, and computes the status.
    fn finish(&mut self, rollout: bool) {
        if rollout {
            let recorded = self.d.status.clone().unwrap_or_default();
            if status::complete(self.d, &recorded) {
                self.cleanup();
            }
        }
        let max_surge_total = self.desired + self.surge;
        for i in 0..self.objects.len() {
            let (from, to) = (self.original[i], self.views[i].replicas);
            let rs = &mut self.objects[i];
            if from != to || self.created == Some(i) {
                let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
                annotations.insert(view::DESIRED_REPLICAS.into(), self.desired.to_string());
                annotations.insert(view::MAX_REPLICAS.into(), max_surge_total.to_string());
                if let Some(spec) = rs.spec.as_mut() {
                    spec.replicas = Some(to);
                }
            }
            let name = rs.name_any();
            if self.created == Some(i) {
                self.plan.steps.push(Step::Create(rs.clone()));
            } else if from != to || self.annotated[i] {
                self.plan.steps.push(Step::Update(rs.clone()));
            }
            if from != to {
                let direction = if to > from { "up" } else { "down" };
                let message = format!("Scaled {direction} replica set {name} from {from} to {to}");
                self.plan.events.push(Scaled { message });
            }
        }
        let new = self.new.map(|n| &self.views[n]);
        let mut next = status::calculate(
            self.d,
            &self.plan.status,
            new,
            &self.views,
            self.max_unavailable,
            self.now,
        );
        if rollout && !pods::is_terminating(&self.d.metadata) {
            let name = new.map(|s| s.name.clone());
            let wait = status::progress(self.d, name.as_deref(), &mut next, self.now);
            self.plan.requeue_after = self.plan.requeue_after.or(wait);
        }
        self.plan.status = next;
        if let Some(n) = self.new {
            let revision = self.views[n].revision.to_string();
            if self.d.annotations().get(view::REVISION) != Some(&revision) {
                self.plan.revision = Some(revision);
            }
        }
    }
}

/// Copies the deployment's annotations to `rs` and raises its revision to `revision`
/// (keeping the old one in the revision history). True when anything changed.
fn copy_annotations(d: &Deployment, rs: &mut ReplicaSet, revision: i64) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in d.annotations() {
        if !view::NOT_COPIED.contains(&k.as_str()) && annotations.get(k) != Some(v) {
            annotations.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    let old: Option<i64> = annotations.get(view::REVISION).and_then(|r| r.parse().ok());
    if old.is_none_or(|old| old < revision) {
        if let Some(old) = old {
            let history = match annotations.get(view::REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old.to_string(),
            };
            annotations.insert(view::REVISION_HISTORY.into(), history);
        }
        annotations.insert(view::REVISION.into(), revision.to_string());
        changed = true;
    }
    changed
}

/// The new replica set for `d`'s template: `<deployment>-<hash>`, the hash label on
/// its labels, selector and template, controlled by the deployment.
fn new_set(d: &Deployment, name: &str, hash: &str, revision: i64) -> ReplicaSet {
    let spec = d.spec.clone().unwrap_or_default();
    let mut template = spec.template;
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let labels = meta.labels.clone();
    let mut selector = spec.selector;
    selector
        .match_labels
        .get_or_insert_with(BTreeMap::new)
        .insert(POD_TEMPLATE_HASH.into(), hash.into());
    let mut rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: d.namespace(),
            labels,
            owner_references: Some(vec![pods::controller_ref(
                "apps/v1",
                "Deployment",
                &d.metadata,
            )]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(0),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    };
    copy_annotations(d, &mut rs, revision);
    rs
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
