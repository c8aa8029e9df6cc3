//! Completion indexes of Indexed Jobs: reading a pod's index, the `completedIndexes`
//! interval list (`1,3-5,7`), and the pod an index runs in (annotation and label,
//! `JOB_COMPLETION_INDEX` and hostname `<job>-<index>`, as Kubernetes writes them).

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use strata_api::job::COMPLETION_INDEX;

/// The environment variable holding the index in every container.
pub const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// The pod's completion index from its annotation (or label); `None` when missing or
/// not a non-negative number.
pub fn index_of(pod: &Pod) -> Option<i32> {
    let meta = &pod.metadata;
    let value = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(COMPLETION_INDEX))
        .or_else(|| meta.labels.as_ref().and_then(|l| l.get(COMPLETION_INDEX)))?;
    value.parse::<i32>().ok().filter(|i| *i >= 0)
}

/// Parses a `completedIndexes` list, keeping indexes below `completions`; malformed
/// parts are skipped.
pub fn parse(list: &str, completions: i32) -> BTreeSet<i32> {
    let mut indexes = BTreeSet::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(first), Ok(last)) = (first, last) {
            indexes.extend((first.max(0)..=last).take_while(|i| *i < completions));
        }
    }
    indexes
}

/// Formats indexes as Kubernetes does: ascending, runs as `first-last`.
pub fn format(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    let push = |parts: &mut Vec<String>, (first, last): (i32, i32)| {
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    };
    for &i in indexes {
        run = match run {
            Some((first, last)) if last + 1 == i => Some((first, i)),
            Some(done) => {
                push(&mut parts, done);
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some(done) = run {
        push(&mut parts, done);
    }
    parts.join(",")
}

/// Turns a Job's pod into the pod of completion index `index`.
pub fn set_index(job: &Job, pod: &mut Pod, index: i32) {
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let value = index.to_string();
    let meta = &mut pod.metadata;
    meta.generate_name = Some(format!("{name}-{index}-"));
    for map in [&mut meta.annotations, &mut meta.labels] {
        map.get_or_insert_with(Default::default)
            .insert(COMPLETION_INDEX.to_string(), value.clone());
    }
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    spec.hostname = Some(format!("{name}-{index}"));
    let env = EnvVar {
        name: INDEX_ENV.to_string(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_string()),
                field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
            }),
            ..Default::default()
        }),
    };
    for container in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        let vars = container.env.get_or_insert_with(Vec::new);
        if !vars.iter().any(|v| v.name == INDEX_ENV) {
            vars.push(env.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    #[test]
    fn interval_lists_round_trip() {
        let set = parse("0,2-4,6-7, bogus,9", 8);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [0, 2, 3, 4, 6, 7]);
        assert_eq!(format(&set), "0,2-4,6-7");
        assert_eq!(format(&BTreeSet::new()), "");
        assert_eq!(format(&[5].into()), "5");
    }

    #[test]
    fn an_indexed_pod_carries_its_index_everywhere() {
        let job = Job {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("pi".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut pod = Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        set_index(&job, &mut pod, 3);
        assert_eq!(index_of(&pod), Some(3));
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-3-"));
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-3"));
        let env = &spec.containers[0].env.as_ref().unwrap()[0];
        assert_eq!(env.name, INDEX_ENV);
        assert_eq!(
            env.value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        pod.metadata.annotations = None;
        pod.metadata.labels = Some([(COMPLETION_INDEX.to_string(), "x".to_string())].into());
        assert_eq!(index_of(&pod), None);
    }
}
