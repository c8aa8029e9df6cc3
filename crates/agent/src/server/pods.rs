//! Finding the containers of a pod on this machine by their CRI labels (namespace, pod
//! name, container name) and attempt numbers: the current attempt and the one before it
//! (what `kubectl logs --previous` shows).

use std::sync::Arc;

use http::StatusCode;
use strata_runtime::ContainerId;

use crate::Context;
use crate::containers::Entry;
use crate::pods::worker::{CONTAINER_NAME_LABEL, POD_NAME_LABEL, POD_NAMESPACE_LABEL};

/// A container of a pod, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container's name.
    pub container: String,
}

impl Target {
    /// A target from path segments.
    pub fn new(namespace: &str, pod: &str, container: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
            container: container.to_string(),
        }
    }
}

/// The attempts of one container found on this machine, newest first.
pub struct Attempts {
    /// The entries, newest attempt first.
    pub entries: Vec<Entry>,
}

impl Attempts {
    /// The current (newest) attempt.
    pub fn current(&self) -> Option<&Entry> {
        self.entries.first()
    }

    /// The attempt before the current one.
    pub fn previous(&self) -> Option<&Entry> {
        self.entries.get(1)
    }
}

/// The attempt number at the end of a pod container's ID (`<uid>-<name>-<attempt>`).
fn attempt_of(entry: &Entry) -> u32 {
    entry
        .meta
        .id
        .rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Finds the attempts of `target`, or the HTTP error saying why there are none.
pub async fn find(ctx: &Arc<Context>, target: &Target) -> Result<Attempts, (StatusCode, String)> {
    let ctx = ctx.clone();
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        let listed = ctx.containers.list().map_err(|err| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot list containers: {err}"),
            )
        })?;
        let label = |e: &Entry, key: &str| e.meta.labels.get(key).cloned().unwrap_or_default();
        let of_pod: Vec<Entry> = listed
            .into_iter()
            .filter(|e| {
                label(e, POD_NAMESPACE_LABEL) == target.namespace
                    && label(e, POD_NAME_LABEL) == target.pod
            })
            .collect();
        if of_pod.is_empty() {
            return Err((
                StatusCode::NOT_FOUND,
                format!(
                    "pod {}/{} has no containers on this node",
                    target.namespace, target.pod
                ),
            ));
        }
        let mut entries: Vec<Entry> = of_pod
            .into_iter()
            .filter(|e| label(e, CONTAINER_NAME_LABEL) == target.container)
            .collect();
        if entries.is_empty() {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "container {:?} in pod {:?} has not been started",
                    target.container, target.pod
                ),
            ));
        }
        entries.sort_by_key(|e| std::cmp::Reverse(attempt_of(e)));
        Ok(Attempts { entries })
    })
    .await
    .map_err(|err| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))?
}

/// The container ID of an entry.
pub fn id_of(entry: &Entry) -> Result<ContainerId, (StatusCode, String)> {
    ContainerId::new(entry.meta.id.clone())
        .map_err(|err| (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()))
}
