//! The resources the scheduler accounts for (cpu, memory, ephemeral storage, pod count) and a
//! pod's effective request, computed like kube-scheduler's `computePodResourceRequest`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use crate::quantity::{Quantity, QuantityError};

/// The CPU request assumed for scoring a container that requests none (kube-scheduler's
/// `DefaultMilliCPURequest`): without it, best-effort pods would all pile onto one node.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory request assumed for scoring a container that requests none (200 MiB,
/// kube-scheduler's `DefaultMemoryRequest`).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler fits pods against.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Number of pods (only meaningful for a node's allocatable).
    pub pods: i64,
}

impl Resources {
    /// Adds `other` to `self` (saturating).
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.pods = self.pods.saturating_add(other.pods);
    }

    /// Subtracts `other` from `self` (saturating).
    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        self.pods = self.pods.saturating_sub(other.pods);
    }

    /// The element-wise maximum of `self` and `other`.
    fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
    }

    /// Reads `cpu`, `memory`, `ephemeral-storage` and `pods` from a k8s resource list
    /// (a node's `status.allocatable`); absent names are zero.
    pub fn from_list(list: &BTreeMap<String, K8sQuantity>) -> Result<Self, QuantityError> {
        let get = |name: &str| list.get(name).map(|q| Quantity::parse(&q.0)).transpose();
        Ok(Self {
            milli_cpu: get("cpu")?.map_or(0, |q| q.milli_value()),
            memory: get("memory")?.map_or(0, |q| q.value()),
            ephemeral_storage: get("ephemeral-storage")?.map_or(0, |q| q.value()),
            pods: get("pods")?.map_or(0, |q| q.value()),
        })
    }
}

/// What a pod asks of a node: the request the filters fit, and the non-zero variant the
/// scores use (see [`DEFAULT_MILLI_CPU_REQUEST`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// The effective request; `pods` is 1.
    pub fit: Resources,
    /// CPU for scoring, with the default for containers without a CPU request.
    pub score_milli_cpu: i64,
    /// Memory for scoring, with the default for containers without a memory request.
    pub score_memory: i64,
}

/// The effective request of `spec`: the larger of the sum over containers and each init
/// container, plus `overhead`. A container's request defaults to its limit when only the
/// limit is set (API defaulting does the same, but clients may skip it).
///
/// Sidecar init containers (`restartPolicy: Always`) do not get the sidecar-aware
/// accounting of Kubernetes 1.29+ yet; they count as ordinary init containers.
pub fn pod_requests(spec: &PodSpec) -> Result<PodRequests, QuantityError> {
    let mut sum = Resources::default();
    let mut score_cpu: i64 = 0;
    let mut score_memory: i64 = 0;
    for container in &spec.containers {
        let r = container_requests(container)?;
        sum.add(&r);
        score_cpu = score_cpu.saturating_add(if has_request(container, "cpu") {
            r.milli_cpu
        } else {
            DEFAULT_MILLI_CPU_REQUEST
        });
        score_memory = score_memory.saturating_add(if has_request(container, "memory") {
            r.memory
        } else {
            DEFAULT_MEMORY_REQUEST
        });
    }
    for container in spec.init_containers.iter().flatten() {
        let r = container_requests(container)?;
        sum.max(&r);
        score_cpu = score_cpu.max(r.milli_cpu);
        score_memory = score_memory.max(r.memory);
    }
    if let Some(overhead) = &spec.overhead {
        let o = Resources::from_list(overhead)?;
        sum.add(&o);
        score_cpu = score_cpu.saturating_add(o.milli_cpu);
        score_memory = score_memory.saturating_add(o.memory);
    }
    sum.pods = 1;
    Ok(PodRequests {
        fit: sum,
        score_milli_cpu: score_cpu,
        score_memory,
    })
}

fn has_request(container: &Container, name: &str) -> bool {
    let resources = container.resources.as_ref();
    let requested = resources
        .and_then(|r| r.requests.as_ref())
        .is_some_and(|m| m.contains_key(name));
    let limited = resources
        .and_then(|r| r.limits.as_ref())
        .is_some_and(|m| m.contains_key(name));
    requested || limited
}

/// A container's requests, each defaulting to the limit of the same name.
fn container_requests(container: &Container) -> Result<Resources, QuantityError> {
    let Some(ResourceRequirements {
        requests, limits, ..
    }) = container.resources.as_ref()
    else {
        return Ok(Resources::default());
    };
    let empty = BTreeMap::new();
    let requests = requests.as_ref().unwrap_or(&empty);
    let limits = limits.as_ref().unwrap_or(&empty);
    let pick = |name: &str| {
        requests
            .get(name)
            .or_else(|| limits.get(name))
            .map(|q| Quantity::parse(&q.0))
            .transpose()
    };
    Ok(Resources {
        milli_cpu: pick("cpu")?.map_or(0, |q| q.milli_value()),
        memory: pick("memory")?.map_or(0, |q| q.value()),
        ephemeral_storage: pick("ephemeral-storage")?.map_or(0, |q| q.value()),
        pods: 0,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn container(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        let list = |items: &[(&str, &str)]| {
            (!items.is_empty()).then(|| {
                items
                    .iter()
                    .map(|(k, v)| (k.to_string(), K8sQuantity(v.to_string())))
                    .collect()
            })
        };
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: list(requests),
                limits: list(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn sums_containers_and_takes_the_larger_init_container() {
        let spec = PodSpec {
            containers: vec![
                container(&[("cpu", "100m"), ("memory", "64Mi")], &[]),
                container(&[("cpu", "200m")], &[("memory", "32Mi")]),
            ],
            init_containers: Some(vec![
                container(&[("cpu", "1")], &[]),
                container(&[("memory", "10Mi"), ("ephemeral-storage", "1Gi")], &[]),
            ]),
            overhead: Some([("cpu".to_string(), K8sQuantity("50m".into()))].into()),
            ..Default::default()
        };
        let r = pod_requests(&spec).unwrap();
        assert_eq!(
            r.fit.milli_cpu, 1050,
            "init container's 1 core wins, plus overhead"
        );
        assert_eq!(
            r.fit.memory,
            96 << 20,
            "limit stands in for the missing request"
        );
        assert_eq!(r.fit.ephemeral_storage, 1 << 30);
        assert_eq!(r.fit.pods, 1);
    }

    #[test]
    fn best_effort_pods_score_with_defaults() {
        let spec = PodSpec {
            containers: vec![container(&[], &[]), container(&[("cpu", "1")], &[])],
            ..Default::default()
        };
        let r = pod_requests(&spec).unwrap();
        assert_eq!(r.fit.milli_cpu, 1000);
        assert_eq!(r.fit.memory, 0);
        assert_eq!(r.score_milli_cpu, 1100);
        assert_eq!(r.score_memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn invalid_quantity_is_an_error() {
        let spec = PodSpec {
            containers: vec![container(&[("cpu", "lots")], &[])],
            ..Default::default()
        };
        assert!(pod_requests(&spec).is_err());
    }

    #[test]
    fn allocatable_list() {
        let list = [
            ("cpu", "4"),
            ("memory", "8Gi"),
            ("pods", "110"),
            ("ephemeral-storage", "100G"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), K8sQuantity(v.to_string())))
        .collect();
        let r = Resources::from_list(&list).unwrap();
        assert_eq!(
            r,
            Resources {
                milli_cpu: 4000,
                memory: 8 << 30,
                ephemeral_storage: 100_000_000_000,
                pods: 110
            }
        );
    }
}
