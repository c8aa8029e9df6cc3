//! A pod's cgroup, like the kubelet's: `/strata/pods/pod<uid>` for Guaranteed pods,
//! `/strata/pods/burstable/pod<uid>` and `/strata/pods/besteffort/pod<uid>` for the
//! others, holding the cgroups of the pod's containers. Its limits bound the pod as a
//! whole: CPU weight from the requests, memory and CPU quota from the limits when every
//! container has one (init containers count as the largest of them, since they run
//! one at a time before the others).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod};
use strata_cgroups::GroupLimits;
use strata_runtime::CPU_PERIOD_US;

use super::status::qos_class;
use super::translate::{self, ConfigError};

/// Where the pods' cgroups live (relative to the hierarchy roots).
pub const PODS_ROOT: &str = "/strata/pods";

/// The QoS levels' directories under [`PODS_ROOT`] (Guaranteed pods sit at the top).
const QOS_DIRS: [&str; 3] = ["", "burstable", "besteffort"];

/// The cgroup of pod `uid` with QoS class `qos`.
fn path_for(qos: &str, uid: &str) -> PathBuf {
    let level = match qos {
        "Guaranteed" => "",
        "Burstable" => "burstable",
        _ => "besteffort",
    };
    PathBuf::from(PODS_ROOT)
        .join(level)
        .join(format!("pod{uid}"))
}

/// The cgroup of `pod`.
pub fn path(pod: &Pod, uid: &str) -> PathBuf {
    path_for(qos_class(pod), uid)
}

/// Every place the cgroup of pod `uid` could be (for removing it without the pod).
pub fn candidate_paths(uid: &str) -> impl Iterator<Item = PathBuf> + '_ {
    QOS_DIRS.iter().map(move |level| {
        PathBuf::from(PODS_ROOT)
            .join(level)
            .join(format!("pod{uid}"))
    })
}

/// The limits of `pod`'s cgroup.
pub fn limits(pod: &Pod) -> Result<GroupLimits, ConfigError> {
    let spec = pod.spec.clone().unwrap_or_default();
    let figures = |containers: &[Container]| -> Result<Vec<translate::Resources>, ConfigError> {
        containers.iter().map(translate::resources).collect()
    };
    let regular = figures(&spec.containers)?;
    let init = figures(spec.init_containers.as_deref().unwrap_or_default())?;
    // A figure of the pod: the sum over the containers, or the largest init container's
    // when that is more; `None` as soon as one container has none (unbounded).
    let pod_figure = |of: fn(&translate::Resources) -> Option<i64>| -> Option<i64> {
        let sum = regular.iter().map(of).sum::<Option<i64>>()?;
        let init_max = init.iter().map(of).collect::<Option<Vec<i64>>>()?;
        Some(init_max.into_iter().fold(sum, i64::max))
    };
    let requested_milli = regular
        .iter()
        .map(|r| r.cpu_request_milli.unwrap_or(0))
        .sum::<i64>()
        .max(
            init.iter()
                .filter_map(|r| r.cpu_request_milli)
                .max()
                .unwrap_or(0),
        );
    Ok(GroupLimits {
        memory_bytes: pod_figure(|r| r.memory_limit_bytes),
        cpu_shares: Some((requested_milli.max(0) as u64 * 1024 / 1000).max(2)),
        cpu_quota_us: pod_figure(|r| r.cpu_limit_milli)
            .map(|milli| milli * CPU_PERIOD_US as i64 / 1000)
            .filter(|q| *q > 0),
        cpu_period_us: Some(CPU_PERIOD_US),
        pids: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: &[(&str, serde_json::Value)], init: &[serde_json::Value]) -> Pod {
        let containers: Vec<serde_json::Value> = resources
            .iter()
            .map(|(name, r)| serde_json::json!({"name": name, "resources": r}))
            .collect();
        let init: Vec<serde_json::Value> = init
            .iter()
            .enumerate()
            .map(|(i, r)| serde_json::json!({"name": format!("init{i}"), "resources": r}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": containers, "initContainers": init}
        }))
        .unwrap()
    }

    #[test]
    fn pods_sit_under_their_qos_level_with_summed_limits() {
        let guaranteed = pod(
            &[
                (
                    "a",
                    serde_json::json!({"limits": {"cpu": "500m", "memory": "64Mi"}}),
                ),
                (
                    "b",
                    serde_json::json!({"limits": {"cpu": "250m", "memory": "32Mi"}}),
                ),
            ],
            &[],
        );
        assert_eq!(path(&guaranteed, "u1"), PathBuf::from("/strata/pods/podu1"));
        let l = limits(&guaranteed).unwrap();
        assert_eq!(l.memory_bytes, Some(96 << 20));
        assert_eq!(l.cpu_quota_us, Some(75_000));
        assert_eq!(l.cpu_shares, Some(768));

        // One container without a memory limit leaves the pod's memory unbounded; the
        // requests still weigh.
        let burstable = pod(
            &[
                (
                    "a",
                    serde_json::json!({"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}}),
                ),
                ("b", serde_json::json!({"requests": {"cpu": "200m"}})),
            ],
            &[serde_json::json!({"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}})],
        );
        assert_eq!(
            path(&burstable, "u2"),
            PathBuf::from("/strata/pods/burstable/podu2")
        );
        let l = limits(&burstable).unwrap();
        assert_eq!(l.memory_bytes, None);
        assert_eq!(l.cpu_quota_us, None);
        // The init container's request (1 core) is larger than the sum (300m).
        assert_eq!(l.cpu_shares, Some(1024));

        let best_effort = pod(&[("a", serde_json::json!({}))], &[]);
        assert_eq!(
            path(&best_effort, "u3"),
            PathBuf::from("/strata/pods/besteffort/podu3")
        );
        assert_eq!(limits(&best_effort).unwrap().cpu_shares, Some(2));
        assert_eq!(candidate_paths("u3").count(), 3);

        let bad = pod(
            &[("a", serde_json::json!({"limits": {"memory": "lots"}}))],
            &[],
        );
        assert!(limits(&bad).is_err());
    }

    #[test]
    fn init_containers_larger_than_the_rest_set_the_pod_limit() {
        let p = pod(
            &[(
                "a",
                serde_json::json!({"limits": {"memory": "64Mi", "cpu": "100m"}}),
            )],
            &[serde_json::json!({"limits": {"memory": "256Mi", "cpu": "2"}})],
        );
        let l = limits(&p).unwrap();
        assert_eq!(l.memory_bytes, Some(256 << 20));
        assert_eq!(l.cpu_quota_us, Some(200_000));
    }
}
