//! The API calls the loop makes for a decision: POST the binding, or record that the pod is
//! unschedulable (a `PodScheduled=False` condition, written only when it changes, and a
//! `FailedScheduling` event); plus the `Scheduled` event after a successful binding.

use k8s_openapi::api::core::v1::{Binding, ObjectReference, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use strata_client::events::EventType;

use crate::cache::BindOutcome;
use crate::events::Events;

/// Reason of the `PodScheduled=False` condition, as kube-scheduler writes it.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";

fn reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn pods(client: &kube::Client, pod: &Pod) -> Api<Pod> {
    Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

/// POSTs `pods/<name>/binding` to put `pod` on `node`.
pub async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> BindOutcome {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let binding = Binding {
        metadata: ObjectMeta {
            name: pod.metadata.name.clone(),
            namespace: pod.metadata.namespace.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..Default::default()
        },
    };
    let result = pods(client, pod)
        .create_subresource::<Binding, serde_json::Value>(
            "binding",
            name,
            &PostParams::default(),
            &binding,
        )
        .await;
    match result {
        Ok(_) => BindOutcome::Bound,
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            tracing::debug!(pod = name, node, code = status.code, message = %status.message, "binding is moot");
            BindOutcome::Moot
        }
        Err(error) => {
            tracing::warn!(pod = name, node, error = %error, "binding failed");
            BindOutcome::Failed
        }
    }
}

/// Queues `Scheduled` for a pod just bound to `node`.
pub fn scheduled(events: &Events, pod: &Pod, node: &str) {
    let message = format!(
        "Successfully assigned {}/{} to {node}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    events.publish(reference(pod), EventType::Normal, "Scheduled", message);
}

/// Whether the pod already carries `PodScheduled=False/Unschedulable` with `message`.
pub fn condition_is_current(pod: &Pod, message: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .is_some_and(|c| {
            c.status == "False"
                && c.reason.as_deref() == Some(REASON_UNSCHEDULABLE)
                && c.message.as_deref() == Some(message)
        })
}

/// Records that `pod` fits nowhere: the condition (if it changed) and a `FailedScheduling`
/// warning event.
pub async fn unschedulable(client: &kube::Client, events: &Events, pod: &Pod, message: &str) {
    if !condition_is_current(pod, message) {
        let condition = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some(REASON_UNSCHEDULABLE.into()),
            message: Some(message.to_string()),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::now(),
            )),
            ..Default::default()
        };
        let patch = serde_json::json!({"status": {"conditions": [condition]}});
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        if let Err(error) = pods(client, pod)
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            tracing::warn!(pod = name, error = %error, "cannot set PodScheduled=False");
        }
    }
    events.publish(
        reference(pod),
        EventType::Warning,
        "FailedScheduling",
        message.to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;

    #[test]
    fn condition_compare() {
        let mut pod = Pod::default();
        assert!(!condition_is_current(&pod, "m"));
        pod.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some(REASON_UNSCHEDULABLE.into()),
                message: Some("m".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        assert!(condition_is_current(&pod, "m"));
        assert!(!condition_is_current(&pod, "other"));
    }
}
