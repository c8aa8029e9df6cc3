//! The object graph the garbage collector keeps from its watches (Kubernetes'
//! `uidToNode`): every object by uid with its owner references, and the objects that
//! name each owner. The decisions over it are pure functions.

use std::collections::{HashMap, HashSet};

use kube::api::DynamicObject;
use strata_api::resources::Resource;

/// The finalizer of an owner whose dependents are released before it goes.
pub const ORPHAN: &str = "orphan";
/// The finalizer of an owner that waits for its blocking dependents to go first.
pub const FOREGROUND: &str = "foregroundDeletion";

/// Where an object lives: its resource, namespace, name and uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Its resource.
    pub resource: &'static Resource,
    /// The namespace, for namespaced objects.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
    /// The uid.
    pub uid: String,
}

/// One `ownerReferences` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The owner's uid.
    pub uid: String,
    /// The owner's `apiVersion`.
    pub api_version: String,
    /// The owner's kind.
    pub kind: String,
    /// The owner's name.
    pub name: String,
    /// `blockOwnerDeletion`: a foreground deletion of the owner waits for this dependent.
    pub block: bool,
}

/// What the graph knows of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Where it lives.
    pub id: Identity,
    /// Its owner references.
    pub owners: Vec<Owner>,
    /// It has a `deletionTimestamp`.
    pub deleting: bool,
    /// Its `metadata.finalizers`.
    pub finalizers: Vec<String>,
}

impl Node {
    /// The node of `object` of resource `resource`; `None` without a name or uid.
    pub fn of(resource: &'static Resource, object: &DynamicObject) -> Option<Self> {
        let meta = &object.metadata;
        let owners = meta
            .owner_references
            .iter()
            .flatten()
            .map(|r| Owner {
                uid: r.uid.clone(),
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                block: r.block_owner_deletion == Some(true),
            })
            .collect();
        Some(Self {
            id: Identity {
                resource,
                namespace: meta.namespace.clone(),
                name: meta.name.clone()?,
                uid: meta.uid.clone()?,
            },
            owners,
            deleting: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        })
    }

    fn has_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Being deleted in the foreground: it waits for its blocking dependents.
    pub fn waits_for_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }
}

/// Every watched object by uid, and the dependents of each owner uid.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    /// The object with `uid`, if it is known.
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// Objects whose owner references name `uid`.
    pub fn dependents(&self, uid: &str) -> impl Iterator<Item = &Node> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
    }

    /// Uids of the known objects of `resource`.
    fn uids_of(&self, resource: &Resource) -> Vec<String> {
        self.nodes
            .values()
            .filter(|n| n.id.resource == resource)
            .map(|n| n.id.uid.clone())
            .collect()
    }

    /// A watch of `resource` listed again and saw only `seen`: forgets the objects of
    /// `resource` deleted while it was down; returns the uids to look at again.
    pub fn relisted(&mut self, resource: &Resource, seen: &HashSet<String>) -> Vec<String> {
        let gone: Vec<String> = self
            .uids_of(resource)
            .into_iter()
            .filter(|uid| !seen.contains(uid))
            .collect();
        gone.iter().flat_map(|uid| self.remove(uid)).collect()
    }

    /// Records an added or changed object; returns the uids to look at again.
    pub fn upsert(&mut self, node: Node) -> Vec<String> {
        let uid = node.id.uid.clone();
        let old = self.nodes.get(&uid).cloned();
        if old.as_ref() == Some(&node) {
            return Vec::new();
        }
        let mut touched = vec![uid.clone()];
        if let Some(old) = &old {
            self.unlink(old);
            // A released dependent may let a foreground owner finish.
            touched.extend(old.owners.iter().map(|o| o.uid.clone()));
        } else {
            touched.extend(node.owners.iter().map(|o| o.uid.clone()));
        }
        if node.deleting {
            touched.extend(self.dependents(&uid).map(|d| d.id.uid.clone()));
        }
        for owner in &node.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        self.nodes.insert(uid, node);
        touched
    }

    /// Forgets a deleted object; returns the uids to look at again (its dependents,
    /// which may now be garbage, and its owners, which may stop waiting).
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(old) = self.nodes.remove(uid) else {
            return Vec::new();
        };
        self.unlink(&old);
        let mut touched: Vec<String> = self.dependents(uid).map(|d| d.id.uid.clone()).collect();
        touched.extend(old.owners.iter().map(|o| o.uid.clone()));
        touched
    }

    fn unlink(&mut self, node: &Node) {
        for owner in &node.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(&node.id.uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
    }
}

/// What to do about an object as an owner being deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerStep {
    /// Nothing (not being deleted, or by nobody's finalizer we own).
    Nothing,
    /// Drop the reference to it from these dependents, then its `orphan` finalizer.
    Orphan(Vec<Identity>),
    /// Its blocking dependents are gone: drop its `foregroundDeletion` finalizer.
    Finish,
    /// It waits for blocking dependents (they are being deleted).
    Wait,
}

/// The step for `node` as an owner being deleted.
pub fn owner_step(graph: &Graph, node: &Node) -> OwnerStep {
    if !node.deleting {
        return OwnerStep::Nothing;
    }
    let uid = &node.id.uid;
    if node.has_finalizer(ORPHAN) {
        return OwnerStep::Orphan(graph.dependents(uid).map(|d| d.id.clone()).collect());
    }
    if !node.has_finalizer(FOREGROUND) {
        return OwnerStep::Nothing;
    }
    let blocked = graph
        .dependents(uid)
        .any(|d| d.owners.iter().any(|o| &o.uid == uid && o.block));
    if blocked {
        OwnerStep::Wait
    } else {
        OwnerStep::Finish
    }
}

/// What an owner reference points at, as verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists and is not waiting for its dependents.
    Solid,
    /// No object with that uid exists.
    Dangling,
    /// The owner is being deleted in the foreground.
    Waiting,
}

/// How a dependent is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Its own dependents are collected afterwards.
    Background,
    /// It waits for its own blocking dependents.
    Foreground,
}

/// What to do about an object as a dependent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependentStep {
    /// Nothing: an owner keeps it, or it has none.
    Nothing,
    /// Some owner keeps it: drop the references to these (gone or waiting) owners.
    Release(Vec<String>),
    /// No owner keeps it: delete it.
    Delete(Propagation),
}

/// The step for `node` as a dependent, given the state of each of its owners and
/// whether it has dependents itself (Kubernetes' `attemptToDeleteItem`).
pub fn dependent_step(
    node: &Node,
    owners: &[(Owner, OwnerState)],
    has_dependents: bool,
) -> DependentStep {
    if node.deleting || owners.is_empty() {
        return DependentStep::Nothing;
    }
    let of = |state| {
        owners
            .iter()
            .filter(move |(_, s)| *s == state)
            .map(|(o, _)| o.uid.clone())
    };
    let solid = of(OwnerState::Solid).count();
    let waiting: Vec<String> = of(OwnerState::Waiting).collect();
    let dangling: Vec<String> = of(OwnerState::Dangling).collect();
    if solid > 0 {
        if waiting.is_empty() && dangling.is_empty() {
            return DependentStep::Nothing;
        }
        return DependentStep::Release(dangling.into_iter().chain(waiting).collect());
    }
    // Foreground when an owner waits and this has dependents of its own, so the owner
    // waits for those too; or when it already carries the finalizer.
    if (!waiting.is_empty() && has_dependents) || node.has_finalizer(FOREGROUND) {
        DependentStep::Delete(Propagation::Foreground)
    } else {
        DependentStep::Delete(Propagation::Background)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: &str, owners: &[(&str, bool)]) -> Node {
        Node {
            id: Identity {
                resource: &strata_api::resources::RESOURCES[1],
                namespace: Some("default".into()),
                name: uid.into(),
                uid: uid.into(),
            },
            owners: owners
                .iter()
                .map(|(o, block)| Owner {
                    uid: (*o).into(),
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: (*o).into(),
                    block: *block,
                })
                .collect(),
            deleting: false,
            finalizers: Vec::new(),
        }
    }

    fn deleting(mut n: Node, finalizer: &str) -> Node {
        n.deleting = true;
        n.finalizers = vec![finalizer.into()];
        n
    }

    #[test]
    fn removing_an_owner_touches_its_dependents() {
        let mut g = Graph::default();
        g.upsert(node("rs", &[]));
        g.upsert(node("pod", &[("rs", true)]));
        assert_eq!(g.remove("rs"), vec!["pod".to_string()]);
        assert_eq!(g.remove("pod"), vec!["rs".to_string()]);
        assert!(g.get("pod").is_none());
    }

    #[test]
    fn a_relist_forgets_what_was_deleted_meanwhile() {
        let mut g = Graph::default();
        g.upsert(node("rs", &[]));
        g.upsert(node("pod", &[("rs", true)]));
        let seen: HashSet<String> = ["pod".to_string()].into();
        assert_eq!(
            g.relisted(&strata_api::resources::RESOURCES[1], &seen),
            vec!["pod".to_string()]
        );
        assert!(g.get("rs").is_none() && g.get("pod").is_some());
    }

    #[test]
    fn foreground_owners_wait_for_blocking_dependents_only() {
        let mut g = Graph::default();
        let rs = deleting(node("rs", &[]), FOREGROUND);
        g.upsert(rs.clone());
        g.upsert(node("loose", &[("rs", false)]));
        assert_eq!(owner_step(&g, &rs), OwnerStep::Finish);
        g.upsert(node("pod", &[("rs", true)]));
        assert_eq!(owner_step(&g, &rs), OwnerStep::Wait);
        g.remove("pod");
        assert_eq!(owner_step(&g, &rs), OwnerStep::Finish);
    }

    #[test]
    fn orphaning_owners_release_every_dependent() {
        let mut g = Graph::default();
        let rs = deleting(node("rs", &[]), ORPHAN);
        g.upsert(rs.clone());
        g.upsert(node("pod", &[("rs", true)]));
        let OwnerStep::Orphan(deps) = owner_step(&g, &rs) else {
            panic!("not orphaning");
        };
        assert_eq!(deps.len(), 1);
        assert_eq!(owner_step(&g, &node("rs", &[])), OwnerStep::Nothing);
    }

    #[test]
    fn dependents_go_when_no_owner_keeps_them() {
        let pod = node("pod", &[("a", true), ("b", true)]);
        let o = |uid: &str| pod.owners.iter().find(|o| o.uid == uid).cloned().unwrap();
        let states = |a, b| vec![(o("a"), a), (o("b"), b)];
        use OwnerState::*;
        assert_eq!(
            dependent_step(&pod, &states(Solid, Solid), false),
            DependentStep::Nothing
        );
        assert_eq!(
            dependent_step(&pod, &states(Solid, Dangling), false),
            DependentStep::Release(vec!["b".into()])
        );
        assert_eq!(
            dependent_step(&pod, &states(Dangling, Dangling), false),
            DependentStep::Delete(Propagation::Background)
        );
        assert_eq!(
            dependent_step(&pod, &states(Waiting, Dangling), true),
            DependentStep::Delete(Propagation::Foreground)
        );
        assert_eq!(
            dependent_step(&pod, &states(Waiting, Dangling), false),
            DependentStep::Delete(Propagation::Background)
        );
        let gone = deleting(pod.clone(), "x");
        assert_eq!(
            dependent_step(&gone, &states(Dangling, Dangling), false),
            DependentStep::Nothing
        );
    }
}
