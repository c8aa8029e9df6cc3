//! The deployment's view of one of its replica sets ([`Set`]) and the annotations the
//! two share, so the decision functions work on plain numbers.

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

/// The revision of a replica set (and, mirrored, of its deployment).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Old revisions a reused replica set had (comma-separated).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the deployment when it last scaled this set.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` of the deployment when it last scaled this set.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Why the deployment changed, copied from the deployment to its new replica set.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";
/// What `kubectl apply` writes; never copied to replica sets.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Deployment annotations that are not copied to replica sets.
pub const NOT_COPIED: [&str; 6] = [
    LAST_APPLIED,
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// A replica set as the deployment's decisions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// Name.
    pub name: String,
    /// `spec.replicas`: what the plan sets.
    pub replicas: i32,
    /// `status.replicas`: active pods.
    pub actual: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    /// Creation time (older sets scale down first).
    pub created: Option<Timestamp>,
    /// `deployment.kubernetes.io/revision`, 0 when absent or invalid.
    pub revision: i64,
    /// `deployment.kubernetes.io/desired-replicas`.
    pub desired_annotation: Option<i32>,
    /// `deployment.kubernetes.io/max-replicas`.
    pub max_annotation: Option<i32>,
}

impl Set {
    /// The view of `rs`.
    pub fn of(rs: &ReplicaSet) -> Self {
        let status = rs.status.clone().unwrap_or_default();
        let annotations = rs.annotations();
        let int = |key: &str| annotations.get(key).and_then(|v| v.parse::<i32>().ok());
        Self {
            name: rs.name_any(),
            replicas: rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
            actual: status.replicas,
            ready: status.ready_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            created: rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
            revision: annotations
                .get(REVISION)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0),
            desired_annotation: int(DESIRED_REPLICAS),
            max_annotation: int(MAX_REPLICAS),
        }
    }

    /// True when the set wants pods.
    pub fn is_active(&self) -> bool {
        self.replicas > 0
    }
}

/// Orders sets oldest first (name breaks ties), as `ReplicaSetsByCreationTimestamp`.
pub fn oldest_first(sets: &mut [Set]) {
    sets.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name)));
}

/// Sum of `spec.replicas`.
pub fn total_replicas(sets: &[Set]) -> i32 {
    sets.iter().map(|s| s.replicas).sum()
}

/// Sum of `status.availableReplicas`.
pub fn total_available(sets: &[Set]) -> i32 {
    sets.iter().map(|s| s.available).sum()
}
