#![allow(clippy::unwrap_used)]
//! Events land as core/v1 Events that `kubectl describe` finds by involved object, and a
//! repeat bumps the count of the first instead of adding another.

use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::Resource;
use kube::api::{Api, ListParams, PostParams};
use strata_client::events::{EventType, Recorder};
use strata_testkit::cluster::TestApiServer;

#[tokio::test(flavor = "multi_thread")]
async fn repeats_fold_into_one_event_with_a_count() {
    let server = TestApiServer::start().await;
    let client = server.admin_client().await;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let map: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "cm"}})).unwrap();
    let map = maps.create(&PostParams::default(), &map).await.unwrap();
    let reference = map.object_ref(&());

    let recorder = Recorder::new(client.clone(), "test-component", Some("n1"));
    recorder
        .publish(
            &reference,
            EventType::Warning,
            "BackOff",
            "Back-off restarting",
        )
        .await;
    recorder
        .publish(
            &reference,
            EventType::Warning,
            "BackOff",
            "Back-off restarting",
        )
        .await;
    recorder
        .publish(&reference, EventType::Normal, "Pulled", "Pulled the image")
        .await;

    let events: Api<Event> = Api::namespaced(client, "default");
    let found = events
        .list(&ListParams::default().fields("involvedObject.name=cm"))
        .await
        .unwrap()
        .items;
    assert_eq!(found.len(), 2, "{found:?}");
    let back_off = found
        .iter()
        .find(|e| e.reason.as_deref() == Some("BackOff"))
        .unwrap();
    assert_eq!(back_off.count, Some(2));
    assert_eq!(back_off.type_.as_deref(), Some("Warning"));
    assert_eq!(
        back_off.source.as_ref().unwrap().component.as_deref(),
        Some("test-component")
    );
    assert_eq!(back_off.involved_object.uid, map.metadata.uid);
}
