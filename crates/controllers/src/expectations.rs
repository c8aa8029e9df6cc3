//! Expectations, as in kube-controller-manager: what an owner just created or deleted
//! and is waiting to see in its watch cache. Until the cache shows it, the owner does
//! not count replicas again, so a watch lagging behind its own writes cannot make it
//! create (or delete) twice. Entries expire after [`EXPECTATION_TTL`], like Kubernetes'
//! five minutes, so a lost watch event cannot block an owner forever.
//!
//! A create counts as observed when the watch delivers any event of the new pod
//! ([`Expectations::observe`], called from the pod watch), not only when a later cache
//! snapshot shows it: a pod created and deleted again before the owner's next sync
//! would otherwise be expected forever (until the TTL). Pods the watch delivered before
//! their create call returned are remembered for a while, so that order works too.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// How long an unmet expectation holds an owner back.
pub const EXPECTATION_TTL: Duration = Duration::from_secs(5 * 60);

/// What the cache must show before an owner acts again.
#[derive(Debug, Default)]
struct Pending {
    /// Names of created children not yet in the cache.
    creates: HashSet<String>,
    /// UIDs of deleted children still in the cache without a deletion timestamp.
    deletes: HashSet<String>,
    since: Option<Instant>,
}

/// How long a pod the watch delivered is remembered for creates recorded after it.
const SEEN_TTL: Duration = Duration::from_secs(120);

/// Per-owner expectations, keyed by the owner's `namespace/name`.
#[derive(Debug, Default)]
pub struct Expectations {
    owners: Mutex<HashMap<String, Pending>>,
    /// Pods (`namespace/name`) the watch delivered lately, with when.
    seen: Mutex<HashMap<String, Instant>>,
}

/// How the cache sees one expected child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Present and not being deleted.
    Live,
    /// Present with a deletion timestamp.
    Terminating,
    /// Not in the cache.
    Absent,
}

impl Expectations {
    /// Records that the owner created the child `name` (in the owner's namespace),
    /// unless the watch already delivered it.
    pub fn created(&self, owner: &str, name: &str) {
        let namespace = owner.split_once('/').map_or("", |(ns, _)| ns);
        let already_seen = self
            .seen
            .lock()
            .is_ok_and(|seen| seen.contains_key(&format!("{namespace}/{name}")));
        if already_seen {
            return;
        }
        self.with(owner, |p| {
            p.creates.insert(name.to_string());
        });
    }

    /// Notes that the pod watch delivered `pod` (added, changed or deleted): its
    /// owner's expected create of it is met.
    pub fn observe(&self, pod: &Pod) {
        let Some(owner) = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true))
        else {
            return;
        };
        let (Some(namespace), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            return;
        };
        if let Ok(mut owners) = self.owners.lock()
            && let Some(pending) = owners.get_mut(&format!("{namespace}/{}", owner.name))
        {
            pending.creates.remove(name);
        }
        if let Ok(mut seen) = self.seen.lock() {
            let now = Instant::now();
            if seen.len() >= 1024 && seen.len().is_power_of_two() {
                seen.retain(|_, at| now.duration_since(*at) < SEEN_TTL);
            }
            seen.insert(format!("{namespace}/{name}"), now);
        }
    }

    /// Records that the owner deleted the child with `uid`.
    pub fn deleted(&self, owner: &str, uid: &str) {
        self.with(owner, |p| {
            p.deletes.insert(uid.to_string());
        });
    }

    /// Forgets everything about `owner` (it was deleted).
    pub fn forget(&self, owner: &str) {
        if let Ok(mut owners) = self.owners.lock() {
            owners.remove(owner);
        }
    }

    /// True when the cache shows every expected create and delete of `owner`, or the
    /// expectations expired. `by_name` and `by_uid` look a child up in the cache.
    /// Met expectations are dropped.
    pub fn satisfied(
        &self,
        owner: &str,
        by_name: impl Fn(&str) -> Seen,
        by_uid: impl Fn(&str) -> Seen,
    ) -> bool {
        let Ok(mut owners) = self.owners.lock() else {
            return true;
        };
        let Some(pending) = owners.get_mut(owner) else {
            return true;
        };
        // A created child seen terminating or gone already reached the cache.
        pending.creates.retain(|name| by_name(name) == Seen::Absent);
        pending.deletes.retain(|uid| by_uid(uid) == Seen::Live);
        let expired = pending.since.is_some_and(|s| s.elapsed() > EXPECTATION_TTL);
        let met = pending.creates.is_empty() && pending.deletes.is_empty();
        if met || expired {
            owners.remove(owner);
            return true;
        }
        false
    }

    /// [`satisfied`](Self::satisfied) with children looked up in `pods`, the cached
    /// pods of the owner's namespace.
    pub fn satisfied_by(&self, owner: &str, pods: &[&Pod]) -> bool {
        let seen = |found: Option<&&Pod>| match found {
            None => Seen::Absent,
            Some(p) if p.metadata.deletion_timestamp.is_some() => Seen::Terminating,
            Some(_) => Seen::Live,
        };
        self.satisfied(
            owner,
            |name| {
                seen(
                    pods.iter()
                        .find(|p| p.metadata.name.as_deref() == Some(name)),
                )
            },
            |uid| seen(pods.iter().find(|p| p.metadata.uid.as_deref() == Some(uid))),
        )
    }

    fn with(&self, owner: &str, f: impl FnOnce(&mut Pending)) {
        if let Ok(mut owners) = self.owners.lock() {
            let pending = owners.entry(owner.to_string()).or_default();
            pending.since.get_or_insert_with(Instant::now);
            f(pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(namespace: &str, name: &str, owner: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "namespace": namespace, "name": name,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": owner, "uid": "u", "controller": true}],
            },
        }))
        .unwrap_or_default()
    }

    #[test]
    fn a_child_created_and_deleted_between_syncs_is_observed_through_the_watch() {
        let e = Expectations::default();
        e.created("ns/rs", "rs-abcde");
        // The cache never shows it (it was deleted before the owner's next sync).
        assert!(!e.satisfied("ns/rs", |_| Seen::Absent, |_| Seen::Absent));
        e.observe(&child("ns", "rs-abcde", "rs"));
        assert!(e.satisfied("ns/rs", |_| Seen::Absent, |_| Seen::Absent));
        // The watch delivered the pod before its create call returned.
        e.observe(&child("ns", "rs-fghij", "rs"));
        e.created("ns/rs", "rs-fghij");
        assert!(e.satisfied("ns/rs", |_| Seen::Absent, |_| Seen::Absent));
        // Another namespace's pod of the same name does not count.
        e.observe(&child("other", "rs-klmno", "rs"));
        e.created("ns/rs", "rs-klmno");
        assert!(!e.satisfied("ns/rs", |_| Seen::Absent, |_| Seen::Absent));
    }

    #[test]
    fn creates_wait_until_the_cache_shows_them() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs", |_| Seen::Absent, |_| Seen::Absent));
        e.created("ns/rs", "rs-abcde");
        assert!(!e.satisfied("ns/rs", |_| Seen::Absent, |_| Seen::Absent));
        assert!(e.satisfied("ns/rs", |_| Seen::Live, |_| Seen::Absent));
        // Met expectations are gone.
        assert!(e.satisfied("ns/rs", |_| Seen::Absent, |_| Seen::Absent));
    }

    #[test]
    fn deletes_wait_until_the_pod_is_terminating_or_gone() {
        let e = Expectations::default();
        e.deleted("ns/rs", "uid-1");
        assert!(!e.satisfied("ns/rs", |_| Seen::Absent, |_| Seen::Live));
        assert!(e.satisfied("ns/rs", |_| Seen::Absent, |_| Seen::Terminating));
        e.deleted("ns/rs", "uid-1");
        e.forget("ns/rs");
        assert!(e.satisfied("ns/rs", |_| Seen::Absent, |_| Seen::Live));
    }
}
