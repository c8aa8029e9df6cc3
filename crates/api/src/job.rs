//! What the API server adds to a Job on create, as Kubernetes' job strategy does
//! (`generateSelector`): the labels that tie its pods to it and the selector on them,
//! and the label and annotation names the Job controller writes on indexed pods.

use k8s_openapi::api::batch::v1::Job;

/// Label with the Job's UID on its pods; the generated selector selects it.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// Label with the Job's name on its pods.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The pre-1.27 spelling of [`CONTROLLER_UID_LABEL`], still written.
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
/// The pre-1.27 spelling of [`JOB_NAME_LABEL`], still written.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";
/// Annotation (and label) with an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// Unless `spec.manualSelector` is true, labels the pod template with the Job's name
/// and UID (keeping labels the user set, which validation then checks) and adds the
/// UID label to the selector's `matchLabels`. Needs `metadata.uid`; a Job without one
/// is left as it is.
pub fn generate_selector(job: &mut Job) {
    let (Some(name), Some(uid)) = (job.metadata.name.clone(), job.metadata.uid.clone()) else {
        return;
    };
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    if spec.manual_selector == Some(true) {
        return;
    }
    let labels = spec
        .template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default);
    for (key, value) in [
        (LEGACY_JOB_NAME_LABEL, &name),
        (JOB_NAME_LABEL, &name),
        (LEGACY_CONTROLLER_UID_LABEL, &uid),
        (CONTROLLER_UID_LABEL, &uid),
    ] {
        labels
            .entry(key.to_string())
            .or_insert_with(|| value.clone());
    }
    spec.selector
        .get_or_insert_with(Default::default)
        .match_labels
        .get_or_insert_with(Default::default)
        .entry(CONTROLLER_UID_LABEL.to_string())
        .or_insert(uid);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn job(extra: serde_json::Value) -> Job {
        let mut value = json!({
            "metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"metadata": {"labels": {"app": "pi"}}, "spec": {"containers": []}}},
        });
        if let (Some(spec), Some(extra)) = (value["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn labels_the_template_and_selects_the_uid() {
        let mut j = job(json!({}));
        generate_selector(&mut j);
        let spec = j.spec.unwrap();
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["app"], "pi");
        assert_eq!(labels[JOB_NAME_LABEL], "pi");
        assert_eq!(labels[LEGACY_JOB_NAME_LABEL], "pi");
        assert_eq!(labels[CONTROLLER_UID_LABEL], "u-1");
        assert_eq!(labels[LEGACY_CONTROLLER_UID_LABEL], "u-1");
        let selector = spec.selector.unwrap().match_labels.unwrap();
        assert_eq!(selector.len(), 1);
        assert_eq!(selector[CONTROLLER_UID_LABEL], "u-1");
    }

    #[test]
    fn a_manual_selector_is_left_alone() {
        let mut j =
            job(json!({"manualSelector": true, "selector": {"matchLabels": {"app": "pi"}}}));
        let before = j.clone();
        generate_selector(&mut j);
        assert_eq!(j, before);
    }

    #[test]
    fn user_labels_win_and_a_wrong_uid_stays_for_validation() {
        let mut j = job(json!({"selector": {"matchLabels": {CONTROLLER_UID_LABEL: "other"}}}));
        generate_selector(&mut j);
        let spec = j.spec.unwrap();
        assert_eq!(
            spec.selector.unwrap().match_labels.unwrap()[CONTROLLER_UID_LABEL],
            "other"
        );
        assert_eq!(
            spec.template.metadata.unwrap().labels.unwrap()[CONTROLLER_UID_LABEL],
            "u-1"
        );
    }
}
