//! The writes an owner makes to its pods (Kubernetes' `PodControl`): adopt and release
//! by controller reference, create in slow-start batches, delete. Each create and delete
//! is reported as an event on the owner and recorded in its expectations.

use futures_util::future::join_all;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use strata_client::events::{EventType, Recorder};

use crate::expectations::Expectations;

/// The most pods one sync of an owner creates or deletes (Kubernetes' `BurstReplicas`,
/// `MaxPodCreateDeletePerSync`).
pub const BURST: usize = 500;

/// Why adopting or releasing a pod failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Writing the controller reference on an orphan failed.
    #[error("cannot adopt pod {pod}")]
    Adopt {
        /// The pod.
        pod: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
    /// Removing the controller reference from a pod failed.
    #[error("cannot release pod {pod}")]
    Release {
        /// The pod.
        pod: String,
        /// Cause.
        #[source]
        source: kube::Error,
    },
}

/// A pod that could not be deleted.
#[derive(Debug, thiserror::Error)]
#[error("cannot delete pod {pod}")]
pub struct DeleteError {
    /// The pod.
    pub pod: String,
    /// Cause.
    #[source]
    pub source: kube::Error,
}

/// One owner's handle on the pods of its namespace.
pub struct PodControl<'a> {
    /// Pods of the owner's namespace.
    pub api: Api<Pod>,
    /// Writes the owner's events.
    pub recorder: &'a Recorder,
    /// The owner's controller's expectations.
    pub expectations: &'a Expectations,
    /// The owner's expectations key (`namespace/name`).
    pub key: &'a str,
    /// The owner, for events.
    pub reference: &'a ObjectReference,
}

impl PodControl<'_> {
    /// Takes the orphans `adopt` and lets go of `release` for the owner `owner`
    /// (its controller reference). A released pod that is already gone is no failure.
    pub async fn claim(
        &self,
        owner: &OwnerReference,
        adopt: &[&Pod],
        release: &[&Pod],
    ) -> Result<(), ClaimError> {
        for pod in adopt {
            let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
            refs.push(owner.clone());
            self.patch_owners(&pod.metadata, refs)
                .await
                .map_err(|source| ClaimError::Adopt {
                    pod: pod.name_any(),
                    source,
                })?;
        }
        for pod in release {
            let refs: Vec<_> = pod
                .owner_references()
                .iter()
                .filter(|r| r.uid != owner.uid)
                .cloned()
                .collect();
            match self.patch_owners(&pod.metadata, refs).await {
                Ok(()) => {}
                Err(err) if crate::is_not_found(&err) => {}
                Err(source) => {
                    return Err(ClaimError::Release {
                        pod: pod.name_any(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Replaces the pod's owner references, guarded by its resourceVersion and UID.
    async fn patch_owners(
        &self,
        meta: &ObjectMeta,
        refs: Vec<OwnerReference>,
    ) -> Result<(), kube::Error> {
        let patch = json!({"metadata": {
            "ownerReferences": refs,
            "resourceVersion": meta.resource_version,
            "uid": meta.uid,
        }});
        let name = meta.name.as_deref().unwrap_or_default();
        self.api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
    }

    /// Creates `pods` in slow-start batches (1, 2, 4, …), so that a create the API
    /// refuses fails once rather than for every pod; stops after the first batch with a
    /// failure and returns that failure.
    pub async fn create(&self, pods: &[Pod]) -> Result<(), kube::Error> {
        let params = PostParams::default();
        let mut rest = pods;
        for batch in slow_start_batches(pods.len()) {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            let results = join_all(now.iter().map(|pod| self.api.create(&params, pod))).await;
            let mut first_error = None;
            for result in results {
                match result {
                    Ok(created) => {
                        let name = created.name_any();
                        self.expectations.created(self.key, &name);
                        let message = format!("Created pod: {name}");
                        self.event(EventType::Normal, "SuccessfulCreate", &message)
                            .await;
                    }
                    Err(err) => {
                        let message = format!("Error creating: {err}");
                        self.event(EventType::Warning, "FailedCreate", &message)
                            .await;
                        first_error.get_or_insert(err);
                    }
                }
            }
            if let Some(err) = first_error {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Deletes `victims`; a pod already gone is no failure. Returns the first failure.
    pub async fn delete(&self, victims: &[&Pod]) -> Result<(), DeleteError> {
        let api = &self.api;
        let results = join_all(victims.iter().map(|pod| async move {
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(err) if crate::is_not_found(&err) => Ok(()),
                Err(err) => Err(err),
            }
        }))
        .await;
        let mut first_error = None;
        for (pod, result) in victims.iter().zip(results) {
            let name = pod.name_any();
            match result {
                Ok(()) => {
                    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                    self.expectations.deleted(self.key, uid);
                    let message = format!("Deleted pod: {name}");
                    self.event(EventType::Normal, "SuccessfulDelete", &message)
                        .await;
                }
                Err(source) => {
                    let message = format!("Error deleting: {source}");
                    self.event(EventType::Warning, "FailedDelete", &message)
                        .await;
                    first_error.get_or_insert(DeleteError { pod: name, source });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn event(&self, kind: EventType, reason: &str, message: &str) {
        self.recorder
            .publish(self.reference, kind, reason, message)
            .await;
    }
}

/// Batch sizes for creating `count` pods: 1, 2, 4, … so that a failing create (quota,
/// validation) fails once instead of `count` times (Kubernetes' `slowStartBatch`).
pub fn slow_start_batches(count: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut left = count;
    let mut size = 1;
    while left > 0 {
        let batch = size.min(left);
        batches.push(batch);
        left -= batch;
        size *= 2;
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_grow_exponentially() {
        assert_eq!(slow_start_batches(0), Vec::<usize>::new());
        assert_eq!(slow_start_batches(1), [1]);
        assert_eq!(slow_start_batches(10), [1, 2, 4, 3]);
        assert_eq!(slow_start_batches(15), [1, 2, 4, 8]);
    }
}
